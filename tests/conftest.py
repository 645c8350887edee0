"""Shared fixtures: both store engines, and a real server on a loopback port for each."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

# Nothing a test starts may write into the checkout's ./civicmesh-data (where `make run` keeps the real data);
# set before civicmesh is imported, since the default data directory is read at import.
os.environ.setdefault("CIVICMESH_DATA_DIR", tempfile.mkdtemp(prefix="civicmesh-test-data-"))

from civicmesh.app import create_app  # noqa: E402
from civicmesh.cli import proxy_options  # noqa: E402
from civicmesh.config import Settings  # noqa: E402

# Room tests exercise behaviour with authentication off; tests/exchange/ turns it on and checks every room's
# endpoints behind it.
os.environ.setdefault("CIVICMESH_NO_AUTH", "true")
# The test receivers (webhooks, Mosquitto) listen on loopback, which the endpoint policy refuses unless allowed.
os.environ.setdefault("CIVICMESH_ENDPOINT_ALLOW", "127.0.0.1")

IN_CI = os.environ.get("CI") == "true"
PG_ADMIN = os.environ.get("CIVICMESH_TEST_PG", "postgresql://root@127.0.0.1:5432/postgres")


def postgres_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def require_postgres() -> None:
    if postgres_available():
        return
    if IN_CI:
        pytest.fail("PostgreSQL on 127.0.0.1:5432 is required under CI=true and is unreachable")
    pytest.skip("PostgreSQL on 127.0.0.1:5432 is unreachable")


def fresh_postgres_url(prefix: str = "civicmesh_test") -> str:
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def drop_postgres(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'civicmesh.db'}"
        return
    require_postgres()
    url = fresh_postgres_url()
    yield url
    drop_postgres(url)


@pytest.fixture
def private_database(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A database of the engine under test for this test alone (a server of its own, restarts, faults), so no
    other server relays its outbox or shares its queue: a SQLite file, or a fresh PostgreSQL database dropped
    afterwards."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'private.db'}"
        return
    url = fresh_postgres_url("civicmesh_private")
    yield url
    drop_postgres(url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """The real app under uvicorn on a loopback port, in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.port = settings.port
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on",
                                **proxy_options(settings))  # as `civicmesh serve` runs it
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def start_server(database_url: str, **settings: object) -> LiveServer:
    return LiveServer(Settings(database_url=database_url, port=free_port(), **settings)).start()  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def server(database_url: str) -> Iterator[LiveServer]:
    live = start_server(database_url, max_body_bytes=256 * 1024)
    yield live
    live.stop()


@pytest.fixture
def tenant() -> str:
    """Each test writes into its own tenant, so tests never see each other's entities."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client(server: LiveServer, tenant: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + "/ngsi-ld/v1", headers={"NGSILD-Tenant": tenant}, timeout=30) as c:
        yield c


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
