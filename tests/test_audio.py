"""Tests for edge_ser.audio: decoding every supported format, the checks on broken files,
resampling, block-wise decoding and the streaming resampler."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_ser.audio import (
    AudioError,
    StreamingResampler,
    iter_blocks,
    load_mono_16k,
    read_audio,
    resample,
    to_mono,
)
from edge_ser.contract import SAMPLE_RATE_HZ

RATES_HZ = (8000, 22050, 44100, 48000)
CHANNEL_COUNTS = (1, 2, 4)
DURATION_S = 0.5  # FFT bins of 2 Hz, so the test tones below sit exactly on bins
HAS_MP3 = "MP3" in sf.available_formats()


def tones(rate_hz: int, num_channels: int, duration_s: float = DURATION_S) -> np.ndarray:
    """float32 (n, num_channels): channel c is a 0.5-amplitude sine at 250 + 300 c Hz, so a
    decoder that swaps or mixes channels is caught."""
    t_s = np.arange(round(rate_hz * duration_s)) / rate_hz
    freqs_hz = 250 + 300 * np.arange(num_channels)
    return (0.5 * np.sin(2 * np.pi * t_s[:, None] * freqs_hz[None, :])).astype(np.float32)


def dominant_hz(x_1d: np.ndarray, rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(x_1d * np.hanning(len(x_1d))))
    return float(np.fft.rfftfreq(len(x_1d), 1 / rate_hz)[np.argmax(spectrum)])


@dataclass(frozen=True)
class Codec:
    name: str
    format: str
    subtype: str
    filename: str
    atol: float | None = None  # lossless: largest sample error allowed
    min_snr_db: float | None = None  # companded 8-bit codecs: sample-wise SNR
    lossy: bool = False  # perceptual codecs: compare frequency and correlation, not samples


CODECS = (
    # PCM: libsndfile writes with 2^(b-1) - 1 and reads with 2^(b-1), so one step plus rounding.
    Codec("wav-pcm16", "WAV", "PCM_16", "clip.wav", atol=1.5 * 2**-15),
    Codec("wav-pcm24", "WAV", "PCM_24", "clip.wav", atol=1.5 * 2**-23),
    Codec("wav-pcm32", "WAV", "PCM_32", "clip.wav", atol=2**-23),  # float32 resolution
    Codec("wav-float", "WAV", "FLOAT", "clip.wav", atol=0.0),
    # mu-law / A-law: ~38 dB SNR on a loud sine (measured 36.7 and 38.1 dB).
    Codec("wav-ulaw", "WAV", "ULAW", "clip.wav", min_snr_db=30.0),
    Codec("wav-alaw", "WAV", "ALAW", "clip.wav", min_snr_db=30.0),
    Codec("flac", "FLAC", "PCM_16", "clip.flac", atol=1.5 * 2**-15),
    Codec("aiff", "AIFF", "PCM_16", "clip.aiff", atol=1.5 * 2**-15),
    Codec("ogg-vorbis", "OGG", "VORBIS", "clip.ogg", lossy=True),
    Codec("mp3", "MP3", "MPEG_LAYER_III", "clip.mp3", lossy=True),
    # Misnamed files: the format must come from the content.
    Codec("aiff-named-wav", "AIFF", "PCM_16", "clip.wav", atol=1.5 * 2**-15),
    Codec("flac-named-wav", "FLAC", "PCM_16", "clip.wav", atol=1.5 * 2**-15),
)


@pytest.mark.parametrize("num_channels", CHANNEL_COUNTS)
@pytest.mark.parametrize("rate_hz", RATES_HZ)
@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_read_audio_decodes_every_format(
    tmp_path: Path, codec: Codec, rate_hz: int, num_channels: int
) -> None:
    if codec.format == "MP3" and not HAS_MP3:
        pytest.skip("this libsndfile build has no MP3 support")
    if codec.format == "MP3" and num_channels > 2:
        pytest.skip("MPEG audio carries at most 2 channels")
    written = tones(rate_hz, num_channels)
    path = tmp_path / codec.filename
    sf.write(path, written, rate_hz, format=codec.format, subtype=codec.subtype)

    decoded, decoded_rate_hz = read_audio(path)

    assert decoded_rate_hz == rate_hz
    assert decoded.dtype == np.float32
    assert decoded.shape == written.shape
    assert np.abs(decoded).max() <= 1.0
    if codec.atol is not None:
        np.testing.assert_allclose(decoded, written, rtol=0, atol=codec.atol)
    if codec.min_snr_db is not None:
        snr_db = 10 * np.log10(np.sum(written**2) / np.sum((decoded - written) ** 2))
        assert snr_db >= codec.min_snr_db
    if codec.lossy:
        for c in range(num_channels):
            assert dominant_hz(decoded[:, c], rate_hz) == pytest.approx(250 + 300 * c, abs=2.0)
            assert np.corrcoef(decoded[:, c], written[:, c])[0, 1] > 0.9


# --- broken inputs -------------------------------------------------------------------------------


def write_wav(path: Path, samples: np.ndarray, rate_hz: int = 16000, subtype: str = "PCM_16"):
    sf.write(path, samples, rate_hz, format="WAV", subtype=subtype)
    return path


def one_second(rate_hz: int = 16000) -> np.ndarray:
    return tones(rate_hz, 1, duration_s=1.0)[:, 0]


def cut_in_half(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"nothere\.wav: file not found"):
        read_audio(tmp_path / "nothere.wav")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"is a directory"):
        read_audio(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav: file is empty \(0 bytes\)"):
        read_audio(path)


def test_text_file_named_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("caller asked about the invoice\n" * 20)
    with pytest.raises(AudioError, match=r"notes\.wav: not an audio file libsndfile can read") as e:
        read_audio(path)
    assert isinstance(e.value, ValueError)
    assert isinstance(e.value.__cause__, sf.LibsndfileError)


def test_libsndfile_alone_accepts_a_truncated_wav(tmp_path: Path) -> None:
    """Why read_audio parses the header itself: libsndfile shortens the frame count of a WAV
    whose data chunk is shorter than its header says, and reads it without any error."""
    path = cut_in_half(write_wav(tmp_path / "cut.wav", one_second()))
    samples, _ = sf.read(path)
    assert 0 < len(samples) < 16000


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT", "ULAW", "ALAW"])
def test_truncated_wav(tmp_path: Path, subtype: str) -> None:
    path = cut_in_half(write_wav(tmp_path / "cut.wav", one_second(), subtype=subtype))
    with pytest.raises(AudioError, match=r"cut\.wav: truncated: header says 16000 frames, only"):
        read_audio(path)


def test_wav_with_header_only(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "hdr.wav", one_second())
    path.write_bytes(path.read_bytes()[:44])  # the canonical 44-byte header, no audio
    with pytest.raises(AudioError, match=r"hdr\.wav: truncated: header says 16000 frames, only 0 "):
        read_audio(path)


def test_truncated_aiff(tmp_path: Path) -> None:
    path = tmp_path / "cut.aiff"
    sf.write(path, one_second(), 16000, format="AIFF", subtype="PCM_16")
    cut_in_half(path)
    with pytest.raises(AudioError, match=r"cut\.aiff: truncated: header says 16000 frames"):
        read_audio(path)


@pytest.mark.parametrize(
    ("format", "subtype", "name"),
    [
        ("FLAC", "PCM_16", "cut.flac"),
        ("OGG", "VORBIS", "cut.ogg"),
        ("MP3", "MPEG_LAYER_III", "cut.mp3"),
    ],
)
def test_truncated_compressed(tmp_path: Path, format: str, subtype: str, name: str) -> None:
    if format == "MP3" and not HAS_MP3:
        pytest.skip("this libsndfile build has no MP3 support")
    path = tmp_path / name
    sf.write(path, tones(16000, 1, duration_s=3.0), 16000, format=format, subtype=subtype)
    cut_in_half(path)
    with pytest.raises(AudioError, match=re.escape(name) + ": .*(truncated|malformed)"):
        read_audio(path)


def test_wav_of_unknown_length_is_not_truncated(tmp_path: Path) -> None:
    """Recorders writing to a pipe leave 0xFFFFFFFF in the RIFF and data sizes; that is a
    complete file of unstated length, not a truncated one."""
    path = write_wav(tmp_path / "piped.wav", one_second())
    data = bytearray(path.read_bytes())
    assert data[36:40] == b"data"
    data[4:8] = data[40:44] = struct.pack("<I", 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    samples, _ = read_audio(path)
    assert samples.shape == (16000, 1)


def test_zero_length_wav(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "silence.wav", np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioError, match=r"silence\.wav: no samples \(zero-length audio\)"):
        read_audio(path)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_float_wav_with_non_finite_samples(tmp_path: Path, bad_value: float) -> None:
    samples = one_second()
    samples[8000] = bad_value
    path = write_wav(tmp_path / "nan.wav", samples, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: contains NaN or infinite samples .*0\.500 s"):
        read_audio(path)


def test_float_wav_beyond_full_scale_is_clipped(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "hot.wav", 3 * one_second(), subtype="FLOAT")
    samples, _ = read_audio(path)
    assert samples.max() == 1.0 and samples.min() == -1.0


# --- mono, resampling ----------------------------------------------------------------------------


def test_to_mono_averages_channels() -> None:
    stereo = np.array([[1.0, 0.0], [0.5, -0.5], [-1.0, -0.5]], dtype=np.float32)
    mono = to_mono(stereo)
    assert mono.dtype == np.float32
    np.testing.assert_array_equal(mono, [0.5, 0.0, -0.75])
    np.testing.assert_array_equal(to_mono(mono), mono)
    with pytest.raises(ValueError, match="num_channels"):
        to_mono(np.zeros((2, 2, 2)))


@pytest.mark.parametrize("rate_hz", RATES_HZ)
def test_resample_keeps_frequency_and_length(rate_hz: int) -> None:
    sine = (0.5 * np.sin(2 * np.pi * 440 * np.arange(rate_hz) / rate_hz)).astype(np.float32)
    out = resample(sine, rate_hz, SAMPLE_RATE_HZ)
    assert out.dtype == np.float32
    assert abs(len(out) - SAMPLE_RATE_HZ) <= 1
    assert dominant_hz(out, SAMPLE_RATE_HZ) == pytest.approx(440, abs=1.0)
    # Away from the edges (filter transients) it is the ideal 16 kHz sine; HQ passband ripple
    # and stopband leakage keep the error far below 1e-4 (measured < 1e-6).
    ideal = 0.5 * np.sin(2 * np.pi * 440 * np.arange(len(out)) / SAMPLE_RATE_HZ)
    np.testing.assert_allclose(out[400:-400], ideal[400:-400], rtol=0, atol=1e-4)


def test_resample_removes_content_above_the_new_nyquist() -> None:
    t_s = np.arange(48000) / 48000
    passband = np.sin(2 * np.pi * 6000 * t_s).astype(np.float32)
    stopband = np.sin(2 * np.pi * 12000 * t_s).astype(np.float32)  # would alias to 4 kHz
    rms = lambda x: float(np.sqrt(np.mean(x[400:-400] ** 2)))  # noqa: E731
    assert rms(resample(passband, 48000, 16000)) == pytest.approx(rms(passband), rel=0.01)
    assert rms(resample(stopband, 48000, 16000)) < 1e-3 * rms(stopband)


def test_resample_identity_and_bad_rates() -> None:
    x = one_second()
    np.testing.assert_array_equal(resample(x, 16000, 16000), x)
    with pytest.raises(ValueError, match="positive"):
        resample(x, 0, 16000)


def test_load_mono_16k(tmp_path: Path) -> None:
    written = tones(44100, 2, duration_s=1.0)
    path = tmp_path / "call.flac"
    sf.write(path, written, 44100, subtype="PCM_24")
    audio = load_mono_16k(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - SAMPLE_RATE_HZ) <= 1
    expected = resample(written.mean(axis=1), 44100, SAMPLE_RATE_HZ)
    np.testing.assert_allclose(audio, expected, rtol=0, atol=1e-6)


# --- block-wise decoding -------------------------------------------------------------------------


@pytest.mark.parametrize("num_channels", [1, 2])
def test_iter_blocks_matches_read_audio(tmp_path: Path, num_channels: int) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, tones(22050, num_channels, duration_s=3.3), 22050, subtype="PCM_16")
    blocks = list(iter_blocks(path, block_s=0.5))
    assert all(rate_hz == 22050 for _, rate_hz in blocks)
    lengths = [len(b) for b, _ in blocks]
    assert lengths[:-1] == [11025] * 6 and lengths[-1] == round(22050 * 3.3) - 6 * 11025
    whole, _ = read_audio(path)
    np.testing.assert_array_equal(np.concatenate([b for b, _ in blocks]), whole)
    assert blocks[0][0].shape[1] == num_channels


def test_iter_blocks_names_the_second_of_a_decode_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.flac"
    sf.write(path, tones(16000, 1, duration_s=4.0), 16000)
    cut_in_half(path)
    decoded_s = 0.0
    with pytest.raises(AudioError, match=r"cut\.flac: decode error between \d+\.\d\d s and") as e:
        for block, rate_hz in iter_blocks(path, block_s=0.25):
            decoded_s += len(block) / rate_hz
    assert decoded_s > 0
    assert f"between {decoded_s:.2f} s and {decoded_s + 0.25:.2f} s" in str(e.value)


def test_iter_blocks_nan_in_a_later_block(tmp_path: Path) -> None:
    samples = tones(16000, 1, duration_s=3.0)[:, 0]
    samples[40000] = np.nan
    path = write_wav(tmp_path / "nan.wav", samples, subtype="FLOAT")
    seen = []
    with pytest.raises(AudioError, match=r"nan\.wav: contains NaN .*first at 2\.500 s"):
        for block, _ in iter_blocks(path, block_s=1.0):
            seen.append(len(block))
    assert seen == [16000, 16000]


def test_iter_blocks_checks_the_file(tmp_path: Path) -> None:
    truncated = cut_in_half(write_wav(tmp_path / "cut.wav", one_second()))
    with pytest.raises(AudioError, match=r"cut\.wav: truncated"):
        next(iter_blocks(truncated, block_s=0.1))
    with pytest.raises(ValueError, match="block_s"):
        next(iter_blocks(truncated, block_s=0.0))


# --- streaming resampler -------------------------------------------------------------------------


def stream_in_chunks(resampler: StreamingResampler, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Feed x cycling through `sizes`; returns concat(process outputs) + flush()."""
    outs, start, i = [], 0, 0
    while start < len(x):
        outs.append(resampler.process(x[start : start + sizes[i % len(sizes)]]))
        start += sizes[i % len(sizes)]
        i += 1
    outs.append(resampler.flush())
    return np.concatenate(outs)


# Tolerance for chunked vs one-shot streaming: soxr buffers input and filters it in its own
# fixed blocks, so the chunking does not change the arithmetic and the outputs are bit-identical
# in practice. 1e-6 (-120 dBFS) only leaves room for a different summation order in another
# build; a mishandled chunk boundary (dropped, repeated or unfiltered samples) errs by ~0.1-1.
STREAM_ATOL = 1e-6


@settings(max_examples=30, deadline=None)
@given(
    rate_hz=st.sampled_from([8000, 22050, 44100, 48000]),
    sizes=st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=40),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_streaming_resampler_is_independent_of_chunking(
    rate_hz: int, sizes: list[int], seed: int
) -> None:
    x = (0.3 * np.random.default_rng(seed).standard_normal(rate_hz // 2)).astype(np.float32)
    one_shot = stream_in_chunks(StreamingResampler(rate_hz), x, [len(x)])
    chunked = stream_in_chunks(StreamingResampler(rate_hz), x, sizes)
    assert chunked.shape == one_shot.shape
    np.testing.assert_allclose(chunked, one_shot, rtol=0, atol=STREAM_ATOL)
    assert abs(len(chunked) - len(x) * SAMPLE_RATE_HZ / rate_hz) <= 2


@pytest.mark.parametrize("rate_hz", RATES_HZ)
def test_streaming_sine_has_no_clicks(rate_hz: int) -> None:
    sine = (0.5 * np.sin(2 * np.pi * 440 * np.arange(2 * rate_hz) / rate_hz)).astype(np.float32)
    sizes = [int(s) for s in np.random.default_rng(rate_hz).integers(1, 3000, size=200)]
    sizes[:5] = [1, 1, 2, 1, 7]  # single samples too
    chunked = stream_in_chunks(StreamingResampler(rate_hz), sine, sizes)
    offline = soxr.resample(sine, rate_hz, SAMPLE_RATE_HZ, quality="HQ")
    assert chunked.shape == offline.shape
    assert np.abs(chunked - offline).max() <= STREAM_ATOL
    # and the boundaries are inaudible against the ideal sine as well
    ideal = 0.5 * np.sin(2 * np.pi * 440 * np.arange(len(chunked)) / SAMPLE_RATE_HZ)
    assert np.abs(chunked - ideal)[400:-400].max() <= 1e-4


def test_streaming_resampler_at_16k_is_a_passthrough() -> None:
    x = one_second()
    resampler = StreamingResampler(SAMPLE_RATE_HZ)
    np.testing.assert_array_equal(stream_in_chunks(resampler, x, [1, 100, 4097]), x)
    with pytest.raises(RuntimeError, match="after flush"):
        resampler.process(x)
