"""The real access gate: ownership, agreements and ODRL policies decided for every read and write.

`check` is the seam the broker calls before an operation. Which entity a read returns is known only after the
store answers, so `screen` (called by the broker on the retrieve/query return path) decides per entity: the
owner sees everything; another organization sees only what an active agreement's policy permits, with the other
attributes masked; anonymous callers see public open-data products. Every decision is metered.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from civicmesh.access import AccessRequest, Caller, Decision, Gate, current_caller
from civicmesh.errors import Problem
from civicmesh.exchange import odrl
from civicmesh.exchange.identity import ExchangeCaller, is_admin, iso

if TYPE_CHECKING:
    from civicmesh.exchange.service import Exchange
    from civicmesh.platform import Core

LOCATION = "https://uri.etsi.org/ngsi-ld/location"
# `current_caller` (civicmesh.access): a room that calls the broker without a caller acts for the HTTP request's
# caller; with no HTTP request at all (MQTT, the relay, the simulator) the platform itself (SYSTEM) is acting.
SYSTEM = ExchangeCaller(subject="civicmesh", organization="platform", roles=frozenset({"platform_admin"}),
                        via="internal")


@dataclass
class Verdict:
    """The decision for one entity, with everything `explain` shows."""

    status: str  # owner | granted | masked | denied
    reason: str
    visible: set[str] | None = None  # expanded attribute IRIs; None: all
    provider: str | None = None
    agreement: str | None = None
    product: str | None = None
    count_limit: int | None = None
    duties: list[str] = field(default_factory=list)
    trace: list[dict[str, Any]] = field(default_factory=list)


@dataclass(eq=False)
class Session:
    """A standing read, such as one open live view of the dashboard: screened batch by batch, used and metered as
    one read. Each agreement is counted once for the whole session (when the session first receives its data), the
    way one query counts once however many entities it returns; the entities and bytes delivered are summed per
    provider, agreement, product and outcome, and `ExchangeGate.meter_session` writes them as metering records."""

    caller: Caller
    tenant: str
    operation: str
    counted: dict[str, str | None] = field(default_factory=dict)
    # agreement -> its use count before this session's use: the policy is judged as at that use for the whole
    # session, so a count limit that later reads use up does not cut off a session that already holds its use
    held: dict[str, int] = field(default_factory=dict)
    # (provider, agreement, product, status) -> [entities, bytes, milliseconds spent screening]
    tally: dict[tuple[str | None, str | None, str | None, str], list[float]] = field(default_factory=dict)


class ExchangeGate(Gate):
    def __init__(self, exchange: Exchange, platform: Core) -> None:
        self.exchange = exchange
        self.store = exchange.store
        self.platform = platform

    def effective(self, caller: Caller) -> Caller:
        if caller.organization is not None or caller.roles:
            return caller
        return current_caller.get() or SYSTEM

    def sees_everything(self, caller: Caller) -> bool:
        return is_admin(self.effective(caller))

    # -- before the operation ---------------------------------------------------------------------------
    async def check(self, request: AccessRequest) -> Decision:
        started = time.perf_counter()
        caller = self.effective(request.caller)
        decision = await self._check(caller, request)
        if not decision.allowed:
            self._meter(caller, request.tenant, request.operation, "denied", decision.reason, started,
                        provider=None, entities=len(request.entity_ids))
        return decision

    async def _check(self, caller: Caller, request: AccessRequest) -> Decision:
        if is_admin(caller):
            return Decision(True, "platform admin")
        op = request.operation
        if caller.organization is None:
            if op in ("read", "query"):
                return Decision(True, "anonymous: public open data only")
            return Decision(False, "authentication required: anonymous callers may only read public open data")
        write = op in ("create", "update", "delete")
        if isinstance(caller, ExchangeCaller) and not caller.may("entities:write" if write else "entities:read"):
            return Decision(False, f"the credential of {caller.subject} lacks the scope "
                                   f"{'entities:write' if write else 'entities:read'}")
        if not write:
            return Decision(True, "reads are screened per entity")
        if not request.entity_ids:
            return Decision(False, f"a {op} that is not addressed to named entities (purge, prune, temporal "
                                   "writes, subscriptions) needs a platform admin")
        org = await self.exchange.org(caller.organization)
        owners = await self.store.owners(request.tenant, request.entity_ids)
        for entity_id in request.entity_ids:
            owner = owners.get(entity_id)
            if owner == caller.organization:
                continue
            exists = await self.platform.store.get(request.tenant, entity_id) is not None \
                if op == "create" or owner is None else True
            if op == "create" and not exists:
                if org is None or request.tenant not in org["tenants"] and "*" not in org["tenants"]:
                    return Decision(False, f"organization {caller.organization} may not create entities in tenant "
                                           f"{request.tenant or '(default)'}")
                # Ownership is recorded when the gate lets a create through; a failed create leaves a stale
                # claim that the next creator takes over, because the entity does not exist.
                await self.store.claim(request.tenant, entity_id, caller.organization, iso(datetime.now(UTC)))
                continue
            if owner is None:
                return Decision(False, f"entity {entity_id} has no recorded owner; only a platform admin may "
                                       "change it (POST /exchange/ownership assigns one)")
            return Decision(False, f"entity {entity_id} belongs to organization {owner}; {caller.organization} "
                                   "may not change it (agreements grant reads, never writes)")
        return Decision(True, "owner")

    # -- after the store answered: per entity ------------------------------------------------------------
    async def screen(self, caller: Caller, tenant: str, operation: str, docs: list[dict[str, Any]],
                     *, single: bool = False, decided: list[Verdict] | None = None,
                     session: Session | None = None, owners: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Meter, count and mask what the caller gets; `decided`: the verdicts `admits` gave for these docs;
        `session`: part of a standing read, counted once per agreement and metered by `meter_session`;
        `owners`: who owned these docs when that is no longer stored (a deleted entity's released owner)."""
        started = time.perf_counter()
        caller = self.effective(caller)
        if is_admin(caller) or not docs:
            return docs
        if decided is None:
            if owners is None:
                owners = await self.store.owners(tenant, [d["id"] for d in docs])
            context = await self._context(caller)
            if session is not None and session.held:
                context["agreements"] = [{**a, "uses": session.held.get(a["id"], a["uses"])}
                                         for a in context["agreements"]]
            decided = [await self.decide(caller, tenant, doc, owners.get(doc["id"]), context) for doc in docs]
        out: list[dict[str, Any]] = []
        groups: dict[tuple[str | None, str | None, str | None, str], list[dict[str, Any]]] = {}
        last: Verdict | None = None
        counted: dict[str, str | None] = {} if session is None else session.counted
        for doc, verdict in zip(docs, decided, strict=True):
            if verdict.count_limit is not None or verdict.agreement and verdict.status != "denied":
                verdict = await self._count(verdict, counted, session)
            last = verdict
            if verdict.status == "denied":
                continue
            shown = doc if verdict.visible is None else {
                **doc, "attrs": {k: v for k, v in doc["attrs"].items() if k in verdict.visible}}
            out.append(shown)
            groups.setdefault((verdict.provider, verdict.agreement, verdict.product, verdict.status), []).append(shown)
        for key, shown_docs in groups.items():
            provider, agreement, product, status = key
            if session is not None:
                summed = session.tally.setdefault(key, [0, 0, 0.0])
                summed[0] += len(shown_docs)
                summed[1] += len(orjson.dumps(shown_docs))
                summed[2] += (time.perf_counter() - started) * 1000
                continue
            self._meter(caller, tenant, operation, status, "", started, provider=provider, agreement=agreement,
                        product=product, entities=len(shown_docs), size=len(orjson.dumps(shown_docs)))
        if single and not out and last is not None:
            self._meter(caller, tenant, operation, "denied", last.reason, started, provider=last.provider,
                        agreement=last.agreement, product=last.product, entities=1)
            raise Problem("Forbidden", f"{docs[0]['id']}: {last.reason}",
                          extra={"explain": f"/exchange/explain?entity={docs[0]['id']}"})
        return out

    def meter_session(self, session: Session) -> None:
        """Write what a session delivered since the last call: one metering record per provider, agreement,
        product and outcome."""
        caller = self.effective(session.caller)
        for (provider, agreement, product, status), (entities, size, spent) in session.tally.items():
            self._meter(caller, session.tenant, session.operation, status, "", time.perf_counter() - spent / 1000,
                        provider=provider, agreement=agreement, product=product, entities=int(entities),
                        size=int(size))
        session.tally.clear()

    async def admits(self, caller: Caller, tenant: str, docs: list[dict[str, Any]]) -> list[Verdict | None]:
        """Which of these entities `screen` would show (None: denied), without metering or counting a use: how a
        query pages and counts what the caller can see. (A count limit reached during the request is not
        foreseen.)"""
        caller = self.effective(caller)
        owners = await self.store.owners(tenant, [d["id"] for d in docs]) if docs else {}
        context = await self._context(caller)
        context["memo"] = {"polygons": self._polygons(context)}
        inside = _inside_all(context["memo"]["polygons"], [_location(d) for d in docs])
        out: list[Verdict | None] = []
        for doc, where in zip(docs, inside, strict=True):
            verdict = await self.decide(caller, tenant, doc, owners.get(doc["id"]), context, inside=where)
            out.append(None if verdict.status == "denied" else verdict)
        return out

    async def _count(self, verdict: Verdict, counted: dict[str, str | None],
                     session: Session | None = None) -> Verdict:
        """One use per request (or session) and agreement, checked atomically against the policy's count limit."""
        assert verdict.agreement is not None
        if verdict.agreement not in counted:
            uses = await self.store.use(verdict.agreement, verdict.count_limit)
            counted[verdict.agreement] = None if uses is not None else (
                f"agreement {verdict.agreement}: count limit of {verdict.count_limit} uses reached")
            if session is not None and uses is not None:
                session.held[verdict.agreement] = int(uses) - 1
        reason = counted[verdict.agreement]
        if reason:
            return Verdict("denied", reason, provider=verdict.provider, agreement=verdict.agreement,
                           product=verdict.product, trace=verdict.trace)
        return verdict

    async def _context(self, caller: Caller) -> dict[str, Any]:
        org = await self.exchange.org(caller.organization)
        agreements = await self.exchange.agreements_of(caller.organization) if caller.organization else []
        return {"org": org or {}, "agreements": agreements, "public": await self.exchange.public_products(),
                "purpose": getattr(caller, "purpose", None)}

    async def decide(self, caller: Caller, tenant: str, doc: dict[str, Any], owner: str | None,
                     context: dict[str, Any], *, action: str = "read", dry_run: bool = False,
                     inside: tuple[bool, ...] | None = None) -> Verdict:
        """`inside`: which of `_polygons(context)` hold the entity's location, when the caller already knows."""
        if owner is not None and owner == caller.organization:
            return Verdict("owner", f"{caller.organization} owns this entity", provider=owner, trace=[
                {"rule": "ownership", "outcome": "owner reads and writes its own entities"}])
        if owner is None:
            return Verdict("denied", "the entity has no recorded owner, so no agreement can cover it")
        # Within one request (one `context`), a verdict depends only on the entity's owner, types and attribute
        # names and on which of the candidates' polygons hold its location: entities alike share one decision.
        location = _location(doc)
        memo = context.setdefault("memo", {})
        polygons = memo.get("polygons")
        if polygons is None:
            polygons = memo["polygons"] = self._polygons(context)
        if inside is None and location is not None:
            inside = tuple(odrl.covers(g, parse, location) for g, parse in polygons)
        key = (owner, tenant, action, dry_run, tuple(doc["type"]), tuple(doc["attrs"]),
               None if location is None else inside)
        verdict = memo.get(key)
        if verdict is None:
            verdict = memo[key] = await self._decide(caller, tenant, doc, owner, context, location, action=action,
                                                     dry_run=dry_run)
        return verdict  # type: ignore[no-any-return]

    @staticmethod
    def _polygons(context: dict[str, Any]) -> list[tuple[Any, Any]]:
        """Every polygon a candidate agreement or public product tests a location against, with its parser."""
        from shapely.geometry import shape

        from civicmesh.ngsild.geoquery import parse_geojson_geometry

        out: list[tuple[Any, Any]] = []
        for agreement, product in _candidates(context):
            if product.get("area"):
                out.append((product["area"], lambda g=product["area"]: shape(g)))
            policy = agreement["policy"] if agreement else product["offer"]
            out += [(c["rightOperand"], lambda g=c["rightOperand"]: parse_geojson_geometry(g, where="spatial"))
                    for c in odrl.spatial_constraints(policy)]
        return out

    async def _decide(self, caller: Caller, tenant: str, doc: dict[str, Any], owner: str, context: dict[str, Any],
                      location: Any, *, action: str, dry_run: bool) -> Verdict:
        types = set(doc["type"])
        trace: list[dict[str, Any]] = []
        best: Verdict | None = None
        for agreement, product in _candidates(context):
            label = agreement["id"] if agreement else f"public product {product['id']}"
            if product["provider"] != owner or product["tenant"] != tenant or not types & set(product["_types"]):
                continue
            if product.get("area") and (location is None or not _covers(product["area"], location)):
                trace.append({"rule": label, "outcome": "entity outside the product's area"})
                continue
            # What does not depend on the entity is worked out once per request and product (context["memo"]).
            memo = context["memo"]
            compact = memo.get(("names", product["id"]))
            if compact is None:
                compact = memo[("names", product["id"])] = {"terms": self._terms(product)}
            names = {}
            for a in doc["attrs"]:
                if not product["_attributes"] or a in product["_attributes"]:
                    short = compact.get(a)
                    if short is None:
                        short = compact[a] = compact["terms"].compact(a)
                    names[short] = a
            policy = agreement["policy"] if agreement else product["offer"]
            base = memo.get(("ctx", label, action))
            if base is None:
                purpose = context.get("purpose") or (agreement or {}).get("purpose")
                base = memo[("ctx", label, action)] = odrl.Context(
                    action=action, purpose=purpose,
                    agreed_at=odrl.parse_time(agreement["agreed_at"]) if agreement else None,
                    uses=int(agreement["uses"]) if agreement else 0, recipient=caller.organization,
                    recipient_kind=context["org"].get("kind"), industry=context["org"].get("sector"), memo={})
            ctx = dataclasses.replace(base, location=location)
            outcome = odrl.evaluate(policy, ctx, set(names))
            trace.append({"rule": label, "outcome": "allowed" if outcome.allowed else "denied",
                          "by": outcome.rule, "explanation": outcome.explanation})
            if not outcome.allowed:
                if best is None:
                    best = Verdict("denied", f"{label}: " + "; ".join(outcome.explanation or [outcome.rule]),
                                   provider=owner, agreement=agreement["id"] if agreement else None,
                                   product=product["id"])
                continue
            visible = {names[n] for n in (outcome.visible or set()) if n in names}
            masked = len(visible) < len(doc["attrs"])
            verdict = Verdict("masked" if masked else "granted", f"{label}: granted by {outcome.rule}",
                              visible=visible, provider=owner, agreement=agreement["id"] if agreement else None,
                              product=product["id"], count_limit=None if dry_run else outcome.count_limit,
                              duties=outcome.duties)
            if best is None or best.status == "denied" or len(visible) > len(best.visible or ()):
                best = verdict
        if best is None:
            best = Verdict("denied", f"no active agreement of {caller.organization or 'an anonymous caller'} "
                                     f"covers this {', '.join(sorted(doc['type']))} entity of {owner}",
                           provider=owner)
        best.trace = trace
        return best

    def _terms(self, product: dict[str, Any]) -> Any:
        resolver = self.platform.contexts
        return resolver.term_map(product["@context"]) if product.get("@context") else resolver.core

    def _meter(self, caller: Caller, tenant: str, operation: str, status: str, reason: str, started: float, *,
               provider: str | None, agreement: str | None = None, product: str | None = None,
               entities: int = 0, size: int = 0) -> None:
        now = datetime.now(UTC)
        self.exchange.meter({
            "at": iso(now), "day": now.strftime("%Y-%m-%d"), "consumer": caller.organization or "anonymous",
            "provider": provider, "product": product, "agreement": agreement, "operation": operation,
            "tenant": tenant, "entities": entities, "bytes": size, "status": status, "reason": reason[:500],
            "duration_ms": round((time.perf_counter() - started) * 1000, 3)})


def _inside_all(polygons: list[tuple[Any, Any]], locations: list[Any]) -> list[tuple[bool, ...] | None]:
    """For a page of entities: which polygons hold each location, points tested in one vectorized call each."""
    import shapely

    flags: list[list[bool]] = [[] for _ in locations]
    points = [i for i, loc in enumerate(locations) if isinstance(loc, tuple)]
    xs = [locations[i][0] for i in points]
    ys = [locations[i][1] for i in points]
    for geojson, parse in polygons:
        geometry = odrl.polygon(geojson, parse)
        if points:
            for i, hit in zip(points, shapely.intersects_xy(geometry, xs, ys), strict=True):
                flags[i].append(bool(hit))
        for i, loc in enumerate(locations):
            if loc is not None and not isinstance(loc, tuple):
                flags[i].append(bool(geometry.covers(loc)))
    return [None if loc is None else tuple(f) for loc, f in zip(locations, flags, strict=True)]


def _candidates(context: dict[str, Any]) -> list[tuple[dict[str, Any] | None, dict[str, Any]]]:
    """(agreement, product) pairs that may grant a read: the caller's agreements, then public products."""
    return [(a, a["_product"]) for a in context["agreements"]] + [(None, p) for p in context["public"]]


def _covers(area: dict[str, Any], location: Any) -> bool:
    from shapely.geometry import shape

    return odrl.covers(area, lambda: shape(area), location)


def _location(doc: dict[str, Any]) -> Any:
    instances = doc["attrs"].get(LOCATION)
    if not instances:
        return None
    value = instances[0].get("value")
    if not isinstance(value, dict):
        return None
    from shapely.geometry import shape

    try:
        if value.get("type") == "Point":  # the common case: coordinates, no shapely object
            x, y = value["coordinates"][:2]
            return (float(x), float(y))
        return shape(value)
    except Exception:  # noqa: BLE001 - a stored location that shapely cannot read simply has no location
        return None
