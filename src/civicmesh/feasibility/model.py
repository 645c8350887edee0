"""The project file: YAML (or JSON) in, a validated `Project` out. Every error names the line and the field.

Amounts are in the project's currency at base-year (constant) prices. Year 0 is the first construction year and
the flows of year t are dated at t (the NumPy-financial convention: year 0 is not discounted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DISTRIBUTIONS = {"triangular", "pert", "normal", "lognormal", "uniform"}
RISK_CATEGORIES = {"policy", "technical", "market", "operational", "financial"}
BENEFIT_KINDS = {"revenue", "data_product", "time_saved", "energy", "logistics", "other"}
# Benefits that are cash to the project unless the file says otherwise; the rest accrue to society.
CASH_KINDS = {"revenue", "data_product"}
LOAN_METHODS = {"equal_principal", "annuity"}
SWOT_PARTS = ("strengths", "weaknesses", "opportunities", "threats")
LARGEST = 1e15  # a quadrillion: more than any city's budget in any currency unit


class ProjectError(ValueError):
    """A project file problem, with where it is (a dotted field path) and, when known, the line."""

    def __init__(self, where: str, message: str, line: int | None = None) -> None:
        self.where = where
        self.line = line
        self.message = message
        prefix = f"line {line}: " if line else ""
        super().__init__(f"{prefix}{where}: {message}")


@dataclass
class CostItem:
    name: str
    amount: float  # collaborative scenario: total (capex) or per year (opex)
    standalone: float  # what the departments would spend each building alone
    schedule: list[float] = field(default_factory=list)  # capex: share spent in each year from year 0
    from_year: int = 0
    to_year: int | None = None  # opex: last year (inclusive); None = to the horizon
    economic_factor: float = 1.0  # shadow-price conversion factor for the economic analysis


@dataclass
class Benefit:
    name: str
    kind: str
    per_year: float
    financial: bool  # cash to the project (financial analysis) or only to society (economic analysis)
    from_year: int
    ramp_years: int
    basis: str  # how per_year was derived, shown in the report so the figure can be traced
    to_year: int | None = None  # last year (inclusive); None = to the horizon


@dataclass
class Loan:
    amount: float
    rate: float
    years: int
    repay_from: int
    method: str


@dataclass
class Uncertain:
    driver: str
    dist: str
    params: dict[str, float]


@dataclass
class Risk:
    name: str
    category: str
    probability: float
    driver: str
    change: float  # relative change of the driver when the risk occurs


@dataclass
class SwotItem:
    text: str
    weight: float
    rating: float


@dataclass
class Project:
    name: str
    currency: str
    start_year: int
    horizon: int  # last year index; the study covers years 0..horizon
    construction_years: int
    financial_rate: float
    social_rate: float
    inflation: float
    escalation_opex: float
    escalation_benefits: float
    tax_rate: float
    residual_share: float
    benchmark_payback: float | None
    capex: list[CostItem]
    opex: list[CostItem]
    benefits: list[Benefit]
    financing: dict[str, float]
    revenue_share_investors: float
    loan: Loan | None
    viability_gap: list[float]  # government payments to the social capital per year (current prices), 0..horizon
    uncertainty: list[Uncertain]
    correlations: list[tuple[str, str, float]]
    risks: list[Risk]
    swot: dict[str, list[SwotItem]]
    io: dict[str, Any] | None
    sensitivity_range: float
    base_dir: Path | None = Path(".")  # where relative file names resolve; None = files are refused (HTTP)

    @property
    def drivers(self) -> list[str]:
        return ["capex", "opex", *[f"benefit:{b.name}" for b in self.benefits]]

    @property
    def total_capex(self) -> float:
        return sum(c.amount for c in self.capex)

    def targets(self, driver: str) -> list[str]:
        """The multiplier keys a driver named in the file moves (`benefits` moves every benefit)."""
        if driver == "benefits":
            return [f"benefit:{b.name}" for b in self.benefits]
        if driver in ("capex", "opex") or driver.startswith("benefit:"):
            return [driver]
        return [f"benefit:{driver}"]


class _Reader:
    """Reads fields out of the parsed mapping and knows their line numbers for error messages."""

    def __init__(self, lines: dict[str, int]) -> None:
        self.lines = lines

    def fail(self, where: str, message: str) -> ProjectError:
        probe = where
        line = self.lines.get(probe)
        while line is None and "." in probe:
            probe = probe.rsplit(".", 1)[0]
            line = self.lines.get(probe)
        return ProjectError(where, message, line)

    def mapping(self, data: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
        path = f"{where}.{key}" if where else key
        value = data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(path, "must be a mapping of fields")
        return value

    def number(self, data: dict[str, Any], key: str, where: str, *, default: float | None = None,
               minimum: float | None = None, maximum: float | None = None, above: float | None = None) -> float:
        path = f"{where}.{key}" if where else key
        if key not in data or data[key] is None:
            if default is None:
                raise self.fail(path, "is required")
            return default
        value = data[key]
        if isinstance(value, str):
            # YAML 1.1 reads 4.0e9 (no sign in the exponent) as text; accept what is plainly a number.
            try:
                value = float(value.replace("_", ""))
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, f"must be a number, not {value!r}")
        if not math.isfinite(value):
            raise self.fail(path, f"must be a finite number, not {value}")
        if abs(value) > LARGEST:
            # Far beyond any budget: a typo, and a way to overflow the arithmetic into inf/NaN.
            raise self.fail(path, f"{value:g} is beyond {LARGEST:g}; amounts are plain currency units")
        if minimum is not None and value < minimum:
            raise self.fail(path, f"must be at least {minimum:g}, got {value:g}")
        if maximum is not None and value > maximum:
            raise self.fail(path, f"must be at most {maximum:g}, got {value:g}")
        if above is not None and value <= above:
            raise self.fail(path, f"must be above {above:g}, got {value:g}")
        return float(value)

    def rate(self, data: dict[str, Any], key: str, where: str, default: float) -> float:
        value = self.number(data, key, where, default=default)
        if value <= -1:
            raise self.fail(f"{where}.{key}" if where else key,
                            f"a rate of {value:.0%} is not above -100%: nothing could be discounted or grown by it")
        if value > 1:
            # 8 (meaning 8 %) is the usual slip; a rate above 100 % a year is almost never meant.
            raise self.fail(f"{where}.{key}" if where else key,
                            f"{value:g} is above 100% a year; write rates as fractions (0.08 for 8%)")
        return value

    def whole(self, data: dict[str, Any], key: str, where: str, **limits: Any) -> int:
        value = self.number(data, key, where, **limits)
        if value != int(value):
            raise self.fail(f"{where}.{key}" if where else key, f"must be a whole number of years, got {value:g}")
        return int(value)

    def items(self, data: dict[str, Any], key: str, where: str = "") -> list[tuple[str, dict[str, Any]]]:
        path = f"{where}.{key}" if where else key
        value = data.get(key) or []
        if not isinstance(value, list):
            raise self.fail(path, "must be a list")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.fail(f"{path}.{i}", "must be a mapping of fields")
            out.append((f"{path}.{i}", item))
        return out


# A project file is a few levels deep (capex.0.schedule.3); 64 leaves room for any honest file while a body of
# 10,000 "[" (or "{") is refused before PyYAML's recursive composer overflows the stack.
MAX_DEPTH = 64


class _BoundedLoader(yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader that refuses aliases and deep nesting. An alias is a pointer: 8 levels of `&a [*a, *a, ...]`
    fit in 300 bytes and expand to billions of nodes when walked (issue 13, finding 2); a project file never
    needs one, so `*name` is an error that names its line."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ProjectError("project file", "uses a YAML alias (*name); aliases are not allowed in a project "
                               "file, write the value out", event.start_mark.line + 1)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                event = self.peek_event()
                raise ProjectError("project file", f"is nested more than {MAX_DEPTH} levels deep",
                                   event.start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _parse(text: str) -> tuple[Any, dict[str, int]]:
    """The data and its line map, from one bounded parse."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return data, (_line_map(node) if node is not None else {})


def _line_map(root: yaml.Node) -> dict[str, int]:
    """Dotted path -> 1-based line of every key and list item of the composed YAML document."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = f"{path}.{key.value}" if path else str(key.value)
                lines[sub] = key.start_mark.line + 1
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                sub = f"{path}.{i}"
                lines[sub] = item.start_mark.line + 1
                walk(item, sub)

    walk(root, "")
    return lines


def load_project(source: str | Path, *, text: str | None = None, base_dir: Path | None = None) -> Project:
    """Parse a project file: a path, or YAML/JSON `text` (then relative files resolve against `base_dir`; None
    refuses them)."""
    base = base_dir
    if text is None:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProjectError(str(path), f"cannot be read: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ProjectError(str(path), "is not UTF-8 text") from exc
        base = path.parent
    try:
        data, lines = _parse(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ProjectError("project file", f"is not valid YAML: {getattr(exc, 'problem', exc)}",
                           mark.line + 1 if mark else None) from exc
    if not isinstance(data, dict):
        raise ProjectError("project file", "must be a mapping of fields (name, horizon_years, capex, ...)")
    return parse_project(data, lines, base)


def _horizon(r: _Reader, data: dict[str, Any]) -> tuple[int, int]:
    """(horizon, construction years) from `phases` and/or `horizon_years`, which must agree when both are given."""
    phases = r.mapping(data, "phases")
    horizon = None
    if "horizon_years" in data:
        horizon = r.whole(data, "horizon_years", "", minimum=1, maximum=100)
    if phases:
        construction = r.whole(phases, "construction_years", "phases", minimum=1, maximum=20)
        operation = r.whole(phases, "operation_years", "phases", minimum=1, maximum=100)
        # Construction occupies years 0..c-1 and operation the next o years, so the last year is c + o - 1.
        from_phases = construction + operation - 1
        if horizon is not None and horizon != from_phases:
            raise r.fail("horizon_years", f"is {horizon} but the phases end in year {from_phases} "
                         f"({construction} construction + {operation} operation years, year 0 first); "
                         "give one or make them agree")
        return from_phases, construction
    if horizon is None:
        raise r.fail("horizon_years", "is required (or give phases: {construction_years, operation_years})")
    return horizon, 1


def parse_project(data: dict[str, Any], lines: dict[str, int] | None = None,
                  base: Path | None = Path(".")) -> Project:
    r = _Reader(lines or {})
    horizon, construction = _horizon(r, data)
    discount = r.mapping(data, "discount")
    escalation = r.mapping(data, "escalation")
    # Scalars first, so a file's first mistake is the one reported.
    scalars = dict(
        start_year=r.whole(data, "start_year", "", default=2026, minimum=1900, maximum=2200),
        financial_rate=r.rate(discount, "financial", "discount", 0.06),
        social_rate=r.rate(discount, "social", "discount", 0.08),
        inflation=r.rate(data, "inflation", "", 0.0),
        escalation_opex=r.rate(escalation, "opex", "escalation", 0.0),
        escalation_benefits=r.rate(escalation, "benefits", "escalation", 0.0),
        tax_rate=r.number(data, "tax_rate", "", default=0.0, minimum=0, maximum=0.9),
        residual_share=r.number(data, "residual_value", "", default=0.0, minimum=0, maximum=1),
        benchmark_payback=r.number(data, "benchmark_payback_years", "", default=0.0, minimum=0) or None,
        sensitivity_range=r.number(data, "sensitivity_range", "", default=0.2, above=0, maximum=0.9))
    capex = _capex(r, data, horizon, construction)
    opex = _opex(r, data, horizon, construction)
    benefits = _benefits(r, data, horizon, construction)
    total_capex = sum(c.amount for c in capex)
    financing, investors, loan = _financing(r, data, total_capex, capex, horizon)
    viability_gap = _viability_gap(r, data, horizon, financing["social_capital"])
    names = {b.name for b in benefits}
    drivers = {"capex", "opex", "benefits", *names, *[f"benefit:{n}" for n in names]}
    uncertainty, correlations = _uncertainty(r, data, drivers)
    risks = _risks(r, data, drivers)
    io = _input_output(r, data)
    return Project(
        name=str(data.get("name", "unnamed project")), currency=str(data.get("currency", "CNY")),
        horizon=horizon, construction_years=construction, **scalars,  # type: ignore[arg-type]
        capex=capex, opex=opex, benefits=benefits, financing=financing, revenue_share_investors=investors, loan=loan,
        viability_gap=viability_gap,
        uncertainty=uncertainty, correlations=correlations, risks=risks, swot=_swot(r, data), io=io,
        base_dir=base)


def _name(item: dict[str, Any], where: str) -> str:
    return str(item.get("name") or where)


def _capex(r: _Reader, data: dict[str, Any], horizon: int, construction: int) -> list[CostItem]:
    items = []
    for where, item in r.items(data, "capex"):
        amount = r.number(item, "amount", where, minimum=0)
        schedule = item.get("schedule") or [1.0 / construction] * construction
        if not isinstance(schedule, list) or not all(
                isinstance(s, (int, float)) and not isinstance(s, bool) and s >= 0 for s in schedule):
            raise r.fail(f"{where}.schedule", "must be a list of non-negative shares, one per year from year 0")
        if abs(sum(schedule) - 1.0) > 1e-6:
            raise r.fail(f"{where}.schedule", f"shares must sum to 1, they sum to {sum(schedule):.4g}")
        if len(schedule) > horizon + 1:
            raise r.fail(f"{where}.schedule", f"has {len(schedule)} years but the study ends in year {horizon}")
        items.append(CostItem(_name(item, where), amount,
                              r.number(item, "standalone", where, default=amount, minimum=0),
                              [float(s) for s in schedule],
                              economic_factor=r.number(item, "economic_factor", where, default=1.0, above=0,
                                                       maximum=5)))
    if not items:
        raise r.fail("capex", "needs at least one investment item")
    if sum(c.amount for c in items) <= 0:
        raise r.fail("capex", "the investment adds up to zero; an evaluation needs something to evaluate")
    return items


def _opex(r: _Reader, data: dict[str, Any], horizon: int, construction: int) -> list[CostItem]:
    items = []
    for where, item in r.items(data, "opex"):
        amount = r.number(item, "per_year", where, minimum=0)
        start = r.whole(item, "from_year", where, default=construction, minimum=0, maximum=horizon)
        end = r.whole(item, "to_year", where, default=horizon, minimum=start, maximum=horizon)
        items.append(CostItem(_name(item, where), amount,
                              r.number(item, "standalone", where, default=amount, minimum=0),
                              from_year=start, to_year=end,
                              economic_factor=r.number(item, "economic_factor", where, default=1.0, above=0,
                                                       maximum=5)))
    return items


def _benefits(r: _Reader, data: dict[str, Any], horizon: int, construction: int) -> list[Benefit]:
    items = []
    for where, item in r.items(data, "benefits"):
        kind = str(item.get("kind", "other"))
        if kind not in BENEFIT_KINDS:
            raise r.fail(f"{where}.kind", f"{kind!r} is not one of {', '.join(sorted(BENEFIT_KINDS))}")
        if "hours_per_year" in item:
            hours = r.number(item, "hours_per_year", where, minimum=0)
            wage = r.number(item, "value_per_hour", where, minimum=0)
            per_year, basis = hours * wage, f"{hours:,.0f} h × {wage:,.2f}/h"
        elif "quantity_per_year" in item:
            quantity = r.number(item, "quantity_per_year", where, minimum=0)
            price = r.number(item, "unit_value", where, minimum=0)
            per_year, basis = quantity * price, f"{quantity:,.0f} × {price:,.4g}"
        else:
            per_year = r.number(item, "per_year", where, minimum=0)
            basis = "per_year"
        financial = item.get("financial", kind in CASH_KINDS)
        if not isinstance(financial, bool):
            raise r.fail(f"{where}.financial", "must be true (cash to the project) or false (to society only)")
        start = r.whole(item, "from_year", where, default=construction, minimum=0, maximum=horizon)
        items.append(Benefit(_name(item, where), kind, per_year, financial, start,
                             r.whole(item, "ramp_years", where, default=0, minimum=0, maximum=horizon), basis,
                             r.whole(item, "to_year", where, default=horizon, minimum=start, maximum=horizon)))
    names = [b.name for b in items]
    reserved = sorted({"capex", "opex", "benefits"} & set(names))
    if reserved:
        raise r.fail("benefits", f"a benefit may not be called {reserved[0]!r}: that name is a driver of its own")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise r.fail("benefits", f"names must be unique; repeated: {', '.join(duplicates)}")
    if not items:
        raise r.fail("benefits", "needs at least one benefit stream (without one every NPV is minus the cost)")
    return items


def _financing(r: _Reader, data: dict[str, Any], total_capex: float, capex: list[CostItem],
               horizon: int) -> tuple[dict[str, float], float, Loan | None]:
    raw = r.mapping(data, "financing")
    financing = {k: r.number(raw, k, "financing", default=0.0, minimum=0)
                 for k in ("government_budget", "special_funds", "social_capital", "loans")}
    funded = sum(financing.values())
    if funded and abs(funded - total_capex) > 1e-6 * max(1.0, total_capex):
        raise r.fail("financing", f"the sources sum to {funded:,.0f} but the investment is {total_capex:,.0f}; "
                     "they must match")
    share = r.mapping(raw, "revenue_share", "financing")
    investors_default = 0.0 if not financing["social_capital"] else None
    government = r.number(share, "government", "financing.revenue_share",
                          default=None if investors_default is None else 1.0, minimum=0, maximum=1)
    investors = r.number(share, "investors", "financing.revenue_share",
                         default=investors_default if investors_default is not None else 1 - government,
                         minimum=0, maximum=1)
    if abs(government + investors - 1.0) > 1e-6:
        raise r.fail("financing.revenue_share", f"government and investors shares must sum to 1, "
                     f"they sum to {government + investors:.4g}")
    loan = None
    if financing["loans"]:
        terms = r.mapping(raw, "loan", "financing")
        if not terms:
            raise r.fail("financing.loan", "is required when financing.loans is not zero: give rate and years")
        last_draw = max(len(c.schedule) for c in capex) - 1
        method = str(terms.get("method", "equal_principal"))
        if method not in LOAN_METHODS:
            raise r.fail("financing.loan.method", f"must be one of {', '.join(sorted(LOAN_METHODS))}")
        loan = Loan(financing["loans"], r.rate(terms, "rate", "financing.loan", 0.0),
                    r.whole(terms, "years", "financing.loan", minimum=1, maximum=50),
                    r.whole(terms, "repay_from", "financing.loan", default=last_draw + 1, minimum=last_draw + 1,
                            maximum=horizon), method)
        if loan.repay_from + loan.years - 1 > horizon:
            raise r.fail("financing.loan.years", f"repayment from year {loan.repay_from} over {loan.years} years "
                         f"runs past the last year of the study ({horizon})")
    return financing, investors, loan


def _viability_gap(r: _Reader, data: dict[str, Any], horizon: int, social_capital: float) -> list[float]:
    """可行性缺口补助: what the government pays the social capital each year under the PPP contract."""
    raw = r.mapping(r.mapping(data, "financing"), "viability_gap", "financing")
    payments = [0.0] * (horizon + 1)
    if not raw:
        return payments
    where = "financing.viability_gap"
    if not social_capital:
        raise r.fail(where, "pays the social capital, but financing.social_capital is zero")
    amount = r.number(raw, "per_year", where, minimum=0)
    start = r.whole(raw, "from_year", where, minimum=0, maximum=horizon)
    years = r.whole(raw, "years", where, default=horizon - start + 1, minimum=1)
    if start + years - 1 > horizon:
        raise r.fail(f"{where}.years", f"payments from year {start} over {years} years run past the last year "
                     f"of the study ({horizon})")
    for t in range(start, start + years):
        payments[t] = amount
    return payments


def _uncertainty(r: _Reader, data: dict[str, Any],
                 drivers: set[str]) -> tuple[list[Uncertain], list[tuple[str, str, float]]]:
    raw = r.mapping(data, "uncertainty")
    specs = []
    for key, spec in raw.items():
        where = f"uncertainty.{key}"
        if key == "correlation":
            continue
        if key not in drivers:
            raise r.fail(where, "is not a driver; drivers are capex, opex, benefits and the benefit names")
        if not isinstance(spec, dict) or spec.get("dist") not in DISTRIBUTIONS:
            raise r.fail(where, f"needs dist: one of {', '.join(sorted(DISTRIBUTIONS))}")
        params = {k: r.number(spec, k, where) for k in spec if k != "dist"}
        _check_distribution(r, where, str(spec["dist"]), params)
        specs.append(Uncertain(key, str(spec["dist"]), params))
    with_dist = {s.driver for s in specs}
    correlations = []
    for i, triple in enumerate(raw.get("correlation") or []):
        where = f"uncertainty.correlation.{i}"
        if not (isinstance(triple, list) and len(triple) == 3 and isinstance(triple[2], (int, float))
                and -1 < triple[2] < 1):
            raise r.fail(where, "must be [driver, driver, coefficient strictly between -1 and 1]")
        a, b = str(triple[0]), str(triple[1])
        if a not in with_dist or b not in with_dist or a == b:
            raise r.fail(where, f"{a!r} and {b!r} must be two different drivers that have a distribution")
        correlations.append((a, b, float(triple[2])))
    return specs, correlations


def _check_distribution(r: _Reader, where: str, dist: str, p: dict[str, float]) -> None:
    needs = {"triangular": ("low", "mode", "high"), "pert": ("low", "mode", "high"), "uniform": ("low", "high"),
             "normal": ("mean", "sd"), "lognormal": ("mean", "sd")}[dist]
    missing = [k for k in needs if k not in p]
    if missing:
        raise r.fail(where, f"{dist} needs {', '.join(needs)}; missing {', '.join(missing)}")
    unknown = sorted(set(p) - set(needs))
    if unknown:
        raise r.fail(where, f"{dist} takes {', '.join(needs)}, not {', '.join(unknown)}")
    if "low" in needs and not p["low"] <= p.get("mode", p["low"]) <= p["high"]:
        raise r.fail(where, "needs low <= mode <= high")
    if "low" in needs and (p["low"] >= p["high"] or p["low"] < 0):
        raise r.fail(where, "needs 0 <= low < high (the values are multipliers of the base amount)")
    if "sd" in needs and p["sd"] <= 0:
        raise r.fail(where, "needs sd > 0")
    if dist == "lognormal" and p["mean"] <= 0:
        raise r.fail(where, "needs a positive mean")


def _risks(r: _Reader, data: dict[str, Any], drivers: set[str]) -> list[Risk]:
    risks = []
    for where, item in r.items(data, "risks"):
        category = str(item.get("category", ""))
        if category not in RISK_CATEGORIES:
            raise r.fail(f"{where}.category", f"{category!r} is not one of {', '.join(sorted(RISK_CATEGORIES))}")
        impact = r.mapping(item, "impact", where)
        driver = str(impact.get("driver", ""))
        if driver not in drivers:
            raise r.fail(f"{where}.impact.driver", f"{driver!r} is not a driver; drivers are capex, opex, "
                         "benefits and the benefit names")
        risks.append(Risk(_name(item, where), category,
                          r.number(item, "probability", where, minimum=0, maximum=1), driver,
                          r.number(impact, "change", f"{where}.impact", minimum=-1, maximum=10)))
    return risks


def _input_output(r: _Reader, data: dict[str, Any]) -> dict[str, Any] | None:
    raw = r.mapping(data, "input_output")
    if not raw:
        return None
    table = raw.get("table")
    if not isinstance(table, (str, dict)):
        raise r.fail("input_output.table", "must name a CSV file or a pymrio folder, or be an inline table")
    fmt = raw.get("format")
    if fmt is not None and fmt not in ("csv", "pymrio"):
        raise r.fail("input_output.format", f"must be csv or pymrio, not {fmt!r}")
    shock_raw = r.mapping(raw, "shock", "input_output")
    if not shock_raw:
        raise r.fail("input_output.shock", "must map sectors to the project's spending in each")
    shock = {str(k): r.number(shock_raw, k, "input_output.shock", minimum=0) for k in shock_raw}
    pymrio = r.mapping(raw, "pymrio", "input_output")
    return {"table": table, "format": fmt, "shock": shock, "pymrio": pymrio,
            "unit": r.number(raw, "unit", "input_output", default=1.0, above=0),
            "employment_unit": str(raw.get("employment_unit", ""))}


def _swot(r: _Reader, data: dict[str, Any]) -> dict[str, list[SwotItem]]:
    raw = r.mapping(data, "swot")
    if not raw:
        return {}
    unknown = sorted(set(raw) - set(SWOT_PARTS))
    if unknown:
        raise r.fail(f"swot.{unknown[0]}", f"is not one of {', '.join(SWOT_PARTS)}")
    out: dict[str, list[SwotItem]] = {}
    for part in SWOT_PARTS:
        out[part] = []
        for where, item in r.items(raw, part, "swot"):
            if not item.get("text"):
                raise r.fail(where, "needs text, weight and rating")
            out[part].append(SwotItem(str(item["text"]), r.number(item, "weight", where, minimum=0, maximum=1),
                                      r.number(item, "rating", where, minimum=1, maximum=4)))
    for side, parts in (("internal", ("strengths", "weaknesses")), ("external", ("opportunities", "threats"))):
        weights = sum(i.weight for part in parts for i in out[part])
        if abs(weights - 1.0) > 1e-6:
            raise r.fail(f"swot.{parts[0]}", f"the {' and '.join(parts)} weights ({side} factors) must sum to 1, "
                         f"they sum to {weights:.3g}")
    return out
