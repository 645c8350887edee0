"""Alert latency: from the HTTP write of a triggering observation to the Alert entity being queryable.

The server runs in its own process (`civicmesh serve`), one per engine (BENCH_ENGINES, default
"sqlite,postgres"). A threshold rule watches Bridge.deflection; each sample first writes a value below the tier
(clearing the alarm), then one above it, and polls every 5 ms for the new Alert. Baseline: the latency of the
write itself (the observation's own round trip), in the same run.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from bench.bench_broker import each_engine
from bench.bench_ingest import _wait

SAMPLES = int(os.environ.get("BENCH_ALERT_SAMPLES", "40"))


class AlertServer:
    def __init__(self, database_url: str, workdir: Path) -> None:
        import socket
        import subprocess
        import sys

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "civicmesh.cli", "serve", "--port", str(self.port), "--database", database_url,
             "--log-level", "error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "CIVICMESH_NO_AUTH": "true", "CIVICMESH_DATA_DIR": str(workdir)})
        _wait(lambda: httpx.get(f"{self.url}/health", timeout=2).status_code == 200, 60, "the server")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def _engine(engine: str, database_url: str, workdir: Path) -> list[dict[str, Any]]:
    server = AlertServer(database_url, workdir)
    latencies: list[float] = []
    writes: list[float] = []
    try:
        api = httpx.Client(base_url=server.url, headers={"NGSILD-Tenant": "bench"}, timeout=30)
        api.post("/alerts/rules", json={"id": "deflection", "entityType": "Bridge", "attribute": "deflection",
                                        "kind": "threshold", "tiers": [{"severity": "high", "above": 20}]})
        api.post("/ngsi-ld/v1/entities", json={"id": "urn:ngsi-ld:Bridge:b", "type": "Bridge",
                                                "deflection": {"type": "Property", "value": 1}})
        url = "/ngsi-ld/v1/entities/urn:ngsi-ld:Bridge:b/attrs"
        for n in range(SAMPLES):
            api.post(url, json={"deflection": {"type": "Property", "value": 1}})
            time.sleep(0.05)
            sent = time.perf_counter()
            api.post(url, json={"deflection": {"type": "Property", "value": 25 + n}})
            writes.append(time.perf_counter() - sent)
            while time.perf_counter() - sent < 10:
                r = api.get("/ngsi-ld/v1/entities", params={"type": "Alert", "count": "true", "limit": 0})
                if int(r.headers.get("NGSILD-Results-Count", 0)) >= n + 1:
                    latencies.append(time.perf_counter() - sent)
                    break
                time.sleep(0.005)
    finally:
        server.stop()
    p95 = statistics.quantiles(latencies, n=20)[18] if len(latencies) >= 20 else max(latencies, default=99.0)
    return [{"scenario": f"alert latency p95, observation -> Alert entity, {engine} ({len(latencies)}/{SAMPLES})",
             "value": p95 * 1000, "unit": "ms",
             "baseline": f"the write itself p95 {statistics.quantiles(writes, n=20)[18] * 1000:.1f} ms",
             "target": "<= 1000 ms", "met": len(latencies) == SAMPLES and p95 <= 1.0}]


def run() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for engine, url, workdir in each_engine():
        rows += _engine(engine, url, workdir)
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
