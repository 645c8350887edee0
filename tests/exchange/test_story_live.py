"""The whole flow, live over HTTP on both engines: offer, request, approve with ODRL, masked reads, denial with
an explanation, metering and KPIs; then the attacks each room must turn away."""

from __future__ import annotations

import uuid
from typing import Any

from tests.exchange.conftest import client
from tests.helpers import problem

INSIDE = [[[120.0, 30.0], [120.2, 30.0], [120.2, 30.2], [120.0, 30.2], [120.0, 30.0]]]
AREA = {"type": "Polygon", "coordinates": INSIDE}
LD = {"Content-Type": "application/ld+json"}


def flow(entity_id: str, lon: float, lat: float) -> dict[str, Any]:
    return {"id": entity_id, "type": "TrafficFlowObserved",
            "speed": {"type": "Property", "value": 42},
            "occupancy": {"type": "Property", "value": 0.3},
            "operatorNote": {"type": "Property", "value": "internal"},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
            "@context": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"}


def setup_orgs(live: Any, admin: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:6]
    a, b = f"traffic-{tag}", f"logistics-{tag}"
    with client(live, admin) as c:
        for org, kind, sector, dept in ((a, "department", "transport", f"traffic{tag}"),
                                        (b, "enterprise", "logistics", None)):
            body = {"id": org, "kind": kind, "sector": sector, "tenants": ["", f"t{tag}"],
                    "name": {"zh": "组织" + org, "en": org}, "citizen_department": dept}
            assert c.post("/exchange/organizations", json=body).status_code == 201
        keys = {
            "key_a": c.post(f"/exchange/organizations/{a}/keys", json={
                "subject": "alice", "roles": ["org_admin", "data_steward"], "scopes": ["*"]}).json()["key"],
            "key_b": c.post(f"/exchange/organizations/{b}/keys", json={
                "subject": "bob", "roles": ["analyst"], "scopes": ["entities:read", "entities:write", "exchange"]}
                ).json()["key"],
        }
    return {"a": a, "b": b, "tenant": f"t{tag}", **keys}


def test_full_story(secure: Any) -> None:
    live, admin = secure
    s = setup_orgs(live, admin)
    tenant = {"NGSILD-Tenant": s["tenant"]}
    inside, outside = f"urn:ngsi-ld:TrafficFlowObserved:{uuid.uuid4().hex[:8]}", \
        f"urn:ngsi-ld:TrafficFlowObserved:{uuid.uuid4().hex[:8]}"
    with client(live, s["key_a"]) as a, client(live, s["key_b"], **{"civicmesh-purpose": "city-planning"}) as b:
        # Department A writes its own entities; they are A's.
        for eid, lon in ((inside, 120.1), (outside, 121.5)):
            r = a.post("/ngsi-ld/v1/entities", json=flow(eid, lon, 30.1), headers={**LD, **tenant})
            assert r.status_code == 201, r.text
        assert a.get(f"/ngsi-ld/v1/entities/{inside}", headers=tenant).json()["operatorNote"]["value"] == "internal"

        # B has no agreement: nothing to read, nothing to change.
        problem(b.get(f"/ngsi-ld/v1/entities/{inside}", headers=tenant), 403, "Forbidden")
        assert b.get("/ngsi-ld/v1/entities", params={"type": "TrafficFlowObserved"}, headers=tenant).json() == []
        problem(b.patch(f"/ngsi-ld/v1/entities/{inside}/attrs", json={"speed": {"type": "Property", "value": 1}},
                        headers=tenant), 403, "Forbidden")
        problem(b.delete(f"/ngsi-ld/v1/entities/{inside}", headers=tenant), 403, "Forbidden")
        problem(b.post("/ngsi-ld/v1/entities", json=flow(inside, 120.1, 30.1), headers={**LD, **tenant}),
                403, "Forbidden")

        # A offers a product.
        r = a.post("/exchange/products", json={
            "title": {"zh": "实时路况", "en": "Live traffic flow"},
            "description": {"zh": "城区道路车速", "en": "Road speeds in the city centre"},
            "sector": "transport", "updateFrequency": "continuous", "licence": "https://creativecommons.org/licenses/by/4.0/",
            "tenant": s["tenant"], "entityTypes": ["TrafficFlowObserved"],
            "attributes": ["speed", "occupancy", "location"], "area": AREA, "keywords": ["traffic"],
            "offer": {"permission": [{"action": "read"}]}})
        assert r.status_code == 201, r.text
        product = r.json()["id"]
        found = b.get("/exchange/catalog", params={"q": "traffic speeds"}).json()
        assert product in [p["id"] for p in found]

        # B asks; A approves with its own ODRL policy.
        r = b.post("/exchange/requests", json={"product": product, "purpose": "city-planning"})
        assert r.status_code == 201, r.text
        nid = r.json()["id"]
        assert r.json()["state"] == "REQUESTED"
        problem(b.post(f"/exchange/requests/{nid}/approve", json={}), 403, "Forbidden")
        policy = {"permission": [{"action": "read", "constraint": [
            {"leftOperand": "purpose", "operator": "isA", "rightOperand": "public-service"},
            {"leftOperand": "count", "operator": "lteq", "rightOperand": 3},
            {"leftOperand": "spatial", "operator": "isPartOf", "rightOperand": AREA},
            {"leftOperand": "attribute", "operator": "isAnyOf", "rightOperand": ["speed", "location"]}],
            "duty": [{"action": "attribute", "comment": "credit the traffic department"}]}],
            "prohibition": [{"action": "read", "constraint": [
                {"leftOperand": "purpose", "operator": "eq", "rightOperand": "commercial"}]}]}
        r = a.post(f"/exchange/requests/{nid}/approve", json={"policy": policy, "reason": "planning use is fine"})
        assert r.status_code == 200, r.text
        agreement = r.json()
        assert agreement["state"] == "AGREED" and agreement["policy"]["@type"] == "Agreement"
        assert [t["to_state"] for t in agreement["transitions"]] == ["REQUESTED", "AGREED"]
        assert agreement["transitions"][1]["reason"] == "planning use is fine"

        # Use 1: a query shows only the entity inside the area, with only the permitted attributes.
        got = b.get("/ngsi-ld/v1/entities", params={"type": "TrafficFlowObserved"}, headers=tenant).json()
        assert [e["id"] for e in got] == [inside]
        assert set(got[0]) - {"id", "type", "@context"} == {"speed", "location"}
        # Use 2: retrieve. The entity outside the area stays hidden.
        assert "occupancy" not in b.get(f"/ngsi-ld/v1/entities/{inside}", headers=tenant).json()
        # A commercial purpose is prohibited: denied, and the answer says which rule.
        denied = problem(b.get(f"/ngsi-ld/v1/entities/{inside}",
                               headers={**tenant, "civicmesh-purpose": "commercial"}), 403, "Forbidden")
        assert "prohibition[0]" in denied["detail"]
        why = b.get("/exchange/explain", params={"entity": inside, "tenant": s["tenant"],
                                                 "purpose": "commercial"}).json()
        assert why["decision"] == "denied" and "prohibition[0]" in why["reason"]
        ok = b.get("/exchange/explain", params={"entity": inside, "tenant": s["tenant"]}).json()
        assert ok["decision"] == "masked" and ok["obligations"] == ["credit the traffic department"]
        assert any(a.endswith("occupancy") for a in ok["masked_attributes"])
        # Uses 3 and then 4: the count limit holds.
        assert b.get(f"/ngsi-ld/v1/entities/{inside}", headers=tenant).status_code == 200
        limit = problem(b.get(f"/ngsi-ld/v1/entities/{inside}", headers=tenant), 403, "Forbidden")
        assert "count limit of 3" in limit["detail"]
        # Agreements never grant writes.
        problem(b.patch(f"/ngsi-ld/v1/entities/{inside}/attrs", json={"speed": {"type": "Property", "value": 1}},
                        headers=tenant), 403, "Forbidden")

        # Metering: A sees B's accesses under the agreement, masked, and the denials.
        records = a.get("/exchange/metering", params={"agreement": nid}).json()
        statuses = [r["status"] for r in records]
        assert statuses.count("masked") == 3 and statuses.count("denied") >= 2
        assert all(r["consumer"] == s["b"] and r["provider"] == s["a"] for r in records)
        daily = a.get("/exchange/metering/daily").json()
        assert any(d["consumer"] == s["b"] and d["provider"] == s["a"] and d["requests"] >= 5 for d in daily)
        kpis = a.get("/exchange/kpis").json()
        assert kpis["active_agreements"] >= 1 and kpis["products_with_active_agreement"] >= 1
        assert kpis["reads_served_across_organizations"] >= 3 and kpis["response_time_hours"]["answered"] >= 1
        assert any(row["organization"] == s["a"] and row["provided"] >= 3 for row in kpis["organization_balance"])
        assert a.get("/exchange/kpis.csv").text.startswith("metric,value")

        # Revocation ends access at once.
        r = a.post(f"/exchange/requests/{nid}/revoke", json={"reason": "project over"})
        assert r.json()["state"] == "REVOKED"
        problem(b.get(f"/ngsi-ld/v1/entities/{inside}", headers=tenant), 403, "Forbidden")
        problem(a.post(f"/exchange/requests/{nid}/approve", json={}), 409, "Conflict")


def test_dcat_export(secure: Any) -> None:
    live, admin = secure
    s = setup_orgs(live, admin)
    with client(live, s["key_a"]) as a:
        r = a.post("/exchange/products", json={
            "title": {"zh": "空气质量", "en": "Air quality"},
            "description": {"zh": "站点读数", "en": "Station readings"},
            "sector": "environment", "updateFrequency": "hourly", "licence": "CC-BY-4.0",
            "entityTypes": ["AirQualityObserved"], "public": True})
        assert r.status_code == 201, r.text
    with client(live) as anonymous:
        doc = anonymous.get("/exchange/dcat").json()
        ttl = anonymous.get("/exchange/dcat", params={"format": "turtle"}).text
    dataset = next(d for d in doc["dcat:dataset"] if d["@id"] == r.json()["id"])
    assert {"@value": "空气质量", "@language": "zh"} in dataset["dct:title"]
    assert dataset["dct:accrualPeriodicity"]["@id"].endswith("/HOURLY")
    assert dataset["dcat:distribution"][0]["dcat:accessURL"]["@id"].endswith("/ngsi-ld/v1/entities")
    try:
        import rdflib
    except ImportError:
        return
    graph = rdflib.Graph().parse(data=ttl, format="turtle")
    dcat = rdflib.Namespace("http://www.w3.org/ns/dcat#")
    assert (rdflib.URIRef(r.json()["id"]), rdflib.RDF.type, dcat.Dataset) in graph


def test_request_timeout_and_counter_offer(secure: Any) -> None:
    import time

    live, admin = secure
    s = setup_orgs(live, admin)
    with client(live, s["key_a"]) as a, client(live, s["key_b"]) as b:
        product = a.post("/exchange/products", json={
            "title": {"zh": "停车", "en": "Parking"}, "description": {"zh": "车位", "en": "Spots"},
            "sector": "transport", "updateFrequency": "daily", "licence": "CC-BY-4.0",
            "entityTypes": ["ParkingSpot"], "requestTimeout": "PT1S"}).json()["id"]
        first = b.post("/exchange/requests", json={"product": product, "purpose": "research"}).json()["id"]
        second = b.post("/exchange/requests", json={"product": product, "purpose": "research"}).json()["id"]
        r = a.post(f"/exchange/requests/{second}/counter", json={
            "reason": "read only, for 30 days", "duration": "P30D",
            "policy": {"permission": [{"action": "read"}]}})
        assert r.json()["state"] == "OFFERED", r.text
        assert b.post(f"/exchange/requests/{second}/accept", json={}).json()["state"] == "AGREED"
        time.sleep(1.6)  # the request's own timeout, not a speed assertion
        deadline = time.monotonic() + 10
        while b.get(f"/exchange/requests/{first}").json()["state"] != "EXPIRED" and time.monotonic() < deadline:
            time.sleep(0.2)
        expired = b.get(f"/exchange/requests/{first}").json()
        assert expired["state"] == "EXPIRED" and "timed out" in expired["transitions"][-1]["reason"]
        agreed = b.get(f"/exchange/requests/{second}").json()
        assert agreed["state"] == "AGREED" and agreed["expires_at"]
