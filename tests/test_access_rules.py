"""Every route declares its access rule: a route nobody gave one is found, and the app refuses to be built with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI

from civicmesh import access
from civicmesh.app import create_app
from civicmesh.config import Settings


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    # Authentication on: the rules are what decides; no server is started (create_app opens nothing).
    return create_app(Settings(database_url=f"sqlite:///{tmp_path_factory.mktemp('rules') / 'c.db'}",
                               no_auth=False))


def test_every_route_of_the_platform_declares_exactly_one_rule(app: FastAPI) -> None:
    found = list(access.endpoints(app))
    # The walk reaches into included routers: every room's routes are there, not just the top-level ones.
    paths = {e.path for e in found}
    for room in ("/exchange/whoami", "/ngsi-ld/v1/entities", "/citizen/triage", "/alerts/rules", "/iot/devices",
                 "/ledger/entries", "/feasibility/evaluate", "/web/layers", "/open311/v2/requests.{fmt}", "/metrics",
                 "/health", "/openapi.json"):
        assert room in paths, room
    assert len(found) > 120
    assert access.undeclared(app) == []


def test_a_route_without_a_rule_is_found_and_refused(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'c.db'}", no_auth=False))
    forgotten = APIRouter(prefix="/forgotten")

    @forgotten.get("/secrets")
    async def secrets() -> dict[str, str]:
        return {"secret": "open to anyone signed in, had nobody noticed"}

    app.include_router(forgotten)
    assert access.undeclared(app) == ["GET /forgotten/secrets (0 rules)"]
    with pytest.raises(RuntimeError, match="/forgotten/secrets"):
        access.seal(app)


def test_two_rules_on_one_route_are_ambiguous(tmp_path: Path) -> None:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    router = APIRouter(dependencies=[access.public.depends()])
    router.add_api_route("/both", lambda: {}, methods=["GET"], dependencies=[access.authenticated.depends()])
    app.include_router(router)
    assert access.undeclared(app) == ["GET /both (2 rules)"]
