"""The agent's core: measurements in, NGSI-LD updates out, written in batches.

Every measurement (from MQTT or HTTP) joins one FIFO queue. A single writer task takes whatever has queued up
(group commit: the busier the agent, the larger the batches), resolves each device, turns its payload into a
concise entity fragment with `observedAt`, parses it with the device's @context, and writes all fragments of a
tenant and owning organization with one `broker.batch(tenant, "upsert", docs, option="update", caller=owner)`:
the gate decides each write as the device's organization, so a device cannot change another organization's
entity (refused as a `forbidden` dead letter). Bad measurements become dead letters in
the same round. Only when the round is stored does each measurement's `done` callback run: that is when an MQTT
message is acknowledged and an HTTP request answered. A store failure keeps the round and retries it with
backoff; nothing is acknowledged before it is stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from civicmesh.access import Caller
from civicmesh.errors import Problem
from civicmesh.ingest import payloads
from civicmesh.ingest.provisioning import mappings_of, static_attributes_of
from civicmesh.ngsild.model import EntityParser, now_iso
from civicmesh.store.ingest import PLATFORM_ORG, IngestStore
from civicmesh.workers import Worker

log = logging.getLogger("civicmesh.ingest")

MAX_BATCH = 2000
ROUTE_TTL = 30.0  # seconds a resolved device is trusted before it is looked up again (other workers may edit it)
MISS_TTL = 2.0  # seconds an unknown (apikey, device) pair is remembered, so garbage cannot hammer the store
PAYLOAD_KEEP = 2048  # characters of a bad payload kept in its dead letter


def device_caller(organization: str) -> Caller:
    """Who a device's measurements are written as: its organization; the platform's devices act as the platform."""
    roles = frozenset({"platform_admin"}) if organization == PLATFORM_ORG else frozenset()
    return Caller(subject=f"iot-agent:{organization}", organization=organization, roles=roles)


@dataclass
class Outcome:
    stored: int = 0  # measurements written
    reason: str | None = None  # dead-letter reason when nothing was written
    detail: str = ""


@dataclass
class Measurement:
    apikey: str
    device_id: str
    payload: bytes
    fmt: str  # "ul" | "json" | "auto"
    transport: str  # "mqtt" | "http"
    received_at: str = field(default_factory=now_iso)
    attribute: str | None = None  # single-attribute topic /<k>/<i>/attrs/<name>: the payload is the raw value
    done: Callable[[Outcome], None] | None = None


@dataclass
class Route:
    tenant: str
    entity_id: str
    entity_type: str
    mappings: dict[str, payloads.Mapping]
    explicit: bool
    terms: Any
    expires: float
    statics: dict[str, Any] = field(default_factory=dict)
    organization: str = PLATFORM_ORG  # the device's owner, as whom its measurements are written
    statics_sent: bool = False  # static attributes ride along with the first measurement after each lookup


@dataclass
class _Miss:
    tenant: str
    reason: str
    detail: str
    expires: float


@dataclass
class Totals:
    received: int = 0
    stored: int = 0
    dead: int = 0
    rounds: int = 0
    retries: int = 0


class Agent:
    def __init__(self, broker: Any, resolver: Any, store: IngestStore) -> None:
        self.broker = broker
        self.resolver = resolver
        self.store = store
        self.queue: asyncio.Queue[Measurement] = asyncio.Queue()
        self.totals = Totals()
        self._routes: dict[tuple[str, str], Route | _Miss] = {}
        self._writer = Worker("ingest-writer", self._run)

    # -- lifecycle ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._writer.start()

    async def stop(self) -> None:
        await self._writer.stop()

    def forget_routes(self) -> None:
        """Provisioning changed: resolve devices afresh."""
        self._routes.clear()

    # -- input -------------------------------------------------------------------------------------------
    def submit(self, measurement: Measurement) -> None:
        """Queue a measurement (on the event loop's thread); `done` runs once it is stored or dead-lettered."""
        self.totals.received += 1
        self.queue.put_nowait(measurement)

    async def ingest(self, measurement: Measurement) -> Outcome:
        """Queue and wait until stored (HTTP ingestion answers only then)."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

        def settle(outcome: Outcome) -> None:
            if not future.done():
                future.set_result(outcome)

        measurement.done = settle
        self.submit(measurement)
        return await future

    # -- the writer --------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            first = await self.queue.get()
            batch = [first]
            while len(batch) < MAX_BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            delay = 0.2
            while True:
                try:
                    outcomes = await self._round(batch)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception:  # the store is down or failing: keep the round, ack nothing, try again
                    self.totals.retries += 1
                    log.exception("ingest round of %d measurements failed; retrying in %.1f s", len(batch), delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
            self.totals.rounds += 1
            for measurement, outcome in zip(batch, outcomes, strict=True):
                if measurement.done is not None:
                    try:
                        measurement.done(outcome)
                    except Exception:
                        log.exception("ingest completion callback failed")

    async def _route(self, apikey: str, device_id: str) -> Route | _Miss:
        key = (apikey, device_id)
        now = time.monotonic()
        found = self._routes.get(key)
        if found is not None and found.expires > now:
            return found
        route = await self._resolve(apikey, device_id, now)
        if len(self._routes) > 100_000:
            self._routes.clear()
        self._routes[key] = route
        return route

    async def _resolve(self, apikey: str, device_id: str, now: float) -> Route | _Miss:
        hit = await self.store.device_by_key(apikey, device_id)
        if hit is None:
            groups = await self.store.groups(apikey=apikey)
            if groups:
                return _Miss(groups[0]["service"], "unknown_device",
                             f"device {device_id!r} is not provisioned under this apikey", now + MISS_TTL)
            owners = await self.store.store.fetch_rows(
                "SELECT tenant FROM ingest_devices WHERE device_id = ?", [device_id])
            if len(owners) == 1:  # a known device sent a wrong key: count it against that device
                return _Miss(owners[0][0], "wrong_apikey", f"apikey {apikey!r} is not device {device_id!r}'s key",
                             now + MISS_TTL)
            return _Miss("", "unknown_apikey", f"no service group or device has apikey {apikey!r}", now + MISS_TTL)
        tenant, dev = hit
        groups = await self.store.groups(apikey=apikey)
        group = groups[0] if groups else None
        context = dev.get("jsonldContext") or (group or {}).get("jsonldContext")
        explicit = dev.get("explicitAttrs")
        if explicit is None:
            explicit = bool((group or {}).get("explicitAttrs"))
        return Route(tenant, dev["entity_name"], dev["entity_type"], mappings_of(group, dev), bool(explicit),
                     self.resolver.term_map(context), now + ROUTE_TTL, static_attributes_of(group, dev),
                     dev.get("organization") or PLATFORM_ORG)

    async def _round(self, batch: list[Measurement]) -> list[Outcome]:
        outcomes = [Outcome() for _ in batch]
        per_owner: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = {}
        counts: dict[tuple[str, str, str, str], int] = {}
        dead: list[tuple[str, str | None, str | None, str, str, str, str | None, str]] = []
        parser_now = now_iso()
        parsers: dict[int, EntityParser] = {}
        tenants: dict[int, str] = {}
        with_statics: list[Route] = []

        def reject(i: int, tenant: str, reason: str, detail: str) -> None:
            m = batch[i]
            outcomes[i] = Outcome(0, reason, detail)
            counts[(tenant, m.apikey, m.device_id, reason)] = counts.get((tenant, m.apikey, m.device_id, reason), 0) + 1
            dead.append((tenant, m.apikey, m.device_id, m.transport, reason, detail,
                         m.payload[:PAYLOAD_KEEP].decode("utf-8", "replace"), m.received_at))

        for i, m in enumerate(batch):
            route = await self._route(m.apikey, m.device_id)
            if isinstance(route, _Miss):
                reject(i, route.tenant, route.reason, route.detail)
                continue
            tenants[i] = route.tenant
            try:
                if m.attribute is not None:
                    measures = [{m.attribute: m.payload.decode("utf-8", "replace").strip()}]
                else:
                    measures = payloads.parse(m.payload, m.fmt)
                parser = parsers.get(id(route.terms))
                if parser is None:
                    parser = parsers[id(route.terms)] = EntityParser(route.terms, parser_now)
                docs = []
                for measure in measures:
                    fragment = payloads.to_attributes(measure, route.mappings, m.received_at, explicit=route.explicit)
                    if not route.statics_sent and route.statics:
                        fragment = {**route.statics, **fragment}
                        with_statics.append(route)
                    try:
                        docs.append(parser.entity({"id": route.entity_id, "type": route.entity_type, **fragment}))
                    except Problem as problem:
                        raise payloads.PayloadError("rejected", problem.detail) from None
            except payloads.PayloadError as exc:
                reject(i, route.tenant, exc.reason, exc.detail)
                continue
            per_owner.setdefault((route.tenant, route.organization), []).extend((i, d) for d in docs)
        for (tenant, organization), items in per_owner.items():
            caller = device_caller(organization)
            try:
                result = await self.broker.batch(tenant, "upsert", [d for _, d in items], option="update",
                                                 caller=caller)
                refused = dict(result.errors)
            except Problem as problem:  # the whole round of this owner was refused (e.g. by the gate)
                refused = {d["id"]: problem for _, d in items}
            for i, doc in items:
                refusal = refused.get(doc["id"])
                if refusal is not None:
                    if outcomes[i].reason is None:
                        reason = "forbidden" if refusal.kind == "Forbidden" else "rejected"
                        reject(i, tenant, reason, refusal.detail)
                elif outcomes[i].reason is None:
                    outcomes[i].stored += 1
        for i, outcome in enumerate(outcomes):
            if outcome.reason is None and outcome.stored:
                m = batch[i]
                key = (tenants[i], m.apikey, m.device_id, "stored")
                counts[key] = counts.get(key, 0) + outcome.stored
        await self.store.record(counts, dead)
        for route in with_statics:
            route.statics_sent = True
        self.totals.stored += sum(o.stored for o in outcomes if o.reason is None)
        self.totals.dead += len(dead)
        return outcomes
