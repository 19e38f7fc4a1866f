"""The streamed part of a multigate model as one chunk graph with every state explicit.

    feats (B, chunk, 64), state_in_0..N -> rows (B, chunk / stride, R), state_out_0..N

Each output row belongs to one encoder frame j (the TCN stream's rate, feature frames
[stride*j, stride*j + stride)) and holds, per stream in `stream_names` order, the stream's
attention logit followed by its frame vector:

    tcn      logit a_j of the TCN frame x_j, and x_j                             (1 + C)
    mfcc     over the stride group of feature frames t: m_j = log sum_t exp(a_t) and
    prosody  v_j = sum_t softmax(a)_t h_t (the GRU frames h_t)                    (1 + branch)
    ge2e     likewise over the running d-vectors                                  (1 + 256)

Attention pooling of any run of rows with weights exp(m_j) and vectors v_j equals the model's
attention pooling over the feature frames they cover, so the runtime pools a sliding window of
rows with max-shifted exponential sums (`edge_ser.attention_windowing`), and the projections, the
shared gate and the shared head run after pooling in numpy (`edge_ser.gated_scoring`).

State, in order: the TCN encoder's caches; per recurrent branch (mfcc, prosody) its conv cache
(B, F, 4) and GRU state (1, B, channels); prosody's previous frame energy and a started flag
(B, 2) (the first frame of a segment has no energy change); GE2E's LSTM h and c (3, B, 256).
Every operator is one TensorRT imports: log-sum-exp and the L2 norm are written out as Exp,
ReduceSum, Log and Sqrt (attention logits and log-mel values are bounded, so no shift is
needed inside a chunk).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edge_ser import contract

State = tuple[torch.Tensor, ...]


def _log_sum_exp(x: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.log(torch.exp(x).sum(dim=dim))


class MultiGateChunkEncoder(nn.Module):
    """`forward_chunk(feats, state) -> (rows, new_state)` of a `MultiGateModel` in eval mode,
    with the attributes `export_encoder`, the calibration and the torch reference read
    (`stride`, `out_dim`, `init_state`, `receptive_field_frames`)."""

    def __init__(self, model):
        super().__init__()
        self.model = model.eval()
        self.stream_names = tuple(model.stream_names)
        self.stride = model.encoder.stride
        self.n_mels = model.encoder.n_mels
        self.stream_dims = tuple(self._frame_dim(name) for name in self.stream_names)
        self.out_dim = sum(1 + d for d in self.stream_dims)

    def _frame_dim(self, name: str) -> int:
        if name == "tcn":
            return self.model.encoder.out_dim
        if name == "ge2e":
            return self.model.ge2e.out_dim
        return self.model.branches[name].gru.hidden_size

    def receptive_field_frames(self) -> int:
        return -1  # the GRU and LSTM states reach back to the start of the segment

    def init_state(self, batch: int = 1) -> State:
        device = self.model.encoder.stem.conv.weight.device
        state = list(self.model.encoder.init_state(batch))
        for name in self.stream_names:
            if name in ("mfcc", "prosody"):
                branch = self.model.branches[name]
                conv = branch.conv
                state.append(torch.zeros(batch, conv.conv.in_channels, conv.context_frames,
                                         device=device))
                state.append(torch.zeros(1, batch, branch.gru.hidden_size, device=device))
                if name == "prosody":
                    state.append(torch.zeros(batch, 2, device=device))
            elif name == "ge2e":
                h, c = self.model.ge2e.init_state(batch)
                state.extend([h, c])
        return tuple(state)

    def forward_chunk(self, feats: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if feats.shape[1] % self.stride:
            raise ValueError(f"chunk of {feats.shape[1]} frames is not a multiple of the "
                             f"encoder stride {self.stride}")
        n_tcn = len(self.model.encoder.init_state(1))
        tcn_frames, tcn_state = self.model.encoder.forward_chunk(feats, tuple(state[:n_tcn]))
        rest = list(state[n_tcn:])
        new_state: list[torch.Tensor] = list(tcn_state)
        parts = []
        for name in self.stream_names:
            pool = self.model.branches[name].pool
            if name == "tcn":
                parts += [pool.score(tcn_frames), tcn_frames]
                continue
            if name == "ge2e":
                h, c = rest.pop(0), rest.pop(0)
                mel = self._ge2e_mel(feats)
                out, (h, c) = self.model.ge2e.lstm(mel, (h, c))
                frames = F.relu(self.model.ge2e.linear(out))
                norm = torch.sqrt((frames * frames).sum(dim=-1, keepdim=True))
                frames = frames / torch.clamp(norm, min=1e-8)
                new_state += [h, c]
            else:
                cache, hidden = rest.pop(0), rest.pop(0)
                if name == "mfcc":
                    frame_feats = self.model.mfcc(feats)
                else:
                    frame_feats, energy_state = self._prosody(feats, rest.pop(0))
                branch = self.model.branches[name]
                x = branch.norm(frame_feats.transpose(1, 2))
                x, cache = branch.conv.forward_chunk(x, cache)
                frames, hidden = branch.gru(F.relu(x).transpose(1, 2), hidden)
                new_state += [cache, hidden]
                if name == "prosody":
                    new_state.append(energy_state)
            parts += list(self._group(pool.score(frames), frames))
        return torch.cat(parts, dim=-1), tuple(new_state)

    def _group(self, logits: torch.Tensor, frames: torch.Tensor):
        """Per stride group: (log-sum-exp of the logits (B, n, 1), softmax-weighted mean of the
        frames (B, n, D)); exactly what pooling needs to merge the group's frames."""
        # -1, not the chunk's group count: the time axis stays free in the graph, so the
        # whole-segment encoder (`edge_ser.backends.segment_graph`) can be derived from it
        a = logits.reshape(frames.shape[0], -1, self.stride)
        weights = torch.softmax(a, dim=-1).unsqueeze(-1)
        grouped = frames.reshape(frames.shape[0], -1, self.stride, frames.shape[-1])
        mean = (weights * grouped).sum(dim=2)
        return _log_sum_exp(a, -1).unsqueeze(-1), mean

    def _ge2e_mel(self, log_mel: torch.Tensor) -> torch.Tensor:
        """`MelRebin.forward` as a weighted sum (Mul, ReduceSum), not a MatMul: its input is
        mel power, whose range (many decades) int8 activations cannot hold, and a MatMul would
        be quantized."""
        rebin = self.model.ge2e_mel
        power = torch.clamp(log_mel.exp() - contract.LOG_FLOOR, min=0.0)
        return torch.clamp((power.unsqueeze(-1) * rebin.weights).sum(dim=-2), min=0.0)

    def _prosody(self, log_mel: torch.Tensor, energy_state: torch.Tensor):
        """`Prosody.forward` over a chunk, its first frame's energy change taken against the
        carried previous energy (zero change at the segment's first frame, started = 0)."""
        prosody = self.model.prosody
        energy = _log_sum_exp(log_mel, -1)  # (B, T)
        previous, started = energy_state[:, :1], energy_state[:, 1:]
        first = (energy[:, :1] - previous) * started
        delta = torch.cat([first, energy[:, 1:] - energy[:, :-1]], dim=1)
        index = torch.nonzero(prosody.pitch_bands).flatten()
        low = log_mel.index_select(-1, index)
        pitch = (low.softmax(-1) * prosody.log_centres.index_select(0, index)).sum(-1)
        low_share = _log_sum_exp(low, -1) - energy
        centroid = (log_mel.softmax(-1) * prosody.log_centres).sum(-1)
        feats = torch.stack([energy, delta, pitch, low_share, centroid], dim=-1)
        # previous * 0 + 1, not ones_like: TensorRT imports no ConstantOfShape
        new_state = torch.cat([energy[:, -1:], previous * 0.0 + 1.0], dim=1)
        return feats, new_state


def stream_layout(encoder: MultiGateChunkEncoder) -> list[dict]:
    """The manifest's description of a row: per stream, its name and frame-vector width (each
    stream's columns are its logit, then the vector)."""
    return [{"name": name, "dim": dim}
            for name, dim in zip(encoder.stream_names, encoder.stream_dims)]

