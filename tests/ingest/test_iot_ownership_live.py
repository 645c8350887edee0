"""Issue 13, finding 1: the IoT agent may not become a way around the gate. Devices and service groups belong to the
organization that provisioned them, and measurements are written as that organization (live, authentication on,
both engines)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from tests.conftest import LiveServer
from tests.exchange.conftest import bootstrap_key, client, secure_server
from tests.exchange.test_story_live import LD
from tests.helpers import problem

pytestmark = pytest.mark.live  # starts servers on loopback ports

CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"


@pytest.fixture(scope="module")
def secure(database_url: str) -> Iterator[tuple[LiveServer, str]]:
    """A live server with authentication on, and its bootstrap admin key."""
    admin = bootstrap_key(database_url)
    live = secure_server(database_url)
    yield live, admin
    live.stop()


def _orgs(live: Any, admin: str) -> dict[str, str]:
    """Two organizations with keys that may use the IoT agent and write entities, neither a platform admin."""
    tag = uuid.uuid4().hex[:6]
    tenant = f"t{tag}"
    out = {"tenant": tenant}
    with client(live, admin) as c:
        for name in ("urban", "lab"):
            org = f"{name}-{tag}"
            body = {"id": org, "kind": "enterprise", "sector": "research", "tenants": [tenant],
                    "name": {"zh": org, "en": org}, "citizen_department": None}
            assert c.post("/exchange/organizations", json=body).status_code == 201
            r = c.post(f"/exchange/organizations/{org}/keys", json={
                "subject": f"{name}-operator", "roles": ["data_steward"], "scopes": ["*"]})
            assert r.status_code in (200, 201), r.text
            out[name], out[f"key_{name}"] = org, r.json()["key"]
    return out


def _streetlight(entity_id: str) -> dict[str, Any]:
    return {"id": entity_id, "type": "Streetlight", "powerState": {"type": "Property", "value": "on"},
            "@context": CORE}


def _device(device_id: str, apikey: str, entity_id: str) -> dict[str, Any]:
    return {"devices": [{"device_id": device_id, "apikey": apikey, "entity_name": entity_id,
                         "entity_type": "Streetlight", "transport": "HTTP",
                         "attributes": [{"object_id": "s", "name": "powerState"}]}]}


def test_a_device_cannot_write_another_organizations_entity(secure: Any) -> None:
    live, admin = secure
    s = _orgs(live, admin)
    iot = {"fiware-service": s["tenant"], "fiware-servicepath": "/"}
    ngsi = {"NGSILD-Tenant": s["tenant"]}
    light = f"urn:ngsi-ld:Streetlight:{uuid.uuid4().hex[:8]}"
    own_light = f"urn:ngsi-ld:Streetlight:{uuid.uuid4().hex[:8]}"
    urban_key, lab_key = f"urban{uuid.uuid4().hex[:6]}", f"lab{uuid.uuid4().hex[:6]}"
    with client(live, s["key_urban"]) as urban, client(live, s["key_lab"]) as lab:
        assert urban.post("/ngsi-ld/v1/entities", json=_streetlight(light), headers={**LD, **ngsi}).status_code == 201
        assert urban.post("/iot/services", headers=iot, json={"services": [
            {"apikey": urban_key, "entity_type": "Streetlight"}]}).status_code == 201
        assert lab.post("/iot/services", headers=iot, json={"services": [
            {"apikey": lab_key, "entity_type": "Streetlight"}]}).status_code == 201

        # The red team's reproduction: a lab device under the urban organization's apikey is refused outright ...
        problem(lab.post("/iot/devices", headers=iot, json=_device("lab-evil-1", urban_key, light)), 403, "Forbidden")
        # ... and under the lab's own apikey it may be provisioned, but its measurement is written as the lab, so
        # the gate refuses it: 403, counted as a dead letter, and the streetlight does not change.
        assert lab.post("/iot/devices", headers=iot, json=_device("lab-evil-2", lab_key, light)).status_code == 201
        body = problem(lab.post("/iot/d", params={"k": lab_key, "i": "lab-evil-2"}, content=b"s|HACKED",
                                headers=iot), 403, "Forbidden")
        assert light in body["detail"] and s["urban"] in body["detail"]
        r = urban.get(f"/ngsi-ld/v1/entities/{light}", headers=ngsi)
        assert r.status_code == 200 and r.json()["powerState"]["value"] == "on"
        letters = lab.get("/iot/deadletters", headers=iot).json()["deadletters"]
        assert [(d["device_id"], d["reason"]) for d in letters] == [("lab-evil-2", "forbidden")]
        stats = lab.get("/iot/stats", headers=iot).json()["devices"]
        assert stats == {"lab-evil-2": {"forbidden": 1}}

        # The lab's device may create and update the lab's own entity.
        assert lab.post("/iot/devices", headers=iot, json=_device("lab-own-1", lab_key, own_light)).status_code == 201
        assert lab.post("/iot/d", params={"k": lab_key, "i": "lab-own-1"}, content=b"s|off",
                        headers=iot).status_code == 200
        assert lab.get(f"/ngsi-ld/v1/entities/{own_light}", headers=ngsi).json()["powerState"]["value"] == "off"

        # The owner's device still works.
        assert urban.post("/iot/devices", headers=iot, json=_device("urban-1", urban_key, light)).status_code == 201
        assert urban.post("/iot/d", params={"k": urban_key, "i": "urban-1"}, content=b"s|dimmed",
                          headers=iot).status_code == 200
        assert urban.get(f"/ngsi-ld/v1/entities/{light}", headers=ngsi).json()["powerState"]["value"] == "dimmed"
        # The owner's counters and dead letters do not show the lab's devices, and the other way round.
        assert set(urban.get("/iot/stats", headers=iot).json()["devices"]) == {"urban-1"}
        assert urban.get("/iot/deadletters", headers=iot).json()["deadletters"] == []


def test_provisioning_is_per_organization(secure: Any) -> None:
    live, admin = secure
    s = _orgs(live, admin)
    iot = {"fiware-service": s["tenant"], "fiware-servicepath": "/"}
    light = f"urn:ngsi-ld:Streetlight:{uuid.uuid4().hex[:8]}"
    urban_key = f"urban{uuid.uuid4().hex[:6]}"
    group = {"apikey": urban_key, "resource": "/iot/d"}
    with client(live, s["key_urban"]) as urban, client(live, s["key_lab"]) as lab, client(live, admin) as root:
        assert urban.post("/iot/services", headers=iot, json={"services": [
            {"apikey": urban_key, "entity_type": "Streetlight"}]}).status_code == 201
        assert urban.post("/iot/devices", headers=iot, json=_device("urban-2", urban_key, light)).status_code == 201

        # Another organization can neither see, re-point nor delete them ...
        assert lab.get("/iot/services", headers=iot).json() == {"count": 0, "services": []}
        assert lab.get("/iot/devices", headers=iot).json() == {"count": 0, "devices": []}
        problem(lab.get("/iot/devices/urban-2", headers=iot), 404, "ResourceNotFound")
        problem(lab.put("/iot/devices/urban-2", headers=iot, json={"entity_name": "urn:ngsi-ld:Streetlight:x"}),
                404, "ResourceNotFound")
        problem(lab.delete("/iot/devices/urban-2", headers=iot), 404, "ResourceNotFound")
        problem(lab.put("/iot/services", params=group, headers=iot, json={"entity_type": "Thing"}),
                404, "ResourceNotFound")
        problem(lab.delete("/iot/services", params=group, headers=iot), 404, "ResourceNotFound")

        # ... the owner sees them, marked as its own ...
        devices = urban.get("/iot/devices", headers=iot).json()
        assert [(d["device_id"], d["organization"], d["entity_name"]) for d in devices["devices"]] == \
            [("urban-2", s["urban"], light)]
        assert urban.get("/iot/services", headers=iot).json()["services"][0]["organization"] == s["urban"]
        # ... and a platform admin sees and may change every organization's.
        assert root.get("/iot/devices/urban-2", headers=iot).json()["organization"] == s["urban"]
        assert root.delete("/iot/devices/urban-2", headers=iot).status_code == 204
        assert root.delete("/iot/services", params=group, headers=iot).status_code == 204


# The IoT agent's tables as commit cbc25d1 made them (schema version 1: no owner).
_V1 = [
    "CREATE TABLE ingest_schema_version (version INTEGER NOT NULL)",
    "INSERT INTO ingest_schema_version (version) VALUES (1)",
    "CREATE TABLE ingest_groups (apikey TEXT NOT NULL, resource TEXT NOT NULL, tenant TEXT NOT NULL, "
    "servicepath TEXT NOT NULL, body TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (apikey, resource))",
    "CREATE TABLE ingest_devices (tenant TEXT NOT NULL, device_id TEXT NOT NULL, apikey TEXT NOT NULL, "
    "servicepath TEXT NOT NULL, body TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (tenant, device_id))",
    "INSERT INTO ingest_devices VALUES ('', 'old-1', 'oldkey', '/', '{\"device_id\": \"old-1\", \"apikey\": "
    "\"oldkey\", \"entity_name\": \"urn:ngsi-ld:Thing:old-1\", \"entity_type\": \"Thing\", \"attributes\": [], "
    "\"static_attributes\": []}', '2026-01-01T00:00:00Z')",
]


def test_devices_of_an_older_database_belong_to_the_platform(private_database: str) -> None:
    from tests.conftest import start_server

    if private_database.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(private_database[len("sqlite:///"):]) as db:
            for sql in _V1:
                db.execute(sql)
    else:
        import psycopg

        with psycopg.connect(private_database, autocommit=True) as pg:
            for sql in _V1:
                pg.execute(sql)
    live = start_server(private_database)
    try:
        with client(live) as c:
            devices = c.get("/iot/devices").json()["devices"]
            assert [(d["device_id"], d["organization"]) for d in devices] == [("old-1", "platform")]
    finally:
        live.stop()
