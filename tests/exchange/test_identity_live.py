"""Identities, the ledger's actors, key revocation and rotation, the audit trail and quotas (issue 13: findings 6,
14, 15, 20 and "key revocation, rotation, audit trail"), with authentication on, over HTTP, on both engines."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.exchange.conftest import bootstrap_key, client, secure_server
from tests.exchange.test_story_live import LD, flow, setup_orgs
from tests.helpers import problem


def _key(live: Any, admin: str, org: str, **body: Any) -> dict[str, Any]:
    with client(live, admin) as c:
        r = c.post(f"/exchange/organizations/{org}/keys", json={"subject": f"s-{uuid.uuid4().hex[:6]}", **body})
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]


# -- finding 20: JWTs ------------------------------------------------------------------------------------------
def test_jwt_without_scope_gets_no_scopes_and_platform_tokens_are_refused(secure: Any) -> None:
    live, admin = secure
    s = setup_orgs(live, admin)
    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(signer.public_key(), as_dict=True) | {"kid": "k-scope", "use": "sig"}
    with client(live, admin) as c:
        assert c.put("/exchange/oidc", json={"issuer": "https://idp.scope.example", "audience": "civicmesh",
                                             "jwks": {"keys": [jwk]}}).status_code == 200
    claims = {"iss": "https://idp.scope.example", "aud": "civicmesh", "sub": "dave", "org": s["b"],
              "exp": int(time.time()) + 300, "roles": ["analyst"]}

    def bearer(extra: dict[str, Any]) -> str:
        return "Bearer " + jwt.encode(claims | extra, signer, algorithm="RS256", headers={"kid": "k-scope"})

    eid = f"urn:ngsi-ld:TrafficFlowObserved:{uuid.uuid4().hex[:8]}"
    with client(live, Authorization=bearer({})) as c:
        assert c.get("/exchange/whoami").json()["scopes"] == []
        problem(c.post("/ngsi-ld/v1/entities", json=flow(eid, 120.1, 30.1), headers=LD), 403, "Forbidden")
    with client(live, Authorization=bearer({"scope": "entities:read entities:write"})) as c:
        assert c.get("/exchange/whoami").json()["scopes"] == ["entities:read", "entities:write"]
        assert c.post("/ngsi-ld/v1/entities", json=flow(eid, 120.1, 30.1), headers=LD).status_code == 201


def test_jwt_for_the_platform_organization_is_refused(secure: Any) -> None:
    live, admin = secure
    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(signer.public_key(), as_dict=True) | {"kid": "k-plat", "use": "sig"}
    with client(live, admin) as c:
        assert c.put("/exchange/oidc", json={"issuer": "https://idp.plat.example", "audience": "civicmesh",
                                             "jwks": {"keys": [jwk]}}).status_code == 200
    claims = {"iss": "https://idp.plat.example", "aud": "civicmesh", "sub": "mallory", "org": "platform",
              "exp": int(time.time()) + 300, "scope": "*"}
    token = jwt.encode(claims, signer, algorithm="RS256", headers={"kid": "k-plat"})
    with client(live, Authorization=f"Bearer {token}") as c:
        assert "platform" in problem(c.get("/exchange/whoami"), 401, "Unauthorized")["detail"]


# -- finding 6: the ledger's actors ----------------------------------------------------------------------------
def test_ledger_entries_carry_the_callers_organization_and_platform_kinds_are_the_platforms(secure: Any) -> None:
    live, admin = secure
    s = setup_orgs(live, admin)
    writer = _key(live, admin, s["b"], roles=["analyst"], scopes=["ledger"])["key"]
    subject = f"urn:ngsi-ld:Sensor:{uuid.uuid4().hex[:8]}"
    with client(live, writer) as w:
        r = w.post("/ledger/entries", json={"kind": "sensor.calibration", "actor": s["b"], "subject": subject,
                                            "payload": {"k": 1}})
        assert r.status_code == 201, r.text
        index = r.json()["indices"][0]
        assert orjson.loads(w.get(f"/ledger/entries/{index}").json()["entry"])["actor"] == s["b"]
        for forged in ({"kind": "sensor.calibration", "actor": "platform"},
                       {"kind": "sensor.calibration", "actor": s["a"]},
                       {"kind": "exchange.agreement.created"}, {"kind": "citizen.request.closed"},
                       {"kind": "data-rights.registered"}, {"kind": "agreement.transition"}):
            batch = [{"kind": "sensor.calibration", "actor": s["b"], "subject": subject, "payload": {"ok": True}},
                     {"actor": s["b"], "subject": subject, "payload": {"forged": True}, **forged}]
            problem(w.post("/ledger/entries", json=batch), 403, "Forbidden")
        # Nothing of a refused batch was written.
        entries = w.get("/ledger/entries", params={"subject": subject, "proofs": "false"}).json()["entries"]
        assert [e["index"] for e in entries] == [index]
        # Without an actor the entry is the caller's organization's.
        r = w.post("/ledger/entries", json={"kind": "sensor.calibration", "subject": subject + ":2", "payload": {}})
        assert r.status_code == 201, r.text
        assert orjson.loads(w.get(f"/ledger/entries/{r.json()['indices'][0]}").json()["entry"])["actor"] == s["b"]
    with client(live, admin) as c:  # the platform itself may record for a room outside this process
        r = c.post("/ledger/entries", json={"kind": "data-rights.registered", "actor": s["a"], "subject": subject,
                                            "payload": {"owner": s["a"]}})
        assert r.status_code == 201, r.text


# -- finding 14: the failed-login limiter ----------------------------------------------------------------------
@pytest.mark.live
def test_failed_logins_neither_lock_out_valid_keys_nor_evade_by_forwarded_headers(database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the limiter is in memory and engine-independent; one engine is enough")
    admin = bootstrap_key(database_url)
    live = secure_server(database_url)
    try:
        s = setup_orgs(live, admin)
        with client(live) as c:
            # A spray of unknown keys, each claiming another client address: X-Forwarded-For is not believed
            # (no trusted proxy is configured), so they all count against the real address.
            codes = [c.get("/exchange/whoami", headers={"X-API-Key": f"cmk_{uuid.uuid4().hex[:16]}_guess",
                                                        "X-Forwarded-For": f"198.51.100.{i}"}).status_code
                     for i in range(25)]
            assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}, codes
            r = c.get("/exchange/whoami", headers={"X-API-Key": "cmk_0123456789abcdef_guess"})
            assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
            # ... and a valid key from that same address still works.
            assert c.get("/exchange/whoami", headers={"X-API-Key": s["key_b"]}).json()["organization"] == s["b"]
            # Wrong secrets for B's key id slow that key id's failures, never B's own key.
            key_id = s["key_b"].split("_")[1]
            wrong = [c.get("/exchange/whoami", headers={"X-API-Key": f"cmk_{key_id}_wrong{i}"}).status_code
                     for i in range(22)]
            assert wrong[-1] == 429
            assert c.get("/exchange/whoami", headers={"X-API-Key": s["key_b"]}).status_code == 200
        with client(live, admin) as c:
            failed = c.get("/exchange/audit", params={"kind": "auth.failed", "limit_rows": 1000}).json()
            assert {row["subject"] for row in failed} >= {"address 127.0.0.1", f"key {key_id}"}
            assert not any("198.51.100." in row["subject"] for row in failed)
    finally:
        live.stop()


# -- finding 15: quotas ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quotas(database_url: str) -> Iterator[tuple[Any, str]]:
    admin = bootstrap_key(database_url)
    live = secure_server(database_url, rate_per_second=1.0, rate_burst=40, max_subscriptions_per_org=3,
                         max_batch_entities=5, max_sse_per_identity=2, trusted_proxies="127.0.0.1")
    yield live, admin
    live.stop()


def _until_refused(request: Any, most: int = 400) -> list[int]:
    """Status codes of requests sent back to back until the first 429 (the bucket refills at 1/s meanwhile, so on
    a slow machine that takes more than the burst)."""
    codes: list[int] = []
    while len(codes) < most and (not codes or codes[-1] != 429):
        codes.append(request())
    return codes


def test_requests_per_key_are_rate_limited_with_retry_after(quotas: Any) -> None:
    live, admin = quotas
    s = setup_orgs(live, admin)
    with client(live, s["key_b"]) as b, client(live, s["key_a"]) as a:
        codes = _until_refused(lambda: b.get("/exchange/whoami").status_code)
        assert codes[-1] == 429 and len(codes) > 40 and set(codes[:40]) == {200}, codes  # the burst of 40 first
        r = b.get("/exchange/whoami")
        assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 2
        assert "requests a second" in r.json()["detail"]
        assert a.get("/exchange/whoami").status_code == 200  # another key has its own bucket
        time.sleep(2.1)
        assert b.get("/exchange/whoami").status_code == 200  # the bucket refills


def test_anonymous_requests_are_rate_limited_per_address_behind_a_trusted_proxy(quotas: Any) -> None:
    """This server believes X-Forwarded-For from 127.0.0.1 (CIVICMESH_TRUSTED_PROXIES): each client address
    behind the proxy has its own bucket, and anonymous readers do not share one bucket among them all."""
    live, _ = quotas
    path = "/ngsi-ld/v1/entities?type=TrafficFlowObserved"
    with client(live) as c:
        first = _until_refused(lambda: c.get(path, headers={"X-Forwarded-For": "198.51.100.1"}).status_code)
        assert first[-1] == 429 and len(first) > 40 and set(first[:40]) == {200}, first
        assert c.get(path, headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 200


def test_subscriptions_per_organization_are_limited(quotas: Any) -> None:
    live, admin = quotas
    s = setup_orgs(live, admin)
    tenant = {"NGSILD-Tenant": s["tenant"]}

    def sub() -> dict[str, Any]:
        return {"id": f"urn:ngsi-ld:Subscription:{uuid.uuid4().hex[:8]}", "type": "Subscription",
                "entities": [{"type": "TrafficFlowObserved"}],
                "notification": {"endpoint": {"uri": "http://93.184.216.34/notify"}}}

    with client(live, s["key_b"]) as b, client(live, admin) as c:
        made = [b.post("/ngsi-ld/v1/subscriptions", json=sub(), headers=tenant) for _ in range(3)]
        assert [r.status_code for r in made] == [201] * 3, made[0].text
        body = problem(b.post("/ngsi-ld/v1/subscriptions", json=sub(), headers=tenant), 403, "Forbidden")
        assert "limit is 3" in body["detail"]
        assert len(b.get("/ngsi-ld/v1/subscriptions", headers=tenant).json()) == 3
        # Another organization and the platform admin are not held by B's count.
        assert c.post("/ngsi-ld/v1/subscriptions", json=sub(), headers=tenant).status_code == 201
        first = made[0].headers["Location"].rsplit("/", 1)[1]
        assert b.delete(f"/ngsi-ld/v1/subscriptions/{first}", headers=tenant).status_code == 204
        assert b.post("/ngsi-ld/v1/subscriptions", json=sub(), headers=tenant).status_code == 201


def test_parallel_subscription_creates_cannot_overrun_the_limit(quotas: Any) -> None:
    live, admin = quotas
    s = setup_orgs(live, admin)
    tenant = {"NGSILD-Tenant": s["tenant"], "X-API-Key": s["key_b"]}

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=live.url, headers=tenant, timeout=60) as b:
            answers = await asyncio.gather(*(b.post("/ngsi-ld/v1/subscriptions", json={
                "id": f"urn:ngsi-ld:Subscription:{uuid.uuid4().hex[:8]}", "type": "Subscription",
                "entities": [{"type": "TrafficFlowObserved"}],
                "notification": {"endpoint": {"uri": "http://93.184.216.34/notify"}}}) for _ in range(12)))
        return sorted(r.status_code for r in answers)

    assert asyncio.run(burst()) == [201] * 3 + [403] * 9
    with client(live, s["key_b"]) as b:
        assert len(b.get("/ngsi-ld/v1/subscriptions", headers={"NGSILD-Tenant": s["tenant"]}).json()) == 3


def test_batch_size_is_limited_for_callers_that_are_not_platform_admins(quotas: Any) -> None:
    live, admin = quotas
    s = setup_orgs(live, admin)
    tenant = {"NGSILD-Tenant": s["tenant"]}
    tag = uuid.uuid4().hex[:6]
    batch = [flow(f"urn:ngsi-ld:TrafficFlowObserved:{tag}-{i}", 120.1, 30.1) for i in range(6)]
    with client(live, s["key_a"]) as a, client(live, admin) as c:
        body = problem(a.post("/ngsi-ld/v1/entityOperations/upsert", json=batch, headers={**LD, **tenant}), 400,
                       "BadRequestData")
        assert "limit is 5" in body["detail"]
        assert a.get(f"/ngsi-ld/v1/entities/{batch[0]['id']}", headers=tenant).status_code == 404  # none written
        assert a.post("/ngsi-ld/v1/entityOperations/upsert", json=batch[:5], headers={**LD, **tenant}).status_code \
            in (201, 204)
        assert c.post("/ngsi-ld/v1/entityOperations/upsert", json=batch, headers={**LD, **tenant}).status_code \
            in (201, 204)


def test_live_streams_per_identity_are_limited(quotas: Any) -> None:
    live, admin = quotas
    s = setup_orgs(live, admin)
    with client(live, s["key_b"]) as b, client(live, s["key_a"]) as a:
        with b.stream("GET", "/web/events") as one, b.stream("GET", "/web/events") as two:
            assert one.status_code == 200 and two.status_code == 200
            with b.stream("GET", "/web/events") as third:  # a stream: on a server without the limit it never ends
                assert third.status_code == 429 and "live streams" in orjson.loads(third.read())["detail"]
            with a.stream("GET", "/web/events") as other:  # another identity has its own share
                assert other.status_code == 200
        deadline = time.monotonic() + 10  # the server notices the closed streams and frees their slots
        while True:
            with b.stream("GET", "/web/events") as again:
                if again.status_code == 200 or time.monotonic() > deadline:
                    break
            time.sleep(0.2)
        assert again.status_code == 200


# -- key revocation, rotation and the audit trail ------------------------------------------------------------
def test_rotation_and_revocation_take_effect_at_once_and_are_audited(secure: Any) -> None:
    live, admin = secure
    s = setup_orgs(live, admin)
    issued = _key(live, admin, s["b"], roles=["analyst"], scopes=["entities:read"])
    with client(live, issued["key"]) as old:
        assert old.get("/exchange/whoami").status_code == 200  # used once: nothing may keep it alive after this
        with client(live, s["key_a"]) as a:  # A's org admin may not rotate B's keys
            problem(a.post(f"/exchange/keys/{issued['id']}/rotate"), 404, "ResourceNotFound")
        with client(live, admin) as c:
            problem(c.post(f"/exchange/keys/{issued['id']}/rotate", json={"grace_seconds": -1}), 400,
                    "BadRequestData")
            rotated = c.post(f"/exchange/keys/{issued['id']}/rotate").json()
        assert rotated["replaces"] == issued["id"] and rotated["subject"] == issued["subject"]
        assert rotated["roles"] == ["analyst"] and rotated["scopes"] == ["entities:read"]
        assert "revoked" in problem(old.get("/exchange/whoami"), 401, "Unauthorized")["detail"]
    with client(live, rotated["key"]) as new:
        assert new.get("/exchange/whoami").json()["subject"] == issued["subject"]
        with client(live, admin) as c:  # a grace period keeps the old key working beside the new one
            graced = c.post(f"/exchange/keys/{rotated['id']}/rotate", json={"grace_seconds": 600}).json()
            listed = {k["id"]: k for k in c.get(f"/exchange/organizations/{s['b']}/keys").json()}
            assert listed[rotated["id"]]["revoked_at"] is None
            assert listed[rotated["id"]]["expires_at"] == graced["old_key_valid_until"]
        assert new.get("/exchange/whoami").status_code == 200
        with client(live, graced["key"]) as newer:
            assert newer.get("/exchange/whoami").status_code == 200
            with client(live, s["key_b"].split("_")[0] + "_" + s["key_b"].split("_")[1] + "_x") as bad:
                assert bad.get("/exchange/whoami").status_code == 401
            with client(live, admin) as c:
                assert c.post(f"/exchange/keys/{graced['id']}/revoke").json()["revoked"] is True
            assert "revoked" in problem(newer.get("/exchange/whoami"), 401, "Unauthorized")["detail"]
    with client(live, s["key_b"]) as b:
        problem(b.get("/exchange/audit"), 403, "Forbidden")
    with client(live, admin) as c:
        rows = c.get("/exchange/audit", params={"organization": "platform", "limit_rows": 1000}).json()
        mine = [(r["kind"], r["subject"]) for r in rows if r["subject"] in (issued["id"], rotated["id"],
                                                                             graced["id"])]
        assert ("key.issued", issued["id"]) in mine and ("key.rotated", issued["id"]) in mine
        assert ("key.rotated", rotated["id"]) in mine and ("key.revoked", graced["id"]) in mine
        assert {r["actor"] for r in rows if r["subject"] == issued["id"]} == {"bootstrap-admin"}
        failed = c.get("/exchange/audit", params={"kind": "auth", "limit_rows": 1000}).json()
        assert any(r["kind"] == "auth.failed" and r["subject"] == f"key {issued['id']}" for r in failed)
        problem(c.get("/exchange/audit", params={"limit_rows": 0}), 400, "BadRequestData")


def test_a_revoked_key_does_not_keep_an_open_live_stream(secure: Any) -> None:
    live, admin = secure
    s = setup_orgs(live, admin)
    issued = _key(live, admin, s["b"], roles=["analyst"], scopes=["entities:read"])
    with client(live, issued["key"]) as b, b.stream("GET", "/web/events") as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")
        with client(live, admin) as c:
            assert c.post(f"/exchange/keys/{issued['id']}/revoke").json()["revoked"] is True
        deadline = time.monotonic() + 45  # keep-alives every 15 s let the stream notice; this bounds a hang
        seen = []
        for line in lines:
            seen.append(line)
            if line == "event: revoked" or time.monotonic() > deadline:
                break
        assert "event: revoked" in seen, seen
        assert all(line in ("", "data: {\"detail\": \"the credential of this stream was revoked or expired\"}")
                   for line in lines)  # and then it ends
