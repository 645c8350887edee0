"""One-way sensitivity: a tornado of NPV for ±X % on each driver, the sensitivity coefficient (敏感度系数) and
each driver's switching value (临界点), where NPV reaches zero."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import brentq

from civicmesh.feasibility import metrics
from civicmesh.feasibility.cashflow import Multipliers, Streams, economic_flows, financial_flows
from civicmesh.feasibility.model import Project


def npv_function(p: Project, s: Streams, view: str) -> Callable[[Multipliers], float]:
    if view == "economic":
        return lambda m: metrics.npv(p.social_rate, economic_flows(s, m))
    return lambda m: metrics.npv(p.financial_rate, financial_flows(p, s, m))


def base_amount(p: Project, driver: str) -> float:
    """What a driver's multiplier scales, in the file's own terms: total investment, yearly opex, yearly benefit."""
    if driver == "capex":
        return p.total_capex
    if driver == "opex":
        return sum(item.amount for item in p.opex)
    if driver == "benefits":
        return sum(b.per_year for b in p.benefits)
    name = driver.removeprefix("benefit:")
    return next(b.per_year for b in p.benefits if b.name == name)


def tornado(p: Project, s: Streams, view: str = "economic") -> list[dict[str, Any]]:
    """NPV with each driver moved down and up by the sensitivity range, widest swing first. The sensitivity
    coefficient is (ΔNPV/NPV)/(ΔF/F) over the symmetric range."""
    f = npv_function(p, s, view)
    base = f({})
    x = p.sensitivity_range
    rows = []
    drivers = [*p.drivers, "benefits"] if len(p.benefits) > 1 else p.drivers
    for driver in drivers:
        keys = p.targets(driver)
        low = f(dict.fromkeys(keys, 1 - x))
        high = f(dict.fromkeys(keys, 1 + x))
        rows.append({"driver": driver, "low": low, "high": high, "swing": abs(high - low),
                     "sensitivity_coefficient": ((high - low) / abs(base)) / (2 * x) if base else None})
    rate = p.social_rate if view == "economic" else p.financial_rate
    flows = economic_flows(s) if view == "economic" else financial_flows(p, s)
    low_rate, high_rate = metrics.npv(rate * (1 - x), flows), metrics.npv(rate * (1 + x), flows)
    rows.append({"driver": "discount rate", "low": low_rate, "high": high_rate, "swing": abs(high_rate - low_rate),
                 "sensitivity_coefficient": ((high_rate - low_rate) / abs(base)) / (2 * x) if base else None})
    return sorted(rows, key=lambda r: -r["swing"])


def switching_values(p: Project, s: Streams, view: str = "economic") -> list[dict[str, Any]]:
    """For each driver, the relative change (and the amount it means) that brings NPV to zero; None when no change
    between −100 % and +1000 % does."""
    f = npv_function(p, s, view)
    out = []
    for driver in [*p.drivers, "benefits"] if len(p.benefits) > 1 else p.drivers:
        keys = p.targets(driver)

        def g(multiplier: float, keys: list[str] = keys) -> float:
            return f(dict.fromkeys(keys, multiplier))

        low, high = g(0.0), g(11.0)
        change = None
        if np.sign(low) != np.sign(high):
            change = float(brentq(g, 0.0, 11.0, xtol=1e-12)) - 1.0
        amount = base_amount(p, driver)
        out.append({"driver": driver, "change": change, "base": amount,
                    "value": None if change is None else amount * (1 + change)})
    return out
