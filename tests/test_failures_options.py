"""Bad options and config values are one line naming the option or key and what is allowed,
checked before any work: counts are bounded, non-finite config values are refused in every
config, and adapt reads --export-set before it trains."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_ser.commands.common import MAX_THREADS, MAX_WORKERS
from edge_ser.config import ConfigError, load_config
from edge_ser.runtime_config import RuntimeConfig
from edge_ser_export import cli
from edge_ser_export.config import ExportConfig
from edge_ser_train.adapt_config import AdaptConfig
from edge_ser_train.config import TrainConfig

CONFIGS = (RuntimeConfig, TrainConfig, AdaptConfig, ExportConfig)


def float_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of a float field of the config class `cls`."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hint):
            keys.extend(float_keys(hint, key + "."))
        elif hint is float:
            keys.append(key)
    return keys


ALL_FLOAT_KEYS = [(cls, key) for cls in CONFIGS for key in float_keys(cls)]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_every_config_has_float_keys_to_check():
    assert {cls for cls, _ in ALL_FLOAT_KEYS} == set(CONFIGS)
    assert ("window.window_s" in {k for _, k in ALL_FLOAT_KEYS}
            and "tracker.min_similarity" in {k for _, k in ALL_FLOAT_KEYS})


@pytest.mark.parametrize(("cls", "key"), ALL_FLOAT_KEYS,
                         ids=[f"{c.__name__}:{k}" for c, k in ALL_FLOAT_KEYS])
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_config_values_are_refused_naming_the_key(cls, key, value):
    with pytest.raises(ConfigError, match=rf"'{key}' = -?(nan|inf) is not a finite number; "
                                          r"allowed: a finite number in \["):
        load_config(cls, None, [f"{key}={value}"])


def test_the_nan_window_that_failed_deep_inside_is_refused_at_the_command_line(capsys):
    assert cli.main(["stream", "x.wav", "--set", "window.window_s=.nan"]) == 2
    line = one_line_error(capsys)
    assert "'window.window_s' = nan is not a finite number" in line
    assert cli.main(["stream", "x.wav", "--set", "tracker.min_similarity=.nan"]) == 2
    assert "'tracker.min_similarity' = nan is not a finite number" in one_line_error(capsys)


@settings(max_examples=40, deadline=None)
@given(st.one_of(st.integers(max_value=0), st.integers(min_value=MAX_THREADS + 1)))
def test_threads_out_of_range_is_refused_with_the_range(threads):
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = cli.main(["stream", "missing.wav", "--threads", str(threads)])
    assert status == 2
    assert err.getvalue().strip() == (f"edge-ser stream: error: --threads {threads} is out of "
                                      f"range; allowed 1 to {MAX_THREADS}")


@pytest.mark.parametrize(("argv", "message"), [
    (["batch", "x", "--out", "o", "--workers", "100000"],
     f"--workers 100000 is out of range; allowed 1 to {MAX_WORKERS}"),
    (["batch", "x", "--out", "o", "--threads", "100000"],
     f"--threads 100000 is out of range; allowed 1 to {MAX_THREADS}"),
    (["eval", "--data", "x", "--threads", "0"], f"--threads 0 is out of range; allowed 1 to "
     f"{MAX_THREADS}"),
    (["stream", "x.wav", "--block-ms", "0"], "--block-ms 0 is out of range; allowed 1 to 60000"),
    (["mic", "--max-seconds", "nan"], "--max-seconds nan is out of range; allowed 0.01 to "
     "604800.0"),
    (["mic", "--max-seconds", "-1"], "--max-seconds -1.0 is out of range"),
    (["mic", "--rate", "100000000"], "--rate 100000000 is out of range; allowed 4000 to 384000"),
])
def test_count_options_are_bounded_before_any_work(argv, message, capsys, tmp_path,
                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)  # "o" must not be created: nothing runs
    assert cli.main(argv) == 2
    line = one_line_error(capsys)
    assert message in line and line.startswith(f"edge-ser {argv[0]}: error: ")
    assert not (tmp_path / "o").exists()


def test_threads_within_range_is_not_refused():
    from edge_ser.commands.common import UsageError, check_range

    check_range("--threads", MAX_THREADS, 1, MAX_THREADS)
    with pytest.raises(UsageError):
        check_range("--threads", math.inf, 1, MAX_THREADS)


def test_adapt_reads_export_set_before_any_work(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch", reason="adapt needs torch: the [train] extra")
    import edge_ser_export.adapt_job as adapt_job

    started = []
    monkeypatch.setattr(adapt_job, "run_adaptation", lambda *a, **k: started.append(a))
    (tmp_path / "calls").mkdir()
    assert cli.main(["adapt", "--target", str(tmp_path / "calls"), "--out",
                     str(tmp_path / "out"), "--export-set", "gate.no_such_key=1"]) == 2
    line = one_line_error(capsys)
    assert line.startswith("edge-ser adapt: error: --export-set: ")
    assert "unknown key 'gate.no_such_key'" in line
    assert started == []
    assert cli.main(["adapt", "--target", str(tmp_path / "calls"), "--out",
                     str(tmp_path / "out"), "--export-set", "gate.min_agreement=.nan"]) == 2
    assert "'gate.min_agreement' = nan is not a finite number" in one_line_error(capsys)
    assert started == []
