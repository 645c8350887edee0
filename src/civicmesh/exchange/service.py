"""The exchange's business: organizations, keys, products, the request -> agreement state machine, metering, KPIs.

HTTP lives in api.py and the per-access decision in enforce.py; SQL lives in civicmesh.store.exchange.
"""

from __future__ import annotations

import logging
import re
import secrets
import statistics
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from civicmesh.access import Caller
from civicmesh.errors import Problem
from civicmesh.exchange import odrl
from civicmesh.exchange.identity import (
    ROLES,
    SCOPES,
    ExchangeCaller,
    JwtVerifier,
    is_admin,
    iso,
    key_problem,
    new_key,
    split_key,
    utcnow,
)
from civicmesh.store.exchange import Events, ExchangeStore
from civicmesh.workers import Periodic

if TYPE_CHECKING:
    from civicmesh.platform import Core

log = logging.getLogger("civicmesh.exchange")

ORG_KINDS = {"department", "enterprise", "research_institute", "platform"}
FREQUENCIES = {"continuous", "hourly", "daily", "weekly", "monthly", "quarterly", "annual", "irregular"}
# The request -> agreement state machine: state -> states it may move to.
TRANSITIONS = {
    "REQUESTED": {"OFFERED", "AGREED", "REJECTED", "WITHDRAWN", "EXPIRED"},
    "OFFERED": {"AGREED", "DECLINED", "WITHDRAWN", "EXPIRED"},
    "AGREED": {"REVOKED", "EXPIRED"},
}
FINAL = {"REJECTED", "DECLINED", "WITHDRAWN", "EXPIRED", "REVOKED"}
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
AGREEMENT_CACHE_SECONDS = 2.0


class AuthError(Exception):
    """Authentication failed; the message says why (never which part of a secret was wrong). `key_id` names the
    stored key a presented API key claimed to be, when there is one (the failure limiter counts per key)."""

    def __init__(self, message: str, key_id: str | None = None) -> None:
        super().__init__(message)
        self.key_id = key_id


def _text(body: dict[str, Any], name: str, *, required: bool = True, limit: int = 4000) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise Problem("BadRequestData", f"'{name}' must be a non-empty string")
    if len(value) > limit:
        raise Problem("BadRequestData", f"'{name}' is longer than {limit} characters")
    return value.strip()


def _bilingual(body: dict[str, Any], name: str) -> dict[str, str]:
    value = body.get(name)
    if not isinstance(value, dict) or not all(isinstance(value.get(lang), str) and value[lang].strip()
                                              for lang in ("zh", "en")):
        raise Problem("BadRequestData", f"'{name}' must be an object with non-empty 'zh' and 'en' texts")
    return {"zh": value["zh"].strip(), "en": value["en"].strip()}


class Exchange:
    def __init__(self, platform: Core | None, store: ExchangeStore) -> None:
        # None offline (`civicmesh exchange bootstrap`), where nothing reaches the entity store or the relay.
        self._platform = platform
        self.store = store
        self.verifier: JwtVerifier | None = None
        self._orgs: dict[str, dict[str, Any]] = {}
        self._agreements: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._products: dict[str, dict[str, Any]] = {}
        self._public: list[dict[str, Any]] | None = None
        self._metering: list[dict[str, Any]] = []
        # Metering is counted in memory and written every half second, with the sweep of expired agreements.
        self._flusher = Periodic("exchange-metering", self._flush_round, 0.5, wait_first=True)

    @property
    def platform(self) -> Core:
        if self._platform is None:
            raise RuntimeError("this exchange runs offline: it has no entity store, relay or contexts")
        return self._platform

    # -- lifecycle ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.store.migrate()
        for org in await self.store.list_orgs():
            self._orgs[org["id"]] = org
        oidc = await self.store.get_setting("oidc")
        if oidc:
            self.verifier = JwtVerifier(oidc["issuer"], oidc["audience"], oidc["jwks"])
        self._flusher.start()

    async def stop(self) -> None:
        await self._flusher.stop()
        await self.flush()

    async def _flush_round(self) -> None:
        # A failing round is logged by the Periodic and retried on the next, never ending the flushing for good.
        await self.flush()
        await self.sweep()

    # -- organizations and keys --------------------------------------------------------------------------
    async def create_org(self, body: dict[str, Any]) -> dict[str, Any]:
        org_id = _text(body, "id", limit=63)
        assert org_id is not None
        if not _SLUG.match(org_id):
            raise Problem("BadRequestData", f"organization id {org_id!r} must be 2-63 lowercase letters, digits, '-'")
        kind = body.get("kind")
        if kind not in ORG_KINDS - {"platform"}:
            raise Problem("BadRequestData", f"'kind' must be one of {sorted(ORG_KINDS - {'platform'})}")
        tenants = body.get("tenants", [""])
        if not isinstance(tenants, list) or not all(isinstance(t, str) for t in tenants):
            raise Problem("BadRequestData", "'tenants' must be a list of tenant names ('' is the default tenant)")
        doc = {"id": org_id, "name": _bilingual(body, "name"), "kind": kind,
               "sector": _text(body, "sector", limit=100), "tenants": tenants,
               "citizen_department": _text(body, "citizen_department", required=False, limit=100),
               "created_at": iso(utcnow())}
        events: Events = [("exchange.organization.created", org_id, {"organization": doc})]
        if not await self.store.add_org(doc, events):
            raise Problem("AlreadyExists", f"organization {org_id} already exists")
        self._orgs[org_id] = doc
        return doc

    async def org(self, org_id: str | None) -> dict[str, Any] | None:
        if org_id is None:
            return None
        if org_id not in self._orgs:
            found = await self.store.get_org(org_id)
            if found:
                self._orgs[org_id] = found
        return self._orgs.get(org_id)

    async def issue_key(self, organization: str, subject: str, roles: list[str], scopes: list[str],
                        expires_at: str | None) -> dict[str, Any]:
        if await self.org(organization) is None:
            raise Problem("ResourceNotFound", f"organization {organization} does not exist")
        bad_roles = set(roles) - ROLES
        bad_scopes = set(scopes) - SCOPES
        if bad_roles or bad_scopes or not scopes:
            raise Problem("BadRequestData", f"unknown roles {sorted(bad_roles)} or scopes {sorted(bad_scopes)} "
                          f"(roles: {sorted(ROLES)}; scopes, at least one: {sorted(SCOPES)})")
        if expires_at is not None:
            try:
                when = odrl.parse_time(expires_at)
            except ValueError as exc:
                raise Problem("BadRequestData", f"'expires_at': {exc}") from exc
            expires_at = iso(when)
        key_id, key, digest = new_key()
        row = {"id": key_id, "secret_hash": digest, "organization": organization, "subject": subject,
               "roles": sorted(roles), "scopes": sorted(scopes), "created_at": iso(utcnow()),
               "expires_at": expires_at}
        await self.store.add_key(row)
        return {k: v for k, v in row.items() if k != "secret_hash"} | {"key": key}

    async def rotate_key(self, key_id: str, grace_seconds: int) -> dict[str, Any]:
        """A new key with the old one's organization, subject, roles, scopes and expiry; the old one is revoked at
        once (grace 0) or keeps working for `grace_seconds` more. The new secret is shown once."""
        old = await self.store.get_key(key_id)
        if old is None:
            raise Problem("ResourceNotFound", f"API key {key_id} does not exist")
        new_id, key, digest = new_key()
        now = utcnow()
        row = {"id": new_id, "secret_hash": digest, "organization": old["organization"], "subject": old["subject"],
               "roles": old["roles"], "scopes": old["scopes"], "created_at": iso(now), "expires_at": old["expires_at"]}
        old_until = iso(now + timedelta(seconds=grace_seconds)) if grace_seconds > 0 else None
        if not await self.store.rotate_key(key_id, row, iso(now), old_until):
            raise Problem("Conflict", f"API key {key_id} is revoked; issue a new key instead")
        return {k: v for k, v in row.items() if k != "secret_hash"} | {
            "key": key, "replaces": key_id, "old_key_valid_until": old_until or iso(now)}

    async def credential_live(self, caller: Caller) -> bool:
        """Whether the API key a caller signed in with is still neither revoked nor expired (for connections
        that outlive the request that authenticated them)."""
        key_id = getattr(caller, "credential", None)
        if getattr(caller, "via", None) != "api-key" or not key_id:
            return True
        row = await self.store.get_key(key_id)
        return row is not None and not row["revoked_at"] and not (
            row["expires_at"] and datetime.fromisoformat(row["expires_at"].replace("Z", "+00:00")) <= utcnow())

    async def audit(self, kind: str, caller: Caller | None, subject: str, data: dict[str, Any]) -> None:
        """One row of the audit trail: who (the caller, or None for the anonymous), did what, to what."""
        await self.store.add_audit({"at": iso(utcnow()), "kind": kind,
                                    "actor": caller.subject if caller else None,
                                    "organization": caller.organization if caller else None,
                                    "subject": subject, "data": data})

    async def authenticate_key(self, text: str, purpose: str | None) -> ExchangeCaller:
        parts = split_key(text)
        if parts is None:
            raise AuthError("the API key is not valid")
        row = await self.store.get_key(parts[0])
        problem = key_problem(row, parts[1], utcnow())
        if problem or row is None:
            raise AuthError(problem or "the API key is not valid", row["id"] if row else None)
        return ExchangeCaller(subject=row["subject"], organization=row["organization"],
                              roles=frozenset(row["roles"]), scopes=frozenset(row["scopes"]), via="api-key",
                              purpose=purpose, credential=row["id"])

    async def authenticate_jwt(self, token: str, purpose: str | None) -> ExchangeCaller:
        if self.verifier is None:
            raise AuthError("bearer tokens are not accepted: no OIDC issuer is configured (PUT /exchange/oidc)")
        try:
            claims = self.verifier.verify(token)
        except ValueError as exc:
            raise AuthError(str(exc)) from exc
        org = claims.get("org")
        if not isinstance(org, str) or await self.org(org) is None:
            raise AuthError(f"the JWT's 'org' claim {org!r} names no registered organization")
        if org == "platform" and not self.platform.settings.jwt_platform_org:
            # The identity provider is another party: acting as the platform itself takes an API key, unless the
            # operator says otherwise (CIVICMESH_JWT_PLATFORM_ORG=true).
            raise AuthError("a JWT may not act for the platform organization (org: platform)")
        roles = claims.get("roles", [])
        roles = [r for r in roles if r in ROLES and r != "platform_admin"] if isinstance(roles, list) else []
        # OAuth 2.0 scope (RFC 8693 section 4.2): a space-separated string. No claim grants nothing, not '*'.
        scope = claims.get("scope")
        scopes = frozenset(scope.split()) & SCOPES if isinstance(scope, str) else frozenset()
        return ExchangeCaller(subject=str(claims["sub"]), organization=org, roles=frozenset(roles),
                              scopes=scopes, via="jwt", purpose=purpose, credential=claims.get("jti"))

    async def configure_oidc(self, body: dict[str, Any]) -> dict[str, Any]:
        issuer, audience, jwks = body.get("issuer"), body.get("audience"), body.get("jwks")
        if not isinstance(issuer, str) or not isinstance(audience, str) or not isinstance(jwks, dict):
            raise Problem("BadRequestData", "OIDC configuration needs 'issuer', 'audience' (strings) and 'jwks'")
        try:
            verifier = JwtVerifier(issuer, audience, jwks)
        except Exception as exc:  # noqa: BLE001 - any malformed JWK is the caller's error
            raise Problem("BadRequestData", f"'jwks' is not a usable JWK set: {exc}") from exc
        if not verifier.keys:
            raise Problem("BadRequestData", "'jwks' has no keys")
        await self.store.put_setting("oidc", {"issuer": issuer, "audience": audience, "jwks": jwks})
        self.verifier = verifier
        return {"issuer": issuer, "audience": audience, "keys": sorted(verifier.keys)}

    # -- catalog -----------------------------------------------------------------------------------------
    async def create_product(self, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        provider = caller.organization
        if provider is None:
            raise Problem("Forbidden", "only a member of an organization can offer a data product")
        if not ({"org_admin", "data_steward", "platform_admin"} & caller.roles):
            raise Problem("Forbidden", "offering a product needs the org_admin or data_steward role")
        problems: list[str] = []
        types = body.get("entityTypes")
        if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
            problems.append("'entityTypes' must be a non-empty list of entity type names")
        attrs = body.get("attributes", [])
        if not isinstance(attrs, list) or not all(isinstance(a, str) for a in attrs):
            problems.append("'attributes' must be a list of attribute names (empty: all)")
        frequency = body.get("updateFrequency")
        if frequency not in FREQUENCIES:
            problems.append(f"'updateFrequency' must be one of {sorted(FREQUENCIES)}")
        area = body.get("area")
        if area is not None:
            from civicmesh.ngsild.geoquery import parse_geojson_geometry

            try:
                if parse_geojson_geometry(area, where="area").geom_type not in ("Polygon", "MultiPolygon"):
                    problems.append("'area' must be a GeoJSON Polygon or MultiPolygon")
            except Problem as exc:
                problems.append(exc.detail)
        try:
            offer = odrl.validate(body.get("offer", {"permission": [{"action": "read"}]}))
            offer["@type"] = "Offer"
        except odrl.PolicyError as exc:
            problems += [f"offer: {p}" for p in exc.problems]
            offer = {}
        try:
            title, description = _bilingual(body, "title"), _bilingual(body, "description")
            licence = _text(body, "licence", limit=500)
            sector = _text(body, "sector", limit=100)
        except Problem as exc:
            problems.append(exc.detail)
        tenant = body.get("tenant", "")
        if not isinstance(tenant, str):
            problems.append("'tenant' must be a string")
        if problems:
            raise Problem("BadRequestData", "the product is not valid: " + "; ".join(problems),
                          extra={"problems": problems})
        assert isinstance(types, list) and isinstance(attrs, list)  # the checks above raised otherwise
        context = body.get("@context")
        terms = self.platform.contexts.term_map(context) if context else \
            self.platform.contexts.core
        product_id = f"urn:civicmesh:product:{provider}:{secrets.token_hex(6)}"
        offer.update(uid=product_id + ":offer", assigner=provider, target=product_id)
        doc = {"id": product_id, "provider": provider, "title": title, "description": description,
               "sector": sector, "updateFrequency": frequency, "licence": licence, "tenant": tenant,
               "entityTypes": types, "attributes": attrs, "area": area, "public": bool(body.get("public")),
               "offer": offer, "@context": context, "requestTimeout": body.get("requestTimeout", "P7D"),
               "keywords": [k for k in body.get("keywords", []) if isinstance(k, str)],
               "created_at": iso(utcnow()),
               # Expanded IRIs: entities are stored expanded; matching must not depend on the @context used.
               "_types": [terms.expand(t) for t in types], "_attributes": [terms.expand(a) for a in attrs]}
        try:
            odrl.duration_seconds(doc["requestTimeout"])
        except ValueError as exc:
            raise Problem("BadRequestData", f"'requestTimeout': {exc}") from exc
        events: Events = [("exchange.product.published", product_id,
                            {"provider": provider, "title": title, "public": doc["public"]})]
        await self.store.add_product(doc, events)
        self._public = None
        return doc

    async def product(self, product_id: str) -> dict[str, Any]:
        if product_id not in self._products:
            found = await self.store.get_product(product_id)
            if found is None:
                raise Problem("ResourceNotFound", f"data product {product_id} does not exist")
            self._products[product_id] = found
        return self._products[product_id]

    async def public_products(self) -> list[dict[str, Any]]:
        if self._public is None:
            self._public = await self.store.list_products(public_only=True)
        return self._public

    async def search(self, q: str | None = None, sector: str | None = None,
                     provider: str | None = None) -> list[dict[str, Any]]:
        found = []
        for doc in await self.store.list_products():
            if sector and doc["sector"] != sector or provider and doc["provider"] != provider:
                continue
            if q:
                text = " ".join([*doc["title"].values(), *doc["description"].values(), *doc["keywords"],
                                 *doc["entityTypes"], doc["sector"]]).lower()
                if not all(word in text for word in q.lower().split()):
                    continue
            found.append(doc)
        return found

    # -- access requests -> agreements -------------------------------------------------------------------
    async def request_access(self, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        if caller.organization is None:
            raise Problem("Forbidden", "only a member of an organization can request access")
        product = await self.product(_text(body, "product") or "")
        if product["provider"] == caller.organization:
            raise Problem("BadRequestData", "an organization already owns its own products; no request needed")
        purpose = _text(body, "purpose", limit=100)
        now = utcnow()
        doc = {"id": f"urn:civicmesh:agreement:{secrets.token_hex(8)}", "product": product["id"],
               "provider": product["provider"], "consumer": caller.organization, "purpose": purpose,
               "message": _text(body, "message", required=False), "requested_by": caller.subject,
               "state": "REQUESTED", "created_at": iso(now), "policy": None,
               "respond_by": iso(now + timedelta(seconds=odrl.duration_seconds(product["requestTimeout"])))}
        events: Events = [("exchange.negotiation.requested", doc["id"], self._event(doc, caller, "requested"))]
        await self.store.add_negotiation(doc, self._transition(doc["id"], None, "REQUESTED", caller,
                                                               f"requested for purpose {purpose!r}"),
                                         events)
        return await self.negotiation(doc["id"])

    @staticmethod
    def _transition(nid: str, old: str | None, new: str, caller: Caller, reason: str) -> dict[str, Any]:
        return {"negotiation": nid, "at": iso(utcnow()), "from": old, "to": new,
                "actor": f"{caller.subject}@{caller.organization}", "reason": reason}

    @staticmethod
    def _event(doc: dict[str, Any], caller: Caller, reason: str) -> dict[str, Any]:
        return {"product": doc["product"], "provider": doc["provider"], "consumer": doc["consumer"],
                "state": doc["state"], "actor": caller.subject, "organization": caller.organization,
                "reason": reason}

    async def negotiation(self, nid: str, caller: Caller | None = None) -> dict[str, Any]:
        doc = await self.store.get_negotiation(nid)
        if doc is None or caller is not None and not is_admin(caller) and \
                caller.organization not in (doc["consumer"], doc["provider"]):
            raise Problem("ResourceNotFound", f"access request {nid} does not exist")
        doc["transitions"] = await self.store.transitions(nid)
        return doc

    async def transition(self, caller: Caller, nid: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """approve | reject | counter | accept | decline | withdraw | revoke, each with a stated reason."""
        doc = await self.negotiation(nid, caller)
        provider_side = caller.organization == doc["provider"] or is_admin(caller)
        consumer_side = caller.organization == doc["consumer"]
        reason = _text(body, "reason", required=action in ("reject", "revoke", "decline", "counter"), limit=1000)
        rules: dict[str, tuple[bool, tuple[str, ...], str]] = {
            "approve": (provider_side, ("REQUESTED",), "AGREED"),
            "reject": (provider_side, ("REQUESTED",), "REJECTED"),
            "counter": (provider_side, ("REQUESTED",), "OFFERED"),
            "accept": (consumer_side, ("OFFERED",), "AGREED"),
            "decline": (consumer_side, ("OFFERED",), "DECLINED"),
            "withdraw": (consumer_side, ("REQUESTED", "OFFERED"), "WITHDRAWN"),
            "revoke": (provider_side or consumer_side, ("AGREED",), "REVOKED"),
        }
        if action not in rules:
            raise Problem("BadRequestData", f"unknown action {action!r}; one of {sorted(rules)}")
        may, expect, new_state = rules[action]
        if not may:
            side = "provider" if action in ("approve", "reject", "counter") else "consumer"
            raise Problem("Forbidden", f"only the {side} of {nid} may {action} it")
        if doc["state"] not in expect:
            raise Problem("Conflict", f"{nid} is {doc['state']}; {action} needs it to be {' or '.join(expect)}",
                          extra={"state": doc["state"]})
        updated = dict(doc)
        updated.pop("transitions", None)
        agreed_at = expires_at = None
        if action in ("approve", "counter"):
            product = await self.product(doc["product"])
            try:
                policy = odrl.validate(body["policy"]) if "policy" in body else dict(product["offer"])
            except odrl.PolicyError as exc:
                raise Problem("BadRequestData", "the policy is not valid: " + "; ".join(exc.problems),
                              extra={"problems": exc.problems}) from exc
            updated["policy"] = policy
            if "duration" in body:
                try:
                    updated["duration"] = body["duration"]
                    odrl.duration_seconds(body["duration"])
                except ValueError as exc:
                    raise Problem("BadRequestData", f"'duration': {exc}") from exc
            if action == "counter":
                updated["respond_by"] = iso(utcnow() + timedelta(
                    seconds=odrl.duration_seconds(product["requestTimeout"])))
        if new_state == "AGREED":
            now = utcnow()
            agreed_at = iso(now)
            if updated.get("duration"):
                expires_at = iso(now + timedelta(seconds=odrl.duration_seconds(updated["duration"])))
            updated["policy"] = dict(updated["policy"], **{
                "@type": "Agreement", "uid": nid, "assigner": doc["provider"], "assignee": doc["consumer"],
                "target": doc["product"]})
        updated["state"] = new_state
        text = reason or {"approve": "approved with the offered policy", "accept": "counter-offer accepted",
                          "withdraw": "withdrawn by the consumer"}.get(action, action)
        events: Events = [(f"exchange.negotiation.{new_state.lower()}", nid, self._event(updated, caller, text))]
        moved = await self.store.move(nid, expect, new_state,
                                      self._transition(nid, doc["state"], new_state, caller, text),
                                      doc=updated, responded=action in ("approve", "reject", "counter"),
                                      agreed_at=agreed_at, expires_at=expires_at, events=events)
        if moved is None:
            raise Problem("Conflict", f"{nid} changed while this {action} was being applied; read it again")
        self._agreements.clear()
        return await self.negotiation(nid)

    async def sweep(self) -> int:
        """Time out requests nobody answered and agreements past their end, each with its reason."""
        now = utcnow()
        moved = 0
        for state in ("REQUESTED", "OFFERED", "AGREED"):
            for doc in await self.store.list_negotiations(state=state):
                due = doc["expires_at"] if state == "AGREED" else doc.get("respond_by")
                if not due or odrl.parse_time(due) > now:
                    continue
                reason = (f"agreement ended at {due}" if state == "AGREED"
                          else f"no answer by {due} (state {state} timed out)")
                system = Caller("exchange-timer", "platform", frozenset())
                doc = {k: v for k, v in doc.items() if k != "transitions"}
                events: Events = [("exchange.negotiation.expired", doc["id"],
                                   self._event(dict(doc, state="EXPIRED"), system, reason))]
                done = await self.store.move(doc["id"], (state,), "EXPIRED",
                                             self._transition(doc["id"], state, "EXPIRED", system, reason),
                                             doc=dict(doc, state="EXPIRED"), events=events)
                if done:
                    moved += 1
        if moved:
            self._agreements.clear()
        return moved

    async def agreements_of(self, consumer: str) -> list[dict[str, Any]]:
        """Active agreements of a consumer with their products (cached briefly; cleared on every transition)."""
        cached = self._agreements.get(consumer)
        if cached and time.monotonic() - cached[0] < AGREEMENT_CACHE_SECONDS:
            return cached[1]
        now = utcnow()
        active = []
        for doc in await self.store.list_negotiations(consumer=consumer, state="AGREED"):
            if doc["expires_at"] and odrl.parse_time(doc["expires_at"]) <= now:
                continue
            doc["_product"] = await self.product(doc["product"])
            active.append(doc)
        self._agreements[consumer] = (time.monotonic(), active)
        return active

    # -- metering and KPIs -------------------------------------------------------------------------------
    def meter(self, record: dict[str, Any]) -> None:
        self._metering.append(record)

    async def flush(self) -> None:
        records, self._metering = self._metering, []
        if not records:
            return
        # Cross-organization accesses and every denial go to the ledger; an owner reading its own data does not.
        events: Events = [("exchange.access", r.get("agreement") or r["consumer"], r) for r in records
                          if r["status"] == "denied" or r.get("provider") not in (None, r["consumer"])]
        await self.store.add_metering(records, events)

    async def kpis(self) -> dict[str, Any]:
        await self.flush()
        products = await self.store.list_products()
        negotiations = await self.store.list_negotiations()
        now = utcnow()
        active = [n for n in negotiations if n["state"] == "AGREED"
                  and not (n["expires_at"] and odrl.parse_time(n["expires_at"]) <= now)]
        shared = {n["product"] for n in active}
        response_hours = sorted(
            (odrl.parse_time(n["responded_at"]) - odrl.parse_time(n["created_at"])).total_seconds() / 3600
            for n in negotiations if n["responded_at"])
        totals = await self.store.metering_totals()
        served = [t for t in totals if t["status"] != "denied"]
        cross = sum(t["requests"] for t in served if t["provider"] and t["provider"] != t["consumer"])
        all_served = sum(t["requests"] for t in served)
        usage: dict[str, int] = {}
        balance: dict[str, dict[str, int]] = {}
        for t in served:
            if t["product"]:
                usage[t["product"]] = usage.get(t["product"], 0) + int(t["requests"])
            if t["provider"] and t["provider"] != t["consumer"]:
                balance.setdefault(t["provider"], {"provided": 0, "consumed": 0})["provided"] += int(t["requests"])
                balance.setdefault(t["consumer"], {"provided": 0, "consumed": 0})["consumed"] += int(t["requests"])
        titles = {p["id"]: p["title"] for p in products}
        return {
            "generated_at": iso(now),
            "products": len(products),
            "products_with_active_agreement": len(shared),
            "data_sharing_rate": round(len(shared) / len(products), 4) if products else 0.0,
            "reads_served": all_served,
            "reads_served_across_organizations": cross,
            "cross_organization_read_share": round(cross / all_served, 4) if all_served else 0.0,
            "access_requests": len(negotiations),
            "response_time_hours": {
                "answered": len(response_hours),
                "median": round(statistics.median(response_hours), 4) if response_hours else None,
                "p90": round(_percentile(response_hours, 0.9), 4) if response_hours else None},
            "active_agreements": len(active),
            "most_used_products": [{"product": p, "title": titles.get(p), "reads": n}
                                   for p, n in sorted(usage.items(), key=lambda kv: -kv[1])[:10]],
            "organization_balance": [{"organization": org, **counts, "balance": counts["provided"] -
                                      counts["consumed"]} for org, counts in sorted(balance.items())],
        }


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    rank = max(1, int(-(-q * len(sorted_values) // 1)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def day_of(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")
