"""The outbox relay: every write's event reaches durable subscribers once they run, across restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from civicmesh.access import Gate
from civicmesh.events import ChangeEvent, OutboxRelay
from civicmesh.ngsild.broker import Broker
from civicmesh.ngsild.context import ContextResolver
from civicmesh.ngsild.model import EntityParser
from civicmesh.store import open_store


def entity(n: int) -> dict:
    return {"id": f"urn:ngsi-ld:Sensor:{n}", "type": "Sensor", "level": {"type": "Property", "value": n}}


async def _run(url: str) -> None:
    store = open_store(url)
    await store.open()
    broker = Broker(store, Gate())
    parse = EntityParser(ContextResolver().core).entity
    seen: list[ChangeEvent] = []

    async def record(event: ChangeEvent) -> None:
        seen.append(event)

    relay = OutboxRelay(store, idle_poll=0.05)
    store.add_listener(relay.notify)
    relay.subscribe("recorder", record, durable=True)
    await relay.start()
    await broker.create("", parse(entity(1)))
    await broker.merge("", "urn:ngsi-ld:Sensor:1", {"type": [], "attrs": parse(entity(1) | {
        "level": {"type": "Property", "value": 5}})["attrs"]})
    await relay.wait_until(await store.last_outbox_seq())
    assert [e.kind for e in seen] == ["entity.created", "entity.updated"]
    assert seen[1].data["before"]["attrs"] != seen[1].data["after"]["attrs"]
    await relay.stop()

    # Written while nobody relays: delivered after the next start, and nothing twice.
    await broker.create("", parse(entity(2)))
    await broker.delete("", "urn:ngsi-ld:Sensor:1")
    seen.clear()
    relay = OutboxRelay(store, idle_poll=0.05)
    store.add_listener(relay.notify)
    relay.subscribe("recorder", record, durable=True)
    await relay.start()
    await relay.wait_until(await store.last_outbox_seq())
    assert [(e.kind, e.subject) for e in seen] == [("entity.created", "urn:ngsi-ld:Sensor:2"),
                                                   ("entity.deleted", "urn:ngsi-ld:Sensor:1")]
    await relay.stop()
    await store.close()


async def _failing_subscriber_is_retried(url: str) -> None:
    store = open_store(url)
    await store.open()
    broker = Broker(store, Gate())
    parse = EntityParser(ContextResolver().core).entity
    attempts: list[int] = []

    async def flaky(event: ChangeEvent) -> None:
        attempts.append(event.seq)
        if len(attempts) < 3:
            raise RuntimeError("receiver down")

    relay = OutboxRelay(store, idle_poll=0.05)
    store.add_listener(relay.notify)
    relay.subscribe("flaky", flaky, durable=True)
    await relay.start()
    await broker.create("", parse(entity(7)))
    await relay.wait_until(await store.last_outbox_seq())
    assert len(attempts) == 3 and len(set(attempts)) == 1  # the same event until it was handled
    await relay.stop()
    await store.close()


def test_durable_subscribers_resume_after_a_restart(database_url: str, tmp_path: Path) -> None:
    if database_url.startswith("sqlite"):
        database_url = f"sqlite:///{tmp_path / 'events.db'}"
    else:
        from tests.conftest import drop_postgres, fresh_postgres_url
        database_url = fresh_postgres_url("civicmesh_events")
    try:
        asyncio.run(_run(database_url))
        asyncio.run(_failing_subscriber_is_retried(database_url))
    finally:
        if database_url.startswith("postgresql"):
            drop_postgres(database_url)


@pytest.mark.parametrize("n", [0])
def test_relay_with_no_subscribers_follows_the_outbox(tmp_path: Path, n: int) -> None:
    async def run() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'empty.db'}")
        await store.open()
        relay = OutboxRelay(store, idle_poll=0.05)
        store.add_listener(relay.notify)
        await relay.start()
        await Broker(store, Gate()).create("", EntityParser(ContextResolver().core).entity(entity(n)))
        await relay.wait_until(await store.last_outbox_seq())
        await relay.stop()
        await store.close()

    asyncio.run(run())


async def _one_relay_per_database(url: str) -> None:
    parse = EntityParser(ContextResolver().core).entity
    stores = [open_store(url), open_store(url)]
    for store in stores:
        await store.open()
    seen: dict[int, list[int]] = {0: [], 1: []}
    relays = []
    for i, store in enumerate(stores):
        relay = OutboxRelay(store, idle_poll=0.05)
        relay._standby_poll = 0.1
        store.add_listener(relay.notify)

        async def record(event: ChangeEvent, i: int = i) -> None:
            seen[i].append(event.seq)

        relay.subscribe("history", record, durable=True)
        await relay.start()
        relays.append(relay)
    await asyncio.sleep(0.3)
    assert [r.owner for r in relays] == [True, False]
    await Broker(stores[1], Gate()).create("", parse(entity(1)))  # written by the standby worker
    await relays[0].wait_until(await stores[0].last_outbox_seq())
    assert len(seen[0]) == 1 and seen[1] == []
    await relays[0].stop()
    await stores[0].close()  # the owner goes away: the standby takes over where it stopped
    await Broker(stores[1], Gate()).create("", parse(entity(2)))
    await asyncio.wait_for(_until(lambda: relays[1].owner), 5)
    await relays[1].wait_until(await stores[1].last_outbox_seq())
    assert len(seen[1]) == 1 and len(seen[0]) == 1
    await relays[1].stop()
    await stores[1].close()


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.05)


def test_only_one_worker_relays_a_database(database_url: str, tmp_path: Path) -> None:
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'workers.db'}"
    else:
        from tests.conftest import drop_postgres, fresh_postgres_url
        url = fresh_postgres_url("civicmesh_workers")
    try:
        asyncio.run(_one_relay_per_database(url))
    finally:
        if url.startswith("postgresql"):
            drop_postgres(url)
