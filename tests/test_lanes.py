"""The test lanes: each test carries the marks of what it starts, so `make test-fast` starts nothing."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from civicmesh.config import Settings
from tests.conftest import BROWSER_FIXTURES, LIVE_FIXTURES, LiveServer, free_port, fresh_postgres_url, lanes_of

ROOT = Path(__file__).resolve().parent.parent


def fast_lane_expression() -> str:
    """The marker expression `make test-fast` passes to pytest, read from the Makefile itself."""
    found = re.search(r'^FAST_LANE\s*:?=\s*(.+)$', (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert found, "the Makefile defines FAST_LANE"
    return found.group(1).strip()


def test_a_test_using_the_server_is_live_and_postgres_on_postgres(server: LiveServer, database_url: str,
                                                                   request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("live") is not None
    on_postgres = database_url.startswith("postgresql")
    assert (request.node.get_closest_marker("postgres") is not None) == on_postgres


def test_classification_from_fixtures_and_parameters() -> None:
    shared = "tests/conftest.py::"
    assert lanes_of([], {}) == set()
    assert lanes_of([shared + "client", shared + "server"], {"database_url": "sqlite"}) == {"live"}
    assert lanes_of([shared + "client", shared + "server"], {"database_url": "postgres"}) == {"live", "postgres"}
    assert lanes_of([shared + "app_client", shared + "app"], {"database_url": "sqlite"}) == set()
    assert lanes_of(["tests/ledger/conftest.py::db_url"], {"db_url": "postgresql"}) == {"postgres"}
    assert lanes_of(["tests/web/conftest.py::page", "tests/web/conftest.py::browser", "tests/web/conftest.py::city"],
                    {"city": "sqlite"}) == {"browser", "live"}
    # Names alone do not classify: the broker's query tests have a `city` that is plain data.
    assert lanes_of(["tests/ngsild/test_query_live.py::city"], {}) == set()


def test_every_fixture_named_as_live_exists() -> None:
    for fixture in LIVE_FIXTURES | BROWSER_FIXTURES:
        path, name = fixture.split("::")
        assert f"def {name}(" in (ROOT / path).read_text(), f"{fixture} is not defined there: update tests/conftest.py"


def test_the_in_process_app_answers_without_a_socket(app_client: httpx.Client, database_url: str,
                                                      request: pytest.FixtureRequest) -> None:
    created = app_client.post("/entities", json={"id": "urn:ngsi-ld:Sensor:1", "type": "Sensor",
                                                 "level": {"type": "Property", "value": 3}})
    assert created.status_code == 201, created.text
    assert app_client.get("/entities/urn:ngsi-ld:Sensor:1").json()["level"]["value"] == 3
    assert request.node.get_closest_marker("live") is None
    assert (request.node.get_closest_marker("postgres") is not None) == database_url.startswith("postgresql")


def test_an_unmarked_test_cannot_start_a_server(tmp_path: Path) -> None:
    port = free_port()
    live = LiveServer(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", port=port))
    with pytest.raises(pytest.fail.Exception, match="starts a server on a loopback port but is not marked 'live'"):
        live.start()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass  # nothing listens: the guard refused before the server bound its port


def test_an_unmarked_test_cannot_make_a_postgres_database() -> None:
    with pytest.raises(pytest.fail.Exception, match="makes a PostgreSQL database but is not marked 'postgres'"):
        fresh_postgres_url()


def test_the_fast_lane_selects_no_live_postgres_or_browser_test() -> None:
    # Two files: one of unit tests, one whose every test needs sockets (receivers, restarts) on each engine.
    unit, live = "tests/ngsild/test_qlang.py", "tests/ngsild/test_subscriptions_live.py"
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m",
         fast_lane_expression(), unit, live], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert collected.returncode == 0, collected.stdout + collected.stderr
    selected = [line for line in collected.stdout.splitlines() if "::" in line]
    assert selected and all(line.startswith(unit) for line in selected), collected.stdout
    assert re.search(r"\d+ deselected", collected.stdout), collected.stdout
