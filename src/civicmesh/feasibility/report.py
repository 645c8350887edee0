"""The self-contained HTML report, in Chinese or English: inline CSS and SVG, no scripts, nothing fetched, so it
opens offline and prints. `write_pdf` prints it with the machine's Chromium when there is one."""

from __future__ import annotations

import html
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from civicmesh.feasibility import svg
from civicmesh.feasibility.evaluate import Evaluation

LANGS = ("en", "zh")

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Economic feasibility report", "conclusion": "Conclusion", "indicators": "Key indicators",
        "indicator": "Indicator", "value": "Value", "criterion": "Criterion", "met": "Met",
        "yes": "yes", "no": "no", "fnpv": "Financial NPV", "firr": "Financial IRR", "fbcr": "Financial B/C ratio",
        "enpv": "Economic NPV", "eirr": "Economic IRR", "ebcr": "Economic B/C ratio",
        "payback": "Payback period (years from construction start)", "dpayback": "Discounted payback (years)",
        "epayback": "Economic payback (years)", "at": "at", "none_irr": "none", "several": "several; MIRR",
        "never": "not within the study period", "assumptions": "Assumptions", "study": "Study period",
        "years_word": "years", "construction": "construction", "rates": "Discount rates",
        "financial_rate": "financial benchmark", "social_rate": "social", "inflation": "Inflation",
        "escalation": "Real escalation (opex / benefits)", "tax": "Income tax rate", "residual": "Residual value",
        "investment": "Investment", "item": "Item", "collab": "Building together", "alone": "Each department alone",
        "schedule": "Schedule by year", "factor": "Shadow-price factor", "opex": "Operating costs per year",
        "from": "from", "benefits": "Benefit streams", "basis": "Basis", "cash": "Cash to the project",
        "financing": "Financing", "source": "Source", "amount": "Amount", "share": "Share",
        "government_budget": "Government budget", "special_funds": "Special funds",
        "social_capital": "Social capital (PPP)", "loans": "Loans",
        "collaboration": "Building together versus each department alone",
        "pv_costs": "PV of costs (social rate)", "capex_total": "Investment", "saving": "Saving",
        "fnpv_short": "Financial NPV", "ppp": "Social capital under the PPP",
        "ppp_terms": "share of the investment {inv}, of the equity {eq}; revenue share {rev}",
        "investor_npv": "Investors' NPV",
        "vgf": "Viability-gap payments to investors (PV, financial rate)",
        "investor_irr": "Investors' IRR", "investor_payback": "Investors' payback (years)",
        "loan": "Loan", "loan_terms": "{amount} at {rate} over {years} years ({method}) from {year}",
        "equal_principal": "equal principal", "annuity": "annuity", "dscr": "Debt service coverage (min / mean)",
        "icr": "Interest coverage (min)", "equity_npv": "Equity NPV", "equity_irr": "Equity IRR",
        "interest_total": "Total interest", "interest_cap": "of which capitalized during construction",
        "flows": "Cash flows", "flows_fin": "Financial net cash flow by year (current prices) and its cumulative",
        "cumulative": "cumulative", "year": "Year", "capex": "Investment", "opex_col": "Operating cost",
        "inflow": "Cash inflow", "tax_col": "Tax", "residual_col": "Residual", "fin_net": "Financial net",
        "fin_cum": "Cumulative", "eco_net": "Economic net", "eco_cum": "Cum. discounted (economic)",
        "investor_col": "Investors' net", "equity_col": "Equity net",
        "sensitivity": "Sensitivity of economic NPV",
        "sens_intro": "Each driver moved by ±{x} on its own; bars run from the base NPV ({base}).",
        "low": "−{x}", "high": "+{x}", "driver": "Driver", "coef": "Sensitivity coefficient",
        "switching": "Switching values (the change that brings NPV to zero)", "change": "Change",
        "amount_at": "Amount at NPV = 0",
        "base_amount": "Base amount", "economic": "Economic", "financial": "Financial",
        "none_in_range": "none within −100 % … +1000 %",
        "risk": "Risk", "register": "Risk register", "category": "Category", "probability": "Probability",
        "impact": "Change in ENPV if it happens", "expected": "Expected ENPV effect", "level": "Level",
        "levels_note": "Levels by expected loss of economic NPV as a share of the PV of the investment: "
                       "below 1 % low, below 3 % medium, below 10 % high, otherwise critical "
                       "(this evaluator's convention).",
        "mc": "Monte Carlo simulation", "distribution": "Distribution (multiplier of the base amount)",
        "parameters": "Parameters", "correlation": "correlation", "draws": "draws",
        "p_neg": "Probability that economic NPV < 0",
        "p_neg_fin": "Probability that financial NPV < 0", "mean": "mean", "never_share": "Draws never paying back",
        "payback_dist": "Financial payback (P10 / P50 / P90)", "hist": "Distribution of economic NPV",
        "policy": "policy", "technical": "technical", "market": "market", "operational": "operational",
        "io": "Input–output effects", "io_source": "Table", "multipliers": "Output multipliers by sector",
        "sector": "Sector", "type_i": "Type I", "type_ii": "Type II", "spending": "Spending (final-demand shock)",
        "output_effect": "Total output", "va_effect": "Value added", "income_effect": "Labour income",
        "jobs_effect": "Jobs", "drive": "Industry drive ratio (gross output per unit of spending)",
        "drive_note": "Type I counts the direct and indirect purchases along the supply chain; Type II adds the "
                      "spending of the wages they pay (induced). Gross output counts intermediate goods at every "
                      "stage, so it is larger than the value added; the shock goes to: {sectors}.",
        "swot": "SWOT analysis", "weight": "Weight", "rating": "Rating", "score": "Score",
        "strengths": "Strengths", "weaknesses": "Weaknesses", "opportunities": "Opportunities",
        "threats": "Threats", "position": "Position (S − W, O − T)", "strategy": "Strategy",
        "warnings": "Warnings", "none": "none", "method": "Method and conventions",
        "method_text": "Year 0 is the first construction year; each year's flows are dated at the year index and "
                       "NPV leaves year 0 undiscounted (the numpy-financial convention; Excel's NPV() would "
                       "discount it by one year). Financial analysis: cash to the project in current prices "
                       "(inflated), after income tax on benefits − operating costs − straight-line depreciation "
                       "(no loss carry-forward). Economic analysis: every benefit, constant prices, costs at shadow "
                       "prices, taxes left out as transfers, at the social discount rate (8 %, or 6 % for "
                       "public-welfare projects, per 建设项目经济评价方法与参数, 3rd ed.). IRR: every real root of "
                       "the NPV polynomial; none or several are reported as such, with the MIRR. Payback: the year "
                       "after which the cumulative flow stays non-negative, interpolated within the year, counted "
                       "from the start of construction. B/C: PV(benefits and residual) / PV(costs).",
        "ok": "worthwhile", "generated": "Every figure is computed from the project file shown under "
                                         "Assumptions by civicmesh's feasibility evaluator.",
        "SO": "SO aggressive", "WO": "WO turnaround", "ST": "ST diversify", "WT": "WT defensive",
    },
    "zh": {
        "title": "经济可行性研究报告", "conclusion": "结论", "indicators": "主要评价指标", "indicator": "指标",
        "value": "数值", "criterion": "判据", "met": "是否满足", "yes": "是", "no": "否",
        "fnpv": "财务净现值", "firr": "财务内部收益率", "fbcr": "财务效益费用比", "enpv": "经济净现值",
        "eirr": "经济内部收益率", "ebcr": "经济效益费用比", "payback": "静态投资回收期（自建设期初，年）",
        "dpayback": "动态投资回收期（年）", "epayback": "经济投资回收期（年）", "at": "折现率",
        "none_irr": "不存在", "several": "多个；修正内部收益率", "never": "计算期内无法回收",
        "assumptions": "基础数据与假设", "study": "计算期", "years_word": "年", "construction": "建设期",
        "rates": "折现率", "financial_rate": "财务基准收益率", "social_rate": "社会折现率", "inflation": "通货膨胀率",
        "escalation": "实际价格上涨率（运营成本／效益）", "tax": "所得税率", "residual": "期末余值",
        "investment": "建设投资", "item": "项目", "collab": "协同共建", "alone": "各部门分别建设",
        "schedule": "分年投资比例", "factor": "影子价格换算系数", "opex": "年运营成本", "from": "起始年",
        "benefits": "效益", "basis": "测算依据", "cash": "是否为项目现金收入", "financing": "资金筹措",
        "source": "来源", "amount": "金额", "share": "占比", "government_budget": "政府预算资金",
        "special_funds": "专项资金", "social_capital": "社会资本（PPP）", "loans": "银行贷款",
        "collaboration": "协同共建与各部门分建的比较", "pv_costs": "费用现值（社会折现率）",
        "capex_total": "建设投资", "saving": "节约", "fnpv_short": "财务净现值", "ppp": "社会资本（PPP）收益",
        "ppp_terms": "占总投资 {inv}，占资本金 {eq}；收益分成 {rev}", "investor_npv": "社会资本净现值",
        "vgf": "可行性缺口补助（现值）",
        "investor_irr": "社会资本内部收益率", "investor_payback": "社会资本投资回收期（年）", "loan": "贷款",
        "loan_terms": "{amount}，利率 {rate}，期限 {years} 年（{method}），自 {year} 年起还款",
        "equal_principal": "等额还本", "annuity": "等额本息", "dscr": "偿债备付率（最低／平均）",
        "icr": "利息备付率（最低）", "equity_npv": "资本金净现值", "equity_irr": "资本金内部收益率",
        "interest_total": "利息合计", "interest_cap": "其中建设期利息（资本化）",
        "flows": "现金流量", "flows_fin": "逐年财务净现金流量（现价）及累计净现金流量", "cumulative": "累计",
        "year": "年份", "capex": "建设投资", "opex_col": "运营成本", "inflow": "现金流入", "tax_col": "所得税",
        "residual_col": "回收余值", "fin_net": "财务净现金流量", "fin_cum": "累计", "eco_net": "经济净效益流量",
        "eco_cum": "累计折现（经济）", "investor_col": "社会资本净现金流量", "equity_col": "资本金净现金流量",
        "sensitivity": "经济净现值敏感性分析", "sens_intro": "各因素单独变动 ±{x}；条形自基准经济净现值（{base}）起。",
        "low": "−{x}", "high": "+{x}", "driver": "因素", "coef": "敏感度系数",
        "switching": "临界点（使净现值为零的变化幅度）", "change": "变化幅度", "amount_at": "净现值为零时的数值",
        "base_amount": "基准值",
        "economic": "经济", "financial": "财务", "none_in_range": "在 −100%～+1000% 内不存在",
        "risk": "风险分析", "register": "风险登记表", "category": "类别", "probability": "发生概率",
        "impact": "发生时经济净现值的变化", "expected": "期望影响", "level": "风险等级",
        "levels_note": "风险等级按经济净现值期望损失占投资现值的比例划分：低于 1% 为一般，低于 3% 为较大，"
                       "低于 10% 为严重，其余为重大（本评价器的约定）。",
        "mc": "蒙特卡洛模拟", "distribution": "概率分布（相对基准值的倍数）", "parameters": "参数",
        "correlation": "相关系数", "draws": "次抽样", "p_neg": "经济净现值小于零的概率",
        "p_neg_fin": "财务净现值小于零的概率",
        "mean": "均值", "never_share": "计算期内无法回收的抽样比例", "payback_dist": "财务投资回收期（P10／P50／P90）",
        "hist": "经济净现值的概率分布", "policy": "政策", "technical": "技术", "market": "市场", "operational": "运营",
        "io": "投入产出带动效应", "io_source": "投入产出表", "multipliers": "分部门产出乘数", "sector": "部门",
        "type_i": "I 型", "type_ii": "II 型", "spending": "投资支出（最终需求冲击）", "output_effect": "总产出",
        "va_effect": "增加值", "income_effect": "劳动者报酬", "jobs_effect": "就业",
        "drive": "产业带动系数（单位投资带动的总产出）",
        "drive_note": "I 型乘数计入产业链上的直接和间接采购；II 型另计入由此支付的工资再消费（引致效应）。"
                      "总产出在每个环节重复计入中间产品，因此大于增加值。冲击投向：{sectors}。",
        "swot": "SWOT 分析", "weight": "权重", "rating": "评分", "score": "加权得分", "strengths": "优势",
        "weaknesses": "劣势", "opportunities": "机会", "threats": "威胁", "position": "战略坐标（S − W，O − T）",
        "strategy": "战略类型", "warnings": "提示", "none": "无", "method": "方法与约定",
        "method_text": "以建设期第一年为第 0 年，各年现金流量记于该年，净现值不对第 0 年折现（与 numpy-financial "
                       "一致；Excel 的 NPV() 会将其折现一年）。财务分析：项目自身的现金收支，采用含通货膨胀的现价，"
                       "扣除所得税（税基为效益 − 运营成本 − 直线折旧，不结转亏损）。"
                       "经济分析：计入全部效益，采用不变价格，"
                       "费用按影子价格调整，税金作为转移支付剔除，按社会折现率计算（依据《建设项目经济评价方法与参数》"
                       "第三版，一般取 8%，公益性项目可取 6%）。"
                       "内部收益率取净现值多项式的全部实根，无解或多解时如实说明并"
                       "给出修正内部收益率。投资回收期自建设期初起算，取累计净现金流量此后保持非负的年份并在年内插值。"
                       "效益费用比为效益（含余值）现值与费用现值之比。",
        "ok": "可行",
        "generated": "报告中的所有数值均由 civicmesh 可行性评价器根据“基础数据与假设”所列的项目文件计算。",
        "SO": "SO 增长型", "WO": "WO 扭转型", "ST": "ST 多元化", "WT": "WT 防御型",
    },
}


DRIVERS = {"en": {"capex": "investment", "opex": "operating costs", "benefits": "all benefits",
                   "discount rate": "discount rate"},
           "zh": {"capex": "建设投资", "opex": "运营成本", "benefits": "全部效益", "discount rate": "折现率"}}


def driver_label(name: str, lang: str) -> str:
    """A driver as a reader knows it: the built-in ones translated, a benefit by the name the file gives it."""
    return DRIVERS[lang].get(name, name.removeprefix("benefit:"))


def money(value: float | None, currency: str, lang: str) -> str:
    """Amounts as a finance bureau reads them: 亿元/万元 in Chinese, bn/m in English."""
    if value is None:
        return "—"
    if lang == "zh":
        unit = "元" if currency == "CNY" else f" {currency}"
        for size, name in ((1e8, "亿"), (1e4, "万")):
            if abs(value) >= size:
                return f"{value / size:,.2f} {name}{unit.strip()}"
        return f"{value:,.0f} {unit.strip()}"
    for size, name in ((1e9, " bn"), (1e6, " m")):
        if abs(value) >= size:
            return f"{currency} {value / size:,.2f}{name}"
    return f"{currency} {value:,.0f}"


def pct(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}%}"


def _years(value: float | None, t: dict[str, str]) -> str:
    return t["never"] if value is None else f"{value:.2f}"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(
        f"<td class='num'>{html.escape(c)}</td>" if i >= numeric_from else f"<td>{html.escape(c)}</td>"
        for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


class _Writer:
    def __init__(self, e: Evaluation, lang: str) -> None:
        if lang not in LANGS:
            raise ValueError(f"language {lang!r} is not zh or en")
        self.e, self.lang, self.t = e, lang, TEXT[lang]
        self.p = e.project
        self.m: Callable[[float | None], str] = lambda v: money(v, self.p.currency, lang)

    def irr(self, block: dict[str, Any]) -> str:
        if block.get("irr") is not None:
            return pct(block["irr"])
        if block.get("irr_candidates"):
            return f"{self.t['several']} {pct(block.get('mirr'))}"
        return self.t["none_irr"]

    def driver(self, name: str) -> str:
        return driver_label(name, self.lang)

    def indicators(self) -> str:
        t, r, p = self.t, self.e.results, self.p
        fin, eco = r["financial"], r["economic"]

        def yes_no(ok: bool) -> str:
            return str(t["yes"] if ok else t["no"])

        def irr_ok(b: dict[str, Any], rate: float) -> bool:
            return bool((b["irr"] is not None and b["irr"] >= rate) or (
                b["irr"] is None and b.get("mirr") is not None and b["mirr"] >= rate))

        rows = [
            [f"{t['fnpv']} ({t['at']} {p.financial_rate:.0%})", self.m(fin["npv"]), "≥ 0", yes_no(fin["npv"] >= 0)],
            [t["firr"], self.irr(fin), f"≥ {p.financial_rate:.0%}", yes_no(irr_ok(fin, p.financial_rate))],
            [t["fbcr"], f"{fin['bcr']:.2f}", "≥ 1", yes_no(fin["bcr"] >= 1)],
            [t["payback"], _years(fin["payback"], t),
             f"≤ {p.benchmark_payback:g}" if p.benchmark_payback else "—",
             yes_no(fin["payback"] is not None and fin["payback"] <= p.benchmark_payback)
             if p.benchmark_payback else "—"],
            [t["dpayback"], _years(fin["discounted_payback"], t), "—", "—"],
            [f"{t['enpv']} ({t['at']} {p.social_rate:.0%})", self.m(eco["npv"]), "≥ 0", yes_no(eco["npv"] >= 0)],
            [t["eirr"], self.irr(eco), f"≥ {p.social_rate:.0%}", yes_no(irr_ok(eco, p.social_rate))],
            [t["ebcr"], f"{eco['bcr']:.2f}", "≥ 1", yes_no(eco["bcr"] >= 1)],
            [t["epayback"], _years(eco["payback"], t), "—", "—"],
        ]
        return f"<h2>{t['indicators']}</h2>" + _table([t["indicator"], t["value"], t["criterion"], t["met"]], rows)

    def assumptions(self) -> str:
        t, p = self.t, self.p
        general = [
            [t["study"], f"{p.start_year}–{p.start_year + p.horizon} ({p.horizon + 1} {t['years_word']}; "
                         f"{t['construction']} {p.construction_years})"],
            [t["rates"], f"{t['financial_rate']} {pct(p.financial_rate, 1)}, {t['social_rate']} "
                         f"{pct(p.social_rate, 1)}"],
            [t["inflation"], pct(p.inflation, 1)],
            [t["escalation"], f"{pct(p.escalation_opex, 1)} / {pct(p.escalation_benefits, 1)}"],
            [t["tax"], pct(p.tax_rate, 0)], [t["residual"], pct(p.residual_share, 0)],
        ]
        capex = [[c.name, self.m(c.amount), self.m(c.standalone), " / ".join(f"{s:.0%}" for s in c.schedule),
                  f"{c.economic_factor:g}"] for c in p.capex]
        capex.append(["Σ", self.m(p.total_capex), self.m(sum(c.standalone for c in p.capex)), "", ""])
        opex = [[o.name, self.m(o.amount), self.m(o.standalone), str(p.start_year + o.from_year),
                 f"{o.economic_factor:g}"] for o in p.opex]
        benefits = [[b.name, self.m(b.per_year), b.basis, str(p.start_year + b.from_year),
                     t["yes"] if b.financial else t["no"]] for b in p.benefits]
        sources = [[t[k], self.m(v), pct(v / p.total_capex, 1)] for k, v in p.financing.items() if v]
        parts = [f"<h2>{t['assumptions']}</h2>", _table(["", ""], general),
                 f"<h3>{t['investment']}</h3>",
                 _table([t["item"], t["collab"], t["alone"], t["schedule"], t["factor"]], capex)]
        if opex:
            parts += [f"<h3>{t['opex']}</h3>",
                      _table([t["item"], t["collab"], t["alone"], t["from"], t["factor"]], opex)]
        parts += [f"<h3>{t['benefits']}</h3>",
                  _table([t["item"], t["value"], t["basis"], t["from"], t["cash"]], benefits)]
        if sources:
            parts += [f"<h3>{t['financing']}</h3>", _table([t["source"], t["amount"], t["share"]], sources)]
        return "".join(parts)

    def collaboration(self) -> str:
        t, c = self.t, self.e.results["collaboration"]
        fin = self.e.results["financial"]
        rows = [[t["capex_total"], self.m(c["capex_collaborative"]), self.m(c["capex_standalone"]),
                 self.m(c["capex_standalone"] - c["capex_collaborative"])],
                [t["pv_costs"], self.m(c["pv_costs_collaborative"]), self.m(c["pv_costs_standalone"]),
                 f"{self.m(c['saving'])} ({c['saving_share']:.1%})"],
                [t["fnpv_short"], self.m(fin["npv"]), self.m(c["financial_npv_standalone"]),
                 self.m(fin["npv"] - c["financial_npv_standalone"])],
                [t["payback"], _years(fin["payback"], t), _years(c["payback_standalone"], t), ""]]
        parts = [f"<h2>{t['collaboration']}</h2>", _table(["", t["collab"], t["alone"], t["saving"]], rows)]
        ppp = self.e.results.get("ppp")
        if ppp:
            terms = t["ppp_terms"].format(inv=pct(ppp["share_of_investment"], 1), eq=pct(ppp["share_of_equity"], 1),
                                          rev=pct(ppp["revenue_share"], 0))
            parts += [f"<h3>{t['ppp']}</h3><p>{self.m(ppp['social_capital'])}: {html.escape(terms)}</p>",
                      _table(["", ""], [[t["investor_npv"], self.m(ppp["npv"])], [t["investor_irr"], self.irr(ppp)],
                                        [t["investor_payback"], _years(ppp["payback"], t)],
                                        [t["vgf"], self.m(ppp["viability_gap_pv"])]])]
        loan = self.e.results.get("loan")
        if loan:
            terms = t["loan_terms"].format(amount=self.m(loan["amount"]), rate=pct(loan["rate"]),
                                           years=loan["years"], method=t[loan["method"]], year=loan["repay_from_year"])
            dscr = "—" if loan["dscr_min"] is None else f"{loan['dscr_min']:.2f} / {loan['dscr_mean']:.2f}"
            irr = {"irr": loan["equity_irr"], "irr_candidates": loan["equity_irr_candidates"],
                   "mirr": loan["equity_mirr"]}
            parts += [f"<h3>{t['loan']}</h3><p>{html.escape(terms)}</p>",
                      _table(["", ""], [[t["dscr"], dscr],
                                        [t["icr"], "—" if loan["icr_min"] is None else f"{loan['icr_min']:.2f}"],
                                        [t["interest_total"], self.m(loan["interest_total"])],
                                        [t["interest_cap"], self.m(loan["interest_capitalized"])],
                                        [t["equity_npv"], self.m(loan["equity_npv"])],
                                        [t["equity_irr"], self.irr(irr)]])]
        return "".join(parts)

    def flows(self) -> str:
        t, e = self.t, self.e
        table = e.table
        chart = svg.bars([v or 0.0 for v in table["financial_net"]], [str(y) for y in e.years], self.m,
                         line=[v or 0.0 for v in table["financial_cumulative"]], line_label=t["cumulative"])
        columns = [("capex", t["capex"]), ("opex", t["opex_col"]), ("inflow", t["inflow"]), ("tax", t["tax_col"]),
                   ("residual", t["residual_col"]), ("financial_net", t["fin_net"]),
                   ("financial_cumulative", t["fin_cum"]), ("economic_net", t["eco_net"]),
                   ("economic_cumulative_discounted", t["eco_cum"])]
        if "equity_net" in table:
            columns.append(("equity_net", t["equity_col"]))
        if "investor_net" in table:
            columns.append(("investor_net", t["investor_col"]))
        cur = self.p.currency
        unit = ("亿元" if cur == "CNY" else f"亿 {cur}") if self.lang == "zh" else f"{cur} m"
        scale = 1e8 if self.lang == "zh" else 1e6
        head = [t["year"]] + [f"{name} ({unit})" for _, name in columns]
        rows = [[str(year)] + [f"{(table[key][i] or 0.0) / scale:,.2f}" for key, _ in columns]
                for i, year in enumerate(e.years)]
        return (f"<h2>{t['flows']}</h2><h3>{t['flows_fin']}</h3>{chart}"
                f"<div class='wide'>{_table(head, rows)}</div>")

    def sensitivity(self) -> str:
        t, e, p = self.t, self.e, self.p
        x = f"{p.sensitivity_range:.0%}"
        base = e.results["economic"]["npv"]
        rows = [{**r, "driver": self.driver(str(r["driver"]))} for r in e.tornado]
        chart = svg.tornado(rows, base, self.m, low_label=t["low"].format(x=x), high_label=t["high"].format(x=x))
        table = _table([t["driver"], t["low"].format(x=x), t["high"].format(x=x), t["coef"]],
                       [[r["driver"], self.m(r["low"]), self.m(r["high"]),
                         "—" if r["sensitivity_coefficient"] is None else f"{r['sensitivity_coefficient']:.2f}"]
                        for r in rows])
        switching = []
        for view in ("economic", "financial"):
            for r in e.switching[view]:
                switching.append([f"{t[view]}: {self.driver(r['driver'])}",
                                  t["none_in_range"] if r["change"] is None else f"{r['change']:+.1%}",
                                  self.m(r["base"]), self.m(r["value"])])
        return (f"<h2>{t['sensitivity']}</h2><p>{html.escape(t['sens_intro'].format(x=x, base=self.m(base)))}</p>"
                f"{chart}{table}<h3>{t['switching']}</h3>"
                + _table([t["driver"], t["change"], t["base_amount"], t["amount_at"]], switching))

    def risk(self) -> str:
        t, e = self.t, self.e
        parts = [f"<h2>{t['risk']}</h2>"]
        if e.risks:
            rows = [[r["name"], t.get(r["category"], r["category"]), pct(r["probability"], 0),
                     f"{r['change']:+.0%} {self.driver(r['driver'])}", self.m(r["npv_impact"]),
                     self.m(r["expected_npv_impact"]), r["level_zh"] if self.lang == "zh" else r["level"]]
                    for r in e.risks]
            parts += [f"<h3>{t['register']}</h3>",
                      _table([t["item"], t["category"], t["probability"], t["driver"], t["impact"], t["expected"],
                              t["level"]], rows, numeric_from=2),
                      f"<p class='note'>{html.escape(t['levels_note'])}</p>"]
        mc = e.monte_carlo
        if mc:
            npv = mc["economic_npv"]
            markers = {"P10": npv["p10"], "P50": npv["p50"], "P90": npv["p90"]}
            pb = mc["payback"]
            rows = [[t["p_neg"], pct(mc["p_economic_npv_negative"], 1)],
                    [f"{t['enpv']} P10 / P50 / P90",
                     f"{self.m(npv['p10'])} / {self.m(npv['p50'])} / {self.m(npv['p90'])}"],
                    [f"{t['enpv']} ({t['mean']})", self.m(npv["mean"])],
                    [t["p_neg_fin"], pct(mc["p_financial_npv_negative"], 1)],
                    [t["payback_dist"], "—" if pb is None else f"{pb['p10']:.2f} / {pb['p50']:.2f} / {pb['p90']:.2f}"],
                    [t["never_share"], pct(mc["share_never_paying_back"], 1)]]
            inputs = [[self.driver(u.driver), u.dist, ", ".join(f"{k} {v:g}" for k, v in u.params.items())]
                      for u in self.p.uncertainty]
            inputs += [[f"{self.driver(a)} ~ {self.driver(b)}", t["correlation"], f"{rho:+.2f}"]
                       for a, b, rho in self.p.correlations]
            parts += [f"<h3>{t['mc']} ({mc['draws']:,} {t['draws']}, seed {mc['seed']})</h3>",
                      _table([t["driver"], t["distribution"], t["parameters"]], inputs, numeric_from=3)
                      if inputs else "", _table(["", ""], rows),
                      f"<h3>{t['hist']}</h3>",
                      svg.histogram(mc["histogram"]["counts"], mc["histogram"]["edges"], markers, self.m)]
        return "".join(parts) if len(parts) > 1 else ""

    def input_output(self) -> str:
        io = self.e.input_output
        if not io:
            return ""
        t, imp, mult = self.t, io["impact"], io["multipliers"]
        series = {t["type_i"]: mult["type_i_output"]}
        if "type_ii_output" in mult:
            series[t["type_ii"]] = mult["type_ii_output"]
        kinds = [k for k in ("type_i", "type_ii") if f"output_{k}" in imp]
        rows = [[t["spending"], *[self.m(imp["spending"]) for _ in kinds]],
                [t["output_effect"], *[self.m(imp[f"output_{k}"]) for k in kinds]],
                [t["drive"], *[f"{imp[f'drive_ratio_{k}']:.2f}" for k in kinds]]]
        if "value_added_type_i" in imp:
            rows.append([t["va_effect"], *[self.m(imp[f"value_added_{k}"]) for k in kinds]])
        if "income_type_i" in imp:
            rows.append([t["income_effect"], *[self.m(imp[f"income_{k}"]) for k in kinds]])
        if "jobs_type_i" in imp:
            unit = f" ({io['employment_unit']})" if io["employment_unit"] else ""
            rows.append([t["jobs_effect"] + unit, *[f"{imp[f'jobs_{k}']:,.1f}" for k in kinds]])
        note = t["drive_note"].format(sectors=", ".join(f"{k} {self.m(v)}" for k, v in imp["shock"].items()))
        return (f"<h2>{t['io']}</h2><p>{t['io_source']}: {html.escape(Path(io['source']).name)}</p>"
                + _table(["", *[t[k] for k in kinds]], rows) + f"<p class='note'>{html.escape(note)}</p>"
                + f"<h3>{t['multipliers']}</h3>" + svg.grouped(mult["sectors"], series))

    def swot(self) -> str:
        s = self.e.swot
        if not s:
            return ""
        t = self.t
        rows = [[t[part], i["text"], f"{i['weight']:.2f}", f"{i['rating']:g}", f"{i['score']:.2f}"]
                for part in ("strengths", "weaknesses", "opportunities", "threats") for i in s["items"][part]]
        strategy = s["strategy_zh"] if self.lang == "zh" else s["strategy_en"]
        x, y = s["position"]
        return (f"<h2>{t['swot']}</h2>"
                + _table(["", t["item"], t["weight"], t["rating"], t["score"]], rows, numeric_from=2)
                + f"<p>{t['position']}: ({x:.2f}, {y:.2f}); IFE {s['ife']:.2f}, EFE {s['efe']:.2f}. "
                f"{t['strategy']}: <b>{html.escape(strategy)}</b></p>"
                + svg.quadrant(x, y, {k: t[k] for k in ("SO", "WO", "ST", "WT")}))

    def render(self) -> str:
        t, p = self.t, self.p
        warnings = "".join(f"<li>{html.escape(w)}</li>" for w in self.e.warnings) or f"<li>{t['none']}</li>"
        body = [f"<h1>{html.escape(p.name)}</h1><p class='sub'>{t['title']} · {html.escape(p.currency)} · "
                f"{p.start_year}–{p.start_year + p.horizon}</p>",
                f"<h2>{t['conclusion']}</h2><div class='conclusion'>"
                + "".join(f"<p>{html.escape(s)}</p>" for s in conclusion(self.e, self.lang)) + "</div>",
                self.indicators(), self.collaboration(), self.flows(), self.sensitivity(), self.risk(),
                self.input_output(), self.swot(), f"<h2>{t['warnings']}</h2><ul>{warnings}</ul>",
                self.assumptions(), f"<h2>{t['method']}</h2><p class='note'>{html.escape(t['method_text'])}</p>"
                f"<p class='note'>{html.escape(t['generated'])}</p>"]
        style = ("body{font-family:system-ui,'Noto Sans CJK SC','Microsoft YaHei',sans-serif;max-width:960px;"
                 "margin:2em auto;padding:0 1em;color:#222;line-height:1.5}h1{margin-bottom:0}"
                 ".sub{color:#666;margin-top:.2em}h2{border-bottom:2px solid #2c5d8f;padding-bottom:2px;"
                 "margin-top:1.8em}table{border-collapse:collapse;margin:.6em 0;font-size:.9em}"
                 "td,th{border:1px solid #ccc;padding:3px 8px}th{background:#f0f4f8}.num{text-align:right;"
                 "white-space:nowrap}.chart{width:100%;height:auto}.quadrant{width:260px}.wide{overflow-x:auto}"
                 ".note{color:#555;font-size:.85em}.conclusion{background:#f6f9fc;border-left:4px solid #2c5d8f;"
                 "padding:.3em 1em}@media print{h2{page-break-after:avoid}.wide{overflow:visible}}")
        return (f"<!doctype html><html lang='{'zh-CN' if self.lang == 'zh' else 'en'}'><head><meta charset='utf-8'>"
                f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
                f"<title>{html.escape(p.name)} — {t['title']}</title><style>{style}</style></head><body>"
                + "".join(body) + "</body></html>")


def render_html(e: Evaluation, lang: str = "en") -> str:
    return _Writer(e, lang).render()


def conclusion(e: Evaluation, lang: str) -> list[str]:
    """The findings in plain words, one paragraph each, every figure also in the tables below."""
    p, r = e.project, e.results
    eco, fin, col = r["economic"], r["financial"], r["collaboration"]
    def m(v: float | None) -> str:
        return money(v, p.currency, lang)

    t = TEXT[lang]
    irr_e, irr_f = _irr_words(eco, t), _irr_words(fin, t)
    top = e.tornado[0] if e.tornado else None
    switch = {s["driver"]: s for s in e.switching.get("economic", [])}
    out = []
    if lang == "zh":
        verdict = "经济上可行" if eco["npv"] >= 0 else "经济上不可行"
        out.append(f"按社会折现率 {p.social_rate:.0%} 计算，项目{verdict}：经济净现值 {m(eco['npv'])}，"
                   f"经济内部收益率 {irr_e}，经济效益费用比 {eco['bcr']:.2f}。")
        money_side = ("财务上可自负盈亏" if fin["npv"] >= 0 else
                      f"财务上不能自负盈亏，按现值计需财政等资金补足约 {m(-fin['npv'])}")
        payback = ("计算期内无法回收" if fin["payback"] is None
                   else f"静态投资回收期 {fin['payback']:.2f} 年（自建设期初）")
        out.append(f"按财务基准收益率 {p.financial_rate:.0%} 计算，财务净现值 {m(fin['npv'])}，财务内部收益率 "
                   f"{irr_f}，{money_side}；{payback}。")
        line = f"协同共建相对各部门分别建设节约费用现值 {m(col['saving'])}（{col['saving_share']:.1%}）"
        if col["payback_standalone"] is not None and fin["payback"] is not None:
            line += f"，回收期由 {col['payback_standalone']:.2f} 年缩短为 {fin['payback']:.2f} 年"
        out.append(line + "。")
        if r.get("ppp"):
            out.append(f"社会资本出资 {m(r['ppp']['social_capital'])}，按 {r['ppp']['revenue_share']:.0%} 的收益分成，"
                       f"其净现值 {m(r['ppp']['npv'])}，内部收益率 {_irr_words(r['ppp'], t)}。")
        if top:
            s = switch.get(str(top["driver"]))
            tail = f"，变化 {s['change']:+.1%} 时经济净现值降为零" if s and s["change"] is not None else ""
            out.append(f"最敏感的因素是{driver_label(str(top['driver']), lang)}{tail}。")
        if e.monte_carlo:
            mc = e.monte_carlo
            out.append(f"蒙特卡洛模拟（{mc['draws']:,} 次）显示经济净现值小于零的概率为 "
                       f"{mc['p_economic_npv_negative']:.1%}，"
                       f"P10／P50／P90 为 {m(mc['economic_npv']['p10'])}／{m(mc['economic_npv']['p50'])}／"
                       f"{m(mc['economic_npv']['p90'])}。")
        if e.input_output:
            imp = e.input_output["impact"]
            line = f"投入产出分析：每 1 元投资带动总产出 {imp['drive_ratio_type_i']:.2f} 元（I 型，直接和间接）"
            if "drive_ratio_type_ii" in imp:
                line += f"，计入居民消费引致效应为 {imp['drive_ratio_type_ii']:.2f} 元（II 型）"
            out.append(line + "；总产出含中间产品重复计算，不等于新增增加值。")
        return out
    verdict = "is economically worthwhile" if eco["npv"] >= 0 else "is not economically worthwhile"
    out.append(f"At the social discount rate of {p.social_rate:.0%} the project {verdict}: its economic NPV is "
               f"{m(eco['npv'])}, the economic IRR {irr_e} and the economic benefit–cost ratio {eco['bcr']:.2f}.")
    money_side = ("it pays for itself" if fin["npv"] >= 0 else
                  f"it does not pay for itself and needs public funds worth about {m(-fin['npv'])} in present value")
    payback = ("the investment is not paid back within the study period" if fin["payback"] is None else
               f"the investment is paid back {fin['payback']:.2f} years after construction starts")
    out.append(f"Financially, at the benchmark rate of {p.financial_rate:.0%}, the NPV is {m(fin['npv'])} and the "
               f"IRR {irr_f}: {money_side}; {payback}.")
    line = (f"Building together rather than each department alone saves {m(col['saving'])} of present-value cost "
            f"({col['saving_share']:.1%})")
    if col["payback_standalone"] is not None and fin["payback"] is not None:
        line += f" and shortens the payback from {col['payback_standalone']:.2f} to {fin['payback']:.2f} years"
    out.append(line + ".")
    if r.get("ppp"):
        out.append(f"Social capital puts in {m(r['ppp']['social_capital'])} for a {r['ppp']['revenue_share']:.0%} "
                   f"revenue share; its NPV is {m(r['ppp']['npv'])} and its IRR {_irr_words(r['ppp'], t)}.")
    if top:
        s = switch.get(str(top["driver"]))
        tail = f"; economic NPV reaches zero at a change of {s['change']:+.1%}" if s and s["change"] is not None else ""
        out.append(f"The most sensitive driver is {driver_label(str(top['driver']), lang)}{tail}.")
    if e.monte_carlo:
        mc = e.monte_carlo
        out.append(f"In {mc['draws']:,} Monte Carlo draws the economic NPV is negative with probability "
                   f"{mc['p_economic_npv_negative']:.1%}; P10 / P50 / P90: {m(mc['economic_npv']['p10'])} / "
                   f"{m(mc['economic_npv']['p50'])} / {m(mc['economic_npv']['p90'])}.")
    if e.input_output:
        imp = e.input_output["impact"]
        line = (f"Input–output: each unit of spending raises gross output by {imp['drive_ratio_type_i']:.2f} "
                "(Type I, direct and indirect)")
        if "drive_ratio_type_ii" in imp:
            line += f", {imp['drive_ratio_type_ii']:.2f} with household spending of the wages (Type II)"
        out.append(line + "; gross output counts intermediate goods more than once and is not new value added.")
    return out


def _irr_words(block: dict[str, Any], t: dict[str, str]) -> str:
    if block.get("irr") is not None:
        return pct(block["irr"])
    if block.get("irr_candidates"):
        return f"{t['several']} {pct(block.get('mirr'))}"
    return t["none_irr"]


def write_pdf(html_text: str, target: Path) -> None:
    """Print the report with the machine's headless Chromium; say clearly when there is none."""
    browser = next((found for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
                    if (found := shutil.which(name))), None)
    if browser is None:
        raise RuntimeError("PDF output needs Chromium on this machine (Debian: apt-get install chromium) and none "
                           "was found; the HTML report was written and prints to PDF from any browser")
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(html_text, encoding="utf-8")
        try:
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                            "--no-pdf-header-footer", f"--print-to-pdf={target.resolve()}", page.as_uri()],
                           check=True, capture_output=True, timeout=120)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"Chromium could not print the report to PDF: {exc}") from exc

