import csv
from collections import Counter

import pytest

from edge_ser_train.corpus import (
    CorpusError,
    labelled,
    read_corpus,
    speaker_folds,
    speaker_split,
    speakers,
)

COLUMNS = ["file", "corpus", "language", "speaker", "gender", "emotion", "emotion4", "text",
           "sample_rate", "channels", "duration_s"]


def write_corpus(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "labels.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        for row in rows:
            (folder / row["file"]).write_bytes(b"")
            writer.writerow({c: row.get(c, "") for c in COLUMNS})


def toy_rows(corpus, n_speakers, per_speaker):
    labels = ["angry", "happy", "neutral", "sad", ""]
    return [{"file": f"{corpus}_{s}_{i}.wav", "corpus": corpus, "language": "xx",
             "speaker": f"s{s}", "emotion": "e", "emotion4": labels[i % 5], "duration_s": "1.0"}
            for s in range(n_speakers) for i in range(per_speaker)]


def test_reads_rows_and_unlabelled_clips(tmp_path):
    write_corpus(tmp_path / "c", toy_rows("c", 3, 5))
    clips = read_corpus(tmp_path / "c")
    assert len(clips) == 15
    assert sum(c.label is None for c in clips) == 3
    assert len(labelled(clips)) == 12
    assert clips[0].speaker == "c:s0"


def test_missing_labels_file_column_or_audio_is_named(tmp_path):
    with pytest.raises(CorpusError, match="no labels.csv"):
        read_corpus(tmp_path)
    (tmp_path / "labels.csv").write_text("file,corpus\nx.wav,c\n")
    with pytest.raises(CorpusError, match="missing column"):
        read_corpus(tmp_path)
    write_corpus(tmp_path / "d", toy_rows("d", 1, 2))
    (tmp_path / "d" / "d_0_1.wav").unlink()
    with pytest.raises(CorpusError, match=r"labels.csv:3: audio file 'd_0_1.wav' not found"):
        read_corpus(tmp_path / "d")


def test_folds_and_split_are_speaker_independent_and_cover_everything(tmp_path):
    write_corpus(tmp_path / "a", toy_rows("a", 7, 4))
    write_corpus(tmp_path / "b", toy_rows("b", 5, 9))
    clips = read_corpus(tmp_path / "a") + read_corpus(tmp_path / "b")
    folds = speaker_folds(clips, 4, seed=1)
    assert sum(map(len, folds)) == len(clips)
    owners = Counter(spk for fold in folds for spk in speakers(fold))
    assert max(owners.values()) == 1
    train, test = speaker_split(clips, 0.25, seed=3)
    assert not set(speakers(train)) & set(speakers(test))
    assert {c.corpus for c in test} == {"a", "b"}  # every corpus is represented in test
    assert len(train) + len(test) == len(clips)
    # a different seed gives a different split
    assert {c.speaker for c in speaker_split(clips, 0.25, seed=4)[1]} != set(speakers(test)) or \
        {c.speaker for c in speaker_split(clips, 0.25, seed=5)[1]} != set(speakers(test))


def test_too_few_speakers_for_folds(tmp_path):
    write_corpus(tmp_path / "a", toy_rows("a", 2, 3))
    with pytest.raises(CorpusError, match="2 speakers cannot make 3"):
        speaker_folds(read_corpus(tmp_path / "a"), 3, seed=0)


@pytest.mark.corpora
def test_real_label_files_split_speaker_independently(shared_data):
    for name in ("emodb", "urdu", "turev"):
        clips = labelled(read_corpus(shared_data / name))
        for seed in range(3):
            train, test = speaker_split(clips, 0.2, seed)
            assert test and train
            assert not set(speakers(train)) & set(speakers(test)), name
            assert 0.1 < len(test) / len(clips) < 0.4, (name, len(test) / len(clips))
