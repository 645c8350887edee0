"""A small ODRL 2.2 evaluator over compact JSON: the subset the exchange enforces at the gate.

Policies are validated when they are created (every problem listed at once) and evaluated per access:
permissions grant, prohibitions override, duties and obligations are returned so they can be shown and attested.
The `attribute` left operand (a civicmesh profile term) does not decide yes/no: on a permission it narrows the
attributes the grant shows, on a prohibition it masks them. `count` is checked against an atomic use counter.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry

ODRL = "http://www.w3.org/ns/odrl/2/"
ACTIONS = {"use", "read", "aggregate", "distribute"}
# ODRL: read, aggregate and distribute are all included in `use`.
_INCLUDED_IN_USE = {"read", "aggregate", "distribute"}
DUTY_ACTIONS = {"attribute", "inform", "obtainConsent", "delete", "anonymize", "compensate"}
OPERATORS = {"eq", "neq", "gt", "gteq", "lt", "lteq", "isA", "hasPart", "isPartOf", "isAllOf", "isAnyOf",
             "isNoneOf"}
_ORDER = {"eq", "neq", "gt", "gteq", "lt", "lteq"}
_SETS = {"eq", "neq", "isA", "hasPart", "isPartOf", "isAllOf", "isAnyOf", "isNoneOf"}
OPERAND_OPERATORS: dict[str, set[str]] = {
    "purpose": _SETS,
    "recipient": _SETS,
    "industry": _SETS,
    "dateTime": _ORDER,
    "elapsedTime": _ORDER,
    "count": {"eq", "lt", "lteq"},
    "spatial": {"isPartOf", "isNoneOf"},
    "attribute": {"isAnyOf", "isNoneOf"},
}
# Operands that shape the grant rather than decide it; they may not sit inside and/or/xone.
_TOP_LEVEL_ONLY = {"attribute", "count"}
LOGICAL = ("and", "or", "xone", "andSequence")
POLICY_TYPES = {"Set", "Offer", "Agreement"}

# A local purpose taxonomy (DPV-like) for `isA`: child -> parent.
PURPOSE_PARENTS = {
    "academic-research": "research", "statistics": "research", "commercial-research": "commercial",
    "marketing": "commercial", "product-development": "commercial", "city-planning": "public-service",
    "traffic-management": "public-service", "emergency-response": "public-service",
    "environmental-monitoring": "public-service",
}

_DURATION = re.compile(r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


class PolicyError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def short(term: Any) -> Any:
    """`odrl:read`, the full IRI and `read` are the same term (expanded vs compact IRIs must not differ)."""
    if isinstance(term, dict) and "@id" in term:
        term = term["@id"]
    if isinstance(term, str):
        if term.startswith(ODRL):
            return term[len(ODRL):]
        if term.startswith("odrl:"):
            return term[5:]
    return term


def duration_seconds(text: str) -> float:
    """ISO 8601 days/hours/minutes/seconds (no years or months: their length is ambiguous)."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match or text in ("P", "PT") or text.endswith("T"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration like P30D or PT12H (years and months are ambiguous)")
    d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
    return d * 86400 + h * 3600 + m * 60 + s


def parse_time(text: Any) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not an ISO 8601 date or date-time")
    return _parse_time(text)


@functools.lru_cache(maxsize=4096)
def _parse_time(text: str) -> datetime:  # policies compare against the same few instants for every entity
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- validation -------------------------------------------------------------------------------------------
def validate(policy: Any) -> dict[str, Any]:
    """Normalise a policy to compact terms, or raise PolicyError listing every problem."""
    problems: list[str] = []
    if not isinstance(policy, dict):
        raise PolicyError(["a policy must be a JSON object"])
    kind = short(policy.get("@type", policy.get("type", "Set")))
    if kind not in POLICY_TYPES:
        problems.append(f"@type {kind!r} is not one of {sorted(POLICY_TYPES)}")
    out: dict[str, Any] = {"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": kind}
    if "uid" in policy:
        out["uid"] = policy["uid"]
    for key in ("permission", "prohibition", "obligation"):
        rules = policy.get(key, [])
        if isinstance(rules, dict):
            rules = [rules]
        if not isinstance(rules, list):
            problems.append(f"{key} must be a list of rules")
            continue
        out[key] = [_rule(rule, f"{key}[{i}]", key, problems) for i, rule in enumerate(rules)]
    if not out.get("permission"):
        problems.append("a policy needs at least one permission (nothing is granted otherwise)")
    unknown = set(policy) - {"@context", "@type", "type", "uid", "permission", "prohibition", "obligation",
                             "assigner", "assignee", "target", "profile", "conflict"}
    problems += [f"unknown policy member {k!r}" for k in sorted(unknown)]
    if policy.get("conflict", "prohibit") not in ("prohibit", "perm", "invalid"):
        problems.append("conflict must be prohibit, perm or invalid")
    if problems:
        raise PolicyError(problems)
    return out


def _rule(rule: Any, where: str, kind: str, problems: list[str]) -> dict[str, Any]:
    if not isinstance(rule, dict):
        problems.append(f"{where} must be an object")
        return {}
    action = short(rule.get("action"))
    if isinstance(action, dict):
        action = short(action.get("rdf:value", action.get("value")))
    allowed = DUTY_ACTIONS if kind == "obligation" else ACTIONS
    if action not in allowed:
        problems.append(f"{where}.action {action!r} is not one of {sorted(allowed)}")
    out: dict[str, Any] = {"action": action}
    constraints = rule.get("constraint", [])
    if isinstance(constraints, dict):
        constraints = [constraints]
    if not isinstance(constraints, list):
        problems.append(f"{where}.constraint must be a list")
        constraints = []
    out["constraint"] = [_constraint(c, f"{where}.constraint[{i}]", problems, top=True)
                         for i, c in enumerate(constraints)]
    if kind == "permission":
        duties = rule.get("duty", [])
        duties = [duties] if isinstance(duties, dict) else duties
        out["duty"] = [_rule(d, f"{where}.duty[{i}]", "obligation", problems) for i, d in enumerate(duties)]
    for extra in ("comment", "uid", "target"):
        if extra in rule:
            out[extra] = rule[extra]
    return out


def _constraint(c: Any, where: str, problems: list[str], *, top: bool) -> dict[str, Any]:
    if not isinstance(c, dict):
        problems.append(f"{where} must be an object")
        return {}
    logical = [op for op in LOGICAL if op in c or "odrl:" + op in c]
    if logical:
        op = logical[0]
        members = c.get(op, c.get("odrl:" + op))
        if isinstance(members, dict) and "@list" in members:
            members = members["@list"]
        if not isinstance(members, list) or not members:
            problems.append(f"{where}.{op} must be a non-empty list of constraints")
            return {}
        return {op: [_constraint(m, f"{where}.{op}[{i}]", problems, top=False) for i, m in enumerate(members)]}
    left, operator = short(c.get("leftOperand")), short(c.get("operator"))
    right = c.get("rightOperand")
    if isinstance(right, dict) and "@value" in right:
        right = right["@value"]
    if left not in OPERAND_OPERATORS:
        problems.append(f"{where}.leftOperand {left!r} is not supported (use one of {sorted(OPERAND_OPERATORS)})")
        return {}
    if operator not in OPERATORS:
        problems.append(f"{where}.operator {operator!r} is not an ODRL operator (one of {sorted(OPERATORS)})")
        return {}
    if operator not in OPERAND_OPERATORS[left]:
        problems.append(f"{where}: operator {operator!r} does not apply to {left!r} "
                        f"(use {sorted(OPERAND_OPERATORS[left])})")
        return {}
    if left in _TOP_LEVEL_ONLY and not top:
        problems.append(f"{where}: {left!r} constraints must sit directly on the rule, not inside and/or/xone")
    if right is None:
        problems.append(f"{where}.rightOperand is missing")
        return {}
    problem = _right_problem(left, operator, right)
    if problem:
        problems.append(f"{where}.rightOperand: {problem}")
    return {"leftOperand": left, "operator": operator, "rightOperand": right}


def _right_problem(left: str, operator: str, right: Any) -> str | None:
    try:
        if left == "dateTime":
            parse_time(right)
        elif left == "elapsedTime":
            duration_seconds(right)
        elif left == "count":
            if isinstance(right, bool) or not isinstance(right, int) or right < 0:
                return "count must be a non-negative integer"
        elif left == "spatial":
            from civicmesh.ngsild.geoquery import parse_geojson_geometry

            geometry = parse_geojson_geometry(right, where="spatial")
            if geometry.geom_type not in ("Polygon", "MultiPolygon"):
                return "spatial needs a GeoJSON Polygon or MultiPolygon"
        elif left == "attribute" or operator in ("isAllOf", "isAnyOf", "isNoneOf"):
            if not isinstance(right, list) or not all(isinstance(v, str) for v in right) or not right:
                return f"{operator} needs a non-empty list of strings"
        elif not isinstance(right, str):
            return f"{left} {operator} needs a string"
    except Exception as exc:  # noqa: BLE001 - every parser's complaint becomes a listed problem
        return str(getattr(exc, "detail", exc))
    return None


# --- evaluation -------------------------------------------------------------------------------------------
@dataclass
class Context:
    """What is known about one access when the policy is evaluated."""

    action: str = "read"
    purpose: str | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    agreed_at: datetime | None = None
    uses: int = 0  # uses counted before this one
    location: BaseGeometry | tuple[float, float] | None = None  # a point as (x, y): no shapely object needed
    recipient: str | None = None
    recipient_kind: str | None = None
    industry: str | None = None
    # Results of the constraints that do not depend on the entity (all but spatial), by constraint identity:
    # share one dict across the entities of one request and each such constraint is checked once.
    memo: dict[Any, Any] | None = None


@dataclass
class Outcome:
    allowed: bool
    rule: str
    explanation: list[str]
    # Short attribute names the grant shows (None: all); masked: names hidden by a prohibition.
    visible: set[str] | None = None
    masked: set[str] = field(default_factory=set)
    duties: list[str] = field(default_factory=list)
    count_limit: int | None = None


def _covers(rule_action: str, action: str) -> bool:
    return rule_action == action or (rule_action == "use" and action in _INCLUDED_IN_USE)


def _purpose_chain(value: str) -> list[str]:
    chain = [value]
    while chain[-1] in PURPOSE_PARENTS and len(chain) < 10:
        chain.append(PURPOSE_PARENTS[chain[-1]])
    return chain


def _set_op(operator: str, value: str | None, right: Any, chain: list[str]) -> bool:
    if value is None:
        return operator in ("neq", "isNoneOf")
    items = right if isinstance(right, list) else [right]
    if operator == "eq":
        return bool(value == right)
    if operator == "neq":
        return bool(value != right)
    if operator in ("isA", "isPartOf"):
        return any(item in chain for item in items)
    if operator == "hasPart":
        return all(item in chain for item in items)
    if operator == "isAnyOf":
        return value in items
    if operator == "isAllOf":
        return all(item == value for item in items)
    return value not in items  # isNoneOf


def _order(operator: str, left: float, right: float) -> bool:
    return {"eq": left == right, "neq": left != right, "gt": left > right, "gteq": left >= right,
            "lt": left < right, "lteq": left <= right}[operator]


_SHAPES: dict[int, tuple[Any, Any]] = {}


def polygon(geojson: Any, parse: Any) -> Any:
    """A policy's or product's polygon, parsed (`parse()`) and prepared once, keyed by the GeoJSON object's
    identity (kept alive with it): policies repeat for every entity, so the hot path never serializes them."""
    hit = _SHAPES.get(id(geojson))
    if hit is None or hit[0] is not geojson:
        if len(_SHAPES) > 10_000:
            _SHAPES.clear()
        geometry = parse()
        shapely.prepare(geometry)
        hit = _SHAPES[id(geojson)] = (geojson, geometry)
    return hit[1]


def covers(geojson: Any, parse: Any, location: BaseGeometry | tuple[float, float]) -> bool:
    """Whether the polygon covers an entity's location; a point location is tested by its coordinates."""
    geometry = polygon(geojson, parse)
    if isinstance(location, tuple):  # for a point, "covers" is "intersects"
        return bool(shapely.intersects_xy(geometry, location[0], location[1]))
    return bool(geometry.covers(location))


def check(c: dict[str, Any], ctx: Context) -> tuple[bool, str]:
    """One boolean constraint: (satisfied, a sentence saying what was compared)."""
    for op in LOGICAL:
        if op in c:
            results = [check(m, ctx) for m in c[op]]
            passed = sum(1 for ok, _ in results if ok)
            ok = passed == len(results) if op in ("and", "andSequence") else (
                passed >= 1 if op == "or" else passed == 1)
            inner = "; ".join(("✓ " if r else "✗ ") + text for r, text in results)
            return ok, f"{op}({inner})"
    if c["leftOperand"] != "spatial" and ctx.memo is not None:
        hit = ctx.memo.get(id(c))
        if hit is None:
            hit = ctx.memo[id(c)] = _leaf(c, ctx)
        return hit
    return _leaf(c, ctx)


def _leaf(c: dict[str, Any], ctx: Context) -> tuple[bool, str]:
    left, operator, right = c["leftOperand"], c["operator"], c["rightOperand"]
    if left == "purpose":
        ok = _set_op(operator, ctx.purpose, right, _purpose_chain(ctx.purpose) if ctx.purpose else [])
        return ok, f"purpose {ctx.purpose!r} {operator} {right!r}"
    if left == "recipient":
        chain = [v for v in (ctx.recipient, ctx.recipient_kind) if v]
        ok = _set_op(operator, ctx.recipient, right, chain)
        return ok, f"recipient {ctx.recipient!r} ({ctx.recipient_kind}) {operator} {right!r}"
    if left == "industry":
        ok = _set_op(operator, ctx.industry, right, [ctx.industry] if ctx.industry else [])
        return ok, f"industry {ctx.industry!r} {operator} {right!r}"
    if left == "dateTime":
        ok = _order(operator, ctx.now.timestamp(), parse_time(right).timestamp())
        return ok, f"now {ctx.now.strftime('%Y-%m-%dT%H:%M:%SZ')} {operator} {right}"
    if left == "elapsedTime":
        if ctx.agreed_at is None:
            return False, "elapsedTime needs an agreement start and there is none"
        elapsed = (ctx.now - ctx.agreed_at).total_seconds()
        ok = _order(operator, elapsed, duration_seconds(right))
        return ok, f"elapsed {int(elapsed)}s since the agreement {operator} {right}"
    if left == "count":
        ok = _order(operator, ctx.uses + 1, float(right))
        return ok, f"use number {ctx.uses + 1} {operator} {right}"
    if left == "spatial":
        from civicmesh.ngsild.geoquery import parse_geojson_geometry

        if ctx.location is None:
            return False, "spatial: the entity has no location"
        inside = covers(right, lambda: parse_geojson_geometry(right, where="spatial"), ctx.location)
        ok = inside if operator == "isPartOf" else not inside
        return ok, f"entity location {'inside' if inside else 'outside'} the {operator} polygon"
    return True, f"{left} shapes the grant"  # attribute: handled by the caller


def _attribute_constraints(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in rule.get("constraint", []) if c.get("leftOperand") == "attribute"]


def _count_limit(rule: dict[str, Any]) -> int | None:
    limits = []
    for c in rule.get("constraint", []):
        if c.get("leftOperand") == "count":
            n = int(c["rightOperand"])
            limits.append(n - 1 if c["operator"] == "lt" else n)
    return min(limits) if limits else None


def _duty_text(duty: dict[str, Any]) -> str:
    return str(duty.get("comment") or duty["action"])


def evaluate(policy: dict[str, Any], ctx: Context, attributes: set[str]) -> Outcome:
    """Decide one access. `attributes` are the short names of the entity's attributes.

    Prohibitions are looked at first: one that applies to the whole entity overrides every permission, and the
    answer names it even when no permission would have granted the access either.

    With a `ctx.memo` shared by the entities of one request, the outcome depends only on the attribute names
    and on where the entity lies relative to the policy's spatial constraints, so it is worked out once per
    such combination.
    """
    if ctx.memo is None:
        return _evaluate(policy, ctx, attributes)
    leaves = ctx.memo.get(("spatial", id(policy)))
    if leaves is None:
        leaves = ctx.memo[("spatial", id(policy))] = spatial_constraints(policy)
    key = (id(policy), ctx.action, frozenset(attributes), tuple(check(c, ctx)[0] for c in leaves))
    outcome = ctx.memo.get(key)
    if outcome is None:
        outcome = ctx.memo[key] = _evaluate(policy, ctx, attributes)
    return outcome


def spatial_constraints(node: Any, out: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every spatial constraint of a policy, at any depth: the only ones whose outcome depends on the entity."""
    out = [] if out is None else out
    if isinstance(node, dict):
        if node.get("leftOperand") == "spatial":
            out.append(node)
        for value in node.values():
            spatial_constraints(value, out)
    elif isinstance(node, list):
        for item in node:
            spatial_constraints(item, out)
    return out


def _evaluate(policy: dict[str, Any], ctx: Context, attributes: set[str]) -> Outcome:
    explanation: list[str] = []
    masked: set[str] = set()
    for i, rule in enumerate(policy.get("prohibition", [])):
        name = f"prohibition[{i}] ({rule['action']})"
        if rule["action"] != ctx.action and rule["action"] != "use":
            continue
        results = [check(c, ctx) for c in rule.get("constraint", []) if c.get("leftOperand") != "attribute"]
        if not all(ok for ok, _ in results):
            explanation.append(f"{name}: does not apply")
            continue
        attribute_rules = _attribute_constraints(rule)
        if not attribute_rules:
            why = "; ".join(t for _, t in results) or "unconditional"
            explanation.append(f"{name}: applies ({why}) and overrides every permission")
            return Outcome(False, name, explanation)
        for c in attribute_rules:
            names = set(c["rightOperand"])
            masked |= (attributes & names) if c["operator"] == "isAnyOf" else (attributes - names)
        explanation.append(f"{name}: masks {sorted(masked)}")
    visible: set[str] | None = set()
    granted_by: list[str] = []
    duties: list[str] = []
    count_limit: int | None = None
    for i, rule in enumerate(policy.get("permission", [])):
        name = f"permission[{i}] ({rule['action']})"
        if not _covers(rule["action"], ctx.action):
            explanation.append(f"{name}: does not cover action {ctx.action!r}")
            continue
        results = [check(c, ctx) for c in rule.get("constraint", []) if c.get("leftOperand") != "attribute"]
        failed = [text for ok, text in results if not ok]
        if failed:
            explanation.append(f"{name}: not satisfied: " + "; ".join(failed))
            continue
        explanation.append(f"{name}: satisfied" + (": " + "; ".join(t for _, t in results) if results else ""))
        granted_by.append(name)
        limit = _count_limit(rule)
        if limit is not None:
            count_limit = limit if count_limit is None else min(count_limit, limit)
        shown = set(attributes)
        for c in _attribute_constraints(rule):
            names = set(c["rightOperand"])
            shown = shown & names if c["operator"] == "isAnyOf" else shown - names
        visible = None if visible is None else visible | shown
        duties += [_duty_text(d) for d in rule.get("duty", [])]
    if not granted_by:
        return Outcome(False, "no permission", explanation or ["the policy has no permission for this action"])
    shown = (set(attributes) if visible is None else visible) - masked
    if attributes and not shown:
        return Outcome(False, "all attributes masked", explanation + ["no attribute is left to show"])
    duties += [_duty_text(o) for o in policy.get("obligation", [])]
    return Outcome(True, granted_by[0], explanation, visible=shown, masked=set(attributes) - shown,
                   duties=duties, count_limit=count_limit)
