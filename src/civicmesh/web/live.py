"""`/web/events`: the live stream of entity changes, screened by the exchange gate for each connected page.

The hub is a (non-durable) batch subscriber of the relay: a live view starts at the tip and a reconnecting page
reloads its layers, so nothing needs replaying. Each relayed run of events is handed to every page at once, and a
page keeps only the newest change of each entity it has not been sent yet: a page that falls behind catches up
with the current state of what changed instead of replaying every step, and what waits for it is bounded by the
number of entities, not by the rate of updates.

A page's sender takes what waits, screens it in one call of the gate's `screen` as the page's caller, and sends one
message. The whole connection is one standing read for the exchange (an `enforce.Session`): each agreement is
counted once per connection, like one query, and what was delivered is metered (operation `stream`: entities and
bytes per provider and agreement) once a minute and when the page goes, not once per message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from civicmesh.access import Caller, current_caller
from civicmesh.errors import Problem
from civicmesh.events import ENTITY_CREATED, ENTITY_DELETED, ENTITY_UPDATED, ChangeEvent
from civicmesh.exchange.enforce import Session
from civicmesh.ngsild.render import SIMPLIFIED, View, render_entity
from civicmesh.web.layers import demo_terms

if TYPE_CHECKING:
    from civicmesh.platform import Platform

log = logging.getLogger("civicmesh.web")

ENTITY_EVENTS = (ENTITY_CREATED, ENTITY_UPDATED, ENTITY_DELETED)
QUEUE_LIMIT = 5000  # distinct entities a slow page may lag behind on before it is told to reload instead
BATCH_LIMIT = 500  # entities per message
KEEPALIVE_SECONDS = 15.0
METER_SECONDS = 60.0


def _epoch_ms(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000
    except ValueError:
        return time.time() * 1000


@dataclass(eq=False)
class Listener:
    """One connected page: the newest not yet sent change of each entity, in the order they first changed."""

    caller: Caller
    tenant: str
    waiting: dict[str, ChangeEvent] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)  # how many changes each waiting entry stands for
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    overflowed: bool = False
    session: Session | None = None
    # The attributes the changes a waiting entry stands for touched (None: one of them created or deleted the
    # entity), so a change that touched only attributes this page may not read is not sent (`LiveHub.screened`).
    touched: dict[str, frozenset[str] | None] = field(default_factory=dict)

    def offer(self, event: ChangeEvent) -> None:
        earlier = self.touched.get(event.subject, frozenset()) if event.subject in self.waiting else frozenset()
        now = None if event.kind != ENTITY_UPDATED else frozenset(event.data.get("attributes") or ())
        self.touched[event.subject] = None if earlier is None or now is None else earlier | now
        self.waiting[event.subject] = event  # a newer change of a waiting entity replaces the older one
        self.changes[event.subject] = self.changes.get(event.subject, 0) + 1
        if len(self.waiting) > QUEUE_LIMIT:
            self.waiting.clear()
            self.changes.clear()
            self.touched.clear()
            self.overflowed = True

    def take(self) -> tuple[list[ChangeEvent], dict[str, int]]:
        if len(self.waiting) <= BATCH_LIMIT:
            taken, counts = list(self.waiting.values()), self.changes
            self.waiting, self.changes = {}, {}
        else:
            subjects = list(self.waiting)[:BATCH_LIMIT]
            taken = [self.waiting.pop(s) for s in subjects]
            counts = {s: self.changes.pop(s) for s in subjects}
            self.wake.set()  # more waits: come back at once
        return taken, counts


class LiveHub:
    """Fans entity change events out to the connected pages."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.listeners: set[Listener] = set()
        self.delivered = 0

    async def on_events(self, events: list[ChangeEvent]) -> None:
        if not self.listeners:
            return
        changes = [e for e in events if e.kind in ENTITY_EVENTS]
        for listener in self.listeners:
            offered = False
            for event in changes:
                if event.tenant == listener.tenant:
                    listener.offer(event)
                    offered = True
            if offered:
                listener.wake.set()

    async def screened(self, listener: Listener, events: list[ChangeEvent],
                       counts: dict[str, int] | None = None) -> dict[str, Any]:
        """The batch as this listener may see it: entities (keyValues, demo names), ids of deleted ones, and how
        many changes (`changes`) what is shown stands for, older changes of the same entity included."""
        touched = {e.subject: listener.touched.pop(e.subject, None) for e in events}  # before any await
        gone = [e.data["before"] for e in events if e.data.get("after") is None and e.data.get("before")]
        screen = getattr(self.platform.gate, "screen", None)
        docs: list[dict[str, Any]] = gone
        token = current_caller.set(listener.caller)  # as this page's caller, also where the gate falls back on it
        try:
            current = await self._firing(listener, [e for e in events if e.data.get("after") is not None], touched)
            docs = current + gone
            if screen is not None and docs:
                docs = await screen(listener.caller, listener.tenant, "stream", docs, session=listener.session)
        finally:
            current_caller.reset(token)
        deleted = {d["id"] for d in gone}
        view = View(demo_terms(self.platform), SIMPLIFIED)
        entities = []
        for doc in docs:
            if doc["id"] in deleted:
                continue
            shown = render_entity(doc, view)
            shown["modifiedAt"] = doc.get("modifiedAt")
            entities.append(shown)
        newest = max(events, key=lambda e: e.seq)
        counts = counts or {}
        return {"seq": newest.seq, "at": _epoch_ms(newest.at), "sent": time.time() * 1000,
                "changes": sum(counts.get(d["id"], 1) for d in docs),
                "entities": entities, "deleted": [d["id"] for d in docs if d["id"] in deleted]}

    async def _firing(self, listener: Listener, events: list[ChangeEvent],
                      touched: dict[str, frozenset[str] | None]) -> list[dict[str, Any]]:
        """The entities these changes leave, but not those whose changes touched only attributes the page may not
        read: sending them would tell it that a masked attribute changed, and when. The gate judges the
        attributes of the state before and after, so an attribute a change deleted is judged too."""
        gate = self.platform.gate
        judged = [e for e in events if touched.get(e.subject) and e.data.get("before") is not None]
        if not judged or gate.sees_everything(listener.caller):
            return [e.data["after"] for e in events]
        both = [{**e.data["after"], "attrs": {**e.data["before"]["attrs"], **e.data["after"]["attrs"]}}
                for e in judged]
        quiet: set[str] = set()
        for event, doc, verdict in zip(judged, both, await gate.admits(listener.caller, listener.tenant, both),
                                       strict=True):
            names = touched[event.subject] or frozenset()
            visible = getattr(verdict, "visible", None)
            # A name in neither state was deleted by an earlier change this entry stands for: it cannot be judged
            # here, so the entity is sent.
            if verdict is not None and visible is not None and names <= doc["attrs"].keys() and not names & visible:
                quiet.add(event.subject)
        return [e.data["after"] for e in events if e.subject not in quiet]

    def _meter(self, listener: Listener) -> None:
        meter = getattr(self.platform.gate, "meter_session", None)
        if meter is not None and listener.session is not None:
            meter(listener.session)

    async def stream(self, listener: Listener) -> AsyncIterator[bytes]:
        if hasattr(self.platform.gate, "meter_session"):
            listener.session = Session(listener.caller, listener.tenant, "stream")
        self.listeners.add(listener)
        metered = time.monotonic()
        try:
            yield b"retry: 2000\n" + _message("hello", {"subject": listener.caller.subject,
                                                         "organization": listener.caller.organization,
                                                         "tenant": listener.tenant})
            while True:
                if time.monotonic() - metered >= METER_SECONDS:
                    self._meter(listener)
                    metered = time.monotonic()
                try:
                    await asyncio.wait_for(listener.wake.wait(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                listener.wake.clear()
                if listener.overflowed:
                    listener.overflowed = False
                    yield _message("resync", {"reason": f"more than {QUEUE_LIMIT} entities changed while this "
                                                        "page was behind"})
                    continue
                batch, counts = listener.take()
                if not batch:
                    continue
                try:
                    shown = await self.screened(listener, batch, counts)
                except Problem as problem:
                    yield _message("denied", {"detail": problem.detail})
                    continue
                if shown["entities"] or shown["deleted"]:
                    self.delivered += len(shown["entities"]) + len(shown["deleted"])
                    yield _message("entities", shown)
        finally:
            self.listeners.discard(listener)
            self._meter(listener)


def _message(kind: str, data: Any) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
