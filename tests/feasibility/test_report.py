"""The city programme end to end: its report in both languages carries the key numbers and works offline."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from civicmesh.feasibility.evaluate import Evaluation, as_json, run
from civicmesh.feasibility.model import load_project
from civicmesh.feasibility.report import money, render_html
from civicmesh.feasibility.swot import evaluate_swot
from tests.feasibility.conftest import EXAMPLES, non_finite


@pytest.fixture(scope="module")
def programme() -> Evaluation:
    return run(load_project(EXAMPLES / "city-programme.yaml"), draws=5000)


class _Balance(HTMLParser):
    """Collects tags and checks that every opened element (except void ones) is closed."""

    VOID = {"meta", "br", "line", "rect", "circle", "polyline", "path"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: set[str] = set()
        self.attributes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes += [v or "" for _, v in attrs]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()


def test_programme_figures(programme: Evaluation) -> None:
    r = programme.results
    assert r["total_investment"] == pytest.approx(12e9)
    assert r["ppp"]["social_capital"] == pytest.approx(4e9)
    assert r["ppp"]["share_of_investment"] == pytest.approx(1 / 3)
    assert r["ppp"]["revenue_share"] == pytest.approx(0.3)
    assert r["collaboration"]["capex_standalone"] == pytest.approx(16.3e9)
    assert 0 < r["collaboration"]["saving_share"] < 1
    assert r["economic"]["npv"] > 0 and r["economic"]["bcr"] > 1
    assert programme.monte_carlo is not None and programme.input_output is not None and programme.swot is not None
    assert non_finite(as_json(programme)) == []


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_report_carries_the_key_numbers(programme: Evaluation, lang: str) -> None:
    page = render_html(programme, lang)
    r = programme.results
    m = lambda v: money(v, "CNY", lang)  # noqa: E731
    for figure in (r["economic"]["npv"], r["financial"]["npv"], r["collaboration"]["saving"], r["ppp"]["npv"],
                   12e9, 4e9):
        assert m(figure) in page, f"{m(figure)} missing from the {lang} report"
    assert f"{r['economic']['irr']:.2%}" in page and f"{r['financial']['irr']:.2%}" in page
    assert f"{r['economic']['bcr']:.2f}" in page
    assert f"{r['financial']['payback']:.2f}" in page
    assert f"{r['collaboration']['saving_share']:.1%}" in page
    mc = programme.monte_carlo
    assert mc is not None and f"{mc['p_economic_npv_negative']:.1%}" in page
    assert m(mc["economic_npv"]["p10"]) in page and m(mc["economic_npv"]["p90"]) in page
    io = programme.input_output
    assert io is not None and f"{io['impact']['drive_ratio_type_i']:.2f}" in page
    assert f"{io['impact']['drive_ratio_type_ii']:.2f}" in page
    assert programme.swot is not None and programme.swot["quadrant"] in page
    for year in (2026, 2046):
        assert f"<td>{year}</td>" in page


def test_report_language_and_labels(programme: Evaluation) -> None:
    en, zh = render_html(programme, "en"), render_html(programme, "zh")
    assert "<html lang='en'>" in en and "<html lang='zh-CN'>" in zh
    for words in ("Economic NPV", "Financial IRR", "Type II", "Switching values", "Risk register"):
        assert words in en
    for words in ("经济净现值", "财务内部收益率", "II 型", "临界点", "风险登记表", "亿元", "结论"):
        assert words in zh
    assert "Economic NPV" not in zh


def test_report_is_self_contained_and_well_formed(programme: Evaluation) -> None:
    page = render_html(programme, "en")
    parser = _Balance()
    parser.feed(page)
    assert parser.stack == [], f"unclosed elements: {parser.stack}"
    assert "script" not in parser.tags and "img" not in parser.tags and "link" not in parser.tags
    assert parser.tags >= {"svg", "table", "rect"}
    assert page.count("<svg") >= 5  # cash flows, tornado, NPV distribution, multipliers, SWOT
    assert not any(a.startswith(("http:", "https:", "//")) for a in parser.attributes)
    assert not re.search(r"url\(|@import", page)
    assert "NaN" not in page and "nan" not in re.sub(r"<[^>]+>", "", page).split()


def test_escaping_of_names_from_the_file() -> None:
    text = (EXAMPLES / "small-project.yaml").read_text().replace("streetlight retrofit", "<b>lamps</b> & co")
    page = render_html(run(load_project("inline", text=text)), "en")
    assert "&lt;b&gt;lamps&lt;/b&gt; &amp; co" in page and "<b>lamps</b>" not in page


def test_swot_quadrant_by_hand() -> None:
    from civicmesh.feasibility.model import SwotItem

    swot = {"strengths": [SwotItem("s", 1.0, 4)], "weaknesses": [], "opportunities": [SwotItem("o", 0.4, 2)],
            "threats": [SwotItem("t", 0.6, 3)]}
    result = evaluate_swot(swot)
    assert result is not None
    assert result["position"] == pytest.approx([4.0, 0.8 - 1.8])
    assert result["quadrant"] == "ST" and "多元化" in result["strategy_zh"]
    assert result["efe"] == pytest.approx(2.6)
