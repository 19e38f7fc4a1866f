"""Streamable frame encoders: log-mel frames in, frame embeddings out, with explicit state.

Every encoder here is causal and has two entry points that give the same numbers:
- `forward(feats)`: a whole (batch, frames, mels) sequence at once (training).
- `forward_chunk(feats, state) -> (out, new_state)`: consecutive chunks with the state carried
  as a tuple of tensors (streaming and export). Each frame is encoded exactly once.

`init_state(batch)` gives the state before the first frame. Padding frames appended on the right
of a batch never change the outputs of earlier frames, because nothing looks ahead.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

State = tuple[torch.Tensor, ...]


class CausalConv1d(nn.Module):
    """Conv1d over time that sees only the current and past frames.

    The streaming cache holds the last `(kernel - 1) * dilation - (stride - 1)` input frames
    (zeros before the first chunk, which is the mean frame after input normalisation). With
    stride s, output i sees input frames up to s*i + s-1, the newest of its group, so a chunk of
    a multiple of s frames gives exactly chunk/s outputs.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, dilation: int = 1,
                 groups: int = 1, bias: bool = True, stride: int = 1):
        super().__init__()
        if stride > 1 and (dilation != 1 or kernel < stride):
            raise ValueError("a strided causal conv needs dilation 1 and kernel >= stride")
        self.stride = stride
        self.context_frames = (kernel - 1) * dilation - (stride - 1)
        self.conv = nn.Conv1d(in_ch, out_ch, kernel, dilation=dilation, groups=groups, bias=bias,
                              stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, channels, frames) -> (batch, out_channels, frames)."""
        return self.conv(F.pad(x, (self.context_frames, 0)))

    def forward_chunk(self, x: torch.Tensor, cache: torch.Tensor):
        """x: (batch, channels, chunk); cache: (batch, channels, context) -> (y, new cache)."""
        full = torch.cat([cache, x], dim=2)
        new_cache = full[:, :, full.shape[2] - self.context_frames:]
        return self.conv(full), new_cache


class TemporalBlock(nn.Module):
    """Residual block: depthwise causal conv (dilated) -> BN -> ReLU -> pointwise -> BN, + skip."""

    def __init__(self, channels: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.depthwise = CausalConv1d(channels, channels, kernel, dilation, groups=channels,
                                      bias=False)
        self.norm1 = nn.BatchNorm1d(channels)
        self.pointwise = nn.Conv1d(channels, channels, 1, bias=False)
        self.norm2 = nn.BatchNorm1d(channels)
        self.dropout = nn.Dropout(dropout)

    def _rest(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(h))
        h = self.norm2(self.pointwise(self.dropout(h)))
        return F.relu(x + h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._rest(x, self.depthwise(x))

    def forward_chunk(self, x: torch.Tensor, cache: torch.Tensor):
        h, cache = self.depthwise.forward_chunk(x, cache)
        return self._rest(x, h), cache


class InputNorm(nn.Module):
    """Per-mel normalisation with statistics fixed from the training data, optionally after
    subtracting a causal running mean of the last `window_frames` frames.

    The running mean removes slow channel and gain offsets (microphone, telephone line, level)
    that differ between corpora and users. It is a box filter over time, so it streams exactly
    like any causal conv: its cache is the last `window_frames - 1` raw frames, which start as
    the training mean (so a clip's first frames are compared against an average speaker).
    """

    def __init__(self, n_mels: int, window_frames: int = 0):
        super().__init__()
        self.window_frames = window_frames
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("inv_std", torch.ones(n_mels))
        # The box filter is a constant of the graph (not a checkpoint entry), so export sees
        # fixed weights rather than a shape-dependent computation.
        box = torch.full((n_mels, 1, max(1, window_frames)), 1.0 / max(1, window_frames))
        self.register_buffer("box", box, persistent=False)

    @property
    def context_frames(self) -> int:
        return max(0, self.window_frames - 1)

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.inv_std.copy_(1.0 / std.clamp_min(1e-3))

    def _normalise(self, feats: torch.Tensor, history: torch.Tensor | None) -> torch.Tensor:
        x = feats.transpose(1, 2)  # (batch, mels, frames)
        if history is None:
            return (x - self.mean[:, None]) * self.inv_std[:, None]
        full = torch.cat([history, x], dim=2)
        running_mean = F.conv1d(full, self.box, groups=self.box.shape[0])
        return (x - running_mean) * self.inv_std[:, None]

    def initial_history(self, batch: int) -> torch.Tensor:
        """Raw frames assumed before the start: the training mean."""
        return self.mean[None, :, None].expand(batch, -1, self.context_frames).contiguous()

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: (batch, frames, mels) -> (batch, mels, frames), normalised."""
        if self.window_frames == 0:
            return self._normalise(feats, None)
        return self._normalise(feats, self.initial_history(feats.shape[0]))

    def forward_chunk(self, feats: torch.Tensor, history: torch.Tensor | None):
        """Streaming form: returns (normalised chunk, new history or None)."""
        if self.window_frames == 0:
            return self._normalise(feats, None), None
        out = self._normalise(feats, history)
        full = torch.cat([history, feats.transpose(1, 2)], dim=2)
        return out, full[:, :, full.shape[2] - self.context_frames:]


class TCNEncoder(nn.Module):
    """Causal temporal convolution network: a stem conv and dilated depthwise-separable blocks.

    The stem may subsample time by `stride` (the blocks then run at 100/stride frames per
    second); streaming chunks must then hold a multiple of `stride` frames.
    """

    def __init__(self, n_mels: int, channels: int, kernel: int, dilations: tuple[int, ...],
                 dropout: float, stride: int = 1, norm_window_frames: int = 0):
        super().__init__()
        self.input_norm = InputNorm(n_mels, norm_window_frames)
        self.stride = stride
        self.stem = CausalConv1d(n_mels, channels, 3, bias=False, stride=stride)
        self.stem_norm = nn.BatchNorm1d(channels)
        self.blocks = nn.ModuleList(TemporalBlock(channels, kernel, d, dropout) for d in dilations)
        self.out_dim = channels
        self.n_mels = n_mels

    def receptive_field_frames(self) -> int:
        """Input frames that reach one output (counting the newest frame of its group)."""
        block_context = sum(b.depthwise.context_frames for b in self.blocks)
        return (self.stride + self.stem.context_frames + self.stride * block_context
                + self.input_norm.context_frames)

    def init_state(self, batch: int = 1) -> State:
        """(input-norm history if any, stem cache, one cache per block)."""
        convs = [self.stem] + [b.depthwise for b in self.blocks]
        widths = [self.n_mels] + [self.out_dim] * len(self.blocks)
        device = self.input_norm.mean.device
        caches = tuple(torch.zeros(batch, w, c.context_frames, device=device)
                       for w, c in zip(widths, convs))
        if self.input_norm.window_frames:
            return (self.input_norm.initial_history(batch),) + caches
        return caches

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: (batch, frames, mels) -> (batch, frames // stride, channels)."""
        x = F.relu(self.stem_norm(self.stem(self.input_norm(feats))))
        for block in self.blocks:
            x = block(x)
        return x.transpose(1, 2)

    def forward_chunk(self, feats: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """feats: (batch, chunk, mels), state from `init_state` or the previous chunk.

        chunk must be a multiple of `stride`; returns (batch, chunk / stride, channels)."""
        if feats.shape[1] % self.stride:
            raise ValueError(f"chunk of {feats.shape[1]} frames is not a multiple of the "
                             f"encoder stride {self.stride}")
        new_state = []
        if self.input_norm.window_frames:
            normed, history = self.input_norm.forward_chunk(feats, state[0])
            new_state.append(history)
            state = state[1:]
        else:
            normed, _ = self.input_norm.forward_chunk(feats, None)
        x, stem_cache = self.stem.forward_chunk(normed, state[0])
        x = F.relu(self.stem_norm(x))
        new_state.append(stem_cache)
        for block, cache in zip(self.blocks, state[1:]):
            x, cache = block.forward_chunk(x, cache)
            new_state.append(cache)
        return x.transpose(1, 2), tuple(new_state)


class GRUEncoder(nn.Module):
    """Unidirectional GRU over normalised log-mel frames; the state is the hidden vector."""

    def __init__(self, n_mels: int, channels: int, layers: int, dropout: float):
        super().__init__()
        self.input_norm = InputNorm(n_mels)
        self.gru = nn.GRU(n_mels, channels, num_layers=layers, batch_first=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.out_dim = channels
        self.layers = layers
        self.stride = 1

    def receptive_field_frames(self) -> int:
        return -1  # unbounded

    def init_state(self, batch: int = 1) -> State:
        device = self.input_norm.mean.device
        return (torch.zeros(self.layers, batch, self.out_dim, device=device),)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(self.input_norm(feats).transpose(1, 2))
        return out

    def forward_chunk(self, feats: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        out, h = self.gru(self.input_norm(feats).transpose(1, 2), state[0])
        return out, (h,)


def count_macs_per_second(encoder: nn.Module, frames_per_s: int) -> int:
    """Multiply-accumulates per second of audio for the encoder (convolutions, linear, GRU).

    In a strided TCN every convolution runs at the subsampled rate (all follow the stem)."""
    macs_per_frame = 0.0
    stride = getattr(encoder, "stride", 1)
    norm = getattr(encoder, "input_norm", None)
    if norm is not None and norm.window_frames:
        macs_per_frame += encoder.n_mels * norm.window_frames  # the running-mean box filter
    for module in encoder.modules():
        if isinstance(module, nn.Conv1d):
            # the stem runs once per `stride` input frames, and so does everything after it
            macs_per_frame += (module.in_channels // module.groups) * module.out_channels \
                * module.kernel_size[0] / stride
        elif isinstance(module, nn.Linear):
            macs_per_frame += module.in_features * module.out_features
        elif isinstance(module, nn.GRU):
            for layer in range(module.num_layers):
                in_size = module.input_size if layer == 0 else module.hidden_size
                macs_per_frame += 3 * module.hidden_size * (in_size + module.hidden_size)
    return round(macs_per_frame * frames_per_s)
