"""Detectors on synthetic series with known behaviour: tiers, rate limits, EWMA and CUSUM shift detection."""

from __future__ import annotations

import random

import pytest

from civicmesh.alerts.detectors import RuleError, check_rule, step

BASE = {"id": "r", "entityType": "T", "attribute": "x"}


def run(rule: dict, values: list[float], dt: float = 60.0) -> list[str | None]:
    state: dict = {}
    return [step(rule, state, v, i * dt)[0] for i, v in enumerate(values)]


def test_threshold_tiers_pick_the_highest_crossed() -> None:
    rule = {**BASE, "kind": "threshold", "tiers": [{"severity": "medium", "above": 20},
                                                    {"severity": "critical", "above": 30},
                                                    {"severity": "low", "below": 2}]}
    assert run(rule, [10, 21, 31, 1]) == [None, "medium", "critical", "low"]


def test_rate_of_change_per_minute() -> None:
    rule = {**BASE, "kind": "rate", "maxRate": 2.0, "per": "minute", "severity": "high"}
    assert run(rule, [10, 11, 12.5, 20], dt=60) == [None, None, None, "high"]


def in_control_then_shift(shift_at: int, size: float, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [10 + rng.gauss(0, 1) + (size if i >= shift_at else 0) for i in range(300)]


@pytest.mark.parametrize("kind, extra", [("ewma", {"lambda": 0.2, "L": 3.0}), ("cusum", {"k": 0.5, "h": 5})])
def test_shift_detectors_catch_a_two_sigma_shift_quickly_and_stay_quiet_before(kind: str, extra: dict) -> None:
    rule = {**BASE, "kind": kind, "mean": 10.0, "sigma": 1.0, "severity": "high", **extra}
    series = in_control_then_shift(200, 2.0)
    fired = run(rule, series)
    assert not any(fired[:200]), f"{kind}: false alarm before the shift"
    first = next(i for i, s in enumerate(fired) if s)
    assert 200 <= first < 215, f"{kind}: detection delay {first - 200}"


def test_detectors_learn_mean_and_sigma_during_warmup() -> None:
    rule = {**BASE, "kind": "cusum", "warmup": 50, "severity": "medium"}
    fired = run(rule, in_control_then_shift(150, 3.0, seed=3))
    assert not any(fired[:150]) and any(fired[150:170])


@pytest.mark.parametrize("bad, words", [
    ({"kind": "threshold"}, "tiers"),
    ({"kind": "threshold", "tiers": [{"severity": "apocalyptic", "above": 1}]}, "severity"),
    ({"kind": "threshold", "tiers": [{"severity": "low", "above": 1, "below": 0}]}, "exactly one"),
    ({"kind": "rate"}, "maxRate"),
    ({"kind": "ewma", "lambda": 2}, "lambda"),
    ({"kind": "magic"}, "kind"),
])
def test_bad_rules_say_what_is_wrong(bad: dict, words: str) -> None:
    with pytest.raises(RuleError, match=words):
        check_rule({**BASE, **bad})
