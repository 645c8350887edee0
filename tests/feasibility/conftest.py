"""Shared helpers for the feasibility tests: the example folder and a small project written inline."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from civicmesh.feasibility.model import Project, load_project

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "feasibility"

# One investment of 1000 in year 0, a maintenance cost of 30 and an energy saving of 240 a year in years 1-10:
# small enough to recompute by hand.
SMALL = """\
name: streetlights
horizon_years: 10
discount: {financial: 0.06, social: 0.08}
capex:
  - {name: lanterns, amount: 1000, standalone: 1300, schedule: [1.0]}
opex:
  - {name: maintenance, per_year: 30, standalone: 40, from_year: 1}
benefits:
  - {name: electricity saved, kind: energy, per_year: 240, from_year: 1, financial: true}
"""


def small(extra: str = "", **replace: str) -> Project:
    text = SMALL
    for old, new in replace.items():
        text = text.replace(old.replace("__", " "), new)
    return load_project("inline", text=text + extra)


@pytest.fixture
def examples() -> Path:
    return EXAMPLES


def non_finite(node: object, path: str = "") -> list[str]:
    """Paths of every NaN or infinite float in a JSON-like tree."""
    if isinstance(node, float):
        return [] if math.isfinite(node) else [path]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in non_finite(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in non_finite(v, f"{path}.{i}")]
    return []
