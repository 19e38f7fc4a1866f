"""The audio and feature contract shared by training, export and the runtime.

Every module that touches samples or feature frames takes its numbers from here, so the
training front end (torchaudio) and the runtime front end (numpy) cannot drift apart.
Names carry their units.
"""

SAMPLE_RATE_HZ = 16_000
"""Internal audio: mono float32 in [-1, 1] at this rate."""

WINDOW_MS = 25
HOP_MS = 10
WINDOW_SAMPLES = SAMPLE_RATE_HZ * WINDOW_MS // 1000  # 400
HOP_SAMPLES = SAMPLE_RATE_HZ * HOP_MS // 1000  # 160
FRAMES_PER_S = 1000 // HOP_MS  # 100

N_FFT = WINDOW_SAMPLES
"""FFT size equals the window, so frame t covers samples [t * HOP, t * HOP + WINDOW)."""

N_MELS = 64
F_MIN_HZ = 20.0
F_MAX_HZ = 7_600.0
LOG_FLOOR = 1e-6
"""Log-mel = log(mel_power + LOG_FLOOR); HTK mel scale, no filter normalisation, periodic Hann."""

DEFAULT_LABELS = ("angry", "happy", "neutral", "sad")
"""The 4-class taxonomy shared by all corpora (column `emotion4` of labels.csv)."""


def num_frames(num_samples: int) -> int:
    """Feature frames produced by `num_samples` samples (no padding: partial frames wait)."""
    if num_samples < WINDOW_SAMPLES:
        return 0
    return 1 + (num_samples - WINDOW_SAMPLES) // HOP_SAMPLES


# --- Tensor names and metadata keys shared by export and every runtime backend -----------------

ENCODER_INPUT = "feats"
"""(batch, chunk_frames, N_MELS) float32 log-mel frames."""
ENCODER_OUTPUT = "frames"
"""(batch, chunk_frames // stride, channels) float32 frame embeddings."""
STATE_INPUT_PREFIX = "state_in_"
STATE_OUTPUT_PREFIX = "state_out_"
"""Encoder state tensor i is fed as `state_in_{i}` and returned as `state_out_{i}`."""

METADATA_PREFIX = "edge_ser."
"""ONNX metadata_props keys are this prefix + a manifest field name."""

BATCH_DIM = "batch"
"""Symbolic name of the one dynamic axis of every encoder input and output (ONNX `dim_param`,
manifest shapes): the batch of independent streams or clips. Every other axis is fixed."""

ONNX_OPSET = 17
"""ONNX opset of the exported encoders (QDQ with per-channel weight scales needs >= 13)."""
