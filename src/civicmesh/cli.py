"""The `civicmesh` command."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from civicmesh.config import Settings

app = typer.Typer(
    help="civicmesh: an open city data platform. It serves the ETSI NGSI-LD API on an embedded SQLite store "
         "(default) or PostgreSQL/PostGIS, loads city data, and runs the platform's rooms.",
    no_args_is_help=True, add_completion=False)
console = Console(stderr=True)

DATABASE_HELP = ("Database URL: sqlite:///path.db (default: ./civicmesh-data/civicmesh.db) or "
                 "postgresql://user@host:5432/db. Also CIVICMESH_DATABASE_URL.")


@app.command()
def serve(
    host: str = typer.Option(None, help="Interface to listen on (default 127.0.0.1)."),
    port: int = typer.Option(None, help="Port to listen on (default 8000)."),
    database: str = typer.Option(None, "--database", help=DATABASE_HELP),
    context_dir: str = typer.Option(None, help="Directory of cached JSON-LD @contexts (index.json maps URL -> file)."),
    demo: bool = typer.Option(False, "--demo", help="Load the demo city (Hangzhou) if the store has none of it."),
    no_auth: bool = typer.Option(False, "--no-auth", help="Turn authentication off (local experiments only)."),
    mqtt: str = typer.Option(None, "--mqtt", help="MQTT broker URL for IoT ingestion, e.g. mqtt://127.0.0.1:1883."),
    log_level: str = typer.Option("info", help="Log level."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Where keys and other files live (default: beside a "
                                  "SQLite database, else ./civicmesh-data)."),
) -> None:
    """Serve the platform over HTTP."""
    import uvicorn

    from civicmesh.app import create_app

    settings = Settings.from_env(host=host, port=port, database_url=database, context_dir=context_dir,
                                 demo=demo or None, no_auth=no_auth or None, mqtt_url=mqtt, log_level=log_level,
                                 data_dir=data_dir)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    console.print(f"[bold]civicmesh[/] data: {settings.database_url}, keys and files: {settings.data_home}")
    console.print(f"NGSI-LD API: http://{settings.host}:{settings.port}/ngsi-ld/v1/entities  "
                  f"docs: http://{settings.host}:{settings.port}/docs")
    console.print(f"[bold]operations dashboard: http://{settings.host}:{settings.port}/[/]")
    # Open dashboard streams (server-sent events) never end by themselves; give them a few seconds on shutdown.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                access_log=False, timeout_graceful_shutdown=3, **proxy_options(settings))


def proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's proxy-header options: X-Forwarded-For/-Proto are believed only from the configured proxies.
    uvicorn's own default believes them from 127.0.0.1, so any local process (or a proxy that passes the header
    through) could choose the client address the failed-login limiter counts against."""
    trusted = settings.trusted_proxies.strip()
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted or None}


@app.command()
def load(
    files: list[Path] = typer.Argument(..., help="NGSI-LD JSON or JSON-LD files: an entity or an array of them."),
    database: str = typer.Option(None, "--database", help=DATABASE_HELP),
    tenant: str = typer.Option("", help="NGSILD-Tenant to load into (default tenant if empty)."),
    context: str = typer.Option(None, help="@context URL for entities without their own @context."),
    context_dir: str = typer.Option(None, help="Directory of cached JSON-LD @contexts."),
    batch: int = typer.Option(500, help="Entities per transaction."),
) -> None:
    """Load entities into the store (upsert), with a progress bar."""
    settings = Settings.from_env(database_url=database, context_dir=context_dir)
    entities: list[Any] = []
    for path in files:
        try:
            data = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            console.print(f"[red]cannot read {path}: {exc}[/]")
            raise typer.Exit(2) from exc
        entities.extend(data if isinstance(data, list) else [data])
    loaded, failed = asyncio.run(_load(settings, entities, tenant, context, batch))
    console.print(f"loaded {loaded} entities into {settings.database_url}" + (f", {failed} failed" if failed else ""))
    if failed:
        raise typer.Exit(1)


async def _load(settings: Settings, entities: list[Any], tenant: str, context: str | None,
                batch: int) -> tuple[int, int]:
    from civicmesh.loader import load_entities
    from civicmesh.store import open_store

    store = open_store(settings.database_url)
    await store.open()
    try:
        with Progress(TextColumn("loading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
            task = progress.add_task("load", total=len(entities))
            result = await load_entities(store, settings.context_dir, entities, tenant=tenant, context=context,
                                         batch=batch, progress=lambda n: progress.advance(task, n))
        for entity_id, problem in result.errors[:20]:
            console.print(f"[red]{entity_id}[/]: {problem.detail}")
        return len(result.success), len(result.errors)
    finally:
        await store.close()


def _add_room_commands() -> None:
    from civicmesh.citizen.cli import citizen_app
    from civicmesh.exchange.cli import exchange_app
    from civicmesh.feasibility.cli import feasibility_app
    from civicmesh.ledger.cli import ledger_app
    from civicmesh.store.cli import db_app

    app.add_typer(ledger_app, name="ledger", help="The trusted ledger: keys, checkpoints, witnesses, export, verify.")

    app.add_typer(exchange_app, name="exchange",
                  help="The data exchange: organizations, API keys, catalog, agreements, the bootstrap admin key.")
    app.add_typer(feasibility_app, name="feasibility",
                  help="Economic feasibility: NPV/IRR, payback, sensitivity, Monte Carlo, input-output, report.")
    app.add_typer(citizen_app, name="citizen", help="The citizen desk: Open311, dispatch classifier, supervision.")
    app.add_typer(db_app, name="db", help="The database: upgrade every room's tables, backup, restore.")


_add_room_commands()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
