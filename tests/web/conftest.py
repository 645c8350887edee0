"""Dashboard tests: demo-city servers on fresh databases, Debian Chromium under Playwright, SSE readers."""

from __future__ import annotations

import os
import queue
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from civicmesh.config import Settings
from tests.conftest import IN_CI, LiveServer, drop_postgres, free_port, fresh_postgres_url, require_postgres

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
DEMO_LINK = '<{url}/ngsi-ld/v1/jsonldContexts/demo-city>; rel="http://www.w3.org/ns/json-ld#context"; ' \
            'type="application/ld+json"'
ARTIFACTS = Path(os.environ.get("CIVICMESH_ARTIFACTS", Path(__file__).resolve().parents[2] / "artifacts")) / "web"


def fresh_database(engine: str, tmp: Path) -> str:
    if engine == "sqlite":
        return f"sqlite:///{tmp / 'civicmesh.db'}"
    require_postgres()
    return fresh_postgres_url("civicmesh_web")


def demo_server(database_url: str, **settings: Any) -> LiveServer:
    """The platform with the demo city loaded and its simulator off, so every change is the test's own."""
    live = LiveServer(Settings(database_url=database_url, port=free_port(), demo=True, simulator_interval=0,
                               **settings))
    return live.start()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def city(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A demo-city server (authentication off) on each engine."""
    url = fresh_database(request.param, tmp_path_factory.mktemp("web"))
    live = demo_server(url)
    yield live
    live.stop()
    if request.param == "postgres":
        drop_postgres(url)


@pytest.fixture(scope="module")
def city_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = demo_server(fresh_database("sqlite", tmp_path_factory.mktemp("web")))
    yield live
    live.stop()


def demo_client(live: LiveServer, key: str | None = None) -> httpx.Client:
    headers = {"Link": DEMO_LINK.format(url=live.url)}
    if key:
        headers["X-API-Key"] = key
    return httpx.Client(base_url=live.url, headers=headers, timeout=30)


def layer_counts(live: LiveServer, key: str | None = None) -> dict[str, int]:
    """What the NGSI-LD API says each dashboard layer should hold, for this caller."""
    with demo_client(live, key) as c:
        layers = c.get("/web/config").json()["layers"]
        counts = {}
        for layer in layers:
            total = 0
            for entity_type in layer["types"]:
                r = c.get("/ngsi-ld/v1/entities", params={"type": entity_type, "count": "true", "limit": 1000})
                assert r.status_code == 200, r.text
                total += len(r.json())
                assert int(r.headers["NGSILD-Results-Count"]) == len(r.json())
            counts[layer["id"]] = total
    return counts


# -- server-sent events --------------------------------------------------------------------------------------
class SseReader:
    """Reads /web/events in a background thread; `next(kind)` waits for the next event of that kind."""

    def __init__(self, live: LiveServer, headers: dict[str, str] | None = None, params: dict[str, str] | None = None):
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.status: int | None = None
        self.problem: Any = None
        self._socket: Any = None
        self._client = httpx.Client(base_url=live.url, headers=headers or {}, timeout=httpx.Timeout(30, read=60))
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(params or {},), daemon=True)
        self._thread.start()
        self._ready.wait(15)

    def _run(self, params: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", "/web/events", params=params) as response:
                self.status = response.status_code
                self._socket = response.extensions["network_stream"].get_extra_info("socket")
                if response.status_code != 200:
                    self.problem = orjson.loads(response.read())
                    self._ready.set()
                    return
                kind, data = "message", []
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].lstrip())
                    elif line == "":
                        if data:
                            self.events.put((kind, orjson.loads("\n".join(data))))
                            if kind == "hello":
                                self._ready.set()
                        kind, data = "message", []
        except (httpx.HTTPError, RuntimeError):
            pass
        finally:
            self._ready.set()

    def next(self, kind: str, timeout: float = 10.0, where: Any = None) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind!r} event within {timeout} s")
            try:
                got_kind, data = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if got_kind == kind and (where is None or where(data)):
                return data

    def close(self) -> None:
        """Hang up, as a closed page does (closing the client alone leaves a connection in use open)."""
        if self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)
        self._client.close()


# -- the browser ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is required under CI=true (.ci/run installs Debian's chromium)")
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to run browser tests")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if IN_CI:
            raise
        pytest.skip("the playwright package is missing: pip install -e '.[dev]'")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="en-GB")
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    # A file or script the page's Content-Security-Policy blocks is reported on the console, not as a page error.
    opened.on("console", lambda message: errors.append(message.text)
              if "Content Security Policy" in message.text else None)
    opened.errors = errors
    yield opened
    context.close()
    assert not errors, f"the page raised JavaScript errors: {errors}"


def wait_until(page: Any, expression: str, timeout: float = 30000) -> None:
    """Poll a JavaScript expression until it is true. Not page.wait_for_function: Playwright compiles its string
    predicate with eval inside the page, which the dashboard's Content-Security-Policy forbids (no
    'unsafe-eval'), and the page must be tested under the policy it is served with."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(f"() => Boolean({expression})"):
        if time.monotonic() > deadline:
            raise AssertionError(f"{expression} was not true within {timeout / 1000:.0f} s")
        page.wait_for_timeout(50)


def open_dashboard(page: Any, live: LiveServer) -> None:
    page.goto(live.url + "/")
    wait_until(page, "window.civicmesh && window.civicmesh.ready && window.civicmesh.live", timeout=20000)


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def shown_counts(page: Any) -> dict[str, int]:
    return page.evaluate("Object.fromEntries([...document.querySelectorAll('#layer-list li')]"
                         ".map(li => [li.dataset.layer, Number(li.dataset.count)]))")
