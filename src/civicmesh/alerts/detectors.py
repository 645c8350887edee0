"""Detectors: pure functions of (rule, state, value, time) -> (severity or None, new state, reason).

State is a JSON-able dict kept per rule and entity, so detection resumes where it stopped after a restart.
"""

from __future__ import annotations

import math
from typing import Any

SEVERITIES = ("informational", "low", "medium", "high", "critical")
KINDS = ("threshold", "rate", "ewma", "cusum")


class RuleError(ValueError):
    pass


def check_rule(rule: dict[str, Any]) -> None:
    """Raise RuleError naming what is wrong with a rule."""
    for key in ("id", "entityType", "attribute", "kind"):
        if not isinstance(rule.get(key), str) or not rule[key]:
            raise RuleError(f"a rule needs {key} (a non-empty string)")
    kind = rule["kind"]
    if kind not in KINDS:
        raise RuleError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    if kind == "threshold":
        tiers = rule.get("tiers")
        if not isinstance(tiers, list) or not tiers:
            raise RuleError("a threshold rule needs tiers: [{severity, above|below}]")
        for tier in tiers:
            if not isinstance(tier, dict) or tier.get("severity") not in SEVERITIES:
                raise RuleError(f"each tier needs a severity from {', '.join(SEVERITIES)}")
            bounds = [k for k in ("above", "below") if isinstance(tier.get(k), (int, float))]
            if len(bounds) != 1:
                raise RuleError("each tier needs exactly one numeric above or below")
        return
    if rule.get("severity", "medium") not in SEVERITIES:
        raise RuleError(f"severity must be one of {', '.join(SEVERITIES)}")
    if kind == "rate":
        if not isinstance(rule.get("maxRate"), (int, float)) or rule["maxRate"] <= 0:
            raise RuleError("a rate rule needs maxRate > 0 (change per second, or per `per`)")
        if rule.get("per", "second") not in ("second", "minute", "hour", "day"):
            raise RuleError("per must be second, minute, hour or day")
    if kind == "ewma" and not 0 < float(rule.get("lambda", 0.2)) <= 1:
        raise RuleError("lambda must be in (0, 1]")
    if "sigma" in rule and (not isinstance(rule["sigma"], (int, float)) or rule["sigma"] <= 0):
        raise RuleError("sigma must be a positive number")


def _learn(state: dict[str, Any], rule: dict[str, Any], value: float) -> tuple[float, float] | None:
    """The in-control mean and sigma: given by the rule, or learned over the first `warmup` values."""
    if "mean" in rule and "sigma" in rule:
        return float(rule["mean"]), float(rule["sigma"])
    n, mean, m2 = state.get("n", 0), state.get("mean", 0.0), state.get("m2", 0.0)
    warmup = int(rule.get("warmup", 30))
    if n < warmup:
        n += 1
        delta = value - mean
        mean += delta / n
        m2 += delta * (value - mean)
        state.update(n=n, mean=mean, m2=m2)
        return None
    sigma = math.sqrt(m2 / (n - 1)) if n > 1 else 0.0
    return mean, sigma if sigma > 0 else 1e-9


def step(rule: dict[str, Any], state: dict[str, Any], value: float, at: float) -> tuple[str | None, str]:
    """Advance the detector by one observation; returns (severity or None, why). Mutates state."""
    kind = rule["kind"]
    if kind == "threshold":
        fired: tuple[int, str, str] | None = None
        for tier in rule["tiers"]:
            crossed = value > tier["above"] if "above" in tier else value < tier["below"]
            if crossed:
                rank = SEVERITIES.index(tier["severity"])
                if fired is None or rank > fired[0]:
                    bound = f"above {tier['above']}" if "above" in tier else f"below {tier['below']}"
                    fired = (rank, tier["severity"], f"{rule['attribute']} = {value:g} is {bound}")
        return (fired[1], fired[2]) if fired else (None, "")
    if kind == "rate":
        last = state.get("last")
        state["last"] = [value, at]
        if last is None or at <= last[1]:
            return None, ""
        seconds = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}[rule.get("per", "second")]
        rate = abs(value - last[0]) / (at - last[1]) * seconds
        if rate > rule["maxRate"]:
            per = rule.get("per", "second")
            return rule.get("severity", "medium"), (f"{rule['attribute']} changed {rate:.3g}/{per}, over the limit "
                                                    f"{rule['maxRate']:g}")
        return None, ""
    learned = _learn(state, rule, value)
    if learned is None:
        return None, ""
    mean, sigma = learned
    if kind == "ewma":
        lam, width = float(rule.get("lambda", 0.2)), float(rule.get("L", 3.0))
        t = state.get("t", 0) + 1
        z = lam * value + (1 - lam) * state.get("z", mean)
        state.update(t=t, z=z)
        limit = width * sigma * math.sqrt(lam / (2 - lam) * (1 - (1 - lam) ** (2 * t)))
        if abs(z - mean) > limit:
            return rule.get("severity", "medium"), (f"EWMA of {rule['attribute']} is {z:.4g}, outside "
                                                    f"{mean:.4g} ± {limit:.3g}")
        return None, ""
    # CUSUM on standardised residuals (Page): k and h in sigma units.
    k, h = float(rule.get("k", 0.5)), float(rule.get("h", 5.0))
    residual = (value - mean) / sigma
    upper = max(0.0, state.get("upper", 0.0) + residual - k)
    lower = max(0.0, state.get("lower", 0.0) - residual - k)
    state.update(upper=upper, lower=lower)
    if upper > h or lower > h:
        direction = "upward" if upper > h else "downward"
        state.update(upper=0.0, lower=0.0)  # restart after an alarm
        return rule.get("severity", "medium"), (f"CUSUM detects a sustained {direction} shift of "
                                                f"{rule['attribute']} from {mean:.4g}")
    return None, ""
