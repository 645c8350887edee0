"""HTTP routes of the IoT agent (/iot/...) and its MQTT connection (`civicmesh serve --mqtt mqtt://host:port`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlparse

import orjson
from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import Response

from civicmesh.errors import Problem
from civicmesh.ingest.agent import DEVICE, SERVICE, Agent, Measurement

log = logging.getLogger("civicmesh.ingest")
TOPICS = ("/+/+/attrs", "/ul/+/+/attrs", "/json/+/+/attrs")


def _tenant(request: Request) -> str:
    return request.headers.get("fiware-service") or request.headers.get("ngsild-tenant") or ""


async def _json(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise Problem("InvalidRequest", f"the body is not valid JSON: {exc}") from exc


def _json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


class MqttBridge:
    """Subscribes to measurement topics; acknowledges a QoS 1 message only after it is stored."""

    def __init__(self, url: str, agent: Agent, client_id: str) -> None:
        parts = urlparse(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"MQTT URL {url!r} should look like mqtt://host:1883")
        self.host, self.port = parts.hostname, parts.port or 1883
        self.agent = agent
        self.client: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        # A stable id per server (and a persistent session) lets the broker keep unacknowledged messages for us.
        self.client_id = client_id

    def start(self) -> None:
        import paho.mqtt.client as mqtt

        self.loop = asyncio.get_running_loop()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False,
                             manual_ack=True)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.connect_async(self.host, self.port, keepalive=30)
        client.loop_start()
        self.client = client

    def stop(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        log.info("MQTT connected to %s:%s (%s)", self.host, self.port, reason)
        client.subscribe([(topic, 1) for topic in TOPICS])

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        parts = message.topic.strip("/").split("/")
        if len(parts) == 4:
            kind, apikey, device_id = parts[0], parts[1], parts[2]
        else:
            apikey, device_id = parts[0], parts[1]
            kind = "json" if message.payload[:1] in (b"{", b"[") else "ul"
        measurement = Measurement(apikey, device_id, message.payload, kind if kind in ("ul", "json") else "ul", "mqtt")
        assert self.loop is not None
        future = asyncio.run_coroutine_threadsafe(self.agent.ingest(measurement), self.loop)

        def settle(done: Any) -> None:
            error = done.exception()
            if error is None or (isinstance(error, Problem) and error.status < 500):
                # Stored, or refused for good (kept as a dead letter): acknowledge. A store failure is not
                # acknowledged, so the broker delivers the message again.
                client.ack(message.mid, message.qos)

        future.add_done_callback(settle)


def mount(app: FastAPI, platform: Any) -> None:
    agent = Agent(platform)
    platform.extras["iot_agent"] = agent
    router = APIRouter(prefix="/iot", tags=["iot agent"])
    bridge: list[MqttBridge] = []

    @router.post("/services", status_code=201)
    async def add_services(request: Request) -> Response:
        await agent.add_services(_tenant(request), await _json(request))
        return Response(status_code=201)

    @router.get("/services")
    async def list_services(request: Request) -> Response:
        services = await agent.list(SERVICE, _tenant(request))
        return _json_response({"count": len(services), "services": services})

    @router.delete("/services")
    async def remove_service(request: Request, apikey: str) -> Response:
        if not await agent.remove(SERVICE, apikey):
            raise Problem("ResourceNotFound", f"no service group with apikey {apikey}")
        return Response(status_code=204)

    @router.post("/devices", status_code=201)
    async def add_devices(request: Request) -> Response:
        await agent.add_devices(_tenant(request), await _json(request))
        return Response(status_code=201)

    @router.get("/devices")
    async def list_devices(request: Request) -> Response:
        devices = await agent.list(DEVICE, _tenant(request))
        return _json_response({"count": len(devices), "devices": devices})

    @router.get("/devices/{device_id}")
    async def get_device(device_id: str) -> Response:
        device = await agent.get(DEVICE, device_id)
        if device is None:
            raise Problem("ResourceNotFound", f"device {device_id} is not provisioned")
        return _json_response(device)

    @router.delete("/devices/{device_id}")
    async def remove_device(device_id: str) -> Response:
        if not await agent.remove(DEVICE, device_id):
            raise Problem("ResourceNotFound", f"device {device_id} is not provisioned")
        return Response(status_code=204)

    @router.post("/d")
    async def ultralight(request: Request, k: str, i: str) -> Response:
        await agent.ingest(Measurement(k, i, await request.body(), "ul", "http"))
        return Response(status_code=200)

    @router.post("/json")
    async def json_measure(request: Request, k: str, i: str) -> Response:
        await agent.ingest(Measurement(k, i, await request.body(), "json", "http"))
        return Response(status_code=200)

    @router.get("/deadletters")
    async def dead_letters() -> Response:
        return _json_response({"count": len(agent.dead_letters), "deadletters": list(agent.dead_letters)})

    @router.get("/stats")
    async def stats() -> Response:
        devices = sorted(set(agent.accepted) | set(agent.errors))
        return _json_response({d: {"accepted": agent.accepted[d], "rejected": agent.errors[d]} for d in devices})

    app.include_router(router)

    simulators: list[Any] = []

    async def start() -> None:
        await agent.start()
        if platform.settings.demo and platform.settings.simulator_interval > 0:
            from civicmesh.demo import demo_entities
            from civicmesh.ingest.simulator import Simulator
            from civicmesh.ngsild import DEMO_CONTEXT_URN

            simulator = Simulator(platform.extras["broker"], platform.extras["contexts"].term_map(DEMO_CONTEXT_URN),
                                  demo_entities())
            simulator.start(platform.settings.simulator_interval)
            simulators.append(simulator)
        if platform.settings.mqtt_url:
            b = MqttBridge(platform.settings.mqtt_url, agent, f"civicmesh-iot-agent-{platform.settings.port}")
            b.start()
            bridge.append(b)

    async def stop() -> None:
        for simulator in simulators:
            await simulator.stop()
        for b in bridge:
            b.stop()
        await agent.stop()

    app.state.startup_hooks.append(start)
    app.state.shutdown_hooks.append(stop)
