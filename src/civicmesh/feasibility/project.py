"""The project file: YAML in, a validated Project out. Errors name the line and the field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DISTRIBUTIONS = {"triangular", "pert", "normal", "lognormal", "uniform"}
RISK_CATEGORIES = {"policy", "technical", "market", "operational", "financial"}
BENEFIT_KINDS = {"revenue", "data_product", "time_saved", "energy", "logistics", "other"}


class ProjectError(ValueError):
    """A project file problem, with where it is."""

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
    standalone: float  # what the departments would spend building alone
    schedule: list[float] = field(default_factory=list)  # capex share per year from year 0
    from_year: int = 0
    to_year: int | None = None


@dataclass
class Benefit:
    name: str
    kind: str
    per_year: float
    financial: bool  # cash to the project (financial analysis) or only to society (economic analysis)
    from_year: int
    ramp_years: int


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
class Project:
    name: str
    currency: str
    start_year: int
    horizon: int  # years after year 0
    financial_rate: float
    social_rate: float
    escalation_opex: float
    escalation_benefits: float
    inflation: float
    tax_rate: float
    residual_share: float
    benchmark_payback: float | None
    capex: list[CostItem]
    opex: list[CostItem]
    benefits: list[Benefit]
    financing: dict[str, float]
    revenue_share_investors: float
    uncertainty: list[Uncertain]
    correlations: list[tuple[str, str, float]]
    risks: list[Risk]
    swot: dict[str, list[dict[str, Any]]]
    io: dict[str, Any] | None
    sensitivity_range: float
    base_dir: Path = Path(".")

    @property
    def drivers(self) -> list[str]:
        return ["capex", "opex", *[f"benefit:{b.name}" for b in self.benefits]]

    @property
    def total_capex(self) -> float:
        return sum(c.amount for c in self.capex)


class _Reader:
    """Reads fields out of the YAML mapping and remembers their line numbers for error messages."""

    def __init__(self, lines: dict[str, int]) -> None:
        self.lines = lines

    def fail(self, where: str, message: str) -> ProjectError:
        line = self.lines.get(where)
        while line is None and "." in where:
            where_parent = where.rsplit(".", 1)[0]
            line = self.lines.get(where_parent)
            where = where_parent if line is None else where
        return ProjectError(where, message, line)

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
        if value != value:
            raise self.fail(path, "must be a number, not NaN")
        if minimum is not None and value < minimum:
            raise self.fail(path, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.fail(path, f"must be at most {maximum}, got {value}")
        if above is not None and value <= above:
            raise self.fail(path, f"must be above {above}, got {value}")
        return float(value)

    def items(self, data: dict[str, Any], key: str, where: str = "") -> list[tuple[str, dict[str, Any]]]:
        path = f"{where}.{key}" if where else key
        value = data.get(key) or []
        if not isinstance(value, list):
            raise self.fail(path, "must be a list")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.fail(f"{path}.{i}", "must be a mapping")
            out.append((f"{path}.{i}", item))
        return out


def _line_map(text: str) -> dict[str, int]:
    """Dotted path -> 1-based line of every key and list item in the YAML text."""
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

    root = yaml.compose(text)
    if root is not None:
        walk(root, "")
    return lines


def load_project(source: str | Path, *, text: str | None = None) -> Project:
    """Parse a project file (path, or YAML/JSON text with `text=`)."""
    base = Path(".")
    if text is None:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProjectError(str(path), f"cannot be read: {exc.strerror}") from exc
        base = path.parent
    try:
        data = yaml.safe_load(text)
        lines = _line_map(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ProjectError("project file", f"is not valid YAML: {getattr(exc, 'problem', exc)}",
                           mark.line + 1 if mark else None) from exc
    if not isinstance(data, dict):
        raise ProjectError("project file", "must be a mapping of fields")
    return parse_project(data, lines, base)


def parse_project(data: dict[str, Any], lines: dict[str, int] | None = None, base: Path = Path(".")) -> Project:
    r = _Reader(lines or {})
    horizon = int(r.number(data, "horizon_years", "", minimum=1, maximum=100))
    discount = data.get("discount") or {}
    if not isinstance(discount, dict):
        raise r.fail("discount", "must be a mapping with financial and social rates")
    financial_rate = r.number(discount, "financial", "discount", default=0.06, above=-1)
    social_rate = r.number(discount, "social", "discount", default=0.08, above=-1)
    escalation = data.get("escalation") or {}
    capex = []
    for where, item in r.items(data, "capex"):
        amount = r.number(item, "amount", where, minimum=0)
        schedule = item.get("schedule") or [1.0]
        if not isinstance(schedule, list) or not all(isinstance(s, (int, float)) and s >= 0 for s in schedule):
            raise r.fail(f"{where}.schedule", "must be a list of non-negative shares per year")
        if abs(sum(schedule) - 1.0) > 1e-6:
            raise r.fail(f"{where}.schedule", f"shares must sum to 1, they sum to {sum(schedule):.4g}")
        if len(schedule) > horizon + 1:
            raise r.fail(f"{where}.schedule", "runs past the horizon")
        capex.append(CostItem(str(item.get("name", f"capex {where}")), amount,
                              r.number(item, "standalone", where, default=amount, minimum=0), list(schedule)))
    if not capex:
        raise r.fail("capex", "needs at least one investment item")
    opex = []
    for where, item in r.items(data, "opex"):
        amount = r.number(item, "per_year", where, minimum=0)
        start = int(r.number(item, "from_year", where, default=0, minimum=0, maximum=horizon))
        opex.append(CostItem(str(item.get("name", f"opex {where}")), amount,
                             r.number(item, "standalone", where, default=amount, minimum=0), from_year=start))
    benefits = []
    for where, item in r.items(data, "benefits"):
        kind = str(item.get("kind", "other"))
        if kind not in BENEFIT_KINDS:
            raise r.fail(f"{where}.kind", f"must be one of {', '.join(sorted(BENEFIT_KINDS))}")
        if kind == "time_saved" and "hours_per_year" in item:
            per_year = r.number(item, "hours_per_year", where, minimum=0) * r.number(
                item, "value_per_hour", where, minimum=0)
        else:
            per_year = r.number(item, "per_year", where, minimum=0)
        benefits.append(Benefit(str(item.get("name", f"benefit {where}")), kind, per_year,
                                bool(item.get("financial", kind in ("revenue", "data_product"))),
                                int(r.number(item, "from_year", where, default=1, minimum=0, maximum=horizon)),
                                int(r.number(item, "ramp_years", where, default=0, minimum=0, maximum=horizon))))
    names = [b.name for b in benefits]
    if len(set(names)) != len(names):
        raise r.fail("benefits", "benefit names must be unique")
    financing_raw = data.get("financing") or {}
    financing = {k: r.number(financing_raw, k, "financing", default=0.0, minimum=0)
                 for k in ("government_budget", "special_funds", "social_capital", "loans")}
    share = financing_raw.get("revenue_share") or {"government": 1.0, "investors": 0.0}
    government = r.number(share, "government", "financing.revenue_share", default=1.0, minimum=0, maximum=1)
    investors = r.number(share, "investors", "financing.revenue_share", default=0.0, minimum=0, maximum=1)
    if abs(government + investors - 1.0) > 1e-6:
        raise r.fail("financing.revenue_share", f"government and investors shares must sum to 1, "
                     f"they sum to {government + investors:.4g}")
    total_capex = sum(c.amount for c in capex)
    funded = sum(financing.values())
    if funded and abs(funded - total_capex) > 1e-6 * max(1.0, total_capex):
        raise r.fail("financing", f"the sources sum to {funded:,.0f} but the investment is {total_capex:,.0f}")
    drivers = {"capex", "opex", "benefits", *[f"benefit:{n}" for n in names], *names}
    uncertainty = []
    for key, spec in (data.get("uncertainty") or {}).items():
        where = f"uncertainty.{key}"
        if key == "correlation":
            continue
        if key not in drivers:
            raise r.fail(where, "is not a driver; drivers are capex, opex, benefits and the benefit names")
        if not isinstance(spec, dict) or spec.get("dist") not in DISTRIBUTIONS:
            raise r.fail(where, f"needs dist: one of {', '.join(sorted(DISTRIBUTIONS))}")
        params = {k: r.number(spec, k, where) for k in spec if k != "dist"}
        _check_distribution(r, where, spec["dist"], params)
        uncertainty.append(Uncertain(key, spec["dist"], params))
    correlations = []
    for i, triple in enumerate((data.get("uncertainty") or {}).get("correlation") or []):
        where = f"uncertainty.correlation.{i}"
        if not (isinstance(triple, list) and len(triple) == 3 and isinstance(triple[2], (int, float))
                and -1 < triple[2] < 1):
            raise r.fail(where, "must be [driver, driver, coefficient between -1 and 1]")
        correlations.append((str(triple[0]), str(triple[1]), float(triple[2])))
    risks = []
    for where, item in r.items(data, "risks"):
        category = str(item.get("category", ""))
        if category not in RISK_CATEGORIES:
            raise r.fail(f"{where}.category", f"must be one of {', '.join(sorted(RISK_CATEGORIES))}")
        impact = item.get("impact") or {}
        driver = str(impact.get("driver", ""))
        if driver not in drivers:
            raise r.fail(f"{where}.impact.driver", f"{driver!r} is not a driver")
        risks.append(Risk(str(item.get("name", where)), category,
                          r.number(item, "probability", where, minimum=0, maximum=1), driver,
                          r.number(impact, "change", f"{where}.impact", minimum=-1)))
    io = data.get("input_output")
    if io is not None and not isinstance(io, dict):
        raise r.fail("input_output", "must be a mapping with table and shock")
    swot = data.get("swot") or {}
    return Project(
        name=str(data.get("name", "unnamed project")), currency=str(data.get("currency", "CNY")),
        start_year=int(r.number(data, "start_year", "", default=2026)), horizon=horizon,
        financial_rate=financial_rate, social_rate=social_rate,
        escalation_opex=r.number(escalation, "opex", "escalation", default=0.0, above=-1),
        escalation_benefits=r.number(escalation, "benefits", "escalation", default=0.0, above=-1),
        inflation=r.number(data, "inflation", "", default=0.0, above=-1),
        tax_rate=r.number(data, "tax_rate", "", default=0.0, minimum=0, maximum=1),
        residual_share=r.number(data, "residual_value", "", default=0.0, minimum=0, maximum=1),
        benchmark_payback=r.number(data, "benchmark_payback_years", "", default=0.0, minimum=0) or None,
        capex=capex, opex=opex, benefits=benefits, financing=financing, revenue_share_investors=investors,
        uncertainty=uncertainty, correlations=correlations, risks=risks, swot=swot, io=io,
        sensitivity_range=r.number(data, "sensitivity_range", "", default=0.2, above=0, maximum=0.9),
        base_dir=base)


def _check_distribution(r: _Reader, where: str, dist: str, p: dict[str, float]) -> None:
    needs = {"triangular": ("low", "mode", "high"), "pert": ("low", "mode", "high"), "uniform": ("low", "high"),
             "normal": ("mean", "sd"), "lognormal": ("mean", "sd")}[dist]
    missing = [k for k in needs if k not in p]
    if missing:
        raise r.fail(where, f"{dist} needs {', '.join(needs)}; missing {', '.join(missing)}")
    if "low" in needs and not p["low"] <= p.get("mode", p["low"]) <= p["high"]:
        raise r.fail(where, "needs low <= mode <= high")
    if "low" in needs and p["low"] >= p["high"]:
        raise r.fail(where, "needs low < high")
    if "sd" in needs and p["sd"] <= 0:
        raise r.fail(where, "needs sd > 0")
    if dist == "lognormal" and p["mean"] <= 0:
        raise r.fail(where, "needs a positive mean")
