"""Feasibility: Monte Carlo of 100,000 draws over a 30-year horizon (target ≤ 1 s), and one planner's command.

Each figure sits next to a baseline measured in the same run: the same draws evaluated one at a time (what a
spreadsheet-style loop costs), and the evaluation without its Monte Carlo.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from civicmesh.feasibility import metrics
from civicmesh.feasibility.cashflow import build_streams, economic_flows, financial_flows
from civicmesh.feasibility.evaluate import evaluate
from civicmesh.feasibility.evaluate import run as evaluate_all
from civicmesh.feasibility.model import load_project, parse_project
from civicmesh.feasibility.report import render_html
from civicmesh.feasibility.risk import draw_multipliers, monte_carlo

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "feasibility"
DRAWS = 100_000
LOOP_SAMPLE = 1_000


def _thirty_year_programme() -> Any:
    data = yaml.safe_load((EXAMPLES / "city-programme.yaml").read_text(encoding="utf-8"))
    data["phases"] = {"construction_years": 3, "operation_years": 28}  # years 0..30
    return parse_project(data, base=EXAMPLES)


def run() -> list[dict[str, Any]]:
    project = _thirty_year_programme()
    streams = build_streams(project)
    years = project.horizon + 1
    monte_carlo(project, streams, draws=2_000)  # warm up scipy's distributions and numpy's buffers
    best = float("inf")
    for _ in range(3):  # the machine is shared: the best of three is the least disturbed
        started = time.perf_counter()
        result = monte_carlo(project, streams, draws=DRAWS)
        best = min(best, time.perf_counter() - started)

    # Baseline: the same kind of draws evaluated one at a time, as a per-draw loop would.
    m = draw_multipliers(project, LOOP_SAMPLE, np.random.default_rng(1))
    started = time.perf_counter()
    for i in range(LOOP_SAMPLE):
        one = {k: float(v[i]) for k, v in m.items()}
        fin = financial_flows(project, streams, one)
        metrics.npv(project.social_rate, economic_flows(streams, one))
        metrics.npv(project.financial_rate, fin)
        metrics.payback(fin)
    loop = (time.perf_counter() - started) / LOOP_SAMPLE * DRAWS

    city = load_project(EXAMPLES / "city-programme.yaml")
    started = time.perf_counter()
    evaluate(city)
    without_mc = time.perf_counter() - started
    started = time.perf_counter()
    render_html(evaluate_all(city, draws=10_000), "zh")
    command = time.perf_counter() - started

    return [
        {"scenario": f"Monte Carlo, {DRAWS:,} draws x {years} years (economic and financial NPV, payback; "
                     f"copula, 3 distributions, {len(project.risks)} risks); P(ENPV<0) "
                     f"{result['p_economic_npv_negative']:.1%}",
         "value": best, "unit": "s", "baseline": f"per-draw loop: {loop:.1f} s for the same draws",
         "target": "<= 1 s", "met": best <= 1.0},
        {"scenario": "city programme: evaluation, 10,000 draws, input-output, SWOT and the zh report",
         "value": command, "unit": "s", "baseline": f"evaluation without Monte Carlo or report: {without_mc:.3f} s",
         "target": "<= 2 s", "met": command <= 2.0},
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
