"""Optional parts of the batch: the timeline plot (matplotlib) and the Ray engine (Ray Data);
each test skips with the reason when its package is not installed."""

from __future__ import annotations

import functools

import pytest
from fakes import fake_recognizer
from test_batch import runtime_config, write_bad_files, write_call

from edge_ser.batch.inputs import collect_recordings
from edge_ser.batch.runner import run_batch
from edge_ser.batch.settings import JobSettings


@pytest.fixture
def small_batch(tmp_path):
    folder = tmp_path / "calls"
    write_call(folder / "a.wav", 2)
    write_call(folder / "b.flac", 1, 8_000)
    write_bad_files(folder)
    recordings, _ = collect_recordings([str(folder)])
    return recordings


def test_plot_writes_a_timeline_png_per_recording(small_batch, tmp_path):
    pytest.importorskip("matplotlib", reason="the timeline plot needs matplotlib ([plot] extra)")
    out = tmp_path / "out"
    settings = JobSettings(out_dir=str(out), fingerprint="t", plot=True)
    report = run_batch(small_batch, settings, functools.partial(fake_recognizer,
                                                                runtime_config()), log=None)
    assert report.count("done") == 2
    for key in ("a", "b"):
        png = (out / "recordings" / key / "timeline.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


def test_asking_for_the_plot_on_a_rerun_redoes_recordings_without_one(small_batch, tmp_path):
    pytest.importorskip("matplotlib", reason="the timeline plot needs matplotlib ([plot] extra)")
    factory = functools.partial(fake_recognizer, runtime_config())
    out = tmp_path / "out"
    run_batch(small_batch, JobSettings(out_dir=str(out), fingerprint="t"), factory, log=None)
    assert not list(out.rglob("timeline.png"))
    report = run_batch(small_batch, JobSettings(out_dir=str(out), fingerprint="t", plot=True),
                       factory, log=None)
    assert report.count("done") == 2 and len(list(out.rglob("timeline.png"))) == 2
    report = run_batch(small_batch, JobSettings(out_dir=str(out), fingerprint="t"), factory,
                       log=None)
    assert report.count("skipped") == 2


@pytest.mark.slow
def test_ray_engine_gives_the_same_outputs_as_the_local_one(small_batch, tmp_path):
    pytest.importorskip("ray.data", reason="--engine ray needs Ray Data: pip install 'ray[data]'")
    factory = functools.partial(fake_recognizer, runtime_config())
    outs = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        report = run_batch(small_batch, JobSettings(out_dir=str(out), fingerprint="t"),
                           factory, workers=2, engine=engine, log=None)
        assert (report.count("done"), report.count("failed")) == (2, 5)
        outs[engine] = out
    local = {p.relative_to(outs["local"]): p for p in outs["local"].rglob("*") if p.is_file()}
    remote = {p.relative_to(outs["ray"]): p for p in outs["ray"].rglob("*") if p.is_file()}
    assert sorted(local) == sorted(remote)
    for rel, path in local.items():
        if rel.name == "run.json":  # timings of the run
            continue
        if rel.name == "errors.jsonl":  # one line per failure, in completion order
            assert sorted(path.read_text().splitlines()) == \
                sorted(remote[rel].read_text().splitlines())
        else:
            assert path.read_bytes() == remote[rel].read_bytes(), rel
