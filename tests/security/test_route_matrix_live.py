"""Every route x {anonymous, another organization, wrong role, wrong scope}, generated from the declared rules.

The routes come from walking the live app (included routers unpacked), so a route is covered the day it is added.
What each persona should get is what the route's own rule decides for that caller; the live server, with
authentication on and the demo organizations, must answer exactly that refusal (401 or 403 ProblemDetails), and
must not refuse with 401 where the rule admits a valid credential.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from civicmesh import access
from civicmesh.errors import Problem
from civicmesh.exchange.identity import ExchangeCaller
from tests.security.conftest import DemoPlatform, Persona

pytestmark = pytest.mark.live

# A value for each path parameter (some routes decide by it: both values of those are tried).
SAMPLES: dict[str, list[str]] = {
    "operation": ["query", "upsert"], "action": ["approve", "accept"], "fmt": ["json"],
    "entity_id": ["urn:ngsi-ld:Probe:matrix"], "request_id": ["1"], "department": ["binjiang_gov"],
    "index": ["0"], "size": ["1"], "path": ["0/000"], "rest": ["nothing-here"], "name": ["index.html"],
    "wanted": ["v0"], "service_code": ["pothole"], "service_request_id": ["1"], "token": ["t"],
    "alert_id": ["urn:ngsi-ld:Alert:matrix"], "rule_id": ["matrix-rule"], "device_id": ["matrix-device"],
    "org": ["hz-transport"], "key_id": ["0000000000000000"], "nid": ["matrix-request"],
    "product_id": ["matrix-product"], "sub_id": ["urn:ngsi-ld:Subscription:matrix"],
    "reg_id": ["urn:ngsi-ld:ContextSourceRegistration:matrix"], "context_id": ["matrix-context"],
    "type_name": ["Streetlight"], "attr": ["powerState"], "instance_id": ["urn:ngsi-ld:Instance:1"],
    "tail": ["powerState/x"],
}
_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


def concrete(template: str) -> list[tuple[str, dict[str, str]]]:
    """Every (path, path params) the samples make of a route template."""
    out: list[tuple[str, dict[str, str]]] = [("", {})]
    cursor = 0
    for match in _PARAM.finditer(template):
        literal = template[cursor:match.start()]
        values = SAMPLES.get(match.group(1))
        assert values, f"no sample value for path parameter {match.group(1)!r} of {template}: add one to SAMPLES"
        out = [(path + literal + v, {**params, match.group(1): v}) for path, params in out for v in values]
        cursor = match.end()
    return [(path + template[cursor:], params) for path, params in out]


def requests_to_try(platform: DemoPlatform) -> list[tuple[str, str, dict[str, str], access.Rule]]:
    found = []
    for endpoint in access.endpoints(platform.live.app):
        if endpoint.path.endswith("/") and endpoint.path != "/":
            continue  # the trailing-slash twin of a route, with the same rule
        [rule] = endpoint.rules
        for method in sorted(endpoint.methods - {"HEAD"}):
            for path, params in concrete(endpoint.path):
                found.append((method, path, params, rule))
    return found


def verdict(rule: access.Rule, persona: Persona, organizations: dict[str, Any], method: str, path: str,
            params: dict[str, str]) -> int | None:
    """What the rule itself decides for this persona: 401, 403, or None (admitted)."""
    caller: Any = access.ANONYMOUS if persona.key is None else ExchangeCaller(
        subject=persona.name, organization=persona.organization, roles=frozenset(persona.roles),
        scopes=frozenset(persona.scopes))

    async def body() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    scope = {"type": "http", "method": method, "path": path, "path_params": params, "query_string": b"",
             "headers": [(b"content-type", b"application/json")],
             "state": {"caller": caller, "organization": organizations.get(persona.organization or "")}}

    async def decide() -> int | None:
        try:
            await rule(Request(scope, body))
        except Problem as refused:
            return refused.status
        return None

    return asyncio.run(decide())


def answer(http: httpx.Client, method: str, path: str) -> httpx.Response:
    # Streamed, and closed once the status is known: the dashboard's live stream never ends by itself.
    content = b"{}" if method in ("POST", "PUT", "PATCH") else None
    with http.stream(method, path, content=content, headers={"Content-Type": "application/json"}) as response:
        if response.status_code in (401, 403):
            response.read()
        return response


def test_every_route_refuses_whom_its_rule_refuses(demo_platform: DemoPlatform) -> None:
    tried = requests_to_try(demo_platform)
    assert len(tried) > 130
    refused = mismatches = 0
    problems: list[str] = []
    for persona in demo_platform.personas:
        headers = {"X-API-Key": persona.key} if persona.key else {}
        with httpx.Client(base_url=demo_platform.live.url, headers=headers, timeout=30) as http:
            for method, path, params, rule in tried:
                expected = verdict(rule, persona, demo_platform.organizations, method, path, params)
                got = answer(http, method, path)
                if expected is not None:
                    refused += 1
                    ok = got.status_code == expected and \
                        got.headers["content-type"].startswith("application/problem+json")
                else:
                    # Admitted by the rule: the room may still say no (the gate, a missing entity), but a valid
                    # credential is never answered "who are you?".
                    ok = got.status_code != 401 or persona.key is None
                if not ok:
                    mismatches += 1
                    problems.append(f"{persona.name} {method} {path} [{rule.name}]: rule says {expected}, "
                                    f"server said {got.status_code}")
    assert not problems, "\n".join(problems[:40])
    # Every persona meets refusals: the matrix is not vacuous.
    print(f"{len(tried)} requests x {len(demo_platform.personas)} personas; {refused} refused by their rule")
    assert refused > 4 * 20 and mismatches == 0


def test_each_persona_is_refused_where_expected(demo_platform: DemoPlatform) -> None:
    """A few cells written out by hand, so the generator itself is checked against what a reader expects."""
    by_name = {p.name: p for p in demo_platform.personas}
    cells = [
        ("anonymous", "GET", "/exchange/kpis", 401), ("anonymous", "POST", "/alerts/rules", 401),
        ("anonymous", "GET", "/ledger/checkpoint", None), ("anonymous", "GET", "/exchange/catalog", None),
        ("other-organization", "GET", "/citizen/triage", 403), ("other-organization", "GET", "/metrics", 403),
        ("wrong-role", "POST", "/exchange/requests/matrix-request/approve", 403),
        ("wrong-role", "POST", "/exchange/products", 403),
        ("wrong-scope", "GET", "/exchange/requests", 403), ("wrong-scope", "POST", "/iot/devices", 403),
        ("wrong-scope", "POST", "/alerts/rules", 403), ("wrong-scope", "POST", "/feasibility/evaluate", 403),
        ("wrong-scope", "POST", "/ledger/entries", 403),
    ]
    for name, method, path, status in cells:
        persona = by_name[name]
        headers = {"X-API-Key": persona.key} if persona.key else {}
        with httpx.Client(base_url=demo_platform.live.url, headers=headers, timeout=30) as http:
            got = answer(http, method, path)
        if status is None:
            assert got.status_code not in (401, 403), (name, method, path, got.status_code)
        else:
            assert got.status_code == status, (name, method, path, got.status_code)
