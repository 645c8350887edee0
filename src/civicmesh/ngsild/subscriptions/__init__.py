"""NGSI-LD subscriptions (/ngsi-ld/v1/subscriptions) and durable notifications, split by role.

- `api`: the HTTP endpoints and validation (CRUD over stored subscriptions);
- `matcher`: pure functions from a change event and subscriptions to the ones due (unit-tested without a server);
- `notices`: the relay subscriber that renders due notifications (screened by the gate) into queue rows;
- `delivery`: the durable queue's sender, its settling and the receivers' outage breaker;
- `book`: the stored subscriptions (cached for matching) and their term maps.

This module wires them together for one app (`build`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter

from civicmesh.access import authenticated
from civicmesh.ngsild.routes import PREFIX
from civicmesh.ngsild.sender import HttpSender
from civicmesh.ngsild.subscriptions.api import SubscriptionsApi
from civicmesh.ngsild.subscriptions.book import Book
from civicmesh.ngsild.subscriptions.delivery import Delivery
from civicmesh.ngsild.subscriptions.notices import Notices
from civicmesh.platform import Platform, Room, Subscriber

__all__ = ["Subscriptions", "build"]


class Subscriptions:
    """One app's subscriptions: the endpoints, the relay subscriber and the delivery worker, sharing one book."""

    def __init__(self, platform: Platform) -> None:
        broker = platform.broker
        self.book = Book(platform.store, platform.contexts)
        self.delivery = Delivery(platform.store, platform.relay)
        self.notices = Notices(self.book, platform.store, broker, platform.ngsi, self.delivery)
        self.delivery.periodic = self.notices.periodic_due
        self.api = SubscriptionsApi(self.book, broker, platform.settings.max_body_bytes, self.delivery.unsettled)
        self.delivery.endpoint_allow = self.api.endpoint_allow = platform.settings.endpoint_allow
        self.api.max_subscriptions = platform.settings.max_subscriptions_per_org
        self.on_events = self.notices.on_events
        self.deliver_due = self.delivery.deliver_due
        self.start, self.stop = self.delivery.start, self.delivery.stop

    @property
    def retry_base(self) -> float:
        """Seconds before the first retry of a failed notification (doubling with each attempt)."""
        return self.delivery.retry_base

    @retry_base.setter
    def retry_base(self, seconds: float) -> None:
        self.delivery.retry_base = seconds

    @property
    def _sender(self) -> HttpSender:
        return self.delivery._sender


def build(platform: Platform) -> Room:
    """Serve /subscriptions, match change events to them and deliver the notifications while the app runs."""
    subs = Subscriptions(platform)
    api = subs.api
    router = APIRouter(prefix=PREFIX, dependencies=[authenticated.depends()])  # each sees only its own
    routes: list[tuple[str, list[str], Callable[..., Any]]] = [
        ("/subscriptions", ["POST"], api.create), ("/subscriptions", ["GET"], api.list),
        ("/subscriptions/{sub_id}", ["GET"], api.retrieve), ("/subscriptions/{sub_id}", ["PATCH"], api.update),
        ("/subscriptions/{sub_id}", ["DELETE"], api.delete)]
    for path, methods, endpoint in routes:
        router.add_api_route(path, endpoint, methods=methods)
        router.add_api_route(path + "/", endpoint, methods=methods, include_in_schema=False)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        await subs.start()
        try:
            yield
        finally:
            await subs.stop()

    return Room("subscriptions", routers=[router], lifespan=lifespan, services=[subs],
                subscribers=[Subscriber("subscriptions", on_events=subs.on_events, durable=True)])
