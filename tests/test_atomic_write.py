"""Atomic writes: the target is replaced whole or not at all, with the mode a plain open()
would give it, and fsynced (file, then folder) only when durable."""

from __future__ import annotations

import itertools
import os
import stat

import pytest

from edge_ser import atomic_write
from edge_ser.atomic_write import write_bytes_atomic, write_text_atomic


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_the_file_gets_the_mode_the_umask_gives(tmp_path, umask, mode):
    target = tmp_path / "out.json"
    previous = os.umask(umask)
    try:
        write_text_atomic(target, "{}\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert target.read_text() == "{}\n"


@pytest.mark.parametrize("durable", [True, False])
def test_fsync_only_when_durable(tmp_path, fsynced, durable):
    write_bytes_atomic(tmp_path / "a.bin", b"abc", durable=durable)
    if durable:  # the temporary file, then the folder after the rename
        assert len(fsynced) == 2 and fsynced[1] == str(tmp_path)
        assert os.path.basename(fsynced[0]).startswith(".a.bin.")
    else:
        assert fsynced == []
    assert (tmp_path / "a.bin").read_bytes() == b"abc"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "summary.csv"
    target.write_text("old")
    with pytest.raises(TypeError):
        write_bytes_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.csv"]


def test_a_leftover_temporary_of_the_same_name_is_left_alone(tmp_path, monkeypatch):
    # an earlier process with this process id crashed after creating its first temporary
    monkeypatch.setattr(atomic_write, "_TEMPORARY_NUMBERS", itertools.count())
    leftover = tmp_path / f".out.json.{os.getpid()}.0.tmp"
    leftover.write_text("stale")
    write_text_atomic(tmp_path / "out.json", "new")
    assert (tmp_path / "out.json").read_text() == "new"
    assert leftover.read_text() == "stale"  # not opened, not truncated
