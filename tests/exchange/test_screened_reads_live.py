"""Reads by another organization are paged and counted over what its agreements let it see, live on both engines."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import LiveServer
from tests.exchange.conftest import bootstrap_key, client, secure_server
from tests.exchange.test_story_live import AREA, LD, flow, setup_orgs
from tests.helpers import problem


def grant(a: Any, b: Any, tenant: str, policy: dict[str, Any] | None = None) -> str:
    """A offers its traffic flows inside AREA (speed and location); B asks; A approves. The agreement id."""
    r = a.post("/exchange/products", json={
        "title": {"zh": "路况", "en": "Traffic"}, "description": {"zh": "车速", "en": "Speeds"},
        "sector": "transport", "updateFrequency": "continuous",
        "licence": "https://creativecommons.org/licenses/by/4.0/", "tenant": tenant,
        "entityTypes": ["TrafficFlowObserved"],
        "attributes": ["speed", "location"], "area": AREA, "offer": {"permission": [{"action": "read"}]}})
    assert r.status_code == 201, r.text
    r = b.post("/exchange/requests", json={"product": r.json()["id"], "purpose": "city-planning"})
    assert r.status_code == 201, r.text
    r = a.post(f"/exchange/requests/{r.json()['id']}/approve",
               json={"policy": policy or {"permission": [{"action": "read"}]}, "reason": "ok"})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def test_pages_and_counts_cover_only_what_the_consumer_sees(secure: Any) -> None:
    live, admin = secure
    s = setup_orgs(live, admin)
    tenant = {"NGSILD-Tenant": s["tenant"]}
    tag = uuid.uuid4().hex[:6]
    inside: list[str] = []
    with client(live, s["key_a"]) as a, client(live, s["key_b"]) as b:
        # 30 flows of A, one in three inside the offered area: the visible ones are spread over the stored order.
        for n in range(30):
            eid = f"urn:ngsi-ld:TrafficFlowObserved:{tag}-{n:02d}"
            lon = 120.1 if n % 3 == 0 else 121.5
            r = a.post("/ngsi-ld/v1/entities", json=flow(eid, lon, 30.1), headers={**LD, **tenant})
            assert r.status_code == 201, r.text
            if n % 3 == 0:
                inside.append(eid)
        grant(a, b, s["tenant"])

        pages, counts = [], set()
        for offset in (0, 4, 8, 12):
            r = b.get("/ngsi-ld/v1/entities", headers=tenant, params={
                "type": "TrafficFlowObserved", "limit": 4, "offset": offset, "count": "true"})
            assert r.status_code == 200, r.text
            pages.append([e["id"] for e in r.json()])
            counts.add(r.headers["NGSILD-Results-Count"])
            assert all(set(e) - {"id", "type", "@context"} <= {"speed", "location"} for e in r.json())
        assert [len(p) for p in pages] == [4, 4, 2, 0]
        assert sorted(sum(pages, [])) == sorted(inside)
        assert counts == {"10"}

        # count only (limit=0) counts the visible entities too; the owner still counts all of its own.
        r = b.get("/ngsi-ld/v1/entities", headers=tenant,
                  params={"type": "TrafficFlowObserved", "limit": 0, "count": "true"})
        assert r.status_code == 200 and r.json() == [] and r.headers["NGSILD-Results-Count"] == "10"
        r = a.get("/ngsi-ld/v1/entities", headers=tenant,
                  params={"type": "TrafficFlowObserved", "limit": 0, "count": "true"})
        assert r.headers["NGSILD-Results-Count"] == "30"


def test_history_is_screened_like_the_entity(secure: Any) -> None:
    live, admin = secure
    s = setup_orgs(live, admin)
    tenant = {"NGSILD-Tenant": s["tenant"]}
    tag = uuid.uuid4().hex[:6]
    inside, outside = f"urn:ngsi-ld:TrafficFlowObserved:{tag}-in", f"urn:ngsi-ld:TrafficFlowObserved:{tag}-out"
    with client(live, s["key_a"]) as a, client(live, s["key_b"]) as b:
        for eid, lon in ((inside, 120.1), (outside, 121.5)):
            r = a.post("/ngsi-ld/v1/entities", json=flow(eid, lon, 30.1), headers={**LD, **tenant})
            assert r.status_code == 201, r.text
            for speed in (50, 60):
                r = a.patch(f"/ngsi-ld/v1/entities/{eid}/attrs", headers=tenant, json={
                    "speed": {"type": "Property", "value": speed}, "occupancy": {"type": "Property", "value": 0.5}})
                assert r.status_code == 204, r.text
        # The owner sees every attribute's history (once the change events have been recorded).
        deadline = time.monotonic() + 10
        while True:
            mine = a.get(f"/ngsi-ld/v1/temporal/entities/{inside}", headers=tenant)
            speeds = mine.json().get("speed") if mine.status_code == 200 else None
            if isinstance(speeds, list) and len(speeds) == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert {"speed", "occupancy", "operatorNote", "location"} <= set(mine.json())

        # Without an agreement B reads no history at all.
        problem(b.get(f"/ngsi-ld/v1/temporal/entities/{inside}", headers=tenant), 403, "Forbidden")
        r = b.get("/ngsi-ld/v1/temporal/entities", headers=tenant, params={"type": "TrafficFlowObserved"})
        assert r.status_code == 200 and r.json() == []

        grant(a, b, s["tenant"])
        r = b.get(f"/ngsi-ld/v1/temporal/entities/{inside}", headers=tenant)
        assert r.status_code == 200, r.text
        assert set(r.json()) - {"id", "type", "@context"} == {"speed", "location"}
        assert [i["value"] for i in r.json()["speed"]] == [42, 50, 60], (r.json(), mine.json())
        problem(b.get(f"/ngsi-ld/v1/temporal/entities/{outside}", headers=tenant), 403, "Forbidden")
        r = b.get("/ngsi-ld/v1/temporal/entities", headers=tenant,
                  params={"type": "TrafficFlowObserved", "attrs": "speed,occupancy"})
        assert [(e["id"], sorted(set(e) - {"id", "type", "@context"})) for e in r.json()] == [(inside, ["speed"])]
        r = b.post("/ngsi-ld/v1/temporal/entityOperations/query", headers={**LD, **tenant}, json={
            "type": "Query", "entities": [{"type": "TrafficFlowObserved"}],
            "@context": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"})
        assert [e["id"] for e in r.json()] == [inside]
        # Agreements grant reads of history, never writes to it.
        problem(b.post("/ngsi-ld/v1/temporal/entities", headers={**LD, **tenant}, json={
            **flow(inside, 120.1, 30.1)}), 403, "Forbidden")


@pytest.fixture
def own_secure(private_database: str) -> Iterator[tuple[LiveServer, str]]:
    """A secure server on a database of its own: the notification queue of the session's shared database holds
    the backlog of earlier tests' vanished receivers, which can keep a new notification waiting past the test's
    patience (noted for planning: delivery fairness under a dead-receiver backlog)."""
    admin = bootstrap_key(private_database)
    live = secure_server(private_database)
    yield live, admin
    live.stop()


def test_notifications_are_screened_for_the_subscriber(own_secure: Any) -> None:
    from tests.ngsild.test_subscriptions_live import Receiver

    live, admin = own_secure
    s = setup_orgs(live, admin)
    tenant = {"NGSILD-Tenant": s["tenant"]}
    tag = uuid.uuid4().hex[:6]
    inside, outside = f"urn:ngsi-ld:TrafficFlowObserved:{tag}-in", f"urn:ngsi-ld:TrafficFlowObserved:{tag}-out"
    receiver = Receiver().start()
    try:
        with client(live, s["key_a"]) as a, client(live, s["key_b"]) as b:
            for eid, lon in ((inside, 120.1), (outside, 121.5)):
                r = a.post("/ngsi-ld/v1/entities", json=flow(eid, lon, 30.1), headers={**LD, **tenant})
                assert r.status_code == 201, r.text
            grant(a, b, s["tenant"])
            sub = {"type": "Subscription", "entities": [{"type": "TrafficFlowObserved"}],
                   "notification": {"endpoint": {"uri": receiver.url, "accept": "application/json"},
                                    "format": "keyValues"},
                   "@context": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"}
            r = b.post("/ngsi-ld/v1/subscriptions", json=sub, headers={**LD, **tenant})
            assert r.status_code == 201, r.text
            sub_id = r.headers["Location"].rsplit("/", 1)[1]
            # A probing subscription on a masked attribute never fires: matching sees only what B may see.
            probe = {**sub, "q": 'operatorNote=="internal"'}
            assert b.post("/ngsi-ld/v1/subscriptions", json=probe, headers={**LD, **tenant}).status_code == 201
            # B's subscriptions are B's: A neither lists nor reads them.
            assert [x["id"] for x in b.get("/ngsi-ld/v1/subscriptions", headers=tenant).json()].count(sub_id) == 1
            assert a.get("/ngsi-ld/v1/subscriptions", headers=tenant).json() == []
            problem(a.get(f"/ngsi-ld/v1/subscriptions/{sub_id}", headers=tenant), 404, "ResourceNotFound")
            problem(a.delete(f"/ngsi-ld/v1/subscriptions/{sub_id}", headers=tenant), 404, "ResourceNotFound")

            for eid in (outside, inside):
                r = a.patch(f"/ngsi-ld/v1/entities/{eid}/attrs", headers=tenant, json={
                    "speed": {"type": "Property", "value": 77}, "operatorNote": {"type": "Property", "value": "x"}})
                assert r.status_code == 204, r.text
            # Only the note changes: nothing B may see changed, so B hears nothing.
            r = a.patch(f"/ngsi-ld/v1/entities/{inside}/attrs", headers=tenant,
                        json={"operatorNote": {"type": "Property", "value": "y"}})
            assert r.status_code == 204
            got = receiver.wait(1, timeout=30)  # a loaded CI machine relays and delivers in its own time
            time.sleep(1.5)  # anything else that was due has arrived by now
        bodies = [b for _, b in receiver.received]
        assert len(bodies) == 1, [(x["subscriptionId"][-6:], x["data"]) for x in bodies]
        assert bodies[0]["subscriptionId"] == sub_id
        [entity] = got[0]["data"]
        assert entity["id"] == inside and entity["speed"] == 77
        assert set(entity) - {"id", "type", "@context"} == {"speed", "location"}
    finally:
        receiver.stop()
