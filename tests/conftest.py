import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
CORPORA = ("emodb", "urdu", "turev")


@pytest.fixture
def shared_data() -> Path:
    """The shared corpora; tests that need them skip with a reason when they are absent."""
    if not all((SHARED_DATA / c / "labels.csv").is_file() for c in CORPORA):
        pytest.skip(f"the shared corpora are not at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def fsynced(monkeypatch) -> list[str]:
    """The paths of every file and folder fsynced while the test runs, in order."""
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return synced
