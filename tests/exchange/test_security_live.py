"""Attacks on every room's endpoints with authentication on: each must fail to get in."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.exchange.conftest import client, secure_server
from tests.exchange.test_story_live import LD, flow, setup_orgs
from tests.helpers import problem


def test_anonymous_surfaces(secure: Any) -> None:
    live, _ = secure
    with client(live) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/openapi.json").status_code == 200
        assert c.get("/open311/v2/services.json").status_code == 200
        assert c.get("/ledger/checkpoint").status_code in (200, 404)
        # Anonymous reads see public open data only; writes and everything else need a credential.
        assert c.get("/ngsi-ld/v1/entities", params={"type": "TrafficFlowObserved"}).status_code == 200
        # ... and their history: screened the same way, so nothing here without a public product.
        r = c.get("/ngsi-ld/v1/temporal/entities", params={"type": "TrafficFlowObserved"})
        assert r.status_code == 200 and r.json() == []
        problem(c.post("/ngsi-ld/v1/entities", json=flow("urn:ngsi-ld:X:1", 1, 1), headers=LD), 401, "Unauthorized")
        problem(c.post("/ngsi-ld/v1/temporal/entities", json=flow("urn:ngsi-ld:X:1", 1, 1), headers=LD),
                401, "Unauthorized")
        for path in ("/exchange/kpis", "/citizen/triage", "/metrics", "/ngsi-ld/v1/subscriptions",
                     "/alerts/rules", "/exchange/metering"):
            problem(c.get(path), 401, "Unauthorized")
        problem(c.post("/ledger/entries", json={"kind": "x"}), 401, "Unauthorized")
        problem(c.post("/feasibility/evaluate", json={}), 401, "Unauthorized")


def test_forged_expired_revoked_keys(secure: Any) -> None:
    live, admin = secure
    s = setup_orgs(live, admin)
    key_id = s["key_b"].split("_")[1]
    with client(live, admin) as c:
        past = c.post(f"/exchange/organizations/{s['b']}/keys", json={
            "subject": "old", "scopes": ["*"], "expires_at": "2020-01-01T00:00:00Z"}).json()["key"]
    for bad, text in ((s["key_b"][:-4] + "AAAA", "not valid"), (f"cmk_{uuid.uuid4().hex[:16]}_guess", "not valid"),
                      ("nonsense", "not valid"), (past, "expired")):
        with client(live, bad) as c:
            assert text in problem(c.get("/exchange/whoami"), 401, "Unauthorized")["detail"]
    with client(live, s["key_a"]) as a:
        problem(a.post(f"/exchange/keys/{key_id}/revoke"), 404, "ResourceNotFound")  # not A's key
    with client(live, admin) as c:
        assert c.post(f"/exchange/keys/{key_id}/revoke").json()["revoked"] is True
    with client(live, s["key_b"]) as b:
        assert "revoked" in problem(b.get("/exchange/whoami"), 401, "Unauthorized")["detail"]


def test_jwt_bearer_tokens(secure: Any) -> None:
    live, admin = secure
    s = setup_orgs(live, admin)
    trusted, stranger = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(trusted.public_key(), as_dict=True) | {"kid": "k1", "use": "sig"}
    with client(live, admin) as c:
        r = c.put("/exchange/oidc", json={"issuer": "https://idp.city.example", "audience": "civicmesh",
                                          "jwks": {"keys": [jwk]}})
        assert r.status_code == 200, r.text
    now = int(time.time())
    good = {"iss": "https://idp.city.example", "aud": "civicmesh", "sub": "carol", "org": s["b"],
            "exp": now + 300, "roles": ["analyst", "platform_admin"]}

    def token(claims: dict[str, Any], key: Any = trusted, kid: str = "k1") -> str:
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})

    with client(live, Authorization=f"Bearer {token(good)}") as c:
        me = c.get("/exchange/whoami").json()
        # A token cannot make itself a platform admin.
        assert me["organization"] == s["b"] and me["roles"] == ["analyst"] and me["via"] == "jwt"
    unsigned = jwt.encode(good, None, algorithm="none")
    cases = {
        "alg none": unsigned,
        "wrong issuer": token(good | {"iss": "https://evil.example"}),
        "wrong audience": token(good | {"aud": "other"}),
        "expired": token(good | {"exp": now - 3600}),
        "unknown key": token(good, stranger, "k2"),
        "forged with a known kid": token(good, stranger, "k1"),
        "unknown organization": token(good | {"org": "nobody"}),
    }
    for name, bad in cases.items():
        with client(live, Authorization=f"Bearer {bad}") as c:
            assert c.get("/exchange/whoami").status_code == 401, name


def test_cross_organization_and_tenant_attacks(secure: Any) -> None:
    live, admin = secure
    s = setup_orgs(live, admin)
    tenant = {"NGSILD-Tenant": s["tenant"]}
    eid = f"urn:ngsi-ld:TrafficFlowObserved:{uuid.uuid4().hex[:8]}"
    with client(live, s["key_a"]) as a, client(live, s["key_b"]) as b:
        assert a.post("/ngsi-ld/v1/entities", json=flow(eid, 120.1, 30.1), headers={**LD, **tenant}).status_code == 201
        # Another tenant: B may not create there, and A's entity is not visible through it.
        problem(b.post("/ngsi-ld/v1/entities", json=flow(eid, 1, 1), headers={**LD, "NGSILD-Tenant": "elsewhere"}),
                403, "Forbidden")
        problem(b.get(f"/ngsi-ld/v1/entities/{eid}", headers={"NGSILD-Tenant": "elsewhere"}), 404,
                "NonexistentTenant")
        # Batch operations: each of A's entities is refused to B.
        r = b.post("/ngsi-ld/v1/entityOperations/upsert", json=[flow(eid, 1, 1)], headers={**LD, **tenant})
        assert r.status_code == 207 and r.json()["errors"][0]["entityId"] == eid
        r = b.post("/ngsi-ld/v1/entityOperations/delete", json=[eid], headers=tenant)
        assert r.status_code == 207
        r = b.post("/ngsi-ld/v1/entityOperations/query", json={"type": "Query", "entities": [
            {"type": "TrafficFlowObserved"}]}, headers=tenant)
        assert r.status_code == 200 and r.json() == []
        # History is screened like the entity: no agreement, no history.
        problem(b.get(f"/ngsi-ld/v1/temporal/entities/{eid}", headers=tenant), 403, "Forbidden")
        # Surfaces that are not screened per organization are refused outright.
        problem(b.post("/ngsi-ld/v1/csourceRegistrations", json={
            "type": "ContextSourceRegistration", "information": [{"entities": [{"type": "TrafficFlowObserved"}]}],
            "endpoint": "http://127.0.0.1:9/"}, headers=tenant), 403, "Forbidden")
        problem(b.get("/ngsi-ld/v1/types", headers=tenant), 403, "Forbidden")
        problem(b.post("/ledger/entries", json={"kind": "forged"}), 403, "Forbidden")
        problem(b.get("/metrics"), 403, "Forbidden")
        # The citizen desk: only a department, only for itself.
        problem(b.get("/citizen/triage"), 403, "Forbidden")
        problem(a.get("/citizen/departments/someone-else/requests"), 403, "Forbidden")
        problem(a.post("/citizen/requests/1/accept", json={"department": "someone-else"}), 403, "Forbidden")
        # Exchange administration is the platform admin's.
        problem(b.post("/exchange/organizations", json={"id": "x"}), 403, "Forbidden")
        problem(b.post(f"/exchange/organizations/{s['a']}/keys", json={"subject": "me", "scopes": ["*"]}),
                403, "Forbidden")
        problem(b.post("/exchange/products", json={}), 403, "Forbidden")
    with client(live, s["key_a"]) as a:
        assert a.get(f"/ngsi-ld/v1/entities/{eid}", headers=tenant).status_code == 200


def test_bodies_and_policy_validation(secure: Any) -> None:
    live, admin = secure
    s = setup_orgs(live, admin)
    with client(live, s["key_a"]) as a:
        problem(a.post("/exchange/products", content=b"{not json", headers={"Content-Type": "application/json"}),
                400, "InvalidRequest")
        problem(a.post("/exchange/products", content=b"x" * (70 * 1024),
                       headers={"Content-Type": "application/json"}), 413, "PayloadTooLarge")
        body = problem(a.post("/exchange/policies/validate", json={"permission": [{"action": "read", "constraint": [
            {"leftOperand": "shoeSize", "operator": "eq", "rightOperand": "42"},
            {"leftOperand": "purpose", "operator": "near", "rightOperand": "x"},
            {"leftOperand": "count", "operator": "isA", "rightOperand": 3}]}]}), 400, "BadRequestData")
        assert len(body["problems"]) == 3
        assert "shoeSize" in body["problems"][0] and "near" in body["problems"][1]
        r = a.post("/exchange/policies/validate", json={"permission": [{"action": "odrl:use", "constraint": [
            {"or": [{"leftOperand": "dateTime", "operator": "lt", "rightOperand": "2030-01-01T00:00:00Z"},
                    {"leftOperand": "recipient", "operator": "isA", "rightOperand": "research_institute"}]}]}]})
        assert r.status_code == 200 and r.json()["permission"][0]["action"] == "use"


@pytest.mark.live  # starts its own server
def test_key_guessing_is_rate_limited(database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the limiter is in memory and engine-independent; one engine is enough")
    live = secure_server(database_url)
    try:
        with client(live) as c:
            codes = [c.get("/exchange/whoami", headers={"X-API-Key": f"cmk_{i:016x}_guess"}).status_code
                     for i in range(25)]
        assert codes[:20] == [401] * 20 and codes[-1] == 429
    finally:
        live.stop()
