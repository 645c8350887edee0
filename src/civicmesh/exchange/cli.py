"""`civicmesh exchange ...`: the bootstrap admin credential from the command line."""

from __future__ import annotations

import asyncio

import typer

from civicmesh.config import Settings

exchange_app = typer.Typer(help="Data exchange: identities and credentials.", no_args_is_help=True)


@exchange_app.callback()
def _group() -> None:
    """Keeps `exchange` a command group even while it has one command."""


@exchange_app.command("bootstrap")
def bootstrap(database_url: str = typer.Option(None, help="Database URL (default: CIVICMESH_DATABASE_URL)"),
              subject: str = typer.Option("bootstrap-admin", help="Who the key is for")) -> None:
    """Issue a platform-admin API key (shown once) for the platform organization."""
    from civicmesh.exchange.api import bootstrap_admin
    from civicmesh.exchange.service import Exchange
    from civicmesh.store.db import Database
    from civicmesh.store.exchange import ExchangeStore

    settings = Settings.from_env(database_url=database_url)

    async def run() -> str:
        db = Database.from_url(settings.database_url)
        await db.open()
        try:
            exchange = Exchange(None, ExchangeStore(db))
            await exchange.store.migrate()
            # Key issuance emits no change events, so the outbox need not exist yet.
            return str((await bootstrap_admin(exchange, subject))["key"])
        finally:
            await db.close()

    typer.echo(asyncio.run(run()))
