"""The demo city comes alive: readings change, the bridge creeps and jumps, and the rules raise alerts."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
from tests.conftest import start_server

from civicmesh.demo import demo_entities
from civicmesh.ingest.simulator import Simulator, aqi_from_pm25


def test_readings_follow_the_day_and_the_bridge_jumps() -> None:
    sim = Simulator(None, None, demo_entities(), jump_after=3)
    morning = datetime(2025, 6, 16, 0, 0, tzinfo=UTC)  # 08:00 in Hangzhou
    night = datetime(2025, 6, 15, 19, 0, tzinfo=UTC)  # 03:00 in Hangzhou
    rush = {r["id"]: r for r in sim.readings(morning)}
    quiet = {r["id"]: r for r in sim.readings(night)}
    flows = [i for i, r in rush.items() if r["type"] == "TrafficFlowObserved"]
    assert sum(rush[i]["intensity"]["value"] for i in flows) > 2 * sum(quiet[i]["intensity"]["value"] for i in flows)
    span = "urn:ngsi-ld:DeviceMeasurement:hz-bridge-displacement-2"
    before = quiet[span]["numValue"]["value"]
    after = {r["id"]: r for r in sim.readings(morning + timedelta(minutes=1))}[span]["numValue"]["value"]
    assert after - before > 5  # the jump at the third tick


def test_aqi_breakpoints() -> None:
    assert [aqi_from_pm25(v) for v in (0, 35, 75, 115, 150, 250)] == [0, 50, 100, 150, 200, 300]


def test_the_demo_city_moves_and_raises_bridge_alerts(tmp_path) -> None:
    server = start_server(f"sqlite:///{tmp_path / 'demo.db'}", demo=True, simulator_interval=0.3)
    try:
        api = httpx.Client(base_url=server.url + "/ngsi-ld/v1", timeout=30)
        span = "urn:ngsi-ld:DeviceMeasurement:hz-bridge-displacement-3"
        history: list = []
        alerts: list = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (len(history) >= 2 and alerts):
            r = api.get(f"/temporal/entities/{span}", params={"options": "temporalValues"})
            if r.status_code == 200:
                values = r.json()
                history = next(iter(v["values"] for k, v in values.items() if isinstance(v, dict) and "values" in v),
                               [])
            alerts = api.get("/entities", params={"type": "Alert", "options": "keyValues"}).json()
            time.sleep(0.3)
        assert len(history) >= 2, "the simulator did not move the bridge"
        bridge = [a for a in alerts if a["alertSource"] == span]
        assert bridge and bridge[0]["severity"] == "critical"  # 31.9 mm starts above the 30 mm tier
    finally:
        server.stop()
