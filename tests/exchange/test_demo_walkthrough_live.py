"""The README's data-sharing walk-through, step by step, on the demo city with authentication on, both engines."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import LiveServer
from tests.exchange.conftest import bootstrap_key, client, secure_server
from tests.helpers import problem

TRAFFIC = "urn:ngsi-ld:TrafficFlowObserved:hz-jiangnan-avenue-1-forward"


@pytest.fixture(scope="module")
def demo_city(database_url: str) -> Iterator[tuple[LiveServer, str]]:
    admin = bootstrap_key(database_url)
    live = secure_server(database_url, demo=True, simulator_interval=0)
    yield live, admin
    live.stop()


def test_two_organizations_share_traffic_data(demo_city: Any) -> None:
    live, admin = demo_city
    ctx = {"Link": f'<{live.url}/ngsi-ld/v1/jsonldContexts/demo-city>; rel="http://www.w3.org/ns/json-ld#context"; '
                   'type="application/ld+json"'}
    with client(live, admin) as c:
        orgs = {o["id"]: o for o in c.get("/exchange/organizations").json()}
        assert {"hz-transport", "hz-environment", "hz-urban", "hz-energy", "hz-logistics", "zju-urban-lab"} <= set(orgs)
        keys = {org: c.post(f"/exchange/organizations/{org}/keys", json={
            "subject": f"{org}-operator", "roles": roles, "scopes": ["*"]}).json()["key"]
            for org, roles in (("hz-transport", ["org_admin", "data_steward"]), ("hz-logistics", ["analyst"]))}

    with client(live, keys["hz-transport"], **ctx) as transport, \
            client(live, keys["hz-logistics"], **{**ctx, "civicmesh-purpose": "city-planning"}) as logistics:
        # The transport bureau owns the demo's traffic flows and sees every attribute.
        mine = transport.get(f"/ngsi-ld/v1/entities/{TRAFFIC}")
        assert mine.status_code == 200 and {"laneId", "averageGapDistance", "intensity"} <= set(mine.json())
        # The logistics company owns nothing and may read nothing of it yet; the catalog shows the offer.
        problem(logistics.get(f"/ngsi-ld/v1/entities/{TRAFFIC}"), 403, "Forbidden")
        catalog = logistics.get("/exchange/catalog", params={"q": "traffic"}).json()
        [product] = [p for p in catalog if p["provider"] == "hz-transport"]

        r = logistics.post("/exchange/requests", json={"product": product["id"], "purpose": "city-planning",
                                                       "message": "planning night-time delivery hubs"})
        assert r.status_code == 201, r.text
        request_id = r.json()["id"]
        r = transport.post(f"/exchange/requests/{request_id}/approve", json={
            "reason": "planning use agreed for one year", "duration": "P365D",
            "policy": {"permission": [{"action": "read", "constraint": [
                {"leftOperand": "purpose", "operator": "isA", "rightOperand": "public-service"},
                {"leftOperand": "attribute", "operator": "isAnyOf",
                 "rightOperand": ["intensity", "averageVehicleSpeed", "location"]}]}],
                "prohibition": [{"action": "read", "constraint": [
                    {"leftOperand": "purpose", "operator": "isA", "rightOperand": "commercial"}]}]}})
        assert r.status_code == 200 and r.json()["state"] == "AGREED", r.text

        # Masked reads: only the granted attributes.
        shown = logistics.get(f"/ngsi-ld/v1/entities/{TRAFFIC}").json()
        assert set(shown) - {"id", "type", "@context"} == {"intensity", "averageVehicleSpeed", "location"}
        flows = logistics.get("/ngsi-ld/v1/entities", params={"type": "TrafficFlowObserved", "limit": 100,
                                                              "count": "true"})
        assert flows.headers["NGSILD-Results-Count"] == "68" and len(flows.json()) == 68
        # Other departments' data stays out of reach.
        assert logistics.get("/ngsi-ld/v1/entities", params={"type": "Streetlight"}).json() == []
        # A commercial purpose is prohibited: denied, and explain names the rule.
        denied = problem(logistics.get(f"/ngsi-ld/v1/entities/{TRAFFIC}",
                                       headers={"civicmesh-purpose": "marketing"}), 403, "Forbidden")
        why = logistics.get("/exchange/explain", params={"entity": TRAFFIC, "purpose": "marketing"}).json()
        assert why["decision"] == "denied" and "prohibition[0]" in why["reason"] and "prohibition" in denied["detail"]

    # Open data: anyone reads the public air-quality product, masked to its attributes.
    with client(live, None, **ctx) as anonymous:
        air = anonymous.get("/ngsi-ld/v1/entities", params={"type": "AirQualityObserved", "limit": 100}).json()
        assert len(air) == 10 and all("dataProvider" not in e and "pm25" in e for e in air)

    # Metering and KPIs show the sharing.
    with client(live, admin) as c:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            days = c.get("/exchange/metering/daily").json()
            if any(d["consumer"] == "hz-logistics" and d["provider"] == "hz-transport" for d in days):
                break
            time.sleep(0.2)
        assert any(d["consumer"] == "hz-logistics" and d["provider"] == "hz-transport" for d in days), days
        kpis = c.get("/exchange/kpis").json()
        assert kpis["active_agreements"] >= 1, kpis
