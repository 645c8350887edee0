"""The evaluation recomputed by hand: cash flows, both analyses, collaboration, PPP, loan, sensitivity."""

from __future__ import annotations

import numpy as np
import pytest

from civicmesh.feasibility import metrics
from civicmesh.feasibility.evaluate import evaluate
from civicmesh.feasibility.model import load_project
from tests.feasibility.conftest import SMALL, small

npf = pytest.importorskip("numpy_financial", reason="numpy-financial is the cross-check (pip install numpy-financial)")

ANNUITY_8 = sum(1.08 ** -t for t in range(1, 11))


def test_small_project_by_hand() -> None:
    e = evaluate(small())
    cash = [-1000] + [240 - 30] * 10
    assert e.table["financial_net"] == pytest.approx(cash)
    assert e.results["financial"]["npv"] == pytest.approx(npf.npv(0.06, cash))
    assert e.results["economic"]["npv"] == pytest.approx(npf.npv(0.08, cash))
    assert e.results["financial"]["irr"] == pytest.approx(npf.irr(cash), rel=1e-9)
    assert e.results["financial"]["payback"] == pytest.approx(4 + (1000 - 4 * 210) / 210)
    assert e.results["economic"]["bcr"] == pytest.approx(240 * ANNUITY_8 / (1000 + 30 * ANNUITY_8))
    pv_alone, pv_together = 1300 + 40 * ANNUITY_8, 1000 + 30 * ANNUITY_8
    collaboration = e.results["collaboration"]
    assert collaboration["saving"] == pytest.approx(pv_alone - pv_together)
    assert collaboration["saving_share"] == pytest.approx((pv_alone - pv_together) / pv_alone)
    # Built alone: -1300 then 200 a year, so the payback is 6.5 years instead of 4.76.
    assert collaboration["payback_standalone"] == pytest.approx(6.5)


def test_only_cash_benefits_enter_the_financial_analysis() -> None:
    extra = "  - {name: time saved, kind: time_saved, hours_per_year: 10, value_per_hour: 5, from_year: 1}\n"
    e = evaluate(small(**{"financial: true}\n": "financial: true}\n" + extra}))
    assert e.table["financial_net"][1] == pytest.approx(210)
    assert e.table["economic_net"][1] == pytest.approx(260)


def test_ramp_escalation_and_shadow_prices() -> None:
    e = evaluate(small("escalation: {benefits: 0.1}\n", **{
        "from_year: 1, financial": "from_year: 1, ramp_years: 2, financial",
        "standalone: 40, from_year: 1}": "standalone: 40, from_year: 1, economic_factor: 0.5}"}))
    # Year 1: half of 240 grown by 10 %; year 2 onwards: all of it grown by 1.1^t.
    assert e.table["economic_benefits"][1] == pytest.approx(0.5 * 240 * 1.1)
    assert e.table["economic_benefits"][3] == pytest.approx(240 * 1.1 ** 3)
    assert e.table["economic_costs"][1] == pytest.approx(15)  # opex at a shadow-price factor of 0.5
    assert e.table["opex"][1] == pytest.approx(30)  # the financial view pays the market price


def test_inflation_tax_and_depreciation_by_hand() -> None:
    e = evaluate(small("inflation: 0.03\ntax_rate: 0.25\n"))
    # Depreciation: 1000 (bought in year 0 at index 1) over the 10 operating years = 100 a year.
    for t in (1, 5, 10):
        index = 1.03 ** t
        taxable = (240 - 30) * index - 100
        assert e.table["tax"][t] == pytest.approx(0.25 * taxable)
        assert e.table["financial_net"][t] == pytest.approx((240 - 30) * index - 0.25 * taxable)
    # The economic view stays in constant prices and ignores the tax (a transfer).
    assert e.table["economic_net"][5] == pytest.approx(210)


def test_residual_value_comes_back_in_the_last_year() -> None:
    e = evaluate(small("residual_value: 0.1\n"))
    assert e.table["financial_net"][-1] == pytest.approx(210 + 100)
    assert e.table["financial_net"][-2] == pytest.approx(210)


LOAN = """
financing:
  government_budget: 400
  loans: 600
  loan: {rate: 0.05, years: 4, method: METHOD}
"""


def test_equal_principal_loan_by_hand() -> None:
    e = evaluate(small(LOAN.replace("METHOD", "equal_principal")))
    # Drawn in year 0 with the investment; repaid from year 1: 150 a year plus 5 % on the opening balance.
    assert e.table["principal"][1:6] == pytest.approx([150, 150, 150, 150, 0])
    assert e.table["interest"][1:6] == pytest.approx([30, 22.5, 15, 7.5, 0])
    assert e.table["equity_net"][0] == pytest.approx(-400)
    assert e.table["equity_net"][1] == pytest.approx(210 - 180)
    loan = e.results["loan"]
    assert loan["dscr_min"] == pytest.approx(210 / 180)
    assert loan["interest_total"] == pytest.approx(75)
    assert any("1.17, below the 1.3" in w for w in e.warnings)


def test_annuity_loan_matches_numpy_financial() -> None:
    e = evaluate(small(LOAN.replace("METHOD", "annuity")))
    payment = -npf.pmt(0.05, 4, 600)
    service = np.array(e.table["principal"][1:5]) + np.array(e.table["interest"][1:5])
    assert service == pytest.approx([payment] * 4)
    assert e.table["principal"][1] == pytest.approx(-npf.ppmt(0.05, 1, 4, 600))


def test_interest_before_repayment_is_capitalized() -> None:
    text = SMALL.replace("schedule: [1.0]", "schedule: [0.5, 0.5]").replace("from_year: 1", "from_year: 2")
    p = load_project("inline", text=text + LOAN.replace("METHOD", "equal_principal"))
    e = evaluate(p)
    # 300 drawn in year 0 and in year 1; 5 % on 300 is added in year 1; repayment starts in year 2.
    assert e.results["loan"]["interest_capitalized"] == pytest.approx(15)
    assert e.table["interest"][2] == pytest.approx(0.05 * 615)
    assert e.table["principal"][2] == pytest.approx(615 / 4)


def test_ppp_investors_flows_by_hand() -> None:
    text = SMALL + """
financing:
  government_budget: 600
  social_capital: 400
  revenue_share: {government: 0.7, investors: 0.3}
  viability_gap: {per_year: 20, from_year: 1, years: 5}
"""
    e = evaluate(load_project("inline", text=text))
    ppp = e.results["ppp"]
    assert ppp["share_of_investment"] == pytest.approx(0.4)
    flows = [-400] + [0.3 * 210 + 20] * 5 + [0.3 * 210] * 5
    assert e.table["investor_net"] == pytest.approx(flows)
    assert ppp["npv"] == pytest.approx(npf.npv(0.06, flows))
    assert ppp["irr"] == pytest.approx(npf.irr(flows), rel=1e-9)
    assert ppp["viability_gap_pv"] == pytest.approx(20 * sum(1.06 ** -t for t in range(1, 6)))


def test_tornado_and_switching_values_by_hand() -> None:
    e = evaluate(small())
    base = e.results["economic"]["npv"]
    rows = {r["driver"]: r for r in e.tornado}
    benefit = rows["benefit:electricity saved"]
    assert benefit["low"] == pytest.approx(base - 0.2 * 240 * ANNUITY_8)
    assert benefit["high"] == pytest.approx(base + 0.2 * 240 * ANNUITY_8)
    assert benefit["sensitivity_coefficient"] == pytest.approx(240 * ANNUITY_8 / base)
    assert rows["capex"]["low"] == pytest.approx(base + 200)
    assert rows["discount rate"]["high"] == pytest.approx(metrics.npv(0.096, [-1000] + [210] * 10))
    assert e.tornado[0]["swing"] == max(r["swing"] for r in e.tornado)
    # NPV is linear in each driver, so the break-even change is -NPV / PV(what the driver scales).
    switching = {r["driver"]: r for r in e.switching["economic"]}
    assert switching["benefit:electricity saved"]["change"] == pytest.approx(-base / (240 * ANNUITY_8))
    assert switching["capex"]["change"] == pytest.approx(base / 1000)
    assert switching["capex"]["value"] == pytest.approx(1000 + base)
    assert metrics.npv(0.08, [-1000 - base] + [210] * 10) == pytest.approx(0, abs=1e-9)


def test_switching_value_is_none_when_no_change_reaches_zero() -> None:
    e = evaluate(small(**{"per_year: 30, standalone: 40": "per_year: 0.1, standalone: 40"}))
    opex = next(r for r in e.switching["economic"] if r["driver"] == "opex")
    assert opex["change"] is None and opex["value"] is None


def test_a_social_rate_off_the_guide_is_flagged() -> None:
    e = evaluate(small(**{"social: 0.08": "social: 0.05"}))
    assert any("differs from the 8%" in w for w in e.warnings)
    assert not any("differs" in w for w in evaluate(small(**{"social: 0.08": "social: 0.06"})).warnings)
