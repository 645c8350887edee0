"""`civicmesh db ...`: upgrade every room's tables, back the database up, restore a backup."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console

from civicmesh.config import Settings

db_app = typer.Typer(help="The database: upgrade, backup, restore.", no_args_is_help=True)
console = Console(stderr=True)

DATABASE = typer.Option(None, "--database", help="Database URL (default: CIVICMESH_DATABASE_URL or settings).")


async def upgrade_all(url: str) -> dict[str, int]:
    """Run every room's pending migrations (as the server's start would); each room's version afterwards."""
    from civicmesh.store import open_store
    from civicmesh.store.alerts import AlertStore
    from civicmesh.store.citizen import CitizenStore
    from civicmesh.store.db import Database
    from civicmesh.store.exchange import ExchangeStore
    from civicmesh.store.ingest import IngestStore
    from civicmesh.store.ledger import LedgerStore

    db = Database.from_url(url)
    store = open_store(db)
    await store.open()
    try:
        await ExchangeStore(db).migrate()
        await CitizenStore(db).migrate()
        await AlertStore(store).migrate()
        await IngestStore(store).migrate()
        await asyncio.to_thread(LedgerStore(db).migrate)
        return await db.versions()
    finally:
        await store.close()
        await db.close()


@db_app.command()
def upgrade(database: str = DATABASE) -> None:
    """Bring every room's tables to this release (a database of an older release is upgraded in place)."""
    url = Settings.from_env(database_url=database).database_url
    for room, version in asyncio.run(upgrade_all(url)).items():
        console.print(f"{room}: version {version}")


@db_app.command()
def backup(file: Path, database: str = DATABASE) -> None:
    """Copy the whole database into FILE (SQLite: online backup API; PostgreSQL: pg_dump custom format)."""
    from civicmesh.store.db import Database

    url = Settings.from_env(database_url=database).database_url

    async def run() -> None:
        db = Database.from_url(url)
        await db.open()
        try:
            await db.backup(str(file))
        finally:
            await db.close()

    asyncio.run(run())
    console.print(f"backed up {url.split('@')[-1]} to {file}")


@db_app.command()
def restore(file: Path, database: str = DATABASE) -> None:
    """Replace the database's content with FILE, made by `civicmesh db backup` (stop the servers first)."""
    from civicmesh.store.db import Database

    if not file.is_file():
        console.print(f"[red]no backup file {file}[/]")
        raise typer.Exit(2)
    url = Settings.from_env(database_url=database).database_url

    async def run() -> None:
        db = Database.from_url(url)
        await db.open()
        try:
            await db.restore(str(file))
        finally:
            await db.close()

    asyncio.run(run())
    console.print(f"restored {file} into {url.split('@')[-1]}")
