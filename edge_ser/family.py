"""What differs between model families at run time: how encoder frames are pooled over a window
and how a pooled window is scored. Everything else (VAD, features, chunked encoding, tracking,
events) is the same for every package.

    family     encoder output per frame              pooling                      scorer
    tcn        C channels                            mean and std (`windowing`)    WindowScorer
    multigate  per stream: attention logit, vector   attention (`attention_        GatedScorer
                                                     windowing`)

The manifest's top-level `family` names it; a package without the field is `tcn` (every
package written before the field existed). Both pooling classes have the same methods, so
`Stream` holds one and never asks which family it serves.
"""

from __future__ import annotations

from edge_ser import attention_windowing, windowing
from edge_ser.package import FAMILIES


def family_of(manifest: dict) -> str:
    family = manifest.get("family", "tcn")
    if family not in FAMILIES:
        raise ValueError(f"family: {family!r} is not a model family this edge-ser runs "
                         f"({', '.join(FAMILIES)})")
    return family


class StatsPooling:
    """Mean and standard deviation over a window (the `tcn` family), via `windowing`."""

    def __init__(self, channels: int):
        self.channels = channels
        self.pooled_dim = 2 * channels

    def init_state(self, window_frames: int, hop_frames: int) -> windowing.WindowState:
        return windowing.init_state(self.channels, window_frames, hop_frames)

    push = staticmethod(windowing.push)
    pool_all = staticmethod(windowing.pool_all)
    pool_frames = staticmethod(windowing.pool_frames)


class AttentionPooling:
    """Per-stream attention pooling over a window (the `multigate` family)."""

    def __init__(self, dims: tuple[int, ...]):
        self.layout = attention_windowing.RowLayout(dims)
        self.channels = self.layout.row_width
        self.pooled_dim = self.layout.pooled_dim

    def init_state(self, window_frames: int, hop_frames: int
                   ) -> attention_windowing.AttentionWindowState:
        return attention_windowing.init_state(self.layout, window_frames, hop_frames)

    push = staticmethod(attention_windowing.push)
    pool_all = staticmethod(attention_windowing.pool_all)

    def pool_frames(self, rows):
        return attention_windowing.pool_frames(self.layout, rows)


def pooling_for(package, channels: int) -> StatsPooling | AttentionPooling:
    """The pooling of a package's family for encoder frames of `channels` (a package-like
    object without a manifest: tcn)."""
    manifest = getattr(package, "manifest", None) or {}
    if family_of(manifest) == "multigate":
        pooling = AttentionPooling(tuple(int(s["dim"]) for s in manifest["head"]["streams"]))
        if pooling.channels != channels:
            raise ValueError(f"head.streams: rows of {pooling.channels} columns, but the "
                             f"encoder gives {channels}")
        return pooling
    return StatsPooling(channels)


def scorer_for(package):
    """The scorer of a package's family, read from its head and memory bank files."""
    if family_of(package.manifest) == "multigate":
        from edge_ser.gated_scoring import GatedScorer

        return GatedScorer.from_package(package)
    from edge_ser.scoring import WindowScorer

    return WindowScorer.from_package(package)
