"""Finding 18: `civicmesh serve --database postgresql://.../<new>` creates the database before any pool connects.

Before, the ledger's pool connected while the app was still being built, to a database that did not exist yet,
and the server died with PoolTimeout instead of starting (the README promises the database is created).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import PG_ADMIN, drop_postgres, free_port, require_postgres

pytestmark = [pytest.mark.live, pytest.mark.postgres]


def test_serve_creates_a_missing_postgresql_database(tmp_path: Path) -> None:
    require_postgres()
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/civicmesh_new_{uuid.uuid4().hex[:10]}"
    port = free_port()
    env = {**os.environ, "CIVICMESH_DATA_DIR": str(tmp_path / "data"),
           "CIVICMESH_LEDGER_KEY_DIR": str(tmp_path / "keys"), "CIVICMESH_NO_AUTH": "true"}
    server = subprocess.Popen(
        [sys.executable, "-c", "from civicmesh.cli import main; main()", "serve", "--database", url,
         "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                pytest.fail(f"the server exited with {server.returncode}:\n{server.stdout.read()[-3000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not answer /health in 90 s"
            time.sleep(0.2)
        entity = {"id": "urn:ngsi-ld:Streetlight:new-db-1", "type": "Streetlight",
                  "powerState": {"type": "Property", "value": "on"}}
        assert httpx.post(f"{base}/ngsi-ld/v1/entities", json=entity, timeout=10).status_code == 201
        got = httpx.get(f"{base}/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:new-db-1", timeout=10)
        assert got.json()["powerState"]["value"] == "on"
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        drop_postgres(url)
