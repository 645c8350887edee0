"""One call from a validated project to every figure: indicators, collaboration saving, PPP and loan, sensitivity,
risk, input–output and SWOT. Problems the numbers reveal become warnings, never NaNs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from civicmesh.feasibility import io_model, metrics, risk, sensitivity
from civicmesh.feasibility.cashflow import (
    Streams,
    build_streams,
    economic_flows,
    financial_parts,
    investor_flows,
    loan_schedule,
)
from civicmesh.feasibility.model import Project, ProjectError
from civicmesh.feasibility.swot import evaluate_swot

RECOMMENDED_SOCIAL_RATES = (0.08, 0.06)  # 建设项目经济评价方法与参数 (3rd ed.): 8 %, 6 % for public-welfare projects


@dataclass
class Evaluation:
    project: Project
    streams: Streams
    years: list[int]
    table: dict[str, list[float | None]]  # per-year columns; None where a value is not a finite number
    results: dict[str, Any]
    tornado: list[dict[str, Any]] = field(default_factory=list)
    switching: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    risks: list[dict[str, Any]] = field(default_factory=list)
    monte_carlo: dict[str, Any] | None = None
    input_output: dict[str, Any] | None = None
    swot: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)


def _clean(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values]


def _rates(values: np.ndarray, rate: float, label: str, warnings: list[str]) -> dict[str, Any]:
    roots = metrics.irr_all(values)
    out: dict[str, Any] = {"irr": roots[0] if len(roots) == 1 else None, "irr_candidates": roots, "mirr": None}
    if not roots:
        if metrics.sign_changes(values) == 0:
            warnings.append(f"{label}: the cash flows never change sign, so there is no IRR")
        else:
            warnings.append(f"{label}: NPV does not reach zero at any rate above -100%, so there is no IRR")
    elif len(roots) > 1:
        out["mirr"] = metrics.mirr(values, rate, rate)
        mirr_text = "—" if out["mirr"] is None else f"{out['mirr']:.2%}"
        warnings.append(f"{label}: the cash flows change sign more than once and have {len(roots)} IRRs "
                        f"({', '.join(f'{r:.2%}' for r in roots)}); the MIRR at {rate:.0%} ({mirr_text}) is "
                        "reported instead")
    return out


def evaluate(p: Project) -> Evaluation:
    s = build_streams(p)
    warnings: list[str] = []
    n = p.horizon + 1
    d_fin = metrics.discount_factors(p.financial_rate, n)
    d_soc = metrics.discount_factors(p.social_rate, n)

    fin = financial_parts(p, s)
    eco = economic_flows(s)
    eco_benefits = sum(s.benefits.values(), np.zeros(n))
    eco_costs = s.capex_economic + s.opex_economic
    pv_fin_in = float((fin["inflow"] + fin["residual"]) @ d_fin)
    pv_fin_out = float((fin["capex"] + fin["opex"] + fin["tax"]) @ d_fin)
    results: dict[str, Any] = {
        "total_investment": p.total_capex,
        "financial": {"rate": p.financial_rate, "npv": float(fin["net"] @ d_fin),
                      **_rates(fin["net"], p.financial_rate, "financial flows", warnings),
                      "pv_inflows": pv_fin_in, "pv_outflows": pv_fin_out, "bcr": pv_fin_in / pv_fin_out,
                      "payback": metrics.payback(fin["net"]),
                      "discounted_payback": metrics.payback(fin["net"], p.financial_rate),
                      "benchmark_payback": p.benchmark_payback},
        "economic": {"rate": p.social_rate, "npv": float(eco @ d_soc),
                     **_rates(eco, p.social_rate, "economic flows", warnings),
                     "pv_benefits": float((eco_benefits + s.residual) @ d_soc), "pv_costs": float(eco_costs @ d_soc),
                     "pv_investment": float(s.capex_economic @ d_soc), "pv_operating": float(s.opex_economic @ d_soc),
                     "payback": metrics.payback(eco), "discounted_payback": metrics.payback(eco, p.social_rate)},
    }
    results["economic"]["bcr"] = results["economic"]["pv_benefits"] / results["economic"]["pv_costs"]
    results["collaboration"] = _collaboration(p, s, d_soc, d_fin)
    financing = loan_schedule(p, s)
    table = {"capex": fin["capex"], "opex": fin["opex"], "inflow": fin["inflow"], "tax": fin["tax"],
             "residual": fin["residual"], "financial_net": fin["net"], "financial_cumulative": np.cumsum(fin["net"]),
             "economic_benefits": eco_benefits, "economic_costs": eco_costs, "economic_net": eco,
             "economic_cumulative_discounted": np.cumsum(eco * d_soc)}
    if financing is not None:
        results["loan"] = _loan_summary(p, financing, d_fin, warnings)
        table.update(loan_draws=financing.draws, interest=financing.interest, principal=financing.principal,
                     equity_net=financing.equity_flows)
    investors = investor_flows(p, s, financing)
    if investors is not None:
        equity_total = p.total_capex - (p.loan.amount if p.loan else 0.0)
        results["ppp"] = {"social_capital": p.financing["social_capital"],
                          "share_of_investment": p.financing["social_capital"] / p.total_capex,
                          "share_of_equity": p.financing["social_capital"] / equity_total,
                          "revenue_share": p.revenue_share_investors,
                          "viability_gap_pv": metrics.npv(p.financial_rate, p.viability_gap),
                          "npv": metrics.npv(p.financial_rate, investors), "payback": metrics.payback(investors),
                          **_rates(investors, p.financial_rate, "social capital's flows", warnings)}
        table["investor_net"] = investors
    payback = results["financial"]["payback"]
    if payback is None:
        warnings.append("the financial cash flows do not pay the investment back within the study period")
    elif p.benchmark_payback and payback > p.benchmark_payback:
        warnings.append(f"the financial payback of {payback:.1f} years exceeds the benchmark of "
                        f"{p.benchmark_payback:g} years")
    if not s.financial_benefits:
        warnings.append("no benefit is marked financial: the project earns no cash, so the financial analysis "
                        "only shows what the budget must carry")
    if all(abs(p.social_rate - r) > 1e-9 for r in RECOMMENDED_SOCIAL_RATES):
        warnings.append(f"the social discount rate {p.social_rate:.1%} differs from the 8% the national guide "
                        "recommends (6% for public-welfare projects)")
    evaluation = Evaluation(p, s, [p.start_year + i for i in range(n)],
                            {k: _clean(np.asarray(v)) for k, v in table.items()},
                            results, warnings=warnings)
    evaluation.tornado = sensitivity.tornado(p, s, "economic")
    evaluation.switching = {"economic": sensitivity.switching_values(p, s, "economic"),
                            "financial": sensitivity.switching_values(p, s, "financial")}
    evaluation.risks = risk.register(p, s)
    return evaluation


def _collaboration(p: Project, s: Streams, d_soc: np.ndarray, d_fin: np.ndarray) -> dict[str, Any]:
    """Building together versus each department alone: the same benefits, the standalone costs."""
    together = float((s.capex + s.opex) @ d_soc)
    alone = float((s.capex_standalone + s.opex_standalone) @ d_soc)
    fin_alone = financial_parts(p, s, standalone=True)["net"]
    return {"pv_costs_collaborative": together, "pv_costs_standalone": alone, "saving": alone - together,
            "saving_share": (alone - together) / alone if alone else 0.0,
            "capex_collaborative": float(s.capex.sum()), "capex_standalone": float(s.capex_standalone.sum()),
            "financial_npv_standalone": float(fin_alone @ d_fin), "payback_standalone": metrics.payback(fin_alone)}


def _loan_summary(p: Project, f: Any, d_fin: np.ndarray, warnings: list[str]) -> dict[str, Any]:
    assert p.loan is not None
    due = ~np.isnan(f.dscr)
    dscr_min = float(np.nanmin(f.dscr)) if due.any() else None
    if dscr_min is not None and dscr_min < 1:
        years = [p.start_year + int(t) for t in np.flatnonzero(due & (f.dscr < 1))]
        warnings.append(f"the debt service coverage ratio falls below 1 (minimum {dscr_min:.2f}) in "
                        f"{', '.join(map(str, years))}: the operating cash flow cannot service the loan")
    elif dscr_min is not None and dscr_min < 1.3:
        warnings.append(f"the minimum debt service coverage ratio is {dscr_min:.2f}, below the 1.3 lenders "
                        "usually ask for")
    icr = f.icr[~np.isnan(f.icr)]
    return {"amount": p.loan.amount, "rate": p.loan.rate, "years": p.loan.years, "method": p.loan.method,
            "repay_from_year": p.start_year + p.loan.repay_from,
            "interest_total": float(f.interest.sum() + f.capitalized.sum()),
            "interest_capitalized": float(f.capitalized.sum()),
            "dscr_min": dscr_min, "dscr_mean": float(np.nanmean(f.dscr)) if due.any() else None,
            "icr_min": float(icr.min()) if icr.size else None,
            "equity_npv": float(f.equity_flows @ d_fin),
            **{f"equity_{k}": v for k, v in _rates(f.equity_flows, p.financial_rate, "equity flows", []).items()}}


def run(p: Project, *, draws: int = 10_000, seed: int = 2026,
        progress: Callable[[int], None] | None = None) -> Evaluation:
    result = evaluate(p)
    if p.uncertainty or p.risks:
        result.monte_carlo = risk.monte_carlo(p, result.streams, draws=draws, seed=seed, progress=progress)
        if result.monte_carlo["share_never_paying_back"] > 0.5:
            result.warnings.append(f"in {result.monte_carlo['share_never_paying_back']:.0%} of the Monte Carlo "
                                   "draws the investment is not paid back within the study period")
    if p.io:
        result.input_output = _input_output(p, result.warnings)
    result.swot = evaluate_swot(p.swot)
    return result


def _input_output(p: Project, warnings: list[str]) -> dict[str, Any]:
    assert p.io is not None
    try:
        table = io_model.load_table(p.io, p.base_dir)
        unit = p.io["unit"]
        effect = io_model.impact(table, p.io["shock"], unit)
    except io_model.TableError as exc:
        raise ProjectError("input_output", str(exc)) from exc
    if abs(effect["spending"] - p.total_capex) > 0.01 * p.total_capex:
        warnings.append(f"the input-output shock spends {effect['spending']:,.0f} but the investment is "
                        f"{p.total_capex:,.0f}; the drive ratio is per unit of the shock")
    return {"multipliers": io_model.multipliers(table), "unit": float(unit), "source": table.source,
            "employment_unit": p.io["employment_unit"], "impact": effect}


def as_json(e: Evaluation) -> dict[str, Any]:
    p = e.project
    return {"project": {"name": p.name, "currency": p.currency, "start_year": p.start_year,
                        "horizon_years": p.horizon, "construction_years": p.construction_years,
                        "total_investment": p.total_capex, "financing": p.financing,
                        "financial_rate": p.financial_rate, "social_rate": p.social_rate, "inflation": p.inflation,
                        "tax_rate": p.tax_rate},
            "years": e.years, "cash_flows": e.table, "results": e.results, "tornado": e.tornado,
            "switching_values": e.switching, "risk_register": e.risks, "monte_carlo": e.monte_carlo,
            "input_output": e.input_output, "swot": e.swot, "warnings": e.warnings}
