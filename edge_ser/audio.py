"""Audio input: decode any file libsndfile reads, check it, downmix and resample to the contract.

Every clip that training, evaluation and the runtime see passes through here, so a damaged file
fails in one place with one kind of error (`AudioError`) that names the file and the problem.

Shapes: a decoded file is float32 ``(num_samples, num_channels)`` in [-1, 1] at the file's own
rate; internal audio is float32 ``(num_samples,)`` at `contract.SAMPLE_RATE_HZ`.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import soundfile as sf
import soxr

from edge_ser.contract import SAMPLE_RATE_HZ

READ_BLOCK_S = 10.0
"""Block length used by `read_audio`; a decode error is located to within one block."""

_SOXR_QUALITY = "HQ"
_UNCOMPRESSED_WAV_TAGS = {0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE}  # PCM, float, A-law, mu-law, ext.
_UNKNOWN_LENGTH = {0, 0xFFFFFFFF}  # data sizes written by recorders that never rewrote the header
_MAX_HEADER_CHUNKS = 64


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file, the problem and the fix."""


def _header_frames(path: str) -> int | None:
    """Frames a RIFF/RIFX WAV or AIFF/AIFF-C header promises; None if the header states none.

    libsndfile quietly shortens the frame count of a WAV or AIFF whose audio data is shorter
    than its header says (it logs the mismatch and reads what is there), so a file cut short
    in copying would otherwise pass as a shorter, valid recording.
    """
    with open(path, "rb") as fh:
        head = fh.read(12)
        if head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
            endian = "<" if head[:4] == b"RIFF" else ">"
        elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            endian = ">"
        else:
            return None
        bodies: dict[bytes, bytes] = {}
        data_bytes = None
        for _ in range(_MAX_HEADER_CHUNKS):
            chunk = fh.read(8)
            if len(chunk) < 8:
                break
            chunk_id, (size,) = chunk[:4], struct.unpack(endian + "I", chunk[4:])
            if chunk_id == b"data":
                data_bytes = size
                break
            body = fh.read(min(size, 64)) if chunk_id in (b"fmt ", b"fact", b"COMM") else b""
            bodies[chunk_id] = body
            if chunk_id == b"COMM":
                break
            fh.seek(size - len(body) + (size & 1), os.SEEK_CUR)  # chunks are padded to even size
    if len(bodies.get(b"COMM", b"")) >= 6:  # AIFF: channels (int16), frames (uint32)
        frames = struct.unpack(">hI", bodies[b"COMM"][:6])[1]
        return frames or None
    fmt = bodies.get(b"fmt ", b"")
    if data_bytes is None or data_bytes in _UNKNOWN_LENGTH or len(fmt) < 14:
        return None
    tag, _, _, _, block_align = struct.unpack(endian + "HHIIH", fmt[:14])
    if tag in _UNCOMPRESSED_WAV_TAGS and block_align > 0:
        return data_bytes // block_align
    fact = bodies.get(b"fact", b"")  # compressed WAV: the frame count lives in 'fact'
    if len(fact) < 4:
        return None
    return struct.unpack(endian + "I", fact[:4])[0] or None


@contextmanager
def _open_checked(path: str) -> Iterator[sf.SoundFile]:
    """Open `path` for decoding after the checks that need no decoding (existence, size, header)."""
    if not os.path.exists(path):
        raise AudioError(f"{path}: file not found; check the path")
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a directory, not an audio file")
    try:
        size_bytes = os.path.getsize(path)
        with open(path, "rb"):
            pass
    except OSError as err:
        raise AudioError(f"{path}: cannot be read ({err.strerror}); check its permissions") from err
    if size_bytes == 0:
        raise AudioError(f"{path}: file is empty (0 bytes); re-copy or re-export it")
    try:
        handle = sf.SoundFile(path)
    except sf.LibsndfileError as err:
        if err.code == 3:  # SF_ERR_MALFORMED_FILE: format recognised, contents broken
            raise AudioError(
                f"{path}: audio format recognised but the file is malformed ({err.error_string}); "
                "it is probably truncated or corrupt, re-copy or re-export it"
            ) from err
        raise AudioError(
            f"{path}: not an audio file libsndfile can read ({err.error_string}); expected WAV, "
            "FLAC, OGG, MP3, AIFF or another format libsndfile reads"
        ) from err
    with handle:
        header_frames = _header_frames(path)
        if header_frames is not None and header_frames > handle.frames:
            raise AudioError(
                f"{path}: truncated: header says {header_frames} frames, only {handle.frames} "
                "could be decoded; re-copy or re-export the file"
            )
        if handle.frames == 0:
            raise AudioError(f"{path}: no samples (zero-length audio)")
        yield handle


def _decode_blocks(handle: sf.SoundFile, path: str, block_samples: int) -> Iterator[np.ndarray]:
    """Decode `handle` in blocks of at most `block_samples` frames, checking each one.

    Reads with `SoundFile.read` in a loop rather than `soundfile.blocks`, which on a short read
    yields the unfilled tail of its reused buffer instead of stopping.
    """
    rate_hz = handle.samplerate
    decoded_samples = 0
    while decoded_samples < handle.frames:
        try:
            block = handle.read(block_samples, dtype="float32", always_2d=True)
        except sf.LibsndfileError as err:
            end_s = min(decoded_samples + block_samples, handle.frames) / rate_hz
            raise AudioError(
                f"{path}: decode error between {decoded_samples / rate_hz:.2f} s and {end_s:.2f} s "
                f"({err.error_string}); the file is truncated or corrupt from there on"
            ) from err
        if len(block) == 0:
            raise AudioError(
                f"{path}: truncated: header says {handle.frames} frames, only {decoded_samples} "
                f"could be decoded (audio stops at {decoded_samples / rate_hz:.2f} s); "
                "re-copy or re-export the file"
            )
        if not np.isfinite(block).all():  # flat check first: a per-row reduction is slow
            finite = np.isfinite(block).all(axis=1)
            bad_s = (decoded_samples + int(np.argmin(finite))) / rate_hz
            raise AudioError(
                f"{path}: contains NaN or infinite samples (first at {bad_s:.3f} s); "
                "the file is corrupt, re-export it"
            )
        np.clip(block, -1.0, 1.0, out=block)  # float files may exceed full scale
        decoded_samples += len(block)
        yield block


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode a whole audio file; the format is taken from the content, not the extension.

    Returns (samples float32 (num_samples, num_channels) in [-1, 1], the file's sample rate in Hz).
    Raises AudioError for a missing, empty, unreadable, truncated or zero-length file, a decode
    error, or NaN/infinite samples. Float files beyond full scale are clipped to [-1, 1]. For an
    MP3 without a Xing/Info header, libsndfile's length is an estimate from the first frame, and
    decoding stops there.
    """
    path = os.fspath(path)
    with _open_checked(path) as handle:
        block_samples = max(1, round(READ_BLOCK_S * handle.samplerate))
        blocks = list(_decode_blocks(handle, path, block_samples))
        return np.concatenate(blocks, axis=0), handle.samplerate


def iter_blocks(path: str | os.PathLike, block_s: float) -> Iterator[tuple[np.ndarray, int]]:
    """Decode a long recording in blocks of about `block_s` seconds, holding one block at a time.

    Yields (samples float32 (n, num_channels) in [-1, 1], sample rate in Hz) with n equal to
    round(block_s * rate) except for the last block. Performs the checks of `read_audio`; an error
    found while decoding is raised after the blocks before it and names the second where it broke.
    """
    if not (np.isfinite(block_s) and block_s > 0):
        raise ValueError(f"block_s must be a positive number of seconds, got {block_s!r}")
    path = os.fspath(path)
    with _open_checked(path) as handle:
        block_samples = max(1, round(block_s * handle.samplerate))
        for block in _decode_blocks(handle, path, block_samples):
            yield block, handle.samplerate


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels: (num_samples, num_channels) or (num_samples,) -> (num_samples,).

    Returns float32.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 1:
        return samples
    if samples.ndim != 2:
        raise ValueError(
            f"expected samples shaped (num_samples, num_channels), got {samples.shape}"
        )
    return samples.mean(axis=1, dtype=np.float32)


def resample(samples_1d: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Band-limited resampling (soxr, 'HQ') of float32 (num_samples,) from `from_hz` to `to_hz`.

    Returns float32 of about num_samples * to_hz / from_hz samples; the input unchanged when the
    rates are equal.
    """
    if from_hz <= 0 or to_hz <= 0:
        raise ValueError(f"sample rates must be positive, got from_hz={from_hz}, to_hz={to_hz}")
    samples_1d = np.asarray(samples_1d, dtype=np.float32)
    if samples_1d.ndim != 1:
        raise ValueError(f"expected mono samples shaped (num_samples,), got {samples_1d.shape}")
    if from_hz == to_hz:
        return samples_1d
    return soxr.resample(samples_1d, from_hz, to_hz, quality=_SOXR_QUALITY).astype(np.float32)


def load_mono_16k(path: str | os.PathLike) -> np.ndarray:
    """Decode, downmix and resample a file to internal audio: float32 (num_samples,) at 16 kHz."""
    samples, rate_hz = read_audio(path)
    return resample(to_mono(samples), rate_hz, SAMPLE_RATE_HZ)


class StreamingResampler:
    """Incremental resampling of one mono source to `SAMPLE_RATE_HZ`, for live or streamed input.

    Any chunking of the input gives the same output as feeding the whole signal at once:
    ``concat(process(c) for c in chunks) + flush()``. Output lags input by the filter delay;
    `flush` returns the tail once the source has ended. One instance per source.
    """

    def __init__(self, from_hz: int) -> None:
        if from_hz <= 0:
            raise ValueError(f"from_hz must be a positive sample rate, got {from_hz}")
        self.from_hz = from_hz
        self._stream = None
        if from_hz != SAMPLE_RATE_HZ:
            self._stream = soxr.ResampleStream(
                from_hz, SAMPLE_RATE_HZ, 1, dtype="float32", quality=_SOXR_QUALITY
            )
        self._flushed = False

    def process(self, chunk_1d: np.ndarray) -> np.ndarray:
        """Resample the next float32 (n,) chunk at `from_hz`; returns float32 (m,) at 16 kHz."""
        if self._flushed:
            raise RuntimeError("StreamingResampler.process() after flush(); make a new one")
        chunk_1d = np.ascontiguousarray(chunk_1d, dtype=np.float32)
        if chunk_1d.ndim != 1:
            raise ValueError(f"expected a mono chunk shaped (n,), got {chunk_1d.shape}")
        if self._stream is None:
            return chunk_1d.copy()
        return self._stream.resample_chunk(chunk_1d, last=False)

    def flush(self) -> np.ndarray:
        """End the source: returns the remaining float32 (m,) output at 16 kHz."""
        if self._flushed:
            raise RuntimeError("StreamingResampler.flush() called twice; make a new one")
        self._flushed = True
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        return self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
