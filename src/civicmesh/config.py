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
    # Connections in the process's one PostgreSQL pool, shared by every room (before: four pools, up to 28).
    database_pool_size: int = 12
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
