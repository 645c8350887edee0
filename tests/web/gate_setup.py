"""A demo city with authentication on, set up through the exchange API the way tests/exchange does: the
environment bureau owns the air-quality stations and grants an enterprise two of their attributes."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tests.conftest import LiveServer
from tests.exchange.conftest import bootstrap_key
from tests.web.conftest import demo_client, demo_server

GRANTED = ["airQualityIndex", "name", "location"]


@dataclass
class GatedCity:
    live: LiveServer
    admin: str
    bureau: str  # organization id of the owner
    enterprise: str
    bureau_key: str
    enterprise_key: str
    stations: list[str]
    traffic_product: str


def in_thread(fn: Any, *args: Any) -> Any:
    """Run `fn` where no event loop is running (Playwright's sync API keeps one in the test's thread)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


def gated_city(database_url: str) -> GatedCity:
    admin = in_thread(bootstrap_key, database_url)
    live = demo_server(database_url, no_auth=False)
    tag = uuid.uuid4().hex[:6]
    bureau, enterprise = f"environment-{tag}", f"acme-logistics-{tag}"
    with demo_client(live, admin) as c:
        for org, kind, sector in ((bureau, "department", "environment"), (enterprise, "enterprise", "logistics")):
            r = c.post("/exchange/organizations", json={"id": org, "kind": kind, "sector": sector, "tenants": [""],
                                                        "name": {"zh": "组织" + org, "en": org}})
            assert r.status_code == 201, r.text
        bureau_key = c.post(f"/exchange/organizations/{bureau}/keys", json={
            "subject": "duty-officer", "roles": ["org_admin", "data_steward"], "scopes": ["*"]}).json()["key"]
        enterprise_key = c.post(f"/exchange/organizations/{enterprise}/keys", json={
            "subject": "analyst", "roles": ["analyst"], "scopes": ["entities:read", "exchange"]}).json()["key"]
        stations = [e["id"] for e in c.get("/ngsi-ld/v1/entities", params={
            "type": "AirQualityObserved", "limit": 100, "options": "keyValues"}).json()]
        flows = [e["id"] for e in c.get("/ngsi-ld/v1/entities", params={
            "type": "TrafficFlowObserved", "limit": 100, "options": "keyValues"}).json()]
        assert len(stations) == 10 and len(flows) == 68
        r = c.post("/exchange/ownership", json={"organization": bureau, "entities": stations + flows})
        assert r.status_code == 200, r.text
    context = f"{live.url}/ngsi-ld/v1/jsonldContexts/demo-city"
    with demo_client(live, bureau_key) as b, demo_client(live, enterprise_key) as e:
        r = b.post("/exchange/products", json={
            "title": {"zh": "空气质量指数", "en": "Air quality index"},
            "description": {"zh": "滨江站点的实时指数", "en": "Live index of the Binjiang stations"},
            "sector": "environment", "updateFrequency": "continuous", "licence": "CC-BY-4.0", "@context": context,
            "entityTypes": ["AirQualityObserved"], "attributes": GRANTED,
            "offer": {"permission": [{"action": "read"}]}})
        assert r.status_code == 201, r.text
        product = r.json()["id"]
        r = b.post("/exchange/products", json={
            "title": {"zh": "实时路况", "en": "Live traffic flow"},
            "description": {"zh": "道路车速", "en": "Road speeds"}, "@context": context,
            "sector": "transport", "updateFrequency": "continuous", "licence": "CC-BY-4.0",
            "entityTypes": ["TrafficFlowObserved"], "offer": {"permission": [{"action": "read"}]}})
        assert r.status_code == 201, r.text
        traffic_product = r.json()["id"]
        r = e.post("/exchange/requests", json={"product": product, "purpose": "fleet-routing"})
        assert r.status_code == 201, r.text
        r = b.post(f"/exchange/requests/{r.json()['id']}/approve", json={
            "policy": {"permission": [{"action": "read"}]}, "reason": "open to logistics planning"})
        assert r.status_code == 200 and r.json()["state"] == "AGREED", r.text
    return GatedCity(live, admin, bureau, enterprise, bureau_key, enterprise_key, stations, traffic_product)
