"""The dataclass defaults are the defaults: each `configs/<kind>/default.yaml` is their
documented copy, with every key and each key's default value, and nothing else."""

from pathlib import Path

import pytest
import yaml

from edge_ser.config import load_config, to_dict
from edge_ser.runtime_config import RuntimeConfig
from edge_ser_export.config import ExportConfig
from edge_ser_train.adapt_config import AdaptConfig
from edge_ser_train.config import TrainConfig

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
DEFAULTS = {"adapt": AdaptConfig, "train": TrainConfig, "runtime": RuntimeConfig,
            "export": ExportConfig}


def flat(tree: dict, prefix: str = "") -> dict:
    """{"a.b": value} of a nested mapping; lists become tuples, as the dataclasses hold them."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return out


@pytest.mark.parametrize("kind", sorted(DEFAULTS))
def test_the_default_yaml_is_a_copy_of_the_dataclass_defaults_every_key(kind):
    path = CONFIGS / kind / "default.yaml"
    written = flat(yaml.safe_load(path.read_text()))
    defaults = flat(to_dict(DEFAULTS[kind]()))
    assert sorted(set(defaults) - set(written)) == [], f"{path}: keys missing"
    assert sorted(set(written) - set(defaults)) == [], f"{path}: keys the dataclass lacks"
    differ = {k: (written[k], defaults[k]) for k in defaults if written[k] != defaults[k]}
    assert differ == {}, f"{path}: values that differ from the defaults (file, dataclass)"
    assert load_config(DEFAULTS[kind], path) == DEFAULTS[kind]()


def test_an_experiment_file_holds_only_its_changes_to_the_defaults():
    """table.yaml and release.yaml name what they change and inherit the rest."""
    for kind, name in (("adapt", "table"), ("train", "release")):
        path = CONFIGS / kind / f"{name}.yaml"
        written = flat(yaml.safe_load(path.read_text()))
        defaults = flat(to_dict(DEFAULTS[kind]()))
        assert written and all(written[k] != defaults[k] for k in written), path
