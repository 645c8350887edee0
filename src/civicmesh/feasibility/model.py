"""Cash flows and the evaluation. Every flow is a function of driver multipliers, so sensitivity, break-even and
Monte Carlo all reuse the same arithmetic (vectorized over draws)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import brentq

from civicmesh.feasibility import finance
from civicmesh.feasibility.project import Project

Multipliers = dict[str, np.ndarray | float]


@dataclass
class Streams:
    """Per-year base amounts (before driver multipliers), years 0..horizon."""

    capex: np.ndarray
    capex_standalone: np.ndarray
    opex: np.ndarray
    opex_standalone: np.ndarray
    benefits: dict[str, np.ndarray]
    financial_benefits: set[str]
    residual: np.ndarray
    depreciation: np.ndarray


def streams(p: Project) -> Streams:
    years = p.horizon + 1
    t = np.arange(years, dtype=float)
    capex = np.zeros(years)
    capex_alone = np.zeros(years)
    for item in p.capex:
        for year, share in enumerate(item.schedule):
            capex[year] += item.amount * share
            capex_alone[year] += item.standalone * share
    opex = np.zeros(years)
    opex_alone = np.zeros(years)
    growth_opex = (1 + p.escalation_opex) ** t
    for item in p.opex:
        active = t >= item.from_year
        opex += np.where(active, item.amount * growth_opex, 0.0)
        opex_alone += np.where(active, item.standalone * growth_opex, 0.0)
    growth_benefits = (1 + p.escalation_benefits) ** t
    benefits = {}
    for b in p.benefits:
        since = t - b.from_year + 1
        ramp = np.clip(since / b.ramp_years, 0, 1) if b.ramp_years else (since > 0).astype(float)
        benefits[b.name] = np.where(t >= b.from_year, b.per_year * ramp * growth_benefits, 0.0)
    residual = np.zeros(years)
    residual[-1] = p.residual_share * p.total_capex
    first_use = min([b.from_year for b in p.benefits] + [len(capex_schedule) for capex_schedule in
                                                           [i.schedule for i in p.capex]])
    depreciation = np.where(t >= first_use, p.total_capex * (1 - p.residual_share) / max(1, years - first_use), 0.0)
    return Streams(capex, capex_alone, opex, opex_alone, benefits, {b.name for b in p.benefits if b.financial},
                   residual, depreciation)


def _m(m: Multipliers, key: str) -> np.ndarray | float:
    value = m.get(key, 1.0)
    return np.asarray(value)[..., None] if isinstance(value, np.ndarray) else value


def flows(p: Project, s: Streams, m: Multipliers | None = None, *, economic: bool) -> np.ndarray:
    """Net cash flow per year; with array multipliers, one row per draw."""
    m = m or {}
    capex = s.capex * _m(m, "capex")
    opex = s.opex * _m(m, "opex")
    names = s.benefits.keys() if economic else s.financial_benefits
    benefit = sum((s.benefits[n] * _m(m, f"benefit:{n}") for n in names), np.zeros_like(s.capex))
    net = benefit - opex - capex + s.residual
    if not economic and p.tax_rate:
        # Taxes are a transfer: they count in the financial analysis only.
        taxable = benefit - opex - s.depreciation * _m(m, "capex")
        net = net - p.tax_rate * np.maximum(taxable, 0.0)
    return np.asarray(net)


@dataclass
class Evaluation:
    project: Project
    years: list[int]
    financial_flows: list[float]
    economic_flows: list[float]
    results: dict[str, Any]
    tornado: list[dict[str, Any]] = field(default_factory=list)
    break_even: dict[str, float | None] = field(default_factory=dict)
    monte_carlo: dict[str, Any] | None = None
    input_output: dict[str, Any] | None = None
    swot: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)


def _rate_summary(values: np.ndarray, finance_rate: float, warnings: list[str], label: str) -> dict[str, Any]:
    roots = finance.irr_all(values)
    summary: dict[str, Any] = {"irr": roots[0] if len(roots) == 1 else None, "irr_candidates": roots}
    if not roots:
        warnings.append(f"{label}: the cash flows never change sign, so there is no IRR")
    elif len(roots) > 1:
        summary["mirr"] = finance.mirr(values, finance_rate, finance_rate)
        warnings.append(f"{label}: the cash flows change sign more than once and have {len(roots)} IRRs "
                        f"({', '.join(f'{r:.2%}' for r in roots)}); MIRR {summary['mirr']:.2%} is reported instead")
    return summary


def evaluate(p: Project) -> Evaluation:
    s = streams(p)
    warnings: list[str] = []
    fin = flows(p, s, economic=False)
    eco = flows(p, s, economic=True)
    d_fin = finance.discount_factors(p.financial_rate, len(fin))
    d_soc = finance.discount_factors(p.social_rate, len(eco))
    pv_costs_soc = float((s.capex + s.opex) @ d_soc)
    pv_benefits_soc = float((sum(s.benefits.values(), np.zeros_like(s.capex)) + s.residual) @ d_soc)
    fin_benefit = sum((s.benefits[n] for n in s.financial_benefits), np.zeros_like(s.capex))
    pv_alone = float((s.capex_standalone + s.opex_standalone) @ d_soc)
    results: dict[str, Any] = {
        "financial": {"npv": float(fin @ d_fin), "rate": p.financial_rate,
                      **_rate_summary(fin, p.financial_rate, warnings, "financial flows"),
                      "bcr": float((fin_benefit + s.residual) @ d_fin) / float((s.capex + s.opex) @ d_fin),
                      "payback": finance.payback(fin), "discounted_payback": finance.payback(fin, p.financial_rate)},
        "economic": {"npv": float(eco @ d_soc), "rate": p.social_rate,
                     **_rate_summary(eco, p.social_rate, warnings, "economic flows"),
                     "bcr": pv_benefits_soc / pv_costs_soc if pv_costs_soc else None,
                     "pv_benefits": pv_benefits_soc, "pv_costs": pv_costs_soc,
                     "pv_investment": float(s.capex @ d_soc)},
        "collaboration": {"pv_costs_collaborative": pv_costs_soc, "pv_costs_standalone": pv_alone,
                          "saving": pv_alone - pv_costs_soc,
                          "saving_share": (pv_alone - pv_costs_soc) / pv_alone if pv_alone else 0.0},
        "total_investment": p.total_capex,
    }
    payback = results["financial"]["payback"]
    if payback is None:
        warnings.append("the financial cash flows never pay the investment back within the horizon")
    elif p.benchmark_payback and payback > p.benchmark_payback:
        warnings.append(f"the payback of {payback:.1f} years exceeds the benchmark of {p.benchmark_payback:g} years")
    results["ppp"] = _ppp(p, s, fin_benefit, warnings)
    evaluation = Evaluation(p, [p.start_year + i for i in range(p.horizon + 1)], fin.tolist(), eco.tolist(),
                            results, warnings=warnings)
    evaluation.tornado = tornado(p, s)
    evaluation.break_even = break_even(p, s)
    return evaluation


def _ppp(p: Project, s: Streams, fin_benefit: np.ndarray, warnings: list[str]) -> dict[str, Any] | None:
    social = p.financing.get("social_capital", 0.0)
    if not social:
        return None
    share_of_capex = social / p.total_capex
    operating = fin_benefit - s.opex
    if p.tax_rate:
        operating = operating - p.tax_rate * np.maximum(fin_benefit - s.opex - s.depreciation, 0.0)
    investor = p.revenue_share_investors * operating - s.capex * share_of_capex + s.residual * share_of_capex
    summary = _rate_summary(investor, p.financial_rate, warnings, "investors' flows")
    return {"social_capital": social, "share_of_investment": share_of_capex,
            "revenue_share": p.revenue_share_investors, "npv": finance.npv(p.financial_rate, investor),
            "flows": investor.tolist(), "payback": finance.payback(investor), **summary}


def tornado(p: Project, s: Streams) -> list[dict[str, Any]]:
    """Economic NPV with each driver moved down and up by the sensitivity range; widest swing first."""
    base = finance.npv(p.social_rate, flows(p, s, economic=True))
    rows = []
    for driver in p.drivers:
        low = finance.npv(p.social_rate, flows(p, s, {driver: 1 - p.sensitivity_range}, economic=True))
        high = finance.npv(p.social_rate, flows(p, s, {driver: 1 + p.sensitivity_range}, economic=True))
        elasticity = ((high - low) / abs(base)) / (2 * p.sensitivity_range) if base else None
        rows.append({"driver": driver, "low": low, "high": high, "swing": abs(high - low),
                     "sensitivity_coefficient": elasticity})
    rate_low = finance.npv(p.social_rate * (1 - p.sensitivity_range), flows(p, s, economic=True))
    rate_high = finance.npv(p.social_rate * (1 + p.sensitivity_range), flows(p, s, economic=True))
    rows.append({"driver": "discount rate", "low": rate_low, "high": rate_high, "swing": abs(rate_high - rate_low),
                 "sensitivity_coefficient": None})
    return sorted(rows, key=lambda r: -r["swing"])


def break_even(p: Project, s: Streams) -> dict[str, float | None]:
    """For each driver, the relative change that brings the economic NPV to zero (None: no such change in
    -100%..+1000%)."""
    out: dict[str, float | None] = {}
    for driver in p.drivers:
        def f(x: float, d: str = driver) -> float:
            return finance.npv(p.social_rate, flows(p, s, {d: x}, economic=True))
        try:
            out[driver] = brentq(f, 0.0, 11.0) - 1.0 if f(0.0) * f(11.0) < 0 else None
        except ValueError:
            out[driver] = None
    return out
