"""Cash flows by year. Every flow is a function of driver multipliers (capex, opex, one per benefit), so the base
case, the tornado, switching values and Monte Carlo all run the same arithmetic; with array multipliers the
result has one row per draw.

Two views, as in 建设项目经济评价方法与参数 (3rd ed.):
- financial: cash to the project only (benefits marked `financial`), in current prices (inflated), after tax;
- economic: every benefit to society, constant prices, costs at shadow prices (`economic_factor`), no taxes
  (a transfer), discounted at the social rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from civicmesh.feasibility import metrics
from civicmesh.feasibility.model import Project

Multipliers = Mapping[str, np.ndarray | float]  # driver key -> multiplier (one value per draw with arrays)


@dataclass
class Streams:
    """Per-year base amounts (before driver multipliers) over years 0..horizon, constant prices."""

    years: np.ndarray
    capex: np.ndarray
    capex_economic: np.ndarray
    capex_standalone: np.ndarray
    opex: np.ndarray
    opex_economic: np.ndarray
    opex_standalone: np.ndarray
    benefits: dict[str, np.ndarray]
    financial_benefits: list[str]
    residual: np.ndarray  # constant prices, at the horizon
    price_index: np.ndarray  # (1 + inflation)^t: constant -> current prices for the financial view
    depreciation: np.ndarray  # current prices, straight line over the operation years


def build_streams(p: Project) -> Streams:
    n = p.horizon + 1
    t = np.arange(n, dtype=float)
    capex, capex_eco, capex_alone = np.zeros(n), np.zeros(n), np.zeros(n)
    for item in p.capex:
        share = np.zeros(n)
        share[:len(item.schedule)] = item.schedule
        capex += item.amount * share
        capex_eco += item.amount * item.economic_factor * share
        capex_alone += item.standalone * share
    opex, opex_eco, opex_alone = np.zeros(n), np.zeros(n), np.zeros(n)
    grow_opex = (1 + p.escalation_opex) ** t
    for item in p.opex:
        end = p.horizon if item.to_year is None else item.to_year
        active = ((t >= item.from_year) & (t <= end)) * grow_opex
        opex += item.amount * active
        opex_eco += item.amount * item.economic_factor * active
        opex_alone += item.standalone * active
    grow_benefits = (1 + p.escalation_benefits) ** t
    benefits = {}
    for b in p.benefits:
        since = t - b.from_year + 1  # 1 in the first year of the benefit
        ramp = np.clip(since / b.ramp_years, 0, 1) if b.ramp_years else (since > 0).astype(float)
        end = p.horizon if b.to_year is None else b.to_year
        benefits[b.name] = b.per_year * ramp * grow_benefits * (t <= end)
    residual = np.zeros(n)
    residual[-1] = p.residual_share * p.total_capex
    price_index = (1 + p.inflation) ** t
    # Straight-line depreciation of the investment at its historical (current-price) cost over the years of
    # operation, down to the residual value.
    first_use = min(p.construction_years, p.horizon)
    operating = t >= first_use
    depreciable = float(capex @ price_index) * (1 - p.residual_share)
    depreciation = np.where(operating, depreciable / operating.sum(), 0.0)
    return Streams(np.arange(n), capex, capex_eco, capex_alone, opex, opex_eco, opex_alone, benefits,
                   [b.name for b in p.benefits if b.financial], residual, price_index, depreciation)


def _m(m: Multipliers, key: str) -> np.ndarray | float:
    value = m.get(key, 1.0)
    return np.asarray(value)[..., None] if isinstance(value, np.ndarray) else value


def benefit_total(s: Streams, m: Multipliers, names: list[str]) -> np.ndarray:
    total: Any = np.zeros_like(s.capex)
    for name in names:
        total = total + s.benefits[name] * _m(m, f"benefit:{name}")
    return np.asarray(total)


def economic_flows(s: Streams, m: Multipliers | None = None) -> np.ndarray:
    m = m or {}
    capex = _m(m, "capex")
    net = (benefit_total(s, m, list(s.benefits)) - s.opex_economic * _m(m, "opex")
           - s.capex_economic * capex + s.residual * capex)
    return np.asarray(net)


def financial_parts(p: Project, s: Streams, m: Multipliers | None = None, *, standalone: bool = False,
                    interest: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The financial view in current prices: inflow, opex, capex, residual, tax and the net flow.

    Tax is on (financial benefits − opex − depreciation − interest) in each year, with no loss carry-forward
    (a year with a loss pays none); without `interest` it is the tax of the project before financing.
    """
    m = m or {}
    capex_m, opex_m = _m(m, "capex"), _m(m, "opex")
    index = s.price_index
    inflow = benefit_total(s, m, s.financial_benefits) * index
    opex = (s.opex_standalone if standalone else s.opex) * opex_m * index
    capex = (s.capex_standalone if standalone else s.capex) * capex_m * index
    residual = s.residual * capex_m * index
    taxable = inflow - opex - s.depreciation * capex_m - (0.0 if interest is None else interest)
    tax = p.tax_rate * np.maximum(taxable, 0.0)
    return {"inflow": np.asarray(inflow), "opex": np.asarray(opex), "capex": np.asarray(capex),
            "residual": np.asarray(residual), "tax": np.asarray(tax),
            "net": np.asarray(inflow - opex - capex + residual - tax)}


def financial_flows(p: Project, s: Streams, m: Multipliers | None = None, *, standalone: bool = False) -> np.ndarray:
    return financial_parts(p, s, m, standalone=standalone)["net"]


@dataclass
class Financing:
    draws: np.ndarray
    interest: np.ndarray  # paid
    capitalized: np.ndarray  # interest added to the balance before repayment starts
    principal: np.ndarray
    balance: np.ndarray
    equity_flows: np.ndarray  # all non-loan sources together (资本金现金流量)
    dscr: np.ndarray  # NaN where nothing is due
    icr: np.ndarray


def loan_schedule(p: Project, s: Streams) -> Financing | None:
    """The loan drawn in step with the investment (current prices). Interest before repayment starts is
    capitalized (建设期利息 added to the balance); from `repay_from` interest on the opening balance is paid each
    year and the principal is repaid in equal instalments or as an annuity. Also the equity holders' flows and
    the coverage ratios over the repayment years."""
    loan = p.loan
    if loan is None:
        return None
    n = p.horizon + 1
    capex_current = s.capex * s.price_index
    draws = loan.amount * capex_current / capex_current.sum()
    interest, capitalized, principal, balance = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    opening = 0.0
    instalment = 0.0
    for t in range(n):
        accrued = opening * loan.rate
        if t < loan.repay_from:
            capitalized[t] = accrued
        else:
            interest[t] = accrued
            if t == loan.repay_from:
                instalment = (opening / loan.years if loan.method == "equal_principal"
                              else metrics.annuity(opening, loan.rate, loan.years))
            if t < loan.repay_from + loan.years:
                due = instalment if loan.method == "equal_principal" else instalment - accrued
                principal[t] = min(due, opening)
        balance[t] = opening + draws[t] + capitalized[t] - principal[t]
        opening = balance[t]
    parts = financial_parts(p, s, interest=interest)
    operating = parts["inflow"] - parts["opex"] - parts["tax"]
    equity = parts["net"] + draws - interest - principal
    service = interest + principal
    service = np.where(service > 1e-9 * loan.amount, service, 0.0)  # float dust after the last instalment
    ebit = parts["inflow"] - parts["opex"] - s.depreciation
    with np.errstate(divide="ignore", invalid="ignore"):
        dscr = np.where(service > 0, operating / np.where(service > 0, service, 1.0), np.nan)
        icr = np.where(interest > 0, ebit / np.where(interest > 0, interest, 1.0), np.nan)
    return Financing(draws, interest, capitalized, principal, balance, equity, dscr, icr)


def investor_flows(p: Project, s: Streams, financing: Financing | None) -> np.ndarray | None:
    """Social capital under the PPP: it pays its share of the equity outlays and receives the investors' revenue
    share of the operating cash flow (after tax and debt service), its share of the residual value and any
    viability-gap payments from the government (a transfer inside the public sector's accounts, so it appears
    only here, not in the project's financial or economic flows)."""
    social = p.financing.get("social_capital", 0.0)
    if not social:
        return None
    equity_total = p.total_capex - (p.loan.amount if p.loan else 0.0)
    share = social / equity_total
    parts = financial_parts(p, s, interest=financing.interest if financing else None)
    operating = parts["inflow"] - parts["opex"] - parts["tax"]
    outlay = parts["capex"]
    if financing is not None:
        operating = operating - financing.interest - financing.principal
        outlay = outlay - financing.draws
    subsidy = np.asarray(p.viability_gap, dtype=float)
    return np.asarray(p.revenue_share_investors * operating - share * outlay + share * parts["residual"] + subsidy)
