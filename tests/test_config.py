import pytest

from edge_ser.config import ConfigError, apply_overrides, load_config, save_resolved
from edge_ser_train.config import TrainConfig


def test_defaults_load_and_overrides_apply():
    cfg = load_config(TrainConfig, None, ["optim.epochs=7", "model.arch=gru",
                                          "data.labels=[a, b]"])
    assert cfg.optim.epochs == 7
    assert cfg.model.arch == "gru"
    assert cfg.data.labels == ("a", "b")


def test_unknown_key_names_the_key_and_allowed_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"optim\.epochz.*allowed keys: .*epochs"):
        load_config(TrainConfig, path)


def test_out_of_range_value_names_key_and_range():
    with pytest.raises(ConfigError, match=r"'augment.noise_prob' = 1.5 is out of range; "
                                          r"allowed \[0.0, 1.0\]"):
        load_config(TrainConfig, None, ["augment.noise_prob=1.5"])


def test_choice_and_type_errors():
    with pytest.raises(ConfigError, match="choose one of tcn, gru"):
        load_config(TrainConfig, None, ["model.arch=lstm"])
    with pytest.raises(ConfigError, match="'optim.epochs' must be an integer"):
        load_config(TrainConfig, None, ["optim.epochs=2.5"])
    with pytest.raises(ConfigError, match="'optim.epochs' must be an integer"):
        load_config(TrainConfig, None, ["optim.epochs=true"])
    with pytest.raises(ConfigError, match="must be a list"):
        load_config(TrainConfig, None, ["data.corpora=onlyone"])


def test_bad_override_syntax_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["optim.epochs"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides({"out_dir": "x"}, ["out_dir.sub=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(TrainConfig, bad)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(TrainConfig, tmp_path / "missing.yaml")


def test_config_is_frozen_and_resolved_round_trips(tmp_path):
    cfg = load_config(TrainConfig, None, ["optim.seed=3"])
    with pytest.raises(AttributeError):
        cfg.optim.seed = 4  # type: ignore[misc]
    written = save_resolved(cfg, tmp_path)
    assert load_config(TrainConfig, written) == cfg
    assert not list(tmp_path.glob("*.tmp"))


def test_shipped_configs_are_valid():
    from pathlib import Path

    from edge_ser.runtime_config import RuntimeConfig
    from edge_ser_export.config import ExportConfig
    from edge_ser_train.adapt_config import AdaptConfig

    # the protocol's config class lives in the repository's tools/, absent from an install
    ProtocolConfig = pytest.importorskip("tools.protocol").ProtocolConfig

    # each folder of configs/ holds the YAML of one config class
    classes = {"train": TrainConfig, "runtime": RuntimeConfig, "export": ExportConfig,
               "adapt": AdaptConfig, "protocol": ProtocolConfig}
    root = Path(__file__).parent.parent / "configs"
    for path in sorted(root.rglob("*.yaml")):
        load_config(classes[path.relative_to(root).parts[0]], path)


@pytest.mark.parametrize("kernels", ["numba", "numpy"])
def test_runtime_feature_kernels_accept_numba_and_numpy(kernels):
    from edge_ser.runtime_config import RuntimeConfig

    assert RuntimeConfig().features.kernels == "numpy"  # the default: no numba in the process
    cfg = load_config(RuntimeConfig, None, [f"features.kernels={kernels}"])
    assert cfg.features.kernels == kernels


def test_runtime_feature_kernels_reject_other_names():
    from edge_ser.runtime_config import RuntimeConfig

    for name in ("torch", "Numba", ""):
        with pytest.raises(ConfigError, match=r"'features\.kernels' = .* is not allowed; "
                                              r"choose one of numba, numpy"):
            load_config(RuntimeConfig, None, [f"features.kernels={name}"])
    with pytest.raises(ConfigError, match="'features.kernels' must be a string"):
        load_config(RuntimeConfig, None, ["features.kernels=1"])
