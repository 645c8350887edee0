"""Regression tests for the access findings of the red-team pass (issue 13: 5, 7, 8, 11, 16, 17, 19, CORS), each
replaying the attack against a live server with authentication on and the demo organizations, on both engines."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from civicmesh.config import Settings
from civicmesh.store.citizen import CitizenStore
from civicmesh.store.db import Database
from tests.conftest import LiveServer, free_port
from tests.exchange.conftest import client
from tests.helpers import problem
from tests.security.conftest import DemoPlatform

pytestmark = pytest.mark.live

TRAFFIC = "urn:ngsi-ld:TrafficFlowObserved:hz-jiangnan-avenue-1-forward"
OPEN311_KEY = "security-suite-client"


def key(platform: DemoPlatform, org: str, roles: list[str], scopes: list[str]) -> str:
    with client(platform.live, platform.admin) as c:
        r = c.post(f"/exchange/organizations/{org}/keys", json={
            "subject": f"{org}-{uuid.uuid4().hex[:6]}", "roles": roles, "scopes": scopes})
        assert r.status_code == 201, r.text
        return str(r.json()["key"])


def traffic_request(platform: DemoPlatform) -> tuple[str, str]:
    """hz-logistics asks hz-transport for the live traffic product: (request id, the logistics steward's key)."""
    logistics = key(platform, "hz-logistics", ["org_admin", "data_steward"], ["*"])
    with client(platform.live, logistics) as c:
        [product] = [p for p in c.get("/exchange/catalog", params={"q": "traffic"}).json()
                     if p["provider"] == "hz-transport"]
        r = c.post("/exchange/requests", json={"product": product["id"], "purpose": "city-planning"})
        assert r.status_code == 201, r.text
        return str(r.json()["id"]), logistics


# -- 5: alert rules have an owner ------------------------------------------------------------------------------
def test_5_only_its_owner_or_a_platform_admin_changes_an_alert_rule(demo_platform: DemoPlatform) -> None:
    stranger = key(demo_platform, "zju-urban-lab", ["org_admin"], ["*"])
    transport = key(demo_platform, "hz-transport", ["org_admin"], ["*"])
    with client(demo_platform.live, stranger) as lab:
        bridge = lab.get("/alerts/rules/bridge-displacement").json()
        # The red team's move: replace or delete the bridge safety rule of another organization.
        refused = problem(lab.put("/alerts/rules/bridge-displacement", json={**bridge, "tiers": [
            {"severity": "critical", "above": 1e9}]}), 403, "Forbidden")
        assert "belongs to hz-transport" in refused["detail"]
        problem(lab.delete("/alerts/rules/bridge-displacement"), 403, "Forbidden")
        assert bridge["owner"] == "hz-transport"  # the demo's bridge safety rules are the bridges' owner's
        # A rule the lab makes is its own; it cannot make one in another's name.
        mine = {"id": f"lab-{uuid.uuid4().hex[:6]}", "entityType": "AirQualityObserved", "attribute": "pm25",
                "kind": "threshold", "tiers": [{"severity": "high", "above": 150}]}
        problem(lab.post("/alerts/rules", json={**mine, "owner": "hz-transport"}), 403, "Forbidden")
        assert lab.post("/alerts/rules", json=mine).status_code == 201
        assert lab.get(f"/alerts/rules/{mine['id']}").json()["owner"] == "zju-urban-lab"
    with client(demo_platform.live, transport) as owner:
        assert owner.get("/alerts/rules/bridge-displacement").json()["tiers"] == bridge["tiers"]
        problem(owner.delete(f"/alerts/rules/{mine['id']}"), 403, "Forbidden")
        # The owner may change its own rule, and it stays its own.
        assert owner.put("/alerts/rules/bridge-displacement", json=bridge).status_code == 204
        assert owner.get("/alerts/rules/bridge-displacement").json()["owner"] == "hz-transport"
    with client(demo_platform.live, demo_platform.admin) as admin:
        assert admin.delete(f"/alerts/rules/{mine['id']}").status_code == 204


# -- 7: the exchange scope and roles -----------------------------------------------------------------------------
def test_7_an_analyst_of_the_provider_cannot_approve_a_request(demo_platform: DemoPlatform) -> None:
    nid, _ = traffic_request(demo_platform)
    decision = {"permission": [{"action": "use"}], "reason": "looks fine"}
    # The red team's key: the provider's analyst, scopes ["entities:read"].
    reader = key(demo_platform, "hz-transport", ["analyst"], ["entities:read"])
    with client(demo_platform.live, reader) as c:
        assert "exchange" in problem(c.post(f"/exchange/requests/{nid}/approve", json=decision), 403,
                                     "Forbidden")["detail"]
        problem(c.get("/exchange/requests"), 403, "Forbidden")
    # With the scope but only the analyst role: still not a decision it may take.
    analyst = key(demo_platform, "hz-transport", ["analyst"], ["*"])
    with client(demo_platform.live, analyst) as c:
        assert "data_steward" in problem(c.post(f"/exchange/requests/{nid}/approve", json=decision), 403,
                                         "Forbidden")["detail"]
    steward = key(demo_platform, "hz-transport", ["data_steward"], ["exchange"])
    with client(demo_platform.live, steward) as c:
        assert c.get(f"/exchange/requests/{nid}").json()["state"] == "REQUESTED"
        r = c.post(f"/exchange/requests/{nid}/approve", json={"reason": "planning use agreed"})
        assert r.status_code == 200 and r.json()["state"] == "AGREED", r.text


# -- 8: citizen personal data across departments ----------------------------------------------------------------
def _open311_key(database_url: str) -> None:
    async def add() -> None:
        db = Database.from_url(database_url)
        await db.open()
        try:
            store = CitizenStore(db)
            await store.migrate()
            await store.add_api_key(OPEN311_KEY, "security suite", None, "2026-01-01T00:00:00Z")
        except Exception:  # already added by an earlier test on this database
            pass
        finally:
            await db.close()

    asyncio.run(add())


def _department(platform: DemoPlatform, citizen_department: str) -> str:
    org = f"dept-{citizen_department.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    with client(platform.live, platform.admin) as c:
        r = c.post("/exchange/organizations", json={
            "id": org, "kind": "department", "sector": "government", "tenants": [""],
            "name": {"zh": "部门", "en": org}, "citizen_department": citizen_department})
        assert r.status_code == 201, r.text
    return key(platform, org, ["analyst"], ["citizen"])


def test_8_another_department_does_not_see_the_reporters_contact(demo_platform: DemoPlatform,
                                                                 database_url: str) -> None:
    _open311_key(database_url)
    with httpx.Client(base_url=demo_platform.live.url, timeout=30) as citizen:
        created = citizen.post("/open311/v2/requests.json", data={
            "api_key": OPEN311_KEY, "service_code": "pothole", "lat": "30.209", "long": "120.2045",
            "description": "江滨路上有个大坑", "attribute[size]": "large", "first_name": "小明",
            "last_name": "王", "email": "xiaoming@example.cn", "phone": "13812345678"})
        assert created.status_code == 200, created.text
        rid = created.json()[0]["service_request_id"]
    handling, other = _department(demo_platform, "binjiang_gov"), _department(demo_platform, "housing")
    with client(demo_platform.live, handling) as c:
        full = c.get(f"/citizen/requests/{rid}").json()
        assert full["lead_department"] == "binjiang_gov"
        assert (full["contact"]["first_name"], full["contact"]["email"], full["contact"]["phone"]) == \
            ("小明", "xiaoming@example.cn", "13812345678")
    with client(demo_platform.live, other) as c:
        # The red team's move: a housing-bureau key reads a request dispatched to binjiang_gov...
        seen = c.get(f"/citizen/requests/{rid}")
        assert seen.status_code == 200
        assert seen.json()["contact"]["phone"] is None and seen.json()["contact"]["email"] is None
        for secret in ("小明", "xiaoming@example.cn", "13812345678"):
            assert secret not in seen.text
        # ... and walks the sequential ids: none shows a reporter's contact to a department not handling it.
        for walked in range(1, int(rid) + 1):
            r = c.get(f"/citizen/requests/{walked}")
            if r.status_code == 200 and r.json()["lead_department"] != "housing":
                assert r.json()["contact"]["phone"] is None and "13812345678" not in r.text
        # The triage queue (not yet dispatched) is the hotline's to read in full, not a department's.
        for row in c.get("/citizen/triage").json():
            assert row["contact"]["phone"] is None


# -- 11: the public ledger shows hashes and kinds; details to the parties ---------------------------------------
def test_11_ledger_payloads_are_for_the_parties(demo_platform: DemoPlatform) -> None:
    nid, logistics = traffic_request(demo_platform)
    steward = key(demo_platform, "hz-transport", ["data_steward"], ["*"])
    with client(demo_platform.live, steward) as c:
        assert c.post(f"/exchange/requests/{nid}/reject", json={"reason": "secret internal reason"}).status_code \
            == 200

    def entries(credential: str | None) -> list[dict[str, Any]]:
        with client(demo_platform.live, credential) as c:
            deadline = time.monotonic() + 20
            while True:
                found = c.get("/ledger/entries", params={"subject": nid}).json()["entries"]
                if len(found) >= 2 and all(e["integrated"] for e in found) or time.monotonic() > deadline:
                    return list(found)
                time.sleep(0.2)

    anonymous = entries(None)
    assert len(anonymous) >= 2
    for entry in anonymous:
        # Anyone still verifies the log: the entry (kind, subject, time, payload hash) and its proof are there.
        assert entry["entry"] and entry["leaf_hash"] and entry["inclusion"]
        assert entry["payload"] is None and entry["payload_withheld"]
    assert "secret internal reason" not in str(anonymous)
    outsider = key(demo_platform, "zju-urban-lab", ["analyst"], ["*"])
    assert all(e["payload"] is None for e in entries(outsider))
    for party in (logistics, steward, demo_platform.admin):
        shown = entries(party)
        assert any(e["payload"] and e["payload"]["reason"] == "secret internal reason" for e in shown)


# -- 16: security headers ----------------------------------------------------------------------------------------
def test_16_pages_and_api_answers_carry_security_headers(demo_platform: DemoPlatform) -> None:
    with client(demo_platform.live) as c:
        for path in ("/", "/exchange/catalog", "/ngsi-ld/v1/entities?type=AirQualityObserved", "/exchange/kpis",
                     "/web/static/app.js"):
            r = c.get(path)
            assert r.headers["x-content-type-options"] == "nosniff", path
            assert r.headers["x-frame-options"] == "DENY", path
            assert r.headers["referrer-policy"] == "no-referrer", path
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
        page = c.get("/").headers["content-security-policy"]
        script = next(d for d in page.split(";") if d.strip().startswith("script-src"))
        # The page's one inline script runs by its hash; nothing else inline does.
        assert "'sha256-" in script and "unsafe-inline" not in script
        assert c.get("/exchange/catalog").headers["content-security-policy"].startswith("default-src 'none'")


# -- 17: explain says nothing of a denied entity's attributes -----------------------------------------------------
def test_17_explain_does_not_list_the_attributes_of_a_denied_entity(demo_platform: DemoPlatform) -> None:
    lab = key(demo_platform, "zju-urban-lab", ["analyst"], ["*"])
    environment = key(demo_platform, "hz-environment", ["data_steward"], ["*"])
    # hz-environment offers a public product (air quality); this entity of its own is in no product.
    entity = f"urn:ngsi-ld:NoiseLevelObserved:{uuid.uuid4().hex[:8]}"
    with client(demo_platform.live, environment) as c:
        r = c.post("/ngsi-ld/v1/entities", json={
            "id": entity, "type": "NoiseLevelObserved", "sonometerClass": {"type": "Property", "value": "1"},
            "inspectorNote": {"type": "Property", "value": "meter 7 replaced"}},
            headers={"Content-Type": "application/json"})
        assert r.status_code == 201, r.text
    with client(demo_platform.live, lab) as c:
        why = c.get("/exchange/explain", params={"entity": entity}).json()
        assert why["decision"] == "denied"
        assert why["masked_attributes"] == [] and why["visible_attributes"] == []
        assert "inspectorNote" not in str(why) and "sonometerClass" not in str(why)


# -- 19: the citizen's public page is public for everyone ---------------------------------------------------------
def test_19_a_signed_in_caller_reads_the_public_citizen_page(demo_platform: DemoPlatform, database_url: str) -> None:
    _open311_key(database_url)
    with httpx.Client(base_url=demo_platform.live.url, timeout=30) as citizen:
        created = citizen.post("/open311/v2/requests.json", data={
            "api_key": OPEN311_KEY, "service_code": "pothole", "lat": "30.209", "long": "120.2045",
            "description": "路灯不亮", "attribute[size]": "small", "phone": "13900001111"})
        rid = created.json()[0]["service_request_id"]
        anonymous = citizen.get(f"/citizen/public/requests/{rid}")
        assert anonymous.status_code == 200
    lab = key(demo_platform, "zju-urban-lab", ["analyst"], ["entities:read"])
    with client(demo_platform.live, lab) as c:
        signed_in = c.get(f"/citizen/public/requests/{rid}")
        assert signed_in.status_code == 200 and signed_in.json() == anonymous.json()
        assert "13900001111" not in signed_in.text


# -- CORS: no cross-origin reads unless configured -----------------------------------------------------------------
def test_cross_origin_is_refused_by_default_and_allowed_only_where_configured(demo_platform: DemoPlatform,
                                                                                tmp_path: Any) -> None:
    evil = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-api-key"}
    with client(demo_platform.live) as c:
        preflight = c.options("/exchange/whoami", headers=evil)
        assert "access-control-allow-origin" not in preflight.headers
        assert "access-control-allow-origin" not in c.get("/exchange/catalog", headers={"Origin": evil["Origin"]}
                                                          ).headers
    configured = LiveServer(Settings(database_url=f"sqlite:///{tmp_path / 'cors.db'}", port=free_port(),
                                     no_auth=False, cors_origins="https://ops.city.example")).start()
    try:
        with httpx.Client(base_url=configured.url, timeout=30) as c:
            ok = c.options("/exchange/whoami", headers={**evil, "Origin": "https://ops.city.example"})
            assert ok.status_code == 200
            assert ok.headers["access-control-allow-origin"] == "https://ops.city.example"
            assert "access-control-allow-origin" not in c.options("/exchange/whoami", headers=evil).headers
    finally:
        configured.stop()
