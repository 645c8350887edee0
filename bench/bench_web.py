"""The dashboard in headless Debian Chromium: first load of 1,000 drawn entities, and 100 live updates a second.

A server (`civicmesh serve --demo`, simulator off, authentication off) runs in its own process with the demo city
plus generated stations, car parks and streetlights, so the map draws 1,000 entities. Numbers come from the page's
own performance API:

* time to an interactive map: `performance.now()` when the page has drawn every layer and wired its clicks (the
  mark `civicmesh-map-drawn`), from navigation start, over BENCH_WEB_LOADS fresh browser contexts (cold cache).
  Two ways, alternating in this run: the page as it is (every layer from `/web/layers` in one request) and the
  page loading its layers as it used to, one NGSI-LD query per layer (`/?layers=ngsi`). Baseline: the HTTP
  requests the page makes (config, base map, layers), one after another from Python.
* live lag: a writer sends 100 entity updates a second (batches of 10 every 100 ms) for BENCH_WEB_SECONDS; for
  each server-sent message the page records paint time minus the server's event time. "Not falling behind" means
  every update is rendered (a message says how many changes it stands for: the stream sends the newest state of
  an entity that changed twice before its page was sent it), the page ends up showing the last value written to
  every station, and the lag in the last third of the run is no worse than in the first.
  Baseline: the round trip of the writes themselves.

Run: `python -m bench web` (BENCH_ENGINES=sqlite by default here; add postgres with BENCH_ENGINES=sqlite,postgres;
BENCH_WEB_RATE sets the live updates per second, 100 by default).
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.bench_broker import each_engine
from bench.bench_ingest import _free_port, _wait

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
LOADS = int(os.environ.get("BENCH_WEB_LOADS", "5"))
SECONDS = float(os.environ.get("BENCH_WEB_SECONDS", "15"))
RATE = int(os.environ.get("BENCH_WEB_RATE", "100"))  # updates per second (the target is about 100)
DRAWN_TARGET = 1000


class WebServer:
    def __init__(self, database_url: str, workdir: Path) -> None:
        import subprocess

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "civicmesh.cli", "serve", "--port", str(self.port), "--database", database_url,
             "--demo", "--log-level", "error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "CIVICMESH_NO_AUTH": "true", "CIVICMESH_SIMULATOR_INTERVAL": "0",
                 "CIVICMESH_DATA_DIR": str(workdir)})
        _wait(lambda: httpx.get(f"{self.url}/web/config", timeout=2).status_code == 200, 90, "the server")
        self.link = {"Link": f'<{self.url}/ngsi-ld/v1/jsonldContexts/demo-city>; '
                             'rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def _extra_entities(count: int) -> list[dict[str, Any]]:
    """Stations, car parks and streetlights scattered over Binjiang's land (south of the river)."""
    rng = random.Random(8)
    out = []
    for n in range(count):
        lon, lat = round(rng.uniform(120.16, 120.24), 5), round(rng.uniform(30.19, 30.215), 5)
        where = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}
        kind = n % 3
        if kind == 0:
            out.append({"id": f"urn:ngsi-ld:AirQualityObserved:bench-{n}", "type": "AirQualityObserved",
                        "name": {"type": "Property", "value": f"bench station {n}"},
                        # Below every alert tier: loading raises no alerts, so the map holds exactly the target.
                        "airQualityIndex": {"type": "Property", "value": rng.randint(20, 95)}, "location": where})
        elif kind == 1:
            out.append({"id": f"urn:ngsi-ld:OffStreetParking:bench-{n}", "type": "OffStreetParking",
                        "name": {"type": "Property", "value": f"bench car park {n}"},
                        "totalSpotNumber": {"type": "Property", "value": 200},
                        "availableSpotNumber": {"type": "Property", "value": rng.randint(0, 200)}, "location": where})
        else:
            out.append({"id": f"urn:ngsi-ld:Streetlight:bench-{n}", "type": "Streetlight",
                        "status": {"type": "Property", "value": "ok"},
                        "powerState": {"type": "Property", "value": "on"}, "location": where})
    return out


def _populate(server: WebServer) -> int:
    with httpx.Client(base_url=server.url, headers=server.link, timeout=60) as c:
        layers = c.get("/web/config").json()["layers"]
        drawn = sum(int(c.get("/ngsi-ld/v1/entities", params={"type": t, "count": "true", "limit": 1}).headers[
            "NGSILD-Results-Count"]) for layer in layers for t in layer["types"])
        extra = _extra_entities(DRAWN_TARGET - drawn)
        for start in range(0, len(extra), 100):
            r = c.post("/ngsi-ld/v1/entityOperations/create", json=extra[start:start + 100])
            assert r.status_code in (201, 204), r.text
        return drawn + len(extra)


def _relay_idle(server: WebServer) -> float:
    """Wait until the event relay has worked off the loading (alert rules, history, metering): the dashboard's hub
    subscribes last, so a marker change arriving on /web/events means everything before it was handled."""
    import orjson

    marker = "urn:ngsi-ld:AirQualityObserved:bench-0"
    started = time.perf_counter()
    with httpx.Client(base_url=server.url, headers=server.link, timeout=httpx.Timeout(30, read=600)) as c:
        with c.stream("GET", "/web/events") as events:
            lines = events.iter_lines()
            next(lines)  # the hello event's first line: the stream is registered
            r = c.patch(f"/ngsi-ld/v1/entities/{marker}/attrs", json={"name": {"type": "Property", "value": "idle"}})
            assert r.status_code == 204, r.text
            for line in lines:
                if line.startswith("data:") and any(e.get("name") == "idle" and e["id"] == marker
                                                    for e in orjson.loads(line[5:]).get("entities", [])):
                    break
    return time.perf_counter() - started


def _api_baseline(server: WebServer, per_type: bool) -> float:
    """The page's own requests, from Python: the floor under the page's load time."""
    with httpx.Client(base_url=server.url, headers=server.link, timeout=60) as c:
        started = time.perf_counter()
        layers = c.get("/web/config").json()["layers"]
        c.get("/web/basemap")
        if not per_type:
            c.get("/web/layers")
            return (time.perf_counter() - started) * 1000
        for layer in layers:
            for entity_type in layer["types"]:
                c.get("/ngsi-ld/v1/entities", params={"type": entity_type, "options": "keyValues", "limit": 1000,
                                                      "offset": 0, "count": "true"})
        return (time.perf_counter() - started) * 1000


def _writer(server: WebServer, ids: list[str], stop: threading.Event, round_trips: list[float],
            sent: list[int], last: dict[str, int]) -> None:
    rng = random.Random(5)
    with httpx.Client(base_url=server.url, headers=server.link, timeout=30) as c:
        tick = time.perf_counter()
        while not stop.is_set():
            batch = [{"id": i, "type": "AirQualityObserved",
                      "airQualityIndex": {"type": "Property", "value": rng.randint(20, 250)}}
                     for i in rng.sample(ids, RATE // 10)]
            began = time.perf_counter()
            r = c.post("/ngsi-ld/v1/entityOperations/upsert", params={"options": "update"}, json=batch)
            round_trips.append((time.perf_counter() - began) * 1000)
            if r.status_code in (201, 204):
                sent[0] += len(batch)
                last.update((e["id"], e["airQualityIndex"]["value"]) for e in batch)
            tick += 0.1
            time.sleep(max(0.0, tick - time.perf_counter()))


def _engine(engine: str, database_url: str, workdir: Path) -> list[dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    server = WebServer(database_url, workdir)
    rows: list[dict[str, Any]] = []
    try:
        drawn = _populate(server)
        settle = _relay_idle(server)
        print(f"  web {engine}: the relay worked off the loading in {settle:.1f} s")
        load_before = os.getloadavg()[0]  # this machine is shared: say how busy it was
        baseline = {per_type: statistics.median(_api_baseline(server, per_type) for _ in range(3))
                    for per_type in (False, True)}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            loads: dict[bool, list[float]] = {False: [], True: []}
            shown = {False: 0, True: 0}
            for n in range(2 * LOADS):
                per_type = n % 2 == 1  # alternate, so both ways see the same moments of a noisy machine
                context = browser.new_context(viewport={"width": 1366, "height": 768})
                page = context.new_page()
                page.goto(server.url + ("/?layers=ngsi" if per_type else "/"))
                page.wait_for_function("window.civicmesh && window.civicmesh.ready", timeout=60000)
                loads[per_type].append(page.evaluate(
                    "performance.getEntriesByName('civicmesh-map-drawn')[0].startTime"))
                shown[per_type] = page.evaluate("document.querySelectorAll('g.layer .feature').length")
                context.close()
            for per_type in (False, True):
                load = statistics.median(loads[per_type])
                how = "one NGSI-LD query per layer (before)" if per_type else "/web/layers"
                rows.append({"scenario": f"first load to interactive map, {how}, {shown[per_type]} entities drawn, "
                                         f"{engine} (median of {LOADS}, cold cache; all: "
                                         f"{', '.join(f'{v:.0f}' for v in loads[per_type])}; load average "
                                         f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after)",
                             "value": load, "unit": "ms",
                             "baseline": f"the same API requests from Python {baseline[per_type]:.0f} ms",
                             "target": "<= 1000 ms", "met": load <= 1000 and shown[per_type] >= drawn})

            context = browser.new_context(viewport={"width": 1366, "height": 768})
            page = context.new_page()
            page.goto(server.url + "/")
            page.wait_for_function("window.civicmesh && window.civicmesh.live", timeout=60000)
            ids = page.evaluate("[...document.querySelectorAll('g.feature[data-type=AirQualityObserved]')]"
                                ".map(g => g.dataset.id)")
            stop, round_trips, sent, last = threading.Event(), [], [0], {}
            writer = threading.Thread(target=_writer, args=(server, ids, stop, round_trips, sent, last), daemon=True)
            writer.start()
            time.sleep(SECONDS)
            stop.set()
            writer.join(10)
            deadline = time.monotonic() + 10
            shows = "Object.fromEntries([...document.querySelectorAll('g.feature[data-type=AirQualityObserved]')]" \
                    ".map(g => [g.dataset.id, Number(g.dataset.aqi)]))"
            while time.monotonic() < deadline and (page.evaluate("window.civicmesh.stats.rendered") < sent[0]
                                                   or any(page.evaluate(shows).get(i) != v for i, v in last.items())):
                time.sleep(0.1)
            stale = sum(page.evaluate(shows).get(i) != v for i, v in last.items())
            stats = page.evaluate("window.civicmesh.stats")
            context.close()
            browser.close()
        lags = stats["lags"]
        server_lags = stats["serverLags"]
        print(f"  web live: messages {stats['messages']}, server part p50 {statistics.median(server_lags):.0f} ms, "
              f"frame work p50 {statistics.median(stats['frameMs']):.1f} ms max {max(stats['frameMs']):.0f} ms")
        third = max(1, len(lags) // 3)
        early, late = statistics.median(lags[:third]), statistics.median(lags[-third:])
        p95 = statistics.quantiles(lags, n=20)[18] if len(lags) >= 20 else max(lags, default=1e9)
        rate = sent[0] / SECONDS
        kept_up = stats["rendered"] >= sent[0] and not stale and late <= max(2 * early, early + 50)
        rows.append({"scenario": f"live lag p95, event -> painted, {rate:.0f} updates/s for {SECONDS:.0f} s, "
                                 f"{engine} (rendered {stats['rendered']}/{sent[0]}, {stale} stations not showing "
                                 f"their last value; median first third {early:.0f} ms, last third {late:.0f} ms)",
                     "value": p95, "unit": "ms",
                     "baseline": f"write round trip p95 {statistics.quantiles(round_trips, n=20)[18]:.0f} ms",
                     "target": "all rendered, not growing", "met": kept_up})
    finally:
        server.stop()
    return rows


def run() -> list[dict[str, Any]]:
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install chromium (never a downloaded browser)")
    rows: list[dict[str, Any]] = []
    for engine, url, workdir in each_engine(default="sqlite"):
        rows += _engine(engine, url, workdir)
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
