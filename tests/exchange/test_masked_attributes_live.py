"""Masked attributes never leak: a filter, count, geo or sort term on an attribute the caller may not read acts as
if the attribute did not exist (issue 13, findings 3 and 17), live with authentication on, on both engines."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, drop_postgres, fresh_postgres_url
from tests.exchange.conftest import bootstrap_key, client, secure_server
from tests.exchange.test_screened_reads_live import grant
from tests.exchange.test_story_live import LD, flow, setup_orgs
from tests.ngsild.test_subscriptions_live import Receiver

PURPOSE = {"civicmesh-purpose": "city-planning"}
# The README's walk-through agreement: hz-logistics may read three attributes of hz-transport's traffic flows.
GRANTED = ["intensity", "averageVehicleSpeed", "location"]


@pytest.fixture(scope="module")
def city_database(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of the engine under test for this module alone: the demo city is seeded fresh, with its
    @context hosted at this module's server (a database another module seeded hosts it at that one's port)."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path_factory.mktemp('masking') / 'city.db'}"
        return
    url = fresh_postgres_url("civicmesh_masking")
    yield url
    drop_postgres(url)


@pytest.fixture(scope="module")
def city(city_database: str) -> Iterator[dict[str, Any]]:
    """The demo city with authentication on; hz-logistics holds the walk-through's agreement; hz-transport owns
    one more traffic flow, FLOW, whose occupancy is 0.42 and which has a masked GeoProperty, incidentArea."""
    admin = bootstrap_key(city_database)
    live = secure_server(city_database, demo=True, simulator_interval=0)
    ctx = {"Link": f'<{live.url}/ngsi-ld/v1/jsonldContexts/demo-city>; rel="http://www.w3.org/ns/json-ld#context"; '
                   'type="application/ld+json"'}
    try:
        with client(live, admin) as c:
            keys = {org: c.post(f"/exchange/organizations/{org}/keys", json={
                "subject": f"{org}-operator", "roles": roles, "scopes": ["*"]}).json()["key"]
                for org, roles in (("hz-transport", ["org_admin", "data_steward"]), ("hz-logistics", ["analyst"]))}
        flow_id = f"urn:ngsi-ld:TrafficFlowObserved:masking-{uuid.uuid4().hex[:6]}"
        with client(live, keys["hz-transport"], **ctx) as transport, \
                client(live, keys["hz-logistics"], **ctx, **PURPOSE) as logistics:
            [product] = [p for p in logistics.get("/exchange/catalog", params={"q": "traffic"}).json()
                         if p["provider"] == "hz-transport"]
            r = logistics.post("/exchange/requests", json={"product": product["id"], "purpose": "city-planning"})
            assert r.status_code == 201, r.text
            r = transport.post(f"/exchange/requests/{r.json()['id']}/approve", json={
                "reason": "planning", "policy": {"permission": [{"action": "read", "constraint": [
                    {"leftOperand": "attribute", "operator": "isAnyOf", "rightOperand": GRANTED}]}]}})
            assert r.status_code == 200, r.text
            r = transport.post("/ngsi-ld/v1/entities", json={
                "id": flow_id, "type": "TrafficFlowObserved",
                "intensity": {"type": "Property", "value": 120, "observedAt": "2026-12-01T08:00:00Z"},
                "averageVehicleSpeed": {"type": "Property", "value": 40},
                "occupancy": {"type": "Property", "value": 0.42, "observedAt": "2026-12-01T08:00:00Z"},
                "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.2, 30.2]}},
                "incidentArea": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.21, 30.21]}}})
            assert r.status_code == 201, r.text
        yield {"live": live, "admin": admin, "keys": keys, "ctx": ctx, "flow": flow_id}
    finally:
        live.stop()


def _ids(api: httpx.Client, path: str = "/ngsi-ld/v1/entities", **params: Any) -> list[str]:
    r = api.get(path, params=params)
    assert r.status_code == 200, r.text
    return [e["id"] for e in r.json()]


def test_q_attrs_geo_and_count_cannot_probe_a_masked_attribute(city: dict[str, Any]) -> None:
    live, flow_id = city["live"], city["flow"]
    near = {"georel": "near;maxDistance==100", "geometry": "Point", "coordinates": "[120.21,30.21]"}
    with client(live, city["keys"]["hz-logistics"], **city["ctx"], **PURPOSE) as b, \
            client(live, city["keys"]["hz-transport"], **city["ctx"]) as owner:
        def ids(**params: Any) -> list[str]:
            return _ids(b, type="TrafficFlowObserved", id=flow_id, **params)

        # What B may read still filters as before.
        assert ids(q="intensity>100") == [flow_id] and ids(q="intensity<100") == []
        assert ids(**{**near, "coordinates": "[120.2,30.2]"}, geoproperty="location") == [flow_id]
        # The owner's stored occupancy is 0.42; before the fix B found it in 12 queries by bisecting the bound.
        assert _ids(owner, type="TrafficFlowObserved", id=flow_id, q="occupancy>0.4") == [flow_id]
        for bound in (-1, 0, 0.4, 0.45, 1):
            assert ids(q=f"occupancy>{bound}") == [] and ids(q=f"occupancy<={bound}") == [], bound
        assert ids(q="occupancy") == [] and ids(q="!occupancy") == [flow_id]  # as if it did not exist
        assert ids(q="intensity<100|occupancy>0.4") == [] and ids(q="intensity>100|occupancy<0") == [flow_id]
        assert ids(attrs="occupancy") == [] and ids(attrs="occupancy,intensity") == [flow_id]
        # A geo-query on a GeoProperty B may not read finds nothing (the owner's finds the flow).
        assert ids(**near, geoproperty="incidentArea") == []
        assert _ids(owner, type="TrafficFlowObserved", id=flow_id, **near, geoproperty="incidentArea") == [flow_id]
        # Counting does not count what the filter cannot see.
        counted = b.get("/ngsi-ld/v1/entities", params={"type": "TrafficFlowObserved", "q": "occupancy>0",
                                                         "count": "true", "limit": 0})
        assert counted.status_code == 200 and counted.headers["NGSILD-Results-Count"] == "0"
        mine = owner.get("/ngsi-ld/v1/entities", params={"type": "TrafficFlowObserved", "q": "occupancy>0",
                                                          "count": "true", "limit": 0})
        assert int(mine.headers["NGSILD-Results-Count"]) > 1
        # The POST query form: the same.
        r = b.post("/ngsi-ld/v1/entityOperations/query", headers={"Content-Type": "application/json"}, json={
            "type": "Query", "entities": [{"type": "TrafficFlowObserved", "id": flow_id}], "q": "occupancy>0.4"})
        assert r.status_code == 200 and r.json() == [], r.text
        # Sorting by a masked attribute sorts as if every entity lacked it: in the stored order, either way.
        up = _ids(b, type="TrafficFlowObserved", orderBy="occupancy", limit=200)
        assert up == _ids(b, type="TrafficFlowObserved", orderBy="occupancy;desc", limit=200) and flow_id in up


def test_anonymous_callers_cannot_probe_what_the_open_product_leaves_out(city: dict[str, Any]) -> None:
    with client(city["live"], None, **city["ctx"]) as anonymous:
        def count(path: str, q: str) -> str:
            r = anonymous.get(path, params={"type": "AirQualityObserved", "q": q, "count": "true"})
            assert r.status_code == 200, r.text
            return str(r.headers["NGSILD-Results-Count"])

        assert count("/ngsi-ld/v1/entities", "pm25>-1") == "10"  # pm25 is part of the open product
        assert count("/ngsi-ld/v1/entities", "co>0.5") == "0"  # co is not: before the fix, 8 of the 10 matched
        assert count("/ngsi-ld/v1/entities", "co>-1") == "0"


def test_history_queries_and_aggregations_cannot_probe_a_masked_attribute(city: dict[str, Any]) -> None:
    live, flow_id = city["live"], city["flow"]
    temporal = "/ngsi-ld/v1/temporal/entities"
    with client(live, city["keys"]["hz-logistics"], **city["ctx"], **PURPOSE) as b, \
            client(live, city["keys"]["hz-transport"], **city["ctx"]) as owner:
        deadline = time.monotonic() + 30  # the history is recorded from the change events, in the relay's time
        while _ids(owner, temporal, type="TrafficFlowObserved", id=flow_id, q="occupancy>0.4") != [flow_id]:
            assert time.monotonic() < deadline, "the flow's history was never recorded"
            time.sleep(0.2)
        aggregated = {"options": "aggregatedValues", "aggrMethods": "max,avg", "attrs": "intensity"}
        assert _ids(b, temporal, type="TrafficFlowObserved", id=flow_id, q="intensity>100") == [flow_id]
        assert _ids(b, temporal, type="TrafficFlowObserved", id=flow_id, q="intensity>100", **aggregated) == [flow_id]
        for bound in (0, 0.4, 1):
            assert _ids(b, temporal, type="TrafficFlowObserved", id=flow_id, q=f"occupancy>{bound}") == []
            assert _ids(b, temporal, type="TrafficFlowObserved", id=flow_id, q=f"occupancy<{bound}",
                        **aggregated) == []
    with client(live, None, **city["ctx"]) as anonymous:
        r = anonymous.get(temporal, params={"type": "AirQualityObserved", "q": "co>0.5", "count": "true"})
        assert r.status_code == 200 and r.json() == [] and r.headers["NGSILD-Results-Count"] == "0", r.text


def test_explain_names_no_attribute_the_caller_may_not_read(city: dict[str, Any]) -> None:
    live = city["live"]
    with client(live, city["admin"], **city["ctx"]) as admin:
        weather = _ids(admin, type="WeatherObserved", limit=1)[0]
        air = _ids(admin, type="AirQualityObserved", limit=1)[0]
        assert admin.get("/exchange/explain", params={"entity": weather, "organization": "hz-logistics"}
                         ).json()["masked_attributes"]  # an admin is told everything
    with client(live, city["keys"]["hz-logistics"], **city["ctx"], **PURPOSE) as b:
        # hz-environment has a public product, so explain answers for its weather stations, which it denies:
        # before the fix the answer listed every attribute name of the denied entity.
        denied = b.get("/exchange/explain", params={"entity": weather}).json()
        assert denied["decision"] == "denied" and denied["masked_attributes"] == [] == denied["visible_attributes"]
        # Read through the open product: what it leaves out (co, the data provider, ...) is not named either.
        open_data = b.get("/exchange/explain", params={"entity": air}).json()
        assert open_data["decision"] == "masked" and open_data["masked_attributes"] == []
        assert not any(a.endswith("/co") for a in open_data["visible_attributes"])
        # The party to an agreement is told what that agreement masks, as before.
        agreed = b.get("/exchange/explain", params={"entity": city["flow"]}).json()
        assert agreed["decision"] == "masked" and any(a.endswith("occupancy") for a in agreed["masked_attributes"])


@pytest.fixture
def own_secure(private_database: str) -> Iterator[tuple[LiveServer, str]]:
    """A secure server on a database of its own, so no earlier test's backlog delays its notifications."""
    admin = bootstrap_key(private_database)
    live = secure_server(private_database)
    yield live, admin
    live.stop()


def _two_organizations(live: LiveServer, admin: str) -> dict[str, Any]:
    """A owns flows inside and outside the agreed area, and `lean` (speed, location and occupancy only); B may
    read speed and location inside the area."""
    s = setup_orgs(live, admin)
    tenant = {"NGSILD-Tenant": s["tenant"]}
    tag = uuid.uuid4().hex[:6]
    ids = {name: f"urn:ngsi-ld:TrafficFlowObserved:{tag}-{name}" for name in ("inside", "outside", "lean")}
    with client(live, s["key_a"]) as a, client(live, s["key_b"]) as b:
        for name, lon in (("inside", 120.1), ("outside", 121.5), ("lean", 120.1)):
            body = flow(ids[name], lon, 30.1)
            if name == "lean":
                del body["operatorNote"]
            assert a.post("/ngsi-ld/v1/entities", json=body, headers={**LD, **tenant}).status_code == 201
        grant(a, b, s["tenant"])
    return {**s, **ids, "headers": tenant}


CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"


def test_periodic_notifications_hold_only_what_the_subscriber_may_read(own_secure: Any) -> None:
    live, admin = own_secure
    s = _two_organizations(live, admin)
    periodic = Receiver().start()
    try:
        with client(live, s["key_b"]) as b:
            every = {"type": "Subscription", "entities": [{"type": "TrafficFlowObserved", "id": s["inside"]},
                                                          {"type": "TrafficFlowObserved", "id": s["outside"]}],
                     "timeInterval": 1, "@context": CORE,
                     "notification": {"endpoint": {"uri": periodic.url}, "format": "keyValues"}}
            r = b.post("/ngsi-ld/v1/subscriptions", json=every, headers={**LD, **s["headers"]})
            assert r.status_code == 201, r.text
            # Before the fix the periodic query ran as the platform itself: both flows (one outside every
            # agreement), with every attribute.
            [first] = periodic.wait(1, timeout=30)[:1]
        assert [e["id"] for e in first["data"]] == [s["inside"]]
        assert set(first["data"][0]) - {"id", "type"} == {"speed", "location"}
    finally:
        periodic.stop()


def test_deleting_a_masked_attribute_notifies_nobody_who_may_not_read_it(own_secure: Any) -> None:
    live, admin = own_secure
    s = _two_organizations(live, admin)
    changes = Receiver().start()
    lean = s["lean"]
    try:
        with client(live, s["key_a"]) as a, client(live, s["key_b"]) as b:
            watch = {"type": "Subscription", "entities": [{"type": "TrafficFlowObserved", "id": lean}],
                     "notificationTrigger": ["attributeUpdated", "attributeDeleted"], "@context": CORE,
                     "notification": {"endpoint": {"uri": changes.url}, "showChanges": True}}
            r = b.post("/ngsi-ld/v1/subscriptions", json=watch, headers={**LD, **s["headers"]})
            assert r.status_code == 201, r.text
            # Before the fix B was told that occupancy was deleted, and its previous value.
            assert a.delete(f"/ngsi-ld/v1/entities/{lean}/attrs/occupancy", headers=s["headers"]).status_code == 204
            r = a.patch(f"/ngsi-ld/v1/entities/{lean}/attrs", headers=s["headers"],
                        json={"speed": {"type": "Property", "value": 55}})
            assert r.status_code == 204, r.text
            changes.wait(1, timeout=30)
            time.sleep(1.5)  # anything else that was due has arrived by now
        told = [n["data"][0] for n in changes.wait(1)]
        assert not any("occupancy" in k for n in told for k in n), told
        assert len(told) == 1 and told[0]["speed"]["value"] == 55 and told[0]["speed"]["previousValue"] == 42, told
        # A readable attribute that a change deletes is still announced to B.
        with client(live, s["key_a"]) as a:
            assert a.delete(f"/ngsi-ld/v1/entities/{lean}/attrs/speed", headers=s["headers"]).status_code == 204
        gone = [n["data"][0] for n in changes.wait(2, timeout=30)][1:]
        assert len(gone) == 1 and gone[0]["speed"]["value"] == "urn:ngsi-ld:null", gone
        assert gone[0]["speed"]["previousValue"] == 55
    finally:
        changes.stop()


def test_the_live_stream_is_silent_about_changes_to_masked_attributes(city: dict[str, Any]) -> None:
    from tests.web.conftest import SseReader

    live, flow_id = city["live"], city["flow"]

    def about_flow(data: dict[str, Any]) -> bool:
        return any(e["id"] == flow_id for e in data["entities"])

    stream = SseReader(live, {"X-API-Key": city["keys"]["hz-logistics"], **PURPOSE})
    try:
        assert stream.next("hello")["organization"] == "hz-logistics"
        with client(live, city["keys"]["hz-transport"], **city["ctx"]) as owner:
            r = owner.patch(f"/ngsi-ld/v1/entities/{flow_id}/attrs",
                            json={"occupancy": {"type": "Property", "value": 0.9}})
            assert r.status_code == 204, r.text
            time.sleep(2.0)  # the stream would have sent that change by now: before the fix, it did
            r = owner.patch(f"/ngsi-ld/v1/entities/{flow_id}/attrs",
                            json={"intensity": {"type": "Property", "value": 130}})
            assert r.status_code == 204, r.text
        got = stream.next("entities", timeout=30, where=about_flow)
        [shown] = [e for e in got["entities"] if e["id"] == flow_id]
        assert shown["intensity"] == 130 and "occupancy" not in shown  # the first word of the flow is this change
    finally:
        stream.close()
