"""The torch reference: the training checkpoint's encoder itself, behind the encoder backend
interface, for export's parity checks (torch vs onnxruntime) and for debugging a package against
the weights it was exported from. Not a runtime backend: it needs torch and the training code."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_ser.backends.base import BackendUnavailable, check_feats
from edge_ser.package import ModelPackage


class TorchBackend:
    """Runs `encoder.forward_chunk` in float32 on the CPU."""

    def __init__(self, encoder, chunk_frames: int, threads: int = 1):
        import torch

        if chunk_frames % encoder.stride:
            raise ValueError(f"chunk_frames {chunk_frames} is not a multiple of the encoder "
                             f"stride {encoder.stride}")
        self._torch = torch
        self._encoder = encoder.eval()
        self._threads = threads
        self.chunk_frames = chunk_frames
        self.stride = encoder.stride
        self.out_channels = encoder.out_dim
        self.runs_segments = True  # forward_chunk takes any multiple of the stride

    @classmethod
    def from_checkpoint(cls, path: str | Path, chunk_frames: int, threads: int = 1
                        ) -> TorchBackend:
        from edge_ser_export.steps import streamed_part
        from edge_ser_train.trainer import load_checkpoint

        model, _, _ = load_checkpoint(path)
        return cls(streamed_part(model), chunk_frames, threads)

    @classmethod
    def from_package(cls, package: ModelPackage, precision: str = "fp32", threads: int = 1
                     ) -> TorchBackend:
        """The checkpoint the package carries (`model.pt`, listed with its sha256 among the
        package's files, so loading the package has verified it)."""
        from edge_ser_export.steps import FILES

        if precision != "fp32":
            raise ValueError(f"the torch reference runs the fp32 checkpoint; pass precision "
                             f"'fp32', not {precision!r}")
        name = FILES["checkpoint"]
        if name not in package.manifest.get("files", {}):
            raise BackendUnavailable(f"{package.root}: the package carries no training "
                                     f"checkpoint ({name}), which the torch reference runs")
        return cls.from_checkpoint(package.path(name), package.chunk_frames, threads)

    def init_state(self, batch: int = 1) -> list[np.ndarray]:
        return [s.numpy() for s in self._encoder.init_state(batch)]

    def run(self, feats: np.ndarray, state: list[np.ndarray]
            ) -> tuple[np.ndarray, list[np.ndarray]]:
        return self._forward_chunk(check_feats(feats, self.chunk_frames, self.stride), state)

    def run_segment(self, feats: np.ndarray, state: list[np.ndarray]) -> np.ndarray:
        return self._forward_chunk(check_feats(feats, None, self.stride), state)[0]

    def _forward_chunk(self, feats: np.ndarray, state: list[np.ndarray]
                       ) -> tuple[np.ndarray, list[np.ndarray]]:
        torch = self._torch
        previous = torch.get_num_threads()
        torch.set_num_threads(self._threads)
        try:
            with torch.no_grad():
                out, new_state = self._encoder.forward_chunk(
                    torch.from_numpy(feats), tuple(torch.from_numpy(np.asarray(s)) for s in state))
        finally:
            torch.set_num_threads(previous)
        return out.numpy(), [s.numpy() for s in new_state]

    def close(self) -> None:
        self._encoder = None
