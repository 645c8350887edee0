"""One call from a project file to every figure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from civicmesh.feasibility import leontief
from civicmesh.feasibility.model import Evaluation, evaluate, streams
from civicmesh.feasibility.project import Project, ProjectError
from civicmesh.feasibility.risk import monte_carlo
from civicmesh.feasibility.swot import evaluate_swot


def run(p: Project, *, draws: int = 10_000, progress: Callable[[int], None] | None = None) -> Evaluation:
    result = evaluate(p)
    if p.uncertainty or p.risks:
        result.monte_carlo = monte_carlo(p, streams(p), draws=draws, progress=progress)
    if p.io:
        table_path = p.io.get("table")
        if not isinstance(table_path, str):
            raise ProjectError("input_output.table", "must name a CSV file")
        try:
            table = leontief.load_table(p.base_dir / table_path)
            shock = p.io.get("shock") or {}
            if not isinstance(shock, dict) or not shock:
                raise ProjectError("input_output.shock", "must map sectors to the project's spending in them")
            unit = float(p.io.get("unit", 1.0))
            result.input_output = {"multipliers": leontief.multipliers(table), "unit": unit,
                                   "impact": leontief.impact(table, {str(k): float(v) for k, v in shock.items()},
                                                             unit)}
        except leontief.TableError as exc:
            raise ProjectError("input_output", str(exc)) from exc
    result.swot = evaluate_swot(p.swot)
    return result


def as_json(e: Evaluation) -> dict[str, Any]:
    project = asdict(e.project)
    project.pop("base_dir", None)
    return {"project": {"name": e.project.name, "currency": e.project.currency, "horizon_years": e.project.horizon,
                        "start_year": e.project.start_year},
            "years": e.years, "financial_flows": e.financial_flows, "economic_flows": e.economic_flows,
            "results": e.results, "tornado": e.tornado, "break_even": e.break_even, "monte_carlo": e.monte_carlo,
            "input_output": e.input_output, "swot": e.swot, "warnings": e.warnings}
