"""Monte Carlo over the drivers: distributions, a Gaussian copula for correlation, and the risk register."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats

from civicmesh.feasibility import finance
from civicmesh.feasibility.model import Streams, flows
from civicmesh.feasibility.project import Project, ProjectError, Uncertain


def inverse_cdf(spec: Uncertain, u: np.ndarray) -> np.ndarray:
    p = spec.params
    if spec.dist == "uniform":
        return p["low"] + (p["high"] - p["low"]) * u
    if spec.dist == "triangular":
        width = p["high"] - p["low"]
        return stats.triang.ppf(u, (p["mode"] - p["low"]) / width, loc=p["low"], scale=width)
    if spec.dist == "pert":
        width = p["high"] - p["low"]
        a = 1 + 4 * (p["mode"] - p["low"]) / width
        b = 1 + 4 * (p["high"] - p["mode"]) / width
        return p["low"] + width * stats.beta.ppf(u, a, b)
    if spec.dist == "normal":
        return stats.norm.ppf(u, p["mean"], p["sd"])
    sigma2 = np.log(1 + (p["sd"] / p["mean"]) ** 2)  # lognormal given the variable's own mean and sd
    return stats.lognorm.ppf(u, np.sqrt(sigma2), scale=p["mean"] * np.exp(-sigma2 / 2))


def _targets(p: Project, driver: str) -> list[str]:
    if driver == "benefits":
        return [f"benefit:{b.name}" for b in p.benefits]
    if driver in ("capex", "opex") or driver.startswith("benefit:"):
        return [driver]
    return [f"benefit:{driver}"]


def draw_multipliers(p: Project, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    specs = p.uncertainty
    index = {s.driver: i for i, s in enumerate(specs)}
    corr = np.eye(len(specs))
    for a, b, rho in p.correlations:
        if a not in index or b not in index:
            raise ProjectError("uncertainty.correlation", f"{a!r} and {b!r} must both have a distribution")
        corr[index[a], index[b]] = corr[index[b], index[a]] = rho
    try:
        chol = np.linalg.cholesky(corr)
    except np.linalg.LinAlgError as exc:
        raise ProjectError("uncertainty.correlation", "the correlations are not a valid (positive definite) "
                           "correlation matrix") from exc
    z = rng.standard_normal((n, len(specs))) @ chol.T
    u = np.clip(stats.norm.cdf(z), 1e-12, 1 - 1e-12)
    m: dict[str, np.ndarray] = {d: np.ones(n) for d in p.drivers}
    for i, spec in enumerate(specs):
        values = inverse_cdf(spec, u[:, i])
        for target in _targets(p, spec.driver):
            m[target] = m[target] * values
    for risk in p.risks:
        occurs = rng.random(n) < risk.probability
        for target in _targets(p, risk.driver):
            m[target] = m[target] * np.where(occurs, 1 + risk.change, 1.0)
    return m


def payback_years(values: np.ndarray) -> np.ndarray:
    """Interpolated payback per row; NaN where the row never pays back."""
    cumulative = np.cumsum(values, axis=1)
    turned = (cumulative >= 0) & np.concatenate([np.ones((len(values), 1), bool), cumulative[:, :-1] < 0], axis=1)
    any_turn = turned.any(axis=1)
    t = np.argmax(turned, axis=1)
    previous = cumulative[np.arange(len(values)), np.maximum(t - 1, 0)]
    current = values[np.arange(len(values)), t]
    with np.errstate(divide="ignore", invalid="ignore"):
        years = np.where(t == 0, 0.0, t - 1 + (-previous) / current)
    return np.where(any_turn, years, np.nan)


def monte_carlo(p: Project, s: Streams, draws: int = 10_000, seed: int = 2026, chunk: int = 25_000,
                progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    d_soc = finance.discount_factors(p.social_rate, p.horizon + 1)
    d_fin = finance.discount_factors(p.financial_rate, p.horizon + 1)
    eco_npv, fin_npv, paybacks = [], [], []
    done = 0
    while done < draws:
        n = min(chunk, draws - done)
        m = draw_multipliers(p, n, rng)
        eco = flows(p, s, m, economic=True)  # type: ignore[arg-type]
        fin = flows(p, s, m, economic=False)  # type: ignore[arg-type]
        eco_npv.append(eco @ d_soc)
        fin_npv.append(fin @ d_fin)
        paybacks.append(payback_years(fin))
        done += n
        if progress:
            progress(n)
    e, f, pb = np.concatenate(eco_npv), np.concatenate(fin_npv), np.concatenate(paybacks)
    paid = pb[~np.isnan(pb)]
    counts, edges = np.histogram(e, bins=40)
    return {
        "draws": draws, "seed": seed,
        "economic_npv": _percentiles(e), "financial_npv": _percentiles(f),
        "p_economic_npv_negative": float((e < 0).mean()), "p_financial_npv_negative": float((f < 0).mean()),
        "payback": _percentiles(paid) if len(paid) else None,
        "share_never_paying_back": float(np.isnan(pb).mean()),
        "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
    }


def _percentiles(values: np.ndarray) -> dict[str, float]:
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return {"mean": float(values.mean()), "p10": float(p10), "p50": float(p50), "p90": float(p90)}
