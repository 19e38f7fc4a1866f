"""The `stream` and `--mic` commands: outputs, errors as one line, exit codes.

Most tests swap the model for the small fake (the command-line behaviour is what is tested);
the last ones run the bundled model package when it is present.
"""

from __future__ import annotations

import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import soundfile as sf
from fakes import fake_recognizer
from synth import DEMO_AUDIO, DEMO_LABELS, concat, silence, voiced

from edge_ser.events import EVENT_FORMAT_VERSION, read_jsonl
from edge_ser.recognizer import Recognizer
from edge_ser_export import cli

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake_model(monkeypatch):
    """Every command gets the fake recognizer (with the config the command resolved)."""
    monkeypatch.setattr(Recognizer, "from_options",
                        classmethod(lambda cls, *a, config=None, **k: fake_recognizer(config)))


@pytest.fixture
def short_wav(tmp_path) -> Path:
    path = tmp_path / "two_bursts.wav"
    x = concat(silence(0.5), voiced(1.2), silence(1.0), voiced(0.8, f0_hz=220), silence(0.8))
    sf.write(path, x, 16_000, subtype="PCM_16")
    return path


def test_bad_file_is_one_error_line_naming_it_and_the_rest_still_runs(fake_model, short_wav,
                                                                       tmp_path, capsys):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage that is not audio")
    missing = tmp_path / "nowhere.flac"
    status = cli.main(["stream", str(bad), str(short_wav), str(missing), "--quiet"])
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert status != 0
    assert len(errors) == 2 and "broken.wav" in errors[0] and "nowhere.flac" in errors[1]
    assert "Traceback" not in captured.err
    assert len(captured.out.splitlines()) == 2  # the good file's two segments


def test_quiet_prints_one_line_per_segment(fake_model, short_wav, capsys):
    assert cli.main(["stream", str(short_wav), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(" s  " in line for line in lines)


def test_jsonl_logs_every_event_with_its_file_and_the_config_beside_it(fake_model, short_wav,
                                                                      tmp_path, capsys):
    jsonl = tmp_path / "out" / "events.jsonl"
    jsonl.parent.mkdir()
    assert cli.main(["stream", str(short_wav), "--jsonl", str(jsonl),
                     "--set", "window.window_s=1.0"]) == 0
    records = read_jsonl(jsonl)
    assert {r["type"] for r in records} >= {"segment", "window"}
    assert all(r["version"] == EVENT_FORMAT_VERSION and r["file"] == str(short_wav)
               for r in records)
    resolved = (jsonl.parent / "events.config.resolved.yaml").read_text()
    assert "window_s: 1.0" in resolved


def test_labels_are_shown_beside_the_tags(fake_model, capsys):
    assert cli.main(["stream", str(DEMO_AUDIO), "--labels", str(DEMO_LABELS)]) == 0
    out = capsys.readouterr().out
    assert out.count("known:") == 12
    assert "agree with known labels" in out and "/12" in out


def test_bad_config_value_is_one_line_naming_the_key(fake_model, short_wav, capsys):
    assert cli.main(["stream", str(short_wav), "--set", "vad.aggressiveness=7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vad.aggressiveness" in err[0] and "[0, 3]" in err[0]


def test_realtime_paces_the_input(fake_model, tmp_path, capsys):
    path = tmp_path / "one_second.wav"
    sf.write(path, silence(1.0), 16_000)
    start = time.monotonic()
    assert cli.main(["stream", str(path), "--realtime", "--quiet"]) == 0
    assert time.monotonic() - start >= 0.85


def test_mic_flag_maps_to_the_mic_command():
    assert cli._live_argv(["--mic", "--device", "3"]) == ["mic", "--device", "3"]
    assert cli._live_argv(["--list-devices"]) == ["mic", "--list-devices"]
    assert cli._live_argv(["stream", "a.wav"]) == ["stream", "a.wav"]


class _NoDevices:
    """A sounddevice stand-in for a machine without any input device."""

    class PortAudioError(Exception):
        pass

    def query_devices(self, device=None, kind=None):
        if kind == "input":
            raise self.PortAudioError("No input device found")
        return []

    def query_hostapis(self):
        return []

    default = types.SimpleNamespace(device=(-1, -1))


def test_no_microphone_is_one_line_saying_what_to_try(fake_model, monkeypatch, capsys):
    from edge_ser import live

    monkeypatch.setattr(live, "import_sounddevice", lambda: _NoDevices())
    assert cli.main(["--mic", "--max-seconds", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--list-devices" in err[0] and "--device" in err[0]
    assert cli.main(["--list-devices"]) == 1
    assert "no input devices" in capsys.readouterr().out


def test_missing_portaudio_names_the_package(fake_model, monkeypatch, capsys):
    from edge_ser import live

    real_import = __import__

    def no_portaudio(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr("builtins.__import__", no_portaudio)
    with pytest.raises(live.LiveError, match="libportaudio2"):
        live.import_sounddevice()


# --- with the bundled model ------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundled_model():
    from edge_ser.package import DEFAULT_PACKAGE

    if not (DEFAULT_PACKAGE / "model.json").is_file():
        pytest.skip(f"no bundled model package at {DEFAULT_PACKAGE}")


def test_stream_command_runs_the_bundled_model_end_to_end(bundled_model, tmp_path):
    jsonl = tmp_path / "demo.jsonl"
    done = subprocess.run(
        [sys.executable, "main.py", "stream", str(DEMO_AUDIO), "--labels", str(DEMO_LABELS),
         "--jsonl", str(jsonl)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    segments = [r for r in read_jsonl(jsonl) if r["type"] == "segment"]
    assert len(segments) == 12
    for record in segments:
        assert sum(record["probs"].values()) == pytest.approx(1.0, abs=1e-3)
    assert done.stdout.count("known:") == 12


def test_stream_command_exits_nonzero_on_a_corrupt_file(bundled_model, tmp_path):
    bad = tmp_path / "cut.flac"
    data = Path(DEMO_AUDIO).read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    done = subprocess.run([sys.executable, "main.py", "stream", str(bad), "--quiet"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "cut.flac" in errors[0]
    assert "Traceback" not in done.stderr
    assert done.stdout.count("known:") == 0 and " s  " in done.stdout  # segments before the cut
