"""Temporal API benchmark after Stellio's scenario: 10 entities x 100,000 instances, aggregated retrieve.

History is loaded through the temporal API itself (POST /temporal/entities, then POST .../attrs with 10,000
instances per request), so the figures include the real write path. One instance per minute per entity: 100,000
instances span about 69 days. The measured request is an aggregated retrieve of one entity over one day
(`aggrMethods=avg,max,min,sum,totalCount&aggrPeriodDuration=PT1H&timerel=between`, 1,440 instances -> 24 periods)
from 10 keep-alive connections against a server in its own process (uvicorn, one worker). Beside it, in the same
run: the same aggregation as the engine's own SQL, called directly, one query after the other (History.aggregate
of the attribute, and History.aggregate_entity, the one statement a retrieve runs), and, as a heavier variant, the
whole 69-day history per day (P1D, 100,000 instances per request). Scale with BENCH_TEMPORAL_INSTANCES (default
100000) and BENCH_ENGINES (default "sqlite,postgres").
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench.bench_broker import Client, Server, _timed, p95
from bench.loadclient import RawConnection

ENTITIES = 10
CHUNK = 10_000
START = datetime(2024, 1, 1, tzinfo=UTC)
METHODS = "avg,max,min,sum,totalCount"


def entity_id(n: int) -> str:
    return f"urn:ngsi-ld:BenchSensor:{n}"


def instances(n: int, first: int, count: int) -> list[dict[str, Any]]:
    rnd = random.Random(n * 1_000_003 + first)
    return [{"type": "Property", "value": round(20 + 10 * rnd.random(), 3),
             "observedAt": (START + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")}
            for i in range(first, first + count)]


async def _load(port: int, per_entity: int) -> float:
    """Load the history through the temporal API; returns instances per second."""
    conn = RawConnection("127.0.0.1", port)
    headers = {"Content-Type": "application/json"}
    loaded = 0
    t0 = time.perf_counter()
    try:
        for n in range(ENTITIES):
            for first in range(0, per_entity, CHUNK):
                chunk = instances(n, first, min(CHUNK, per_entity - first))
                if first == 0:
                    status, body = await conn.request("POST", "/ngsi-ld/v1/temporal/entities", orjson.dumps(
                        {"id": entity_id(n), "type": "BenchSensor", "temperature": chunk}), headers)
                    expected = 201
                else:
                    status, body = await conn.request(
                        "POST", f"/ngsi-ld/v1/temporal/entities/{entity_id(n)}/attrs",
                        orjson.dumps({"temperature": chunk}), headers)
                    expected = 204
                if status != expected:
                    raise RuntimeError(f"temporal load failed: {status} {body[:300]!r}")
                loaded += len(chunk)
    finally:
        await conn.close()
    return loaded / (time.perf_counter() - t0)


def _day_window(rnd: random.Random, days: int) -> tuple[str, str]:
    day = START + timedelta(days=rnd.randrange(max(days - 1, 1)))
    return (day.strftime("%Y-%m-%dT%H:%M:%SZ"), (day + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))


async def _sql_baseline(database_url: str, days: int, n: int) -> dict[str, tuple[float, list[float]]]:
    """The same per-hour aggregation as the engine's SQL, without HTTP, rendering or the gate, one query after the
    other: `History.aggregate` of the one attribute, and `History.aggregate_entity`, the statement a retrieve
    runs (the entity, its attributes and their aggregation in one)."""
    from civicmesh.ngsild.temporal import _canonical
    from civicmesh.store import open_store
    from civicmesh.store.history import History

    store = open_store(database_url)
    await store.open()
    try:
        history = History(store)
        iri = "https://uri.etsi.org/ngsi-ld/default-context/temperature"
        results: dict[str, tuple[float, list[float]]] = {}
        for name in ("aggregate", "aggregate_entity"):
            rnd = random.Random(7)
            latencies = []
            t0 = time.perf_counter()
            for i in range(n):
                lower, upper = (_canonical(t) for t in _day_window(rnd, days))
                origin = datetime.fromisoformat(lower.replace("Z", "+00:00")).timestamp()
                s = time.perf_counter()
                if name == "aggregate":
                    found = await history.aggregate("", entity_id(i % ENTITIES), [iri], "observedAt", lower, upper,
                                                    origin, 3600.0, distinct=False)
                else:
                    answer = await history.aggregate_entity("", entity_id(i % ENTITIES), None, "observedAt", lower,
                                                            upper, origin, 3600.0, distinct=False)
                    found = answer[2] if answer else []
                latencies.append(time.perf_counter() - s)
                if len(found) != 24:
                    raise RuntimeError(f"the SQL baseline found {len(found)} periods, not 24")
            results[name] = (n / (time.perf_counter() - t0), latencies)
        return results
    finally:
        await store.close()


async def _engine(engine: str, database_url: str, per_entity: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    days = per_entity // 1440
    server = Server(database_url)
    try:
        load_rate = await _load(server.port, per_entity)
        client = Client(server.port)
        rnd = random.Random(42)

        def day_request(i: int) -> tuple[str, str, dict[str, Any], int]:
            lower, upper = _day_window(rnd, days)
            return ("GET", f"/temporal/entities/{entity_id(i % ENTITIES)}", {"params": {
                "options": "aggregatedValues", "aggrMethods": METHODS, "aggrPeriodDuration": "PT1H",
                "timerel": "between", "timeAt": lower, "endTimeAt": upper}}, 200)

        await _timed(client, 50, day_request)  # warm-up: connections, caches
        n = 2000
        elapsed, lat = await _timed(client, n, day_request)
        sql = await _sql_baseline(database_url, days, 400)
        (sql_rate, sql_lat), (one_rate, one_lat) = sql["aggregate"], sql["aggregate_entity"]
        rps = n / elapsed
        rows.append(dict(
            scenario=f"{engine}: aggregated retrieve, 1 day per PT1H, {ENTITIES} x {per_entity:,} instances",
            value=rps, unit="req/s",
            baseline=f"p95 {p95(lat):.1f} ms; raw SQL aggregation {sql_rate:,.0f} q/s (p95 {p95(sql_lat):.1f} ms), "
                     f"the retrieve's one statement {one_rate:,.0f} q/s (p95 {p95(one_lat):.1f} ms); "
                     f"loaded via temporal API at {load_rate:,.0f} instances/s",
            target=">= 200 req/s, p95 <= 100 ms", met=rps >= 200 and p95(lat) <= 100))

        def whole_request(i: int) -> tuple[str, str, dict[str, Any], int]:
            return ("GET", f"/temporal/entities/{entity_id(i % ENTITIES)}", {"params": {
                "options": "aggregatedValues", "aggrMethods": METHODS, "aggrPeriodDuration": "P1D"}}, 200)

        n = 100
        elapsed, lat = await _timed(client, n, whole_request)
        rows.append(dict(
            scenario=f"{engine}: aggregated retrieve, whole history per P1D ({per_entity:,} instances/request)",
            value=n / elapsed, unit="req/s", baseline=f"p95 {p95(lat):.1f} ms", target="(no target; heavier variant)",
            met=True))
    finally:
        server.stop()
    return rows


def run() -> list[dict[str, Any]]:
    per_entity = int(os.environ.get("BENCH_TEMPORAL_INSTANCES", "100000"))
    if per_entity < 2 * 1440:
        raise SystemExit("BENCH_TEMPORAL_INSTANCES must cover at least two days (2,880 instances)")
    engines = os.environ.get("BENCH_ENGINES", "sqlite,postgres").split(",")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for engine in engines:
            if engine == "sqlite":
                url = f"sqlite:///{Path(tmp) / 'bench-temporal.db'}"
                rows.extend(asyncio.run(_engine(engine, url, per_entity)))
            else:
                import psycopg

                name = f"civicmesh_bench_{uuid.uuid4().hex[:8]}"
                admin = "postgresql://root@127.0.0.1:5432/postgres"
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{name}"')
                try:
                    rows.extend(asyncio.run(_engine(engine, f"postgresql://root@127.0.0.1:5432/{name}", per_entity)))
                finally:
                    with psycopg.connect(admin, autocommit=True) as conn:
                        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return rows
