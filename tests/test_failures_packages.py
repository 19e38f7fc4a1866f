"""An unfinished package never loads: the export writes model.json last, after every gate, and
the work folders a killed export or adaptation leaves beside OUT are removed by the next run.
No pickle is loaded anywhere in the tree."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_adapt import tiny_checkpoint, write_recordings

from edge_ser.package import MANIFEST_NAME, PackageError, load_package
from edge_ser_export import package_builder
from edge_ser_export.cli import main
from edge_ser_export.package_builder import remove_abandoned

REPO = Path(__file__).resolve().parent.parent


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_abandoned_work_folders_are_removed_and_live_ones_kept(tmp_path):
    out = tmp_path / "pkg"
    gone = dead_pid()
    abandoned = [tmp_path / f".pkg.staging.{gone}.a1", tmp_path / f".pkg.adapt.{gone}.b2",
                 tmp_path / ".pkg.staging.k2j3h4x_"]  # an older name without a process id
    live = [tmp_path / f".pkg.staging.{os.getpid()}.c3", tmp_path / f".other.staging.{gone}.d",
            tmp_path / "pkg"]
    for folder in abandoned + live:
        folder.mkdir()
        (folder / "encoder.onnx").write_bytes(b"x")
    assert sorted(remove_abandoned(out)) == sorted(abandoned)
    assert not any(f.exists() for f in abandoned) and all(f.exists() for f in live)


def test_a_staging_folder_without_its_manifest_is_refused_as_unfinished(tmp_path):
    staging = tmp_path / f".pkg.staging.{dead_pid()}.x"
    staging.mkdir()
    (staging / "encoder.onnx").write_bytes(b"x")
    with pytest.raises(PackageError, match=r"model.json: missing: an export that did not "
                                           r"finish"):
        load_package(staging)


def test_an_export_stopped_at_the_gate_leaves_no_loadable_package(tmp_path, monkeypatch,
                                                                  capsys):
    write_recordings(tmp_path / "calls", n_files=4)
    tiny_checkpoint(tmp_path / "start.pt", with_bank=True)
    out = tmp_path / "adapted"
    leftover = tmp_path / f".adapted.adapt.{dead_pid()}.zz"  # a killed earlier adaptation
    leftover.mkdir()
    (leftover / "model.pt").write_bytes(b"x")
    seen = {}

    def stopped_gate(*args, **kwargs):  # the process dies here, at the INT8 gate
        (staging,) = tmp_path.glob(".adapted.staging.*")
        seen["files"] = sorted(p.name for p in staging.iterdir())
        try:
            load_package(staging)
        except PackageError as exc:
            seen["error"] = str(exc)
        raise KeyboardInterrupt

    monkeypatch.setattr(package_builder.evaluate, "agreement_gate", stopped_gate)
    status = main(["adapt", "--target", str(tmp_path / "calls"), "--out", str(out),
                   "--model", str(tmp_path / "start.pt"), "--set", "optim.epochs=1",
                   "--set", "optim.threads=1", "--set", "target.min_segments=4"])
    assert status == 130
    assert not leftover.exists()
    assert f"adapt: removed {leftover}" in capsys.readouterr().err
    assert "encoder.int8.onnx" in seen["files"] and MANIFEST_NAME not in seen["files"]
    assert "an export that did not finish" in seen["error"]
    assert not out.exists() and not list(tmp_path.glob(".adapted.*"))


def test_nothing_in_the_tree_loads_pickles():
    pattern = re.compile(r"weights_only\s*=\s*False|allow_pickle\s*=\s*True|pickle\.loads?\(|"
                         r"import pickle|import dill|cloudpickle\.load")
    offenders = []
    for folder in ("edge_ser", "train", "export", "tools", "main.py"):
        root = REPO / folder
        for path in ([root] if root.is_file() else sorted(root.rglob("*.py"))):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []
