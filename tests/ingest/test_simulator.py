"""The demo city comes alive: sensors publish through the IoT agent, readings change, the bridge jumps, alerts rise."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from tests.conftest import start_server

from civicmesh.app import service
from civicmesh.demo import demo_entities
from civicmesh.ingest.simulator import JUMP_SPAN, Simulator, SimulatorRunner, aqi, iaqi

START = datetime(2025, 6, 16, 0, 0, tzinfo=UTC)  # 08:00 in Hangzhou, the morning rush


def test_hj633_breakpoints() -> None:
    pm25 = (0, 35, 75, 115, 150, 250, 350, 500)
    assert [iaqi(c, pm25) for c in (0, 35, 75, 115, 150, 250, 350, 500, 900)] == [0, 50, 100, 150, 200, 300, 400,
                                                                                     500, 500]
    assert aqi(35, 200) == 125  # PM10 200 µg/m³ dominates: 100 + 50 * (200 - 150) / 100


# HJ 633-2012 AQI categories (shared/reference/scenarios-feasibility.md): upper bound of each, and its name.
CATEGORIES = ((50, "excellent"), (100, "good"), (150, "lightlyPolluted"), (200, "moderatelyPolluted"),
              (300, "heavilyPolluted"), (float("inf"), "severelyPolluted"))


def category(index: int) -> str:
    return next(name for top, name in CATEGORIES if index <= top)


def test_every_station_reading_carries_the_level_of_its_index() -> None:
    sim = Simulator(demo_entities(), seed=3, speed=60.0, start=START)
    levels = set()
    for n in range(70):  # the pollution episode runs from tick 20 to 60
        for _, payload in sim.readings(START + timedelta(seconds=5 * n)):
            fields = payload.split("|")
            if fields[0] != "p25":
                continue
            reading = dict(zip(fields[::2], fields[1::2], strict=True))
            assert reading["lvl"] == category(int(reading["aqi"])), payload
            levels.add(reading["lvl"])
    assert len(levels) >= 2, levels  # the index moves across categories, and the level with it
    stations = [d for d in sim.devices() if d["entity_type"] == "AirQualityObserved"]
    assert all({"object_id": "lvl", "name": "airQualityLevel", "type": "Text"} in d["attributes"]
               for d in stations)


def test_readings_follow_the_day_are_seeded_and_the_bridge_jumps() -> None:
    def run(seed: int) -> list[list[tuple[str, str]]]:
        sim = Simulator(demo_entities(), seed=seed, jump_after=5, speed=60.0, start=START)
        return [sim.readings(START + timedelta(seconds=5 * n)) for n in range(8)]

    first, again, other = run(7), run(7), run(8)
    assert first == again and first != other
    sim = Simulator(demo_entities(), seed=1, speed=60.0, start=START)
    rush = dict(sim.readings(START))
    night = dict(sim.readings(START + timedelta(minutes=19)))  # 19 simulated hours later: 03:00
    flows = [d for d, payload in rush.items() if payload.startswith("i|")]
    assert len(flows) == 68 and len(rush) == 68 + 10 + 12

    def total(readings: dict[str, str]) -> int:
        return sum(int(readings[d].split("|")[1]) for d in flows)

    assert total(rush) > 2 * total(night)
    span = JUMP_SPAN.rsplit(":", 1)[-1]
    values = [float(dict(tick)[span].split("|")[1]) for tick in first]
    assert values[4] - values[3] > 8  # the jump at the fifth tick
    assert abs(values[3] - values[0]) < 1  # before it, a slow creep


@pytest.mark.live
def test_the_demo_city_moves_through_the_agent_and_raises_bridge_alerts(tmp_path: Any) -> None:
    server = start_server(f"sqlite:///{tmp_path / 'demo.db'}", demo=True, simulator_interval=0.2)
    try:
        runner = service(server.app, SimulatorRunner)
        runner.simulator.jump_after = 8
        api = httpx.Client(base_url=server.url + "/ngsi-ld/v1", timeout=30)
        history: list = []
        bridge_alerts: list = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not (len(history) >= 3 and bridge_alerts):
            r = api.get(f"/temporal/entities/{JUMP_SPAN}", params={"attrs": "numValue", "options": "temporalValues",
                                                                   "lastN": 20},
                        headers={"Link": '<urn:civicmesh:context:demo-city>; rel="http://www.w3.org/ns/json-ld#context"'})
            if r.status_code == 200:
                history = r.json().get("numValue", {}).get("values", [])
            found = api.get("/entities", params={"type": "Alert", "options": "keyValues", "limit": 100}).json()
            bridge_alerts = [a for a in found if a["alertSource"] == JUMP_SPAN]
            time.sleep(0.3)
        assert len({v for v, _ in history}) >= 3, "the simulator did not move the bridge"
        assert bridge_alerts, "the bridge jumped and no alert was raised"
        assert {a["subCategory"] for a in bridge_alerts} == {"structuralDeformation"}
        # The stations' level moved with their index.
        stations = api.get("/entities", params={"type": "AirQualityObserved", "options": "keyValues", "limit": 100},
                           headers={"Link": '<urn:civicmesh:context:demo-city>; '
                                            'rel="http://www.w3.org/ns/json-ld#context"'}).json()
        assert len(stations) == 10
        for station in stations:
            assert station["airQualityLevel"] == category(station["airQualityIndex"]), station
        stats = httpx.get(f"{server.url}/iot/stats").json()
        assert stats["agent"]["stored"] > 90 and stats["devices"]["hz-bridge-displacement-3"]["stored"] >= 3
    finally:
        server.stop()
