"""ODRL policy evaluation: every operator, logical constraints, prohibitions, spatial grants, validation — and the
per-request memo gives the same answers as evaluating each entity from scratch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from shapely.geometry import Point

from civicmesh.exchange import odrl

AREA = {"type": "Polygon", "coordinates": [[[120.0, 30.0], [120.2, 30.0], [120.2, 30.2], [120.0, 30.2],
                                            [120.0, 30.0]]]}
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def allowed(constraint: dict[str, Any], **ctx: Any) -> bool:
    policy = odrl.validate({"permission": [{"action": "read", "constraint": [constraint]}]})
    return odrl.evaluate(policy, odrl.Context(now=NOW, **ctx), {"speed"}).allowed


@pytest.mark.parametrize(("operator", "right", "purpose", "expected"), [
    ("eq", "city-planning", "city-planning", True),
    ("eq", "city-planning", "marketing", False),
    ("neq", "marketing", "city-planning", True),
    ("neq", "marketing", "marketing", False),
    ("isA", "public-service", "traffic-management", True),  # through the purpose taxonomy
    ("isA", "public-service", "marketing", False),
    ("isPartOf", "research", "statistics", True),
    ("isPartOf", "research", "city-planning", False),
    ("hasPart", "public-service", "city-planning", True),
    ("hasPart", "research", "city-planning", False),
    ("isAnyOf", ["statistics", "city-planning"], "city-planning", True),
    ("isAnyOf", ["statistics"], "city-planning", False),
    ("isAllOf", ["city-planning"], "city-planning", True),
    ("isAllOf", ["city-planning", "statistics"], "city-planning", False),
    ("isNoneOf", ["marketing"], "city-planning", True),
    ("isNoneOf", ["marketing"], "marketing", False),
])
def test_set_operators_on_purpose(operator: str, right: Any, purpose: str, expected: bool) -> None:
    assert allowed({"leftOperand": "purpose", "operator": operator, "rightOperand": right},
                   purpose=purpose) is expected


@pytest.mark.parametrize(("operator", "right", "expected"), [
    ("gt", "2026-05-31T00:00:00Z", True), ("gt", "2026-06-01T00:00:00Z", False),
    ("gteq", "2026-06-01T00:00:00Z", True), ("lt", "2026-06-02T00:00:00Z", True),
    ("lt", "2026-06-01T00:00:00Z", False), ("lteq", "2026-06-01T00:00:00Z", True),
    ("eq", "2026-06-01T00:00:00Z", True), ("neq", "2026-06-01T00:00:00Z", False),
])
def test_order_operators_on_date_time(operator: str, right: str, expected: bool) -> None:
    assert allowed({"leftOperand": "dateTime", "operator": operator, "rightOperand": right}) is expected


def test_elapsed_time_and_count() -> None:
    within = {"leftOperand": "elapsedTime", "operator": "lteq", "rightOperand": "P30D"}
    assert allowed(within, agreed_at=NOW - timedelta(days=29))
    assert not allowed(within, agreed_at=NOW - timedelta(days=31))
    assert not allowed(within)  # no agreement start: nothing has elapsed from
    limit = {"leftOperand": "count", "operator": "lteq", "rightOperand": 3}
    assert allowed(limit, uses=2) and not allowed(limit, uses=3)


def test_logical_constraints() -> None:
    a = {"leftOperand": "purpose", "operator": "eq", "rightOperand": "statistics"}
    b = {"leftOperand": "recipient", "operator": "isA", "rightOperand": "enterprise"}
    ctx = {"purpose": "statistics", "recipient": "org-b", "recipient_kind": "enterprise"}
    assert allowed({"and": [a, b]}, **ctx)
    assert allowed({"or": [a, b]}, purpose="marketing", recipient="org-b", recipient_kind="enterprise")
    assert not allowed({"xone": [a, b]}, **ctx)  # both hold: exactly one is required
    assert allowed({"xone": [a, b]}, purpose="statistics", recipient="x", recipient_kind="research_institute")


def test_prohibition_overrides_and_masks() -> None:
    policy = odrl.validate({
        "permission": [{"action": "use", "constraint": [
            {"leftOperand": "attribute", "operator": "isAnyOf", "rightOperand": ["speed", "occupancy", "note"]}]}],
        "prohibition": [
            {"action": "read", "constraint": [
                {"leftOperand": "attribute", "operator": "isAnyOf", "rightOperand": ["note"]}]},
            {"action": "read", "constraint": [
                {"leftOperand": "purpose", "operator": "isA", "rightOperand": "commercial"}]}]})
    fine = odrl.evaluate(policy, odrl.Context(purpose="statistics"), {"speed", "occupancy", "note", "owner"})
    assert fine.allowed and fine.visible == {"speed", "occupancy"}
    assert fine.masked == {"note", "owner"}
    refused = odrl.evaluate(policy, odrl.Context(purpose="marketing"), {"speed"})
    assert not refused.allowed and refused.rule.startswith("prohibition[1]")


def test_spatial_grant_for_points_and_shapes() -> None:
    inside = {"leftOperand": "spatial", "operator": "isPartOf", "rightOperand": AREA}
    assert allowed(inside, location=(120.1, 30.1))
    assert allowed(inside, location=(120.2, 30.1))  # on the boundary: covered
    assert not allowed(inside, location=(121.0, 30.1))
    assert allowed(inside, location=Point(120.1, 30.1).buffer(0.01))
    assert not allowed(inside, location=Point(120.2, 30.1).buffer(0.01))  # reaches outside
    assert not allowed(inside)  # no location, no spatial grant
    outside = {"leftOperand": "spatial", "operator": "isNoneOf", "rightOperand": AREA}
    assert allowed(outside, location=(121.0, 30.1)) and not allowed(outside, location=(120.1, 30.1))


def test_memo_gives_the_same_answers_as_fresh_evaluation() -> None:
    policy = odrl.validate({"permission": [{"action": "read", "constraint": [
        {"leftOperand": "purpose", "operator": "isA", "rightOperand": "public-service"},
        {"leftOperand": "spatial", "operator": "isPartOf", "rightOperand": AREA},
        {"leftOperand": "attribute", "operator": "isNoneOf", "rightOperand": ["note"]}]}]})
    shared = odrl.Context(purpose="city-planning", memo={})
    entities = [((120.1, 30.1), {"speed", "note"}), ((121.0, 30.1), {"speed"}), ((120.15, 30.05), {"speed"}),
                ((120.1, 30.1), {"speed", "note"}), (None, {"speed"}), ((120.05, 30.19), {"occupancy"})]
    for location, names in entities:
        memo = odrl.evaluate(policy, odrl.Context(purpose="city-planning", memo=shared.memo, location=location),
                             names)
        fresh = odrl.evaluate(policy, odrl.Context(purpose="city-planning", location=location), names)
        assert (memo.allowed, memo.rule, memo.visible) == (fresh.allowed, fresh.rule, fresh.visible)


def test_validation_lists_every_problem() -> None:
    with pytest.raises(odrl.PolicyError) as caught:
        odrl.validate({"permission": [{"action": "fly", "constraint": [
            {"leftOperand": "colour", "operator": "eq", "rightOperand": "red"},
            {"leftOperand": "purpose", "operator": "resembles", "rightOperand": "x"},
            {"leftOperand": "count", "operator": "gt", "rightOperand": 3},
            {"leftOperand": "spatial", "operator": "isPartOf", "rightOperand": {"type": "Point",
                                                                                 "coordinates": [1, 2]}}]}]})
    text = " | ".join(caught.value.problems)
    assert len(caught.value.problems) == 5, text
    for fragment in ("'fly'", "'colour'", "'resembles'", "'gt' does not apply to 'count'", "Polygon"):
        assert fragment in text
