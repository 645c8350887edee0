"""A live platform with authentication on, the demo city and its organizations, and a key per kind of attacker."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import LiveServer
from tests.exchange.conftest import bootstrap_key, client, secure_server


@dataclass(frozen=True)
class Persona:
    """Someone knocking: a key (None: anonymous) and the caller the platform will see."""

    name: str
    key: str | None
    organization: str | None = None
    roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()


# Each persona is refused by some rules and admitted by others; the matrix says which, from the rules themselves.
PERSONAS: list[tuple[str, str | None, tuple[str, ...], tuple[str, ...]]] = [
    ("anonymous", None, (), ()),
    # Another organization with every scope and every role an organization can have, but no citizen desk of its own.
    ("other-organization", "zju-urban-lab", ("org_admin", "data_steward", "analyst"), ("*",)),
    # The owner of the demo's traffic data, as an analyst: every scope, the weakest role.
    ("wrong-role", "hz-transport", ("analyst",), ("*",)),
    # The same organization's steward, with a key only for reading entities.
    ("wrong-scope", "hz-transport", ("org_admin", "data_steward"), ("entities:read",)),
]


@dataclass
class DemoPlatform:
    live: LiveServer
    admin: str
    personas: list[Persona]
    organizations: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def demo_platform(database_url: str) -> Iterator[DemoPlatform]:
    admin = bootstrap_key(database_url)
    live = secure_server(database_url, demo=True, simulator_interval=0)
    try:
        personas = []
        with client(live, admin) as c:
            organizations = {o["id"]: o for o in c.get("/exchange/organizations").json()}
            for name, org, roles, scopes in PERSONAS:
                key = None
                if org is not None:
                    r = c.post(f"/exchange/organizations/{org}/keys", json={
                        "subject": name, "roles": list(roles), "scopes": list(scopes)})
                    assert r.status_code == 201, r.text
                    key = r.json()["key"]
                personas.append(Persona(name, key, org, roles, scopes))
        yield DemoPlatform(live, admin, personas, organizations)
    finally:
        live.stop()
