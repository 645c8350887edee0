"""Which subscriptions a change event makes due, and with which triggers: pure functions, no I/O.

`match` takes one change event and a tenant's stored subscriptions and returns the (subscription, triggers) pairs
that are due; `masked` narrows an event to the attributes a subscriber may read, so an owned subscription is
matched again on what its owner may see. Rendering and queueing the notification happen around these.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

from civicmesh import regex
from civicmesh.events import ENTITY_CREATED, ENTITY_DELETED, ChangeEvent
from civicmesh.ngsild import geoquery, qlang, typequery
from civicmesh.ngsild.context import TermMap
from civicmesh.ngsild.masking import relaxed, values
from civicmesh.ngsild.model import now_iso

KIND = "subscription"  # the store document kind subscriptions are kept as
TRIGGERS = {"entityCreated", "entityUpdated", "entityDeleted", "attributeCreated", "attributeUpdated",
            "attributeDeleted"}
# NGSI-LD 1.8 clause 5.2.12: without notificationTrigger a subscription fires on attributes created or updated.
DEFAULT_TRIGGERS = ["attributeCreated", "attributeUpdated"]
Subscription = dict[str, Any]
Changes = dict[str, set[str]]


def status_of(sub: Subscription) -> str:
    if sub.get("expiresAt") and sub["expiresAt"] < now_iso():
        return "expired"
    return "active" if sub.get("isActive", True) else "paused"


def match(event: ChangeEvent, subs: Iterable[Subscription],
          terms_of: Callable[[Subscription], TermMap]) -> list[tuple[Subscription, set[str]]]:
    """The active, change-driven subscriptions (not timeInterval ones) this change is due to, in their order, each
    with the notification triggers it fires for it. Matched on the event as stored: an owned subscription must be
    matched again on the event `masked` to what its owner may read before it is notified."""
    if not event.kind.startswith("entity."):
        return []
    changes = attribute_changes(event)  # the same for every subscription
    due: list[tuple[Subscription, set[str]]] = []
    for sub in subs:
        if status_of(sub) != "active" or "timeInterval" in sub:
            continue
        # An owned subscription is matched again on what its owner may read; `!name` may hold only there.
        fired = matches(sub, event, terms_of(sub), changes, relax=bool(sub.get("_owner")))
        if fired is not None:
            due.append((sub, fired))
    return due


def matches(sub: Subscription, event: ChangeEvent, terms: TermMap, changes: Changes | None = None, *,
            relax: bool = False) -> set[str] | None:
    """The notification triggers this change fires for the subscription, or None when it does not match.
    With `relax`, `!name` terms of q count as true: a first cut that holds whatever matches on a masked view."""
    before, after = event.data.get("before"), event.data.get("after")
    doc = after or before
    if doc is None:
        return None
    if sub.get("createdAt") and event.at < sub["createdAt"]:
        return None  # a change from before the subscription existed, relayed late: not this one's business
    selectors = sub.get("entities")
    if selectors and not any(selects(s, doc, terms) for s in selectors):
        return None
    watched = frozenset(terms.expand(w) for w in sub["watchedAttributes"]) if sub.get("watchedAttributes") \
        else None
    fired = fired_triggers(event, watched, attribute_changes(event) if changes is None else changes)
    if not fired & set(sub.get("notificationTrigger") or DEFAULT_TRIGGERS):
        return None
    if sub.get("q") and after is not None:
        expr: qlang.QExpr | None = qlang.map_terms(qlang.parse_q(unquote(sub["q"])), terms.expand)
        if relax and expr is not None:
            expr = relaxed(expr)
        if expr is not None and not qlang.evaluate(expr, lambda path: values(after, path)):
            return None
    if sub.get("geoQ") and after is not None:
        geo = geoquery.parse_geoq_object(sub["geoQ"])
        prop = terms.expand(geo.geoproperty)
        shapes = [i["value"] for i in after["attrs"].get(prop, []) if i.get("type") == "GeoProperty"]
        if not any(geoquery.matches(geo, s) for s in shapes):
            return None
    return fired


def masked(event: ChangeEvent, visible: frozenset[str] | set[str] | None) -> ChangeEvent | None:
    """The event as a subscriber that may read only the `visible` attributes of its entity sees it (None: the
    entity is hidden from it): None when every attribute the change touched is masked; otherwise the event with
    the masked attributes gone from its before and after states and from the attributes it touched. `visible`
    covers the attributes of both states, so a masked attribute that the change deleted stays unseen too."""
    before, after = event.data.get("before"), event.data.get("after")
    doc = after or before
    if doc is None or visible is None:
        return None
    if visible >= set(doc["attrs"]) and (before is None or visible >= set(before["attrs"])):
        return event
    touched = [a for a in event.data.get("attributes") or [] if a in visible]
    if not touched and event.kind not in (ENTITY_CREATED, ENTITY_DELETED):
        return None

    def mask(d: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if d is None else {**d, "attrs": {k: v for k, v in d["attrs"].items() if k in visible}}

    return dataclasses.replace(event, data={**event.data, "before": mask(before), "after": mask(after),
                                            "attributes": touched})


def attribute_changes(event: ChangeEvent) -> Changes:
    """What the change did to each attribute it touched: attributeCreated / Updated / Deleted, judged per
    instance (datasetId), so deleting one dataset of an attribute is an attributeDeleted."""
    before, after = event.data.get("before"), event.data.get("after")
    if before is None:
        return {a: {"attributeCreated"} for a in (after or {}).get("attrs", {})}
    if after is None:
        return {a: {"attributeDeleted"} for a in before["attrs"]}
    out: Changes = {}
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


def fired_triggers(event: ChangeEvent, watched: frozenset[str] | None, changes: Changes) -> set[str]:
    """The notification triggers a change fires for a subscription watching `watched` (None: everything), given
    what it did to each attribute (`attribute_changes`)."""
    relevant = changes if watched is None else {a: k for a, k in changes.items() if a in watched}
    fired: set[str] = set().union(*relevant.values()) if relevant else set()
    if event.kind == ENTITY_DELETED:
        fired.add("entityDeleted")
    elif watched is None or relevant:
        fired.add("entityCreated" if event.kind == ENTITY_CREATED else "entityUpdated")
    return fired


def selects(selector: dict[str, Any], doc: dict[str, Any], terms: TermMap) -> bool:
    types = typequery.map_terms(typequery.parse_types(selector["type"]), terms.expand)
    if not typequery.evaluate(types, frozenset(doc.get("type", []))):
        return False
    if "id" in selector and selector["id"] != doc["id"]:
        return False
    if "idPattern" in selector and not regex.search(selector["idPattern"], doc["id"]):
        return False
    return True
