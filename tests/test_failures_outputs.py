"""Output problems end in one line naming the path and the problem, never a traceback: a full
disk, an output folder under a file or in /proc, --jsonl onto a folder, eval --out onto a file.
A batch that cannot write one recording records it and goes on; when nothing can be written it
stops cleanly with its summary line."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from fakes import fake_recognizer
from test_batch import write_call

from edge_ser.batch import outputs
from edge_ser.events import read_jsonl
from edge_ser.recognizer import Recognizer
from edge_ser_export import cli

DEMO = Path(__file__).resolve().parent.parent / "edge_ser" / "demo" / "conversation.flac"


@pytest.fixture
def fake_model(monkeypatch):
    monkeypatch.setattr(Recognizer, "from_options",
                        classmethod(lambda cls, *a, config=None, **k: fake_recognizer(config)))


@pytest.fixture
def calls(tmp_path) -> Path:
    folder = tmp_path / "calls"
    for i in range(5):
        write_call(folder / f"call{i}.wav", 1 + i % 2)
    return folder


def last_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line]
    assert "Traceback" not in err, err
    return lines[-1]


def full_disk_for(monkeypatch, names: set[str] | None):
    """write_bytes_atomic raises ENOSPC for the named recordings' files (None: for every file
    of every recording), as a full disk does."""
    real = outputs.write_bytes_atomic

    def write(path, data, durable=True):
        path = Path(path)
        if path.parent.parent.name == "recordings" and (names is None
                                                         or path.parent.name in names):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data, durable)

    monkeypatch.setattr(outputs, "write_bytes_atomic", write)


def test_a_recording_that_cannot_be_written_is_recorded_and_the_batch_goes_on(
        fake_model, calls, tmp_path, monkeypatch, capsys):
    full_disk_for(monkeypatch, {"call1"})
    out = tmp_path / "out"
    assert cli.main(["batch", str(calls), "--out", str(out), "--quiet"]) == 1
    last = last_line(capsys.readouterr().err)
    assert last.startswith("batch: finished 5/5 files (4 done, 0 already complete, 1 failed)")
    (error,) = read_jsonl(out / "errors.jsonl")
    assert error["kind"] == "output" and error["key"] == "call1"
    assert "No space left on device" in error["reason"] and "call1" in error["reason"]
    done = sorted(p.parent.name for p in out.glob("recordings/*/complete.json"))
    assert done == ["call0", "call2", "call3", "call4"]
    # nothing half-written stays behind, and the rerun (space freed) finishes the batch
    assert not list(out.rglob("*.tmp"))
    monkeypatch.undo()
    fake_model_again(monkeypatch)
    assert cli.main(["batch", str(calls), "--out", str(out), "--quiet"]) == 0
    assert (out / "recordings" / "call1" / "complete.json").is_file()


def fake_model_again(monkeypatch):
    monkeypatch.setattr(Recognizer, "from_options",
                        classmethod(lambda cls, *a, config=None, **k: fake_recognizer(config)))


def test_a_full_disk_stops_the_batch_cleanly_with_its_summary(fake_model, calls, tmp_path,
                                                              monkeypatch, capsys):
    out = tmp_path / "out"
    full_disk_for(monkeypatch, None)
    real_errors = outputs.write_errors
    monkeypatch.setattr(outputs, "write_errors", lambda *a: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) if a[1] else real_errors(*a))
    assert cli.main(["batch", str(calls), "--out", str(out), "--quiet"]) == 1
    last = last_line(capsys.readouterr().err)
    assert last.startswith("batch: stopped 3/5 files (0 done, 0 already complete, 3 failed)")
    assert "stopped: 3 recordings in a row could not be written" in last
    assert "No space left on device" in last and "2 not processed" in last
    assert "errors.jsonl: cannot write (No space left on device)" in last
    # run.json and summary.csv were still written (only the recordings' files were refused)
    assert json.loads((out / "run.json").read_text())["failed"] == 3


def test_a_full_disk_in_a_real_small_file_system(fake_model, calls, tmp_path, capsys):
    """A 64 KiB tmpfs: the batch stops with one line instead of a traceback."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        (mount / "filler").write_bytes(b"\0" * 56 * 1024)
        status = cli.main(["batch", str(calls), "--out", str(mount / "out"), "--quiet"])
        err = capsys.readouterr().err
        last = last_line(err)
        assert status in (1, 2)
        assert "No space left on device" in last
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize("where", ["under_a_file", "proc", "a_file"])
def test_an_unusable_out_folder_is_one_line_before_any_work(fake_model, calls, tmp_path, capsys,
                                                           where):
    (tmp_path / "plain").write_text("x")
    out = {"under_a_file": tmp_path / "plain" / "out", "proc": Path("/proc/edge-ser-out"),
           "a_file": tmp_path / "plain"}[where]
    assert cli.main(["batch", str(calls), "--out", str(out), "--quiet"]) == 2
    line = last_line(capsys.readouterr().err)
    assert line.startswith(f"edge-ser batch: error: --out {out}")
    assert ("cannot write there" in line) or ("is a file" in line)


def test_stream_jsonl_onto_a_folder_or_into_proc_is_one_line(fake_model, tmp_path, capsys):
    assert cli.main(["stream", str(DEMO), "--jsonl", str(tmp_path), "--quiet"]) == 2
    assert last_line(capsys.readouterr().err) == (
        f"edge-ser stream: error: --jsonl {tmp_path} is a folder; give a file path, e.g. "
        f"{tmp_path / 'events.jsonl'}")
    assert cli.main(["stream", str(DEMO), "--jsonl", "/proc/edge-ser/x.jsonl", "--quiet"]) == 2
    line = last_line(capsys.readouterr().err)
    assert line.startswith("edge-ser stream: error: --jsonl /proc/edge-ser/x.jsonl: cannot "
                           "write there (")


def test_stream_jsonl_into_a_missing_folder_creates_it(fake_model, tmp_path, capsys):
    target = tmp_path / "new" / "deeper" / "events.jsonl"
    assert cli.main(["stream", str(DEMO), "--jsonl", str(target), "--quiet"]) == 0
    assert read_jsonl(target) and (target.parent / "events.config.resolved.yaml").is_file()


def test_eval_out_onto_a_file_fails_before_scoring(tmp_path, capsys, monkeypatch):
    from edge_ser.commands import eval as eval_command

    scored = []
    monkeypatch.setattr(eval_command, "_score_package", lambda args: scored.append(1) or {})
    (tmp_path / "scores").write_text("not a folder")
    assert cli.main(["eval", "--data", str(tmp_path), "--out", str(tmp_path / "scores")]) == 2
    assert last_line(capsys.readouterr().err) == (
        f"edge-ser eval: error: --out {tmp_path / 'scores'} is a file; give a folder for the "
        "scores")
    assert scored == []
    assert cli.main(["eval", "--data", str(tmp_path), "--out", "/proc/edge-ser-scores"]) == 2
    assert "cannot create the folder" in last_line(capsys.readouterr().err)
    assert scored == []


def test_stream_jsonl_on_a_disk_that_fills_up_is_one_line(fake_model, tmp_path, capsys,
                                                          monkeypatch):
    from edge_ser.events import JsonlWriter

    def full(self, event, **extra):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(JsonlWriter, "write", full)
    target = tmp_path / "events.jsonl"
    assert cli.main(["stream", str(DEMO), "--jsonl", str(target), "--quiet"]) == 1
    assert last_line(capsys.readouterr().err) == (
        f"edge-ser stream: error: --jsonl {target}: cannot write (No space left on device)")
