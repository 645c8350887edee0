"""An open live view is one standing read for the exchange: it uses a count-limited agreement once, however many
messages it receives, and what it delivered is metered as operation `stream` with the entities it carried."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import drop_postgres
from tests.helpers import problem
from tests.web.conftest import SseReader, demo_client, fresh_database
from tests.web.gate_setup import GatedCity, gated_city

pytestmark = pytest.mark.live
FLOW = "urn:ngsi-ld:TrafficFlowObserved:hz-jiangling-road-2-forward"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatedCity]:
    url = fresh_database(request.param, tmp_path_factory.mktemp("web-metering"))
    city = gated_city(url)
    yield city
    city.live.stop()
    if request.param == "postgres":
        drop_postgres(url)


def limited_agreement(city: GatedCity, uses: int) -> tuple[str, str, str]:
    """A new enterprise granted the bureau's live traffic for `uses` uses: (organization, its key, agreement id)."""
    org = f"freight-{uuid.uuid4().hex[:6]}"
    with demo_client(city.live, city.admin) as admin:
        r = admin.post("/exchange/organizations", json={"id": org, "kind": "enterprise", "sector": "logistics",
                                                        "tenants": [""], "name": {"zh": "货运", "en": org}})
        assert r.status_code == 201, r.text
        key = admin.post(f"/exchange/organizations/{org}/keys", json={
            "subject": "dispatcher", "roles": ["analyst"], "scopes": ["entities:read", "exchange"]}).json()["key"]
    with demo_client(city.live, key) as freight, demo_client(city.live, city.bureau_key) as bureau:
        r = freight.post("/exchange/requests", json={"product": city.traffic_product, "purpose": "fleet-routing"})
        assert r.status_code == 201, r.text
        r = bureau.post(f"/exchange/requests/{r.json()['id']}/approve", json={
            "reason": "a trial of three uses", "policy": {"permission": [{"action": "read", "constraint": [
                {"leftOperand": "count", "operator": "lteq", "rightOperand": uses}]}]}})
        assert r.status_code == 200 and r.json()["state"] == "AGREED", r.text
        return org, key, r.json()["id"]


def speed(city: GatedCity, value: float) -> None:
    with demo_client(city.live, city.bureau_key) as bureau:
        r = bureau.patch(f"/ngsi-ld/v1/entities/{FLOW}/attrs", json={
            "averageVehicleSpeed": {"type": "Property", "value": value}})
        assert r.status_code == 204, r.text


def showing(value: float) -> Any:
    return lambda data: any(e["id"] == FLOW and e.get("averageVehicleSpeed") == value for e in data["entities"])


def test_an_open_page_uses_a_count_limited_agreement_once(gated: GatedCity) -> None:
    org, key, agreement = limited_agreement(gated, uses=3)
    stream = SseReader(gated.live, {"X-API-Key": key})
    try:
        assert stream.next("hello")["organization"] == org
        # More messages than the agreement has uses: each reaches the page (before, each message was one use and
        # the fourth was refused).
        for n in range(6):
            speed(gated, 20.0 + n)
            stream.next("entities", where=showing(20.0 + n))
        with demo_client(gated.live, key) as freight:
            assert freight.get(f"/exchange/requests/{agreement}").json()["uses"] == 1
            # The stream took one use; two queries take the rest, and the limit then holds for queries.
            for _ in range(2):
                r = freight.get("/ngsi-ld/v1/entities", params={"type": "TrafficFlowObserved", "limit": 5})
                assert r.status_code == 200 and len(r.json()) == 5, r.text
            assert freight.get(f"/exchange/requests/{agreement}").json()["uses"] == 3
            assert freight.get("/ngsi-ld/v1/entities", params={"type": "TrafficFlowObserved"}).json() == []
            problem(freight.get(f"/ngsi-ld/v1/entities/{FLOW}"), 403, "Forbidden")
        # The open page keeps its use: changes still arrive.
        speed(gated, 33.0)
        stream.next("entities", where=showing(33.0))
    finally:
        stream.close()

    # Closing the page writes what it received: operation `stream`, the entities carried, in one record (this
    # stream was open for less than the metering interval), not one record per message.
    deadline = time.monotonic() + 10
    records: list[dict[str, Any]] = []
    with demo_client(gated.live, gated.admin) as admin:
        while time.monotonic() < deadline:
            records = [r for r in admin.get("/exchange/metering", params={"agreement": agreement}).json()
                       if r["operation"] == "stream"]
            if records:
                break
            time.sleep(0.2)
    assert len(records) == 1, records
    assert records[0]["consumer"] == org and records[0]["provider"] == gated.bureau
    assert records[0]["entities"] == 7 and records[0]["bytes"] > 0 and records[0]["status"] == "granted"


def test_a_page_opened_after_the_limit_receives_nothing_of_that_agreement(gated: GatedCity) -> None:
    _, key, agreement = limited_agreement(gated, uses=1)
    with demo_client(gated.live, key) as freight:
        assert freight.get("/ngsi-ld/v1/entities", params={"type": "TrafficFlowObserved"}).json()
    stream = SseReader(gated.live, {"X-API-Key": key})
    watcher = SseReader(gated.live, {"X-API-Key": gated.bureau_key})
    try:
        stream.next("hello")
        watcher.next("hello")
        speed(gated, 41.0)
        watcher.next("entities", where=showing(41.0))  # the change went out...
        with pytest.raises(AssertionError):  # ...but not to a page whose agreement is used up
            stream.next("entities", timeout=1.5)
    finally:
        stream.close()
        watcher.close()
    with demo_client(gated.live, key) as freight:
        assert freight.get(f"/exchange/requests/{agreement}").json()["uses"] == 1


def test_a_long_open_page_is_metered_while_it_stays_open(gated: GatedCity, monkeypatch: pytest.MonkeyPatch) -> None:
    from civicmesh.web import live

    monkeypatch.setattr(live, "METER_SECONDS", 0.3)  # a minute in production
    org, key, agreement = limited_agreement(gated, uses=5)
    stream = SseReader(gated.live, {"X-API-Key": key})
    try:
        stream.next("hello")
        for value in (51.0, 52.0):
            speed(gated, value)
            stream.next("entities", where=showing(value))
            time.sleep(0.5)
        speed(gated, 53.0)  # the sender wakes, finds the interval over and writes what it delivered so far
        stream.next("entities", where=showing(53.0))
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        with demo_client(gated.live, gated.admin) as admin:
            while time.monotonic() < deadline and sum(r["entities"] for r in records) < 2:
                records = [r for r in admin.get("/exchange/metering", params={"agreement": agreement}).json()
                           if r["operation"] == "stream"]
                time.sleep(0.2)
        assert sum(r["entities"] for r in records) >= 2 and all(r["consumer"] == org for r in records)
        assert len(records) <= 3  # per interval, not per message
    finally:
        stream.close()
    with demo_client(gated.live, gated.admin) as admin:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            records = [r for r in admin.get("/exchange/metering", params={"agreement": agreement}).json()
                       if r["operation"] == "stream"]
            if sum(r["entities"] for r in records) == 3:
                break
            time.sleep(0.2)
    assert sum(r["entities"] for r in records) == 3  # everything delivered, each once
