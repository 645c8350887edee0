"""HTTP of the data exchange (/exchange/...) and the identity middleware in front of every room.

`build(platform)` adds the middleware that authenticates every request (API keys, OIDC bearer tokens) and sets
`request.state.caller`, serves /exchange, and starts the exchange behind the platform's gate.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from civicmesh.access import (
    Caller,
    Rule,
    authenticated,
    caller,
    current_caller,
    platform_admin,
    public,
    role,
    scope,
    when,
)
from civicmesh.bodies import read_object
from civicmesh.config import Settings
from civicmesh.errors import Problem
from civicmesh.exchange import dcat, odrl
from civicmesh.exchange.enforce import ExchangeGate
from civicmesh.exchange.identity import ExchangeCaller, is_admin
from civicmesh.exchange.limits import FailureLimiter, RequestRate, credential_of
from civicmesh.exchange.service import AuthError, Exchange
from civicmesh.platform import Platform, Room
from civicmesh.store.exchange import ExchangeStore

log = logging.getLogger("civicmesh.exchange")
PURPOSE_HEADER = "civicmesh-purpose"
NO_AUTH_CALLER = ExchangeCaller(subject="no-auth", organization="platform", roles=frozenset({"platform_admin"}),
                                via="no-auth")
ANONYMOUS_HTTP = ExchangeCaller(subject="anonymous", organization=None, roles=frozenset(), scopes=frozenset(),
                                via="anonymous")
# Longest a rotated key keeps working beside its replacement: a week to roll the new secret out.
MAX_ROTATION_GRACE = 7 * 24 * 3600


def bootstrap_file(settings: Settings) -> Path:
    """Where the first start leaves the bootstrap admin key: in the data home (see Settings.data_home)."""
    return settings.data_home / "exchange-bootstrap-admin.key"


def write_private(path: Path, text: str) -> None:
    """Write a secret readable by its owner alone from the first byte: a fresh file made with mode 0600 (never a
    world-readable file chmod-ed afterwards), moved over any older one in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fresh.unlink(missing_ok=True)
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(fresh, path)
    except BaseException:
        fresh.unlink(missing_ok=True)
        raise


async def bootstrap_admin(exchange: Exchange, subject: str = "bootstrap-admin") -> dict[str, Any]:
    """Make the platform organization (if missing) and a platform-admin key for it."""
    if await exchange.org("platform") is None:
        doc = {"id": "platform", "name": {"zh": "平台运营方", "en": "Platform operator"}, "kind": "platform",
               "sector": "government", "tenants": ["*"], "citizen_department": None, "created_at": odrl_now()}
        await exchange.store.add_org(doc)
        exchange._orgs["platform"] = doc
    return await exchange.issue_key("platform", subject, ["platform_admin"], ["*"], None)


def odrl_now() -> str:
    from civicmesh.exchange.identity import iso, utcnow

    return iso(utcnow())


def _problem(status: int, kind: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    body = Problem(kind, detail, status=status).to_dict()
    return Response(orjson.dumps(body), status_code=status, media_type="application/problem+json", headers=headers)


class IdentityMiddleware:
    """Say who is calling, nothing more: `request.state.caller` is the authenticated caller or an anonymous one.

    What each caller may do is the route's own declared rule (civicmesh.access). A credential that is presented
    and does not verify is refused here (401; 429 after repeated failures), and every caller's request rate is
    limited here (per credential; anonymous callers per address)."""

    def __init__(self, app: ASGIApp, exchange: Exchange, platform: Platform) -> None:
        self.app = app
        self.exchange = exchange
        self.platform = platform
        self.limiter = FailureLimiter(platform.settings.auth_failure_limit, platform.settings.auth_failure_window)
        self.rate = RequestRate(platform.settings.rate_per_second, platform.settings.rate_burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.platform.settings.no_auth:
            await self._pass(NO_AUTH_CALLER, None, scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = (scope.get("client") or ("unknown", 0))[0]
        caller, failure = await self._authenticate(headers, client)
        if failure is not None:
            await failure(scope, receive, send)
            return
        too_many = self._over_rate(caller or ANONYMOUS_HTTP, client)
        if too_many is not None:
            await too_many(scope, receive, send)
            return
        if caller is None:
            # Not the current caller yet: a route whose rule screens anonymous reads makes it so; elsewhere a
            # room's own internal writes (an Open311 report becoming an entity) stay the platform's.
            scope.setdefault("state", {})["caller"] = ANONYMOUS_HTTP
            await self.app(scope, receive, send)
            return
        await self._pass(caller, await self.exchange.org(caller.organization), scope, receive, send)

    async def _pass(self, caller: Caller, organization: dict[str, Any] | None, scope: Scope, receive: Receive,
                    send: Send) -> None:
        state = scope.setdefault("state", {})
        state["caller"], state["organization"] = caller, organization
        token = current_caller.set(caller)
        try:
            await self.app(scope, receive, send)
        finally:
            current_caller.reset(token)

    async def _authenticate(self, headers: dict[str, str], client: str) -> tuple[ExchangeCaller | None,
                                                                                   Response | None]:
        authorization = headers.get("authorization", "")
        key = headers.get("x-api-key")
        if not authorization and not key:
            return None, None
        purpose = headers.get(PURPOSE_HEADER)
        try:
            if key:
                return await self.exchange.authenticate_key(key.strip(), purpose), None
            scheme, _, credential = authorization.partition(" ")
            if scheme.lower() != "bearer" or not credential.strip():
                raise AuthError("the Authorization header must be 'Bearer <token or API key>'")
            credential = credential.strip()
            if credential.startswith("cmk_"):
                return await self.exchange.authenticate_key(credential, purpose), None
            return await self.exchange.authenticate_jwt(credential, purpose), None
        except AuthError as exc:
            return None, await self._failed(exc, client)

    async def _failed(self, exc: AuthError, client: str) -> Response:
        """A credential that did not verify: 401, or 429 once its bucket (the key it named, else the client
        address) has failed too often. Verification runs first, so a valid key is never refused here."""
        bucket = f"key {exc.key_id}" if exc.key_id else f"address {client}"
        wait = self.limiter.blocked(bucket)
        if wait:
            return _problem(429, "TooManyRequests", f"too many failed authentications for {bucket}; retry in "
                            f"{int(wait) + 1} s", {"Retry-After": str(int(wait) + 1)})
        self.limiter.fail(bucket)
        await self.exchange.audit("auth.failed", None, bucket, {"reason": str(exc), "address": client})
        return _problem(401, "Unauthorized", str(exc), {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    def _over_rate(self, caller: ExchangeCaller, client: str) -> Response | None:
        """429 with Retry-After when the caller's credential (an anonymous caller: its address) has used up its
        request rate."""
        wait = self.rate.take(credential_of(caller) if caller is not ANONYMOUS_HTTP else f"anonymous@{client}")
        if not wait:
            return None
        seconds = max(1, int(wait + 0.999))
        return _problem(429, "TooManyRequests", f"the credential of {caller.subject} sent more than "
                        f"{self.rate.rate:g} requests a second (bursts up to {self.rate.burst}); retry in {seconds} s",
                        {"Retry-After": str(seconds)})


# -- the /exchange routes ----------------------------------------------------------------------------------
def _caller(request: Request) -> Caller:
    return caller(request)


def _admin(who: Caller) -> None:
    # The route's rule already admitted only platform admins; kept as a second lock on the most powerful routes.
    if not is_admin(who):
        raise Problem("Forbidden", "this needs a platform admin")


async def _body(request: Request, limit: int) -> dict[str, Any]:
    return await read_object(request, limit)


def _public(product: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in product.items() if not k.startswith("_")}


# Provider-side decisions on an access request bind the organization's data: a data steward's or org admin's.
PROVIDER_ACTIONS = {"approve", "reject", "counter"}


def _provider_action(request: Request) -> bool:
    return request.path_params.get("action") in PROVIDER_ACTIONS


_STEWARD = role("org_admin", "data_steward", scope_name="exchange")
RULE_OF: dict[str, Rule] = {
    "public": public, "authenticated": authenticated, "platform_admin": platform_admin,
    "exchange": scope("exchange"), "org_admin": role("org_admin", scope_name="exchange"), "steward": _STEWARD,
    "transition": when(_provider_action, _STEWARD, scope("exchange")),
}
RULES = {name: rule.depends() for name, rule in RULE_OF.items()}


def router(exchange: Exchange, gate: ExchangeGate, platform: Platform) -> APIRouter:
    r = APIRouter(prefix="/exchange", tags=["data exchange"])
    limit = platform.settings.max_body_bytes

    @r.get("/whoami", summary="The authenticated caller", dependencies=[RULES['authenticated']])
    async def whoami(request: Request) -> dict[str, Any]:
        c = _caller(request)
        return {"subject": c.subject, "organization": c.organization, "roles": sorted(c.roles),
                "scopes": sorted(getattr(c, "scopes", [])), "via": getattr(c, "via", None)}

    @r.post("/organizations", status_code=201, summary="Register an organization (platform admin)",
            dependencies=[RULES['platform_admin']])
    async def create_org(request: Request) -> dict[str, Any]:
        c = _caller(request)
        _admin(c)
        doc = await exchange.create_org(await _body(request, limit))
        await exchange.audit("organization.created", c, doc["id"], {"kind": doc["kind"], "tenants": doc["tenants"]})
        return doc

    @r.get("/organizations", summary="Registered organizations", dependencies=[RULES['exchange']])
    async def orgs(request: Request) -> list[dict[str, Any]]:
        _caller(request)
        return await exchange.store.list_orgs()

    @r.post("/organizations/{org}/keys", status_code=201, summary="Issue an API key (shown once)",
            dependencies=[RULES['org_admin']])
    async def issue(org: str, request: Request) -> dict[str, Any]:
        c = _caller(request)
        body = await _body(request, limit)
        roles, scopes = body.get("roles", ["analyst"]), body.get("scopes", ["entities:read"])
        if not isinstance(roles, list) or not isinstance(scopes, list):
            raise Problem("BadRequestData", "'roles' and 'scopes' must be lists")
        if not is_admin(c) and not (c.organization == org and "org_admin" in c.roles
                                    and "platform_admin" not in roles):
            raise Problem("Forbidden", "keys are issued by a platform admin or by the organization's own org_admin")
        subject = body.get("subject")
        if not isinstance(subject, str) or not subject:
            raise Problem("BadRequestData", "'subject' (who the key is for) must be a non-empty string")
        issued = await exchange.issue_key(org, subject, roles, scopes, body.get("expires_at"))
        await exchange.audit("key.issued", c, issued["id"], {k: issued[k] for k in (
            "organization", "subject", "roles", "scopes", "expires_at")})
        return issued

    @r.get("/organizations/{org}/keys", summary="API keys of an organization (never the secrets)",
           dependencies=[RULES['org_admin']])
    async def keys(org: str, request: Request) -> list[dict[str, Any]]:
        c = _caller(request)
        if not is_admin(c) and c.organization != org:
            raise Problem("Forbidden", "an organization sees only its own keys")
        return await exchange.store.list_keys(org)

    @r.post("/keys/{key_id}/revoke", summary="Revoke an API key at once", dependencies=[RULES['org_admin']])
    async def revoke(key_id: str, request: Request) -> dict[str, Any]:
        c = _caller(request)
        row = await exchange.store.get_key(key_id)
        if row is None or not is_admin(c) and not (row["organization"] == c.organization and "org_admin" in c.roles):
            raise Problem("ResourceNotFound", f"API key {key_id} does not exist")
        events = [("exchange.key.revoked", key_id, {"organization": row["organization"], "by": c.subject})]
        if not await exchange.store.revoke_key(key_id, odrl_now(), events):
            raise Problem("Conflict", f"API key {key_id} is already revoked")
        await exchange.audit("key.revoked", c, key_id, {"organization": row["organization"],
                                                        "subject": row["subject"]})
        return {"id": key_id, "revoked": True}

    @r.post("/keys/{key_id}/rotate", status_code=201,
            summary="Replace an API key: a new secret (shown once); the old key revoked at once or after "
                    "grace_seconds", dependencies=[RULES['org_admin']])
    async def rotate(key_id: str, request: Request) -> dict[str, Any]:
        c = _caller(request)
        row = await exchange.store.get_key(key_id)
        if row is None or not is_admin(c) and not (row["organization"] == c.organization and "org_admin" in c.roles
                                                   and "platform_admin" not in row["roles"]):
            raise Problem("ResourceNotFound", f"API key {key_id} does not exist")
        body = await read_object(request, limit, empty={})
        grace = body.get("grace_seconds", 0)
        if isinstance(grace, bool) or not isinstance(grace, int) or not 0 <= grace <= MAX_ROTATION_GRACE:
            raise Problem("BadRequestData", f"'grace_seconds' must be an integer from 0 to {MAX_ROTATION_GRACE}")
        rotated = await exchange.rotate_key(key_id, grace)
        await exchange.audit("key.rotated", c, key_id, {"organization": row["organization"],
                                                        "subject": row["subject"], "new_key": rotated["id"],
                                                        "old_key_valid_until": rotated["old_key_valid_until"]})
        return rotated

    @r.get("/audit", summary="The audit trail: keys issued, revoked, rotated; organizations, OIDC trust, "
                             "ownership, products and agreements changed; failed authentications (platform admin)",
                                                                                                  dependencies=[RULES['platform_admin']])
    async def audit(request: Request, kind: str | None = None, organization: str | None = None, after: int = 0,
                    limit_rows: int = 100) -> list[dict[str, Any]]:
        _admin(_caller(request))
        if not 1 <= limit_rows <= 1000 or not 0 <= after < 2**62:
            raise Problem("BadRequestData", "'limit_rows' must be 1..1000 and 'after' a non-negative row id")
        return await exchange.store.audit(kind=kind, organization=organization, after=after, limit=limit_rows)

    @r.put("/oidc", summary="Trust one OIDC issuer: issuer, audience and its JWKS (platform admin)",
           dependencies=[RULES['platform_admin']])
    async def oidc(request: Request) -> dict[str, Any]:
        c = _caller(request)
        _admin(c)
        configured = await exchange.configure_oidc(await _body(request, limit))
        await exchange.audit("oidc.configured", c, configured["issuer"], configured)
        return configured

    @r.post("/ownership", summary="Assign existing entities to an organization (platform admin)",
            dependencies=[RULES['platform_admin']])
    async def ownership(request: Request) -> dict[str, Any]:
        _admin(_caller(request))
        body = await _body(request, limit)
        org, ids, tenant = body.get("organization"), body.get("entities"), body.get("tenant", "")
        if not isinstance(org, str) or await exchange.org(org) is None or not isinstance(ids, list) \
                or not all(isinstance(i, str) for i in ids):
            raise Problem("BadRequestData", "'organization' must name a registered organization and 'entities' "
                                            "be a list of entity ids")
        for entity_id in ids:
            await exchange.store.claim(tenant, entity_id, org, odrl_now())
        await exchange.audit("ownership.assigned", _caller(request), org, {"tenant": tenant, "entities": ids[:100],
                                                                           "count": len(ids)})
        return {"organization": org, "tenant": tenant, "entities": len(ids)}

    @r.post("/policies/validate", summary="Check an ODRL policy; 400 lists every problem",
            dependencies=[RULES['exchange']])
    async def validate(request: Request) -> dict[str, Any]:
        _caller(request)
        try:
            return odrl.validate(await _body(request, limit))
        except odrl.PolicyError as exc:
            raise Problem("BadRequestData", "the policy is not valid: " + "; ".join(exc.problems),
                          extra={"problems": exc.problems}) from exc

    @r.post("/products", status_code=201, summary="Offer a data product", dependencies=[RULES['steward']])
    async def create_product(request: Request) -> dict[str, Any]:
        c = _caller(request)
        product = _public(await exchange.create_product(c, await _body(request, limit)))
        await exchange.audit("policy.offered", c, product["id"], {"offer": product.get("offer")})
        return product

    @r.get("/catalog", summary="Search the catalog (q: words; sector; provider)", dependencies=[RULES['public']])
    async def catalog(q: str | None = None, sector: str | None = None,
                      provider: str | None = None) -> list[dict[str, Any]]:
        return [_public(p) for p in await exchange.search(q, sector, provider)]

    @r.get("/catalog/{product_id}", summary="One data product", dependencies=[RULES['public']])
    async def product(product_id: str) -> dict[str, Any]:
        return _public(await exchange.product(product_id))

    @r.get("/dcat", summary="The catalog as DCAT-AP 3: format=jsonld (default) or turtle",
           dependencies=[RULES['public']])
    async def export(request: Request, format: str = "jsonld") -> Response:
        products = await exchange.store.list_products()
        orgs = {o["id"]: o for o in await exchange.store.list_orgs()}
        base = str(request.base_url).rstrip("/")
        doc = dcat.catalog_jsonld(products, orgs, base)
        if format in ("turtle", "ttl"):
            return Response(dcat.turtle(doc), media_type="text/turtle; charset=utf-8")
        if format != "jsonld":
            raise Problem("BadRequestData", "format must be jsonld or turtle")
        return Response(orjson.dumps(doc), media_type="application/ld+json")

    @r.post("/requests", status_code=201, summary="Request access to a product for a stated purpose",
            dependencies=[RULES['exchange']])
    async def request_access(request: Request) -> dict[str, Any]:
        return await exchange.request_access(_caller(request), await _body(request, limit))

    @r.get("/requests", summary="Access requests and agreements the caller's organization is party to",
           dependencies=[RULES['exchange']])
    async def requests(request: Request, state: str | None = None) -> list[dict[str, Any]]:
        c = _caller(request)
        return await exchange.store.list_negotiations(organization=None if is_admin(c) else c.organization,
                                                      state=state)

    @r.get("/requests/{nid}", summary="One access request or agreement with every transition and its reason",
           dependencies=[RULES['exchange']])
    async def negotiation(nid: str, request: Request) -> dict[str, Any]:
        return await exchange.negotiation(nid, _caller(request))

    @r.post("/requests/{nid}/{action}",
            summary="approve | reject | counter | accept | decline | withdraw | revoke (with a reason)",
                                                                                        dependencies=[RULES['transition']])
    async def transition(nid: str, action: str, request: Request) -> dict[str, Any]:
        body = await read_object(request, limit, empty={})
        c = _caller(request)
        moved = await exchange.transition(c, nid, action, body)
        await exchange.audit(f"policy.{action}", c, nid, {"state": moved.get("state"), "reason": body.get("reason")})
        return moved

    @r.get("/explain", summary="Why an entity is (or would be) shown, masked or denied to an organization",
           dependencies=[RULES['exchange']])
    async def explain(request: Request, entity: str, tenant: str = "", action: str = "read",
                      purpose: str | None = None, organization: str | None = None) -> dict[str, Any]:
        c = _caller(request)
        if action not in odrl.ACTIONS:
            raise Problem("BadRequestData", f"action must be one of {sorted(odrl.ACTIONS)}")
        if organization and organization != c.organization:
            _admin(c)
        org = organization or c.organization
        doc = await platform.store.get(tenant, entity)
        owners = await exchange.store.owners(tenant, [entity])
        if doc is None or not is_admin(c) and org not in (owners.get(entity),) and not any(
                a["provider"] == owners.get(entity) for a in await exchange.agreements_of(org or "")) \
                and not any(p["provider"] == owners.get(entity) for p in await exchange.public_products()):
            raise Problem("ResourceNotFound", f"entity {entity} does not exist or nothing relates {org} to it")
        who = ExchangeCaller(subject=c.subject, organization=org, roles=frozenset(), purpose=purpose)
        context = await gate._context(who)
        verdict = await gate.decide(who, tenant, doc, owners.get(entity), context, action=action, dry_run=True)
        shown = sorted(verdict.visible) if verdict.visible is not None else sorted(doc["attrs"])
        # The names of attributes the caller may not read are shown only to an admin and to the party of the
        # agreement that masks them: a denied entity, or one seen through a public product, lists none of them.
        hidden = sorted(doc["attrs"]) if verdict.status == "denied" else sorted(set(doc["attrs"]) - set(shown))
        told = is_admin(c) or verdict.status != "denied" and verdict.agreement is not None
        return {"entity": entity, "organization": org, "action": action, "purpose": purpose,
                "decision": verdict.status, "reason": verdict.reason, "agreement": verdict.agreement,
                "product": verdict.product, "visible_attributes": shown if verdict.status != "denied" else [],
                "masked_attributes": hidden if told else [], "obligations": verdict.duties, "rules": verdict.trace}

    @r.get("/metering", summary="Access records (X-Road operational-monitoring shape)",
           dependencies=[RULES['exchange']])
    async def metering(request: Request, agreement: str | None = None, since: str | None = None,
                       limit_rows: int = 1000) -> list[dict[str, Any]]:
        c = _caller(request)
        if limit_rows < 1:  # a negative LIMIT was a 500 on PostgreSQL (found by tests/security schemathesis)
            raise Problem("BadRequestData", f"'limit_rows' must be at least 1, not {limit_rows}")
        await exchange.flush()
        return await exchange.store.metering(organization=None if is_admin(c) else c.organization,
                                             agreement=agreement, since=since, limit=min(limit_rows, 10000))

    @r.get("/metering/daily", summary="Metering per day and pair of organizations", dependencies=[RULES['exchange']])
    async def daily(request: Request) -> list[dict[str, Any]]:
        c = _caller(request)
        await exchange.flush()
        return await exchange.store.metering_daily(None if is_admin(c) else c.organization)

    @r.get("/kpis", summary="Synergy KPIs: sharing rate, response times, agreements, usage, balance",
           dependencies=[RULES['exchange']])
    async def kpis(request: Request) -> dict[str, Any]:
        _caller(request)
        return await exchange.kpis()

    @r.get("/kpis.csv", summary="The synergy KPIs as CSV (metric,value)", dependencies=[RULES['exchange']])
    async def kpis_csv(request: Request) -> Response:
        _caller(request)
        data = await exchange.kpis()
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["metric", "value"])
        for key, value in data.items():
            if isinstance(value, dict):
                for sub, v in value.items():
                    writer.writerow([f"{key}.{sub}", v])
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    for sub, v in item.items():
                        writer.writerow([f"{key}[{i}].{sub}", v if not isinstance(v, dict) else orjson.dumps(v)
                                         .decode()])
            else:
                writer.writerow([key, value])
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8")

    return r


async def _seed_demo(exchange: Exchange, platform: Platform) -> None:
    from civicmesh.demo import demo_entities
    from civicmesh.exchange import demo
    from civicmesh.ngsild import demo_context_url

    by_type: dict[str, list[str]] = {}
    for entity in demo_entities():
        by_type.setdefault(entity["type"], []).append(entity["id"])
    await demo.seed(exchange, by_type, demo_context_url(platform.settings))


def build(platform: Platform) -> Room:
    """Identify every request (middleware), serve /exchange, and start the exchange the platform's gate uses."""
    exchange = platform.exchange
    assert isinstance(platform.gate, ExchangeGate), "the platform's gate is the exchange's"

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        await exchange.start()
        try:
            if platform.settings.no_auth:
                log.warning("!!! AUTHENTICATION IS OFF (--no-auth / CIVICMESH_NO_AUTH=true): every request acts as "
                            "a platform admin. Use this only for local experiments and conformance runs. !!!")
            if platform.settings.demo:
                await _seed_demo(exchange, platform)
            if not await exchange.store.has_platform_admin():
                issued = await bootstrap_admin(exchange)
                path = bootstrap_file(platform.settings)
                write_private(path, issued["key"] + "\n")
                log.warning("exchange: first start; the bootstrap platform-admin API key is in %s (read it, then "
                            "delete the file; `civicmesh exchange bootstrap` issues another)", path.resolve())
            yield
        finally:
            await exchange.stop()

    # Ownership ends in the transaction that deletes the entity (finding 12), so a later create of the same id
    # by someone else is a fresh claim and a deletion notification still knows whose entity it was.
    platform.store.on_delete.append(ExchangeStore.RELEASE_ON_DELETE)

    return Room("exchange", routers=[router(exchange, platform.gate, platform)],
                lifespan=lifespan,
                middleware=[Middleware(IdentityMiddleware, exchange=exchange, platform=platform)])
