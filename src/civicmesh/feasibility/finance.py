"""Discounted cash-flow measures. Year 0 is the start of construction; flows are end-of-year.

`npv` follows numpy-financial (values[0] is not discounted); Excel's NPV() would discount it by one period.
"""

from __future__ import annotations

import math

import numpy as np


def discount_factors(rate: float, years: int) -> np.ndarray:
    if rate <= -1:
        raise ValueError(f"a discount rate of {rate:.0%} is not above -100%")
    return (1.0 + rate) ** -np.arange(years, dtype=float)


def npv(rate: float, flows: np.ndarray | list[float]) -> float:
    values = np.asarray(flows, dtype=float)
    return float(values @ discount_factors(rate, len(values)))


def irr_all(flows: np.ndarray | list[float]) -> list[float]:
    """Every real rate above -100% where NPV is zero, smallest first (roots of the NPV polynomial in 1/(1+r))."""
    values = np.asarray(flows, dtype=float)
    if not (np.any(values > 0) and np.any(values < 0)):
        return []
    # NPV(r) = sum_t v_t x^t with x = 1/(1+r): find the positive real roots x.
    roots = np.roots(values[::-1])  # np.roots drops the leading zeros of trailing empty years
    rates = sorted({round(1.0 / x.real - 1.0, 12) for x in roots
                    if abs(x.imag) < 1e-9 and x.real > 0})
    return [r for r in rates if r > -1 and abs(npv(r, values)) < 1e-6 * max(1.0, float(np.abs(values).sum()))]


def irr(flows: np.ndarray | list[float]) -> float | None:
    """The IRR when there is exactly one; None when there is none or several (use MIRR then)."""
    found = irr_all(flows)
    return found[0] if len(found) == 1 else None


def mirr(flows: np.ndarray | list[float], finance_rate: float, reinvest_rate: float) -> float | None:
    values = np.asarray(flows, dtype=float)
    n = len(values) - 1
    positive = np.where(values > 0, values, 0.0)
    negative = np.where(values < 0, values, 0.0)
    fv_positive = float(positive @ (1 + reinvest_rate) ** (n - np.arange(n + 1)))
    pv_negative = float(negative @ (1 + finance_rate) ** -np.arange(n + 1))
    if fv_positive == 0 or pv_negative == 0:
        return None
    return (fv_positive / -pv_negative) ** (1 / n) - 1


def payback(flows: np.ndarray | list[float], rate: float | None = None) -> float | None:
    """Years from the start of construction until the cumulative (discounted, if rate) flow turns non-negative,
    interpolated inside the year; None if it never does."""
    values = np.asarray(flows, dtype=float)
    if rate is not None:
        values = values * discount_factors(rate, len(values))
    cumulative = np.cumsum(values)
    for t in range(len(values)):
        if cumulative[t] >= 0 and (t == 0 or cumulative[t - 1] < 0):
            if t == 0:
                return 0.0
            return t - 1 + (-cumulative[t - 1]) / values[t]
    return None


def annuity(value: float, rate: float, years: int) -> float:
    if rate == 0:
        return value / years
    return value * rate / (1 - (1 + rate) ** -years)


def fmt_rate(rate: float | None) -> str:
    return "—" if rate is None or math.isnan(rate) else f"{rate:.2%}"
