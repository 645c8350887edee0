"""Risk: the register (probability × impact, by category) and Monte Carlo over the drivers.

Distributions are on driver multipliers (1.0 = the base case). Correlation goes through a Gaussian copula:
correlated standard normals are turned into uniforms and then into each marginal by its inverse CDF, so every
marginal keeps its own shape. Each risk in the register becomes a Bernoulli event that moves its driver.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats

from civicmesh.feasibility import metrics
from civicmesh.feasibility.cashflow import Streams, economic_flows, financial_flows
from civicmesh.feasibility.model import Project, ProjectError, Uncertain

# Risk levels (一般/较大/严重/重大) by expected loss of economic NPV as a share of the PV of the investment.
# The cut-offs are this evaluator's convention, stated in the report, not a figure from the guide.
LEVELS = [(0.01, "low", "一般"), (0.03, "medium", "较大"), (0.10, "high", "严重"), (float("inf"), "critical", "重大")]


def inverse_cdf(spec: Uncertain, u: np.ndarray) -> np.ndarray:
    p = spec.params
    if spec.dist == "uniform":
        return p["low"] + (p["high"] - p["low"]) * u
    if spec.dist == "triangular":
        return _triangular_ppf(u, p["low"], p["mode"], p["high"])
    if spec.dist == "pert":
        width = p["high"] - p["low"]
        a = 1 + 4 * (p["mode"] - p["low"]) / width
        b = 1 + 4 * (p["high"] - p["mode"]) / width
        pert: np.ndarray = p["low"] + width * stats.beta.ppf(u, a, b)
        return pert
    if spec.dist == "normal":
        normal: np.ndarray = stats.norm.ppf(u, p["mean"], p["sd"])
        return normal
    # Lognormal given the multiplier's own mean and sd (not those of its logarithm).
    sigma2 = np.log1p((p["sd"] / p["mean"]) ** 2)
    lognormal: np.ndarray = p["mean"] * np.exp(-sigma2 / 2 + np.sqrt(sigma2) * stats.norm.ppf(u))
    return lognormal


def _triangular_ppf(u: np.ndarray, low: float, mode: float, high: float) -> np.ndarray:
    width = high - low
    split = (mode - low) / width
    left = low + np.sqrt(u * width * (mode - low))
    right = high - np.sqrt((1 - u) * width * (high - mode))
    return np.where(u < split, left, right)


def _copula(p: Project) -> np.ndarray:
    index = {spec.driver: i for i, spec in enumerate(p.uncertainty)}
    corr = np.eye(len(index))
    for a, b, rho in p.correlations:
        corr[index[a], index[b]] = corr[index[b], index[a]] = rho
    try:
        return np.linalg.cholesky(corr)
    except np.linalg.LinAlgError as exc:
        raise ProjectError("uncertainty.correlation", "the coefficients do not form a valid (positive definite) "
                           "correlation matrix") from exc


def draw_multipliers(p: Project, n: int, rng: np.random.Generator,
                     chol: np.ndarray | None = None) -> dict[str, np.ndarray]:
    m: dict[str, np.ndarray] = {d: np.ones(n) for d in p.drivers}
    if p.uncertainty:
        chol = _copula(p) if chol is None else chol
        z = rng.standard_normal((n, len(p.uncertainty))) @ chol.T
        u = np.clip(stats.norm.cdf(z), 1e-12, 1 - 1e-12)
        for i, spec in enumerate(p.uncertainty):
            values = np.maximum(inverse_cdf(spec, u[:, i]), 0.0)  # a normal tail must not make costs negative
            for target in p.targets(spec.driver):
                m[target] = m[target] * values
    for risk in p.risks:
        occurs = rng.random(n) < risk.probability
        for target in p.targets(risk.driver):
            m[target] = m[target] * np.where(occurs, 1 + risk.change, 1.0)
    return m


def register(p: Project, s: Streams) -> list[dict[str, Any]]:
    """Each risk's effect on economic NPV if it happens, its expected loss and its level, largest first."""
    base = metrics.npv(p.social_rate, economic_flows(s))
    pv_investment = float(s.capex_economic @ metrics.discount_factors(p.social_rate, len(s.capex)))
    rows = []
    for risk in p.risks:
        hit = metrics.npv(p.social_rate, economic_flows(s, dict.fromkeys(p.targets(risk.driver), 1 + risk.change)))
        impact = hit - base
        expected = risk.probability * impact
        share = abs(min(expected, 0.0)) / pv_investment if pv_investment else 0.0
        level = next((en, zh) for limit, en, zh in LEVELS if share < limit)
        rows.append({"name": risk.name, "category": risk.category, "probability": risk.probability,
                     "driver": risk.driver, "change": risk.change, "npv_impact": impact,
                     "expected_npv_impact": expected, "score": share, "level": level[0], "level_zh": level[1]})
    return sorted(rows, key=lambda r: r["expected_npv_impact"])


def monte_carlo(p: Project, s: Streams, draws: int = 10_000, seed: int = 2026, chunk: int = 25_000,
                progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Economic and financial NPV and financial payback over `draws` joint draws, in vectorized chunks."""
    if draws < 1:
        raise ValueError("Monte Carlo needs at least one draw")
    rng = np.random.default_rng(seed)
    chol = _copula(p) if p.uncertainty else None
    d_soc = metrics.discount_factors(p.social_rate, p.horizon + 1)
    d_fin = metrics.discount_factors(p.financial_rate, p.horizon + 1)
    eco_npv, fin_npv, paybacks = [], [], []
    done = 0
    while done < draws:
        n = min(chunk, draws - done)
        m = draw_multipliers(p, n, rng, chol)
        fin = financial_flows(p, s, m)
        eco_npv.append(economic_flows(s, m) @ d_soc)
        fin_npv.append(fin @ d_fin)
        paybacks.append(metrics.payback_years(fin))
        done += n
        if progress:
            progress(n)
    e, f, pb = np.concatenate(eco_npv), np.concatenate(fin_npv), np.concatenate(paybacks)
    paid = pb[~np.isnan(pb)]
    counts, edges = np.histogram(e, bins=40)
    return {
        "draws": draws, "seed": seed,
        "economic_npv": summary(e), "financial_npv": summary(f),
        "p_economic_npv_negative": float((e < 0).mean()), "p_financial_npv_negative": float((f < 0).mean()),
        "payback": summary(paid) if len(paid) else None,
        "share_never_paying_back": float(np.isnan(pb).mean()),
        "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
    }


def summary(values: np.ndarray) -> dict[str, float]:
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "p10": float(p10), "p50": float(p50), "p90": float(p90)}
