"""Every command takes `--config` / `--set` of its own config; without `--config` the built-in
defaults apply (no file is looked up in a repository), and the shipped YAML repeats them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edge_ser.config import load_config
from edge_ser.engine_build.config import EngineBuildConfig
from edge_ser.runtime_config import RuntimeConfig
from edge_ser_export.cli import build_parser, main
from edge_ser_export.config import ExportConfig

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _config_classes() -> dict[str, type]:
    from edge_ser_train.adapt_config import AdaptConfig
    from edge_ser_train.config import TrainConfig

    runtime = RuntimeConfig
    return {"train": TrainConfig, "adapt": AdaptConfig, "export package": ExportConfig,
            "export sweep": ExportConfig, "export trt": EngineBuildConfig,
            "export check": EngineBuildConfig, "stream": runtime, "batch": runtime,
            "mic": runtime, "eval": runtime, "bench stream": runtime, "bench batch": runtime}


def _commands() -> dict[str, object]:
    """{"export trt": its parser, ...} for every command and subcommand."""
    out = {}
    for name, parser in build_parser()._subparsers._group_actions[0].choices.items():
        stages = [a for a in parser._actions if isinstance(getattr(a, "choices", None), dict)]
        if stages:
            out.update({f"{name} {stage}": sub for stage, sub in stages[0].choices.items()})
        else:
            out[name] = parser
    return out


def _option(parser, flag: str):
    return next(a for a in parser._actions if flag in a.option_strings)


def test_every_command_takes_config_and_set_defaulting_to_the_built_in_values():
    commands = _commands()
    assert set(commands) == set(_config_classes())
    for name, parser in commands.items():
        assert _option(parser, "--config").default is None, name
        assert _option(parser, "--set").default == [], name


def test_each_set_example_is_a_valid_key_of_the_commands_own_config():
    classes = _config_classes()
    for name, parser in _commands().items():
        example = re.search(r"e\.g\. (\S+=\S+)", _option(parser, "--set").help).group(1)
        key = example.split("=")[0]
        load_config(classes[name], None, [example])  # raises ConfigError on an unknown key
        assert key.split(".")[0] in {f.name for f in classes[name].__dataclass_fields__
                                     .values()}, (name, example)


@pytest.mark.parametrize("cls,shipped", [(RuntimeConfig, "runtime/default.yaml"),
                                         (ExportConfig, "export/default.yaml")])
def test_built_in_defaults_equal_the_shipped_yaml(cls, shipped):
    assert load_config(cls, CONFIGS / shipped) == cls()


def test_the_shipped_yaml_comes_with_the_package():
    """Installed (wheel or editable) or not, edge_ser/configs/ holds the documented copies."""
    import importlib.resources

    shipped = importlib.resources.files("edge_ser") / "configs"
    for path in sorted(CONFIGS.rglob("*.yaml")):
        copy = shipped.joinpath(*path.relative_to(CONFIGS).parts)
        assert copy.read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), path


def test_export_check_reports_the_engine_build_settings_it_was_given(capsys):
    assert main(["export", "check", "--set", "tensorrt.workspace_mib=1024"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["engine_build"]["tensorrt"]["workspace_mib"] == 1024
    assert summary["graphs"]["int8"]["quantized_ops"] > 0


@pytest.mark.parametrize("argv,bad", [
    (["eval", "--data", "."], "vad.aggressivenes"), (["bench", "stream"], "vad.aggressivenes"),
    (["bench", "batch", "."], "window.hop"), (["stream", "x.wav"], "vad.aggressivenes"),
    (["export", "check"], "tensorrt.workspace_mb")])
def test_a_bad_set_is_one_line_naming_the_key(argv, bad, capsys):
    assert main([*argv, "--set", f"{bad}=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"unknown key '{bad}'" in err[0], err


def test_eval_takes_the_runtime_config(tmp_path, capsys):
    """A runtime config file is read, and its resolved values are saved beside the scores."""
    from edge_ser.package import DEFAULT_PACKAGE

    corpus = tmp_path / "one"
    corpus.mkdir()
    import numpy as np
    import soundfile as sf

    t = np.arange(16000) / 16000
    sf.write(corpus / "a.wav", (0.1 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000)
    (corpus / "labels.csv").write_text("file,corpus,language,speaker,emotion4\n"
                                       "a.wav,one,xx,1,angry\n")
    config = tmp_path / "runtime.yaml"
    config.write_text("features:\n  kernels: numba\n")
    out = tmp_path / "out"
    assert main(["eval", "--model", str(DEFAULT_PACKAGE), "--data", str(corpus), "--config",
                 str(config), "--json", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["scores"][str(corpus)]["count"] == 1
    assert "kernels: numba" in (out / "config.resolved.yaml").read_text()


def test_eval_of_a_checkpoint_without_the_training_layer_is_a_usage_error(tmp_path):
    import argparse

    from edge_ser.commands import eval as eval_command
    from edge_ser.commands import execute

    parser = argparse.ArgumentParser()  # the runtime's eval alone, no training layer
    eval_command.add_parser(parser.add_subparsers(dest="command"))
    (tmp_path / "m.pt").write_bytes(b"")
    args = parser.parse_args(["eval", "--model", str(tmp_path / "m.pt"), "--data", "."])
    assert execute(args) == 2
