"""The TensorRT backend: a serialized engine built on this device, run through the TensorRT 10
Python API with cuda-python (`cuda.bindings.runtime`) for device memory and the stream.

Engines live in the package (`engines/`, listed in the manifest with their sha256) and are named
by precision, TensorRT version and GPU, because an engine only runs on the GPU model and
TensorRT version that built it (`python main.py export trt --model PKG --precision int8`).

An engine has two optimization profiles: 0 for streaming (batch of `stream` streams) and 1 for
bulk batches (`batch` min/opt/max). The backend makes one execution context per profile,
allocates one device buffer per tensor for the largest batch once, binds the buffers by tensor
name once, and runs every call on one CUDA stream: copy in, `execute_async_v3`, copy out,
synchronize. The state goes in and out like every backend's; nothing of a stream stays here.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import numpy as np

from edge_ser import contract
from edge_ser.backends.base import BackendUnavailable, StateLayout
from edge_ser.package import ModelPackage, state_shape

INSTALL_HINT = ("install TensorRT 10 and cuda-python for this device (on Jetson: JetPack 6 ships "
                "python3-libnvinfer; elsewhere: pip install tensorrt cuda-python), see "
                "docs/deploy_jetson.md")


def import_tensorrt():
    """(tensorrt, cudart) or BackendUnavailable naming what to install."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailable(f"the TensorRT backend needs the tensorrt package ({exc}); "
                                 f"{INSTALL_HINT}") from None
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError as exc:
            raise BackendUnavailable(f"the TensorRT backend needs cuda-python ({exc}); "
                                     f"{INSTALL_HINT}") from None
    return trt, cudart


def version_tuple(version: str) -> tuple[int, ...]:
    """'10.3.0.26' -> (10, 3, 0, 26): versions compare as numbers, never as text."""
    return tuple(int(p) for p in re.findall(r"\d+", version))


@dataclass(frozen=True)
class DeviceIdentity:
    gpu: str
    compute_capability: str
    tensorrt_version: str

    def slug(self) -> str:
        gpu = re.sub(r"[^a-z0-9]+", "-", self.gpu.lower()).strip("-")
        return f"trt{self.tensorrt_version}.{gpu}.sm{self.compute_capability.replace('.', '')}"


def cuda_check(cudart, result):
    """Unpack a cuda-python call result, raising on an error code."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        name = cudart.cudaGetErrorName(err)[1]
        name = name.decode() if isinstance(name, bytes) else name
        raise RuntimeError(f"CUDA call failed: {name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def device_identity(device: int = 0) -> DeviceIdentity:
    trt, cudart = import_tensorrt()
    props = cuda_check(cudart, cudart.cudaGetDeviceProperties(device))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return DeviceIdentity(gpu=name.rstrip("\x00").strip(),
                          compute_capability=f"{props.major}.{props.minor}",
                          tensorrt_version=trt.__version__)


def engine_file_name(precision: str, identity: DeviceIdentity) -> str:
    return f"engines/encoder.{precision}.{identity.slug()}.engine"


def find_engine(package: ModelPackage, precision: str, identity: DeviceIdentity) -> dict:
    """The manifest entry of the engine for this precision, GPU and TensorRT version."""
    for entry in package.manifest.get("engines", []):
        if (entry.get("precision") == precision and entry.get("gpu") == identity.gpu
                and entry.get("compute_capability") == identity.compute_capability
                and version_tuple(entry.get("tensorrt_version", "")) ==
                version_tuple(identity.tensorrt_version)):
            return entry
    built = [f"{e.get('precision')} on {e.get('gpu')} with TensorRT {e.get('tensorrt_version')}"
             for e in package.manifest.get("engines", [])] or ["none"]
    raise BackendUnavailable(
        f"{package.root}: no {precision} engine for {identity.gpu} with TensorRT "
        f"{identity.tensorrt_version} (engines: {'; '.join(built)}); build one on this device "
        f"with `python main.py export trt --model {package.root} --precision {precision}`")


class TensorRTBackend:
    """A TensorRT engine of the package. `run` calls are serialized by a lock (one stream)."""

    def __init__(self, package: ModelPackage, precision: str = "int8", device: int = 0,
                 engine_file: str | None = None):
        trt, cudart = import_tensorrt()
        self._trt, self._cudart = trt, cudart
        self._layout = StateLayout(package)
        self.chunk_frames = package.chunk_frames
        self.stride = package.stride
        self.out_channels = package.embedding_channels
        self.runs_segments = False  # engines are built for the fixed streaming chunk
        self.precision = precision
        self._lock = threading.Lock()
        self._buffers: dict[str, int] = {}
        self._contexts: list = []
        self._stream = None
        cuda_check(cudart, cudart.cudaSetDevice(device))
        if engine_file is None:
            engine_file = find_engine(package, precision, device_identity(device))["file"]
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(package.path(engine_file).read_bytes())
        if self._engine is None:
            raise BackendUnavailable(f"{package.path(engine_file)}: TensorRT could not deserialize "
                                     "the engine (built by another TensorRT version or GPU?)")
        try:
            self._setup(package)
        except BaseException:
            self.close()
            raise

    def _setup(self, package: ModelPackage) -> None:
        trt, cudart, engine = self._trt, self._cudart, self._engine
        self._inputs = [contract.ENCODER_INPUT, *self._layout.input_names]
        self._outputs = [contract.ENCODER_OUTPUT, *self._layout.output_names]
        names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
        if names != set(self._inputs + self._outputs):
            raise BackendUnavailable(f"engine tensors {sorted(names)} differ from the package's "
                                     f"{sorted(self._inputs + self._outputs)}; rebuild it")
        for name in names:
            if engine.get_tensor_dtype(name) != trt.DataType.FLOAT:
                raise BackendUnavailable(f"engine tensor {name} is {engine.get_tensor_dtype(name)}"
                                         ", expected float32 I/O; rebuild the engine")
        # Profile p accepts batches in [min, max] of its feats shape range.
        self._batch_ranges = []
        for p in range(engine.num_optimization_profiles):
            lo, _, hi = engine.get_tensor_profile_shape(contract.ENCODER_INPUT, p)
            self._batch_ranges.append((lo[0], hi[0]))
        max_batch = max(hi for _, hi in self._batch_ranges)
        self._stream = cuda_check(cudart, cudart.cudaStreamCreate())
        # Per-sample shapes of every tensor, batch axis where the manifest puts it.
        self._shapes = {contract.ENCODER_INPUT: package.manifest["encoder"]["input"]["shape"],
                        contract.ENCODER_OUTPUT: package.manifest["encoder"]["output"]["shape"]}
        for spec in package.state_specs():
            self._shapes[spec["input"]] = spec["shape"]
            self._shapes[spec["output"]] = spec["shape"]
        for name, shape in self._shapes.items():
            nbytes = int(np.prod(state_shape(shape, max_batch))) * 4
            self._buffers[name] = cuda_check(cudart, cudart.cudaMalloc(nbytes))
        for p in range(engine.num_optimization_profiles):
            context = engine.create_execution_context()
            if context is None:
                raise RuntimeError("TensorRT could not create an execution context")
            context.set_optimization_profile_async(p, int(self._stream))
            for name, address in self._buffers.items():
                context.set_tensor_address(name, int(address))
            self._contexts.append(context)
        cuda_check(cudart, cudart.cudaStreamSynchronize(self._stream))

    def init_state(self, batch: int = 1) -> list[np.ndarray]:
        return self._layout.init_state(batch)

    def _profile_for(self, batch: int) -> int:
        for p, (lo, hi) in enumerate(self._batch_ranges):
            if lo <= batch <= hi:
                return p
        raise ValueError(f"batch {batch} is outside every profile of the engine "
                         f"{self._batch_ranges}; split it or rebuild the engine")

    def run(self, feats: np.ndarray, state: list[np.ndarray]
            ) -> tuple[np.ndarray, list[np.ndarray]]:
        if self._engine is None:
            raise RuntimeError("the backend is closed")
        feats, state = self._layout.check(feats, state)
        cudart = self._cudart
        batch = feats.shape[0]
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        outputs = {name: np.empty(state_shape(self._shapes[name], batch), dtype=np.float32)
                   for name in self._outputs}
        with self._lock:
            context = self._contexts[self._profile_for(batch)]
            for name, array in zip(self._inputs, [feats, *state]):
                context.set_input_shape(name, array.shape)
                cuda_check(cudart, cudart.cudaMemcpyAsync(
                    self._buffers[name], array.ctypes.data, array.nbytes, h2d, self._stream))
            if not context.execute_async_v3(int(self._stream)):
                raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
            for name, array in outputs.items():
                cuda_check(cudart, cudart.cudaMemcpyAsync(
                    array.ctypes.data, self._buffers[name], array.nbytes, d2h, self._stream))
            cuda_check(cudart, cudart.cudaStreamSynchronize(self._stream))
        return outputs[contract.ENCODER_OUTPUT], [outputs[n] for n in self._outputs[1:]]

    def run_segment(self, feats: np.ndarray, state: list[np.ndarray]) -> np.ndarray:
        raise RuntimeError("the TensorRT backend runs the fixed streaming chunk only; "
                           "use run() chunk by chunk")

    def close(self) -> None:
        """Free device buffers, the stream, contexts and the engine. Safe to call twice."""
        cudart = self._cudart
        self._contexts = []
        for address in self._buffers.values():
            cudart.cudaFree(address)
        self._buffers = {}
        if self._stream is not None:
            cudart.cudaStreamDestroy(self._stream)
            self._stream = None
        self._engine = None
        self._runtime = None
