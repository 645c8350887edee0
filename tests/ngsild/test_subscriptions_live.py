"""Subscriptions and notifications over real HTTP, to a real HTTP receiver, on both engines."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.conftest import LiveServer, free_port, start_server
from tests.helpers import problem

from civicmesh.app import service
from civicmesh.ngsild.subscriptions import Subscriptions


class Receiver:
    """A notification endpoint: a real HTTP server on a loopback port that records what it gets."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/notify"
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []

        async def notify(request: Request) -> Response:
            self.received.append((dict(request.headers), orjson.loads(await request.body())))
            return Response(status_code=204)

        config = uvicorn.Config(Starlette(routes=[Route("/notify", notify, methods=["POST"])]), host="127.0.0.1",
                                port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> Receiver:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def wait(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return [body for _, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def subscription(url: str, **extra: Any) -> dict[str, Any]:
    body = {"id": f"urn:ngsi-ld:Subscription:{uuid.uuid4().hex[:8]}", "type": "Subscription",
            "entities": [{"type": "Vehicle"}], "watchedAttributes": ["speed"],
            "notification": {"endpoint": {"uri": url, "accept": "application/json"}, "format": "keyValues"}}
    body.update(extra)
    return body


def vehicle(speed: int, **extra: Any) -> dict[str, Any]:
    return {"id": "urn:ngsi-ld:Vehicle:V1", "type": "Vehicle", "speed": {"type": "Property", "value": speed},
            "colour": {"type": "Property", "value": "red"}, **extra}


def test_notifications_follow_watched_attributes(client: httpx.Client, receiver: Receiver, tenant: str) -> None:
    sub = subscription(receiver.url)
    assert client.post("/subscriptions", json=sub).status_code == 201
    assert client.post("/entities", json=vehicle(50)).status_code == 201
    first = receiver.wait(1)
    assert first[0]["type"] == "Notification" and first[0]["subscriptionId"] == sub["id"]
    assert first[0]["data"] == [{"id": "urn:ngsi-ld:Vehicle:V1", "type": "Vehicle", "speed": 50, "colour": "red"}]
    headers = receiver.received[0][0]
    assert headers["ngsild-tenant"] == tenant and "json-ld#context" in headers["link"]
    client.patch("/entities/urn:ngsi-ld:Vehicle:V1/attrs/colour", json={"value": "blue"})  # not watched
    client.patch("/entities/urn:ngsi-ld:Vehicle:V1/attrs/speed", json={"value": 70})
    bodies = receiver.wait(2)
    assert len(bodies) == 2 and bodies[1]["data"][0]["speed"] == 70
    time.sleep(0.5)
    assert len(receiver.received) == 2
    status = client.get(f"/subscriptions/{sub['id']}").json()
    assert status["status"] == "active"
    assert status["notification"]["timesSent"] == 2 and status["notification"]["status"] == "ok"
    assert "lastSuccess" in status["notification"]


def test_q_filter_and_attribute_selection(client: httpx.Client, receiver: Receiver) -> None:
    sub = subscription(receiver.url, q="speed>100")
    sub["notification"]["attributes"] = ["speed"]
    sub["notification"]["format"] = "normalized"
    client.post("/subscriptions", json=sub)
    client.post("/entities", json=vehicle(50))
    client.patch("/entities/urn:ngsi-ld:Vehicle:V1/attrs/speed", json={"value": 120})
    bodies = receiver.wait(1)
    time.sleep(0.4)
    assert len(receiver.received) == 1
    assert bodies[0]["data"][0] == {"id": "urn:ngsi-ld:Vehicle:V1", "type": "Vehicle",
                                    "speed": {"type": "Property", "value": 120}}


def test_entity_deletion_is_notified_when_asked(client: httpx.Client, receiver: Receiver) -> None:
    sub = subscription(receiver.url, notificationTrigger=["entityDeleted"])
    del sub["watchedAttributes"]
    client.post("/subscriptions", json=sub)
    client.post("/entities", json=vehicle(1))
    client.delete("/entities/urn:ngsi-ld:Vehicle:V1")
    bodies = receiver.wait(1)
    assert bodies[0]["data"][0]["id"] == "urn:ngsi-ld:Vehicle:V1" and "deletedAt" in bodies[0]["data"][0]


def test_subscription_crud_and_errors(client: httpx.Client, receiver: Receiver) -> None:
    sub = subscription(receiver.url)
    assert client.post("/subscriptions/", json=sub).status_code == 201
    problem(client.post("/subscriptions", json=sub), 409, "AlreadyExists")
    assert [s["id"] for s in client.get("/subscriptions").json()] == [sub["id"]]
    r = client.patch(f"/subscriptions/{sub['id']}", json={"isActive": False},
                     headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 204
    assert client.get(f"/subscriptions/{sub['id']}").json()["status"] == "paused"
    client.post("/entities", json=vehicle(5))
    time.sleep(0.6)
    assert receiver.received == []  # paused: nothing sent
    assert client.delete(f"/subscriptions/{sub['id']}").status_code == 204
    problem(client.get(f"/subscriptions/{sub['id']}"), 404, "ResourceNotFound")
    for bad in ({**sub, "notification": {"endpoint": {"uri": "ftp://x"}}}, {**sub, "q": "speed>"},
                {**sub, "entities": []}, {**sub, "type": "Nope"}, {**sub, "throttling": -1}):
        problem(client.post("/subscriptions", json=bad), 400, "BadRequestData")
    problem(client.post("/subscriptions", json=sub, headers={"Content-Type": "application/xml"}), 415,
            "UnsupportedMediaType")
    problem(client.get(f"/subscriptions/{sub['id']}", headers={"Accept": "application/geo+json"}), 406,
            "NotAcceptable")
    problem(client.get("/subscriptions", params={"colour": "red"}), 400, "InvalidRequest")


@pytest.mark.live  # starts its own server
def test_a_receiver_outage_and_a_broker_restart_lose_nothing(private_database: str) -> None:
    url = private_database
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/notify"
    broker: LiveServer = start_server(url)
    try:
        service(broker.app, Subscriptions).retry_base = 0.2
        api = httpx.Client(base_url=broker.url + "/ngsi-ld/v1", timeout=30)
        api.post("/subscriptions", json=subscription(endpoint))
        for speed in range(5):  # the receiver is down: these must wait, not vanish
            api.post("/entityOperations/upsert", json=[vehicle(speed)], params={"options": "update"})
        time.sleep(1.0)
    finally:
        broker.stop()
    receiver = Receiver(port).start()
    restarted = start_server(url)
    try:
        service(restarted.app, Subscriptions).retry_base = 0.2
        bodies = receiver.wait(5, timeout=30)
        speeds = [b["data"][0]["speed"] for b in bodies]
        assert sorted(speeds) == [0, 1, 2, 3, 4]
    finally:
        restarted.stop()
        receiver.stop()


def test_time_interval_subscriptions_notify_periodically(client: httpx.Client, receiver: Receiver) -> None:
    client.post("/entities", json=vehicle(42))
    sub = subscription(receiver.url, timeInterval=1)
    del sub["watchedAttributes"]
    assert client.post("/subscriptions", json=sub).status_code == 201
    bodies = receiver.wait(2, timeout=15)
    assert len(bodies) >= 2  # nothing changed, yet it is told every interval
    assert all(b["data"][0]["speed"] == 42 for b in bodies[:2])


@pytest.mark.live  # starts its own server
def test_a_hanging_receiver_does_not_hold_back_other_subscribers(private_database: str) -> None:
    """A webhook that accepts connections and never answers costs its own notifications a timeout; everybody
    else's keep arriving promptly, and the hanging receiver's notifications stay queued (not dropped)."""
    import socket

    url = private_database
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(1024)  # the kernel completes the handshakes; nobody ever reads or answers
    healthy = Receiver().start()
    broker = start_server(url)
    try:
        subs = service(broker.app, Subscriptions)
        subs._sender.timeout = 2.0
        api = httpx.Client(base_url=broker.url + "/ngsi-ld/v1", timeout=30)
        stuck = subscription(f"http://127.0.0.1:{hanging.getsockname()[1]}/notify")
        assert api.post("/subscriptions", json=stuck).status_code == 201
        assert api.post("/subscriptions", json=subscription(healthy.url)).status_code == 201
        fleet = [{**vehicle(n), "id": f"urn:ngsi-ld:Vehicle:F{n}"} for n in range(300)]
        assert api.post("/entityOperations/upsert", json=fleet).status_code == 201
        assert len(healthy.wait(300, timeout=30)) == 300
        # Before the outage breaker a delivery round sent all of the hanging receiver's 300 notifications, 32 at a
        # time, each waiting for its timeout: ten rounds of timeouts (20 s here, 100 s with the default 10 s)
        # before anyone else's next notification went out.
        time.sleep(0.5)
        started = time.monotonic()
        api.patch("/entities/urn:ngsi-ld:Vehicle:F7/attrs/speed", json={"value": 1000})
        deadline = started + 10
        while time.monotonic() < deadline and not any(b["data"][0]["speed"] == 1000 for _, b in healthy.received):
            time.sleep(0.02)
        waited = time.monotonic() - started
        assert waited < 2 * subs._sender.timeout + 1, f"the healthy receiver waited {waited:.1f} s"
        status = api.get(f"/subscriptions/{stuck['id']}").json()["notification"]
        # It was tried by one round's worth of concurrent senders (32) and probes since, not 300 times.
        assert status["status"] == "failed" and status["timesFailed"] == status["timesSent"] <= 40
        assert _queued_for(url, stuck["id"]) == 301  # all of the stuck subscription's notifications are kept
    finally:
        broker.stop()
        healthy.stop()
        hanging.close()


def _queued_for(database_url: str, subscription_id: str) -> int:
    import asyncio

    from civicmesh.store import open_store

    async def count() -> int:
        store = open_store(database_url)
        await store.open()
        try:
            rows = await store.fetch_rows("SELECT count(*) FROM notification_queue WHERE subscription = ?",
                                          [subscription_id])
            return int(rows[0][0])
        finally:
            await store.close()

    return asyncio.run(count())


@pytest.mark.live  # starts its own server
def test_delivery_status_is_visible_as_soon_as_the_receiver_has_the_notification(private_database: str) -> None:
    """A client told of a notification may read the subscription at once (the ETSI suite's 046_12 does, within
    ms): the status shows the delivery even while the queue's settling transaction is still on its way."""
    receiver = Receiver().start()
    broker = start_server(private_database)
    try:
        store = broker.app.state.platform.store
        settle = store.settle_notifications

        async def slow_settle(*args: Any, **kwargs: Any) -> None:  # a database slow to commit the settling
            await asyncio.sleep(1.5)
            await settle(*args, **kwargs)

        store.settle_notifications = slow_settle
        api = httpx.Client(base_url=broker.url + "/ngsi-ld/v1", timeout=30)
        sub = subscription(receiver.url)
        assert api.post("/subscriptions", json=sub).status_code == 201
        assert api.post("/entities", json=vehicle(3)).status_code == 201
        assert len(receiver.wait(1)) == 1
        for read in (api.get(f"/subscriptions/{sub['id']}").json(), api.get("/subscriptions").json()[0]):
            status = read["notification"]
            assert status["status"] == "ok" and status["timesSent"] == 1
            assert "lastNotification" in status and "lastSuccess" in status
        time.sleep(2.0)  # settled: the stored status says the same, once
        status = api.get(f"/subscriptions/{sub['id']}").json()["notification"]
        assert status["status"] == "ok" and status["timesSent"] == 1
    finally:
        broker.stop()
        receiver.stop()
