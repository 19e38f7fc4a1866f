"""A real microphone for tests: a private PulseAudio server whose default source is a pipe.

The server runs with HOME and XDG_RUNTIME_DIR in a temporary folder, a null sink, and
`module-pipe-source` (s16le, 16 kHz, mono) as the default source. PortAudio reaches it through
ALSA's pulse plugin (`pcm.!default pulse` in the temporary HOME's .asoundrc). Whatever is
written into the pipe is what the microphone hears, and only that, as with a real microphone.
"""

from __future__ import annotations

import ctypes.util
import glob
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

RATE_HZ = 16_000
ASOUNDRC = "pcm.!default {\n  type pulse\n}\nctl.!default {\n  type pulse\n}\n"


def missing_requirements() -> str | None:
    """Why a PulseAudio microphone cannot run here (None when it can)."""
    for tool in ("pulseaudio", "pactl"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (apt-get install pulseaudio)"
    if ctypes.util.find_library("portaudio") is None:
        return "PortAudio not installed (apt-get install libportaudio2)"
    if not glob.glob("/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so") + glob.glob(
            "/usr/lib/alsa-lib/libasound_module_pcm_pulse.so"):
        return "ALSA's pulse plugin not installed (apt-get install libasound2-plugins)"
    return None


class PulseMicrophone:
    """Start with `start()`, write audio with `play()`, end with `stop()`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.runtime = root / "runtime"
        self.pipe = root / "mic.pipe"
        self.log = root / "pulseaudio.log"
        self.env = dict(os.environ, HOME=str(self.home), XDG_RUNTIME_DIR=str(self.runtime),
                        XDG_CONFIG_HOME=str(self.home / ".config"))
        self.env.pop("PULSE_SERVER", None)
        self._server: subprocess.Popen | None = None
        self._fd: int | None = None

    def start(self, timeout_s: float = 15.0) -> None:
        self.home.mkdir(parents=True)
        self.runtime.mkdir(mode=0o700, parents=True)
        (self.home / ".asoundrc").write_text(ASOUNDRC, encoding="ascii")
        command = [
            "pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit",
            "--disable-shm", "--log-target=stderr",
            "-L", "module-native-protocol-unix",
            "-L", "module-null-sink sink_name=null",
            "-L", f"module-pipe-source source_name=mic file={self.pipe} format=s16le "
                  f"rate={RATE_HZ} channels=1",
        ]
        with open(self.log, "wb") as log:
            self._server = subprocess.Popen(command, env=self.env, stdout=log, stderr=log,
                                            cwd=self.root)
        deadline = time.monotonic() + timeout_s
        while subprocess.run(["pactl", "info"], env=self.env, capture_output=True).returncode:
            if self._server.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("PulseAudio did not start: "
                                   + self.log.read_text(errors="replace")[-2000:])
            time.sleep(0.1)
        subprocess.run(["pactl", "set-default-source", "mic"], env=self.env, check=True,
                       capture_output=True)
        # O_RDWR: opening never waits for the reader, and the pipe never reports end of file
        self._fd = os.open(self.pipe, os.O_RDWR)

    def play(self, samples: np.ndarray, block_ms: int = 100) -> None:
        """Write float32 (n,) samples into the microphone, paced in real time."""
        pcm = np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2")
        block = RATE_HZ * block_ms // 1000
        start = time.monotonic()
        for i, pos in enumerate(range(0, pcm.size, block)):
            os.write(self._fd, pcm[pos:pos + block].tobytes())
            delay = start + (i + 1) * block_ms / 1000 - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def stop(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._server is not None and self._server.poll() is None:
            self._server.terminate()
            try:
                self._server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.wait(timeout=5)
        self._server = None
