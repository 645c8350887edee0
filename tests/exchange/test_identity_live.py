"""Identities, the ledger's actors, key revocation and rotation, the audit trail and quotas (issue 13: findings 6,
14, 15, 20 and "key revocation, rotation, audit trail"), with authentication on, over HTTP, on both engines."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.exchange.conftest import client
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
