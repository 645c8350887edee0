"""Notifications of subscriptions: turn relayed change events into queued notifications, rendered as each
subscription asks, and queue the periodic ones of timeInterval subscriptions.

A durable relay subscriber (`on_events`) asks the matcher which subscriptions a change is due to, screens each
owned subscription's view of the change through the gate, renders the notification and hands the rows to the
delivery queue (idempotently, keyed by subscription and event).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from civicmesh.access import ANONYMOUS, Caller
from civicmesh.errors import Problem
from civicmesh.events import ChangeEvent
from civicmesh.ngsild.context import CORE_CONTEXT_URL, TermMap
from civicmesh.ngsild.linked import Projection, join, parse_projection
from civicmesh.ngsild.model import ATTRIBUTE_TYPES, NULL_URI, now_iso
from civicmesh.ngsild.render import CONCISE, NORMALIZED, SIMPLIFIED, View, render_entity
from civicmesh.ngsild.subscriptions import matcher
from civicmesh.ngsild.subscriptions.book import Book
from civicmesh.ngsild.subscriptions.delivery import Delivery, QueueRows, _queued
from civicmesh.ngsild.subscriptions.matcher import DEFAULT_TRIGGERS, status_of
from civicmesh.store.base import EntityQuery

FORMATS = {"normalized": NORMALIZED, "keyValues": SIMPLIFIED, "simplified": SIMPLIFIED, "concise": CONCISE}
NOTIFICATION_STATUS = ("status", "timesSent", "timesFailed", "lastNotification", "lastSuccess", "lastFailure")
Ids = list[str]
Events = list[ChangeEvent]
Entities = list[dict[str, Any]]


class Notices:
    """The relay subscriber that queues due notifications, and the periodic notifications of timeInterval ones."""

    def __init__(self, book: Book, store: Any, broker: Any, ngsi: Any, delivery: Delivery) -> None:
        self.book = book
        self.store = store
        self.broker = broker
        self.ngsi = ngsi
        self.delivery = delivery
        self._views: dict[tuple[str, Any], bytes] = {}
        # Notification ids: unique per process start plus a counter, cheaper than a uuid4 per notification.
        self._instance, self._numbers = uuid.uuid4().hex, itertools.count(1)
        self._throttle: dict[tuple[str, str], float] = {}
        self._periodic: dict[tuple[str, str], float] = {}

    async def on_event(self, event: ChangeEvent) -> None:
        await self.on_events([event])

    async def on_events(self, events: Events) -> None:
        """Queue what a run of relayed events makes due, in one transaction (the relay moves its cursor after)."""
        rows: QueueRows = []
        for event in events:
            rows.extend(await self._due_rows(event))
        await self.delivery.enqueue(rows)

    async def _due_rows(self, event: ChangeEvent) -> QueueRows:
        """The queue rows one change event makes due: one per matching subscription."""
        due = matcher.match(event, await self.book.all(event.tenant), self.book.terms)
        rows: QueueRows = []
        rendered: dict[bytes, list[dict[str, Any]]] = {}
        stamp = now_iso()
        for sub, fired in due:
            seen = event
            if sub.get("_owner"):
                # Matched on what the subscriber may see, so q and geoQ cannot probe masked attributes.
                screened = await self._screened(sub, event)
                if screened is None or (again := matcher.matches(sub, screened, self.book.terms(sub))) is None:
                    continue
                seen, fired = screened, again
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

    async def _screened(self, sub: dict[str, Any], event: ChangeEvent) -> ChangeEvent | None:
        """The event as the subscriber may see it: None when the gate hides the entity from it or when every
        attribute the change touched is masked."""
        owner = sub.get("_owner")
        screen = getattr(self.broker.gate, "screen", None)
        if not owner or screen is None:
            return event
        before, after = event.data.get("before"), event.data.get("after")
        doc = after or before
        if doc is None:
            return None
        if before is not None and after is not None and not before["attrs"].keys() <= after["attrs"].keys():
            # The gate judges the attributes of both states, so one the change deleted is judged too: a masked one
            # must not show up as deleted (with its previous value under showChanges), a readable one must.
            doc = {**after, "attrs": {**before["attrs"], **after["attrs"]}}
        # A deletion released the owner in its own transaction and carries it in the event (finding 12).
        released = event.data.get("owner") if after is None else None
        shown = await screen(_owner_caller(owner), event.tenant, "notify", [doc],
                             **({"owners": {doc["id"]: released}} if released else {}))
        return matcher.masked(event, set(shown[0]["attrs"]) if shown else None)

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
        own, terms = self.book.terms(sub), self.book.render_terms(sub)
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
            assert before is not None  # matcher.matches refuses an event with neither
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
            found, _ = await self.broker.query(tenant, query, _owner_caller(owner))
        else:
            found, _ = await self.store.query(tenant, query)
        return {d["id"]: d for d in found}

    async def periodic_due(self) -> None:
        """timeInterval subscriptions: every interval, one notification with all entities that match now."""
        now = time.time()
        for tenant in ["", *await self.store.tenants()]:
            for sub in await self.book.all(tenant):
                interval = sub.get("timeInterval")
                if not interval or status_of(sub) != "active":
                    continue
                last = self._periodic.get((tenant, sub["id"]), 0.0)
                if now - last < float(interval):
                    continue
                self._periodic[(tenant, sub["id"])] = now
                terms = self.book.terms(sub)
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
                # As the subscriber may read them: without its caller the query ran as the platform and sent
                # every organization's entities, unmasked, to whoever made a timeInterval subscription.
                owner = sub.get("_owner")
                caller = _owner_caller(owner) if owner else ANONYMOUS
                docs, _ = await self.broker.query(tenant, query, caller) if await self.store.tenant_exists(tenant) \
                    else ([], 0)
                if not docs:
                    continue
                notices = [await self._notification(sub, ChangeEvent(0, tenant, "entity.updated", d["id"], now_iso(),
                                                                      {"before": d, "after": d, "attributes": []}),
                                                    set())
                           for d in docs]
                payload = notices[0]
                payload["body"]["data"] = [n["body"]["data"][0] for n in notices]
                await self.delivery.enqueue(
                    [(tenant, sub["id"], f"{sub['id']}|every|{int(now)}", _queued(tenant, payload), now)])


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


def _link_url(sub: dict[str, Any]) -> str:
    """The one @context URL a JSON notification's Link header names: jsonldContext, else the subscription's own
    @context when that is a single URL, else the core context."""
    if isinstance(sub.get("jsonldContext"), str):
        return str(sub["jsonldContext"])
    context = sub.get("@context")
    if isinstance(context, list) and len(context) == 1:
        context = context[0]
    return context if isinstance(context, str) else CORE_CONTEXT_URL


def _retree(tree: Projection | None, rename: Callable[[str], str]) -> Projection | None:
    if tree is None:
        return None
    return {(n if n in ("id", "type", "scope") else rename(n)): _retree(sub, rename) for n, sub in tree.items()}


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


def _owner_caller(owner: dict[str, Any]) -> Caller:
    """The organization that made a subscription, as the gate screens it."""
    return Caller(owner["subject"], owner["organization"], frozenset(owner.get("roles") or ()))
