"""The demo city's pulse: realistic readings every few seconds so history, subscriptions and alerts move.

Air quality follows a diurnal curve (morning and evening peaks), traffic follows rush hours, parking fills by
day, and the bridge creeps: displacement rises slowly, and after `jump_after` ticks one span jumps by 6 mm, the
kind of event the early-warning rules exist for. Deterministic for a given seed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from datetime import UTC, datetime
from typing import Any

from civicmesh.ngsild.model import EntityParser

log = logging.getLogger("civicmesh.simulator")


def _rush(hour: float) -> float:
    """0..1: two rush-hour peaks (08:00, 18:00) over a night-time floor."""
    return 0.15 + 0.85 * max(math.exp(-((hour - 8) ** 2) / 2.0), math.exp(-((hour - 18) ** 2) / 3.0))


def aqi_from_pm25(pm25: float) -> int:
    """China HJ 633-2012 IAQI for 24-hour PM2.5 (µg/m³), linear between the published breakpoints."""
    points = [(0, 0), (35, 50), (75, 100), (115, 150), (150, 200), (250, 300), (350, 400), (500, 500)]
    for (c_lo, i_lo), (c_hi, i_hi) in zip(points, points[1:], strict=False):
        if pm25 <= c_hi:
            return round(i_lo + (i_hi - i_lo) * (pm25 - c_lo) / (c_hi - c_lo))
    return 500


class Simulator:
    def __init__(self, broker: Any, terms: Any, entities: list[dict[str, Any]], *, seed: int = 2025,
                 jump_after: int = 60) -> None:
        self.broker = broker
        self.parser_terms = terms
        self.rng = random.Random(seed)
        self.tick = 0
        self.jump_after = jump_after
        self.base = {e["id"]: e for e in entities}
        self._task: asyncio.Task[None] | None = None

    def readings(self, now: datetime) -> list[dict[str, Any]]:
        """The next tick's updates (concise NGSI-LD fragments with ids and types)."""
        self.tick += 1
        hour = now.hour + now.minute / 60 + 8  # Hangzhou is UTC+8
        hour %= 24
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        out = []
        for entity_id, e in self.base.items():
            kind = e["type"]
            if kind == "AirQualityObserved":
                pm25 = max(3.0, e["pm25"][0]["value"] if isinstance(e["pm25"], list) else e["pm25"]["value"])
                value = round(pm25 * (0.6 + 0.8 * _rush(hour)) * self.rng.uniform(0.9, 1.1), 1)
                out.append({"id": entity_id, "type": kind,
                            "pm25": {"type": "Property", "value": value, "unitCode": "GQ", "observedAt": stamp},
                            "airQualityIndex": {"type": "Property", "value": aqi_from_pm25(value),
                                                "observedAt": stamp}})
            elif kind == "TrafficFlowObserved":
                load = _rush(hour) * self.rng.uniform(0.85, 1.15)
                out.append({"id": entity_id, "type": kind,
                            "intensity": {"type": "Property", "value": round(1800 * load), "observedAt": stamp},
                            "occupancy": {"type": "Property", "value": round(min(0.98, 0.95 * load), 3),
                                          "observedAt": stamp},
                            "averageVehicleSpeed": {"type": "Property", "value": round(60 * (1.05 - 0.8 * load), 1),
                                                    "observedAt": stamp},
                            "congested": {"type": "Property", "value": load > 0.8, "observedAt": stamp}})
            elif kind == "OffStreetParking" and "totalSpotNumber" in e:
                total = e["totalSpotNumber"]["value"]
                occupied = min(total, round(total * (0.2 + 0.7 * _rush(hour)) * self.rng.uniform(0.9, 1.05)))
                out.append({"id": entity_id, "type": kind,
                            "availableSpotNumber": {"type": "Property", "value": total - occupied,
                                                    "observedAt": stamp},
                            "occupiedSpotNumber": {"type": "Property", "value": occupied, "observedAt": stamp}})
            elif kind == "DeviceMeasurement" and e["controlledProperty"]["value"] == "displacement":
                start = e["numValue"]["value"]
                creep = 0.02 * self.tick
                jump = 6.0 if entity_id.endswith("-2") and self.tick >= self.jump_after else 0.0
                value = round(start + creep + jump + self.rng.gauss(0, 0.1), 2)
                out.append({"id": entity_id, "type": kind,
                            "numValue": {"type": "Property", "value": value, "observedAt": stamp}})
            elif kind == "DeviceMeasurement" and e["controlledProperty"]["value"] == "strain":
                value = round(e["numValue"]["value"] * (1 + 0.05 * math.sin(hour / 24 * 2 * math.pi))
                              + self.rng.gauss(0, 1.0), 2)
                out.append({"id": entity_id, "type": kind,
                            "numValue": {"type": "Property", "value": value, "observedAt": stamp}})
        return out

    async def step(self, now: datetime | None = None) -> int:
        parser = EntityParser(self.parser_terms)
        docs = [parser.entity(r) for r in self.readings(now or datetime.now(UTC))]
        result = await self.broker.batch("", "upsert", docs, option="update")
        return len(result.success)

    async def run(self, interval: float) -> None:
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("simulator tick failed")
            await asyncio.sleep(interval)

    def start(self, interval: float) -> None:
        self._task = asyncio.create_task(self.run(interval), name="demo-simulator")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
