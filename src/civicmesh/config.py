"""Settings: CLI flags override CIVICMESH_* environment variables, which override these defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

# Where data lives when neither CIVICMESH_DATA_DIR nor a SQLite database URL says otherwise (relative to the
# directory the server starts in, which is what `make run` relies on).
FALLBACK_DATA_DIR = Path("civicmesh-data")


def _data_dir_from_env() -> Path | None:
    # Read when Settings is built, never at import: the test suite and `civicmesh serve` set it before that.
    raw = os.environ.get("CIVICMESH_DATA_DIR")
    return Path(raw) if raw else None


def _no_auth_from_env() -> bool:
    return os.environ.get("CIVICMESH_NO_AUTH", "").lower() == "true"


def sqlite_file(database_url: str) -> Path | None:
    """The file of a SQLite database URL (sqlite:///relative.db, sqlite:////absolute.db), else None."""
    if urlsplit(database_url).scheme != "sqlite":
        return None
    path = database_url[len("sqlite://"):]
    path = path[1:] if path.startswith("/") else path
    return Path(path) if path and path != ":memory:" else None


@dataclass
class Settings:
    # Empty means "civicmesh.db in the data directory" (see __post_init__).
    database_url: str = ""
    # Connections in the process's one PostgreSQL pool, shared by every room (before: four pools, up to 28).
    database_pool_size: int = 12
    # CIVICMESH_DATA_DIR: where civicmesh keeps its files (see data_home) and the default database.
    data_dir: Path | None = field(default_factory=_data_dir_from_env)
    host: str = "127.0.0.1"
    port: int = 8000
    # Directory of cached JSON-LD contexts: files named by URL (see ngsild.context) plus an optional index.json.
    context_dir: str | None = None
    # Largest request body on any route, authentication on or off (a route may declare its own, bodies.limit_body).
    max_body_bytes: int = 8 * 1024 * 1024
    # Origins whose pages may call the API from a browser (comma-separated); empty: no cross-origin access.
    cors_origins: str = ""
    # Largest page a query may ask for with `limit`; default page size is smaller.
    max_limit: int = 1000
    default_limit: int = 20
    # History pages larger than this answer 206 Partial Content.
    temporal_page_size: int = 30
    demo: bool = False
    # Seconds between the demo city's simulated readings (0 turns the simulator off).
    simulator_interval: float = 5.0
    # The simulator's random seed, so two runs of the demo city send the same readings.
    simulator_seed: int = 2025
    # Tests of single rooms set CIVICMESH_NO_AUTH=true; the security tests switch authentication on explicitly.
    no_auth: bool = field(default_factory=_no_auth_from_env)
    mqtt_url: str | None = None
    # The IoT agent's MQTT client id; by default derived from the database URL (see ingest.mqtt).
    mqtt_client_id: str | None = None
    nats_url: str | None = None
    log_level: str = "info"
    # Hostile input (issue 13): one feasibility evaluation runs in a child process with this much address space
    # (200,000 draws of the largest example take 150 MB) and is stopped after this many seconds (1.5 s for it).
    feasibility_memory_mb: int = 1024
    feasibility_seconds: float = 60.0
    # On PostgreSQL, a query that matches regular expressions (`~`) is cancelled after this many seconds.
    regex_seconds: float = 5.0
    # Vertices one geometry of a geo-query may have: a 15,000-vertex polygon took 9 s to test against the city.
    max_geometry_vertices: int = 1000
    # Outbound endpoints (notifications, context sources, callbacks) the endpoint policy admits although they are
    # loopback or private: comma-separated addresses, CIDRs or host[:port] (see civicmesh.endpoints). Link-local
    # and cloud-metadata addresses stay refused whatever this says. `make run`, the conformance script and the
    # test suite set 127.0.0.1.
    endpoint_allow: str = field(default_factory=lambda: os.environ.get("CIVICMESH_ENDPOINT_ALLOW", ""))
    # Peers whose X-Forwarded-For / X-Forwarded-Proto uvicorn believes (comma-separated addresses, or "*").
    # Empty (the default): no proxy header is trusted, so a client cannot choose the address the failed-login
    # limiter counts against.
    trusted_proxies: str = ""
    # Failed authentications before a presented credential (or, for unknown credentials, a client address) waits.
    auth_failure_limit: int = 20
    auth_failure_window: float = 60.0
    # Requests per credential: a token bucket refilled at this rate per second, holding at most `burst` requests;
    # beyond it 429 with Retry-After. 0 turns it off.
    rate_per_second: float = 50.0
    rate_burst: int = 200
    # Subscriptions one organization may hold (one analyst made 500 in 1.1 s in the red-team pass).
    max_subscriptions_per_org: int = 200
    # Entities in one entityOperations batch for callers that are not platform admins.
    max_batch_entities: int = 1000
    # Open dashboard live streams (/web/events) per identity.
    max_sse_per_identity: int = 4
    # Whether a JWT may act for the platform organization (org: platform); off, such tokens are refused.
    jwt_platform_org: bool = False
    # The ledger's origin line (C2SP checkpoints are signed under this name) and its key directory
    # (default: ledger-keys in the data home).
    ledger_origin: str = "civicmesh.local/ledger"
    ledger_key_dir: Path | None = None
    # A YAML service catalogue for the citizen desk instead of the built-in one.
    citizen_catalogue: str | None = None
    # A YAML/JSON file of alert rules loaded at start, besides the demo city's.
    alert_rules: str | None = None

    def __post_init__(self) -> None:
        from civicmesh.endpoints import parse_allow

        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir or FALLBACK_DATA_DIR) / 'civicmesh.db'}"
        parse_allow(self.endpoint_allow)  # a typo in the allow list fails at start, not at the first notification

    @property
    def data_home(self) -> Path:
        """Where files that belong with the database live (ledger keys, the bootstrap admin key):
        CIVICMESH_DATA_DIR when set, else beside a SQLite database file, else ./civicmesh-data."""
        if self.data_dir is not None:
            return self.data_dir
        database_file = sqlite_file(self.database_url)
        return database_file.parent if database_file is not None else FALLBACK_DATA_DIR

    @property
    def ledger_keys(self) -> Path:
        return self.ledger_key_dir or self.data_home / "ledger-keys"

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Build settings from CIVICMESH_<FIELD> variables, then apply explicit (non-None) overrides."""
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = os.environ.get(f"CIVICMESH_{f.name.upper()}")
            if raw is None:
                continue
            values[f.name] = _coerce(raw, f.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def _coerce(raw: str, annotation: object) -> object:
    text = str(annotation)
    if text.startswith("int"):
        return int(raw)
    if text.startswith("float"):
        return float(raw)
    if text.startswith("bool"):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if text.startswith("Path"):
        return Path(raw) if raw else None
    return raw
