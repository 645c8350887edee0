"""The project file: what it accepts, and bad input answered with the line and the field, never a crash."""

from __future__ import annotations

import json

import numpy as np
import pytest

from civicmesh.feasibility.evaluate import evaluate
from civicmesh.feasibility.model import ProjectError, load_project
from tests.feasibility.conftest import EXAMPLES, SMALL, small


def test_examples_load() -> None:
    city = load_project(EXAMPLES / "city-programme.yaml")
    assert city.total_capex == pytest.approx(12e9)
    assert city.financing["social_capital"] == pytest.approx(4e9)
    assert city.revenue_share_investors == pytest.approx(0.3)
    assert (city.horizon, city.construction_years) == (20, 3)
    time_saved = next(b for b in city.benefits if b.kind == "time_saved")
    assert time_saved.per_year == pytest.approx(2.4e7 * 45) and not time_saved.financial
    assert load_project(EXAMPLES / "small-project.yaml").benefits[0].per_year == pytest.approx(2.4e6)


def test_phases_set_the_horizon_and_the_defaults() -> None:
    text = SMALL.replace("horizon_years: 10", "phases: {construction_years: 2, operation_years: 8}").replace(
        "schedule: [1.0]", "schedule: [0.5, 0.5]").replace(", from_year: 1}", "}").replace(
        "from_year: 1, financial", "financial")
    p = load_project("inline", text=text)
    assert p.horizon == 9 and p.construction_years == 2
    assert p.opex[0].from_year == 2 and p.benefits[0].from_year == 2


def test_json_is_a_project_file_too() -> None:
    body = json.dumps({"horizon_years": 3, "capex": [{"amount": 100}],
                       "benefits": [{"name": "fees", "kind": "revenue", "per_year": 50}]})
    p = load_project("inline", text=body)
    assert p.horizon == 3 and p.benefits[0].financial


BAD = [
    ("horizon_years: -5\ncapex: [{amount: 1}]", "horizon_years", 1, "at least 1"),
    ("horizon_years: 2.5\ncapex: [{amount: 1}]", "horizon_years", 1, "whole number"),
    ("horizon_years: 5\ndiscount: {social: -1.5}\ncapex: [{amount: 1}]", "discount.social", 2, "not above -100%"),
    ("horizon_years: 5\ndiscount: {financial: -1}\ncapex: [{amount: 1}]", "discount.financial", 2, "-100%"),
    ("horizon_years: 5\ndiscount: {social: 8}\ncapex: [{amount: 1}]", "discount.social", 2, "0.08 for 8%"),
    ("horizon_years: 5\ninflation: .nan\ncapex: [{amount: 1}]", "inflation", 2, "finite"),
    ("horizon_years: 5\ncapex:\n  - {amount: 10, schedule: [0.5, 0.4]}", "capex.0.schedule", 3, "sum to 1"),
    ("horizon_years: 1\ncapex:\n  - {amount: 10, schedule: [0.2, 0.4, 0.4]}", "capex.0.schedule", 3, "ends in year 1"),
    ("horizon_years: 5\ncapex: [{amount: ten}]", "capex.0.amount", 2, "must be a number"),
    ("horizon_years: 5\ncapex: [{amount: -3}]", "capex.0.amount", 2, "at least 0"),
    ("horizon_years: 5\ncapex: []", "capex", 2, "at least one"),
    ("horizon_years: 5\ncapex: [{amount: 10}]\nbenefits: [{kind: revenue, per_year: 1}, {name: x, kind: rent}]",
     "benefits.1.kind", 3, "not one of"),
    ("horizon_years: 5\ncapex: [{amount: 10}]\nbenefits:\n  - {name: a, per_year: 1}\n  - {name: a, per_year: 2}",
     "benefits", 3, "unique"),
    ("horizon_years: 5\ncapex: [{amount: 10}]\nbenefits: [{per_year: 1}]\nfinancing:\n  social_capital: 10\n"
     "  revenue_share: {government: 0.7, investors: 0.4}", "financing.revenue_share", 6, "sum to 1"),
    ("horizon_years: 5\ncapex: [{amount: 10}]\nbenefits: [{name: opex, per_year: 1}]", "benefits", 3,
     "driver of its own"),
    ("horizon_years: 5\ncapex: [{amount: 2.0e+16}]", "capex.0.amount", 2, "beyond 1e+15"),
    ("horizon_years: 5\ncapex: [{amount: 10}]\nbenefits: [{per_year: 1}]\nfinancing: {government_budget: 4}",
     "financing", 4, "sum to 4"),
    ("horizon_years: 5\ncapex: [{amount: 10}]\nbenefits: [{per_year: 1}]\nfinancing: {loans: 10}",
     "financing.loan", 4, "rate and years"),
    ("horizon_years: 5\ncapex: [{amount: 10}]\nbenefits: [{per_year: 1}]\nfinancing:\n  loans: 10\n"
     "  loan: {rate: 0.05, years: 9}", "financing.loan.years", 6, "runs past"),
    ("horizon_years: 5\ncapex: [{amount: 10}]\nbenefits: [{per_year: 1}]\n"
     "uncertainty: {capex: {dist: pert, low: 2, mode: 1, high: 3}}", "uncertainty.capex", 4, "low <= mode <= high"),
    ("horizon_years: 5\ncapex: [{amount: 10}]\nbenefits: [{per_year: 1}]\n"
     "uncertainty: {tolls: {dist: normal, mean: 1, sd: 0.1}}", "uncertainty.tolls", 4, "not a driver"),
    ("horizon_years: 5\ncapex: [{amount: 10}]\nbenefits: [{per_year: 1}]\n"
     "uncertainty:\n  capex: {dist: normal, mean: 1, sd: 0.1}\n  correlation: [[capex, opex, 0.5]]",
     "uncertainty.correlation.0", 6, "have a distribution"),
    ("horizon_years: 5\ncapex: [{amount: 10}]\nbenefits: [{per_year: 1}]\n"
     "risks: [{category: weather, probability: 0.1}]", "risks.0.category", 4, "not one of"),
    ("horizon_years: 5\ncapex: [{amount: 10}]\nbenefits: [{per_year: 1}]\n"
     "risks: [{category: market, probability: 1.5, impact: {driver: capex, change: 0.1}}]",
     "risks.0.probability", 4, "at most 1"),
    ("horizon_years: 5\ncapex: [{amount: 10}]\nbenefits: [{per_year: 1}]\nswot:\n  strengths:\n"
     "    - {text: a, weight: 0.5, rating: 3}\n  opportunities:\n    - {text: b, weight: 1, rating: 5}",
     "swot.opportunities.0.rating", 8, "at most 4"),
    ("horizon_years: 5\ncapex: [{amount: 10}]\nbenefits: [{per_year: 1}]\nswot:\n  strengths:\n"
     "    - {text: a, weight: 0.5, rating: 3}\n  opportunities:\n    - {text: b, weight: 1, rating: 3}",
     "swot.strengths", 5, "must sum to 1"),
    ("phases: {construction_years: 2, operation_years: 5}\nhorizon_years: 9\ncapex: [{amount: 1}]",
     "horizon_years", 2, "end in year 6"),
    ("horizon_years: 5\ncapex: [{amount: 10}]\nbenefits: [{per_year: 1}]\ninput_output: {table: t.csv}",
     "input_output.shock", 4, "map sectors"),
]


@pytest.mark.parametrize("text, field, line, words", BAD, ids=[b[1] + ":" + b[3] for b in BAD])
def test_bad_project_files_name_the_line_and_the_field(text: str, field: str, line: int, words: str) -> None:
    with pytest.raises(ProjectError) as caught:
        load_project("inline", text=text)
    assert caught.value.where == field
    assert caught.value.line == line
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"line {line}: {field}: ")


@pytest.mark.parametrize("text, words", [
    ("horizon_years: [5", "not valid YAML"),
    ("- just\n- a list", "mapping of fields"),
    ("", "mapping of fields"),
])
def test_unreadable_files_are_refused_clearly(text: str, words: str) -> None:
    with pytest.raises(ProjectError, match=words):
        load_project("inline", text=text)


def test_missing_file_is_a_project_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProjectError, match="cannot be read"):
        load_project(tmp_path / "missing.yaml")


def test_flows_without_a_sign_change_warn_instead_of_crashing() -> None:
    e = evaluate(small(**{"per_year: 240": "per_year: 0"}))
    assert e.results["financial"]["irr"] is None and e.results["economic"]["irr"] is None
    assert any("never change sign" in w for w in e.warnings)
    assert any("do not pay the investment back" in w for w in e.warnings)
    for column in e.table.values():
        assert all(v is not None and np.isfinite(v) for v in column)
    assert np.isfinite(e.results["financial"]["bcr"]) and e.results["financial"]["bcr"] == 0


def test_multiple_irrs_warn_and_report_the_mirr() -> None:
    # Fees in year 1 only and a dismantling cost in year 2: -100, +230, -132, which has IRRs of 10 % and 20 %.
    text = """
horizon_years: 2
discount: {financial: 0.1, social: 0.08}
capex:
  - {name: build, amount: 100, schedule: [1.0]}
  - {name: dismantle, amount: 132, schedule: [0, 0, 1.0]}
benefits:
  - {name: fees, kind: revenue, per_year: 230, from_year: 1, to_year: 1}
"""
    e = evaluate(load_project("inline", text=text))
    assert e.results["financial"]["irr_candidates"] == pytest.approx([0.10, 0.20])
    assert e.results["financial"]["irr"] is None and e.results["financial"]["mirr"] is not None
    assert any("2 IRRs" in w and "MIRR" in w for w in e.warnings)
