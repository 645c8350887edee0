"""When the database drops the broker's connections, requests get 503 ProblemDetails (not 500), nothing is half
written, and the broker recovers by itself once the database takes connections again."""

from __future__ import annotations

import time

import httpx
import psycopg
import pytest
from tests.conftest import PG_ADMIN, start_server


def _entity(n: int) -> dict[str, object]:
    return {"id": f"urn:ngsi-ld:Sensor:S{n}", "type": "Sensor", "level": {"type": "Property", "value": n}}


@pytest.mark.live  # starts its own server
def test_lost_database_connections_answer_503_and_recover(private_database: str) -> None:
    if not private_database.startswith("postgresql"):
        pytest.skip("connections that the server drops exist on PostgreSQL only")
    url = private_database
    server = start_server(url)
    try:
        api = httpx.Client(base_url=server.url + "/ngsi-ld/v1", timeout=30)
        assert api.post("/entities", json=_entity(1)).status_code == 201
        server.app.state.platform.store._pool.timeout = 2.0  # how long a request waits for a connection
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:  # the database goes away for a while
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
            statuses = []
            for n in range(2, 4):
                r = api.post("/entities", json=_entity(n))
                statuses.append(r.status_code)
                assert r.status_code == 503, r.text
                body = r.json()
                assert r.headers["content-type"].startswith("application/problem+json")
                assert body["status"] == 503 and "try again" in body["detail"]
                assert r.headers["retry-after"] == "1"
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        for n in range(4, 12):  # back: the pool reconnects by itself
            r = api.post("/entities", json=_entity(n))
            statuses.append(r.status_code)
            if r.status_code != 201:
                time.sleep(0.5)
        assert 500 not in statuses and 503 in statuses, statuses
        assert statuses[-1] == 201  # the pool replaced the dead connections
        stored = {e["id"] for e in api.get("/entities", params={"type": "Sensor", "limit": 100}).json()}
        created = {f"urn:ngsi-ld:Sensor:S{n}" for n, s in zip(range(2, 12), statuses, strict=True) if s == 201}
        assert stored == {"urn:ngsi-ld:Sensor:S1"} | created  # a refused create left nothing behind
    finally:
        server.stop()
