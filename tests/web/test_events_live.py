"""/web/events over plain HTTP: changes arrive as server-sent events, screened by the exchange gate per caller."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from civicmesh.demo.basemap import city_basemap
from tests.conftest import drop_postgres
from tests.helpers import problem
from tests.web.conftest import SseReader, demo_client, fresh_database
from tests.web.gate_setup import GRANTED, GatedCity, gated_city

pytestmark = pytest.mark.live
AIR = "urn:ngsi-ld:AirQualityObserved:hz-binjiang"
LIGHT = "urn:ngsi-ld:Streetlight:hz-jiangnan-avenue-01"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatedCity]:
    url = fresh_database(request.param, tmp_path_factory.mktemp("web-gate"))
    city = gated_city(url)
    yield city
    city.live.stop()
    if request.param == "postgres":
        drop_postgres(url)


def patch(city: GatedCity, entity_id: str, attrs: dict[str, Any], key: str | None = None) -> None:
    with demo_client(city.live, key or city.admin) as c:
        r = c.patch(f"/ngsi-ld/v1/entities/{entity_id}/attrs", json=attrs)
        assert r.status_code == 204, r.text


def reading(value: float) -> dict[str, Any]:
    return {"airQualityIndex": {"type": "Property", "value": value},
            "pm25": {"type": "Property", "value": value / 2, "unitCode": "GQ"}}


def test_each_caller_receives_only_what_the_gate_lets_it_read(gated: GatedCity) -> None:
    enterprise = SseReader(gated.live, {"X-API-Key": gated.enterprise_key})
    owner = SseReader(gated.live, {"X-API-Key": gated.bureau_key})
    admin = SseReader(gated.live, {"Authorization": f"Bearer {gated.admin}"})
    anonymous = SseReader(gated.live)
    try:
        assert enterprise.next("hello")["organization"] == gated.enterprise
        assert anonymous.next("hello")["organization"] is None
        patch(gated, AIR, reading(123))
        patch(gated, LIGHT, {"powerState": {"type": "Property", "value": "on"}})

        def has(entity_id: str) -> Any:
            return lambda data: any(e["id"] == entity_id for e in data["entities"])

        # The enterprise's agreement covers the stations' index, name and location: the rest is masked.
        got = enterprise.next("entities", where=has(AIR))
        shown = next(e for e in got["entities"] if e["id"] == AIR)
        assert shown["airQualityIndex"] == 123
        assert set(shown) - {"id", "type", "modifiedAt"} == set(GRANTED)
        # The owner sees everything of its own station.
        mine = next(e for e in owner.next("entities", where=has(AIR))["entities"] if e["id"] == AIR)
        assert 61.5 in mine["pm25"] and mine["airQualityIndex"] == 123
        # The admin sees the streetlight nobody granted; the enterprise, the owner and anonymous never get it.
        admin.next("entities", where=has(LIGHT))
        patch(gated, AIR, reading(77))  # a later change, so everything before it has been screened and sent
        for reader in (enterprise, owner):
            data = reader.next("entities", where=lambda d: any(e.get("airQualityIndex") == 77 for e in d["entities"]))
            assert LIGHT not in [e["id"] for e in data["entities"]]
        seen = []
        while not enterprise.events.empty():
            seen.append(enterprise.events.get())
        assert not any(LIGHT == e["id"] for kind, d in seen if kind == "entities" for e in d["entities"])
        # Anonymous callers see public open data only: there is none, so nothing arrives.
        with pytest.raises(AssertionError):
            anonymous.next("entities", timeout=1.5)
    finally:
        for reader in (enterprise, owner, admin, anonymous):
            reader.close()


def test_stream_refusals_are_problem_details(gated: GatedCity) -> None:
    bad_key = SseReader(gated.live, {"X-API-Key": "cmk_0000_not-a-key"})
    assert bad_key.status == 401 and bad_key.problem["type"].endswith("/Unauthorized")
    with demo_client(gated.live, gated.admin) as c:
        # A key without the entities:read scope may not watch city data.
        key = c.post(f"/exchange/organizations/{gated.enterprise}/keys", json={
            "subject": "ledger-only", "roles": ["analyst"], "scopes": ["ledger"]}).json()["key"]
    scoped = SseReader(gated.live, {"X-API-Key": key})
    assert scoped.status == 403 and "entities:read" in scoped.problem["detail"]
    with httpx.Client(base_url=gated.live.url, headers={"X-API-Key": gated.enterprise_key}, timeout=10) as c:
        problem(c.get("/web/events", params={"tenant": "no such tenant!"}), 400, "BadRequestData")
        problem(c.get("/web/static/../../app.py"), 404, "ResourceNotFound")
        problem(c.get("/web/static/nothing.js"), 404, "ResourceNotFound")


def test_page_files_and_base_map_need_no_credential(gated: GatedCity) -> None:
    with httpx.Client(base_url=gated.live.url, timeout=10) as c:
        page = c.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        found = re.search(r'<script type="module" src="(/web/static/[0-9a-f]{12}/app\.js)">', page.text)
        assert found, page.text
        # The page's files carry a version in their path, so a browser may keep them for good...
        js = c.get(found.group(1), headers={"Accept-Encoding": "gzip"})
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert "immutable" in js.headers["cache-control"] and js.headers["content-encoding"] == "gzip"
        # ...the unversioned path is revalidated, and an unchanged file costs a 304.
        plain = c.get("/web/static/app.js")
        assert plain.content == js.content and plain.headers["cache-control"] == "no-cache"
        assert c.get("/web/static/app.js", headers={"If-None-Match": plain.headers["etag"]}).status_code == 304
        base = c.get("/web/basemap")
        assert base.headers["content-type"] == "application/geo+json"
        assert base.json() == city_basemap()
        config = c.get("/web/config").json()
        assert config["auth"] is True and {layer["id"] for layer in config["layers"]} >= {
            "air", "traffic", "streetlights", "parking", "energy", "bridge", "alerts"}
        # ...but the city data they draw still does: anonymous reads of owned data come back empty.
        assert c.get("/ngsi-ld/v1/entities", params={"type": "AirQualityObserved"},
                     headers={"Link": f'<{config["context"]}>'}).json() == []


def test_the_layer_snapshot_is_what_ngsi_ld_queries_show_each_caller(gated: GatedCity) -> None:
    """/web/layers (all layers in one request) screens exactly like one NGSI-LD query per type, caller by caller."""
    for key in (None, gated.enterprise_key, gated.bureau_key, gated.admin):
        with demo_client(gated.live, key) as c:
            r = c.get("/web/layers", headers={"Accept-Encoding": "gzip"})
            assert r.status_code == 200, r.text
            assert r.headers["cache-control"] == "no-store"
            snapshot = r.json()["layers"]
            for layer in c.get("/web/config").json()["layers"]:
                expected = []
                for entity_type in layer["types"]:
                    q = c.get("/ngsi-ld/v1/entities", params={"type": entity_type, "options": "keyValues",
                                                              "limit": 1000})
                    assert q.status_code == 200, q.text
                    expected += q.json()
                # Compact: what the layer draws (its attrs and the location) of what the caller may read.
                drawn = None if layer["attrs"] is None else {"id", "type", "location", *layer["attrs"]}
                by_id = {e["id"]: e for e in snapshot[layer["id"]]}
                assert len(by_id) == len(snapshot[layer["id"]])
                assert by_id == {e["id"]: {k: v for k, v in e.items() if drawn is None or k in drawn}
                                 for e in expected}, (key, layer["id"])
    with demo_client(gated.live, gated.enterprise_key) as c:
        air = c.get("/web/layers").json()["layers"]["air"]
    # The enterprise's stations: granted and drawn (the index, the name), never pm25 or the other masked ones.
    assert len(air) == 10 and all(set(e) - {"id", "type"} == {"airQualityIndex", "name", "location"} for e in air)
    with demo_client(gated.live) as c:
        assert all(not entities for entities in c.get("/web/layers").json()["layers"].values())
        problem(c.get("/web/layers", params={"tenant": "no such tenant!"}), 400, "BadRequestData")


def test_alerts_are_acknowledged_once_through_the_api(gated: GatedCity) -> None:
    span = "urn:ngsi-ld:DeviceMeasurement:hz-bridge-displacement-2"
    admin = SseReader(gated.live, {"X-API-Key": gated.admin})
    try:
        admin.next("hello")
        patch(gated, span, {"numValue": {"type": "Property", "value": 44.0}})
        alert = next(e for e in admin.next("entities", where=lambda d: any(e["type"] == "Alert" for e in d[
            "entities"]))["entities"] if e["type"] == "Alert")
        assert alert["severity"] == "high" and alert["alertSource"] == span
        with demo_client(gated.live, gated.enterprise_key) as e, demo_client(gated.live, gated.admin) as a:
            # The enterprise may not read (so may not acknowledge) an alert nobody granted it.
            problem(e.post(f"/alerts/{alert['id']}/acknowledge", json={}), 403, "Forbidden")
            problem(a.post(f"/alerts/{alert['id']}/acknowledge", json=["not", "an", "object"]), 400,
                    "BadRequestData")
            problem(a.post(f"/alerts/{alert['id']}/acknowledge", json={"note": 5}), 400, "BadRequestData")
            problem(a.post(f"/alerts/{span}/acknowledge", json={}), 400, "BadRequestData")
            problem(a.post("/alerts/urn:ngsi-ld:Alert:nope/acknowledge", json={}), 404, "ResourceNotFound")
            r = a.post(f"/alerts/{alert['id']}/acknowledge", json={"note": "inspection crew sent"})
            assert r.status_code == 200, r.text
            assert r.json()["acknowledged"] is True and r.json()["acknowledgedBy"].endswith("@platform")
            again = problem(a.post(f"/alerts/{alert['id']}/acknowledge"), 409, "Conflict")
            assert "already acknowledged" in again["detail"]
            stored = a.get(f"/ngsi-ld/v1/entities/{alert['id']}", params={"options": "keyValues"}).json()
            assert stored["acknowledged"] is True and stored["acknowledgementNote"] == "inspection crew sent"
        # The acknowledgement is an ordinary change: it reaches the live stream too.
        admin.next("entities", where=lambda d: any(e["id"] == alert["id"] and e.get("acknowledged")
                                                   for e in d["entities"]))
    finally:
        admin.close()
