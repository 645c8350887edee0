"""The feasibility evaluator against numpy-financial, hand-computed cases, a textbook Leontief example, a Monte
Carlo case with a known answer, the report, the CLI and the HTTP endpoint."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from civicmesh.feasibility import finance, leontief
from civicmesh.feasibility.model import evaluate, flows, streams
from civicmesh.feasibility.project import ProjectError, load_project
from civicmesh.feasibility.report import render_html
from civicmesh.feasibility.risk import monte_carlo
from civicmesh.feasibility.run import run

npf = pytest.importorskip("numpy_financial")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "feasibility"


# -- discounted cash flow -------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate, values", [
    (0.08, [-1000, 300, 300, 300, 300, 300]),
    (0.05, [-500, 100, 200, 300]),
    (0.12, [-2000, 0, 0, 800, 900, 1000, 1100]),
])
def test_npv_and_irr_match_numpy_financial(rate: float, values: list[float]) -> None:
    assert finance.npv(rate, values) == pytest.approx(npf.npv(rate, values), rel=1e-12)
    assert finance.irr(values) == pytest.approx(npf.irr(values), rel=1e-9)


def test_npv_by_hand_leaves_year_zero_undiscounted() -> None:
    # -100 now, 110 in a year at 10%: exactly zero (Excel's NPV() would discount the -100 too).
    assert finance.npv(0.10, [-100, 110]) == pytest.approx(0.0, abs=1e-12)
    assert finance.irr([-100, 110]) == pytest.approx(0.10)


def test_no_irr_and_multiple_irrs() -> None:
    assert finance.irr_all([100, 50, 20]) == [] and finance.irr([100, 50, 20]) is None
    # -100, +230, -132 has IRRs of 10% and 20% (roots of 100x^2 - 230x + 132 in 1+r).
    assert finance.irr_all([-100, 230, -132]) == pytest.approx([0.10, 0.20])
    assert finance.irr([-100, 230, -132]) is None
    assert finance.mirr([-100, 230, -132], 0.1, 0.1) == pytest.approx(
        npf.mirr([-100, 230, -132], 0.1, 0.1), rel=1e-9)


def test_payback_is_interpolated_and_counts_from_construction_start() -> None:
    # Cumulative: -1000, -700, -400, -100, +200 -> pays back 1/3 into year 4: 3.333 years.
    assert finance.payback([-1000, 300, 300, 300, 300]) == pytest.approx(3 + 100 / 300)
    assert finance.payback([-1000, 100, 100]) is None
    discounted = finance.payback([-1000, 600, 600], 0.10)
    pv = [-1000, 600 / 1.1, 600 / 1.21]
    assert discounted == pytest.approx(1 + (1000 - pv[1]) / pv[2])


# -- the project file -----------------------------------------------------------------------------------------
SMALL = """
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


def test_small_project_by_hand() -> None:
    e = evaluate(load_project("inline", text=SMALL))
    cash = [-1000] + [240 - 30] * 10
    assert e.financial_flows == pytest.approx(cash)
    assert e.results["economic"]["npv"] == pytest.approx(npf.npv(0.08, cash))
    assert e.results["financial"]["irr"] == pytest.approx(npf.irr(cash), rel=1e-9)
    pv_alone = 1300 + 40 * sum(1.08 ** -t for t in range(1, 11))
    pv_collab = 1000 + 30 * sum(1.08 ** -t for t in range(1, 11))
    assert e.results["collaboration"]["saving"] == pytest.approx(pv_alone - pv_collab)
    # Switching value of the benefit: NPV is linear in it, so the break-even change is -NPV / PV(benefit).
    pv_benefit = 240 * sum(1.08 ** -t for t in range(1, 11))
    assert e.break_even["benefit:electricity saved"] == pytest.approx(-e.results["economic"]["npv"] / pv_benefit)


@pytest.mark.parametrize("text, words", [
    ("horizon_years: -5\ncapex: [{amount: 1}]", ["line 1", "horizon_years", "at least 1"]),
    ("horizon_years: 5\ndiscount: {social: -1.5}\ncapex: [{amount: 1}]", ["line 2", "discount.social", "above -1"]),
    ("horizon_years: 5\ncapex:\n  - {amount: 10, schedule: [0.5, 0.4]}", ["line 3", "schedule", "sum to 1"]),
    ("horizon_years: 5\ncapex: [{amount: ten}]", ["capex.0.amount", "must be a number"]),
    ("horizon_years: 5\ncapex: [{amount: 10}]\nfinancing: {social_capital: 10, revenue_share: "
     "{government: 0.7, investors: 0.4}}", ["revenue_share", "sum to 1"]),
    ("horizon_years: 5\ncapex: [{amount: 10}]\nfinancing: {government_budget: 4}", ["financing", "sum to 4"]),
    ("horizon_years: 5\ncapex: [{amount: 10}]\nuncertainty: {capex: {dist: pert, low: 2, mode: 1, high: 3}}",
     ["uncertainty.capex", "low <= mode <= high"]),
    ("horizon_years: 5\ncapex: [{amount: 10}]\nrisks: [{category: weather, probability: 0.1}]",
     ["risks.0.category"]),
    ("horizon_years: [5", ["not valid YAML"]),
])
def test_bad_project_files_name_the_line_and_field(text: str, words: list[str]) -> None:
    with pytest.raises(ProjectError) as caught:
        load_project("inline", text=text)
    for word in words:
        assert word in str(caught.value)


def test_flows_without_sign_change_warn_instead_of_crashing() -> None:
    e = evaluate(load_project("inline", text=SMALL.replace("per_year: 240", "per_year: 0")))
    assert e.results["financial"]["irr"] is None
    assert any("never change sign" in w for w in e.warnings)
    assert any("never pay" in w for w in e.warnings)
    assert not any(np.isnan(v) for v in e.financial_flows)


# -- Monte Carlo ----------------------------------------------------------------------------------------------
def test_monte_carlo_converges_to_the_known_mean() -> None:
    # NPV is linear in the benefit multiplier, so E[NPV] = NPV at the mean multiplier, (0.6 + 1.0 + 1.1) / 3.
    text = SMALL + "uncertainty:\n  benefits: {dist: triangular, low: 0.6, mode: 1.0, high: 1.1}\n"
    p = load_project("inline", text=text)
    s = streams(p)
    expected = finance.npv(p.social_rate, flows(p, s, {"benefit:electricity saved": 2.7 / 3}, economic=True))
    mc = monte_carlo(p, s, draws=200_000)
    standard_error = np.std([mc["economic_npv"]["p10"], mc["economic_npv"]["p90"]]) / np.sqrt(200_000)
    assert mc["economic_npv"]["mean"] == pytest.approx(expected, abs=max(50 * standard_error, 1e-3 * abs(expected)))
    assert 0 < mc["p_economic_npv_negative"] < 1


def test_a_certain_risk_shifts_every_draw() -> None:
    text = SMALL + ("risks:\n  - {name: tariff cut, category: market, probability: 1.0, "
                    "impact: {driver: benefits, change: -0.5}}\n")
    p = load_project("inline", text=text)
    s = streams(p)
    mc = monte_carlo(p, s, draws=1000)
    halved = finance.npv(p.social_rate, flows(p, s, {"benefit:electricity saved": 0.5}, economic=True))
    assert mc["economic_npv"]["p10"] == pytest.approx(halved) and mc["economic_npv"]["p90"] == pytest.approx(halved)


# -- input-output ---------------------------------------------------------------------------------------------
def test_two_sector_leontief_textbook_example(tmp_path: Path) -> None:
    # Miller & Blair's two-sector example: Z = [[150, 500], [200, 100]], x = [1000, 2000].
    table = tmp_path / "io.csv"
    table.write_text(",a,b,household,final_demand,output\na,150,500,0,350,1000\nb,200,100,0,1700,2000\n"
                     "wages,300,500,,,\nemployment,10,20,,,\n")
    t = leontief.load_table(table)
    assert t.A == pytest.approx(np.array([[0.15, 0.25], [0.2, 0.05]]))
    det = 0.85 * 0.95 - 0.25 * 0.2
    assert t.L == pytest.approx(np.array([[0.95, 0.25], [0.2, 0.85]]) / det)
    m = leontief.multipliers(t)
    assert m["type_i_output"] == pytest.approx([1.15 / det, 1.10 / det])
    effect = leontief.impact(t, {"a": 100.0})
    assert effect["output_type_i"] == pytest.approx(115 / det)
    assert effect["drive_ratio_type_i"] == pytest.approx(1.15 / det)


def test_type_ii_exceeds_type_i_when_households_spend(tmp_path: Path) -> None:
    table = tmp_path / "io.csv"
    table.write_text(",a,b,household,final_demand,output\na,150,500,200,150,1000\nb,200,100,400,1300,2000\n"
                     "wages,300,500,,,\n")
    m = leontief.multipliers(leontief.load_table(table))
    assert all(ii > i for i, ii in zip(m["type_i_output"], m["type_ii_output"], strict=True))


# -- the city programme, the report, the CLI, HTTP ------------------------------------------------------------
def test_city_programme_report_carries_its_key_numbers() -> None:
    p = load_project(EXAMPLES / "city-programme.yaml")
    assert p.total_capex == pytest.approx(12e9) and p.financing["social_capital"] == pytest.approx(4e9)
    e = run(p, draws=5000)
    assert e.results["ppp"]["share_of_investment"] == pytest.approx(1 / 3)
    en = render_html(e, "en")
    zh = render_html(e, "zh")
    enpv_yi = f"{e.results['economic']['npv'] / 1e8:,.2f} 亿CNY"
    assert enpv_yi in en and enpv_yi in zh
    assert "经济净现值" in zh and "Economic NPV" in en
    assert f"{e.monte_carlo['p_economic_npv_negative']:.1%}" in en
    assert "Type I" in en and "<script" not in en and "http" not in en.split("<body>")[1]


def test_cli_writes_a_report_and_json(tmp_path: Path) -> None:
    from civicmesh.cli import app

    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["feasibility", "evaluate", str(EXAMPLES / "small-project.yaml"),
                                      "--report", str(out), "--lang", "zh", "--json", "--draws", "1000"])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")
    figures = json.loads(result.stdout[result.stdout.index("{"):])
    assert figures["results"]["financial"]["npv"] > 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("horizon_years: 0\n")
    failed = CliRunner().invoke(app, ["feasibility", "evaluate", str(bad)])
    assert failed.exit_code == 2


def test_http_endpoint(server) -> None:
    text = SMALL.encode()
    r = httpx.post(server.url + "/feasibility/evaluate", content=text, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 200, r.text
    assert r.json()["results"]["economic"]["npv"] == pytest.approx(
        npf.npv(0.08, [-1000] + [210] * 10))
    page = httpx.post(server.url + "/feasibility/evaluate", params={"format": "html", "lang": "zh"}, content=text)
    assert page.headers["content-type"].startswith("text/html") and "经济净现值" in page.text
    bad = httpx.post(server.url + "/feasibility/evaluate", content=b"horizon_years: -1\ncapex: [{amount: 1}]")
    assert bad.status_code == 400 and bad.json()["field"] == "horizon_years" and bad.json()["line"] == 1
