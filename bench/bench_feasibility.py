"""Monte Carlo risk: 100,000 draws over a 30-year horizon, vectorized, against a plain per-draw loop."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from civicmesh.feasibility import finance
from civicmesh.feasibility.model import flows, streams
from civicmesh.feasibility.project import load_project
from civicmesh.feasibility.risk import draw_multipliers, monte_carlo

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "feasibility" / "city-programme.yaml"


def run() -> list[dict[str, Any]]:
    text = EXAMPLE.read_text(encoding="utf-8").replace("horizon_years: 20", "horizon_years: 30")
    project = load_project("bench", text=text)
    s = streams(project)
    monte_carlo(project, s, draws=2_000)  # warm up scipy's distributions
    started = time.perf_counter()
    monte_carlo(project, s, draws=100_000)
    vectorized = time.perf_counter() - started

    # Baseline: the same draws evaluated one at a time, as a spreadsheet-style loop would.
    m = draw_multipliers(project, 1_000, np.random.default_rng(1))
    started = time.perf_counter()
    for i in range(1_000):
        one = {k: float(v[i]) for k, v in m.items()}
        finance.npv(project.social_rate, flows(project, s, one, economic=True))
        finance.npv(project.financial_rate, flows(project, s, one, economic=False))
    loop_per_draw = (time.perf_counter() - started) / 1_000
    return [dict(scenario="Monte Carlo, 100,000 draws x 31 years (NPV both ways, payback)", value=vectorized,
                 unit="s", baseline=f"per-draw loop: {loop_per_draw * 100_000:.1f} s for the same draws",
                 target="<= 1 s", met=vectorized <= 1.0)]
