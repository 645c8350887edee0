"""NGSI-LD subscriptions (/ngsi-ld/v1/subscriptions) and durable notifications.

A durable relay subscriber matches every entity change against the tenant's subscriptions and puts each due
notification into a queue in the store (idempotently, keyed by subscription and event). A delivery worker sends
what is due over HTTP(S) or MQTT, retries failures with exponential backoff and deletes a notification only once
the receiver accepted it, so neither a broker restart nor a receiver outage loses one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import re
import time
import uuid
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, urlparse

import httpx
import orjson
from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import Response

from civicmesh.errors import Problem
from civicmesh.events import ENTITY_CREATED, ENTITY_DELETED, ChangeEvent
from civicmesh.exchange.gate import Caller
from civicmesh.ngsild import geoquery, qlang, typequery
from civicmesh.ngsild.context import CORE_CONTEXT_URL, ContextResolver, TermMap
from civicmesh.ngsild.http import CONTEXT_REL, JSONLD, body_call, json_response, page_links, read_call
from civicmesh.ngsild.linked import Projection, join, parse_projection, selected
from civicmesh.ngsild.model import ATTRIBUTE_TYPES, NULL_URI, check_name, is_datetime, is_uri, now_iso
from civicmesh.ngsild.render import CONCISE, NORMALIZED, SIMPLIFIED, View, render_entity
from civicmesh.ngsild.routes import PREFIX, _allow_params, _check_regex, _flag, _int, caller_of
from civicmesh.ngsild.sender import HttpSender
from civicmesh.store.base import EntityQuery

log = logging.getLogger("civicmesh.subscriptions")

KIND = "subscription"
TRIGGERS = {"entityCreated", "entityUpdated", "entityDeleted", "attributeCreated", "attributeUpdated",
            "attributeDeleted"}
# NGSI-LD 1.8 clause 5.2.12: without notificationTrigger a subscription fires on attributes created or updated.
DEFAULT_TRIGGERS = ["attributeCreated", "attributeUpdated"]
FORMATS = {"normalized": NORMALIZED, "keyValues": SIMPLIFIED, "simplified": SIMPLIFIED, "concise": CONCISE}
STATUS_FIELDS = ("status",)
NOTIFICATION_STATUS = ("status", "timesSent", "timesFailed", "lastNotification", "lastSuccess", "lastFailure")
MAX_BACKOFF = 300.0
SENDERS = 32  # concurrent POSTs (and keep-alive connections) per receiver
PER_RECEIVER = 400  # notifications per receiver per delivery round
SLOW_FAILURE = 1.0  # seconds: a send that fails after this long means the receiver hangs (see _deliver_to)
FAILURE_LOG_PERIOD = 60.0
REQUIRED_MEMBERS = frozenset({"notification", "@context"})
# (tenant, subscription id, dedupe key, payload, due time): one row of the durable notification queue
QueueRows = list[tuple[str, str, str, bytes, float]]
Ids = list[str]
Events = list[ChangeEvent]
Entities = list[dict[str, Any]]
# (queue id, tenant, subscription id, payload, attempts so far): one due notification
DueRow = tuple[int, str, str, bytes, int]
DueRows = list[DueRow]
Work = list[tuple[DueRow, str, dict[str, str], bytes]]  # due rows with their requests (URI, headers, body)
Retries = list[tuple[int, float, str]]  # (queue id, due again at, why)


def parse_subscription(body: dict[str, Any], terms: TermMap, *, partial: bool = False,
                       resolver: ContextResolver | None = None) -> dict[str, Any]:
    """Validate a subscription (or, with partial, the members of a PATCH); raise BadRequestData otherwise."""
    sub: dict[str, Any] = {}
    if not partial:
        if body.get("type") != "Subscription":
            raise Problem("BadRequestData", 'a subscription needs "type": "Subscription"')
        sub_id = body.get("id", f"urn:ngsi-ld:Subscription:{uuid.uuid4()}")
        if not is_uri(sub_id):
            raise Problem("BadRequestData", f"subscription id {sub_id!r} is not a URI")
        sub["id"], sub["type"] = sub_id, "Subscription"
        if "notification" not in body:
            raise Problem("BadRequestData", "a subscription needs a notification member")
        if not any(k in body for k in ("entities", "watchedAttributes")):
            raise Problem("BadRequestData", "a subscription needs entities or watchedAttributes")
    for key, value in body.items():
        if key in ("id", "type", "@context") or key in STATUS_FIELDS:
            continue
        if key == "entities":
            if not isinstance(value, list) or not value:
                raise Problem("BadRequestData", "entities must be a non-empty list of {id|idPattern, type}")
            for selector in value:
                if not isinstance(selector, dict) or not isinstance(selector.get("type"), str):
                    raise Problem("BadRequestData", "each entities item needs a type")
                # The type may be a selection expression (clause 4.17), e.g. "(Building|Tower)".
                for name in typequery.type_names(typequery.parse_types(selector["type"])):
                    check_name(name, "entity type")
                if "id" in selector and not is_uri(selector["id"]):
                    raise Problem("BadRequestData", f"entities id {selector['id']!r} is not a URI")
                if "idPattern" in selector:
                    if not isinstance(selector["idPattern"], str):
                        raise Problem("BadRequestData", "idPattern must be a string")
                    _check_regex(selector["idPattern"], "idPattern")
        elif key in ("watchedAttributes",):
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise Problem("BadRequestData", "watchedAttributes must be a non-empty list of attribute names")
            for name in value:
                check_name(name)
        elif key == "q":
            if not isinstance(value, str):
                raise Problem("BadRequestData", "q must be a string")
            qlang.parse_q(unquote(value))  # payloads often carry q URL-encoded, as in a query string
        elif key == "geoQ":
            geoquery.parse_geoq_object(value)
        elif key == "notificationTrigger":
            if not isinstance(value, list) or not value or not set(value) <= TRIGGERS:
                raise Problem("BadRequestData", f"notificationTrigger must list some of {', '.join(sorted(TRIGGERS))}")
        elif key in ("expiresAt",):
            if not is_datetime(value):
                raise Problem("BadRequestData", f"{key} must be a DateTime")
            if value.replace("Z", "") < now_iso().replace("Z", ""):
                raise Problem("BadRequestData", f"expiresAt {value} is in the past")
        elif key == "jsonldContext":
            if not isinstance(value, str) or not is_uri(value):
                raise Problem("BadRequestData", f"jsonldContext {value!r} is not a URI")
            if resolver is not None:
                resolver.term_map(value)  # 503 LdContextNotAvailable when it cannot be had
        elif key in ("throttling", "timeInterval"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise Problem("BadRequestData", f"{key} must be a positive number of seconds")
        elif key == "datasetId":
            if not isinstance(value, list) or not value or not all(
                    isinstance(d, str) and (d == "@none" or is_uri(d)) for d in value):
                raise Problem("BadRequestData", "datasetId must be a non-empty list of URIs (or @none)")
        elif key == "isActive":
            if not isinstance(value, bool):
                raise Problem("BadRequestData", "isActive must be true or false")
        elif key == "notification":
            _check_notification(value)
        sub[key] = value
    if "throttling" in sub and "timeInterval" in sub:
        raise Problem("BadRequestData", "throttling and timeInterval exclude each other")
    return sub


def _check_notification(value: Any) -> None:
    if not isinstance(value, dict):
        raise Problem("BadRequestData", "notification must be an object")
    endpoint = value.get("endpoint")
    if not isinstance(endpoint, dict) or not isinstance(endpoint.get("uri"), str):
        raise Problem("BadRequestData", "notification.endpoint.uri is required")
    scheme = urlparse(endpoint["uri"]).scheme
    if scheme not in ("http", "https", "mqtt", "mqtts") or not urlparse(endpoint["uri"]).netloc:
        raise Problem("BadRequestData", f"notification endpoint {endpoint['uri']!r} is not an http(s) or mqtt URI")
    accept = endpoint.get("accept", "application/json")
    if accept not in ("application/json", JSONLD, "application/geo+json"):
        raise Problem("BadRequestData", f"notification endpoint accept {accept!r} is not supported")
    if "format" in value and value["format"] not in FORMATS:
        raise Problem("BadRequestData", f"notification format {value['format']!r} is not one of "
                      f"{', '.join(FORMATS)}")
    attributes = value.get("attributes")
    if attributes is not None and (not isinstance(attributes, list) or not all(isinstance(a, str) for a in attributes)):
        raise Problem("BadRequestData", "notification.attributes must be a list of names")
    pick, omit = _projection(value, "pick"), _projection(value, "omit")
    if (pick is not None or omit is not None) and attributes is not None:
        raise Problem("BadRequestData", "notification.attributes cannot be combined with pick or omit")
    if pick is not None and omit is not None:
        picked, omitted = selected(pick, omit=False), selected(omit, omit=True)
        both = (picked[0] | picked[1]) & (omitted[0] | omitted[1])
        if both:
            raise Problem("BadRequestData", f"{', '.join(sorted(both))} cannot be both picked and omitted")
    if "join" in value and value["join"] not in ("inline", "flat", "@none"):
        raise Problem("BadRequestData", f"notification.join {value['join']!r} is not inline, flat or @none")
    level = value.get("joinLevel", 1)
    if isinstance(level, bool) or not isinstance(level, int) or level < 1:
        raise Problem("BadRequestData", "notification.joinLevel must be a positive integer")
    for flag in ("showChanges", "sysAttrs"):
        if flag in value and not isinstance(value[flag], bool):
            raise Problem("BadRequestData", f"notification.{flag} must be true or false")
    for info in ("receiverInfo", "notifierInfo"):
        items = endpoint.get(info, [])
        if not isinstance(items, list) or not all(isinstance(i, dict) and "key" in i and "value" in i for i in items):
            raise Problem("BadRequestData", f"notification.endpoint.{info} must be a list of {{key, value}}")


def _projection(notification: dict[str, Any], key: str) -> Projection | None:
    """notification.pick / omit: a list of names or one projection text, as in the pick/omit query parameters."""
    value = notification.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return parse_projection(value, f"notification.{key}")
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise Problem("BadRequestData", f"notification.{key} must be a non-empty list of names")
    return parse_projection(",".join(value), f"notification.{key}")


def status_of(sub: dict[str, Any]) -> str:
    if sub.get("expiresAt") and sub["expiresAt"] < now_iso():
        return "expired"
    return "active" if sub.get("isActive", True) else "paused"


class Subscriptions:
    """CRUD, matching and delivery for one app."""

    def __init__(self, platform: Any) -> None:
        self.store = platform.store
        self.broker = platform.extras["broker"]
        self.resolver: ContextResolver = platform.extras["contexts"]
        self.max_body = platform.settings.max_body_bytes
        self._cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._generation = 0
        self._term_maps: dict[Any, TermMap] = {}
        self._views: dict[tuple[str, Any], bytes] = {}
        self._logged: dict[str, float] = {}
        # Notification ids: unique per process start plus a counter, cheaper than a uuid4 per notification.
        self._instance, self._numbers = uuid.uuid4().hex, itertools.count(1)
        self._throttle: dict[tuple[str, str], float] = {}
        self._periodic: dict[tuple[str, str], float] = {}
        self.ngsi = platform.extras["ngsild"]
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None  # https:// receivers
        self._sender = HttpSender()  # http:// receivers: pooled keep-alive connections, little CPU per POST
        self.relay = platform.relay
        self.retry_base = 1.0
        self._periodic_checked = 0.0
        # Receivers (origins) that could not be reached: nothing is sent to them until `until`, so one hanging
        # or vanished webhook cannot hold every other subscriber's notifications behind its timeouts.
        self._outages: dict[str, _Outage] = {}
        # Delivery outcomes sent but not yet settled, per (tenant, subscription): (sent, failed, last attempt).
        # Reads of a subscription show them, so a client told of a notification sees it in the status at once.
        self._unsettled: dict[tuple[str, str], tuple[int, int, str]] = {}

    # -- storage --------------------------------------------------------------------------------------------
    async def _all(self, tenant: str) -> list[dict[str, Any]]:
        cached = self._cache.get(tenant)
        if cached and time.monotonic() - cached[0] < 2.0:
            return cached[1]
        generation = self._generation
        subs = await self.store.list_documents(tenant, KIND)
        if generation == self._generation:  # a create/patch/delete during the read must not be cached over
            self._cache[tenant] = (time.monotonic(), subs)
        return subs  # type: ignore[no-any-return]

    def _changed(self, tenant: str) -> None:
        self._generation += 1
        self._cache.pop(tenant, None)

    async def _save(self, tenant: str, sub: dict[str, Any], *, create: bool) -> bool:
        self._changed(tenant)
        saved = await self.store.put_document(tenant, KIND, sub["id"], sub, create=create)
        self._changed(tenant)
        return saved  # type: ignore[no-any-return]

    async def _get(self, tenant: str, sub_id: str) -> dict[str, Any]:
        if not is_uri(sub_id):
            raise Problem("BadRequestData", f"subscription id {sub_id!r} is not a URI")
        sub = await self.store.get_document(tenant, KIND, sub_id)
        if sub is None:
            raise Problem("ResourceNotFound", f"subscription {sub_id} does not exist")
        return sub  # type: ignore[no-any-return]

    # -- who may see which subscription (EXCHANGE) ------------------------------------------------------------
    # A subscription is a standing query: any organization may subscribe, and each notification is screened by
    # the gate for the organization that subscribed, exactly like its queries. A caller that sees everything (a
    # platform admin, or any caller with authentication off) subscribes unscreened and sees every subscription.
    async def _authorize(self, request: Request, tenant: str) -> Caller:
        caller = caller_of(request)
        await self.broker.authorize(caller, tenant, "query")
        return caller

    def _mine(self, caller: Caller, sub: dict[str, Any]) -> bool:
        if self.broker.gate.sees_everything(caller):
            return True
        owner = (sub.get("_owner") or {}).get("organization")
        return owner is not None and owner == caller.organization

    async def _get_mine(self, caller: Caller, tenant: str, sub_id: str) -> dict[str, Any]:
        sub = await self._get(tenant, sub_id)
        if not self._mine(caller, sub):  # another organization's subscription is none of this caller's business
            raise Problem("ResourceNotFound", f"subscription {sub_id} does not exist")
        return sub

    async def _screened(self, sub: dict[str, Any], event: ChangeEvent) -> ChangeEvent | None:
        """The event as the subscriber may see it: None when the gate hides the entity from it or when every
        attribute the change touched is masked."""
        owner = sub.get("_owner")
        screen = getattr(self.broker.gate, "screen", None)
        if not owner or screen is None:
            return event
        caller = Caller(owner["subject"], owner["organization"], frozenset(owner.get("roles") or ()))
        before, after = event.data.get("before"), event.data.get("after")
        doc = after or before
        if doc is None:
            return None
        # A deletion released the owner in its own transaction and carries it in the event (finding 12).
        released = event.data.get("owner") if after is None else None
        shown = await screen(caller, event.tenant, "notify", [doc],
                             **({"owners": {doc["id"]: released}} if released else {}))
        if not shown:
            return None
        visible = set(shown[0]["attrs"])
        if visible == set(doc["attrs"]):
            return event
        touched = [a for a in event.data.get("attributes") or [] if a in visible]
        if not touched and event.kind not in (ENTITY_CREATED, ENTITY_DELETED):
            return None

        def mask(d: dict[str, Any] | None) -> dict[str, Any] | None:
            return None if d is None else {**d, "attrs": {k: v for k, v in d["attrs"].items() if k in visible}}

        return dataclasses.replace(event, data={**event.data, "before": mask(before), "after": mask(after),
                                                "attributes": touched})

    # -- HTTP -----------------------------------------------------------------------------------------------
    async def create(self, request: Request) -> Response:
        _allow_params(request, set())
        call, body = await body_call(request, self.resolver, self.max_body)
        caller = await self._authorize(request, call.tenant)
        sub = parse_subscription(body, call.terms, resolver=self.resolver)
        if not self.broker.gate.sees_everything(caller):
            sub["_owner"] = {"organization": caller.organization, "subject": caller.subject,
                             "roles": sorted(caller.roles)}
        sub["@context"] = call.context
        sub["createdAt"] = sub["modifiedAt"] = now_iso()
        if not await self._save(call.tenant, sub, create=True):
            raise Problem("AlreadyExists", f"subscription {sub['id']} already exists")
        return Response(status_code=201, headers={"Location": f"{PREFIX}/subscriptions/{sub['id']}"})

    def _terms(self, sub: dict[str, Any]) -> TermMap:
        """How the subscription's own names (types, attributes, q) are meant: its @context."""
        context = sub.get("@context")
        key = context if isinstance(context, str) else tuple(context) if isinstance(context, list) and all(
            isinstance(c, str) for c in context) else orjson.dumps(context, option=orjson.OPT_SORT_KEYS)
        terms = self._term_maps.get(key)
        if terms is None:  # the resolver keys its cache by the serialized context: too dear once per event
            if len(self._term_maps) > 1000:
                self._term_maps.clear()
            terms = self._term_maps[key] = self.resolver.term_map(context)
        return terms

    def _render_terms(self, sub: dict[str, Any]) -> TermMap:
        """How notifications name things: jsonldContext when the subscriber gave one, else its @context."""
        return self.resolver.term_map(sub["jsonldContext"]) if sub.get("jsonldContext") else self._terms(sub)

    def _show(self, tenant: str, sub: dict[str, Any], sys_attrs: bool, terms: TermMap | None = None
              ) -> dict[str, Any]:
        unsettled = self._unsettled.get((tenant, sub["id"]))
        if unsettled is not None:
            sub = _status_change(*unsettled)({**sub, "notification": dict(sub["notification"])})
        out = {k: v for k, v in sub.items() if k != "@context" and not k.startswith("_")
               and (sys_attrs or k not in ("createdAt", "modifiedAt"))}
        out["status"] = status_of(sub)
        out.setdefault("notificationTrigger", list(DEFAULT_TRIGGERS))
        if terms is not None:
            # Names are stored as the subscriber wrote them; a reader with another @context sees them compacted
            # with its own (full IRIs when it has none), like entity attributes.
            own = self._terms(sub)
            _rename(out, lambda name: terms.compact(own.expand(name)))
        return out

    async def list(self, request: Request) -> Response:
        _allow_params(request, {"limit", "offset", "count", "options", "local"})
        call = read_call(request, self.resolver, allow_geojson=False)
        caller = await self._authorize(request, call.tenant)
        p = request.query_params
        limit, offset = _int(p.get("limit"), "limit", 20), _int(p.get("offset"), "offset", 0)
        subs = [s for s in await self.store.list_documents(call.tenant, KIND) if self._mine(caller, s)]
        headers = {"NGSILD-Results-Count": str(len(subs))} if _flag(p.get("count"), "count") else {}
        sys_attrs = "sysAttrs" in (p.get("options") or "")
        response = json_response(call, [self._show(call.tenant, s, sys_attrs, call.terms)
                                              for s in subs[offset:offset + limit]],
                                 headers=headers)
        links = page_links(request, offset, limit, len(subs[offset:offset + limit]), len(subs))
        if links:
            response.headers["Link"] = f"{response.headers['link']}, {links}" if "link" in response.headers else links
        return response

    async def retrieve(self, request: Request, sub_id: str) -> Response:
        _allow_params(request, {"options"})
        call = read_call(request, self.resolver, allow_geojson=False)
        caller = await self._authorize(request, call.tenant)
        sub = await self._get_mine(caller, call.tenant, sub_id)
        sys_attrs = "sysAttrs" in (request.query_params.get("options") or "")
        return json_response(call, self._show(call.tenant, sub, sys_attrs, call.terms))

    async def update(self, request: Request, sub_id: str) -> Response:
        _allow_params(request, set())
        call, body = await body_call(request, self.resolver, self.max_body, merge_patch=True)
        caller = await self._authorize(request, call.tenant)
        sub = await self._get_mine(caller, call.tenant, sub_id)
        if "id" in body and body["id"] != sub_id:
            raise Problem("BadRequestData", "the id of a subscription cannot change")
        if "type" in body and body["type"] != "Subscription":
            raise Problem("BadRequestData", 'a subscription keeps "type": "Subscription"')
        # JSON merge patch (RFC 7396): null removes an optional member.
        removed = {k for k, v in body.items() if v is None}
        if removed & REQUIRED_MEMBERS:
            raise Problem("BadRequestData", f"{', '.join(sorted(removed & REQUIRED_MEMBERS))} cannot be removed")
        # A notification member replaces the old one whole (clause 5.8.2), so it must be complete by itself.
        patch = {k: v for k, v in body.items() if v is not None and k not in ("id", "type")}
        changes = parse_subscription(patch, call.terms, partial=True, resolver=self.resolver)
        # The fragment's names are meant in the request's @context; keep the stored ones in the subscription's own.
        own = self._terms(sub)
        _rename(changes, lambda name: own.compact(call.terms.expand(name)))
        if "notification" in changes:
            kept = {k: v for k, v in sub["notification"].items() if k in NOTIFICATION_STATUS}
            changes["notification"] = {**changes["notification"], **kept}
        updated = {k: v for k, v in {**sub, **changes}.items() if k not in removed}
        if "throttling" in updated and "timeInterval" in updated:
            raise Problem("BadRequestData", "throttling and timeInterval exclude each other")
        if not any(k in updated for k in ("entities", "watchedAttributes")):
            raise Problem("BadRequestData", "a subscription needs entities or watchedAttributes")
        updated["modifiedAt"] = now_iso()
        await self._save(call.tenant, updated, create=False)
        return Response(status_code=204)

    async def delete(self, request: Request, sub_id: str) -> Response:
        _allow_params(request, set())
        call = read_call(request, self.resolver, allow_geojson=False)
        caller = await self._authorize(request, call.tenant)
        await self._get_mine(caller, call.tenant, sub_id)
        self._changed(call.tenant)
        await self.store.delete_document(call.tenant, KIND, sub_id)
        self._changed(call.tenant)
        return Response(status_code=204)

    # -- matching -------------------------------------------------------------------------------------------
    async def on_event(self, event: ChangeEvent) -> None:
        await self.on_events([event])

    async def on_events(self, events: Events) -> None:
        """Queue what a run of relayed events makes due, in one transaction (the relay moves its cursor after)."""
        rows: QueueRows = []
        for event in events:
            rows.extend(await self._due_rows(event))
        if rows:
            await self.store.enqueue_notifications(rows)
            self._wake.set()

    async def _due_rows(self, event: ChangeEvent) -> QueueRows:
        """The queue rows one change event makes due: one per matching subscription."""
        if not event.kind.startswith("entity."):
            return []
        subs = await self._all(event.tenant)
        rows: QueueRows = []
        rendered: dict[bytes, list[dict[str, Any]]] = {}
        changes = _attribute_changes(event)  # the same for every subscription; screened events get their own
        stamp = now_iso()
        for sub in subs:
            if status_of(sub) != "active" or "timeInterval" in sub:
                continue
            terms = self._terms(sub)
            fired = self._matches(sub, event, terms, changes)
            seen: ChangeEvent | None = event
            if fired is not None and sub.get("_owner"):
                # Matched on what the subscriber may see, so q and geoQ cannot probe masked attributes.
                seen = await self._screened(sub, event)
                fired = self._matches(sub, seen, terms) if seen is not None else None
            if fired is None or seen is None:
                continue
            if sub.get("throttling"):
                last = self._throttle.get((event.tenant, sub["id"]), 0.0)
                if time.time() - last < float(sub["throttling"]):
                    continue
                self._throttle[(event.tenant, sub["id"])] = time.time()
            # Subscriptions that ask for the same view of the same change share one rendering of it.
            view_key = None if seen is not event else self._view_of(sub) + ",".join(sorted(fired)).encode()
            data = rendered.get(view_key) if view_key is not None else None
            if data is None:
                data = await self._render_data(sub, seen, fired)
                if view_key is not None:
                    rendered[view_key] = data
            payload = self._envelope(sub, data, stamp)
            rows.append((event.tenant, sub["id"], f"{sub['id']}|{event.seq}", _queued(event.tenant, payload),
                         time.time()))
        return rows

    def _view_of(self, sub: dict[str, Any]) -> bytes:
        """What decides how a subscription renders a change (everything but where it is sent), as a key."""
        key = (sub["id"], sub.get("modifiedAt"))
        view = self._views.get(key)
        if view is None:
            if len(self._views) > 10_000:
                self._views.clear()
            view = self._views[key] = orjson.dumps(
                [{k: v for k, v in sub["notification"].items() if k != "endpoint" and k not in NOTIFICATION_STATUS},
                 [sub.get(k) for k in ("datasetId", "lang", "jsonldContext", "@context", "watchedAttributes",
                                       "notificationTrigger", "_owner")]], option=orjson.OPT_SORT_KEYS)
        return view

    def _matches(self, sub: dict[str, Any], event: ChangeEvent, terms: TermMap,
                 changes: dict[str, set[str]] | None = None) -> set[str] | None:
        """The notification triggers this change fires for the subscription, or None when it does not match."""
        before, after = event.data.get("before"), event.data.get("after")
        doc = after or before
        if doc is None:
            return None
        if sub.get("createdAt") and event.at < sub["createdAt"]:
            return None  # a change from before the subscription existed, relayed late: not this one's business
        selectors = sub.get("entities")
        if selectors and not any(_selects(s, doc, terms) for s in selectors):
            return None
        watched = frozenset(terms.expand(w) for w in sub["watchedAttributes"]) if sub.get("watchedAttributes") \
            else None
        fired = _fired(event, watched, _attribute_changes(event) if changes is None else changes)
        if not fired & set(sub.get("notificationTrigger") or DEFAULT_TRIGGERS):
            return None
        if sub.get("q") and after is not None:
            expr = qlang.map_terms(qlang.parse_q(unquote(sub["q"])), terms.expand)
            if not qlang.evaluate(expr, lambda path: _values(after, path)):
                return None
        if sub.get("geoQ") and after is not None:
            geo = geoquery.parse_geoq_object(sub["geoQ"])
            prop = terms.expand(geo.geoproperty)
            shapes = [i["value"] for i in after["attrs"].get(prop, []) if i.get("type") == "GeoProperty"]
            if not any(geoquery.matches(geo, s) for s in shapes):
                return None
        return fired

    async def _notification(self, sub: dict[str, Any], event: ChangeEvent, fired: set[str]) -> dict[str, Any]:
        return self._envelope(sub, await self._render_data(sub, event, fired))

    def _envelope(self, sub: dict[str, Any], data: Entities, stamp: str | None = None) -> dict[str, Any]:
        """What the queue keeps for one notification: where it goes, its @context, and its body."""
        context = sub.get("jsonldContext") or sub.get("@context") or CORE_CONTEXT_URL
        return {"endpoint": sub["notification"]["endpoint"], "context": context, "link": _link_url(sub), "body": {
            "id": f"urn:ngsi-ld:Notification:{self._instance}-{next(self._numbers)}", "type": "Notification",
            "subscriptionId": sub["id"],
            "notifiedAt": stamp or now_iso(), "data": data}}

    async def _render_data(self, sub: dict[str, Any], event: ChangeEvent, fired: set[str]) -> Entities:
        """The entities a notification of this change carries, as the subscription asks to see them."""
        spec = sub["notification"]
        own, terms = self._terms(sub), self._render_terms(sub)
        form = FORMATS.get(spec.get("format", "normalized"), NORMALIZED)
        sys_attrs = bool(spec.get("sysAttrs"))
        datasets = sub.get("datasetId")
        view = View(terms, form, sys_attrs, lang=sub.get("lang"),
                    dataset_ids=frozenset(None if d == "@none" else d for d in datasets) if datasets else None,
                    dataset_map=True)

        def rename(name: str) -> str:
            return terms.compact(own.expand(name))

        pick, omit = _projection(spec, "pick"), _projection(spec, "omit")
        if spec.get("attributes"):
            pick = {a: None for a in [*spec["attributes"], "id", "type", "scope"]}
        pick, omit = _retree(pick, rename), _retree(omit, rename)
        after, before = event.data.get("after"), event.data.get("before")
        if after is None:
            assert before is not None  # _matches refuses an event with neither
            doc = {**before, "attrs": _deleted_entity_attrs(sub, before, fired, own, event.at), "deletedAt": event.at}
        else:
            doc = {**after, "attrs": _with_deletions(event, before, after)}

        def render(d: dict[str, Any], p: Projection | None, o: Projection | None) -> dict[str, Any]:
            shown = render_entity(d, self.ngsi._view_for(view, p, o))
            if sys_attrs and form == SIMPLIFIED:  # the entity's own timestamps, even in keyValues
                for member in ("createdAt", "modifiedAt", "deletedAt"):
                    if d.get(member):
                        shown[member] = d[member]
            return shown

        entity = render(doc, pick, omit)
        if after is None:
            entity["deletedAt"] = event.at
        if spec.get("showChanges") and before is not None and form == NORMALIZED:
            _previous_values(entity, before, after, terms)
        data = [entity]
        if spec.get("join") in ("inline", "flat") and after is not None:
            data = await join([(doc, entity)], mode=spec["join"], level=int(spec.get("joinLevel", 1)),
                              simplified=form == SIMPLIFIED, compact=terms.compact,
                              fetch=lambda ids: self._linked(sub, event.tenant, ids), render=render, pick=pick,
                              omit=omit)
        return data

    async def _linked(self, sub: dict[str, Any], tenant: str, ids: Ids) -> dict[str, dict[str, Any]]:
        """Entities a notification joins in, as the subscriber may see them."""
        query = EntityQuery(ids=ids, limit=max(1, len(ids)))
        owner = sub.get("_owner")
        if owner:
            caller = Caller(owner["subject"], owner["organization"], frozenset(owner.get("roles") or ()))
            found, _ = await self.broker.query(tenant, query, caller)
        else:
            found, _ = await self.store.query(tenant, query)
        return {d["id"]: d for d in found}

    # -- delivery -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=10.0, limits=httpx.Limits(max_connections=50))
        self._task = asyncio.create_task(self._deliver_forever(), name="notifications")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._client:
            await self._client.aclose()
        await self._sender.aclose()

    async def periodic_due(self) -> None:
        """timeInterval subscriptions: every interval, one notification with all entities that match now."""
        now = time.time()
        for tenant in ["", *await self.store.tenants()]:
            for sub in await self._all(tenant):
                interval = sub.get("timeInterval")
                if not interval or status_of(sub) != "active":
                    continue
                last = self._periodic.get((tenant, sub["id"]), 0.0)
                if now - last < float(interval):
                    continue
                self._periodic[(tenant, sub["id"])] = now
                terms = self._terms(sub)
                types = ",".join(f"({s['type']})" for s in sub.get("entities") or [])
                geo = sub.get("geoQ") or {}
                coordinates = geo.get("coordinates")
                query = self.ngsi._build_query(
                    terms, ids=[s["id"] for s in sub.get("entities") or [] if "id" in s] or None, id_pattern=None,
                    types=types or None, attrs=sub.get("watchedAttributes"), q=sub.get("q"),
                    georel=geo.get("georel"), geometry=geo.get("geometry"),
                    coordinates=orjson.dumps(coordinates).decode() if isinstance(coordinates, list) else coordinates,
                    geoproperty=geo.get("geoproperty"), scope_q=None, limit="1000", offset=None, count=None,
                    require_selector=False)
                docs, _ = await self.broker.query(tenant, query) if await self.store.tenant_exists(tenant) else ([], 0)
                if not docs:
                    continue
                notices = [await self._notification(sub, ChangeEvent(0, tenant, "entity.updated", d["id"], now_iso(),
                                                                      {"before": d, "after": d, "attributes": []}),
                                                    set())
                           for d in docs]
                payload = notices[0]
                payload["body"]["data"] = [n["body"]["data"][0] for n in notices]
                await self.store.enqueue_notifications(
                    [(tenant, sub["id"], f"{sub['id']}|every|{int(now)}", _queued(tenant, payload), now)])
                self._wake.set()

    def _log_failure(self, message: str) -> None:
        """Log a failing delivery round with its traceback, but an outage that lasts (the database gone) once a
        minute rather than four times a second."""
        now = time.monotonic()
        if now - self._logged.get(message, -FAILURE_LOG_PERIOD) >= FAILURE_LOG_PERIOD:
            self._logged[message] = now
            log.exception(message)

    async def _deliver_forever(self) -> None:
        while True:
            if not self.relay.owner:
                # One sender per database: the process that owns the outbox relay (and so fills the queue) sends;
                # other workers on the same database stand by, so no notification goes out twice concurrently.
                await asyncio.sleep(1.0)
                continue
            if time.monotonic() - self._periodic_checked >= 0.25:
                self._periodic_checked = time.monotonic()
                try:
                    await self.periodic_due()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self._log_failure("periodic notifications failed; retrying")
            try:
                moved = await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log_failure("notification delivery round failed; retrying")
                moved = 0
            if moved == 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), 0.5)
                except TimeoutError:
                    pass

    async def deliver_due(self, limit: int = PER_RECEIVER) -> int:
        """One delivery round; returns how many due rows it settled (sent, set to retry, or dropped), so the
        caller goes straight on while a backlog is moving."""
        due = await self.store.due_notifications(time.time(), limit)
        if not due:
            return 0
        # A subscription deleted or expired since its notifications were queued sends nothing more; a paused one
        # keeps them until it is active again.
        keys = {(t, s) for _, t, s, _, _ in due}
        current: dict[tuple[str, str], dict[str, Any] | None] = {}
        for tenant in {t for t, _ in keys}:
            wanted = [s for t, s in keys if t == tenant]
            if len(wanted) > 3:  # one read of the tenant's subscriptions beats a round trip per subscription
                stored = {d["id"]: d for d in await self.store.list_documents(tenant, KIND)}
                current.update({(tenant, s): stored.get(s) for s in wanted})
            else:
                current.update({(tenant, s): await self.store.get_document(tenant, KIND, s) for s in wanted})
        state = {key: "deleted" if sub is None else status_of(sub) for key, sub in current.items()}
        dropped: list[int] = [n for n, t, s, _, _ in due if state[(t, s)] in ("deleted", "expired")]
        held = [n for n, t, s, _, _ in due if state[(t, s)] == "paused"]
        if dropped or held:
            skip = set(dropped) | set(held)
            due = [row for row in due if row[0] not in skip]
        retry: Retries = [(n, time.time() + 5.0, "subscription not active") for n in held]
        groups = self._reachable(_by_receiver(due), retry)
        if retry or dropped:
            await self.store.settle_notifications([], retry, dropped, [])
        # Each receiver's notifications are sent and settled on their own, so a slow receiver delays neither
        # the others' sending nor their delivery status (which a client may read as soon as it has been told).
        settled = await asyncio.gather(*(self._deliver_to(origin, group) for origin, group in groups.items()))
        return len(retry) + len(dropped) + sum(settled)

    async def _deliver_to(self, origin: str, group: Work) -> int:
        """Send one receiver's due notifications (SENDERS at a time, at most PER_RECEIVER) and settle them: the
        sent ones deleted, the failed ones pushed back with exponential backoff, the subscriptions' status
        updated, in one transaction. A receiver that fails slowly (no answer within SLOW_FAILURE: it hangs or
        the network drops packets) stops its workers and is left alone for a growing while (`_outages`); one
        that fails fast (connection refused) is only retried with each notification's own backoff.
        Returns how many rows it settled; unsent rows stay due for the next round."""
        queue = list(reversed(group[:PER_RECEIVER]))
        outcome: list[tuple[DueRow, str | None]] = []
        round_started = time.time()

        async def worker() -> None:
            while queue and not self._down(origin, round_started):
                row, uri, headers, body = queue.pop()
                began = time.monotonic()
                error, answered = await self._send(uri, headers, body)
                outcome.append((row, error))
                key = (row[1], row[2])
                sent, failed, _ = self._unsettled.get(key, (0, 0, ""))
                self._unsettled[key] = (sent + (error is None), failed + (error is not None), now_iso())
                if not answered and time.monotonic() - began >= SLOW_FAILURE:
                    self._lost(origin, error or "", round_started)
                elif error is None:
                    self._outages.pop(origin, None)

        await asyncio.gather(*(worker() for _ in range(min(SENDERS, len(queue)))))
        delivered: list[int] = []
        retry: Retries = []
        outcomes: dict[tuple[str, str], tuple[int, int]] = {}
        for (nid, tenant, sub_id, _payload, attempts), error in outcome:
            sent, failed = outcomes.get((tenant, sub_id), (0, 0))
            if error is None:
                delivered.append(nid)
                outcomes[(tenant, sub_id)] = (sent + 1, failed)
            else:
                delay = min(MAX_BACKOFF, self.retry_base * 2 ** attempts)
                retry.append((nid, time.time() + delay, error))
                outcomes[(tenant, sub_id)] = (sent, failed + 1)
        stamp = now_iso()
        # The delivery status lives in the subscription's notification member (NGSI-LD NotificationParams); it is
        # updated in the transaction that settles the queue, on the stored subscription as it is then.
        updates = [(tenant, KIND, sub_id, _status_change(sent, failed, stamp))
                   for (tenant, sub_id), (sent, failed) in outcomes.items()]
        try:
            if outcome:
                await self.store.settle_notifications(delivered, retry, [], updates)
        finally:  # settled now, or due again (and sent again) when the settling failed
            for key in outcomes:
                self._unsettled.pop(key, None)
        return len(outcome)

    def _reachable(self, groups: dict[str, Work], retry: Retries) -> dict[str, Work]:
        """The receivers' groups to send now. A receiver in an outage sends nothing: its rows wait (appended to
        `retry`) until the outage's end, when one row probes it and the rest stay due until the probe."""
        now = time.time()
        kept: dict[str, Work] = {}
        for origin, group in groups.items():
            outage = self._outages.get(origin)
            if outage is None:
                kept[origin] = group
            elif outage.until > now:
                retry.extend((row[0], outage.until, f"receiver unreachable: {outage.error}") for row, *_ in group)
            else:
                kept[origin] = group[:1]
        return kept

    def _down(self, origin: str, round_started: float) -> bool:
        """Whether a receiver failed to answer during this round (its workers stop sending)."""
        outage = self._outages.get(origin)
        return outage is not None and outage.since >= round_started

    def _lost(self, origin: str, error: str, round_started: float) -> None:
        """A receiver could not be reached: open (or extend, once per round) its outage, doubling each time."""
        outage = self._outages.get(origin)
        if outage is not None and outage.since >= round_started:
            return
        failures = outage.failures + 1 if outage is not None else 1
        now = time.time()
        self._outages[origin] = _Outage(now, now + min(MAX_BACKOFF, self.retry_base * 2 ** (failures - 1)),
                                        failures, error)

    async def _send(self, uri: str, headers: dict[str, str], body: bytes) -> tuple[str | None, bool]:
        """Deliver one notification: (None when the receiver took it, else why not; whether it answered at all)."""
        try:
            if uri.startswith(("mqtt://", "mqtts://")):
                await asyncio.to_thread(_publish_mqtt, uri, body, headers)
                return None, True
            if uri.startswith("http://"):
                status = await self._sender.post(uri, body, headers)
            else:
                assert self._client is not None
                status = (await self._client.post(uri, content=body, headers=headers)).status_code
            if 200 <= status < 300:
                return None, True
            return f"HTTP {status}", True
        except Exception as exc:  # a receiver being down is routine here: retried with backoff
            return f"{type(exc).__name__}: {exc}"[:300], False


@dataclasses.dataclass
class _Outage:
    since: float  # when the receiver last failed to answer (wall clock, like the queue's due times)
    until: float  # nothing is sent to it before this
    failures: int  # rounds in a row it failed: the wait doubles with each, up to MAX_BACKOFF
    error: str


def _request(tenant: str, payload: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    """(endpoint URI, headers, body bytes) of the request that delivers a notification."""
    endpoint, body, context = payload["endpoint"], payload["body"], payload["context"]
    headers = {e["key"]: str(e["value"]) for e in endpoint.get("receiverInfo", [])}
    if tenant:
        headers["NGSILD-Tenant"] = tenant
    if endpoint.get("accept", "application/json") == JSONLD:
        body = {**body, "data": [{**d, "@context": context} for d in body["data"]]}
        headers["Content-Type"] = JSONLD
    else:
        headers["Content-Type"] = "application/json"
        url = payload.get("link") or (context if isinstance(context, str) else CORE_CONTEXT_URL)
        headers["Link"] = f'<{url}>; rel="{CONTEXT_REL}"; type="{JSONLD}"'
    return endpoint["uri"], headers, orjson.dumps(body)


_QUEUED_V2 = b'{"v":2,'


def _queued(tenant: str, payload: dict[str, Any]) -> bytes:
    """A queue row's payload: the request, ready to send (a JSON line of URI and headers, then the body bytes),
    so delivery neither parses nor serializes the notification again."""
    uri, headers, body = _request(tenant, payload)
    return orjson.dumps({"v": 2, "uri": uri, "headers": headers}) + b"\n" + body


def _unqueued(tenant: str, raw: bytes | memoryview) -> tuple[str, dict[str, str], bytes]:
    raw = bytes(raw)
    if raw.startswith(_QUEUED_V2):
        head, _, body = raw.partition(b"\n")
        meta = orjson.loads(head)
        return meta["uri"], meta["headers"], body
    return _request(tenant, orjson.loads(raw))  # a row queued by an earlier version: the notification as JSON


def _nulled(inst: dict[str, Any], deleted_at: str, *, plain: bool = False) -> dict[str, Any]:
    """An instance announced as deleted: its value member set to the NGSI-LD Null (plain: the bare Null URI, as
    for a deleted entity; otherwise shaped like the member), its timestamps kept for sysAttrs."""
    kind = inst.get("type", "Property")
    member = ATTRIBUTE_TYPES.get(kind, "value")
    value: Any = NULL_URI if plain else {"@none": NULL_URI} if member == "languageMap" else (
        [NULL_URI] if member in ("valueList", "objectList") else NULL_URI)
    out = {"type": kind, member: value}
    for key in ("datasetId", "createdAt", "modifiedAt"):
        if key in inst:
            out[key] = inst[key]
    out["deletedAt"] = deleted_at
    return out


def _status_change(sent: int, failed: int, stamp: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(sub: dict[str, Any]) -> dict[str, Any]:
        notification = sub["notification"]
        notification["timesSent"] = notification.get("timesSent", 0) + sent + failed
        if failed:
            notification["timesFailed"] = notification.get("timesFailed", 0) + failed
        notification["lastNotification"] = stamp
        if sent:
            notification["lastSuccess"] = stamp
            notification["status"] = "ok"
        if failed:
            notification["lastFailure"] = stamp
            notification["status"] = "failed"
        return sub
    return change


def _by_receiver(due: DueRows) -> dict[str, Work]:
    """Due rows with their requests, grouped by receiver (scheme, host and port), oldest first."""
    groups: dict[str, Work] = {}
    for row in due:
        uri, headers, body = _unqueued(row[1], row[3])
        groups.setdefault(_origin(uri), []).append((row, uri, headers, body))
    return groups


@lru_cache(maxsize=1024)
def _origin(uri: str) -> str:
    parts = urlparse(uri)
    return f"{parts.scheme}://{parts.netloc}"


def _link_url(sub: dict[str, Any]) -> str:
    """The one @context URL a JSON notification's Link header names: jsonldContext, else the subscription's own
    @context when that is a single URL, else the core context."""
    if isinstance(sub.get("jsonldContext"), str):
        return str(sub["jsonldContext"])
    context = sub.get("@context")
    if isinstance(context, list) and len(context) == 1:
        context = context[0]
    return context if isinstance(context, str) else CORE_CONTEXT_URL


def _rename(members: dict[str, Any], rename: Callable[[str], str]) -> None:
    """Map the attribute and type names of a subscription (or PATCH fragment) in place through `rename`."""
    if isinstance(members.get("entities"), list):
        members["entities"] = [
            {**e, "type": typequery.format_types(typequery.map_terms(typequery.parse_types(e["type"]), rename))}
            if isinstance(e, dict) and isinstance(e.get("type"), str) else e for e in members["entities"]]
    if isinstance(members.get("watchedAttributes"), list):
        members["watchedAttributes"] = [rename(n) for n in members["watchedAttributes"]]
    notification = members.get("notification")
    if isinstance(notification, dict) and isinstance(notification.get("attributes"), list):
        members["notification"] = {**notification, "attributes": [rename(n) for n in notification["attributes"]]}


def _retree(tree: Projection | None, rename: Callable[[str], str]) -> Projection | None:
    if tree is None:
        return None
    return {(n if n in ("id", "type", "scope") else rename(n)): _retree(sub, rename) for n, sub in tree.items()}


def _attribute_changes(event: ChangeEvent) -> dict[str, set[str]]:
    """What the change did to each attribute it touched: attributeCreated / Updated / Deleted, judged per
    instance (datasetId), so deleting one dataset of an attribute is an attributeDeleted."""
    before, after = event.data.get("before"), event.data.get("after")
    if before is None:
        return {a: {"attributeCreated"} for a in (after or {}).get("attrs", {})}
    if after is None:
        return {a: {"attributeDeleted"} for a in before["attrs"]}
    out: dict[str, set[str]] = {}
    for attr in event.data.get("attributes") or []:
        old = {i.get("datasetId"): i for i in before["attrs"].get(attr, [])}
        new = {i.get("datasetId"): i for i in after["attrs"].get(attr, [])}
        kinds = set()
        if new.keys() - old.keys():
            kinds.add("attributeCreated")
        if old.keys() - new.keys():
            kinds.add("attributeDeleted")
        if any(new[d] != old[d] for d in new.keys() & old.keys()):
            kinds.add("attributeUpdated")
        if kinds:
            out[attr] = kinds
    return out


def _fired(event: ChangeEvent, watched: frozenset[str] | None, changes: dict[str, set[str]]) -> set[str]:
    """The notification triggers a change fires for a subscription watching `watched` (None: everything), given
    what it did to each attribute (`_attribute_changes`)."""
    relevant = changes if watched is None else {a: k for a, k in changes.items() if a in watched}
    fired: set[str] = set().union(*relevant.values()) if relevant else set()
    if event.kind == ENTITY_DELETED:
        fired.add("entityDeleted")
    elif watched is None or relevant:
        fired.add("entityCreated" if event.kind == ENTITY_CREATED else "entityUpdated")
    return fired


def _with_deletions(event: ChangeEvent, before: dict[str, Any] | None,
                    after: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The entity's attributes after the change, with each deleted instance announced by the NGSI-LD Null."""
    attrs = dict(after["attrs"])
    if before is None:
        return attrs
    for attr in event.data.get("attributes") or []:
        new = after["attrs"].get(attr, [])
        kept = {i.get("datasetId") for i in new}
        gone = [i for i in before["attrs"].get(attr, []) if i.get("datasetId") not in kept]
        if not gone:
            continue
        if not new and len(gone) > 1:  # the whole attribute went (deleteAll): one Null stands for it
            attrs[attr] = [_nulled({k: v for k, v in gone[0].items() if k != "datasetId"}, event.at)]
        else:
            attrs[attr] = new + [_nulled(i, event.at) for i in gone]
    return attrs


def _deleted_entity_attrs(sub: dict[str, Any], before: dict[str, Any], fired: set[str], terms: TermMap,
                          deleted_at: str) -> dict[str, list[dict[str, Any]]]:
    """Attributes shown for a deleted entity: all of them (Null, with their previous values) under showChanges,
    the watched ones under attributeDeleted, none for a bare entityDeleted."""
    if sub["notification"].get("showChanges"):
        names = list(before["attrs"])
    elif "attributeDeleted" in fired and "attributeDeleted" in (sub.get("notificationTrigger") or DEFAULT_TRIGGERS):
        watched = {terms.expand(w) for w in sub.get("watchedAttributes") or []}
        names = [a for a in before["attrs"] if not watched or a in watched]
    else:
        names = []
    return {a: [_nulled(i, deleted_at, plain=True) for i in before["attrs"][a]] for a in names}


def _publish_mqtt(uri: str, body: bytes, headers: dict[str, str]) -> None:
    import paho.mqtt.publish as publish

    parts = urlparse(uri)
    topic = parts.path.lstrip("/") or "notifications"
    message = b'{"metadata":' + orjson.dumps(headers) + b',"body":' + body + b"}"
    # mqtt://user:password@host:port/topic: the credentials are the broker's login (NGSI-LD 1.8 clause 5.2.22)
    auth = {"username": parts.username, "password": parts.password} if parts.username else None
    publish.single(topic, message, qos=1, hostname=parts.hostname or "127.0.0.1", port=parts.port or 1883,
                   auth=auth)  # type: ignore[arg-type]


def _selects(selector: dict[str, Any], doc: dict[str, Any], terms: TermMap) -> bool:
    types = typequery.map_terms(typequery.parse_types(selector["type"]), terms.expand)
    if not typequery.evaluate(types, frozenset(doc.get("type", []))):
        return False
    if "id" in selector and selector["id"] != doc["id"]:
        return False
    if "idPattern" in selector and not re.search(selector["idPattern"], doc["id"]):
        return False
    return True


def _values(doc: dict[str, Any], path: Any) -> list[Any]:
    """Candidate values of a q path in a stored entity (for qlang.evaluate)."""
    out: list[Any] = []
    for inst in doc["attrs"].get(path.name, []):
        node: Any = inst
        for sub in path.sub:
            node = node.get(sub) if isinstance(node, dict) else None
        if node is None:
            continue
        if isinstance(node, dict) and "type" in node:
            member = ATTRIBUTE_TYPES.get(node["type"], "value")
            node = node.get(member)
        for key in path.keys:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            out.extend(node if isinstance(node, list) else [node])
    return out


def _previous_values(entity: dict[str, Any], before: dict[str, Any], after: dict[str, Any] | None,
                     terms: TermMap) -> None:
    """showChanges: each changed or deleted attribute carries its previous value (previousValue, ...)."""
    for iri, old in before["attrs"].items():
        new = after["attrs"].get(iri) if after is not None else None
        if not old or old == new:
            continue
        shown = entity.get(terms.compact(iri))
        if isinstance(shown, dict):
            member = ATTRIBUTE_TYPES.get(old[0].get("type", "Property"), "value")
            if member in old[0]:
                value = old[0][member]
                if member == "vocab":
                    value = [terms.compact(v) for v in value] if isinstance(value, list) else terms.compact(value)
                shown["previous" + member[0].upper() + member[1:]] = value


def mount(app: FastAPI, platform: Any) -> None:
    subs = Subscriptions(platform)
    platform.extras["subscriptions"] = subs
    platform.relay.subscribe_batch("subscriptions", subs.on_events, durable=True)
    router = APIRouter(prefix=PREFIX)
    routes: list[tuple[str, list[str], Callable[..., Any]]] = [
        ("/subscriptions", ["POST"], subs.create), ("/subscriptions", ["GET"], subs.list),
        ("/subscriptions/{sub_id}", ["GET"], subs.retrieve), ("/subscriptions/{sub_id}", ["PATCH"], subs.update),
        ("/subscriptions/{sub_id}", ["DELETE"], subs.delete)]
    for path, methods, endpoint in routes:
        router.add_api_route(path, endpoint, methods=methods)
        router.add_api_route(path + "/", endpoint, methods=methods, include_in_schema=False)
    app.include_router(router)
    app.state.startup_hooks.append(subs.start)
    app.state.shutdown_hooks.append(subs.stop)
