"""Batch inputs: files, folders, globs and manifests; channel roles; output names that never
leave the output folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_ser.batch.channels import (
    MONO_ROLES,
    STEREO_ROLES,
    RecordingError,
    parse_roles,
    resolve_roles,
)
from edge_ser.batch.inputs import InputError, collect_recordings, read_manifest
from edge_ser.batch.paths import recording_dir, safe_name


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_folders_are_searched_recursively_for_audio_and_globs_are_expanded(tmp_path):
    _touch(tmp_path / "calls" / "a.wav")
    _touch(tmp_path / "calls" / "day2" / "b.FLAC")
    _touch(tmp_path / "calls" / "notes.txt")
    _touch(tmp_path / "calls" / ".hidden" / "c.wav")
    _touch(tmp_path / "other" / "x.ogg")
    _touch(tmp_path / "other" / "y.ogg")
    recordings, problems = collect_recordings(
        [str(tmp_path / "calls"), str(tmp_path / "other" / "*.ogg"), str(tmp_path / "nope.wav"),
         str(tmp_path / "none" / "*.wav")])
    assert [Path(r.path).name for r in recordings] == ["a.wav", "b.FLAC", "x.ogg", "y.ogg"]
    assert [r.key for r in recordings] == ["a", "b", "x", "y"]
    assert [p.reason for p in problems] == ["no such file or folder",
                                            "no file matches this pattern"]


def test_a_folder_below_a_hidden_folder_is_still_searched(tmp_path):
    _touch(tmp_path / ".cache" / "calls" / "a.wav")
    recordings, problems = collect_recordings([str(tmp_path / ".cache" / "calls")])
    assert [Path(r.path).name for r in recordings] == ["a.wav"] and not problems


def test_the_output_folder_inside_an_input_folder_is_not_read_back(tmp_path):
    _touch(tmp_path / "a.wav")
    _touch(tmp_path / "out" / "recordings" / "a" / "old.wav")
    recordings, _ = collect_recordings([str(tmp_path)], exclude=tmp_path / "out")
    assert [Path(r.path).name for r in recordings] == ["a.wav"]
    recordings, _ = collect_recordings([f"{tmp_path}/**/*.wav"], exclude=tmp_path / "out")
    assert [Path(r.path).name for r in recordings] == ["a.wav"]


def test_the_same_file_twice_is_processed_once_and_equal_stems_get_distinct_keys(tmp_path):
    a = _touch(tmp_path / "x" / "call.wav")
    _touch(tmp_path / "y" / "call.wav")
    recordings, _ = collect_recordings([str(a), str(tmp_path)])
    keys = [r.key for r in recordings]
    assert len(recordings) == 2 and len(set(keys)) == 2
    assert all(k.startswith("call-") for k in keys)
    again, _ = collect_recordings([str(tmp_path)])  # keys do not depend on the input order
    assert sorted(r.key for r in again) == sorted(keys)


def test_csv_manifest_carries_call_id_roles_and_metadata(tmp_path):
    audio = _touch(tmp_path / "audio" / "c1.wav")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,call_id,channels,queue,agent_id\n"
                        "audio/c1.wav,CALL-1,\"customer=0,agent=1\",billing,a17\n"
                        f"{audio},CALL-2,,,\n")
    first, second = read_manifest(manifest)
    assert first.path == str(tmp_path / "audio" / "c1.wav") and first.call_id == "CALL-1"
    assert first.roles == (("customer", 0), ("agent", 1))
    assert first.metadata == {"queue": "billing", "agent_id": "a17"}
    assert second.roles is None and second.metadata == {}


def test_jsonl_manifest_takes_roles_as_a_mapping_and_a_metadata_object(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"path": "c.wav", "call_id": 7, "channels": {"agent": 1},
                                    "metadata": {"site": "lyon"}, "lang": "fr"}) + "\n\n")
    (rec,) = read_manifest(manifest)
    assert rec.call_id == "7" and rec.roles == (("agent", 1),)
    assert rec.metadata == {"lang": "fr", "site": "lyon"}


@pytest.mark.parametrize("text, message", [
    ("call_id\nx\n", "'path' column"),
    ("path,channels\na.wav,agent=zero\n", "bad entry"),
])
def test_bad_csv_manifests_are_errors_naming_the_problem(tmp_path, text, message):
    manifest = tmp_path / "m.csv"
    manifest.write_text(text)
    with pytest.raises(InputError, match=message):
        read_manifest(manifest)


def test_bad_jsonl_manifest_names_the_line(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"path": "a.wav"}\n{"path": \n')
    with pytest.raises(InputError, match=r"m\.jsonl:2: not valid JSON"):
        read_manifest(manifest)


def test_duplicate_call_ids_are_refused(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,call_id\na.wav,C\nb.wav,C\n")
    with pytest.raises(InputError, match="call id 'C'"):
        collect_recordings([str(manifest)])


@pytest.mark.parametrize("call_id", ["../../etc/passwd", "/abs/olute", "..", ".", "a/../../b",
                                     "C:\\calls\\x", "~/x", "\x00", "ça va?", "x" * 300])
def test_output_names_from_hostile_call_ids_stay_inside_the_output_folder(tmp_path, call_id):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"path": "../elsewhere/a.wav", "call_id": call_id}) + "\n")
    (rec,), _ = collect_recordings([str(manifest)])
    out = tmp_path / "out"
    folder = recording_dir(out, rec.key)
    assert folder.parent == (out / "recordings").resolve()
    assert rec.key == safe_name(rec.key) and not rec.key.startswith(".")
    assert len(rec.key) <= 80


def test_output_names_from_absolute_and_parent_paths_in_a_manifest_stay_inside(tmp_path):
    manifest = tmp_path / "sub" / "m.csv"
    manifest.parent.mkdir()
    manifest.write_text(f"path\n../../../x/..wav\n{tmp_path}/abs/..\n")
    recordings, _ = collect_recordings([str(manifest)])
    for rec in recordings:
        assert recording_dir(tmp_path / "out", rec.key).parent == \
            (tmp_path / "out" / "recordings").resolve()


def test_recording_dir_refuses_a_key_that_is_not_safe(tmp_path):
    for key in ("../x", "a/b", "..", ""):
        with pytest.raises(ValueError, match="outside"):
            recording_dir(tmp_path, key)


def test_roles_parse_and_resolve_by_channel_count():
    assert parse_roles("customer=1, agent=0") == (("agent", 0), ("customer", 1))
    assert resolve_roles(1, None, None) == MONO_ROLES
    assert resolve_roles(2, None, None) == STEREO_ROLES
    mapped = parse_roles("a=0,b=1,c=2")
    assert resolve_roles(3, None, mapped) == mapped
    assert resolve_roles(1, None, parse_roles("agent=0,customer=1")) == MONO_ROLES
    assert resolve_roles(4, parse_roles("x=3"), None) == (("x", 3),)


@pytest.mark.parametrize("text", ["", "agent", "agent=0,agent=1", "a=0,b=0", "a=-1",
                                  "a b=0"])
def test_bad_role_mappings_are_refused(text):
    with pytest.raises(ValueError, match="channel roles"):
        parse_roles(text)


def test_more_channels_than_roles_is_an_error_that_says_how_to_map_them():
    with pytest.raises(RecordingError, match="--channels"):
        resolve_roles(3, None, None)
    with pytest.raises(RecordingError, match="recording has 2 channel"):
        resolve_roles(2, parse_roles("agent=0,customer=2"), None)
