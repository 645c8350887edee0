"""Notifications delivered per second to a local HTTP receiver, on both engines, and what survives crashes.

Three processes: the broker (uvicorn, one worker, as in bench_broker), a minimal asyncio HTTP receiver that
answers 204 and appends one line per notification (subscription, entity, sequence) to a file, and this process,
which creates BENCH_SUBS subscriptions and streams batch updates of BENCH_NOTIFY_ENTITIES entities, each update
due to every subscription. Rate = notifications received / time from the first update to the last notification.
Baseline, same run: the receiver's raw capacity, a plain keep-alive client posting the same notification bodies.

Durability: the same stream while the broker is killed with SIGKILL and restarted on the same database, and later
while the receiver is down for a few seconds. Every notification due for an acknowledged update must arrive;
duplicates (at-least-once delivery after a crash) are counted and reported.
Scale with BENCH_SUBS (10), BENCH_NOTIFY_ENTITIES (100), BENCH_NOTIFY_ROUNDS (30); BENCH_ENGINES as elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.bench_broker import Server, _free_port, scratch_database
from bench.loadclient import RawConnection

SUBS = int(os.environ.get("BENCH_SUBS", "10"))
ENTITIES = int(os.environ.get("BENCH_NOTIFY_ENTITIES", "100"))
ROUNDS = int(os.environ.get("BENCH_NOTIFY_ROUNDS", "30"))
TARGET = 5000.0
JSON = {"Content-Type": "application/json"}


# -- the receiver (its own process) --------------------------------------------------------------------------
class _ReceiverProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive, Content-Length framed requests only: all a notification needs."""

    def __init__(self, out: list[bytes]) -> None:
        self.out = out
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            if head.startswith(b"POST"):
                note = orjson.loads(body)
                for entity in note["data"]:
                    self.out.append(f"{note['subscriptionId']} {entity['id']} {entity.get('seq')}\n".encode())
                reply = b"HTTP/1.1 204 No Content\r\n\r\n"
            else:
                reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            assert self.transport is not None
            self.transport.write(reply)


async def _serve_receiver(port: int, log_path: str) -> None:
    out: list[bytes] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    server = await loop.create_server(lambda: _ReceiverProtocol(out), "127.0.0.1", port, backlog=1024)
    with open(log_path, "ab") as log:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 0.1)
            except TimeoutError:
                pass
            if out:
                log.write(b"".join(out))
                out.clear()
                log.flush()
        server.close()
        if out:
            log.write(b"".join(out))


class Receiver:
    def __init__(self, port: int, log_path: Path) -> None:
        self.port, self.log_path = port, log_path
        self.url = f"http://127.0.0.1:{port}/notify"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Receiver:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.bench_notifications", "receiver", str(self.port),
                                      str(self.log_path)], cwd=Path(__file__).parent.parent)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("receiver did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
            self.proc = None

    def lines(self) -> list[str]:
        return self.log_path.read_text().splitlines() if self.log_path.exists() else []


# -- load --------------------------------------------------------------------------------------------------
def _subscription(i: int, endpoint: str) -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:Subscription:bench-{i}", "type": "Subscription",
            "entities": [{"type": "NotifyBench"}], "watchedAttributes": ["seq"],
            "notification": {"endpoint": {"uri": endpoint, "accept": "application/json"}, "format": "keyValues"}}


def _round(seq: int) -> bytes:
    return orjson.dumps([{"id": f"urn:ngsi-ld:NotifyBench:{i}", "type": "NotifyBench",
                          "seq": {"type": "Property", "value": seq}} for i in range(ENTITIES)])


async def _update(port: int, seq: int) -> None:
    conn = RawConnection("127.0.0.1", port)
    try:
        status, answer = await conn.request("POST", "/ngsi-ld/v1/entityOperations/upsert", _round(seq), JSON)
    finally:
        await conn.close()
    if status not in (201, 204):
        raise RuntimeError(f"upsert failed: {status} {answer[:300]!r}")


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _settle(pid: int, timeout: float = 60.0) -> None:
    """Wait until the broker's start-up work (it warms the citizen desk's classifier in a thread) is over, so the
    measurement is of notifications alone: until the process uses under a tenth of a core for half a second."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = _cpu_seconds(pid)
        time.sleep(0.5)
        if _cpu_seconds(pid) - before < 0.05:
            return


def _subscribe(server: Server, endpoint: str) -> None:
    for i in range(SUBS):
        r = httpx.post(f"{server.url}/subscriptions", json=_subscription(i, endpoint), timeout=30)
        if r.status_code != 201:
            raise RuntimeError(f"subscription failed: {r.status_code} {r.text[:300]}")


def _wait_for(receiver: Receiver, expected: int, timeout: float) -> tuple[int, float]:
    """(lines received, monotonic time the last one was seen) once `expected` arrived or the time ran out."""
    deadline = time.monotonic() + timeout
    last = (0, time.monotonic())
    while time.monotonic() < deadline:
        count = len(receiver.lines())
        if count != last[0]:
            last = (count, time.monotonic())
        if count >= expected:
            break
        time.sleep(0.1)
    return last


async def _raw_capacity(receiver: Receiver, n: int) -> float:
    """Receiver capacity: the same notification bodies from a plain client, 32 keep-alive connections."""
    bodies = [orjson.dumps({"id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}", "type": "Notification",
                            "subscriptionId": "urn:ngsi-ld:Subscription:raw", "notifiedAt": "2026-01-01T00:00:00Z",
                            "data": [{"id": f"urn:ngsi-ld:NotifyBench:{i % ENTITIES}", "type": "NotifyBench",
                                      "seq": i}]}) for i in range(n)]
    work = iter(bodies)

    async def worker() -> None:
        conn = RawConnection("127.0.0.1", receiver.port)
        try:
            for body in work:
                status, _ = await conn.request("POST", "/notify", body, JSON)
                assert status == 204
        finally:
            await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(32)))
    return n / (time.perf_counter() - t0)


def _throughput(engine: str, database_url: str, tmp: Path) -> list[dict[str, Any]]:
    receiver = Receiver(_free_port(), tmp / f"{engine}-throughput.log").start()
    try:
        raw = asyncio.run(_raw_capacity(receiver, 20_000))
        receiver.stop()
        receiver.log_path.unlink()
        receiver.start()
        server = Server(database_url)
        try:
            _subscribe(server, receiver.url)
            asyncio.run(_update(server.port, -1))  # creates the entities: due notifications too
            expected = ENTITIES * SUBS
            _wait_for(receiver, expected, 60)
            _settle(server.proc.pid)
            expected += ROUNDS * ENTITIES * SUBS
            cpu0 = _cpu_seconds(server.proc.pid)
            t0 = time.monotonic()

            async def stream() -> None:
                for seq in range(ROUNDS):
                    await _update(server.port, seq)
            asyncio.run(stream())
            ingest = time.monotonic() - t0
            got, last = _wait_for(receiver, expected, 120)
            delivered = got - ENTITIES * SUBS
            rate = delivered / (last - t0)
            # The machine is shared: what one broker CPU-second delivers is steadier than the wall-clock rate.
            per_cpu = delivered / max(1e-9, _cpu_seconds(server.proc.pid) - cpu0)
        finally:
            server.stop()
    finally:
        receiver.stop()
    return [dict(scenario=f"{engine}: {SUBS} subscriptions x {ROUNDS} updates of {ENTITIES} entities",
                 value=rate, unit="notifications/s",
                 baseline=f"receiver raw capacity {raw:,.0f}/s; {per_cpu:,.0f} per broker CPU-second "
                          f"(updates included); updates took {ingest:.1f} s; "
                          f"{delivered:,}/{ROUNDS * ENTITIES * SUBS:,} arrived",
                 target=f">= {TARGET:,.0f}/s", met=rate >= TARGET and delivered >= ROUNDS * ENTITIES * SUBS)]


def _durability(engine: str, database_url: str, tmp: Path) -> list[dict[str, Any]]:
    receiver = Receiver(_free_port(), tmp / f"{engine}-durability.log").start()
    server = Server(database_url)
    try:
        _subscribe(server, receiver.url)
        acked: list[int] = []
        kill_at, outage = ROUNDS // 3, (2 * ROUNDS // 3, 2 * ROUNDS // 3 + 5)
        for seq in range(ROUNDS):
            if seq == kill_at:
                server.proc.send_signal(signal.SIGKILL)  # mid-stream: no shutdown hooks, no flush
                server.proc.wait()
                server = Server(database_url)
            if seq == outage[0]:
                receiver.stop()
            if seq == outage[1]:
                receiver.start()
            asyncio.run(_update(server.port, seq))
            acked.append(seq)
            time.sleep(0.5 if outage[0] <= seq < outage[1] else 0.1)
        expected = {f"urn:ngsi-ld:Subscription:bench-{s} urn:ngsi-ld:NotifyBench:{e} {seq}"
                    for s in range(SUBS) for e in range(ENTITIES) for seq in acked}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not expected <= set(receiver.lines()):
            time.sleep(0.5)
        lines = [line for line in receiver.lines() if not line.endswith(" -1")]
    finally:
        server.stop()
        receiver.stop()
    counts = Counter(lines)
    lost = len(expected - set(counts))
    duplicates = sum(c - 1 for c in counts.values())
    return [dict(scenario=f"{engine}: durability, broker SIGKILL at update {kill_at} + receiver down 2.5 s",
                 value=float(lost), unit="notifications lost",
                 baseline=f"{len(expected):,} due, {len(set(counts) & expected):,} arrived, {duplicates:,} duplicates",
                 target="0 lost", met=lost == 0)]


def run() -> list[dict[str, Any]]:
    engines = os.environ.get("BENCH_ENGINES", "sqlite,postgres").split(",")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for engine in engines:
            for phase in (_throughput, _durability):
                with scratch_database(engine) as url:
                    rows.extend(phase(engine, url, tmp))
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "receiver":
        asyncio.run(_serve_receiver(int(sys.argv[2]), sys.argv[3]))
