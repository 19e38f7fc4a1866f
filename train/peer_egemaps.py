"""The classical peer: openSMILE eGeMAPSv02 functionals and a logistic regression.

It reads the same 16 kHz mono signal the neural model sees (`edge_ser.audio.load_mono_16k`),
summarises each clip as the 88 eGeMAPSv02 functionals, and classifies them with a standardised,
class-balanced multinomial logistic regression. It stands beside the neural model in every results
table.

openSMILE's licence allows research use only, so it is a `[bench]` extra: it is imported inside the
functions here, never by `edge_ser`.

Speaker normalisation is deliberately not used: the runtime meets one unknown speaker at a time and
has no statistics of that speaker to normalise with, so the peer is scored under the same condition.

    python -m edge_ser_train.peer_egemaps --data /path/to/data --cache .cache/egemaps
"""

from __future__ import annotations

import argparse
import hashlib
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from edge_ser.atomic_write import write_bytes_atomic
from edge_ser.audio import AudioError, load_mono_16k
from edge_ser.contract import DEFAULT_LABELS, SAMPLE_RATE_HZ
from edge_ser.metrics import Scores, score
from edge_ser_train.corpus import Clip, labelled, read_corpus, speaker_split

FEATURE_SET = "eGeMAPSv02"
N_FEATURES = 88
"""eGeMAPSv02 functionals per clip."""

C_INVERSE_L2 = 0.1
"""Inverse L2 strength of the logistic regression, fixed rather than tuned per run.

The training sets are small (a few hundred to ~1,500 clips, 6 to 29 speakers) against 88 strongly
correlated functionals, so the fit is regularised about ten times more than scikit-learn's default:
the peer should learn broad acoustic cues (loudness, pitch level and range, spectral slope), not
the voices of the few training speakers. A second speaker-independent split inside each training
partition (`python -m edge_ser_train.peer_egemaps --c-sweep`, test speakers unused) puts
C = 0.1 within about 2.5 points of UA of the best value per corpus (emodb, urdu, turev) over
C = 0.003 to 3; UA falls off below C = 0.03 and, on the smaller corpora, above C = 0.3.
"""

Z_LIMIT = 5.0
"""Standardised features are clipped to [-Z_LIMIT, Z_LIMIT] before the regression.

The `*_stddevNorm` functionals are a standard deviation divided by a mean, and an MFCC's mean can
lie near zero, so a single clip can land hundreds of standard deviations out and decide its own
class through one weight. Clipping keeps such a value at "very large" without letting it dominate.
"""


class PeerError(RuntimeError):
    """The peer could not extract features or score a clip set."""


# --- features -------------------------------------------------------------------------------------

def _smile():
    """An openSMILE extractor for eGeMAPSv02 functionals."""
    try:
        import opensmile
    except ImportError as exc:
        raise PeerError("the eGeMAPS peer needs openSMILE (research-only licence): "
                        "pip install -e .[bench]") from exc
    return opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                           feature_level=opensmile.FeatureLevel.Functionals)


def _extract(smile, signal: np.ndarray) -> np.ndarray:
    """eGeMAPSv02 functionals of one 16 kHz mono signal: shape (N_FEATURES,), float32."""
    frame = smile.process_signal(signal, SAMPLE_RATE_HZ)
    return frame.to_numpy(dtype=np.float32).reshape(-1)


def cache_key(path: Path) -> str:
    """Key of one clip's cached features: absolute path, file size, mtime and feature set.

    Editing or replacing the audio changes size or mtime and so invalidates the entry.
    """
    absolute = path.resolve()
    stat = absolute.stat()
    text = f"{absolute}\0{stat.st_size}\0{stat.st_mtime_ns}\0{FEATURE_SET}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def egemaps_features(clips: list[Clip], cache_dir: str | Path) -> np.ndarray:
    """eGeMAPSv02 functionals of each clip: shape (len(clips), N_FEATURES), float32.

    Each clip's vector is cached in `cache_dir` as `<key>.npy` (see `cache_key`); a cached clip
    is neither decoded nor analysed again. Raises PeerError naming the file when its audio cannot
    be read or gives no finite features.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    out = np.empty((len(clips), N_FEATURES), dtype=np.float32)
    smile = None  # built on the first cache miss only
    for i, clip in enumerate(clips):
        try:
            entry = cache / f"{cache_key(clip.path)}.npy"
        except OSError as exc:
            raise PeerError(f"{clip.path}: cannot read audio file ({exc})") from exc
        if entry.is_file():
            try:
                vector = np.load(entry, allow_pickle=False)
            except (OSError, ValueError):
                vector = None  # a damaged entry is recomputed and overwritten below
            if vector is not None and vector.shape == (N_FEATURES,):
                out[i] = vector
                continue
        try:
            signal = load_mono_16k(clip.path)
        except AudioError as exc:
            raise PeerError(f"{clip.path}: cannot extract eGeMAPS features, unreadable audio "
                            f"({exc})") from exc
        if smile is None:
            smile = _smile()
        vector = _extract(smile, signal)
        if vector.shape != (N_FEATURES,) or not np.all(np.isfinite(vector)):
            raise PeerError(f"{clip.path}: eGeMAPS gave {vector.size} values with "
                            f"{int(np.sum(~np.isfinite(vector)))} non-finite, expected "
                            f"{N_FEATURES} finite ones (is the clip empty or too short?)")
        buffer = io.BytesIO()
        np.save(buffer, vector, allow_pickle=False)
        write_bytes_atomic(entry, buffer.getvalue())
        out[i] = vector
    return out


# --- classifier -----------------------------------------------------------------------------------

def _clip_z(z: np.ndarray) -> np.ndarray:
    return np.clip(z, -Z_LIMIT, Z_LIMIT)


class EgemapsPeer:
    """StandardScaler, clipping to +-Z_LIMIT, and a class-balanced multinomial logistic regression
    over eGeMAPS functionals."""

    def __init__(self, c: float = C_INVERSE_L2) -> None:
        self.c = c
        self._pipeline = None

    def fit(self, features: np.ndarray, label_indices: np.ndarray) -> EgemapsPeer:
        """Fit on features (n, N_FEATURES) and integer class indices (n,)."""
        try:
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import FunctionTransformer, StandardScaler
        except ImportError as exc:
            raise PeerError("the eGeMAPS peer needs scikit-learn: pip install -e .[bench]") from exc

        features = np.asarray(features, dtype=np.float64)
        label_indices = np.asarray(label_indices, dtype=np.int64)
        if features.ndim != 2 or features.shape[0] != label_indices.shape[0]:
            raise ValueError(f"features {features.shape} and labels {label_indices.shape} "
                             "must have the same number of rows")
        if np.unique(label_indices).size < 2:
            raise ValueError("the peer needs at least two classes to fit")
        pipeline = make_pipeline(
            StandardScaler(),
            FunctionTransformer(_clip_z),
            LogisticRegression(C=self.c, class_weight="balanced", max_iter=2000))
        pipeline.fit(features, label_indices)
        self._pipeline = pipeline
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Class indices (n,) for features (n, N_FEATURES); only classes seen in fit occur."""
        if self._pipeline is None:
            raise RuntimeError("EgemapsPeer.predict called before fit")
        return self._pipeline.predict(np.asarray(features, dtype=np.float64)).astype(np.int64)


def label_indices(clips: list[Clip], labels: tuple[str, ...]) -> np.ndarray:
    """Index of each clip's label in `labels`: shape (len(clips),), int64."""
    index = {name: i for i, name in enumerate(labels)}
    bad = [c for c in clips if c.label not in index]
    if bad:
        raise PeerError(f"{len(bad)} clip(s) have no label among {', '.join(labels)}, "
                        f"e.g. {bad[0].path} ({bad[0].label!r}); keep only labelled clips")
    return np.array([index[c.label] for c in clips], dtype=np.int64)


def peer_predictions(train_clips: list[Clip], test_clips: list[Clip], labels: tuple[str, ...],
                     cache_dir: str | Path) -> np.ndarray:
    """Fit the peer on `train_clips`; its class index in `labels` for each test clip, (n,)."""
    # No per-speaker normalisation: the runtime meets one unknown speaker, so the test clips are
    # standardised with the training statistics only, as the runtime would be.
    labels = tuple(labels)
    peer = EgemapsPeer().fit(egemaps_features(train_clips, cache_dir),
                             label_indices(train_clips, labels))
    return peer.predict(egemaps_features(test_clips, cache_dir))


def evaluate_peer(train_clips: list[Clip], test_clips: list[Clip], labels: tuple[str, ...],
                  cache_dir: str | Path) -> Scores:
    """Fit the peer on `train_clips`, then score its predictions on `test_clips` over `labels`."""
    labels = tuple(labels)
    y_test = label_indices(test_clips, labels)
    return score(y_test, peer_predictions(train_clips, test_clips, labels, cache_dir), labels)


# --- measurement ----------------------------------------------------------------------------------

def _measure(data: Path, cache: Path, corpora: list[str], seeds: list[int]) -> None:
    clips = {name: labelled(read_corpus(data / name)) for name in corpora}

    print("eGeMAPSv02 extraction (cached clips are not analysed again)")
    print(f"{'corpus':<8} {'clips':>6} {'audio_s':>8} {'wall_s':>7} {'x_realtime':>10}")
    for name in corpora:
        start = time.perf_counter()
        egemaps_features(clips[name], cache)
        wall_s = time.perf_counter() - start
        audio_s = sum(c.duration_s for c in clips[name])
        print(f"{name:<8} {len(clips[name]):>6} {audio_s:>8.0f} {wall_s:>7.1f} "
              f"{audio_s / max(wall_s, 1e-9):>10.0f}")

    print(f"\nin-domain, speaker-independent (20 % of clips held out), UA over seeds {seeds}")
    in_domain = {}
    for name in corpora:
        uas = []
        for seed in seeds:
            train, test = speaker_split(clips[name], 0.2, seed)
            uas.append(evaluate_peer(train, test, DEFAULT_LABELS, cache).ua)
        in_domain[name] = statistics.mean(uas)
        spread = statistics.stdev(uas) if len(uas) > 1 else 0.0
        print(f"{name:<8} UA {in_domain[name]:6.1%} ± {spread:5.1%}   "
              + " ".join(f"{u:.1%}" for u in uas))

    print("\ncross-corpus UA (rows: trained on all clips of, columns: tested on all clips of)")
    print(" " * 8 + "".join(f"{name:>9}" for name in corpora))
    off_diagonal = []
    for source in corpora:
        cells = []
        for target in corpora:
            if source == target:
                cells.append(f"{'[' + f'{in_domain[source]:.1%}' + ']':>9}")
                continue
            ua = evaluate_peer(clips[source], clips[target], DEFAULT_LABELS, cache).ua
            off_diagonal.append(ua)
            cells.append(f"{ua:9.1%}")
        print(f"{source:<8}" + "".join(cells))
    print("[diagonal: the in-domain speaker-independent mean above]")
    if off_diagonal:
        print(f"mean off-diagonal UA {statistics.mean(off_diagonal):.1%}")


def _c_sweep(data: Path, cache: Path, corpora: list[str], seeds: list[int]) -> None:
    """UA against C on a second speaker-independent split inside each training partition, so
    the held-out test speakers of `_measure` are never looked at."""
    grid = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
    print("C sweep: speaker-independent CV inside training partitions (test folds unused)")
    print(f"{'corpus':<8}" + "".join(f"{c:>8g}" for c in grid))
    for name in corpora:
        clips = labelled(read_corpus(data / name))
        means = []
        for c in grid:
            uas = []
            for seed in seeds:
                train, _ = speaker_split(clips, 0.2, seed)
                inner_train, inner_test = speaker_split(train, 0.2, seed + 100)
                peer = EgemapsPeer(c).fit(egemaps_features(inner_train, cache),
                                          label_indices(inner_train, DEFAULT_LABELS))
                pred = peer.predict(egemaps_features(inner_test, cache))
                uas.append(score(label_indices(inner_test, DEFAULT_LABELS), pred,
                                 DEFAULT_LABELS).ua)
            means.append(statistics.mean(uas))
        print(f"{name:<8}" + "".join(f"{m:8.1%}" for m in means))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge_ser_train.peer_egemaps",
        description="Measure the eGeMAPS + logistic-regression peer: in-domain speaker-independent "
                    "UA per corpus and the cross-corpus UA matrix.")
    parser.add_argument("--data", type=Path, required=True,
                        help="folder holding one sub-folder with a labels.csv per corpus")
    parser.add_argument("--cache", type=Path, default=Path(".cache/egemaps"),
                        help="feature cache folder (default: .cache/egemaps)")
    parser.add_argument("--corpora", nargs="+",
                        help="corpus sub-folders to use (default: every sub-folder of --data "
                        "with a labels.csv)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                        help="speaker-split seeds for the in-domain scores (default: 0 1 2)")
    parser.add_argument("--c-sweep", action="store_true",
                        help="instead, show UA against the regularisation C by speaker-independent "
                             "CV inside the training partitions")
    args = parser.parse_args(argv)
    corpora = args.corpora or sorted(p.name for p in args.data.iterdir()
                                     if (p / "labels.csv").is_file())
    try:
        if args.c_sweep:
            _c_sweep(args.data, args.cache, corpora, args.seeds)
        else:
            _measure(args.data, args.cache, corpora, args.seeds)
    except (PeerError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
