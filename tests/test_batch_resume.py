"""Resuming an interrupted batch: a rerun skips complete recordings, redoes the rest (also
after `kill -9`), and ends with complete outputs and no duplicates; `--force` redoes all."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes import fake_recognizer
from test_batch import write_bad_files, write_call

from edge_ser.events import read_jsonl
from edge_ser.recognizer import Recognizer
from edge_ser_export import cli

REPO = Path(__file__).resolve().parent.parent


def snapshot(out: Path) -> dict[str, bytes]:
    """Every output file by relative path, except batch.json (it records the worker count) and
    run.json (the timings and counts of the latest run)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in ("batch.json", "run.json")}


def summary_keys(out: Path) -> list[str]:
    with open(out / "summary.csv", newline="") as fh:
        return [row["key"] for row in csv.DictReader(fh)]


@pytest.fixture
def fake_model(monkeypatch):
    monkeypatch.setattr(Recognizer, "from_options",
                        classmethod(lambda cls, *a, config=None, **k: fake_recognizer(config)))


@pytest.fixture
def three_calls(tmp_path) -> Path:
    folder = tmp_path / "calls"
    for i, channels in enumerate((2, 1, 2)):
        write_call(folder / f"call{i}.wav", channels)
    return folder


def test_rerun_skips_complete_recordings_and_redoes_an_interrupted_one(fake_model, three_calls,
                                                                       tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["batch", str(three_calls), "--out", str(out), "--quiet"]) == 0
    before = snapshot(out)
    # a crash while call1 was being rewritten: no marker, half a file, a temp file left over
    folder = out / "recordings" / "call1"
    (folder / "complete.json").unlink()
    segments = folder / "segments.jsonl"
    segments.write_bytes(segments.read_bytes()[:40])
    (folder / ".summary.json.x1y2.tmp").write_text("{")
    (out / ".summary.csv.abcd.tmp").write_text("key")
    untouched = (out / "recordings" / "call0" / "segments.jsonl").stat().st_mtime_ns
    capsys.readouterr()
    assert cli.main(["batch", str(three_calls), "--out", str(out)]) == 0
    assert "(1 done, 2 already complete, 0 failed)" in capsys.readouterr().err
    assert snapshot(out) == before
    assert (out / "recordings" / "call0" / "segments.jsonl").stat().st_mtime_ns == untouched
    assert summary_keys(out) == ["call0", "call1", "call2"]


@pytest.mark.parametrize("damage", ["emptied", "same size, other bytes", "removed"])
def test_an_output_the_disk_lost_after_its_marker_redoes_the_recording(fake_model, three_calls,
                                                                       tmp_path, capsys,
                                                                       damage):
    """Recording outputs are renamed into place without fsync; after a power loss a file may
    come back empty or stale beside an intact marker. The marker's sizes and sha256s catch it."""
    out = tmp_path / "out"
    assert cli.main(["batch", str(three_calls), "--out", str(out), "--quiet"]) == 0
    before = snapshot(out)
    rttm = out / "recordings" / "call2" / "segments.rttm"
    if damage == "emptied":
        rttm.write_bytes(b"")
    elif damage == "removed":
        rttm.unlink()
    else:
        data = rttm.read_bytes()
        rttm.write_bytes(data[:-2] + (b"X\n" if data[-2:] != b"X\n" else b"Y\n"))
    capsys.readouterr()
    assert cli.main(["batch", str(three_calls), "--out", str(out)]) == 0
    assert "(1 done, 2 already complete, 0 failed)" in capsys.readouterr().err
    assert snapshot(out) == before


def test_recording_outputs_skip_fsync_and_batch_files_keep_it(fake_model, three_calls, tmp_path,
                                                            fsynced):
    out = tmp_path / "out"
    assert cli.main(["batch", str(three_calls), "--out", str(out), "--quiet"]) == 0
    assert not [p for p in fsynced if "/recordings/" in p]
    synced_names = {Path(p).name for p in fsynced}
    # batch-wide files: temporary name while synced, then their folder
    assert any(name.startswith(".summary.csv.") for name in synced_names)
    assert "out" in synced_names


def test_a_marker_without_digests_from_an_older_batch_redoes_the_recording(fake_model,
                                                                           three_calls,
                                                                           tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["batch", str(three_calls), "--out", str(out), "--quiet"]) == 0
    marker_path = out / "recordings" / "call0" / "complete.json"
    marker = json.loads(marker_path.read_text())
    marker["outputs"] = list(marker["outputs"])  # the older format: names only
    marker_path.write_text(json.dumps(marker))
    capsys.readouterr()
    assert cli.main(["batch", str(three_calls), "--out", str(out)]) == 0
    assert "(1 done, 2 already complete, 0 failed)" in capsys.readouterr().err
    assert isinstance(json.loads(marker_path.read_text())["outputs"], dict)


def test_force_redoes_everything_and_a_changed_config_redoes_what_it_changes(fake_model,
                                                                             three_calls,
                                                                             tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["batch", str(three_calls), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main(["batch", str(three_calls), "--out", str(out), "--force"]) == 0
    assert "(3 done, 0 already complete" in capsys.readouterr().err
    assert cli.main(["batch", str(three_calls), "--out", str(out),
                     "--set", "window.window_s=1.0"]) == 0
    assert "(3 done, 0 already complete" in capsys.readouterr().err
    assert "window_s: 1.0" in (out / "config.resolved.yaml").read_text()
    assert summary_keys(out) == ["call0", "call1", "call2"]


def test_a_failed_recording_is_retried_and_errors_are_not_repeated(fake_model, tmp_path):
    folder = tmp_path / "calls"
    write_call(folder / "good.wav", 1)
    write_bad_files(folder)
    out = tmp_path / "out"
    for _ in range(2):
        assert cli.main(["batch", str(folder), "--out", str(out), "--quiet"]) == 1
        errors = read_jsonl(out / "errors.jsonl")
        assert len(errors) == len({e["path"] for e in errors}) == 5
    shutil.rmtree(folder)
    write_call(folder / "good.wav", 1)
    assert cli.main(["batch", str(folder), "--out", str(out), "--quiet"]) == 0
    assert (out / "errors.jsonl").read_text() == ""


@pytest.fixture
def bundled_model():
    from edge_ser.package import DEFAULT_PACKAGE

    if not (DEFAULT_PACKAGE / "model.json").is_file():
        pytest.skip(f"no bundled model package at {DEFAULT_PACKAGE}")


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_a_batch_killed_with_sigkill_resumes_to_the_same_outputs(bundled_model, tmp_path,
                                                                 workers):
    calls = tmp_path / "calls"
    first = write_call(calls / "c00.wav", 2)
    for i in range(1, 40):
        shutil.copy(first, calls / f"c{i:02d}.wav")
    out = tmp_path / "out"
    command = [sys.executable, str(REPO / "main.py"), "batch", str(calls), "--out", str(out),
               "--quiet", "--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    process = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob("recordings/*/complete.json")) and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        done_at_kill = len(list(out.glob("recordings/*/complete.json")))
        assert 0 < done_at_kill < 40, "the batch was not interrupted mid-way"
        assert _group_ends(process.pid, within_s=10), "worker processes outlived the batch"
    finally:
        _kill_group(process.pid)
    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert summary_keys(out) == [f"c{i:02d}" for i in range(40)]
    assert not list(out.rglob("*.tmp"))
    reference = tmp_path / "reference"
    assert cli.main(["batch", str(calls), "--out", str(reference), "--quiet"]) == 0
    assert snapshot(out) == snapshot(reference)


def _group_ends(pgid: int, within_s: float) -> bool:
    """True once no process of the group (the batch and its workers) is left."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_a_replaced_model_package_redoes_the_recordings(fake_model, three_calls, tmp_path,
                                                        capsys):
    package = tmp_path / "package"
    package.mkdir()
    (package / "model.json").write_text('{"release": 1}')
    out = tmp_path / "out"
    command = ["batch", str(three_calls), "--out", str(out), "--model", str(package)]
    assert cli.main(command) == 0
    batch = json.loads((out / "batch.json").read_text())
    assert batch["model"] == str(package.resolve()) and batch["model_manifest_sha256"]
    assert cli.main(command) == 0
    assert "(0 done, 3 already complete" in capsys.readouterr().err
    (package / "model.json").write_text('{"release": 2}')
    assert cli.main(command) == 0
    assert "(3 done, 0 already complete" in capsys.readouterr().err


def test_a_different_file_under_the_same_name_is_processed_again(fake_model, three_calls,
                                                                 tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["batch", str(three_calls), "--out", str(out), "--quiet"]) == 0
    old = (out / "recordings" / "call1" / "segments.jsonl").read_text()
    write_call(three_calls / "call1.wav", 2)  # re-exported as stereo
    capsys.readouterr()
    assert cli.main(["batch", str(three_calls), "--out", str(out)]) == 0
    assert "(1 done, 2 already complete" in capsys.readouterr().err
    records = read_jsonl(out / "recordings" / "call1" / "segments.jsonl")
    assert {r["role"] for r in records} == {"agent", "customer"}
    assert (out / "recordings" / "call1" / "segments.jsonl").read_text() != old


def test_run_json_records_the_latest_run(fake_model, three_calls, tmp_path):
    """run.json says what this run did: a rerun over complete recordings does nothing new."""
    from edge_ser.batch.outputs import RUN_JSON

    out = tmp_path / "out"
    assert cli.main(["batch", str(three_calls), "--out", str(out), "--quiet"]) == 0
    totals = json.loads((out / RUN_JSON).read_text())
    assert (totals["files"], totals["done"], totals["failed"]) == (3, 3, 0)
    assert totals["audio_s"] > 0 and totals["elapsed_s"] > 0 and totals["x_real_time"] > 0
    assert cli.main(["batch", str(three_calls), "--out", str(out), "--quiet"]) == 0
    again = json.loads((out / RUN_JSON).read_text())
    assert (again["done"], again["already_complete"], again["audio_s"]) == (0, 3, 0.0)
