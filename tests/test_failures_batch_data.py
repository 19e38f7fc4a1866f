"""No batch run overwrites another: a different input set into the same --out is refused
without --force, a completed recording of another input file is never replaced (both are
kept), resume of the same inputs stays byte-identical; leftovers are cleaned and skipped folder
entries are listed in errors.jsonl."""

from __future__ import annotations

import json
import os
import string

import pytest
from fakes import fake_recognizer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_batch import write_call
from test_batch_resume import snapshot

from edge_ser.batch.inputs import collect_recordings
from edge_ser.batch.out_folder import input_set
from edge_ser.events import read_jsonl
from edge_ser.recognizer import Recognizer
from edge_ser_export import cli


@pytest.fixture
def fake_model(monkeypatch):
    monkeypatch.setattr(Recognizer, "from_options",
                        classmethod(lambda cls, *a, config=None, **k: fake_recognizer(config)))


def batch(*argv: str) -> int:
    return cli.main(["batch", *argv, "--quiet"])


def test_a_different_input_set_is_refused_and_force_keeps_both(fake_model, tmp_path, capsys):
    first, second = tmp_path / "monday", tmp_path / "tuesday"
    write_call(first / "call.wav", 1)
    write_call(first / "other.wav", 2)
    write_call(second / "call.wav", 2)  # same name, another recording
    out = tmp_path / "out"
    assert batch(str(first), "--out", str(out)) == 0
    before = snapshot(out)
    recording = out / "recordings" / "call"
    owner = json.loads((recording / "complete.json").read_text())["source"]["realpath"]
    assert owner == os.path.realpath(first / "call.wav")
    capsys.readouterr()

    assert batch(str(second), "--out", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"edge-ser batch: error: --out {out} holds the results of another set of "
                   "inputs; rerun with those inputs to resume it, choose another --out, or "
                   "pass --force to add these recordings beside them (a recording of another "
                   "input file is never replaced)")
    assert snapshot(out) == before  # nothing touched

    assert batch(str(second), "--out", str(out), "--force") == 0
    # monday's call is intact; tuesday's got a key of its own
    assert all(snapshot(out)[name] == data for name, data in before.items()
               if name.startswith("recordings/"))
    keys = sorted(p.name for p in (out / "recordings").iterdir())
    assert len(keys) == 3 and "call" in keys and "other" in keys
    (new,) = [k for k in keys if k.startswith("call-")]
    moved = json.loads((out / "recordings" / new / "complete.json").read_text())
    assert moved["source"]["realpath"] == os.path.realpath(second / "call.wav")

    # both input sets now resume byte-identically, without --force
    after = snapshot(out)
    assert batch(str(first), "--out", str(out)) == 0
    assert batch(str(second), "--out", str(out)) == 0
    assert {k: v for k, v in snapshot(out).items() if k.startswith("recordings/")} == \
        {k: v for k, v in after.items() if k.startswith("recordings/")}


def test_a_folder_that_gains_files_is_the_same_input(fake_model, tmp_path):
    folder = tmp_path / "drop"
    write_call(folder / "a.wav", 1)
    out = tmp_path / "out"
    assert batch(str(folder), "--out", str(out)) == 0
    write_call(folder / "b.wav", 1)
    assert batch(str(folder), "--out", str(out)) == 0
    assert {p.name for p in (out / "recordings").iterdir()} == {"a", "b"}


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(string.ascii_lowercase + "/", min_size=1, max_size=12), min_size=1,
                max_size=5))
def test_the_input_set_ignores_order_and_repeats(tmp_path, paths):
    args = [str(tmp_path / p) for p in paths]
    assert input_set(args) == input_set(list(reversed(args)) + args[:1])
    assert input_set(args) != input_set([*args, str(tmp_path / "another-one")])


def test_leftover_temporaries_in_recording_folders_are_removed(fake_model, tmp_path):
    folder = tmp_path / "calls"
    write_call(folder / "a.wav", 1)
    out = tmp_path / "out"
    assert batch(str(folder), "--out", str(out)) == 0
    before = snapshot(out)
    leftover = out / "recordings" / "a" / ".segments.jsonl.999.0.tmp"
    leftover.write_text("half")
    stale = out / "recordings" / "gone"  # a recording no longer in the inputs
    stale.mkdir()
    (stale / ".summary.json.998.3.tmp").write_text("half")
    assert batch(str(folder), "--out", str(out)) == 0
    assert not leftover.exists() and not list(stale.iterdir())
    assert {k: v for k, v in snapshot(out).items() if "gone" not in k} == before


def test_unfollowable_links_and_special_files_are_listed_in_errors(fake_model, tmp_path, capsys):
    folder = tmp_path / "calls"
    write_call(folder / "good.wav", 1)
    os.symlink("loop.wav", folder / "loop.wav")
    os.symlink("nowhere.wav", folder / "dangling.flac")
    os.mkfifo(folder / "pipe.wav")
    (folder / ".hidden").mkdir()
    os.symlink("x.wav", folder / ".hidden" / "x.wav")  # hidden: not an input at all
    out = tmp_path / "out"
    assert batch(str(folder), "--out", str(out)) == 1
    errors = {e["path"]: e for e in read_jsonl(out / "errors.jsonl")}
    assert set(errors) == {str(folder / n) for n in ("loop.wav", "dangling.flac", "pipe.wav")}
    assert errors[str(folder / "loop.wav")]["reason"] == (
        "skipped: a symbolic link that cannot be followed (Too many levels of symbolic links)")
    assert errors[str(folder / "dangling.flac")]["reason"] == (
        "skipped: a symbolic link that cannot be followed (No such file or directory)")
    assert errors[str(folder / "pipe.wav")]["reason"] == "skipped: not a regular file"
    assert all(e["kind"] == "input" for e in errors.values())
    assert (out / "recordings" / "good" / "complete.json").is_file()
    assert "Traceback" not in capsys.readouterr().err


def test_a_symlink_loop_beside_the_output_folder_does_not_break_collection(tmp_path):
    folder = tmp_path / "calls"
    write_call(folder / "good.wav", 1)
    os.symlink("loop.wav", folder / "loop.wav")
    recordings, problems = collect_recordings([str(folder)], exclude=folder / "out")
    assert [r.path for r in recordings] == [str(folder / "good.wav")]
    assert [p.input for p in problems] == [str(folder / "loop.wav")]
