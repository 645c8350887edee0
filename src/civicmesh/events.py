"""The change-event stream.

Every write stores its change event in an outbox row inside the same transaction as the data (see `store/`).
The relay reads the outbox in order and hands each event to the subscribers. A durable subscriber's position is
kept in the store after it has handled an event, so a crash between the write and the delivery loses nothing:
on start the relay replays from each durable subscriber's last position. The transport is in-process; a NATS
JetStream relay can replace `OutboxRelay` without the subscribers noticing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from civicmesh.workers import Worker

log = logging.getLogger("civicmesh.events")

ENTITY_CREATED = "entity.created"
ENTITY_UPDATED = "entity.updated"
ENTITY_DELETED = "entity.deleted"


@dataclass(frozen=True)
class ChangeEvent:
    """One change, as written to the outbox.

    `data` holds, for entity events, `before` and `after` (expanded internal entity documents, None where the
    entity did not / no longer exist) and `attributes`: the expanded names of the attributes the write touched.
    Other rooms use their own `kind` namespaces (`exchange.*`, `citizen.*`) with their own `data`.
    """

    seq: int
    tenant: str
    kind: str
    subject: str
    at: str
    data: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[ChangeEvent], Awaitable[None]]
BatchHandler = Callable[[list[ChangeEvent]], Awaitable[None]]


class OutboxReader(Protocol):
    async def read_outbox(self, after_seq: int, limit: int) -> list[ChangeEvent]: ...
    async def get_cursor(self, name: str) -> int | None: ...
    async def set_cursor(self, name: str, seq: int) -> None: ...
    async def last_outbox_seq(self) -> int: ...


@dataclass
class _Subscriber:
    name: str
    handler: Handler | None
    durable: bool
    position: int = 0
    batch_handler: BatchHandler | None = None


class OutboxRelay:
    """Moves events from the outbox to subscribers, in order, at least once for durable subscribers."""

    def __init__(self, store: OutboxReader, *, batch: int = 500, idle_poll: float = 0.5) -> None:
        self._store = store
        self._subscribers: list[_Subscriber] = []
        self._wake = asyncio.Event()
        self._batch = batch
        self._idle_poll = idle_poll
        self._worker: Worker | None = None
        self._delivered = asyncio.Condition()
        self.position = 0
        self.owner = False
        self._standby_poll = 2.0

    def subscribe(self, name: str, handler: Handler, *, durable: bool = False) -> None:
        """Register before `start()`. A durable subscriber resumes where it stopped; others start at the tip."""
        if self._worker is not None:
            raise RuntimeError("subscribe before the relay starts")
        self._subscribers.append(_Subscriber(name, handler, durable))

    def subscribe_batch(self, name: str, handler: BatchHandler, *, durable: bool = False) -> None:
        """Like `subscribe`, but the handler gets each relayed run of events at once, so it can store what they
        cause in one transaction. A durable batch handler that fails gets the whole run again."""
        if self._worker is not None:
            raise RuntimeError("subscribe before the relay starts")
        self._subscribers.append(_Subscriber(name, None, durable, batch_handler=handler))

    def notify(self) -> None:
        """Called by the store after a commit: there is something new to relay."""
        self._wake.set()

    async def start(self) -> None:
        """Relay from here if this process owns the database's relay; otherwise stand by and take over when the
        owner goes away, so several workers on one database never run a durable subscriber twice."""
        acquire = getattr(self._store, "acquire_relay_lock", None)
        if acquire is None or await acquire():
            await self._take_over()
            self._worker = Worker("outbox-relay", self._run)
        else:
            self._worker = Worker("outbox-relay-standby", lambda: self._stand_by(acquire))
        self._worker.start()

    async def _stand_by(self, acquire: Callable[[], Awaitable[bool]]) -> None:
        while not await acquire():
            await asyncio.sleep(self._standby_poll)
        await self._take_over()
        await self._run()

    async def _take_over(self) -> None:
        tip = await self._store.last_outbox_seq()
        for sub in self._subscribers:
            saved = await self._store.get_cursor(sub.name) if sub.durable else None
            sub.position = saved if saved is not None else tip
            if sub.durable and saved is None:
                # A new durable subscriber starts at the tip, and says so now: otherwise events committed before
                # its first delivery were skipped by the next process (it would start at the tip again).
                await self._store.set_cursor(sub.name, tip)
        async with self._delivered:
            self.position = min([s.position for s in self._subscribers], default=tip)
            self.owner = True
            self._delivered.notify_all()

    async def stop(self) -> None:
        if self._worker is not None:
            await self._worker.stop()
            self._worker = None

    async def wait_until(self, seq: int, timeout: float = 10.0) -> None:
        """Wait until every subscriber has seen `seq` (tests and read-your-writes consumers use this)."""
        async def _wait() -> None:
            async with self._delivered:
                await self._delivered.wait_for(lambda: self.position >= seq)
        await asyncio.wait_for(_wait(), timeout)

    async def _run(self) -> None:
        while True:
            try:
                moved = await self._pump()
            except asyncio.CancelledError:
                raise
            except Exception:  # a broken store read must not kill the relay; retry after a pause
                log.exception("outbox relay failed; retrying")
                moved = False
            if not moved:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self._idle_poll)
                except TimeoutError:
                    pass

    async def _feed(self, sub: _Subscriber, events: list[ChangeEvent]) -> None:
        pending = [e for e in events if e.seq > sub.position]
        if sub.batch_handler is not None:
            if pending:
                try:
                    await sub.batch_handler(pending)
                    sub.position = pending[-1].seq
                except Exception:
                    log.exception("subscriber %s failed on events %s-%s", sub.name, pending[0].seq,
                                  pending[-1].seq)
                    if not sub.durable:
                        sub.position = pending[-1].seq
                if sub.durable and sub.position >= pending[0].seq:
                    await self._store.set_cursor(sub.name, sub.position)
            return
        for event in pending:
            try:
                assert sub.handler is not None
                await sub.handler(event)
            except Exception:
                log.exception("subscriber %s failed on event %s", sub.name, event.seq)
                if sub.durable:
                    # Stop this subscriber here; it gets the same event again on the next pump.
                    break
            sub.position = event.seq
        if sub.durable and pending:
            await self._store.set_cursor(sub.name, sub.position)

    async def _pump(self) -> bool:
        events = await self._store.read_outbox(self.position, self._batch)
        if not events:
            return False
        # Subscribers are independent (each has its own cursor), so one that commits per event (history) does
        # not hold back the others; each still sees its events in order.
        await asyncio.gather(*(self._feed(sub, events) for sub in self._subscribers))
        new_position = min([s.position for s in self._subscribers], default=events[-1].seq)
        async with self._delivered:
            self.position = new_position
            self._delivered.notify_all()
        # A full batch means more may be waiting; a failed durable subscriber waits for the next poll.
        return len(events) == self._batch and new_position == events[-1].seq
