"""Runtime log-mel features: known answers, chunking invariance, the numba and numpy kernels
agreeing bit for bit, parity with the torch front end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_ser import contract, features

PARITY_ATOL = 2e-3
"""Max |numpy - torch| on log-mel values. torchaudio computes the STFT in float32, so each
spectrum value carries an error of about 1e-7 * ||frame||, up to delta ~ 2e-6 for a full-scale
frame. log(p + floor) turns a power error 2 * sqrt(p) * delta into a log error that peaks where
p equals the floor: delta / sqrt(LOG_FLOOR) = 1e3 * delta ~ 2e-3. Measured on the signal below:
4.4e-4, in an empty band of a full-scale frame; at most ~1e-4 elsewhere."""

FILTERBANK_ATOL = 2e-5
"""Max |numpy - torchaudio| filter weight. torchaudio builds the band edges in float32, and
700 * (10 ** (mel / 2595) - 1) loses ~36x relative precision at 20 Hz; measured 6e-6."""

RNG_SEED = 20_240_601
SR = contract.SAMPLE_RATE_HZ


def _voiced(seconds: float, f0_hz: float, rng: np.random.Generator) -> np.ndarray:
    """Harmonics of a gliding f0 with 5.5 Hz vibrato, a syllable-rate envelope and breath noise."""
    t = np.arange(int(seconds * SR)) / SR
    glide, vibrato = np.sin(2 * np.pi * 0.7 * t), np.sin(2 * np.pi * 5.5 * t)
    f0 = f0_hz * (1.0 + 0.2 * glide + 0.05 * vibrato)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    n_harmonics = int(7_800 / f0.max())
    x = sum(np.sin(k * phase) / k for k in range(1, n_harmonics + 1))
    envelope = 0.2 + 0.8 * np.sin(2 * np.pi * 3.0 * t) ** 2
    return 0.3 * x * envelope + 0.01 * rng.standard_normal(t.size)


def _test_signal() -> np.ndarray:
    """About 4.5 s of speech-like audio with exact silence, very quiet and full-scale parts."""
    rng = np.random.default_rng(RNG_SEED)
    speech = _voiced(2.0, 140.0, rng)
    clean = _voiced(0.5, 220.0, rng) - 0.01 * rng.standard_normal(int(0.5 * SR))
    full_scale = 0.99 * clean / np.abs(clean).max()  # harmonics only, no noise: empty bands
    parts = [
        speech,
        np.zeros(8_000),  # digital silence
        1e-5 * speech[:8_000],  # very quiet speech, power near the floor
        1e-7 * rng.standard_normal(4_000),  # dither-level noise
        np.zeros(777),  # silence that ends mid-frame
        full_scale,
        3e-4 * rng.standard_normal(3_001),
        _voiced(0.6, 110.0, rng),
    ]
    return np.concatenate(parts).astype(np.float32)


SIGNAL = _test_signal()
OFFLINE = features.log_mel(SIGNAL)


def _bits(x: np.ndarray) -> np.ndarray:
    """The raw float32 bit patterns, for bit-exact comparison."""
    assert x.dtype == np.float32
    return x.view(np.uint32)


# --- shapes and known answers (numpy only) ---------------------------------------------------


@pytest.mark.parametrize("kernels", features.KERNELS)
@pytest.mark.parametrize("num_samples", [0, 1, 399, 400, 401, 559, 560, 561, 16_000, 16_001])
def test_frame_count_follows_contract(num_samples: int, kernels: str) -> None:
    out = features.log_mel(np.zeros(num_samples, dtype=np.float32), kernels=kernels)
    assert out.shape == (contract.num_frames(num_samples), contract.N_MELS)
    assert out.dtype == np.float32


def test_silence_is_the_log_floor() -> None:
    out = features.log_mel(np.zeros(SR, dtype=np.float32))
    assert np.all(out == np.float32(np.log(contract.LOG_FLOOR)))


def test_sine_1khz_matches_the_analytic_spectrum() -> None:
    # 1 kHz is FFT bin 25 exactly and fills a 400-sample window with 25 whole cycles, so the
    # periodic Hann leaves power only in bins 24..26: (A*N/4)^2 at 25 and (A*N/8)^2 beside it.
    amplitude, n = 0.5, contract.N_FFT
    bin_1khz = round(1_000 * n / SR)
    sine = amplitude * np.sin(2 * np.pi * 1_000 * np.arange(SR) / SR)
    out = features.log_mel(sine.astype(np.float32))

    fb = features.mel_filterbank().astype(np.float64)
    mel_power = (amplitude * n / 4) ** 2 * fb[bin_1khz] + (amplitude * n / 8) ** 2 * (
        fb[bin_1khz - 1] + fb[bin_1khz + 1]
    )
    expected = np.log(mel_power + contract.LOG_FLOOR)
    np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), rtol=0, atol=1e-4)

    band_of_1khz = int(np.argmax(fb[bin_1khz]))  # the filter that weighs 1 kHz most
    assert np.all(out.argmax(axis=1) == band_of_1khz)


def test_filterbank_shape_and_support() -> None:
    fb = features.mel_filterbank()
    assert fb.shape == (contract.N_FFT // 2 + 1, contract.N_MELS)
    assert fb.dtype == np.float32
    assert fb.min() >= 0.0 and fb.max() <= 1.0
    assert np.all(fb.max(axis=0) > 0.0), "every filter covers at least one bin"
    peaks_hz = fb.argmax(axis=0) * SR / contract.N_FFT
    assert np.all(np.diff(peaks_hz) >= 0), "filters are ordered by frequency"
    fb[0, 0] = 123.0  # a copy: the module's own filterbank stays untouched
    assert features.mel_filterbank()[0, 0] != 123.0


def test_rejects_multichannel_input() -> None:
    with pytest.raises(ValueError, match=r"shape \(2, 800\)"):
        features.log_mel(np.zeros((2, 800), dtype=np.float32))
    with pytest.raises(ValueError, match="mono"):
        features.frames_of(features.init_state(), np.zeros((800, 2), dtype=np.float32), 3)


# --- frames in any pieces (as a stream computes a segment's) equal the offline frames ---------


def _piecewise(signal: np.ndarray, first: int, cuts: list[int], kernels: str = "numba"
               ) -> np.ndarray:
    """Frames [first, all) of `signal` computed by `frames_of` in pieces ending at `cuts`
    (frame counts from `first`), each from only the samples its frames read."""
    state = features.init_state(kernels)
    assert state.kernels == kernels
    total = contract.num_frames(signal.size)
    bounds = sorted({first + c for c in cuts if first + c < total} | {first, max(first, total)})
    pieces = [np.zeros((0, contract.N_MELS), dtype=np.float32)]
    for a, b in zip(bounds, bounds[1:]):
        start, stop = features.sample_span(a, b)
        block = features.frames_of(state, signal[start:stop], b - a)
        assert block.shape == (b - a, contract.N_MELS) and block.dtype == np.float32
        pieces.append(block)
    return np.concatenate(pieces)


@settings(max_examples=80, deadline=None)
@given(
    start=st.integers(0, SIGNAL.size - 4_000),
    num_samples=st.integers(0, 4_000),
    first=st.integers(0, 30),
    cuts=st.lists(st.one_of(st.just(1), st.integers(0, 30), st.integers(0, 200)), max_size=30),
)
def test_frames_in_any_pieces_equal_offline(start: int, num_samples: int, first: int,
                                            cuts: list[int]) -> None:
    signal = SIGNAL[start : start + num_samples]
    piecewise = _piecewise(signal, first, cuts)
    assert np.array_equal(_bits(piecewise), _bits(features.log_mel(signal)[first:]))


def test_frame_by_frame_across_offline_blocks_equals_offline() -> None:
    # Longer than one offline block of frames, so offline block boundaries are crossed too.
    signal = np.tile(SIGNAL, 3)
    total = contract.num_frames(signal.size)
    assert total > features._BLOCK_FRAMES
    one_by_one = _piecewise(signal, 0, list(range(1, total)))
    assert np.array_equal(_bits(one_by_one), _bits(features.log_mel(signal)))


def test_accepts_read_only_and_float64_input() -> None:
    raw = SIGNAL[:5_000].tobytes()
    read_only = np.frombuffer(raw, dtype=np.float32)
    count = contract.num_frames(read_only.size)
    out = features.frames_of(features.init_state(), read_only, count)
    assert np.array_equal(_bits(out), _bits(OFFLINE[:count]))
    as_float64 = features.log_mel(SIGNAL[:5_000].astype(np.float64))
    assert np.array_equal(_bits(as_float64), _bits(out))


# --- the numpy kernels: the numba kernels' numbers, bit for bit, without numba ---------------


def _random_audio(seed: int, num_samples: int) -> np.ndarray:
    """White noise at a random level from digital silence to beyond full scale."""
    rng = np.random.default_rng(seed)
    level = 10.0 ** rng.uniform(-9, 0.5)
    return (level * rng.standard_normal(num_samples)).astype(np.float32)


def test_numpy_kernels_equal_numba_offline() -> None:
    # Random audio longer than two blocks of frames, the test signal, and a read-only buffer.
    noise = _random_audio(RNG_SEED, (2 * features._BLOCK_FRAMES + 37) * contract.HOP_SAMPLES)
    assert contract.num_frames(noise.size) > 2 * features._BLOCK_FRAMES
    read_only = np.frombuffer(SIGNAL.tobytes(), dtype=np.float32)
    for signal in (noise, SIGNAL, read_only):
        by_numpy = features.log_mel(signal, kernels="numpy")
        assert np.array_equal(_bits(by_numpy), _bits(features.log_mel(signal, kernels="numba")))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    num_samples=st.integers(0, 6_000),
    first=st.integers(0, 30),
    cuts=st.lists(st.one_of(st.just(1), st.integers(0, 30), st.integers(0, 200)), max_size=30),
)
def test_numpy_kernels_in_any_pieces_equal_numba_offline(
    seed: int, num_samples: int, first: int, cuts: list[int]
) -> None:
    signal = _random_audio(seed, num_samples)
    piecewise = _piecewise(signal, first, cuts, kernels="numpy")
    assert np.array_equal(_bits(piecewise),
                          _bits(features.log_mel(signal, kernels="numba")[first:]))


def test_unknown_kernels_are_refused_with_the_allowed_names() -> None:
    x = np.zeros(800, dtype=np.float32)
    with pytest.raises(ValueError, match="'torch'.*numba, numpy"):
        features.log_mel(x, kernels="torch")
    with pytest.raises(ValueError, match="numba, numpy"):
        features.init_state("Numpy")
    with pytest.raises(ValueError, match="numba, numpy"):
        features.FeatureState(kernels="cuda")


def test_numpy_kernels_never_import_numba() -> None:
    # A fresh interpreter: this one has numba loaded by the other tests.
    script = (
        "import sys\n"
        "import numpy as np\n"
        "import edge_ser.features\n"
        "edge_ser.features.log_mel(np.zeros(16000, np.float32), kernels='numpy')\n"
        "edge_ser.features.frames_of(edge_ser.features.init_state('numpy'), np.zeros(800), 3)\n"
        "assert 'numba' not in sys.modules, 'numba imported by the numpy kernels'\n"
        "import edge_ser.runtime_config, edge_ser.stream\n"
        "assert 'numba' not in sys.modules, 'numba imported by the runtime'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


# --- parity with the torch front end (skipped where torch is not installed) ------------------


def test_filterbank_matches_torchaudio() -> None:
    torchaudio = pytest.importorskip("torchaudio")
    reference = torchaudio.functional.melscale_fbanks(
        n_freqs=contract.N_FFT // 2 + 1,
        f_min=contract.F_MIN_HZ,
        f_max=contract.F_MAX_HZ,
        n_mels=contract.N_MELS,
        sample_rate=contract.SAMPLE_RATE_HZ,
        norm=None,
        mel_scale="htk",
    ).numpy()
    np.testing.assert_allclose(features.mel_filterbank(), reference, rtol=0, atol=FILTERBANK_ATOL)


def test_log_mel_matches_torch_front_end() -> None:
    pytest.importorskip("torchaudio")
    import torch

    from edge_ser_train.frontend import LogMel

    with torch.no_grad():
        reference = LogMel()(torch.from_numpy(SIGNAL)).numpy()
    assert reference.shape == OFFLINE.shape
    max_diff = float(np.abs(OFFLINE - reference).max())
    assert max_diff <= PARITY_ATOL, f"max |numpy - torch| = {max_diff:.3g} > {PARITY_ATOL}"


def test_torch_front_end_shapes() -> None:
    pytest.importorskip("torchaudio")
    import torch

    from edge_ser_train.frontend import LogMel

    front_end = LogMel()
    batch = torch.from_numpy(np.stack([SIGNAL[:16_000], SIGNAL[16_000:32_000]]))
    with torch.no_grad():
        out = front_end(batch)
        assert out.shape == (2, contract.num_frames(16_000), contract.N_MELS)
        assert torch.equal(out[1], front_end(batch[1]))
        assert front_end(torch.zeros(399)).shape == (0, contract.N_MELS)
        assert front_end(torch.zeros(3, 100)).shape == (3, 0, contract.N_MELS)
    with pytest.raises(ValueError, match="batch, samples"):
        front_end(torch.zeros(1, 2, 800))
