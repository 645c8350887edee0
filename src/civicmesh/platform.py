"""The typed platform every room builds on, and the Room each room's `build(platform)` hands back to the app.

`create_app` makes the services in dependency order (settings -> store -> relay -> contexts -> exchange and its
gate -> broker -> entity sink and NGSI-LD binding), freezes them into one `Platform`, then calls each room's
`build(platform)`. A room never looks another room's service up by name: what rooms share is a field here.

A room is a module with one function, plus its name in `app.ROOMS`:

    def build(platform: Platform) -> Room:
        noise = NoiseMonitor(platform.broker, platform.contexts)

        @asynccontextmanager
        async def lifespan() -> AsyncIterator[None]:
            await noise.start()          # after the store opened and every earlier room started
            try:
                yield
            finally:
                await noise.stop()       # before the store closes; the relay has already stopped

        return Room("noise", routers=[router(noise)], lifespan=lifespan, services=[noise],
                    subscribers=[Subscriber("noise", on_events=noise.on_events, durable=True)])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from fastapi import APIRouter
    from starlette.middleware import Middleware

    from civicmesh.access import Gate
    from civicmesh.config import Settings
    from civicmesh.events import BatchHandler, Handler, OutboxRelay
    from civicmesh.exchange.service import Exchange
    from civicmesh.ngsild.broker import Broker, EntitySink
    from civicmesh.ngsild.context import ContextResolver
    from civicmesh.ngsild.routes import NgsiLd
    from civicmesh.store.db import Database
    from civicmesh.store.interface import EntityStore

T = TypeVar("T")


@dataclass(frozen=True)
class Core:
    """What exists before any access decision can be made: the exchange (which decides) is built on this."""

    settings: Settings
    db: Database  # the process's one database seam (store/db.py): every room's repository runs on it
    store: EntityStore
    relay: OutboxRelay
    contexts: ContextResolver


@dataclass(frozen=True)
class Platform(Core):
    """Everything rooms share. Built once by `create_app`, never changed afterwards (frozen)."""

    exchange: Exchange
    gate: Gate
    broker: Broker
    # How rooms publish their records as city data (the citizen desk's service requests).
    entities: EntitySink
    # The NGSI-LD binding (body parsing, presentation) that the temporal API and subscriptions reuse.
    ngsi: NgsiLd


@dataclass(frozen=True)
class Subscriber:
    """A consumer of the change-event stream: `on_events` gets each relayed run at once, `on_event` one event at a
    time. A durable subscriber resumes after a restart where it stopped; others start at the tip."""

    name: str
    on_events: BatchHandler | None = None
    on_event: Handler | None = None
    durable: bool = False

    def __post_init__(self) -> None:
        if (self.on_events is None) == (self.on_event is None):
            raise ValueError(f"subscriber {self.name}: give exactly one of on_events and on_event")


# A room's lifespan: entered after every room before it has started, left (in reverse) on shutdown.
Lifespan = Callable[[], AbstractAsyncContextManager[None]]


@dataclass(frozen=True)
class Room:
    """What one room adds to the app."""

    name: str
    routers: Sequence[APIRouter] = ()
    subscribers: Sequence[Subscriber] = ()
    lifespan: Lifespan | None = None
    # ASGI middleware wrapping every route (the exchange's identity check); added in room order.
    middleware: Sequence[Middleware] = ()
    # The room's own service objects, reachable by type (operators' tools and tests), never by name.
    services: Sequence[object] = ()


RoomBuilder = Callable[[Platform], Room]


def find_service(rooms: Iterable[Room], kind: type[T]) -> T:
    """The one service of type `kind` some room offers."""
    found = [s for room in rooms for s in room.services if isinstance(s, kind)]
    if len(found) != 1:
        raise LookupError(f"{len(found)} rooms offer a {kind.__name__}; expected exactly one")
    return found[0]
