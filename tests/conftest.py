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
