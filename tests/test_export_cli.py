"""`export` and `eval` on the command line: a package checked, a trtexec line, a scored folder."""

import pytest

pytest.importorskip("torch", reason="needs torch: the [train] extra")

import argparse
import csv
import json

import numpy as np
import soundfile as sf
from test_export import LABELS, small_package  # noqa: F401  (module fixture)

from edge_ser.backends import BackendUnavailable
from edge_ser.commands import eval as eval_command
from edge_ser.commands import export as export_command


def run(module, argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    module.add_parser(parser.add_subparsers(dest="command"))
    return module.run(parser.parse_args(argv))


def test_export_check_reports_the_deployable_graphs(small_package, capsys):  # noqa: F811
    assert run(export_command, ["export", "check", "--model", str(small_package[1].root)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["labels"] == list(LABELS)
    assert summary["graphs"]["int8"]["quantized_ops"] > 0
    chunk = small_package[1].chunk_frames
    assert summary["tensorrt_profiles"]["stream"]["feats"] == [[1, chunk, 64]] * 3


def test_export_trt_prints_the_trtexec_line(small_package, tmp_path, capsys):  # noqa: F811
    import shutil

    root = tmp_path / "pkg"
    shutil.copytree(small_package[1].root, root)
    assert run(export_command, ["export", "trt", "--model", str(root), "--precision", "fp16",
                                "--trtexec"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("trtexec \\\n  --onnx=") and "--stronglyTyped" in out
    assert (root / "engines" / "encoder.fp16.onnx").is_file()


def test_export_trt_without_tensorrt_says_what_to_install(small_package):  # noqa: F811
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    with pytest.raises(BackendUnavailable, match="install TensorRT 10"):
        run(export_command, ["export", "trt", "--model", str(small_package[1].root)])


def write_corpus(folder, clips_per_label: int = 2):
    """Tones of different pitch as a labelled corpus in the shared labels.csv format."""
    folder.mkdir()
    rows = []
    for k, label in enumerate(LABELS):
        for i in range(clips_per_label):
            t = np.arange(16000) / 16000
            audio = 0.1 * np.sin(2 * np.pi * (120 + 60 * k + 7 * i) * t) * (1 + np.sin(8 * t))
            name = f"{label}_{i}.wav"
            sf.write(folder / name, audio.astype(np.float32), 16000)
            rows.append({"file": name, "corpus": "tones", "language": "xx",
                         "speaker": str(i), "emotion4": label})
    with open(folder / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_eval_scores_a_package_through_the_runtime_path(small_package, tmp_path,  # noqa: F811
                                                       capsys):
    write_corpus(tmp_path / "tones")
    out = tmp_path / "out"
    assert run(eval_command, ["eval", "--model", str(small_package[1].root), "--data",
                              str(tmp_path / "tones"), "--precision", "fp32", "--json",
                              "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)["scores"][str(tmp_path / "tones")]
    assert report["count"] == 2 * len(LABELS)
    assert set(report["heads"]) == {"classifier", "memory", "fused"}
    assert 0.0 <= report["heads"]["fused"]["ua"] <= 1.0
    assert (out / "scores.json").is_file() and (out / "config.resolved.yaml").is_file()


def test_eval_refuses_a_missing_model(tmp_path):
    from edge_ser.commands.common import UsageError

    write_corpus(tmp_path / "tones", 1)
    with pytest.raises(UsageError, match="no model package or checkpoint"):
        run(eval_command, ["eval", "--model", str(tmp_path / "nothing"), "--data",
                           str(tmp_path / "tones")])


def test_eval_scores_a_checkpoint_through_the_training_layer(tmp_path, capsys):
    """`eval --model CKPT.pt` on the assembled command line: the runtime's eval command gets
    the training layer's checkpoint scorer from the command line, never imports it itself."""
    from test_adapt import tiny_checkpoint

    from edge_ser_export.cli import main

    write_corpus(tmp_path / "tones")
    tiny_checkpoint(tmp_path / "model.pt", with_bank=False)
    assert main(["eval", "--model", str(tmp_path / "model.pt"), "--data",
                 str(tmp_path / "tones"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["scores"][str(tmp_path / "tones")]
    assert report["count"] == 2 * len(LABELS) and 0.0 <= report["ua"] <= 1.0
