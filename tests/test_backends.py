"""Encoder backends: one interface, state in and out, clear errors; TensorRT where present."""

import pytest

pytest.importorskip("torch", reason="needs torch: the [train] extra")

import shutil
import threading

import numpy as np
from test_export import small_package  # noqa: F401  (module fixture)

from edge_ser import contract
from edge_ser.backends import BackendUnavailable, create_backend
from edge_ser.backends.tensorrt_backend import (
    DeviceIdentity,
    find_engine,
    import_tensorrt,
    version_tuple,
)
from edge_ser.engine_build.parity import batch_consistency, random_feats, stream_parity
from edge_ser.package import file_entry, load_package


def test_unknown_backend_is_refused(small_package):  # noqa: F811
    with pytest.raises(ValueError, match="unknown backend 'cuda'; choose one of onnxruntime"):
        create_backend(small_package[1], "cuda")


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_onnxruntime_backend_state_in_and_out(small_package, precision):  # noqa: F811
    _, package = small_package
    backend = create_backend(package, "onnxruntime", precision)
    state = backend.init_state(2)
    assert [s.shape for s in state] == [
        tuple(2 if d == contract.BATCH_DIM else d for d in spec["shape"])
        for spec in package.state_specs()]
    feats = np.stack([random_feats(package.chunk_frames, seed=s) for s in (1, 2)])
    frames, new_state = backend.run(feats, state)
    assert frames.shape == (2, package.chunk_frames // package.stride, 16)
    assert frames.dtype == np.float32
    # no state kept inside: the same call gives the same answer
    again, _ = backend.run(feats, state)
    np.testing.assert_array_equal(frames, again)
    assert batch_consistency(backend, random_feats(40 * package.chunk_frames), chunks=8) < 1e-5
    backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        backend.run(feats, state)


def test_wrong_shapes_are_refused_with_the_expected_shape(small_package):  # noqa: F811
    _, package = small_package
    backend = create_backend(package, "onnxruntime", "int8")
    state = backend.init_state(1)
    chunk = package.chunk_frames
    with pytest.raises(ValueError, match=rf"feats must be \(batch, {chunk}, 64\)"):
        backend.run(np.zeros((1, 7, contract.N_MELS), np.float32), state)
    with pytest.raises(ValueError, match=r"state\[0\] has shape"):
        backend.run(np.zeros((2, chunk, contract.N_MELS), np.float32), state)
    with pytest.raises(ValueError, match="onnxruntime runs the package's ONNX encoders"):
        create_backend(package, "onnxruntime", "fp16")


def test_one_backend_serves_threads_at_once(small_package):  # noqa: F811
    _, package = small_package
    backend = create_backend(package, "onnxruntime", "int8")
    feats = random_feats(package.chunk_frames)[None]
    expected, _ = backend.run(feats, backend.init_state(1))
    results = []

    def work():
        for _ in range(20):
            out, _ = backend.run(feats, backend.init_state(1))
            results.append(np.array_equal(out, expected))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 60 and all(results)


def test_initial_state_comes_from_the_package(small_package, tmp_path):  # noqa: F811
    _, package = small_package
    root = tmp_path / "pkg"
    shutil.copytree(package.root, root)
    first = {s["input"]: np.full([1 if d == contract.BATCH_DIM else d for d in s["shape"]],
                                 0.5, np.float32) for s in package.state_specs()}
    np.savez_compressed(root / "initial_state.npz", **first)
    import json

    manifest = json.loads((root / "model.json").read_text())
    manifest["files"]["initial_state.npz"] = file_entry(root, "initial_state.npz")
    (root / "model.json").write_text(json.dumps(manifest))
    state = create_backend(load_package(root), "onnxruntime", "fp32").init_state(3)
    assert all(s.shape[0] == 3 and np.all(s == 0.5) for s in state)


def test_torch_is_a_reference_tool_not_a_runtime_backend(small_package):  # noqa: F811
    from edge_ser_export.torch_reference import TorchBackend

    model, package = small_package
    with pytest.raises(ValueError, match="unknown backend 'torch'; choose one of onnxruntime, "
                                         "tensorrt"):
        create_backend(package, "torch", "fp32")
    with pytest.raises(BackendUnavailable, match="carries no training checkpoint \\(model.pt\\)"):
        TorchBackend.from_package(package)
    with pytest.raises(ValueError, match="runs the fp32 checkpoint"):
        TorchBackend.from_package(package, "int8")
    reference = TorchBackend(model.encoder, package.chunk_frames)
    onnx_fp32 = create_backend(package, "onnxruntime", "fp32")
    report = stream_parity(reference, onnx_fp32, random_feats(100 * package.chunk_frames))
    assert report.max_abs_frames < 1e-4


def test_engine_lookup_compares_versions_as_numbers(small_package):  # noqa: F811
    _, package = small_package
    orin = DeviceIdentity("Orin", "8.7", "10.3.0")
    entry = {"file": "engines/e.engine", "precision": "int8", "gpu": "Orin",
             "compute_capability": "8.7", "tensorrt_version": "10.3.0"}
    manifest = dict(package.manifest, engines=[entry])
    fake = type(package)(package.root, manifest, package.labels, package.chunk_frames,
                         package.stride, package.embedding_channels)
    assert find_engine(fake, "int8", orin) is entry
    assert version_tuple("10.10.0") > version_tuple("10.9.1")
    with pytest.raises(BackendUnavailable, match="export trt --model .* --precision fp16"):
        find_engine(fake, "fp16", orin)
    with pytest.raises(BackendUnavailable, match="no int8 engine for Orin with TensorRT 10.1.0"):
        find_engine(fake, "int8", DeviceIdentity("Orin", "8.7", "10.1.0"))


def test_tensorrt_backend_says_what_to_install(small_package):  # noqa: F811
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailable, match="install TensorRT 10"):
            create_backend(small_package[1], "tensorrt", "int8")
    else:
        pytest.skip("tensorrt is installed here; the GPU tests below cover the backend")


@pytest.fixture
def tensorrt_gpu():
    """TensorRT, cuda-python and a GPU, or a skip saying which is missing."""
    try:
        _, cudart = import_tensorrt()
    except BackendUnavailable as exc:
        pytest.skip(f"TensorRT not available: {exc}")
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess or count == 0:
        pytest.skip("no CUDA GPU")


@pytest.mark.requires_trt
@pytest.mark.requires_cuda
@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_tensorrt_engine_builds_and_matches_onnxruntime(
        tensorrt_gpu, small_package, tmp_path, precision):  # noqa: F811
    from edge_ser.engine_build.config import TensorRTConfig
    from edge_ser.engine_build.tensorrt_build import export_trt

    root = tmp_path / "pkg"
    shutil.copytree(small_package[1].root, root)
    entry = export_trt(load_package(root), precision, TensorRTConfig(),
                       tmp_path / "timing.cache", chunks=100)
    package = load_package(root)  # the engine is registered with its sha256
    assert entry in package.manifest["engines"] and (tmp_path / "timing.cache").is_file()
    backend = create_backend(package, "tensorrt", precision)
    reference = create_backend(package, "onnxruntime", "int8" if precision == "int8" else "fp32")
    for batch in (1, 16):
        report = stream_parity(reference, backend, random_feats(100 * package.chunk_frames),
                               batch=batch)
        assert report.rel_rms_frames < 0.1
    backend.close()
    backend.close()  # twice is fine
