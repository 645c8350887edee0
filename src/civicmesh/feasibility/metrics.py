"""Discounted cash-flow measures: NPV, IRR (none, one or several), MIRR, payback, annuity.

Year 0 is the first construction year and flows are dated at their year index. `npv` follows numpy-financial:
values[0] is not discounted. Excel's NPV() discounts its first value by one period, so in Excel the same figure
is `values[0] + NPV(rate, values[1:])`.
"""

from __future__ import annotations

import numpy as np


def discount_factors(rate: float, years: int) -> np.ndarray:
    if rate <= -1:
        raise ValueError(f"a discount rate of {rate:.0%} is not above -100%")
    return (1.0 + rate) ** -np.arange(years, dtype=float)


def npv(rate: float, flows: np.ndarray | list[float]) -> float:
    values = np.asarray(flows, dtype=float)
    return float(values @ discount_factors(rate, len(values)))


def sign_changes(flows: np.ndarray | list[float]) -> int:
    signs = np.sign(np.asarray(flows, dtype=float))
    signs = signs[signs != 0]
    return int(np.count_nonzero(signs[1:] != signs[:-1]))


def irr_all(flows: np.ndarray | list[float]) -> list[float]:
    """Every real rate above -100% at which NPV is zero, smallest first.

    NPV(r) = Σ v_t x^t with x = 1/(1+r) is a polynomial in x; its positive real roots are the IRRs. Descartes'
    rule bounds their number by the sign changes of the flows, which is why several can exist.
    """
    values = np.trim_zeros(np.asarray(flows, dtype=float), "b")
    if sign_changes(values) == 0:
        return []
    leading = len(values) - len(np.trim_zeros(values, "f"))
    roots = np.roots(values[leading:][::-1])  # x = 0 roots from leading zero years carry no rate
    scale = max(1.0, float(np.abs(values).sum()))
    found: list[float] = []
    for x in roots:
        if abs(x.imag) > 1e-7 * max(1.0, abs(x)) or x.real <= 0:
            continue
        rate = _polish(values, 1.0 / x.real - 1.0)
        if rate > -1 and abs(npv(rate, values)) < 1e-6 * scale and all(abs(rate - f) > 1e-9 for f in found):
            found.append(float(rate))
    return sorted(found)


def _polish(values: np.ndarray, rate: float) -> float:
    """A few Newton steps on NPV(r): np.roots is accurate to ~1e-8, users compare IRRs to more digits."""
    t = np.arange(len(values), dtype=float)
    for _ in range(6):
        if rate <= -1:
            break
        factors = (1.0 + rate) ** -t
        value = float(values @ factors)
        slope = float(-(values * t) @ (factors / (1.0 + rate)))
        if slope == 0:
            break
        step = value / slope
        rate -= step
        if abs(step) < 1e-15:
            break
    return rate


def irr(flows: np.ndarray | list[float]) -> float | None:
    """The IRR when there is exactly one; None when there is none or several (use MIRR then)."""
    found = irr_all(flows)
    return found[0] if len(found) == 1 else None


def mirr(flows: np.ndarray | list[float], finance_rate: float, reinvest_rate: float) -> float | None:
    """Modified IRR (as numpy-financial): negative flows discounted at the finance rate, positive flows compounded
    to the last year at the reinvestment rate. None when the flows do not have both signs."""
    values = np.asarray(flows, dtype=float)
    n = len(values) - 1
    if n < 1:
        return None
    positive = np.where(values > 0, values, 0.0)
    negative = np.where(values < 0, values, 0.0)
    fv_positive = float(positive @ (1 + reinvest_rate) ** (n - np.arange(n + 1)))
    pv_negative = float(negative @ (1 + finance_rate) ** -np.arange(n + 1))
    if fv_positive == 0 or pv_negative == 0:
        return None
    return float((fv_positive / -pv_negative) ** (1 / n) - 1)


def payback(flows: np.ndarray | list[float], rate: float | None = None) -> float | None:
    """Years from the start of construction until the cumulative (discounted, with `rate`) flow turns
    non-negative for the last time, interpolated inside the year; None if it does not stay recovered."""
    values = np.asarray(flows, dtype=float)[None, :]
    if rate is not None:
        values = values * discount_factors(rate, values.shape[1])
    years = payback_years(values)[0]
    return None if np.isnan(years) else float(years)


def payback_years(values: np.ndarray) -> np.ndarray:
    """Interpolated payback per row of a (draws × years) array; NaN where a row is not recovered by the end.

    The payback year is the one after which the cumulative flow stays non-negative: a late reinvestment that
    dips it below zero again moves the payback, as the Chinese guide's 累计净现金流量 reading does.
    """
    cumulative = np.cumsum(values, axis=1)
    rows, years = values.shape
    negative = cumulative < 0
    recovered = ~negative[:, -1]
    # The last year with a negative cumulative flow; -1 when none was ever negative.
    last_negative = np.where(negative.any(axis=1), years - 1 - np.argmax(negative[:, ::-1], axis=1), -1)
    turn = np.minimum(last_negative + 1, years - 1)
    index = np.arange(rows)
    before = cumulative[index, np.maximum(turn - 1, 0)]
    during = values[index, turn]
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(during > 0, -before / during, 0.0)
    result = np.where(last_negative < 0, 0.0, turn - 1 + fraction)
    return np.where(recovered, result, np.nan)


def annuity(value: float, rate: float, years: int) -> float:
    """The level yearly amount over `years` with present value `value`."""
    if rate == 0:
        return value / years
    return value * rate / (1 - (1 + rate) ** -years)
