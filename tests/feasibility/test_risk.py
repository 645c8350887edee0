"""Monte Carlo against answers known in closed form, the distributions, correlation and the risk register."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from civicmesh.feasibility import metrics
from civicmesh.feasibility.cashflow import build_streams, economic_flows
from civicmesh.feasibility.evaluate import evaluate
from civicmesh.feasibility.model import Uncertain
from civicmesh.feasibility.risk import draw_multipliers, inverse_cdf, monte_carlo
from tests.feasibility.conftest import small

ANNUITY_8 = sum(1.08 ** -t for t in range(1, 11))
PV_BENEFIT = 240 * ANNUITY_8
BASE_NPV = -1000 + 210 * ANNUITY_8


def test_mean_npv_converges_to_the_known_answer() -> None:
    # NPV is linear in the benefit multiplier, so E[NPV] = NPV at the mean multiplier (0.6 + 1.0 + 1.1) / 3 and
    # its standard deviation is PV(benefit) times the triangular's (known) standard deviation.
    p = small("uncertainty:\n  benefits: {dist: triangular, low: 0.6, mode: 1.0, high: 1.1}\n")
    mc = monte_carlo(p, build_streams(p), draws=200_000)
    a, c, b = 0.6, 1.0, 1.1
    mean = BASE_NPV + PV_BENEFIT * ((a + b + c) / 3 - 1)
    sd = PV_BENEFIT * np.sqrt((a * a + b * b + c * c - a * b - a * c - b * c) / 18)
    standard_error = sd / np.sqrt(200_000)
    assert mc["economic_npv"]["mean"] == pytest.approx(mean, abs=5 * standard_error)
    assert mc["economic_npv"]["sd"] == pytest.approx(sd, rel=0.01)


def test_probability_of_a_loss_matches_the_normal_cdf() -> None:
    # With a normal benefit multiplier m ~ N(0.9, 0.15), NPV < 0 exactly when m < m*, the switching multiplier.
    p = small("uncertainty:\n  electricity saved: {dist: normal, mean: 0.9, sd: 0.15}\n")
    switching = 1 - BASE_NPV / PV_BENEFIT
    expected = stats.norm.cdf(switching, 0.9, 0.15)
    mc = monte_carlo(p, build_streams(p), draws=400_000, seed=11)
    binomial_se = np.sqrt(expected * (1 - expected) / 400_000)
    assert mc["p_economic_npv_negative"] == pytest.approx(expected, abs=5 * binomial_se)
    assert mc["economic_npv"]["p50"] == pytest.approx(BASE_NPV - 0.1 * PV_BENEFIT, rel=0.01)


def test_more_draws_get_closer() -> None:
    p = small("uncertainty:\n  capex: {dist: uniform, low: 0.8, high: 1.4}\n")
    truth = BASE_NPV - 1000 * 0.1
    errors = [abs(monte_carlo(p, build_streams(p), draws=n, seed=5)["economic_npv"]["mean"] - truth)
              for n in (1_000, 400_000)]
    assert errors[1] < errors[0] and errors[1] < 1000 * 0.6 / np.sqrt(12) * 5 / np.sqrt(400_000)


@pytest.mark.parametrize("spec, mean, sd", [
    (Uncertain("x", "pert", {"low": 0.8, "mode": 1.0, "high": 1.6}), (0.8 + 4 + 1.6) / 6, None),
    (Uncertain("x", "lognormal", {"mean": 1.1, "sd": 0.3}), 1.1, 0.3),
    (Uncertain("x", "normal", {"mean": 1.0, "sd": 0.1}), 1.0, 0.1),
    (Uncertain("x", "triangular", {"low": 0.5, "mode": 0.5, "high": 2.0}), 1.0, None),
])
def test_distributions_have_their_stated_moments(spec: Uncertain, mean: float, sd: float | None) -> None:
    u = (np.arange(200_000) + 0.5) / 200_000  # a fine quasi-random grid: moments to ~1e-4
    values = inverse_cdf(spec, u)
    assert values.mean() == pytest.approx(mean, rel=2e-3)
    if sd is not None:
        assert values.std() == pytest.approx(sd, rel=5e-3)
    if spec.dist in ("pert", "triangular"):
        assert values.min() >= spec.params["low"] and values.max() <= spec.params["high"]


def test_correlation_goes_through_the_copula() -> None:
    p = small("uncertainty:\n  capex: {dist: normal, mean: 1, sd: 0.1}\n"
              "  opex: {dist: normal, mean: 1, sd: 0.1}\n  correlation: [[capex, opex, 0.7]]\n")
    m = draw_multipliers(p, 100_000, np.random.default_rng(1))
    assert np.corrcoef(m["capex"], m["opex"])[0, 1] == pytest.approx(0.7, abs=0.01)


def test_an_invalid_correlation_matrix_is_refused() -> None:
    from civicmesh.feasibility.model import ProjectError

    p = small("uncertainty:\n  capex: {dist: normal, mean: 1, sd: 0.1}\n  opex: {dist: normal, mean: 1, sd: 0.1}\n"
              "  electricity saved: {dist: normal, mean: 1, sd: 0.1}\n"
              "  correlation: [[capex, opex, 0.9], [capex, electricity saved, 0.9], [opex, electricity saved, -0.9]]\n")
    with pytest.raises(ProjectError, match="positive definite"):
        monte_carlo(p, build_streams(p), draws=100)


def test_a_certain_risk_moves_every_draw_and_a_rare_one_its_share() -> None:
    certain = small("risks:\n  - {name: tariff cut, category: market, probability: 1.0, "
                    "impact: {driver: benefits, change: -0.5}}\n")
    mc = monte_carlo(certain, build_streams(certain), draws=1000)
    halved = BASE_NPV - 0.5 * PV_BENEFIT
    assert mc["economic_npv"]["p10"] == pytest.approx(halved) and mc["economic_npv"]["p90"] == pytest.approx(halved)
    rare = small("risks:\n  - {name: storm, category: operational, probability: 0.25, "
                 "impact: {driver: electricity saved, change: -0.9}}\n")
    mc = monte_carlo(rare, build_streams(rare), draws=100_000)
    # The loss case (NPV = BASE − 0.9·PV(benefit) < 0) happens with the risk's probability.
    assert mc["p_economic_npv_negative"] == pytest.approx(0.25, abs=5 * np.sqrt(0.25 * 0.75 / 100_000))


def test_the_register_ranks_by_expected_loss_and_levels_it() -> None:
    p = small("risks:\n"
              "  - {name: minor, category: technical, probability: 0.1, impact: {driver: capex, change: 0.05}}\n"
              "  - {name: major, category: policy, probability: 0.5, impact: {driver: benefits, change: -0.5}}\n")
    risks = evaluate(p).risks
    assert [r["name"] for r in risks] == ["major", "minor"]
    major = risks[0]
    assert major["npv_impact"] == pytest.approx(-0.5 * PV_BENEFIT)
    assert major["expected_npv_impact"] == pytest.approx(-0.25 * PV_BENEFIT)
    assert major["level"] == "critical" and major["level_zh"] == "重大"
    assert risks[1]["expected_npv_impact"] == pytest.approx(-0.1 * 50) and risks[1]["level"] == "low"


def test_same_seed_same_answer_and_payback_percentiles() -> None:
    p = small("uncertainty:\n  capex: {dist: pert, low: 0.9, mode: 1.0, high: 1.5}\n")
    s = build_streams(p)
    first, second = monte_carlo(p, s, draws=5000, seed=3), monte_carlo(p, s, draws=5000, seed=3)
    assert first == second
    # Payback = capex multiplier × 1000 / 210 (inside the horizon), so its median follows the PERT median.
    median_multiplier = np.median(draw_multipliers(p, 200_000, np.random.default_rng(0))["capex"])
    assert first["payback"]["p50"] == pytest.approx(median_multiplier * 1000 / 210, rel=0.01)
    assert metrics.npv(0.08, economic_flows(s)) == pytest.approx(BASE_NPV)
