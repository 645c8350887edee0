"""A live server with authentication ON and the exchange mounted, on both engines."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from civicmesh.config import Settings
from tests.conftest import LiveServer, free_port


def secure_server(database_url: str, **settings: Any) -> LiveServer:
    return LiveServer(Settings(database_url=database_url, port=free_port(), no_auth=False,
                               max_body_bytes=64 * 1024, **settings)).start()


def bootstrap_key(database_url: str) -> str:
    from civicmesh.exchange.cli import exchange_app

    result = CliRunner().invoke(exchange_app, ["bootstrap", "--database-url", database_url])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def secure(database_url: str) -> Iterator[tuple[LiveServer, str]]:
    admin = bootstrap_key(database_url)
    live = secure_server(database_url)
    yield live, admin
    live.stop()


def client(live: LiveServer, key: str | None = None, **headers: str) -> httpx.Client:
    if key:
        headers["X-API-Key"] = key
    return httpx.Client(base_url=live.url, headers=headers, timeout=30)
