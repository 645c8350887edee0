"""Settings: CLI flags override CIVICMESH_* environment variables, which override these defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

# Where data lives unless a database URL says otherwise; CIVICMESH_DATA_DIR moves it (the test suite does).
DEFAULT_DATA_DIR = Path(os.environ.get("CIVICMESH_DATA_DIR", "civicmesh-data"))


def _default_database_url() -> str:
    return f"sqlite:///{DEFAULT_DATA_DIR / 'civicmesh.db'}"


@dataclass
class Settings:
    database_url: str = field(default_factory=_default_database_url)
    host: str = "127.0.0.1"
    port: int = 8000
    # Directory of cached JSON-LD contexts: files named by URL (see ngsild.context) plus an optional index.json.
    context_dir: str | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    # Largest page a query may ask for with `limit`; default page size is smaller.
    max_limit: int = 1000
    default_limit: int = 20
    # History pages larger than this answer 206 Partial Content.
    temporal_page_size: int = 30
    demo: bool = False
    # Seconds between the demo city's simulated readings (0 turns the simulator off).
    simulator_interval: float = 5.0
    # Tests of single rooms set CIVICMESH_NO_AUTH=true; the security tests switch authentication on explicitly.
    no_auth: bool = field(default_factory=lambda: os.environ.get("CIVICMESH_NO_AUTH", "").lower() == "true")
    mqtt_url: str | None = None
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
    return raw
