"""The self-contained HTML report (inline SVG charts, no scripts, no downloads), in Chinese or English."""

from __future__ import annotations

import html
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from civicmesh.feasibility.model import Evaluation

TEXT = {
    "en": {"title": "Feasibility report", "summary": "Summary", "indicators": "Indicators", "value": "Value",
           "fnpv": "Financial NPV", "firr": "Financial IRR", "enpv": "Economic NPV", "eirr": "Economic IRR",
           "ebcr": "Economic benefit–cost ratio", "fbcr": "Financial benefit–cost ratio",
           "payback": "Payback (years from construction start)", "dpayback": "Discounted payback (years)",
           "saving": "Saving of building together vs. each department alone (PV)", "investor": "Social capital (PPP)",
           "flows": "Economic net cash flow by year", "tornado": "Sensitivity of economic NPV",
           "risk": "Risk: Monte Carlo", "pneg": "Probability that economic NPV < 0", "io": "Input–output effects",
           "swot": "SWOT", "warnings": "Warnings", "conclusion": "Conclusion", "never": "not within the horizon",
           "drive": "Industry drive (output per unit of spending)", "break_even": "Switching values",
           "at": "at", "draws": "draws", "none": "none"},
    "zh": {"title": "可行性研究报告", "summary": "摘要", "indicators": "主要指标", "value": "数值",
           "fnpv": "财务净现值", "firr": "财务内部收益率", "enpv": "经济净现值", "eirr": "经济内部收益率",
           "ebcr": "经济效益费用比", "fbcr": "财务效益费用比", "payback": "投资回收期（自建设期初，年）",
           "dpayback": "动态投资回收期（年）", "saving": "协同建设相对各部门分建的节约（现值）",
           "investor": "社会资本（PPP）", "flows": "逐年经济净现金流量", "tornado": "经济净现值敏感性分析",
           "risk": "风险分析：蒙特卡洛模拟", "pneg": "经济净现值小于零的概率", "io": "投入产出带动效应",
           "swot": "SWOT 分析", "warnings": "提示", "conclusion": "结论", "never": "计算期内无法回收",
           "drive": "产业带动系数（单位投入带动的总产出）", "break_even": "临界点（使经济净现值为零的变化幅度）",
           "at": "折现率", "draws": "次抽样", "none": "无"},
}


def _money(value: float | None, currency: str) -> str:
    if value is None:
        return "—"
    for size, unit in ((1e8, "亿"), (1e4, "万")):
        if abs(value) >= size and currency == "CNY":
            return f"{value / size:,.2f} {unit}{currency}"
    return f"{value:,.0f} {currency}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def _bars(values: list[float], labels: list[str], width: int = 720, height: int = 220) -> str:
    top = max(max(values, default=0), 0) or 1
    bottom = min(min(values, default=0), 0)
    span = (top - bottom) or 1
    bar = width / max(len(values), 1)
    zero = height * top / span
    parts = [f'<svg viewBox="0 0 {width} {height + 20}" class="chart" role="img">',
             f'<line x1="0" y1="{zero:.1f}" x2="{width}" y2="{zero:.1f}" stroke="#888"/>']
    for i, v in enumerate(values):
        h = abs(v) / span * height
        y = zero - h if v >= 0 else zero
        colour = "#2a7" if v >= 0 else "#c44"
        parts.append(f'<rect x="{i * bar + 1:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" '
                     f'fill="{colour}"><title>{html.escape(labels[i])}: {v:,.0f}</title></rect>')
        if len(values) <= 40 and i % max(1, len(values) // 10) == 0:
            parts.append(f'<text x="{i * bar:.1f}" y="{height + 15}" font-size="10">{html.escape(labels[i])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _tornado(rows: list[dict[str, Any]], base: float, width: int = 720) -> str:
    lo = min([r["low"] for r in rows] + [r["high"] for r in rows] + [base])
    hi = max([r["low"] for r in rows] + [r["high"] for r in rows] + [base])
    span = (hi - lo) or 1
    scale = (width - 200) / span
    row_h = 22
    parts = [f'<svg viewBox="0 0 {width} {row_h * len(rows) + 10}" class="chart" role="img">']
    base_x = 200 + (base - lo) * scale
    for i, r in enumerate(rows):
        a, b = sorted((r["low"], r["high"]))
        parts.append(f'<text x="0" y="{i * row_h + 15}" font-size="11">{html.escape(r["driver"])}</text>')
        parts.append(f'<rect x="{200 + (a - lo) * scale:.1f}" y="{i * row_h + 3}" width="{max((b - a) * scale, 1):.1f}"'
                     f' height="{row_h - 6}" fill="#58a"><title>{a:,.0f} … {b:,.0f}</title></rect>')
    parts.append(f'<line x1="{base_x:.1f}" y1="0" x2="{base_x:.1f}" y2="{row_h * len(rows) + 5}" stroke="#000"/>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(e: Evaluation, lang: str = "en") -> str:
    if lang not in TEXT:
        raise ValueError(f"language {lang!r} is not zh or en")
    t = TEXT[lang]
    p = e.project
    cur = p.currency
    fin, eco, col = e.results["financial"], e.results["economic"], e.results["collaboration"]
    rows = [
        (t["fnpv"] + f" ({t['at']} {p.financial_rate:.0%})", _money(fin["npv"], cur)),
        (t["firr"], _pct(fin["irr"]) if fin["irr"] is not None else f"MIRR {_pct(fin.get('mirr'))}"),
        (t["fbcr"], f"{fin['bcr']:.2f}"),
        (t["enpv"] + f" ({t['at']} {p.social_rate:.0%})", _money(eco["npv"], cur)),
        (t["eirr"], _pct(eco["irr"]) if eco["irr"] is not None else f"MIRR {_pct(eco.get('mirr'))}"),
        (t["ebcr"], f"{eco['bcr']:.2f}" if eco["bcr"] is not None else "—"),
        (t["payback"], f"{fin['payback']:.1f}" if fin["payback"] is not None else t["never"]),
        (t["dpayback"], f"{fin['discounted_payback']:.1f}" if fin["discounted_payback"] is not None else t["never"]),
        (t["saving"], f"{_money(col['saving'], cur)} ({col['saving_share']:.1%})"),
    ]
    ppp = e.results.get("ppp")
    if ppp:
        rows.append((t["investor"], f"NPV {_money(ppp['npv'], cur)}, IRR {_pct(ppp['irr'])}, "
                                    f"{ppp['share_of_investment']:.0%} / {ppp['revenue_share']:.0%}"))
    table = "".join(f"<tr><td>{html.escape(k)}</td><td class='num'>{html.escape(v)}</td></tr>" for k, v in rows)
    sections = [f"<h2>{t['indicators']}</h2><table><tr><th></th><th>{t['value']}</th></tr>{table}</table>",
                f"<h2>{t['flows']}</h2>" + _bars(e.economic_flows, [str(y) for y in e.years]),
                f"<h2>{t['tornado']} (±{p.sensitivity_range:.0%})</h2>" + _tornado(e.tornado, eco["npv"])]
    be = "".join(f"<li>{html.escape(k)}: {'—' if v is None else f'{v:+.1%}'}</li>" for k, v in e.break_even.items())
    sections.append(f"<h3>{t['break_even']}</h3><ul>{be}</ul>")
    mc = e.monte_carlo
    if mc:
        npv = mc["economic_npv"]
        hist = mc["histogram"]
        centres = [(a + b) / 2 for a, b in zip(hist["edges"][:-1], hist["edges"][1:], strict=True)]
        sections.append(
            f"<h2>{t['risk']} ({mc['draws']:,} {t['draws']})</h2><p>{t['pneg']}: "
            f"<b>{mc['p_economic_npv_negative']:.1%}</b>; P10 / P50 / P90: {_money(npv['p10'], cur)} / "
            f"{_money(npv['p50'], cur)} / {_money(npv['p90'], cur)}</p>"
            + _bars([float(c) for c in hist["counts"]], [f"{c:,.0f}" for c in centres], height=160))
    io = e.input_output
    if io:
        imp = io["impact"]
        drive = f"Type I {imp['drive_ratio_type_i']:.2f}"
        if imp.get("drive_ratio_type_ii") is not None:
            drive += f", Type II {imp['drive_ratio_type_ii']:.2f}"
        mult = io["multipliers"]
        sections.append(f"<h2>{t['io']}</h2><p>{t['drive']}: <b>{drive}</b></p>"
                        + _bars(mult["type_i_output"], mult["sectors"], height=140))
    if e.swot:
        swot = e.swot
        sections.append(f"<h2>{t['swot']}</h2><p>{swot['quadrant']}: {html.escape(swot['strategy_' + lang])} "
                        f"(IFE {swot['ife']:.2f}, EFE {swot['efe']:.2f})</p>")
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in e.warnings) or f"<li>{t['none']}</li>"
    sections.append(f"<h2>{t['warnings']}</h2><ul>{warnings}</ul>")
    sections.insert(0, f"<h2>{t['conclusion']}</h2><p>{html.escape(conclusion(e, lang))}</p>")
    style = ("body{font-family:sans-serif;max-width:820px;margin:2em auto;color:#222}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px}.num{text-align:right}.chart{width:100%;height:auto}")
    return (f"<!doctype html><html lang='{lang}'><head><meta charset='utf-8'><title>{html.escape(p.name)} — "
            f"{t['title']}</title><style>{style}</style></head><body><h1>{html.escape(p.name)}</h1>"
            f"<p>{t['title']}</p>{''.join(sections)}</body></html>")


def conclusion(e: Evaluation, lang: str) -> str:
    eco, fin = e.results["economic"], e.results["financial"]
    ok = eco["npv"] >= 0
    mc = e.monte_carlo
    risk = f" P(ENPV<0) = {mc['p_economic_npv_negative']:.0%}." if mc else ""
    if lang == "zh":
        verdict = "经济上可行" if ok else "经济上不可行"
        money = "财务上可自负盈亏" if fin["npv"] >= 0 else "财务上需要财政持续支持"
        enpv = _money(eco["npv"], e.project.currency)
        return f"按社会折现率{e.project.social_rate:.0%}计算，项目{verdict}（经济净现值{enpv}），{money}。{risk}"
    verdict = "is economically worthwhile" if ok else "is not economically worthwhile"
    money = "pays for itself financially" if fin["npv"] >= 0 else "needs continuing public funding"
    return (f"At a social discount rate of {e.project.social_rate:.0%} the project {verdict} (economic NPV "
            f"{_money(eco['npv'], e.project.currency)}) and {money}.{risk}")


def write_pdf(html_text: str, target: Path) -> None:
    """Print the report with the machine's headless Chromium; say so clearly when there is none."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise RuntimeError("PDF output needs Chromium on this machine (Debian: apt-get install chromium); "
                           "the HTML report was written")
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(html_text, encoding="utf-8")
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        f"--print-to-pdf={target}", page.as_uri()], check=True, capture_output=True, timeout=120)
