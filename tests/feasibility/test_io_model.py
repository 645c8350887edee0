"""Input–output: a textbook two-sector case, a one-sector closed model solved by hand, the shipped tables, and
the pymrio text format checked against pymrio itself."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from civicmesh.feasibility import io_model
from tests.feasibility.conftest import EXAMPLES

TWO_SECTOR = ",a,b,household,final_demand,output\na,150,500,0,350,1000\nb,200,100,0,1700,2000\n" \
             "wages,300,500,,,\nemployment,10,20,,,\nvalue_added,650,1400,,,\n"


def test_two_sector_textbook_example(tmp_path: Path) -> None:
    # Miller & Blair's two-sector example: Z = [[150, 500], [200, 100]], x = [1000, 2000].
    path = tmp_path / "io.csv"
    path.write_text(TWO_SECTOR)
    t = io_model.load_csv(path)
    assert t.A == pytest.approx(np.array([[0.15, 0.25], [0.2, 0.05]]), abs=1e-15)
    det = 0.85 * 0.95 - 0.25 * 0.2
    assert t.L == pytest.approx(np.array([[0.95, 0.25], [0.2, 0.85]]) / det, abs=1e-12)
    m = io_model.multipliers(t)
    assert m["type_i_output"] == pytest.approx([1.15 / det, 1.10 / det], abs=1e-12)
    assert "type_ii_output" not in m  # no household consumption, so no closed model
    # Employment per unit of final demand: (0.01, 0.01) · L; value added per unit: all of it (VA + inputs = x).
    assert m["type_i_employment"] == pytest.approx([0.01 * 1.15 / det, 0.01 * 1.10 / det])
    assert m["type_i_value_added"] == pytest.approx([1.0, 1.0])
    effect = io_model.impact(t, {"a": 100.0})
    assert effect["output_type_i"] == pytest.approx(115 / det)
    assert effect["by_sector_type_i"]["b"] == pytest.approx(100 * 0.2 / det)
    assert effect["drive_ratio_type_i"] == pytest.approx(1.15 / det)
    assert effect["value_added_type_i"] == pytest.approx(100)  # a whole economy's value added equals final demand
    assert effect["shock_sectors"] == ["a"]


def test_one_sector_closed_model_by_hand() -> None:
    # a = 0.2, wages 0.3 per unit of output, households spend c = 0.5 of wages on the sector:
    # Type I = 1/(1 − a) = 1.25; Type II = 1/((1 − a) − c·w) = 1/0.65.
    t = io_model.from_mapping({"sectors": ["s"], "Z": [[200]], "output": [1000], "household": [150],
                               "wages": [300]})
    m = io_model.multipliers(t)
    assert m["type_i_output"] == pytest.approx([1.25])
    assert m["type_ii_output"] == pytest.approx([1 / 0.65])
    assert m["type_i_income"] == pytest.approx([0.3 * 1.25])
    assert m["type_ii_income"] == pytest.approx([0.3 / 0.65])
    assert m["type_i_income_ratio"] == pytest.approx([1.25])
    assert m["type_ii_output"][0] > m["type_i_output"][0]


def test_sample_table_is_balanced_and_type_ii_exceeds_type_i() -> None:
    t = io_model.load_csv(EXAMPLES / "sample-io-table.csv")
    rows = dict(zip(t.sectors, t.x, strict=True))
    assert rows["construction"] == 3000
    # Each column's inputs plus its value added make its output.
    assert t.Z.sum(axis=0) + t.value_added == pytest.approx(t.x)
    m = io_model.multipliers(t)
    assert all(ii > i > 1 for i, ii in zip(m["type_i_output"], m["type_ii_output"], strict=True))
    effect = io_model.impact(t, {"construction": 1e8}, unit=1e8)
    assert effect["drive_ratio_type_i"] == pytest.approx(m["type_i_output"][t.sectors.index("construction")])
    assert effect["output_type_i"] == pytest.approx(1e8 * effect["drive_ratio_type_i"])


@pytest.mark.parametrize("body, words", [
    (",a,household,final_demand,output\na,50,0,50,0\n", "positive total output"),
    (",a,household,final_demand,output\na,150,0,-50,100\n", "whole output"),
    (",a,b,output\na,1,2,3\n", "'household' column"),
    (",a,b,household,final_demand,output\na,1,2,0,1,10\n", "no row for sector(s) b"),
    (",a,household,final_demand,output\na,x,0,1,10\n", "not a number"),
])
def test_bad_tables_are_refused_with_the_reason(tmp_path: Path, body: str, words: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(io_model.TableError, match=re.escape(words)):
        io_model.load_csv(path)


def test_a_shock_on_an_unknown_sector_names_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "io.csv"
    path.write_text(TWO_SECTOR)
    with pytest.raises(io_model.TableError, match="does not have: c; the table has a, b"):
        io_model.impact(io_model.load_csv(path), {"c": 1.0})


FACTORS = {"wages": {"extension": "factor_inputs", "row": "Compensation of employees"},
           "value_added": {"extension": "factor_inputs", "row": "Value added"},
           "employment": {"extension": "factor_inputs", "row": "Employment"}}


def test_shipped_pymrio_sample_matches_pymrio() -> None:
    pymrio = pytest.importorskip("pymrio", reason="pymrio is the cross-check for its own file format")
    folder = EXAMPLES / "pymrio-sample"
    reference = pymrio.load_all(folder)
    reference.calc_all()
    t = io_model.load_pymrio(folder, FACTORS)
    assert t.sectors[:2] == ["city/industry", "city/construction"]
    assert t.L == pytest.approx(reference.L.to_numpy(), abs=1e-12)
    assert t.x == pytest.approx(reference.x.to_numpy().ravel())
    assert t.Z.sum(axis=0) + t.value_added == pytest.approx(t.x)
    m = io_model.multipliers(t)
    assert m["type_i_output"] == pytest.approx(reference.L.to_numpy().sum(axis=0))
    # pymrio's M (multipliers of an extension) is S·L, the Type I factor per unit of final demand.
    pymrio_m = reference.factor_inputs.M.to_numpy()
    assert m["type_i_employment"] == pytest.approx(pymrio_m[2])
    assert m["type_i_value_added"] == pytest.approx(pymrio_m[1])


def test_pymrio_test_system_round_trip(tmp_path: Path) -> None:
    # pymrio's own 6-region test system, written by pymrio, read by civicmesh without pymrio.
    pymrio = pytest.importorskip("pymrio", reason="pymrio is the cross-check for its own file format")
    system = pymrio.load_test()
    system.calc_all()
    system.save_all(tmp_path / "mrio")
    t = io_model.load_pymrio(tmp_path / "mrio", {"value_added": {"extension": "factor_inputs", "row": "Value Added"}})
    assert len(t.sectors) == 48
    assert t.L == pytest.approx(system.L.to_numpy(), rel=1e-9, abs=1e-12)
    aggregated = pymrio.load_test()
    aggregated.aggregate(region_agg=["all"] * 6)
    aggregated.calc_all()
    single = io_model.load_pymrio(tmp_path / "mrio", {"aggregate_regions": True})
    assert single.sectors == list(aggregated.get_sectors())
    assert single.L == pytest.approx(aggregated.L.to_numpy(), rel=1e-9, abs=1e-12)


def test_pymrio_folder_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(io_model.TableError, match="not a pymrio folder"):
        io_model.load_pymrio(tmp_path)
    with pytest.raises(io_model.TableError, match="has no row 'Wages'"):
        io_model.load_pymrio(EXAMPLES / "pymrio-sample", {"wages": {"extension": "factor_inputs", "row": "Wages"}})
