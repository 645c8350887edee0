"""IoT ingestion end to end: MQTT publish -> IoT agent -> store -> queryable, on both engines.

The server runs in its own process (`civicmesh serve --mqtt`), connected to a private Mosquitto on a free port
whose queue limits are lifted (the system broker's defaults, 20 in flight / 1000 queued per client, would drop
QoS 1 messages under a sustained flood, which is Mosquitto's policy rather than the agent's). A lean publisher
(`bench/mqttload.py`) sends UltraLight measurements (`t|..|h|..`, one observation = one entity update) at QoS 1 to
1,000 provisioned devices: first for BENCH_INGEST_SECONDS (default 30) keeping 5,000 unstored in flight (the
throughput), then for 15 s at a fixed offered rate (BENCH_INGEST_RATE, default 70 % of that throughput). A probe
device is published to every 0.5 s and polled until its value is readable: publish-to-queryable latency, per phase.
At the end the agent's stored counters must equal the count published. Baselines, same run: raw insert of the
same number of entity rows into the same engine, and the MQTT transport alone (the same publisher and Mosquitto
to a paho subscriber that only acknowledges). BENCH_ENGINES (default "sqlite,postgres").
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.bench_broker import each_engine, scratch_database
from bench.mqttload import Publisher

DEVICES = 1000
WINDOW = 5_000  # unstored observations allowed in flight: the queue a p95 latency waits behind
TARGETS = {"sqlite": 20_000, "postgres": 10_000}
STEADY_SECONDS = 15


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


class Mosquitto:
    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
                        "max_inflight_messages 0\nmax_queued_bytes 0\n")
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        _wait(lambda: socket.create_connection(("127.0.0.1", self.port), timeout=1).close() is None, 10, "mosquitto")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Server:
    def __init__(self, database_url: str, mqtt_port: int) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "CIVICMESH_NO_AUTH": "true",
               "CIVICMESH_MQTT_CLIENT_ID": f"bench-{uuid.uuid4().hex[:8]}"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "civicmesh.cli", "serve", "--port", str(self.port), "--database", database_url,
             "--mqtt", f"mqtt://127.0.0.1:{mqtt_port}", "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        _wait(lambda: httpx.get(f"{self.url}/iot/stats", timeout=2).json()["mqtt"]["connected"], 60, "the server")

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/iot/stats", headers={"fiware-service": "bench"}, timeout=30).json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _provision(server: Server) -> None:
    headers = {"fiware-service": "bench"}
    r = httpx.post(f"{server.url}/iot/services", headers=headers, json={"services": [
        {"apikey": "benchkey", "entity_type": "WeatherObserved",
         "attributes": [{"object_id": "t", "name": "temperature", "type": "Number", "unitCode": "CEL"},
                        {"object_id": "h", "name": "relativeHumidity", "type": "Number", "unitCode": "P1"}]}]})
    r.raise_for_status()
    ids = [f"w{i}" for i in range(DEVICES)] + ["probe"]
    for start in range(0, len(ids), 500):
        r = httpx.post(f"{server.url}/iot/devices", headers=headers, timeout=60,
                       json={"devices": [{"device_id": d} for d in ids[start:start + 500]]})
        r.raise_for_status()


def _probe_loop(server: Server, client: Any, stop: threading.Event, latencies: dict[str, list[float]],
                phase: list[str]) -> None:
    with httpx.Client(base_url=server.url, headers={"NGSILD-Tenant": "bench"}, timeout=30) as http:
        n = 0
        while not stop.is_set():
            n += 1
            value = 1000 + n
            current = phase[0]
            sent = time.perf_counter()
            client.publish("/benchkey/probe/attrs", f"t|{value}".encode(), qos=1)
            deadline = sent + 30
            while time.perf_counter() < deadline:
                r = http.get("/ngsi-ld/v1/entities/urn:ngsi-ld:WeatherObserved:probe",
                             params={"options": "keyValues", "attrs": "temperature"})
                if r.status_code == 200 and r.json().get("temperature") == value:
                    if phase[0] == current:
                        latencies.setdefault(current, []).append(time.perf_counter() - sent)
                    break
                time.sleep(0.005)
            stop.wait(0.5)


def _measures(start: int, count: int) -> Any:
    return ((f"/benchkey/w{n % DEVICES}/attrs", f"t|{20 + n % 97 / 10}|h|{n % 100}".encode())
            for n in range(start, start + count))


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18] if len(values) >= 20 else max(values, default=0.0)


def _run_engine(engine: str, database_url: str, workdir: Path, seconds: float) -> list[dict[str, Any]]:
    import paho.mqtt.client as mqtt

    broker = Mosquitto(workdir)
    server = Server(database_url, broker.port)
    try:
        _provision(server)
        publisher = Publisher("127.0.0.1", broker.port, f"bench-load-{uuid.uuid4().hex[:8]}")
        prober = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        prober.connect("127.0.0.1", broker.port)
        prober.loop_start()
        base = server.stats()["agent"]["stored"]
        latencies: dict[str, list[float]] = {}
        phase = ["saturation"]
        stop = threading.Event()
        probe = threading.Thread(target=_probe_loop, args=(server, prober, stop, latencies, phase), daemon=True)
        probe.start()

        def stored() -> int:
            return int(server.stats()["agent"]["stored"]) - base - sum(map(len, latencies.values()))

        def drain(count: int) -> None:
            deadline = time.monotonic() + 300
            while stored() < count and time.monotonic() < deadline:
                time.sleep(0.1)

        # 1. Saturation: keep WINDOW observations unstored in flight for `seconds`; the rate is the throughput.
        published = 0
        started = time.perf_counter()
        done = 0
        while time.perf_counter() - started < seconds:
            if published - done > WINDOW:
                time.sleep(0.05)
                done = stored()
                continue
            publisher.publish(_measures(published, 1000))
            published += 1000
            if published % 10_000 == 0:
                done = stored()
        drain(published)
        rate = published / (time.perf_counter() - started)
        # 2. Steady load: an open loop at a fixed offered rate (sensors publish on their own clock, they do not
        # wait for the platform), so latency is measured at that rate rather than as WINDOW / throughput.
        offered = int(os.environ.get("BENCH_INGEST_RATE", "0")) or max(500, int(rate * 0.7) // 500 * 500)
        phase[0] = "steady"
        steady_from = published
        tick, begun = 0.1, time.perf_counter()
        while time.perf_counter() - begun < STEADY_SECONDS:
            due = steady_from + int((time.perf_counter() - begun) * offered)
            if due > published:
                publisher.publish(_measures(published, due - published))
                published = due
            time.sleep(tick)
        phase[0] = "after"
        stop.set()
        probe.join(60)
        drain(published)
        stats = server.stats()
        stored_rows = sum(v.get("stored", 0) for d, v in stats["devices"].items() if d != "probe")
        publisher.close()
        prober.loop_stop()
        server.stop()
        transport = _transport_rate(broker.port, 200_000)
    finally:
        server.stop()
        broker.stop()
    raw = asyncio.run(_raw_rate(engine, published))
    target = TARGETS[engine]
    saturated, steady = latencies.get("saturation", []), latencies.get("steady", [])
    return [
        {"scenario": f"MQTT publish->stored->queryable, {engine}, {seconds:.0f} s, {DEVICES} devices",
         "value": rate, "unit": "observations/s",
         "baseline": f"raw insert {raw:,.0f} rows/s; MQTT transport alone {transport:,.0f} msg/s",
         "target": f">= {target:,}/s", "met": rate >= target},
        {"scenario": f"MQTT count in == count stored, {engine}", "value": float(stored_rows),
         "unit": "stored", "baseline": f"published {published:,}", "target": "equal",
         "met": stored_rows == published},
        {"scenario": f"MQTT publish-to-queryable p95 at saturation ({WINDOW:,} in flight), {engine} "
                     f"({len(saturated)} probes)",
         "value": _p95(saturated) * 1000, "unit": "ms",
         "baseline": f"median {statistics.median(saturated) * 1000:.0f} ms" if saturated else "-",
         "target": "<= 1000 ms", "met": bool(saturated) and _p95(saturated) <= 1.0},
        {"scenario": f"MQTT publish-to-queryable p95 at a steady {offered:,} obs/s for {STEADY_SECONDS} s, {engine} "
                     f"({len(steady)} probes)",
         "value": _p95(steady) * 1000, "unit": "ms",
         "baseline": f"median {statistics.median(steady) * 1000:.0f} ms" if steady else "-",
         "target": "<= 1000 ms", "met": bool(steady) and _p95(steady) <= 1.0},
    ]


def _transport_rate(port: int, count: int) -> float:
    """Baseline: Mosquitto to a paho subscriber that only acknowledges (QoS 1, manual acks, as the agent does),
    fed by the same lean publisher: what the MQTT transport alone costs on this machine."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    received = threading.Semaphore(0)

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        client.ack(message.mid, message.qos)
        received.release()

    subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-sink-{uuid.uuid4().hex[:8]}",
                             protocol=mqtt.MQTTv5, manual_ack=True)
    subscriber.on_message = on_message
    properties = Properties(PacketTypes.CONNECT)
    properties.ReceiveMaximum = 65535
    subscriber.connect("127.0.0.1", port, properties=properties)
    subscriber.subscribe("/sink/+/attrs", 1)
    subscriber.loop_start()
    time.sleep(0.5)
    publisher = Publisher("127.0.0.1", port, f"bench-sink-load-{uuid.uuid4().hex[:8]}")
    started = time.perf_counter()
    for start in range(0, count, 1000):
        publisher.publish((f"/sink/w{n % DEVICES}/attrs", f"t|{n}|h|1".encode()) for n in range(start, start + 1000))
        if start >= WINDOW:
            for _ in range(1000):
                received.acquire()
    for _ in range(min(count, WINDOW)):
        received.acquire()
    rate = count / (time.perf_counter() - started)
    publisher.close()
    subscriber.loop_stop()
    subscriber.disconnect()
    return rate


async def _raw_rate(engine: str, rows: int) -> float:
    from civicmesh.store import open_store

    with scratch_database(engine) as url:
        return await _insert_rate(open_store(url), rows)


async def _insert_rate(store: Any, rows: int) -> float:
    await store.open()
    try:
        doc = orjson.dumps({"id": "x", "type": ["WeatherObserved"], "attrs": {
            "temperature": [{"type": "Property", "value": 21.5, "unitCode": "CEL",
                             "observedAt": "2025-06-16T10:00:00Z"}],
            "relativeHumidity": [{"type": "Property", "value": 40, "unitCode": "P1"}]}})
        batch = [(f"urn:ngsi-ld:WeatherObserved:raw{i}", doc) for i in range(rows)]
        started = time.perf_counter()
        for start in range(0, rows, 2000):
            await store.raw_insert("bench", batch[start:start + 2000])
        return rows / (time.perf_counter() - started)
    finally:
        await store.close()


def run() -> list[dict[str, Any]]:
    seconds = float(os.environ.get("BENCH_INGEST_SECONDS", "30"))
    rows: list[dict[str, Any]] = []
    for engine, url, workdir in each_engine():
        rows += _run_engine(engine, url, workdir, seconds)
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
