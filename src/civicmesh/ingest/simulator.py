"""The demo city's pulse: sensors that publish realistic readings through the IoT agent every few seconds.

At start-up the simulator provisions a service group (apikey `civicmesh-demo`, the demo @context) and one device
per demo sensor: the air-quality stations, the traffic-flow detectors and the bridge's strain, displacement and
tilt gauges. Each tick it sends one UltraLight measurement per device, over MQTT when the server has `--mqtt`
(the same path a real sensor takes), otherwise into the agent's HTTP path in-process.

The curves: traffic follows two rush hours; PM2.5/PM10 follow traffic with a night-time inversion and, from
tick 20 to 60, a pollution episode at one station; the AQI is computed from them (HJ 633-2012), and the station's
`airQualityLevel` is the AQI's category, so the two never disagree. The bridge
creeps (displacement grows 0.02 mm per tick with a diurnal thermal swing) and at `jump_after` one span jumps
by 10 mm with a matching strain step: what the early-warning rules are for. Simulated time runs `speed` times
faster than the wall clock so a day passes in 24 minutes by default. Same seed, same readings.
"""

from __future__ import annotations

import logging
import math
import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from civicmesh.demo.generate import aqi_level
from civicmesh.exchange.demo import OWNER_OF_TYPE
from civicmesh.ingest.agent import Measurement
from civicmesh.store.ingest import PLATFORM_ORG
from civicmesh.workers import Periodic

if TYPE_CHECKING:
    from civicmesh.ingest.api import IotApi
    from civicmesh.platform import Platform

log = logging.getLogger("civicmesh.ingest.simulator")

APIKEY = "civicmesh-demo"
DEMO_CONTEXT = "urn:civicmesh:context:demo-city"
JUMP_SPAN = "urn:ngsi-ld:DeviceMeasurement:hz-bridge-displacement-3"
JUMP_STRAIN = "urn:ngsi-ld:DeviceMeasurement:hz-bridge-strain-3"
EPISODE_STATION = "urn:ngsi-ld:AirQualityObserved:hz-jiangnan-avenue"

# HJ 633-2012 Table 1, 24-hour breakpoints (µg/m³) against IAQI.
_IAQI = (0, 50, 100, 150, 200, 300, 400, 500)
_PM25 = (0, 35, 75, 115, 150, 250, 350, 500)
_PM10 = (0, 50, 150, 250, 350, 420, 500, 600)


def iaqi(concentration: float, breakpoints: tuple[int, ...]) -> int:
    """Linear interpolation between the breakpoints, rounded up (500 above the table)."""
    for i in range(1, len(breakpoints)):
        if concentration <= breakpoints[i]:
            lo, hi = breakpoints[i - 1], breakpoints[i]
            return math.ceil(_IAQI[i - 1] + (_IAQI[i] - _IAQI[i - 1]) * (concentration - lo) / (hi - lo))
    return 500


def aqi(pm25: float, pm10: float) -> int:
    return max(iaqi(pm25, _PM25), iaqi(pm10, _PM10))


def rush(hour: float) -> float:
    """0..1: morning (08:00) and evening (18:00) peaks over a night-time floor."""
    return 0.12 + 0.88 * max(math.exp(-((hour - 8) ** 2) / 2.0), math.exp(-((hour - 18) ** 2) / 3.0))


def _local(entity_id: str) -> str:
    return entity_id.rsplit(":", 1)[-1]


def _first(attr: Any) -> dict[str, Any]:
    first: dict[str, Any] = attr[0] if isinstance(attr, list) else attr
    return first


class Simulator:
    def __init__(self, entities: list[dict[str, Any]], *, seed: int = 2025, jump_after: int = 36,
                 speed: float = 60.0, start: datetime | None = None) -> None:
        self.rng = random.Random(seed)
        self.tick = 0
        self.jump_after = jump_after
        self.speed = speed
        self.start = start
        self.sensors = [e for e in entities if e["type"] in ("AirQualityObserved", "TrafficFlowObserved")
                        or (e["type"] == "DeviceMeasurement" and "numValue" in e)]

    def devices(self) -> list[dict[str, Any]]:
        """FIWARE device provisioning bodies for the demo sensors."""
        out = []
        for e in self.sensors:
            if e["type"] == "AirQualityObserved":
                attributes = [{"object_id": "p25", "name": "pm25", "type": "Number", "unitCode": "GQ"},
                              {"object_id": "p10", "name": "pm10", "type": "Number", "unitCode": "GQ"},
                              {"object_id": "aqi", "name": "airQualityIndex", "type": "Integer"},
                              {"object_id": "lvl", "name": "airQualityLevel", "type": "Text"}]
            elif e["type"] == "TrafficFlowObserved":
                attributes = [{"object_id": "i", "name": "intensity", "type": "Integer"},
                              {"object_id": "o", "name": "occupancy", "type": "Number", "unitCode": "C62"},
                              {"object_id": "s", "name": "averageVehicleSpeed", "type": "Number", "unitCode": "KMH"},
                              {"object_id": "c", "name": "congested", "type": "Boolean"}]
            else:
                unit = _first(e["numValue"]).get("unitCode")
                attributes = [{"object_id": "v", "name": "numValue", "type": "Number",
                               **({"unitCode": unit} if unit else {})}]
            out.append({"device_id": _local(e["id"]), "entity_name": e["id"], "entity_type": e["type"],
                        "apikey": APIKEY, "attributes": attributes})
        return out

    def hour(self, now: datetime) -> float:
        """Simulated local hour in Hangzhou (UTC+8), running `speed` times faster than `now` since the start."""
        start = self.start or now
        self.start = start
        simulated = start.timestamp() + (now - start).total_seconds() * self.speed
        return (simulated / 3600 + 8) % 24

    def readings(self, now: datetime) -> list[tuple[str, str]]:
        """The next tick: (device id, UltraLight payload) for every sensor."""
        self.tick += 1
        hour = self.hour(now)
        load = rush(hour)
        thermal = math.sin((hour - 9) / 24 * 2 * math.pi)  # deck temperature peaks mid-afternoon
        out = []
        for e in self.sensors:
            eid = e["id"]
            if e["type"] == "AirQualityObserved":
                base = max(5.0, float(_first(e["pm25"])["value"]))
                night = 0.35 if hour < 5 or hour > 22 else 0.0  # inversion keeps particles near the ground
                episode = 1.0
                if eid == EPISODE_STATION and 20 <= self.tick <= 60:
                    episode = 1.0 + 3.0 * math.sin(math.pi * (self.tick - 20) / 40)
                pm25 = round(base * (0.55 + 1.1 * load + night) * episode * self.rng.uniform(0.92, 1.08), 1)
                pm10 = round(pm25 * self.rng.uniform(1.6, 1.9), 1)
                index = aqi(pm25, pm10)
                out.append((_local(eid), f"p25|{pm25}|p10|{pm10}|aqi|{index}|lvl|{aqi_level(index)}"))
            elif e["type"] == "TrafficFlowObserved":
                flow = min(1.0, load * self.rng.uniform(0.85, 1.12))
                occupancy = round(min(0.97, 0.9 * flow), 3)
                speed = round(max(5.0, 62 * (1.05 - 0.85 * flow)), 1)
                out.append((_local(eid), f"i|{round(1900 * flow)}|o|{occupancy}|s|{speed}|c|{str(flow > 0.8).lower()}"))
            else:
                base = float(_first(e["numValue"])["value"])
                kind = e.get("measurementType", {}).get("value")
                if kind == "displacement":
                    value = base + 0.02 * self.tick + 0.4 * thermal + self.rng.gauss(0, 0.08)
                    if eid == JUMP_SPAN and self.tick >= self.jump_after:
                        value += 10.0
                elif kind == "strain":
                    value = base * (1 + 0.04 * thermal) + self.rng.gauss(0, 0.8)
                    if eid == JUMP_STRAIN and self.tick >= self.jump_after:
                        value += 25.0
                else:
                    value = base + 0.005 * thermal + self.rng.gauss(0, 0.003)
                out.append((_local(eid), f"v|{round(value, 3)}"))
        return out


class SimulatorRunner:
    """Provisions the demo devices and sends a tick of readings every `interval` seconds until stopped."""

    def __init__(self, api: IotApi, simulator: Simulator, interval: float, mqtt_url: str | None) -> None:
        self.api = api
        self.simulator = simulator
        self.interval = interval
        self.mqtt_url = mqtt_url
        self._publisher: Any = None
        self._worker = Periodic("demo-simulator", self._tick, interval, setup=self._setup)
        self.sent = 0

    async def provision(self) -> None:
        from civicmesh.ingest import provisioning
        from civicmesh.ngsild.model import now_iso

        store, resolver = self.api.store, self.api.resolver
        if not await store.groups(apikey=APIKEY):
            group = provisioning.service_group({"apikey": APIKEY, "jsonldContext": DEMO_CONTEXT,
                                                "description": "demo city sensors (simulated)"}, resolver)
            await store.add_groups([group], "", "/", now_iso())
        groups = await store.groups("", "/")
        # Each sensor belongs to the department that owns its entity, and its readings are written as that
        # department; types with no demo owner stay the platform's.
        fresh = [{**provisioning.device(d, resolver, groups),
                  "organization": OWNER_OF_TYPE.get(d["entity_type"], PLATFORM_ORG)}
                 for d in self.simulator.devices() if await store.device("", d["device_id"]) is None]
        if fresh:
            await store.add_devices(fresh, "", "/", now_iso())
        self.api.agent.forget_routes()
        log.info("demo simulator: %d devices provisioned (%d new)", len(self.simulator.devices()), len(fresh))

    def _connect_publisher(self) -> None:
        from urllib.parse import urlparse

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        parts = urlparse(self.mqtt_url)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="")
        client.connect_async(str(parts.hostname or "127.0.0.1"), parts.port or 1883, keepalive=30)
        client.loop_start()
        self._publisher = client

    async def step(self, now: datetime | None = None) -> int:
        readings = self.simulator.readings(now or datetime.now(UTC))
        for device_id, payload in readings:
            if self._publisher is not None and self._publisher.is_connected():
                self._publisher.publish(f"/{APIKEY}/{device_id}/attrs", payload.encode(), qos=1)
            else:
                self.api.agent.submit(Measurement(APIKEY, device_id, payload.encode(), "ul", "http"))
        self.sent += len(readings)
        return len(readings)

    async def _setup(self) -> None:
        await self.provision()
        if self.mqtt_url:
            self._connect_publisher()

    async def _tick(self) -> None:
        await self.step()

    async def start(self) -> None:
        self._worker.start()

    async def stop(self) -> None:
        await self._worker.stop()
        if self._publisher is not None:
            self._publisher.loop_stop()
            self._publisher.disconnect()


def simulator_runner(platform: Platform, api: IotApi) -> SimulatorRunner:
    """The demo city's simulator, sending through the IoT agent at the configured interval."""
    from civicmesh.demo import demo_entities

    settings = platform.settings
    return SimulatorRunner(api, Simulator(demo_entities(), seed=settings.simulator_seed),
                           settings.simulator_interval, settings.mqtt_url)
