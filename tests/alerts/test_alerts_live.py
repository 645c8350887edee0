"""Alert rules over real HTTP on both engines: each rule kind turns the changes that cross it into Alert entities."""

from __future__ import annotations

import time
from typing import Any

import httpx
from tests.helpers import problem

BRIDGE = "urn:ngsi-ld:Bridge:B1"


def alerts(client: httpx.Client, expected: int, settle: float = 0.5) -> list[dict]:
    """Poll until `expected` alerts exist, then wait `settle` seconds to catch any that should not be there."""
    deadline = time.monotonic() + 15
    found: list[dict] = []
    while time.monotonic() < deadline:
        r = client.get("/entities", params={"type": "Alert", "options": "keyValues", "limit": 100})
        found = r.json() if r.status_code == 200 else []
        if len(found) >= expected:
            break
        time.sleep(0.1)
    time.sleep(settle)
    r = client.get("/entities", params={"type": "Alert", "options": "keyValues", "limit": 100})
    return r.json() if r.status_code == 200 else found


def feed(client: httpx.Client, values: list[float], *, start_minute: int = 0, step_seconds: int = 60) -> None:
    """Create the bridge, then send each value as a new observation `step_seconds` apart."""
    bridge = {"id": BRIDGE, "type": "Bridge",
              "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.2, 30.23]}}}
    assert client.post("/entities", json=bridge).status_code == 201
    for n, value in enumerate(values):
        seconds = (start_minute * 60) + n * step_seconds
        stamp = f"2025-06-16T{10 + seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}Z"
        r = client.post(f"/entities/{BRIDGE}/attrs", json={
            "deflection": {"type": "Property", "value": value, "observedAt": stamp}})
        assert r.status_code == 204, r.text


def add_rule(server: Any, tenant: str, **rule: Any) -> httpx.Client:
    api = httpx.Client(base_url=server.url, headers={"NGSILD-Tenant": tenant}, timeout=30)
    body = {"id": "r1", "name": "Deck deflection", "entityType": "Bridge", "attribute": "deflection",
            "category": "infrastructure", "subCategory": "structuralDeformation", **rule}
    r = api.post("/alerts/rules", json=body)
    assert r.status_code == 201, r.text
    return api


def test_rules_crud_and_validation(server: Any, tenant: str) -> None:
    api = add_rule(server, tenant, kind="threshold", tiers=[{"severity": "medium", "above": 20}])
    problem(api.post("/alerts/rules", json={"id": "r1", "entityType": "Bridge", "attribute": "deflection",
                                            "kind": "threshold", "tiers": [{"severity": "low", "above": 1}]}),
            409, "AlreadyExists")
    problem(api.post("/alerts/rules", json={"id": "x", "entityType": "B", "attribute": "a", "kind": "magic"}), 400,
            "BadRequestData")
    problem(api.post("/alerts/rules", json={"id": "x", "entityType": "B", "attribute": "a", "kind": "threshold",
                                            "tiers": [{"severity": "dire", "above": 1}]}), 400, "BadRequestData")
    problem(api.post("/alerts/rules", json={"id": "x", "entityType": "B", "attribute": "a", "kind": "rate",
                                            "maxRate": 1, "q": "a>>1"}), 400, "BadRequestData")
    assert [r["id"] for r in api.get("/alerts/rules").json()] == ["r1"]
    assert api.put("/alerts/rules/r1", json={"entityType": "Bridge", "attribute": "deflection", "kind": "threshold",
                                             "tiers": [{"severity": "high", "above": 30}]}).status_code == 204
    assert api.get("/alerts/rules/r1").json()["tiers"] == [{"severity": "high", "above": 30}]
    assert api.delete("/alerts/rules/r1").status_code == 204
    problem(api.get("/alerts/rules/r1"), 404, "ResourceNotFound")
    # Another tenant's rules are not visible.
    assert httpx.get(f"{server.url}/alerts/rules", headers={"NGSILD-Tenant": tenant + "x"}).json() == []


def test_threshold_tiers_raise_an_alert_on_each_escalation(client: httpx.Client, server: Any, tenant: str) -> None:
    add_rule(server, tenant, kind="threshold",
             tiers=[{"severity": "medium", "above": 20}, {"severity": "critical", "above": 30}])
    feed(client, [5, 12, 22, 23, 31, 10, 21])
    raised = alerts(client, 3)
    # 22 enters medium, 23 stays medium (no alert), 31 escalates, 10 clears, 21 enters medium again.
    assert [a["severity"] for a in sorted(raised, key=lambda a: a["dateIssued"])] == ["medium", "critical", "medium"]
    critical = next(a for a in raised if a["severity"] == "critical")
    assert critical["alertSource"] == BRIDGE and critical["category"] == "infrastructure"
    assert critical["subCategory"] == "structuralDeformation" and critical["dateIssued"] == "2025-06-16T10:04:00Z"
    assert critical["location"] == {"type": "Point", "coordinates": [120.2, 30.23]} and "31" in critical["description"]


def test_rate_of_change(client: httpx.Client, server: Any, tenant: str) -> None:
    add_rule(server, tenant, kind="rate", maxRate=2.0, per="minute", severity="high")
    feed(client, [10, 11, 12, 13, 20, 20.5])  # one step of 7 mm in a minute
    raised = alerts(client, 1)
    assert len(raised) == 1 and raised[0]["severity"] == "high" and raised[0]["dateIssued"] == "2025-06-16T10:04:00Z"


def test_ewma_detects_a_small_sustained_shift(client: httpx.Client, server: Any, tenant: str) -> None:
    add_rule(server, tenant, kind="ewma", mean=10.0, sigma=1.0, **{"lambda": 0.2, "L": 3.0}, severity="medium")
    in_control = [10.3, 9.6, 10.1, 9.9, 10.4, 9.8, 10.0, 10.2]
    shifted = [11.6, 11.4, 11.8, 11.5, 11.7, 11.6, 11.9, 11.5]  # +1.6 sigma: no single value is alarming
    feed(client, in_control + shifted)
    raised = alerts(client, 1)
    assert len(raised) == 1 and raised[0]["severity"] == "medium" and "EWMA" in raised[0]["description"]
    assert raised[0]["dateIssued"] > "2025-06-16T10:08:00Z"  # only after the shift began


def test_cusum_on_residuals_after_warmup(client: httpx.Client, server: Any, tenant: str) -> None:
    add_rule(server, tenant, kind="cusum", warmup=10, k=0.5, h=5, severity="high")
    warm = [10.0, 10.2, 9.8, 10.1, 9.9, 10.0, 10.2, 9.8, 10.1, 9.9]  # learns mean 10, sigma ~0.15
    feed(client, warm + [10.0, 10.1, 9.9, 10.4, 10.5, 10.45, 10.5, 10.55])
    raised = alerts(client, 1)
    assert len(raised) >= 1 and all(a["severity"] == "high" for a in raised)
    first = min(raised, key=lambda a: a["dateIssued"])
    assert "upward" in first["description"] and first["dateIssued"] >= "2025-06-16T10:13:00Z"


def test_alerts_reach_subscribers_like_any_change(client: httpx.Client, server: Any, tenant: str) -> None:
    add_rule(server, tenant, kind="threshold", tiers=[{"severity": "high", "above": 20}])
    r = client.post("/subscriptions", json={"type": "Subscription", "entities": [{"type": "Alert"}],
                                            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/none"}}})
    assert r.status_code == 201, r.text
    feed(client, [5, 25])
    raised = alerts(client, 1)
    assert len(raised) == 1
    deadline = time.monotonic() + 15
    status: dict = {}
    while time.monotonic() < deadline:
        status = client.get(r.headers["Location"].split("/ngsi-ld/v1", 1)[-1]).json()
        if status.get("notification", {}).get("lastFailure"):
            break
        time.sleep(0.2)
    assert status["notification"].get("lastFailure"), "the Alert never triggered the subscription"
