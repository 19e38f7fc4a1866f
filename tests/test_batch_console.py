"""What `batch` prints: its own progress only, and where the outputs are as an absolute path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from synth import DEMO_AUDIO

from edge_ser_export import cli

REPO = Path(__file__).resolve().parent.parent


def test_the_final_line_names_the_output_folder_absolutely(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["batch", str(DEMO_AUDIO), "--out", "results"]) == 0
    final = capsys.readouterr().err.strip().splitlines()[-1]
    assert final.startswith("batch: finished 1/1 files")
    assert final.endswith(f"outputs in {tmp_path / 'results'}")


@pytest.mark.slow
def test_the_ray_engine_prints_only_the_batch_progress(tmp_path):
    pytest.importorskip("ray.data", reason="--engine ray needs Ray Data: pip install 'ray[data]'")
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_BACKEND_LOG_LEVEL")}
    done = subprocess.run([sys.executable, str(REPO / "main.py"), "batch", str(DEMO_AUDIO),
                           "--out", "results", "--engine", "ray", "--workers", "1"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert lines and all(line.startswith("batch: ") for line in lines), lines
    assert lines[-1].endswith(f"outputs in {tmp_path / 'results'}")
    assert (tmp_path / "results" / "summary.csv").is_file()
