import pytest

pytest.importorskip("torch", reason="needs torch: the [train] extra")

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_ser.config import load_config
from edge_ser_train.config import TrainConfig
from edge_ser_train.encoder import count_macs_per_second
from edge_ser_train.model import EmotionModel, count_parameters

TOLERANCE = 1e-5  # float32 conv sums in a different order (chunked vs whole): ~1e-6 seen


def make_model(arch: str) -> EmotionModel:
    torch.manual_seed(0)
    norm = ["model.norm_window_s=0.3" if arch == "tcn-norm" else "model.norm_window_s=0"]
    cfg = load_config(TrainConfig, None, [f"model.arch={arch.split('-')[0]}", "model.channels=32",
                                          "model.embedding_dim=16"] + norm)
    model = EmotionModel(cfg.model, 64, 4)
    with torch.no_grad():  # non-trivial normalisation and BN statistics
        model.encoder.input_norm.set_stats(torch.randn(64), torch.rand(64) + 0.5)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("arch", ["tcn", "tcn-norm", "gru"])
@settings(max_examples=8, deadline=None)
@given(cuts=st.lists(st.integers(1, 30), min_size=1, max_size=12))
def test_chunked_equals_full_sequence(arch, cuts):
    model = make_model(arch)
    stride = model.encoder.stride
    cuts = [c * stride for c in cuts]  # chunks hold whole groups of `stride` frames
    feats = torch.randn(2, 150, 64)
    with torch.no_grad():
        full = model.encoder(feats)
        state = model.encoder.init_state(2)
        outs, pos = [], 0
        for size in cuts + [150]:
            if pos >= 150:
                break
            out, state = model.encoder.forward_chunk(feats[:, pos:pos + size], state)
            outs.append(out)
            pos += size
    chunked = torch.cat(outs, dim=1)
    assert chunked.shape == full.shape
    assert torch.max(torch.abs(chunked - full)).item() < TOLERANCE


def test_odd_chunk_is_refused_with_a_reason():
    model = make_model("tcn")
    with pytest.raises(ValueError, match="not a multiple of the encoder stride 2"):
        model.encoder.forward_chunk(torch.randn(1, 3, 64), model.encoder.init_state(1))


def test_right_padding_does_not_change_earlier_frames():
    model = make_model("tcn")
    feats = torch.randn(1, 80, 64)
    padded = torch.cat([feats, torch.zeros(1, 40, 64)], dim=1)
    with torch.no_grad():
        a = model.encoder(feats)
        b = model.encoder(padded)[:, :40]
        la, _ = model(feats, torch.tensor([80]))
        lb, _ = model(padded, torch.tensor([80]))
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(la, lb, atol=1e-5)


def test_receptive_field_is_what_the_encoder_sees():
    model = make_model("tcn")
    rf = model.encoder.receptive_field_frames()
    feats = torch.randn(1, rf + 20, 64)
    changed = feats.clone()
    changed[:, 0] += 10.0  # frame 0 is outside the field of the last output
    with torch.no_grad():
        a, b = model.encoder(feats), model.encoder(changed)
    assert torch.allclose(a[:, -1], b[:, -1])
    assert not torch.allclose(a[:, 0], b[:, 0])  # the frame itself does change its output


def test_default_model_size_budget():
    cfg = load_config(TrainConfig, None)
    model = EmotionModel(cfg.model, 64, 4)
    assert count_parameters(model) <= 300_000
    macs = count_macs_per_second(model.encoder, 100)
    assert 1e6 < macs < 1e8
    assert np.isfinite(macs)
