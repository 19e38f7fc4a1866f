"""The measurement protocol (docs/protocol.md): corpus roles, the cells it measures, and the
per-cell raw results that tools/make_results.py writes, resumes and renders.

A corpus is any folder of the data directory holding a `labels.csv` in the shared format; which
corpus selects and which confirms is read from `configs/protocol/default.yaml`, never named in code.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from edge_ser.atomic_write import write_text_atomic
from edge_ser.config import load_config, setting

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "configs" / "protocol" / "default.yaml"

KINDS = ("in_domain", "lolo")
"""in_domain: train on a corpus' training speakers, score its held-out speakers.
lolo: train on every labelled clip of all other corpora, score every labelled clip of this one."""

SYSTEMS = ("ours", "peer")


@dataclass(frozen=True)
class ProtocolConfig:
    selection: tuple[str, ...] = setting(
        (), help="corpora every choice is made on (their LOLO and held-out speakers)")
    confirmation: tuple[str, ...] = setting(
        (), help="corpora measured unchanged, never used to choose")
    seeds: tuple[int, ...] = setting((0, 1, 2), help="seeds of the full table")
    test_fraction: float = setting(0.2, min=0.05, max=0.9,
                                   help="in-domain: share of each corpus' speakers held out")
    common_sentences: tuple[str, ...] = setting(
        (), help="corpus:text of sentences spoken in every emotion, scored separately")

    @property
    def corpora(self) -> tuple[str, ...]:
        return self.selection + self.confirmation

    def role(self, corpus: str) -> str:
        return "selection" if corpus in self.selection else "confirmation"


def load_protocol(path: Path = PROTOCOL, overrides: list[str] | None = None) -> ProtocolConfig:
    protocol = load_config(ProtocolConfig, path, overrides or [])
    both = set(protocol.selection) & set(protocol.confirmation)
    if both:
        raise ValueError(f"{path}: {', '.join(sorted(both))} both selection and confirmation")
    if not protocol.selection or not protocol.confirmation:
        raise ValueError(f"{path}: selection and confirmation each need at least one corpus")
    for entry in protocol.common_sentences:
        if entry.count(":") != 1 or not all(entry.split(":")):
            raise ValueError(f"{path}: common_sentences entry {entry!r} is not corpus:text")
    return protocol


def discover_corpora(data: Path) -> list[str]:
    """Names of the folders of `data` that hold a labels.csv."""
    if not data.is_dir():
        raise SystemExit(f"--data {data}: not a folder")
    return sorted(p.parent.name for p in data.glob("*/labels.csv"))


def check_roles(protocol: ProtocolConfig, found: list[str], data: Path) -> None:
    """Every corpus found has exactly one role and every corpus with a role is found."""
    unassigned = [c for c in found if c not in protocol.corpora]
    if unassigned:
        raise SystemExit(f"{data}: corpus {', '.join(unassigned)} has no role in the protocol "
                         "(add it to selection or confirmation in configs/protocol/default.yaml)")
    missing = [c for c in protocol.corpora if c not in found]
    if missing:
        raise SystemExit(f"{data}: no labels.csv for protocol corpus {', '.join(missing)}")


def common_sentence_files(protocol: ProtocolConfig, data: Path, corpus: str) -> set[Path]:
    """Audio files of `corpus` whose labels.csv `text` is one of its common sentences."""
    texts = {e.split(":")[1] for e in protocol.common_sentences if e.split(":")[0] == corpus}
    if not texts:
        return set()
    folder = data / corpus
    with (folder / "labels.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    files = {folder / r["file"] for r in rows if r.get("text", "") in texts}
    if not files:
        raise SystemExit(f"{folder / 'labels.csv'}: no clip has text {', '.join(sorted(texts))} "
                         "(configs/protocol/default.yaml common_sentences)")
    return files


# --- raw results: one JSON file per cell ---------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    kind: str
    corpus: str
    seed: int
    system: str

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.corpus}-s{self.seed}-{self.system}.json"


def cell_path(runs: Path, cell: Cell) -> Path:
    return runs / cell.name


def read_cell(runs: Path, cell: Cell) -> dict | None:
    path = cell_path(runs, cell)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def write_cell(runs: Path, cell: Cell, record: dict) -> None:
    runs.mkdir(parents=True, exist_ok=True)
    write_text_atomic(cell_path(runs, cell), json.dumps(record, indent=1))


def read_cells(runs: Path) -> list[dict]:
    """Every cell record under `runs`, in file-name order."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(runs.glob("*-s*-*.json"))
            if p.stem.split("-")[0] in KINDS]
