"""Classifier heads and their architecture as a value: depth, width, activation.

A spec is written `DEPTHxWIDTH:ACTIVATION` (`2x64:gelu`): DEPTH hidden layers of WIDTH units,
each Linear -> activation -> dropout, then a linear layer to the classes. `0x0:linear` is a
single linear layer. The search (`search.py`) proposes specs; the config names them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU,
               "linear": nn.Identity}
MAX_DEPTH = 4
MAX_WIDTH = 1024
_SPEC = re.compile(r"^(\d+)x(\d+):([a-z]+)$")


@dataclass(frozen=True, order=True)
class HeadSpec:
    depth: int
    width: int
    activation: str

    def __post_init__(self):
        if not 0 <= self.depth <= MAX_DEPTH:
            raise ValueError(f"head depth {self.depth} is out of range; allowed 0-{MAX_DEPTH}")
        if self.depth and not 1 <= self.width <= MAX_WIDTH:
            raise ValueError(f"head width {self.width} is out of range; allowed 1-{MAX_WIDTH}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"head activation {self.activation!r} is unknown; choose one of "
                             f"{', '.join(ACTIVATIONS)}")

    def __str__(self) -> str:
        return f"{self.depth}x{self.width}:{self.activation}"


def parse_spec(text: str) -> HeadSpec:
    """'2x64:gelu' -> HeadSpec(2, 64, 'gelu'); a one-line error names the text otherwise."""
    match = _SPEC.match(text.strip())
    if not match:
        raise ValueError(f"head spec {text!r} is not DEPTHxWIDTH:ACTIVATION (e.g. 2x64:gelu)")
    return HeadSpec(int(match[1]), int(match[2]), match[3])


def parse_language_heads(items: tuple[str, ...]) -> dict[str, HeadSpec]:
    """('de=2x64:gelu', ...) -> {'de': HeadSpec(...)}."""
    out = {}
    for item in items:
        language, sep, spec = item.partition("=")
        if not sep or not language.strip():
            raise ValueError(f"model.multigate.language_heads: {item!r} is not "
                             "LANGUAGE=DEPTHxWIDTH:ACTIVATION")
        out[language.strip()] = parse_spec(spec)
    return out


def build_head(spec: HeadSpec, in_dim: int, n_classes: int, dropout: float) -> nn.Sequential:
    """(B, in_dim) -> logits (B, n_classes)."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(spec.depth):
        layers += [nn.Linear(width, spec.width), ACTIVATIONS[spec.activation](),
                   nn.Dropout(dropout)]
        width = spec.width
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)
