"""NPV, IRR, MIRR and payback against numpy-financial and hand-computed textbook cases."""

from __future__ import annotations

import numpy as np
import pytest

from civicmesh.feasibility import metrics

npf = pytest.importorskip("numpy_financial", reason="numpy-financial is the cross-check (pip install numpy-financial)")


@pytest.mark.parametrize("rate, values", [
    (0.08, [-1000, 300, 300, 300, 300, 300]),
    (0.05, [-500, 100, 200, 300]),
    (0.12, [-2000, 0, 0, 800, 900, 1000, 1100]),
    (0.10, [-100, -50, 0, 60, 60, 60, 60, 0]),
])
def test_npv_and_irr_match_numpy_financial(rate: float, values: list[float]) -> None:
    assert metrics.npv(rate, values) == pytest.approx(npf.npv(rate, values), rel=1e-12)
    assert metrics.irr(values) == pytest.approx(npf.irr(values), rel=1e-9)


def test_random_conventional_projects_match_numpy_financial() -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        values = np.concatenate([-rng.uniform(100, 1000, 2), rng.uniform(10, 400, int(rng.integers(3, 25)))])
        expected = npf.irr(values)
        assert metrics.irr(values) == pytest.approx(expected, rel=1e-8, abs=1e-10)
        assert metrics.npv(0.07, values) == pytest.approx(npf.npv(0.07, values), rel=1e-12)


def test_year_zero_is_not_discounted_unlike_excel() -> None:
    # -100 now and 110 in a year at 10 %: exactly zero. Excel's NPV(10%, -100, 110) would give -100/1.1 + 110/1.21.
    assert metrics.npv(0.10, [-100, 110]) == pytest.approx(0.0, abs=1e-12)
    excel_style = -100 / 1.1 + 110 / 1.21
    assert metrics.npv(0.10, [0, -100, 110]) == pytest.approx(excel_style)
    assert metrics.irr([-100, 110]) == pytest.approx(0.10, abs=1e-14)


def test_textbook_annuity_npv_by_hand() -> None:
    # 5 years of 300 at 8 %: 300 · (1 − 1.08⁻⁵)/0.08 = 1197.81; minus 1000.
    assert metrics.npv(0.08, [-1000] + [300] * 5) == pytest.approx(300 * (1 - 1.08 ** -5) / 0.08 - 1000)
    assert metrics.annuity(1000, 0.08, 5) == pytest.approx(-npf.pmt(0.08, 5, 1000))
    assert metrics.annuity(1000, 0.0, 4) == 250


def test_no_irr_when_the_flows_never_change_sign() -> None:
    assert metrics.irr_all([100, 50, 20]) == [] and metrics.irr([100, 50, 20]) is None
    assert metrics.irr_all([-100, -50, 0]) == []
    assert metrics.irr_all([0, 0, 0]) == []


def test_no_irr_when_npv_never_reaches_zero() -> None:
    # +100, -300, +250: one sign change pair but NPV(x) = 100 − 300x + 250x² > 0 for every x (discriminant < 0).
    assert metrics.sign_changes([100, -300, 250]) == 2
    assert metrics.irr_all([100, -300, 250]) == []


def test_multiple_irrs_are_all_found_and_mirr_is_offered() -> None:
    # -100, +230, -132 has IRRs of 10 % and 20 %: multiply NPV by -(1+r)² to get 100(1+r)² − 230(1+r) + 132 = 0.
    assert metrics.irr_all([-100, 230, -132]) == pytest.approx([0.10, 0.20], abs=1e-12)
    assert metrics.irr([-100, 230, -132]) is None
    assert metrics.mirr([-100, 230, -132], 0.1, 0.12) == pytest.approx(npf.mirr([-100, 230, -132], 0.1, 0.12))
    # The classic pump problem (Lorie–Savage): -1600, +10000, -10000 has IRRs of 25 % and 400 %.
    assert metrics.irr_all([-1600, 10000, -10000]) == pytest.approx([0.25, 4.0])


def test_leading_and_trailing_zero_years_do_not_change_the_irr() -> None:
    assert metrics.irr([0, 0, -1000, 0, 600, 600, 0]) == pytest.approx(npf.irr([0, 0, -1000, 0, 600, 600, 0]))


def test_static_payback_is_interpolated_from_construction_start() -> None:
    # Cumulative: -1000, -700, -400, -100, +200: pays back a third into year 4.
    assert metrics.payback([-1000, 300, 300, 300, 300]) == pytest.approx(3 + 100 / 300)
    assert metrics.payback([-1000, 100, 100]) is None
    assert metrics.payback([50, 10]) == 0.0


def test_payback_counts_a_later_dip_below_zero() -> None:
    # Recovered in year 2 (cum 0 → +100), a reinvestment in year 3 takes it to -200, recovered again in year 4.
    assert metrics.payback([-500, 300, 300, -300, 400]) == pytest.approx(3 + 200 / 400)


def test_discounted_payback_by_hand() -> None:
    pv = [-1000, 600 / 1.1, 600 / 1.21]
    assert metrics.payback([-1000, 600, 600], 0.10) == pytest.approx(1 + (1000 - pv[1]) / pv[2])
    # Discounting can make a project that pays back statically never pay back.
    assert metrics.payback([-1000, 520, 520], 0.10) is None and metrics.payback([-1000, 520, 520]) is not None


def test_vectorized_payback_matches_the_single_flow_version() -> None:
    rng = np.random.default_rng(3)
    rows = np.concatenate([-rng.uniform(500, 1500, (200, 2)), rng.uniform(-50, 300, (200, 12))], axis=1)
    vector = metrics.payback_years(rows)
    for row, value in zip(rows, vector, strict=True):
        single = metrics.payback(row)
        assert (single is None and np.isnan(value)) or single == pytest.approx(value)


def test_rates_at_or_below_minus_100_percent_are_refused() -> None:
    with pytest.raises(ValueError, match="not above -100%"):
        metrics.npv(-1.0, [1, 2])
