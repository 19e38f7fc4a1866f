"""Speaker-independent splits of corpora in the shared `labels.csv` format.

Reading corpora (`Clip`, `read_corpus`, `labelled`, ...) is the runtime's `edge_ser.corpus` and
the splits are `edge_ser.speaker_split`; their names are importable from here too, so training
code has one module for its data.
"""

from edge_ser.corpus import (
    REQUIRED_COLUMNS,
    Clip,
    CorpusError,
    describe,
    labelled,
    read_corpus,
    speakers,
)
from edge_ser.speaker_split import SPLIT_SLACK, speaker_folds, speaker_split

__all__ = ["REQUIRED_COLUMNS", "SPLIT_SLACK", "Clip", "CorpusError", "describe", "labelled",
           "read_corpus", "speaker_folds", "speaker_split", "speakers"]
