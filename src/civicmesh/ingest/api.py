"""HTTP side of the IoT agent: FIWARE provisioning (/iot/services, /iot/devices), HTTP measurements
(/iot/d UltraLight, /iot/json JSON), dead letters and counters; and the MQTT connection when `--mqtt` is given.

Tenancy: `fiware-service` is the NGSI-LD tenant (NGSILD-Tenant is accepted too); `fiware-servicepath` groups
devices inside it (default `/`).

Ownership: a service group or device belongs to the organization of the caller that provisioned it; a caller sees,
changes and deletes only its own organization's (a platform admin: all), and the agent writes a device's
measurements as its organization, through the gate.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from civicmesh.access import scope
from civicmesh.bodies import read_json
from civicmesh.errors import Problem
from civicmesh.ingest import provisioning
from civicmesh.ingest.agent import Agent, Measurement, Outcome
from civicmesh.ngsild.http import _TENANT
from civicmesh.ngsild.model import now_iso
from civicmesh.platform import Platform, Room
from civicmesh.store.ingest import PLATFORM_ORG, IngestStore

if TYPE_CHECKING:
    from civicmesh.ingest.mqtt import MqttIngress

log = logging.getLogger("civicmesh.ingest")

# Dead-letter reason -> how an HTTP sender hears about it.
_HTTP_ERRORS = {"unknown_device": "ResourceNotFound", "unknown_apikey": "Forbidden", "wrong_apikey": "Forbidden",
                "forbidden": "Forbidden"}
MAX_PROVISION = 1000


def tenant_of(request: Request) -> str:
    tenant = request.headers.get("fiware-service") or request.headers.get("ngsild-tenant") or ""
    if tenant and not _TENANT.match(tenant):
        raise Problem("BadRequestData", f"fiware-service {tenant!r} may use only letters, digits, '_', '-' and '.'")
    return tenant.lower() if request.headers.get("fiware-service") else tenant


@dataclass(frozen=True)
class _Who:
    """The provisioning caller: its organization, and whether it acts for every organization (platform admin)."""

    organization: str
    admin: bool

    @property
    def only(self) -> str | None:
        """The organization a listing is restricted to; None for a platform admin."""
        return None if self.admin else self.organization

    def owns(self, row: dict[str, Any]) -> bool:
        return self.admin or row.get("organization") == self.organization


def _who(request: Request) -> _Who:
    caller = getattr(request.state, "caller", None)
    if caller is None:  # no identity layer in front (the platform runs without the exchange): it acts itself
        return _Who(PLATFORM_ORG, True)
    if not caller.organization:
        raise Problem("Forbidden", "provisioning needs a caller that belongs to an organization")
    return _Who(caller.organization, "platform_admin" in caller.roles)


def _check_apikey_owner(who: _Who, apikey: str, owner: list[dict[str, Any]], tenant: str) -> None:
    """A device may use a service group's apikey only in the group's service and organization."""
    if owner and owner[0]["service"] != tenant:
        raise Problem("Forbidden", f"apikey {apikey!r} belongs to another service")
    if owner and not who.owns(owner[0]):
        raise Problem("Forbidden", f"apikey {apikey!r} belongs to a service group of another organization")


def _servicepath(request: Request) -> str:
    return provisioning.servicepath_of(request.headers.get("fiware-servicepath"))


async def _json(request: Request) -> Any:
    return await read_json(request)  # at most the platform's body limit, counted as it streams (bodies.py)


def _json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _list(body: Any, key: str) -> list[Any]:
    items = body.get(key) if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise Problem("BadRequestData", f'provisioning needs {{"{key}": [...]}} with at least one item')
    if len(items) > MAX_PROVISION:
        raise Problem("BadRequestData", f"at most {MAX_PROVISION} {key} per request")
    return items


def _int(value: str | None, name: str, default: int, top: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or not 0 <= int(value) <= top:
        raise Problem("BadRequestData", f"{name} must be an integer from 0 to {top}")
    return int(value)


class IotApi:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.resolver = platform.contexts
        self.store = IngestStore(platform.store)
        self.agent = Agent(platform.broker, self.resolver, self.store)
        self.mqtt: MqttIngress | None = None

    # -- service groups ----------------------------------------------------------------------------------
    async def add_services(self, request: Request) -> Response:
        tenant, path = tenant_of(request), _servicepath(request)
        groups = [provisioning.service_group(raw, self.resolver) for raw in _list(await _json(request), "services")]
        keys = [(g["apikey"], g["resource"]) for g in groups]
        if len(set(keys)) != len(keys):
            raise Problem("BadRequestData", "the request provisions the same apikey and resource twice")
        for apikey, resource in keys:
            if await self.store.groups(apikey=apikey):
                raise Problem("AlreadyExists", f"apikey {apikey!r} is already provisioned (resource {resource})")
        await self.store.add_groups(groups, tenant, path, now_iso(), _who(request).organization)
        self.agent.forget_routes()
        return Response(status_code=201)

    async def list_services(self, request: Request) -> Response:
        tenant = tenant_of(request)
        path = request.headers.get("fiware-servicepath")
        groups = await self.store.groups(tenant, provisioning.servicepath_of(path) if path else None,
                                         request.query_params.get("apikey"), request.query_params.get("resource"),
                                         _who(request).only)
        return _json_response({"count": len(groups), "services": groups})

    async def _one_group(self, request: Request) -> dict[str, Any]:
        apikey = request.query_params.get("apikey")
        resource = request.query_params.get("resource") or provisioning.DEFAULT_RESOURCE
        if not apikey:
            raise Problem("BadRequestData", "name the service group with ?apikey=...&resource=...")
        found = await self.store.groups(tenant_of(request), None, apikey, resource, _who(request).only)
        if not found:
            raise Problem("ResourceNotFound", f"no service group with apikey {apikey!r} and resource {resource!r} "
                                              "in this service")
        return found[0]

    async def update_service(self, request: Request) -> Response:
        current = await self._one_group(request)
        body = await _json(request)
        if not isinstance(body, dict):
            raise Problem("BadRequestData", "a service group update must be a JSON object")
        merged = {k: v for k, v in current.items() if k not in ("service", "subservice")}
        merged.update({k: v for k, v in body.items() if k not in ("apikey", "resource")})
        group = provisioning.service_group(merged, self.resolver)
        await self.store.replace_group(group)
        self.agent.forget_routes()
        return Response(status_code=204)

    async def delete_service(self, request: Request) -> Response:
        group = await self._one_group(request)
        await self.store.delete_group(group["apikey"], group["resource"])
        self.agent.forget_routes()
        return Response(status_code=204)

    # -- devices -----------------------------------------------------------------------------------------
    async def add_devices(self, request: Request) -> Response:
        tenant, path, who = tenant_of(request), _servicepath(request), _who(request)
        groups = await self.store.groups(tenant, path, organization=who.only)
        devices = [provisioning.device(raw, self.resolver, groups) for raw in _list(await _json(request), "devices")]
        ids = [d["device_id"] for d in devices]
        if len(set(ids)) != len(ids):
            raise Problem("BadRequestData", "the request provisions the same device_id twice")
        for dev in devices:
            if await self.store.device(tenant, dev["device_id"]) is not None:
                raise Problem("AlreadyExists", f"device {dev['device_id']!r} is already provisioned in this service")
            if await self.store.device_by_key(dev["apikey"], dev["device_id"]) is not None:
                raise Problem("AlreadyExists", f"device {dev['device_id']!r} with apikey {dev['apikey']!r} is "
                                               "already provisioned in another service")
            _check_apikey_owner(who, dev["apikey"], await self.store.groups(apikey=dev["apikey"]), tenant)
        await self.store.add_devices(devices, tenant, path, now_iso(), who.organization)
        self.agent.forget_routes()
        return Response(status_code=201)

    async def list_devices(self, request: Request) -> Response:
        path = request.headers.get("fiware-servicepath")
        limit = _int(request.query_params.get("limit"), "limit", 20, 1000)
        offset = _int(request.query_params.get("offset"), "offset", 0, 10**9)
        devices, total = await self.store.devices(tenant_of(request),
                                                  provisioning.servicepath_of(path) if path else None, limit, offset,
                                                  _who(request).only)
        return _json_response({"count": total, "devices": devices})

    async def _device(self, request: Request, device_id: str) -> dict[str, Any]:
        dev = await self.store.device(tenant_of(request), device_id)
        if dev is None or not _who(request).owns(dev):  # another organization's device is not shown to exist
            raise Problem("ResourceNotFound", f"device {device_id!r} is not provisioned in this service")
        return dev

    async def get_device(self, request: Request, device_id: str) -> Response:
        dev = await self._device(request, device_id)
        counters = await self.store.counters(tenant_of(request), device_id)
        return _json_response({**dev, "counters": counters.get(device_id, {})})

    async def update_device(self, request: Request, device_id: str) -> Response:
        current = await self._device(request, device_id)
        body = await _json(request)
        if not isinstance(body, dict):
            raise Problem("BadRequestData", "a device update must be a JSON object")
        if body.get("device_id", device_id) != device_id:
            raise Problem("BadRequestData", "device_id cannot be changed; delete and provision again")
        merged = {k: v for k, v in current.items() if k not in ("service", "service_path")}
        merged.update(body)
        tenant = tenant_of(request)
        dev = provisioning.device(merged, self.resolver, await self.store.groups(tenant, current["service_path"]))
        _check_apikey_owner(_who(request), dev["apikey"], await self.store.groups(apikey=dev["apikey"]), tenant)
        await self.store.replace_device(tenant, dev)
        self.agent.forget_routes()
        return Response(status_code=204)

    async def delete_device(self, request: Request, device_id: str) -> Response:
        await self._device(request, device_id)
        await self.store.delete_device(tenant_of(request), device_id)
        self.agent.forget_routes()
        return Response(status_code=204)

    # -- measurements over HTTP --------------------------------------------------------------------------
    async def _measure(self, request: Request, fmt: str) -> Response:
        apikey, device_id = request.query_params.get("k"), request.query_params.get("i")
        if not apikey or not device_id:
            raise Problem("BadRequestData", "measurements need ?k=<apikey>&i=<device_id>")
        body = await request.body()
        if len(body) > self.platform.settings.max_body_bytes:
            raise Problem("PayloadTooLarge", f"the measurement is larger than {self.platform.settings.max_body_bytes}"
                                             " bytes")
        timestamp = request.query_params.get("t")
        measurement = Measurement(apikey, device_id, body, fmt, "http")
        if timestamp:
            measurement.received_at = timestamp
        outcome: Outcome = await self.agent.ingest(measurement)
        if outcome.reason is not None:
            raise Problem(_HTTP_ERRORS.get(outcome.reason, "BadRequestData"),
                          f"{outcome.detail} (kept as a dead letter, reason {outcome.reason})")
        return Response(status_code=200)

    async def ultralight(self, request: Request) -> Response:
        return await self._measure(request, "ul")

    async def json_measure(self, request: Request) -> Response:
        return await self._measure(request, "json")

    # -- what went wrong and how much --------------------------------------------------------------------
    async def dead_letters(self, request: Request) -> Response:
        q = request.query_params
        letters = await self.store.dead_letters(tenant_of(request), q.get("device_id"), q.get("reason"),
                                                _int(q.get("limit"), "limit", 100, 1000),
                                                _int(q.get("offset"), "offset", 0, 10**9), _who(request).only)
        return _json_response({"count": len(letters), "deadletters": letters})

    async def stats(self, request: Request) -> Response:
        totals = self.agent.totals
        mqtt = None
        if self.mqtt is not None:
            mqtt = {"url": f"mqtt://{self.mqtt.host}:{self.mqtt.port}", "connected": self.mqtt.connected.is_set(),
                    "connects": self.mqtt.connects, "received": self.mqtt.received, "clientId": self.mqtt.client_id}
        return _json_response({
            "agent": {"received": totals.received, "stored": totals.stored, "deadLettered": totals.dead,
                      "queued": self.agent.queue.qsize(), "rounds": totals.rounds, "retries": totals.retries},
            "mqtt": mqtt, "devices": await self.store.counters(tenant_of(request), organization=_who(request).only)})

    # -- lifecycle ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.store.migrate()
        await self.agent.start()
        url = self.platform.settings.mqtt_url
        if url:
            from civicmesh.ingest.mqtt import MqttIngress, default_client_id

            settings = self.platform.settings
            client_id = settings.mqtt_client_id or default_client_id(settings.database_url)
            self.mqtt = MqttIngress(url, self.agent, client_id)
            self.mqtt.start()
            log.info("IoT agent: MQTT ingestion from %s", url)
        else:
            log.info("IoT agent: HTTP ingestion only (start with --mqtt mqtt://host:1883 for MQTT)")

    async def stop(self) -> None:
        if self.mqtt is not None:
            self.mqtt.stop()
        await self.agent.stop()


def build(platform: Platform) -> Room:
    """Serve /iot (provisioning and HTTP measurements), run the agent and, if configured, MQTT ingestion; with the
    demo city, its simulator."""
    api = IotApi(platform)
    router = APIRouter(prefix="/iot", tags=["IoT agent"], dependencies=[scope("iot").depends()])
    routes: list[tuple[str, str, Callable[..., Any]]] = [
              ("/services", "POST", api.add_services), ("/services", "GET", api.list_services),
              ("/services", "PUT", api.update_service), ("/services", "DELETE", api.delete_service),
              ("/devices", "POST", api.add_devices), ("/devices", "GET", api.list_devices),
              ("/devices/{device_id}", "GET", api.get_device), ("/devices/{device_id}", "PUT", api.update_device),
              ("/devices/{device_id}", "DELETE", api.delete_device),
              ("/d", "POST", api.ultralight), ("/json", "POST", api.json_measure),
              ("/deadletters", "GET", api.dead_letters), ("/stats", "GET", api.stats)]
    for path, method, endpoint in routes:
        router.add_api_route(path, endpoint, methods=[method])
    services: list[object] = [api]
    simulator = None
    if platform.settings.demo and platform.settings.simulator_interval > 0:
        from civicmesh.ingest.simulator import simulator_runner

        simulator = simulator_runner(platform, api)
        services.append(simulator)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        # The simulator sends through the agent, so it starts after the agent and stops before it.
        await api.start()
        try:
            if simulator is not None:
                await simulator.start()
            try:
                yield
            finally:
                if simulator is not None:
                    await simulator.stop()
        finally:
            await api.stop()

    return Room("iot", routers=[router], lifespan=lifespan, services=services)
