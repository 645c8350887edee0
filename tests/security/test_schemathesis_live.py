"""Schemathesis over the platform's own OpenAPI description, authentication off: no operation answers 500.

The default run sends CIVICMESH_SCHEMATHESIS_EXAMPLES (default 1) generated requests to each of the ~124
operations on SQLite, so `make test` stays fast; a longer campaign on both engines:
`CIVICMESH_SCHEMATHESIS_EXAMPLES=50 CIVICMESH_SCHEMATHESIS_ENGINES=sqlite,postgres \
 pytest tests/security/test_schemathesis_live.py`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.conftest import LiveServer, drop_postgres, fresh_postgres_url, require_postgres, start_server

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency (pip install -e .[dev])")

pytestmark = pytest.mark.live  # starts servers on loopback ports

# Server-sent event streams answer for as long as the client listens: nothing to fuzz, only a timeout to wait for.
STREAMS = {"/web/events"}
EXAMPLES = int(os.environ.get("CIVICMESH_SCHEMATHESIS_EXAMPLES", "1"))
ENGINES = os.environ.get("CIVICMESH_SCHEMATHESIS_ENGINES", "sqlite").split(",")


@pytest.fixture(params=ENGINES)
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    if request.param == "postgres":
        require_postgres()
        url = fresh_postgres_url("civicmesh_fuzz")
    else:
        url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    server = start_server(url, no_auth=True, simulator_interval=0, feasibility_seconds=20.0)
    yield server
    server.stop()
    if request.param == "postgres":
        drop_postgres(url)


def test_no_operation_answers_500(live: LiveServer) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    operations = [op for op in (result.ok() for result in schema.get_all_operations()) if op.path not in STREAMS]
    assert len(operations) > 100  # every room's routes are described
    server_errors: list[str] = []
    timings: list[tuple[float, str]] = []
    for operation in operations:

        @given(operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def call(case: schemathesis.Case) -> None:
            started = time.monotonic()
            response = case.call(base_url=live.url, timeout=60)
            timings.append((time.monotonic() - started, f"{case.method} {case.formatted_path}"))
            if response.status_code >= 500:
                server_errors.append(f"{case.method} {case.formatted_path} {case.query or ''} -> "
                                     f"{response.status_code} {response.text[:200]}")

        call()
    print("slowest:", sorted(timings, reverse=True)[:8])
    assert server_errors == []
