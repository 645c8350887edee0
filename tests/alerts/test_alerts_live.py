"""Alert rules over real HTTP: a change that crosses a tier becomes an Alert entity, on both engines."""

from __future__ import annotations

import time

import httpx
from tests.helpers import problem


def alerts(client: httpx.Client, expected: int) -> list[dict]:
    deadline = time.monotonic() + 10
    found: list[dict] = []
    while time.monotonic() < deadline:
        r = client.get("/entities", params={"type": "Alert", "options": "keyValues", "limit": 100})
        found = r.json() if r.status_code == 200 else []
        if len(found) >= expected:
            break
        time.sleep(0.1)
    return found


def test_threshold_rule_raises_alerts_on_escalation_only(client: httpx.Client, server, tenant: str) -> None:
    rule = {"id": "deflection", "name": "Deck deflection", "entityType": "Bridge", "attribute": "deflection",
            "kind": "threshold", "category": "infrastructure", "subCategory": "structuralDeformation",
            "tiers": [{"severity": "medium", "above": 20}, {"severity": "critical", "above": 30}]}
    api = httpx.Client(base_url=server.url, headers={"NGSILD-Tenant": tenant})
    assert api.post("/alerts/rules", json=rule).status_code == 201
    problem(api.post("/alerts/rules", json=rule), 409, "AlreadyExists")
    problem(api.post("/alerts/rules", json={**rule, "id": "x", "kind": "magic"}), 400, "BadRequestData")
    bridge = {"id": "urn:ngsi-ld:Bridge:B1", "type": "Bridge",
              "deflection": {"type": "Property", "value": 5, "observedAt": "2025-06-16T10:00:00Z"},
              "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.2, 30.23]}}}
    client.post("/entities", json=bridge)
    for value, minute in ((12, 1), (22, 2), (23, 3), (31, 4)):
        client.patch("/entities/urn:ngsi-ld:Bridge:B1/attrs/deflection",
                     json={"value": value, "observedAt": f"2025-06-16T10:0{minute}:00Z"})
    raised = alerts(client, 2)
    time.sleep(0.5)
    raised = alerts(client, 2)
    assert sorted(a["severity"] for a in raised) == ["critical", "medium"]  # 23 stays medium: no second alert
    critical = next(a for a in raised if a["severity"] == "critical")
    assert critical["alertSource"] == "urn:ngsi-ld:Bridge:B1" and critical["category"] == "infrastructure"
    assert critical["location"]["coordinates"] == [120.2, 30.23] and "31" in critical["description"]
