"""The agent: provisioning (FIWARE IoT Agent API shapes), measurement ingestion in batches, dead letters.

Provisioned services and devices are documents in the main store (kind iot-service / iot-device, tenant ""),
each naming the tenant (fiware-service) its entities live in. Measurements are queued and written in batches
through the broker (upsert, options=update); the caller learns its measurement is stored only after the batch
committed, which is when an MQTT message is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from civicmesh.errors import Problem
from civicmesh.ingest.payloads import Mapping, PayloadError, parse_json, parse_ultralight, to_attributes
from civicmesh.ngsild.model import EntityParser, check_entity_id, now_iso

log = logging.getLogger("civicmesh.ingest")

SERVICE, DEVICE = "iot-service", "iot-device"


@dataclass
class Measurement:
    apikey: str
    device_id: str
    payload: bytes
    kind: str  # "ul" | "json"
    transport: str  # "http" | "mqtt"


class Agent:
    def __init__(self, platform: Any, *, batch_size: int = 500, batch_wait: float = 0.02) -> None:
        self.store = platform.store
        self.broker = platform.extras["broker"]
        self.terms = platform.extras["contexts"].core
        self.queue: asyncio.Queue[tuple[str, dict[str, Any], asyncio.Future[None]]] = asyncio.Queue()
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        self.dead_letters: deque[dict[str, Any]] = deque(maxlen=1000)
        self.errors: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None

    # -- provisioning ---------------------------------------------------------------------------------------
    async def add_services(self, tenant: str, body: Any) -> None:
        services = body.get("services") if isinstance(body, dict) else None
        if not isinstance(services, list) or not services:
            raise Problem("BadRequestData", 'provisioning needs {"services": [...]}')
        docs = []
        for s in services:
            if not isinstance(s, dict) or not isinstance(s.get("apikey"), str) or not s["apikey"]:
                raise Problem("BadRequestData", "each service group needs an apikey")
            if not isinstance(s.get("entity_type"), str):
                raise Problem("BadRequestData", f"service group {s['apikey']} needs an entity_type")
            _check_attributes(s.get("attributes", []), f"service group {s['apikey']}")
            docs.append({**s, "id": s["apikey"], "service": tenant})
        for doc in docs:
            if not await self.store.put_document("", SERVICE, doc["id"], doc, create=True):
                raise Problem("AlreadyExists", f"a service group with apikey {doc['id']} already exists")

    async def add_devices(self, tenant: str, body: Any) -> None:
        devices = body.get("devices") if isinstance(body, dict) else None
        if not isinstance(devices, list) or not devices:
            raise Problem("BadRequestData", 'provisioning needs {"devices": [...]}')
        docs = []
        for d in devices:
            if not isinstance(d, dict) or not isinstance(d.get("device_id"), str) or not d["device_id"]:
                raise Problem("BadRequestData", "each device needs a device_id")
            where = f"device {d['device_id']}"
            _check_attributes(d.get("attributes", []), where)
            entity_type = d.get("entity_type")
            if entity_type is not None and not isinstance(entity_type, str):
                raise Problem("BadRequestData", f"{where}: entity_type must be a string")
            if "entity_name" in d:
                check_entity_id(d["entity_name"])
            docs.append({**d, "id": d["device_id"], "service": tenant})
        for doc in docs:
            if not await self.store.put_document("", DEVICE, doc["id"], doc, create=True):
                raise Problem("AlreadyExists", f"device {doc['id']} is already provisioned")

    async def list(self, kind: str, tenant: str) -> list[dict[str, Any]]:
        return [d for d in await self.store.list_documents("", kind) if d.get("service") == tenant]

    async def get(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        return await self.store.get_document("", kind, doc_id)  # type: ignore[no-any-return]

    async def remove(self, kind: str, doc_id: str) -> bool:
        return await self.store.delete_document("", kind, doc_id)  # type: ignore[no-any-return]

    # -- ingestion ------------------------------------------------------------------------------------------
    async def ingest(self, m: Measurement) -> None:
        """Store one measurement; raise Problem (and keep a dead letter) when it cannot be."""
        try:
            tenant, entity = await self._entity(m)
        except Problem as problem:
            self._dead(m, problem.detail)
            raise
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self.queue.put((tenant, entity, done))
        await done
        self.accepted[m.device_id] += 1

    async def _entity(self, m: Measurement) -> tuple[str, dict[str, Any]]:
        device = await self.get(DEVICE, m.device_id)
        if device is None:
            raise Problem("ResourceNotFound", f"device {m.device_id} is not provisioned")
        group = await self.get(SERVICE, device.get("apikey") or m.apikey)
        if device.get("apikey", group["apikey"] if group else None) != m.apikey:
            raise Problem("Forbidden", f"apikey {m.apikey!r} does not belong to device {m.device_id}")
        entity_type = device.get("entity_type") or (group or {}).get("entity_type")
        if not entity_type:
            raise Problem("BadRequestData", f"device {m.device_id} has no entity_type (device or service group)")
        mappings = {a["object_id"]: Mapping(a["object_id"], a.get("name", a["object_id"]), a.get("type", "Number"),
                                            a.get("unitCode") or (a.get("metadata") or {}).get("unitCode"))
                    for a in [*(group or {}).get("attributes", []), *device.get("attributes", [])]}
        try:
            measures = parse_ultralight(m.payload.decode()) if m.kind == "ul" else parse_json(m.payload)
            attrs: dict[str, Any] = {}
            for measure in measures:
                attrs.update(to_attributes(measure, mappings, now_iso()))
        except (PayloadError, UnicodeDecodeError) as exc:
            raise Problem("BadRequestData", f"device {m.device_id}: {exc}") from exc
        for static in [*(group or {}).get("static_attributes", []), *device.get("static_attributes", [])]:
            attrs[static["name"]] = {"type": "Property", "value": static.get("value")}
        entity_id = device.get("entity_name") or f"urn:ngsi-ld:{entity_type}:{m.device_id}"
        return device["service"], {"id": entity_id, "type": entity_type, **attrs}

    def _dead(self, m: Measurement, reason: str) -> None:
        self.errors[m.device_id] += 1
        self.dead_letters.append({"at": now_iso(), "device_id": m.device_id, "apikey": m.apikey,
                                  "transport": m.transport, "reason": reason,
                                  "payload": m.payload[:500].decode("utf-8", "replace")})

    async def _writer(self) -> None:
        while True:
            first = await self.queue.get()
            batch = [first]
            deadline = time.monotonic() + self.batch_wait
            while len(batch) < self.batch_size:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), timeout))
                except TimeoutError:
                    break
            await self._write(batch)

    async def _write(self, batch: list[tuple[str, dict[str, Any], asyncio.Future[None]]]) -> None:
        by_tenant: dict[str, list[tuple[dict[str, Any], asyncio.Future[None]]]] = {}
        for tenant, entity, done in batch:
            by_tenant.setdefault(tenant, []).append((entity, done))
        parser = EntityParser(self.terms)
        for tenant, items in by_tenant.items():
            try:
                docs = [parser.entity(entity) for entity, _ in items]
                result = await self.broker.batch(tenant, "upsert", docs, option="update")
                failed = dict(result.errors)
            except Exception as exc:  # the store is down: every caller gets the error, nothing is acked
                for _, done in items:
                    if not done.done():
                        done.set_exception(exc if isinstance(exc, Problem) else
                                           Problem("InternalError", f"measurements not stored: {exc}"))
                continue
            for entity, done in items:
                if done.done():
                    continue
                if entity["id"] in failed:
                    done.set_exception(failed[entity["id"]])
                else:
                    done.set_result(None)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._writer(), name="iot-writer")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass


def _check_attributes(attributes: Any, where: str) -> None:
    if not isinstance(attributes, list):
        raise Problem("BadRequestData", f"{where}: attributes must be a list")
    for a in attributes:
        if not isinstance(a, dict) or not isinstance(a.get("object_id"), str):
            raise Problem("BadRequestData", f"{where}: each attribute needs an object_id")
        if a.get("type", "Number") not in ("Number", "Float", "Integer", "Boolean", "Text", "String"):
            raise Problem("BadRequestData",
                          f"{where}: attribute {a['object_id']} has an unknown type {a.get('type')!r}")
