"""Partial updates at the broker, without HTTP: what an IoT reading costs the write path.

2,000 entities of 16 attributes (one a GeoProperty); batches of 1,000 updates each touching one attribute (what
the IoT agent sends), against the same entities replaced whole (every attribute re-indexed) in the same run.
CPU time of this process (all threads; PostgreSQL's own server CPU is not counted), best of 6 rounds;
BENCH_ENGINES (default "sqlite,postgres").
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

ENTITIES = 2000


def _entity(i: int, speed: float, attrs: int = 14) -> dict[str, Any]:
    e: dict[str, Any] = {"id": f"urn:ngsi-ld:TrafficFlowObserved:b{i}", "type": "TrafficFlowObserved",
                         "location": {"type": "GeoProperty", "value": {"type": "Point",
                                                                       "coordinates": [120.1 + i / 1e5, 30.2]}}}
    for k in range(attrs):
        e[f"a{k}"] = {"type": "Property", "value": k * 1.5, "observedAt": "2026-01-01T00:00:00Z"}
    e["speed"] = {"type": "Property", "value": speed, "observedAt": "2026-01-02T00:00:00Z"}
    return e


async def _engine(url: str) -> tuple[float, float]:
    from civicmesh.access import Gate
    from civicmesh.ngsild.broker import Broker
    from civicmesh.ngsild.context import ContextResolver
    from civicmesh.ngsild.model import EntityParser
    from civicmesh.store import open_store

    store = open_store(url)
    await store.open()
    try:
        broker = Broker(store, Gate())
        parser = EntityParser(ContextResolver(None).core)
        whole = [parser.entity(_entity(i, 1)) for i in range(ENTITIES)]
        for start in range(0, ENTITIES, 1000):
            await broker.batch("", "create", whole[start:start + 1000])
        one = [parser.entity({"id": d["id"], "type": "TrafficFlowObserved", "speed": {
            "type": "Property", "value": 2, "observedAt": "2026-01-03T00:00:00Z"}}) for d in whole]

        async def best(mode: str, docs: list[dict[str, Any]], option: str) -> float:
            fastest = float("inf")
            for _ in range(6):
                t = time.process_time()
                for start in range(0, ENTITIES, 1000):
                    result = await broker.batch("", mode, docs[start:start + 1000], option=option)
                    assert not result.errors, result.errors[:1]
                fastest = min(fastest, time.process_time() - t)
            return ENTITIES / fastest

        return await best("update", one, ""), await best("upsert", whole, "replace")
    finally:
        await store.close()


def run() -> list[dict[str, Any]]:
    from bench.bench_broker import scratch_database

    rows = []
    for engine in os.environ.get("BENCH_ENGINES", "sqlite,postgres").split(","):
        with scratch_database(engine) as url:
            partial, replaced = asyncio.run(_engine(url))
        rows.append({"scenario": f"batch update, 1 of 16 attributes, {engine} (entities/s of CPU)", "value": partial,
                     "unit": "entities/s", "baseline": f"same entities replaced whole {replaced:,.0f}/s",
                     "target": "report", "met": True})
    return rows
