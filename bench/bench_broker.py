"""NGSI-LD broker benchmarks after Stellio's published scenarios, on both engines, over real HTTP.

The server runs in its own process (uvicorn, one worker); the load comes from this process with 10 concurrent
HTTP/1.1 connections. Each figure is printed beside a raw baseline measured in the same run on the same engine.
Scale with BENCH_ENTITIES (default 100000) and BENCH_ENGINES (default "sqlite,postgres").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from bench.loadclient import RawConnection

N_TYPES = 10
CLIENTS = 10
CENTRE = (120.21, 30.21)


def template(i: int, type_name: str = "") -> dict[str, Any]:
    """Stellio's template entity: 6 properties (some multi-instance), 1 relationship, 1 GeoProperty."""
    rnd = random.Random(i)
    return {
        "id": f"urn:ngsi-ld:BenchEntity:{i}",
        "type": type_name or f"BenchType{i % N_TYPES}",
        "p1": {"type": "Property", "value": rnd.randint(0, 100)},
        "p2": {"type": "Property", "value": f"v{rnd.randint(0, 4)}"},
        "p3": {"type": "Property", "value": rnd.random() * 50, "unitCode": "CEL",
               "observedAt": "2024-06-01T10:00:00Z"},
        "p4": [{"type": "Property", "value": rnd.randint(0, 10)},
               {"type": "Property", "value": rnd.randint(0, 10), "datasetId": "urn:ngsi-ld:Dataset:b"}],
        "p5": {"type": "Property", "value": {"a": rnd.randint(0, 9), "b": "text"}},
        "p6": {"type": "Property", "value": rnd.choice([True, False])},
        "r1": {"type": "Relationship", "object": f"urn:ngsi-ld:Target:{i % 100}"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [
            round(CENTRE[0] + rnd.uniform(-0.1, 0.1), 6), round(CENTRE[1] + rnd.uniform(-0.1, 0.1), 6)]}},
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, database_url: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/ngsi-ld/v1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "civicmesh.cli", "serve", "--port", str(self.port), "--database", database_url,
             "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, "CIVICMESH_MAX_BODY_BYTES": str(64 * 1024 * 1024)})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("benchmark server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def _timed(client: Client, n: int, make: Any) -> tuple[float, list[float]]:
    """Send n requests from CLIENTS concurrent keep-alive connections; return (elapsed s, latencies s)."""
    queue = iter(range(n))
    latencies: list[float] = []

    async def worker() -> None:
        conn = RawConnection("127.0.0.1", client.port)
        try:
            for i in queue:
                method, path, kwargs, expected = make(i)
                target = client.prefix + path
                if kwargs.get("params"):
                    target += "?" + urlencode(kwargs["params"])
                t0 = time.perf_counter()
                status, body = await conn.request(method, target, kwargs.get("content", b""),
                                                  kwargs.get("headers"))
                latencies.append(time.perf_counter() - t0)
                if status != expected:
                    raise RuntimeError(f"{method} {path}: {status} {body[:200]!r}")
        finally:
            await conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    return time.perf_counter() - start, latencies


class Client:
    """Where the benchmark server listens."""

    def __init__(self, port: int, prefix: str = "/ngsi-ld/v1") -> None:
        self.port = port
        self.prefix = prefix


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] * 1000


async def _raw_rates(database_url: str) -> tuple[float, float]:
    """Raw inserts of the same documents into the same engine: one row per commit, and 1,000 per commit."""
    from civicmesh.store import open_store

    store = open_store(database_url)
    await store.open()
    try:
        docs = [(f"urn:raw:{uuid.uuid4().hex}", orjson.dumps(template(i))) for i in range(2000)]
        t0 = time.perf_counter()
        for row in docs[:1000]:
            await store.raw_insert("raw", [row])
        single = 1000 / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        await store.raw_insert("raw", docs[1000:])
        batch = 1000 / (time.perf_counter() - t0)
        return single, batch
    finally:
        await store.close()


async def _engine(engine: str, database_url: str, total: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    raw_single, raw_batch = await _raw_rates(database_url)
    server = Server(database_url)
    try:
        client = Client(server.port)
        upload = RawConnection("127.0.0.1", server.port)
        try:
            # 1. single-entity creates, 10 concurrent clients
            n_creates = min(3000, total)
            elapsed, lat = await _timed(client, n_creates, lambda i: (
                "POST", "/entities", {"content": orjson.dumps(template(10_000_000 + i, "CreateBench")),
                                      "headers": {"Content-Type": "application/json"}}, 201))
            rate = n_creates / elapsed
            rows.append(dict(scenario=f"{engine}: single creates, 10 clients", value=rate, unit="creates/s",
                             baseline=f"raw 1-row commits {raw_single:,.0f}/s; p95 {p95(lat):.1f} ms",
                             target=">= 1,500/s", met=rate >= 1500))
            # 2. batch upsert 1,000 per request, up to `total`, with query checkpoints
            loaded = 0
            upsert_time = 0.0
            for checkpoint in [c for c in (1_000, 10_000, 100_000) if c <= total] or [total]:
                while loaded < checkpoint:
                    batch = [template(i) for i in range(loaded, min(loaded + 1000, checkpoint))]
                    body = orjson.dumps(batch)
                    t0 = time.perf_counter()
                    status, answer = await upload.request("POST", "/ngsi-ld/v1/entityOperations/upsert", body,
                                                          {"Content-Type": "application/json"})
                    upsert_time += time.perf_counter() - t0
                    if status not in (201, 204):
                        raise RuntimeError(f"upsert failed: {status} {answer[:300]!r}")
                    loaded += len(batch)
                rows.extend(await _queries(client, engine, checkpoint))
            rate = loaded / upsert_time
            target = 20_000 if engine == "sqlite" else 10_000
            rows.insert(1, dict(scenario=f"{engine}: batch upsert, 1,000/request", value=rate, unit="entities/s",
                                baseline=f"raw 1,000-row insert {raw_batch:,.0f} rows/s ({rate / raw_batch:.0%})",
                                target=f">= {target:,}/s and >= 25% of raw",
                                met=rate >= target and rate >= raw_batch / 4))
        finally:
            await upload.close()
    finally:
        server.stop()
    return rows


async def _queries(client: Client, engine: str, size: int) -> list[dict[str, Any]]:
    rows = []
    rnd = random.Random(size)
    n = 400
    elapsed, lat = await _timed(client, n, lambda i: (
        "GET", "/entities", {"params": {"type": f"BenchType{i % N_TYPES}",
                                        "q": f'p1>{rnd.randint(20, 80)};p2=="v{i % 5}"'}}, 200))
    rps = n / elapsed
    rows.append(dict(scenario=f"{engine}: type+q query at {size:,}", value=rps, unit="req/s",
                     baseline=f"p95 {p95(lat):.1f} ms", target="p95 <= 50 ms, >= 300 req/s at 100k",
                     met=p95(lat) <= 50 and (rps >= 300 or size < 100_000)))
    if size >= 100_000 or size == max(size, 1):
        elapsed, lat = await _timed(client, n, lambda i: (
            "GET", "/entities", {"params": {"type": f"BenchType{i % N_TYPES}", "georel": "near;maxDistance==1000",
                                            "geometry": "Point", "coordinates":
                                            f"[{CENTRE[0] + rnd.uniform(-0.08, 0.08):.5f},"
                                            f"{CENTRE[1] + rnd.uniform(-0.08, 0.08):.5f}]"}}, 200))
        rows.append(dict(scenario=f"{engine}: near;maxDistance at {size:,}", value=p95(lat), unit="ms p95",
                         baseline=f"{n / elapsed:,.0f} req/s", target="p95 <= 50 ms", met=p95(lat) <= 50))
        elapsed, lat = await _timed(client, n, lambda i: (
            "GET", f"/entities/urn:ngsi-ld:BenchEntity:{rnd.randrange(size)}", {}, 200))
        rows.append(dict(scenario=f"{engine}: retrieve by id at {size:,}", value=p95(lat), unit="ms p95",
                         baseline=f"{n / elapsed:,.0f} req/s", target="p95 <= 50 ms", met=p95(lat) <= 50))
    return rows


@contextlib.contextmanager
def scratch_database(engine: str) -> Iterator[str]:
    """A database URL that exists only for the block: a SQLite file in a temporary folder, or a fresh PostgreSQL
    database on the local server, dropped afterwards."""
    if engine == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"
        return
    import psycopg

    name = f"civicmesh_bench_{uuid.uuid4().hex[:8]}"
    admin = "postgresql://root@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://root@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def each_engine(default: str = "sqlite,postgres") -> Iterator[tuple[str, str, Path]]:
    """(engine, scratch database URL, scratch folder) for each engine of BENCH_ENGINES, each cleaned up once the
    loop moves on: for benchmarks that start a server of their own."""
    for engine in os.environ.get("BENCH_ENGINES", default).split(","):
        with tempfile.TemporaryDirectory() as tmp, scratch_database(engine) as url:
            yield engine, url, Path(tmp)


def run() -> list[dict[str, Any]]:
    total = int(os.environ.get("BENCH_ENTITIES", "100000"))
    rows: list[dict[str, Any]] = []
    for engine in os.environ.get("BENCH_ENGINES", "sqlite,postgres").split(","):
        with scratch_database(engine) as url:
            rows.extend(asyncio.run(_engine(engine, url, total)))
    return rows
