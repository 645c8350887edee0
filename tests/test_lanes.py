"""The test lanes: each test carries the marks of what it starts, so `make test-fast` starts nothing."""

from __future__ import annotations

import itertools
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from civicmesh.config import Settings
from tests.conftest import (
    BROWSER_FIXTURES,
    LIVE_FIXTURES,
    ROOT,
    LiveServer,
    free_port,
    fresh_postgres_url,
    lanes_of,
    start_server,
    starts_a_server,
)

LANES = ("live", "postgres", "browser")


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
    def uses(*names: str) -> dict[str, None]:
        return dict.fromkeys(names)

    shared = "tests/conftest.py::"
    assert lanes_of(uses(), {}) == set()
    assert lanes_of(uses("tests/ngsild/test_subscriptions_live.py::receiver"), {}) == {"live"}
    assert lanes_of(uses(shared + "app_client", shared + "app"), {"database_url": "sqlite"}) == set()
    assert lanes_of(uses(shared + "app_client", shared + "app"), {"database_url": "postgres"}) == {"postgres"}
    assert lanes_of(uses("tests/ledger/conftest.py::db_url"), {"db_url": "postgresql"}) == {"postgres"}
    assert lanes_of(uses("tests/web/conftest.py::page", "tests/web/conftest.py::browser"), {}) == {"browser"}


def test_a_fixture_is_live_when_its_body_starts_a_server() -> None:
    from tests.conftest import app as in_process_app
    from tests.conftest import server as shared_server

    assert starts_a_server(shared_server.__wrapped__)  # type: ignore[attr-defined]
    assert starts_a_server(own_server.__wrapped__)  # type: ignore[attr-defined]
    assert not starts_a_server(in_process_app.__wrapped__)  # type: ignore[attr-defined]


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[LiveServer]:
    live = start_server(f"sqlite:///{tmp_path / 'own.db'}")
    yield live
    live.stop()


def test_a_fixture_written_here_that_starts_a_server_makes_its_tests_live(own_server: LiveServer,
                                                                          request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("live") is not None
    assert httpx.get(own_server.url + "/health", timeout=30).status_code == 200


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


def selected_by_fast_lane(lanes: set[str]) -> bool:
    """Whether `make test-fast` runs a test in these lanes: the Makefile's marker expression, evaluated the way
    pytest's -m does (each marker name is true when the test carries it)."""
    expression = fast_lane_expression()
    assert set(re.findall(r"[a-z_]+", expression)) <= {"not", "and", "or", *LANES}, expression
    return bool(eval(expression, {"__builtins__": {}}, {lane: lane in lanes for lane in LANES}))


def test_the_fast_lane_runs_exactly_the_tests_in_no_lane(request: pytest.FixtureRequest) -> None:
    for size in range(len(LANES) + 1):
        for lanes in itertools.combinations(LANES, size):
            assert selected_by_fast_lane(set(lanes)) == (not lanes), lanes
    # And on this run's own tests: whatever carries a lane mark is outside the fast lane.
    for item in request.session.items:
        marked = {lane for lane in LANES if item.get_closest_marker(lane) is not None}
        assert selected_by_fast_lane(marked) == (not marked), item.nodeid
