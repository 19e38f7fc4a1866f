"""Multiply-accumulates per second of audio of everything a multigate model runs per frame.

What runs once per window (the stream projections after pooling, the gate, the head) is left
out, as it is for the `tcn` family's head; what runs per frame is counted at its rate:

    TCN stream     the encoder (`count_macs_per_second`) and its attention scores, at 100/stride
    mfcc, prosody  feature map, causal conv, GRU, attention scores, at 100 frames per second
    ge2e           the 64 -> 40 band map, the 3 x 256 LSTM, its linear layer, attention scores
"""

from __future__ import annotations

from torch import nn

from edge_ser_train.encoder import count_macs_per_second


def _recurrent_macs(module: nn.Module) -> float:
    gates = 4 if isinstance(module, nn.LSTM) else 3
    total = 0.0
    for layer in range(module.num_layers):
        in_size = module.input_size if layer == 0 else module.hidden_size
        total += gates * module.hidden_size * (in_size + module.hidden_size)
    return total


def _per_frame_macs(module: nn.Module) -> float:
    """Conv1d, Linear, GRU and LSTM multiply-accumulates of one frame through `module`."""
    total = 0.0
    for m in module.modules():
        if isinstance(m, nn.Conv1d):
            total += (m.in_channels // m.groups) * m.out_channels * m.kernel_size[0]
        elif isinstance(m, nn.Linear):
            total += m.in_features * m.out_features
        elif isinstance(m, (nn.GRU, nn.LSTM)):
            total += _recurrent_macs(m)
    return total


def macs_per_second(model, frames_per_s: int) -> int:
    """The per-frame compute of every stream of a `MultiGateModel`, per second of audio."""
    total = float(count_macs_per_second(model.encoder, frames_per_s))
    stride = model.encoder.stride
    total += _per_frame_macs(model.branches["tcn"].pool) * frames_per_s / stride
    for name in model.stream_names:
        if name in ("mfcc", "prosody"):
            branch = model.branches[name]
            per_frame = (_per_frame_macs(branch.conv) + _per_frame_macs(branch.gru)
                         + _per_frame_macs(branch.pool))
            if name == "mfcc":
                per_frame += model.mfcc.basis.numel()
            else:  # softmax-weighted sums over the bands for pitch and centroid
                per_frame += 2 * model.encoder.n_mels
            total += per_frame * frames_per_s
        elif name == "ge2e":
            per_frame = (model.ge2e_mel.weights.numel() + _per_frame_macs(model.ge2e)
                         + _per_frame_macs(model.branches[name].pool))
            total += per_frame * frames_per_s
    return round(total)
