"""Generated call recordings (tools/make_calls.py) and their scoring (tools/score_calls.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("scipy", reason="the call generator's telephone channel needs scipy: the "
                    "[train] extra")

from tools.make_calls import generate, read_ground_truth  # noqa: E402
from tools.score_calls import score_calls  # noqa: E402


def test_a_generated_call_is_8khz_stereo_mu_law_with_turns_on_their_own_channel(
        shared_data, tmp_path):
    (wav,) = generate(shared_data, tmp_path, calls=1, turns=6, seed=3, corpus="emodb",
                      speakers=("emodb:09", "emodb:14"))
    info = sf.info(str(wav))
    assert (info.samplerate, info.channels, info.subtype) == (8_000, 2, "ULAW")
    turns = read_ground_truth(wav.with_suffix(".csv"))
    assert len(turns) == 6
    assert all(t.emotion in ("angry", "happy", "neutral", "sad") for t in turns)
    assert all(t.source.startswith("emodb/09") or t.source.startswith("emodb/14")
               for t in turns)
    assert {t.role for t in turns} == {"agent", "customer"}
    audio, rate = sf.read(str(wav), dtype="float32")
    for channel in (0, 1):
        mine = sorted((t for t in turns if t.channel == channel), key=lambda t: t.start_s)
        assert all(a.end_s <= b.start_s for a, b in zip(mine, mine[1:], strict=False))
        inside = np.zeros(audio.shape[0], dtype=bool)
        for t in mine:
            assert t.role == ("agent", "customer")[channel]
            inside[int(t.start_s * rate):int(t.end_s * rate)] = True
        x = audio[:, channel]
        speech_rms = np.sqrt(np.mean(x[inside] ** 2))
        quiet_rms = np.sqrt(np.mean(x[~inside] ** 2))
        assert quiet_rms < speech_rms * 10 ** (-25 / 20)  # line noise only, >= 25 dB down


def test_scoring_matches_each_turn_to_the_most_overlapping_segment_of_its_channel(tmp_path):
    (tmp_path / "c.csv").write_text(
        "start_s,end_s,channel,role,emotion,source\n"
        "0.5,2.5,0,agent,angry,a.flac\n"
        "3.0,5.0,1,customer,sad,b.flac\n"
        "6.0,7.0,1,customer,happy,c.flac\n", encoding="utf-8")
    folder = tmp_path / "out" / "recordings" / "c"
    folder.mkdir(parents=True)
    def segment(start, end, channel, label, top=None):
        probs = dict.fromkeys(("angry", "happy", "neutral", "sad"), 0.1)
        probs[top or label] = 0.7
        return {"start_s": start, "end_s": end, "channel": channel, "label": label,
                "probs": probs}

    segments = [  # the channel-0 segment over 3-5 s must not match the channel-1 turn
        segment(0.4, 1.0, 0, "sad"),
        segment(1.0, 2.6, 0, "angry"),
        segment(3.0, 5.0, 0, "happy"),
        # uncertain: scored by its top class (sad, right) but never right in time
        segment(3.1, 4.9, 1, "uncertain", top="sad"),
    ]
    (folder / "segments.jsonl").write_text(
        "".join(json.dumps(s) + "\n" for s in segments), encoding="utf-8")
    result = score_calls(tmp_path, tmp_path / "out")
    assert (result["turns"], result["found"], result["uncertain"]) == (3, 2, 1)
    assert result["scores"]["wa"] == 1.0
    assert abs(result["time_weighted_accuracy"] - 2.0 / 5.0) < 1e-9
