"""The `batch` command end to end: input formats and channel layouts, bad files beside good
ones, the outputs and summaries, equality with the streaming engine, and workers=2 = workers=1.

The model is the small fake (what is tested is the batch around it); `test_batch_resume.py` runs
the bundled model in a separate process.
"""

from __future__ import annotations

import csv
import functools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fakes import fake_recognizer
from synth import concat, silence, voiced

from edge_ser.audio import resample
from edge_ser.batch.inputs import collect_recordings
from edge_ser.batch.outputs import BATCH_FORMAT_VERSION
from edge_ser.batch.runner import run_batch
from edge_ser.batch.settings import JobSettings
from edge_ser.config import load_config
from edge_ser.events import EVENT_FORMAT_VERSION, SegmentResult, read_jsonl
from edge_ser.recognizer import Recognizer
from edge_ser.runtime_config import RuntimeConfig
from edge_ser_export import cli

RATE = 16_000


def runtime_config() -> RuntimeConfig:
    """What the commands run with when no --config is given: the built-in defaults."""
    return load_config(RuntimeConfig, None)


def speaker(seed: int, f0_hz: float, offset_s: float) -> np.ndarray:
    """About 5 s of one speaker: two bursts, starting after `offset_s` of silence, 16 kHz."""
    return concat(silence(0.4 + offset_s, seed=seed), voiced(1.3, f0_hz, seed=seed),
                  silence(0.9, seed=seed + 1), voiced(1.0, f0_hz * 1.4, seed=seed + 2),
                  silence(1.4 - offset_s, seed=seed + 3))


def call_audio(channels: int, rate_hz: int = RATE) -> np.ndarray:
    """(n, channels) float32: channel c is a speaker whose turns start c * 0.6 s later."""
    lanes = [speaker(10 * c, 130.0 + 60 * c, 0.6 * c) for c in range(channels)]
    audio = np.stack(lanes, axis=1)
    if rate_hz != RATE:
        audio = np.stack([resample(audio[:, c], RATE, rate_hz) for c in range(channels)], 1)
    return audio.astype(np.float32)


def write_call(path: Path, channels: int, rate_hz: int = RATE, subtype: str | None = None,
               format: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, call_audio(channels, rate_hz), rate_hz, subtype=subtype, format=format)
    return path


GOOD = {  # name: (channels, rate, subtype)  -- telephony and wideband, every common container
    "mono16k.wav": (1, 16_000, "PCM_16"),
    "stereo8k_ulaw.wav": (2, 8_000, "ULAW"),
    "stereo8k.flac": (2, 8_000, "PCM_16"),
    "mono8k_alaw.wav": (1, 8_000, "ALAW"),
    "stereo48k_float.wav": (2, 48_000, "FLOAT"),
    "mono44k.aiff": (1, 44_100, "PCM_24"),
    "stereo22k.ogg": (2, 22_050, "VORBIS"),
}


def write_bad_files(folder: Path) -> dict[str, str]:
    """Broken files of every kind; returns name -> a word their error must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt this is not audio")
    (folder / "empty.flac").write_bytes(b"")
    sf.write(folder / "zero_length.wav", np.zeros((0, 1), np.float32), RATE)
    whole = folder / "whole.wav"
    write_call(whole, 2)
    data = whole.read_bytes()
    (folder / "truncated.wav").write_bytes(data[: len(data) // 2])
    whole.unlink()
    (folder / "text.wav").write_text("hello")
    return {"corrupt.wav": "not an audio file", "empty.flac": "empty",
            "zero_length.wav": "zero-length", "truncated.wav": "truncated",
            "text.wav": "not an audio file"}


@pytest.fixture
def fake_model(monkeypatch):
    """Every recognizer the command builds is the fake, with the config the command resolved."""
    monkeypatch.setattr(Recognizer, "from_options",
                        classmethod(lambda cls, *a, config=None, **k: fake_recognizer(config)))


@pytest.fixture
def calls(tmp_path) -> Path:
    folder = tmp_path / "calls"
    for name, (channels, rate_hz, subtype) in GOOD.items():
        write_call(folder / name, channels, rate_hz, subtype)
    return folder


def segments_of(out: Path, key: str) -> list[dict]:
    return read_jsonl(out / "recordings" / key / "segments.jsonl")


def test_every_format_and_layout_gives_complete_outputs_with_roles(fake_model, calls, tmp_path):
    out = tmp_path / "out"
    assert cli.main(["batch", str(calls), "--out", str(out), "--quiet"]) == 0
    for name, (channels, rate_hz, _) in GOOD.items():
        key = Path(name).stem
        folder = out / "recordings" / key
        assert (folder / "complete.json").is_file()
        records = segments_of(out, key)
        expected_roles = {0: "speaker"} if channels == 1 else {0: "agent", 1: "customer"}
        assert {r["channel"]: r["role"] for r in records} == expected_roles, name
        assert len(records) == 2 * channels, name  # two turns per speaker
        for r in records:
            assert r["version"] == EVENT_FORMAT_VERSION
            assert r["batch_version"] == BATCH_FORMAT_VERSION
            assert abs(sum(r["probs"].values()) - 1) < 1e-3
            assert r["confidence"] == max(r["probs"].values())
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["sample_rate_hz"] == rate_hz and summary["channels"] == channels
        assert summary["duration_s"] == pytest.approx(5.0, abs=0.01)
        with open(folder / "segments.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert [(float(r["start_s"]), r["role"], r["label"]) for r in rows] == \
            [(r["start_s"], r["role"], r["label"] or "") for r in records]  # non-speech: empty
        rttm = (folder / "segments.rttm").read_text().splitlines()
        assert len(rttm) == len(records)
        fields = rttm[0].split()
        assert fields[0] == "SPEAKER" and fields[1] == key and len(fields) == 10
        assert int(fields[2]) == records[0]["channel"] + 1
        assert float(fields[4]) == pytest.approx(records[0]["end_s"] - records[0]["start_s"],
                                                 abs=1e-3)
    with open(out / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["key"] for r in rows) == sorted(Path(n).stem for n in GOOD)
    assert "window_s:" in (out / "config.resolved.yaml").read_text()
    assert (out / "errors.jsonl").read_text() == ""


@pytest.mark.parametrize("encoder_calls", ["chunk", "segment"])
def test_batch_segments_equal_the_streaming_engine_on_the_same_recording(fake_model, calls,
                                                                         tmp_path, encoder_calls):
    out = tmp_path / "out"
    assert cli.main(["batch", str(calls), "--out", str(out), "--quiet", "--set",
                     f"batch.encoder_calls={encoder_calls}"]) == 0
    recognizer = fake_recognizer(runtime_config())
    for name, (channels, _, _) in GOOD.items():
        events = recognizer.process_file(calls / name, split_channels=channels > 1)
        expected = [e.to_dict() for e in events if isinstance(e, SegmentResult)]
        got = [{k: v for k, v in r.items() if k not in ("batch_version", "role", "call_id")}
               for r in segments_of(out, Path(name).stem)]
        if encoder_calls == "chunk":  # the streaming engine's own encoder calls: bit for bit
            assert got == expected, name
            continue
        # one call per segment: the same segments and labels, probabilities to float rounding
        assert len(got) == len(expected) >= 2, name
        floats = ("probs", "confidence", "similarity")
        for g, e in zip(got, expected):
            assert {k: v for k, v in g.items() if k not in floats} == \
                {k: v for k, v in e.items() if k not in floats}, name
            for key in floats:
                assert g[key] == pytest.approx(e[key], abs=2e-4), (name, key)


def test_bad_files_are_recorded_with_their_reason_and_the_good_ones_complete(fake_model,
                                                                             tmp_path, capsys):
    folder = tmp_path / "mixed"
    write_call(folder / "good_a.wav", 1)
    reasons = write_bad_files(folder)
    write_call(folder / "zz_good_b.flac", 2, 8_000)
    out = tmp_path / "out"
    status = cli.main(["batch", str(folder), str(tmp_path / "missing.wav"), "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 1
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert "finished 7/7 files (2 done, 0 already complete, 5 failed), 1 input(s) matched " \
        "nothing" in last, last
    assert "10.0 s of audio" in last and "x real time" in last
    errors = read_jsonl(out / "errors.jsonl")
    by_name = {Path(e["path"]).name: e for e in errors}
    assert set(by_name) == {*reasons, "missing.wav"}
    for name, word in reasons.items():
        assert word in by_name[name]["reason"] and name in by_name[name]["reason"], name
    assert by_name["missing.wav"]["kind"] == "input"
    for key in ("good_a", "zz_good_b"):
        assert (out / "recordings" / key / "complete.json").is_file()
    for name in reasons:
        assert not (out / "recordings" / Path(name).stem / "complete.json").exists()
    with open(out / "summary.csv", newline="") as fh:
        assert [r["key"] for r in csv.DictReader(fh)] == ["good_a", "zz_good_b"]


def test_more_than_two_channels_need_a_mapping(fake_model, tmp_path):
    path = write_call(tmp_path / "in" / "three.wav", 3)
    out = tmp_path / "out"
    assert cli.main(["batch", str(path), "--out", str(out), "--quiet"]) == 1
    (error,) = read_jsonl(out / "errors.jsonl")
    assert error["kind"] == "channels" and "--channels" in error["reason"]
    assert cli.main(["batch", str(path), "--out", str(out), "--quiet",
                     "--channels", "agent=0,supervisor=2"]) == 0
    records = segments_of(out, "three")
    assert {(r["channel"], r["role"]) for r in records} == {(0, "agent"), (2, "supervisor")}


def test_channels_option_renames_stereo_roles_and_mono_stays_one_speaker(fake_model, tmp_path):
    stereo = write_call(tmp_path / "in" / "s.wav", 2)
    mono = write_call(tmp_path / "in" / "m.wav", 1)
    out = tmp_path / "out"
    assert cli.main(["batch", str(stereo), str(mono), "--out", str(out), "--quiet",
                     "--channels", "customer=0,agent=1"]) == 0
    assert {(r["channel"], r["role"]) for r in segments_of(out, "s")} == \
        {(0, "customer"), (1, "agent")}
    assert {r["role"] for r in segments_of(out, "m")} == {"speaker"}


def test_manifest_call_ids_roles_and_metadata_reach_the_outputs(fake_model, tmp_path):
    write_call(tmp_path / "audio" / "x.wav", 2)
    write_call(tmp_path / "audio" / "y.wav", 1)
    manifest = tmp_path / "calls.csv"
    manifest.write_text("path,call_id,channels,queue\n"
                        "audio/x.wav,../../escape,\"customer=0,agent=1\",billing\n"
                        f"{tmp_path / 'audio' / 'y.wav'},/etc/passwd,,sales\n"
                        "audio/gone.wav,GONE,,\n")
    out = tmp_path / "out"
    assert cli.main(["batch", str(manifest), "--out", str(out), "--quiet"]) == 1
    (error,) = read_jsonl(out / "errors.jsonl")
    assert error["call_id"] == "GONE" and "file not found" in error["reason"]
    assert error["source"] == f"{manifest}:4"
    folders = sorted(p.name for p in (out / "recordings").iterdir())
    assert folders == ["escape", "etc_passwd"]
    assert {p.name for p in tmp_path.iterdir()} == {"audio", "calls.csv", "out"}
    records = segments_of(out, "escape")
    assert all(r["call_id"] == "../../escape" and r["metadata"] == {"queue": "billing"}
               for r in records)
    assert {(r["channel"], r["role"]) for r in records} == {(0, "customer"), (1, "agent")}
    summary = json.loads((out / "recordings" / "etc_passwd" / "summary.json").read_text())
    assert summary["call_id"] == "/etc/passwd" and summary["metadata"] == {"queue": "sales"}
    with open(out / "summary.csv", newline="") as fh:
        rows = {r["call_id"]: r for r in csv.DictReader(fh)}
    assert rows["../../escape"]["meta_queue"] == "billing"


def test_summary_reports_shares_negative_turns_stretches_and_trend(fake_model, calls,
                                                                   tmp_path):
    out = tmp_path / "out"
    assert cli.main(["batch", str(calls / "stereo8k.flac"), "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "recordings" / "stereo8k" / "summary.json").read_text())
    records = segments_of(out, "stereo8k")
    for role, part in summary["per_role"].items():
        mine = [r for r in records if r["role"] == role and r["speech"]]
        speech_s = sum(r["end_s"] - r["start_s"] for r in mine)
        assert part["speech_s"] == pytest.approx(speech_s, abs=1e-3)
        assert sum(part["share"].values()) == pytest.approx(1.0, abs=1e-3)
        negative = sum(r["end_s"] - r["start_s"] for r in mine if r["label"] in ("angry", "sad"))
        assert part["negative_share"] == pytest.approx(negative / speech_s, abs=1e-3)
    assert summary["trend"]["direction"] in ("rising", "falling", "steady", "unknown")
    assert len(summary["trend"]["negative_share_by_part"]) == 3
    for turn in summary["negative_turns"]:
        assert turn["to"] in ("angry", "sad") and turn["role"] in ("agent", "customer")


def test_two_workers_give_the_same_outputs_as_one(calls, tmp_path):
    recordings, _ = collect_recordings([str(calls)])
    factory = functools.partial(fake_recognizer, runtime_config())
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        settings = JobSettings(out_dir=str(out), fingerprint="test")
        report = run_batch(recordings, settings, factory, workers=workers, log=None)
        assert report.count("done") == len(GOOD)
        outs.append(out)
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(outs[1]) for p in outs[1].rglob("*") if p.is_file())
    for rel in files:
        if rel.name == "run.json":  # timings of the run
            continue
        assert (outs[0] / rel).read_bytes() == (outs[1] / rel).read_bytes(), rel


def test_long_recordings_are_processed_in_blocks_with_the_same_result(calls, tmp_path):
    recordings, _ = collect_recordings([str(calls / "stereo8k_ulaw.wav")])
    factory = functools.partial(fake_recognizer, runtime_config())
    results = []
    for block_s in (10.0, 0.37):
        out = tmp_path / f"b{block_s}"
        run_batch(recordings, JobSettings(out_dir=str(out), fingerprint="t", block_s=block_s),
                  factory, log=None)
        results.append((out / "recordings" / "stereo8k_ulaw" / "segments.jsonl").read_text())
    assert results[0] == results[1] and results[0]


def test_bad_options_are_one_line_errors(fake_model, calls, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert cli.main(["batch", str(calls), "--out", out, "--workers", "0"]) == 2
    assert cli.main(["batch", str(calls), "--out", out, "--channels", "agent"]) == 2
    bad = tmp_path / "m.csv"
    bad.write_text("file\nx.wav\n")
    assert cli.main(["batch", str(bad), "--out", out]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("edge-ser batch: error:") for line in err)


def test_memory_stays_flat_for_a_long_recording(tmp_path):
    import tracemalloc

    from edge_ser.batch.process import analyse

    unit = call_audio(2, 8_000)
    recognizer = fake_recognizer(runtime_config())
    peaks = {}
    for units in (36, 72):  # 3 and 6 minutes
        path = tmp_path / f"long{units}.wav"
        with sf.SoundFile(path, "w", 8_000, 2, subtype="PCM_16") as fh:
            for _ in range(units):
                fh.write(unit)
        (recording,), _ = collect_recordings([str(path)])
        tracemalloc.start()
        try:
            analysis = analyse(recognizer, recording,
                               JobSettings(out_dir=str(tmp_path / "out"), fingerprint="t",
                                           block_s=1.0))
            peaks[units] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert len(analysis.segments) == units * 4
        assert analysis.duration_s == pytest.approx(units * 5.0)
    # the peak holds a block and a segment's audio, never the recording (6 min as float32)
    assert peaks[72] < 72 * unit.nbytes / 8
    assert peaks[72] < 1.2 * peaks[36], peaks


def test_workers_build_the_same_recognizer_as_the_options_check(monkeypatch, tmp_path):
    calls = []

    def from_options(cls, model=None, backend="onnxruntime", precision=None, threads=1,
                     config=None):
        calls.append((model, backend, precision, threads, config))
        return fake_recognizer(config)

    monkeypatch.setattr(Recognizer, "from_options", classmethod(from_options))
    path = write_call(tmp_path / "in" / "a.wav", 1)
    package = tmp_path / "package"
    package.mkdir()
    out = tmp_path / "out"
    assert cli.main(["batch", str(path), "--out", str(out), "--quiet", "--model", str(package),
                     "--threads", "2", "--set", "window.hop_s=0.5"]) == 0
    assert len(calls) == 2 and calls[0][1:] == calls[1][1:]
    assert {str(Path(c[0]).resolve()) for c in calls} == {str(package.resolve())}
    assert calls[0][2] is not None and calls[0][3] == 2 and calls[0][4].window.hop_s == 0.5
