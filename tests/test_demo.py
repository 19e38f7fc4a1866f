"""The bundled demo recording: small, labelled, and reproducible from the corpus."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from synth import DEMO_AUDIO, DEMO_LABELS, read_labels

REPO = Path(__file__).resolve().parent.parent


def test_demo_is_a_small_16k_recording_with_four_emotions():
    info = sf.info(DEMO_AUDIO)
    assert info.samplerate == 16_000 and info.channels == 1 and info.format == "FLAC"
    assert 30 <= info.duration <= 40
    assert DEMO_AUDIO.stat().st_size < 600_000
    labels = read_labels()
    assert {row["emotion"] for row in labels} == {"angry", "happy", "neutral", "sad"}
    ends = [0.0] + [float(row["end_s"]) for row in labels]
    for row, previous_end in zip(labels, ends):
        assert previous_end + 0.5 < float(row["start_s"]) < float(row["end_s"])


@pytest.mark.corpora
def test_demo_is_reproduced_by_its_script(shared_data, tmp_path):
    subprocess.run([sys.executable, "tools/make_demo_recording.py", "--emodb",
                    str(shared_data / "emodb"), "--out", str(tmp_path)], cwd=REPO, check=True,
                   capture_output=True)
    for name, bundled in (("conversation.flac", DEMO_AUDIO),
                          ("conversation.labels.csv", DEMO_LABELS)):
        made = hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        assert made == hashlib.sha256(bundled.read_bytes()).hexdigest(), name


@pytest.mark.parametrize("name", ["default", "accurate"])
def test_bundled_package_tags_the_bundled_recording(name):
    """The product as shipped, on real speech it ships with: each bundled package streams the
    demo (two EMO-DB speakers its model never trained on), finds every turn, and tags most of
    them with their known emotion (chance: 3 of 12)."""
    from edge_ser.console import best_reference, read_references
    from edge_ser.recognizer import Recognizer

    references = read_references(DEMO_LABELS)
    recognizer = Recognizer.from_options(model=name)
    assert recognizer.package.manifest["name"] == name
    results = [e for e in recognizer.process_file(DEMO_AUDIO) if e.type == "segment"]
    assert len(results) == len(references)
    matched = [best_reference(r, references) for r in results]
    assert len({id(m) for m in matched if m is not None}) == len(references)  # one per turn
    hits = sum(r.label == m.emotion for r, m in zip(results, matched))
    assert hits >= 9, f"{hits}/12 turns tagged with their known emotion"
    for result in results:
        assert abs(sum(result.probs.values()) - 1.0) < 1e-5
