"""The multi-gating model family on random tensors: shapes, gates, routing, the centroid loss,
the GE2E stream, the head specs and the head search."""

import math
import os
import random
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="needs torch: the [train] extra")

import torch  # noqa: E402

from edge_ser.config import load_config
from edge_ser_train.config import ModelConfig, TrainConfig
from edge_ser_train.frontend import LogMel
from edge_ser_train.model import EmotionModel, build_model
from edge_ser_train.multigate import ge2e
from edge_ser_train.multigate.contrastive import CentroidSoftmaxLoss
from edge_ser_train.multigate.gates import LanguageRouter
from edge_ser_train.multigate.heads import HeadSpec, build_head, parse_language_heads, parse_spec
from edge_ser_train.multigate.model import MultiGateModel
from edge_ser_train.multigate.search import Task, evolve, score_spec
from edge_ser_train.multigate.streams import MFCC, Prosody, dct_matrix

LANGUAGES = ("de", "tr", "ur")


def small_config(*overrides: str) -> ModelConfig:
    return load_config(TrainConfig, None, [
        "model.family=multigate", "model.channels=16", "model.dilations=[1, 2]",
        "model.embedding_dim=16", "model.multigate.branch_channels=8",
        "model.multigate.gate_hidden=8", "model.multigate.ge2e_weights=random",
        *overrides]).model


def small_model(*overrides: str) -> MultiGateModel:
    torch.manual_seed(0)
    return build_model(small_config(*overrides), 64, 4, LANGUAGES, pretrained=True)


def batch(n=6, frames=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, frames, 64, generator=g) - 4.0
    lengths = torch.tensor([frames, frames - 10, 40, frames, 25, frames][:n])
    return feats, lengths


def test_shapes_and_gate_weights_sum_to_one():
    model = small_model().eval()
    feats, lengths = batch()
    out = model.parts(feats, lengths, ["de", "tr", "ur", "xx", None, "de"])
    assert model.stream_names == ("tcn", "mfcc", "prosody", "ge2e")
    assert out.streams.shape == (6, 4, 16)
    assert out.embedding.shape == (6, 16) and out.logits.shape == (6, 4)
    assert torch.allclose(out.weights.sum(1), torch.ones(6), atol=1e-6)
    assert bool((out.weights >= 0).all())
    # the embedding is the gate-weighted sum of the stream vectors
    assert torch.allclose(out.embedding, (out.weights[..., None] * out.streams).sum(1))
    logits, emb = model(feats, lengths)
    assert logits.shape == (6, 4) and torch.equal(emb, model.embed(feats, lengths))
    with pytest.raises(NotImplementedError, match="multigate: no head over one pooled vector"):
        model.head(torch.zeros(1, 32))


def test_unseen_languages_take_the_shared_gate_and_head():
    model = small_model().eval()
    feats, lengths = batch()
    shared = model.router.shared
    assert shared == len(LANGUAGES)
    out = model.parts(feats, lengths, ["de", "tr", "ur", "xx", None, "de"])
    assert out.routes.tolist() == [0, 1, 2, shared, shared, 0]
    none = model.parts(feats, lengths, None)
    assert none.routes.tolist() == [shared] * 6
    # an unknown language gives exactly the shared route's output; a known one differs
    assert torch.equal(out.logits[3], none.logits[3])
    assert not torch.allclose(out.logits[0], none.logits[0])
    assert torch.equal(out.weights[4], none.weights[4])


def test_language_dropout_routes_to_the_shared_pair_at_its_rate_and_only_in_training():
    router = LanguageRouter(LANGUAGES)
    torch.manual_seed(0)
    routes = router.routes(["de"] * 20_000, 20_000, dropout=0.3)
    assert set(routes.tolist()) == {0, router.shared}
    assert abs(float((routes == router.shared).float().mean()) - 0.3) < 0.02
    model = small_model("model.multigate.language_dropout=1.0")
    feats, lengths = batch()
    assert model.train().parts(feats, lengths, ["de"] * 6).routes.tolist() == [3] * 6
    assert model.eval().parts(feats, lengths, ["de"] * 6).routes.tolist() == [0] * 6
    with pytest.raises(ValueError, match="2 languages for a batch of 6"):
        router.routes(["de", "tr"], 6)


def test_padding_frames_do_not_change_a_clip_embedding():
    model = small_model().eval()
    feats, lengths = batch(n=2, frames=60)
    longer = torch.cat([feats, torch.randn(2, 30, 64) * 5], dim=1)
    with torch.no_grad():
        a = model.embed(feats, lengths, ["de", "xx"])
        b = model.embed(longer, lengths, ["de", "xx"])
    assert torch.allclose(a, b, atol=1e-5)


def test_the_centroid_loss_matches_a_hand_computation():
    e = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 2.0], [-1.0, 0.0], [0.0, -1.0]])
    y = torch.tensor([0, 0, 1, 1, 2])  # class 2 has one clip: no centroid without it
    loss = CentroidSoftmaxLoss(4)(e, y)  # class 3 is absent: not a candidate

    unit = [v / math.hypot(*v) for v in e.tolist() for v in [np.array(v)]]
    c = {0: (unit[0] + unit[1]) / 2, 1: (unit[2] + unit[3]) / 2, 2: unit[4]}

    def cos(a, b):
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    terms = []
    for i, other in ((0, 1), (1, 0), (2, 3), (3, 2)):  # own centroid = the other member
        own = y[i].item()
        sims = {k: 10 * (cos(unit[i], unit[other]) if k == own else cos(unit[i], c[k])) - 5
                for k in (0, 1, 2)}
        terms.append(-sims[own] + math.log(sum(math.exp(s) for s in sims.values())))
    assert loss.item() == pytest.approx(np.mean(terms), rel=1e-5)


def test_the_centroid_loss_is_lower_when_classes_cluster():
    loss = CentroidSoftmaxLoss(2)
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    clustered = torch.tensor([[1, 0.1], [1, -0.1], [1, 0], [-1, 0.1], [-1, -0.1], [-1, 0]])
    mixed = clustered[[0, 3, 1, 4, 2, 5]]
    assert loss(clustered, y) < loss(mixed, y)


def test_the_weighted_auxiliary_loss_uses_the_configured_weight():
    feats, lengths = batch()
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    model = small_model("model.multigate.contrastive_weight=0.1").eval()
    emb = model.embed(feats, lengths)
    assert model.aux_loss(emb, y).item() == pytest.approx(0.1 * model.contrastive(emb, y).item())
    assert small_model("model.multigate.contrastive_weight=0").aux_loss(emb, y).item() == 0.0


def test_mfcc_is_an_orthonormal_dct_and_prosody_tracks_pitch():
    basis = dct_matrix(64, 64)
    assert torch.allclose(basis.T @ basis, torch.eye(64), atol=1e-5)
    flat = MFCC(64, 20)(torch.full((1, 3, 64), 2.0))
    assert flat[0, :, 0].gt(1.0).all() and flat[0, :, 1:].abs().max() < 1e-5

    logmel, prosody = LogMel(), Prosody()
    t = torch.arange(16_000) / 16_000

    def pitch_hz(f0):
        x = sum(torch.sin(2 * math.pi * k * f0 * t) / k for k in range(1, 6)) * 0.1
        return float(prosody(logmel(x[None].float()))[0, :, 2].mean().exp())

    low, high = pitch_hz(120.0), pitch_hz(240.0)
    assert low < high and 80 < low < 200 and 160 < high < 330


def test_ge2e_mel_from_our_log_mel_matches_the_direct_mel():
    t = torch.arange(16_000) / 16_000
    x = (sum(torch.sin(2 * math.pi * k * 180.0 * t) / k for k in range(1, 20)) * 0.05
         + 0.001 * torch.randn(16_000, generator=torch.Generator().manual_seed(0))).float()
    direct = ge2e.GE2EMel()(x[None])
    rebinned = ge2e.MelRebin()(LogMel()(x[None]))
    assert direct.shape == rebinned.shape == (1, 98, 40)
    strong = direct > 1e-3 * direct.max()
    ratio = (rebinned[strong] / direct[strong]).log().abs()
    assert float(ratio.median()) < 0.1


def weights_path() -> Path:
    explicit = os.environ.get("EDGE_SER_GE2E_WEIGHTS")
    if explicit:
        return Path(explicit)
    if find_spec("resemblyzer") is None:
        pytest.skip("resemblyzer's pretrained.pt is absent: pip install --no-deps "
                    "resemblyzer==0.1.4, or set EDGE_SER_GE2E_WEIGHTS to the file")
    return ge2e.packaged_weights_path()


def test_ge2e_loads_the_real_weights_and_gives_unit_norm_256_d_vectors():
    path = weights_path()
    network = ge2e.GE2ENetwork()
    before = network.linear.weight.clone()
    assert ge2e.load_pretrained(network, str(path)) == path
    reference = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
    assert not torch.equal(before, network.linear.weight)
    for name, tensor in network.state_dict().items():
        assert torch.equal(tensor, reference[name]), name
    mel = ge2e.GE2EMel()(torch.randn(3, 16_000, generator=torch.Generator().manual_seed(1)) * 0.1)
    with torch.no_grad():
        d = network(mel, torch.tensor([98, 60, 30]))
    assert d.shape == (3, 256)
    assert torch.allclose(d.norm(dim=1), torch.ones(3), atol=1e-5) and bool((d >= 0).all())
    # the d-vector at a clip's last valid frame is the d-vector of that clip alone
    with torch.no_grad():
        alone = network(mel[1:2, :60])
    assert torch.allclose(d[1], alone[0], atol=1e-5)


def test_ge2e_refuses_a_file_that_is_not_the_published_weights(tmp_path):
    fake = tmp_path / "pretrained.pt"
    torch.save({"model_state": ge2e.GE2ENetwork().state_dict()}, fake)
    with pytest.raises(ValueError, match="sha256 .* is not that of Resemblyzer 0.1.4"):
        ge2e.load_pretrained(ge2e.GE2ENetwork(), str(fake))
    with pytest.raises(FileNotFoundError, match="ge2e_weights: .* is not a file"):
        ge2e.load_pretrained(ge2e.GE2ENetwork(), str(tmp_path / "missing.pt"))


@pytest.mark.skipif(find_spec("resemblyzer") is not None, reason="resemblyzer is installed")
def test_missing_package_weights_name_what_to_install():
    cfg = small_config("model.multigate.ge2e_weights=package")
    with pytest.raises(FileNotFoundError, match="pip install --no-deps resemblyzer==0.1.4"):
        build_model(cfg, 64, 4, LANGUAGES, pretrained=True)


def test_the_ge2e_network_learns_at_its_own_rate():
    model = small_model("model.multigate.ge2e_lr_scale=0.01")
    fast, slow = model.optimizer_groups()
    assert fast["lr_scale"] == 1.0 and slow["lr_scale"] == 0.01
    assert {id(p) for p in slow["params"]} == {id(p) for p in model.ge2e.parameters()}
    ids = [id(p) for g in (fast, slow) for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    no_ge2e = small_model("model.multigate.streams=[tcn, mfcc]")
    assert len(no_ge2e.optimizer_groups()) == 1 and no_ge2e.stream_names == ("tcn", "mfcc")


def test_bad_stream_and_head_settings_are_refused_with_the_key():
    with pytest.raises(ValueError, match="model.multigate.streams .* must include tcn"):
        small_model("model.multigate.streams=[mfcc, ge2e]")
    with pytest.raises(ValueError, match="'2y64:gelu' is not DEPTHxWIDTH:ACTIVATION"):
        small_model("model.multigate.head=2y64:gelu")
    with pytest.raises(ValueError, match="language_heads: 'de' is not LANGUAGE="):
        parse_language_heads(("de",))
    with pytest.raises(ValueError, match="activation 'swish' is unknown"):
        parse_spec("1x8:swish")


def test_head_specs_build_the_layers_they_name():
    spec = parse_spec("2x32:gelu")
    assert spec == HeadSpec(2, 32, "gelu") and str(spec) == "2x32:gelu"
    head = build_head(spec, 16, 4, dropout=0.0)
    linears = [m for m in head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 32), (32, 32), (32, 4)]
    model = small_model("model.multigate.language_heads=[tr=0x0:linear]")
    assert len(model.heads[1]) == 1 and len(model.heads[0]) == 4  # tr linear; de 1x128:relu


def test_default_family_builds_todays_model_unchanged():
    assert ModelConfig().family == "tcn"
    torch.manual_seed(0)
    built = build_model(ModelConfig(), 64, 4, LANGUAGES, pretrained=True)
    torch.manual_seed(0)
    plain = EmotionModel(ModelConfig(), 64, 4)
    assert type(built) is EmotionModel
    assert all(torch.equal(a, b) for a, b in zip(built.state_dict().values(),
                                                 plain.state_dict().values()))


def rings_task(seed: int = 0) -> Task:
    """Two classes on concentric rings in 2 of 8 dimensions: no linear head separates them."""
    g = torch.Generator().manual_seed(seed)

    def part(n):
        y = torch.randint(0, 2, (n,), generator=g)
        angle = torch.rand(n, generator=g) * 2 * math.pi
        radius = 1.0 + y.float() + 0.15 * torch.randn(n, generator=g)
        x = torch.randn(n, 8, generator=g) * 0.3
        x[:, 0], x[:, 1] = radius * angle.cos(), radius * angle.sin()
        return x, y

    (tx, ty), (vx, vy) = part(300), part(200)
    return Task(tx, ty, vx, vy, 2)


def test_the_search_improves_over_a_linear_start():
    torch.set_num_threads(1)
    task = rings_task()
    linear = HeadSpec(0, 0, "linear")
    result = evolve(task, population=3, generations=3, children=2, start=[linear], steps=150)
    assert result.start_score == pytest.approx(score_spec(linear, task, steps=150))
    assert result.start_score < 0.7  # chance is 0.5
    assert result.best.depth >= 1 and result.best_score > 0.9
    assert result.evaluations <= 1 + 3 * 2
    assert [h["generation"] for h in result.history] == [0, 1, 2, 3]
    scores = [h["score"] for h in result.history]
    assert scores == sorted(scores)  # elitist: the best never gets worse


def test_the_search_space_mutates_one_gene_at_a_time():
    from edge_ser_train.multigate.search import SearchSpace

    space, rng = SearchSpace(), random.Random(0)
    spec = HeadSpec(2, 64, "relu")
    for _ in range(50):
        child = space.mutate(spec, rng)
        if child.depth == 0:
            continue
        changed = sum(a != b for a, b in zip((spec.depth, spec.width, spec.activation),
                                             (child.depth, child.width, child.activation)))
        assert changed == 1


def test_the_compute_count_covers_every_stream_at_its_frame_rate():
    from edge_ser_train.encoder import count_macs_per_second
    from edge_ser_train.multigate.compute import macs_per_second

    tcn_only = small_model("model.multigate.streams=[tcn]")
    tcn = count_macs_per_second(tcn_only.encoder, 100) + (16 * 64 + 64) * 100 / 2
    assert macs_per_second(tcn_only, 100) == round(tcn)  # attention scores at 100/stride
    with_ge2e = small_model("model.multigate.streams=[tcn, ge2e]")
    lstm = 4 * 256 * (40 + 256) + 2 * 4 * 256 * (256 + 256)
    ge2e_per_frame = 64 * 40 + lstm + 256 * 256 + (256 * 64 + 64)
    assert macs_per_second(with_ge2e, 100) == round(tcn + 100 * ge2e_per_frame)
