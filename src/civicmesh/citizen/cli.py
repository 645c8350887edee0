"""`civicmesh citizen ...`: classifier, dataset, catalogue, Open311 API keys and supervision."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

citizen_app = typer.Typer(
    help="Citizen desk: Open311 intake, dispatch classifier, time limits, supervision.", no_args_is_help=True
)
console = Console()


def _database_url(url: str | None) -> str:
    from civicmesh.config import Settings

    return url or Settings.from_env().database_url


@citizen_app.command("generate-dataset")
def generate_dataset(
    seed: int = typer.Option(12345, help="Generator seed; the committed file uses 12345."),
    out: Annotated[Path | None, typer.Option(help="Where to write (default: the packaged dataset).")] = None,
) -> None:
    """Rewrite the labelled dispatch dataset from the seeded generator."""
    from civicmesh.citizen.dataset import DATASET_PATH, write_dataset

    target = out or DATASET_PATH
    count = write_dataset(target, seed)
    console.print(f"wrote {count} labelled requests to {target}")


@citizen_app.command()
def evaluate(unseen: bool = typer.Option(True, help="Also score with whole subjects held out.")) -> None:
    """Train the classifier on the fixed split, report macro-F1 and classification throughput."""
    from civicmesh.citizen.classifier import DispatchClassifier
    from civicmesh.citizen.dataset import load_dataset, unseen_template_split

    rows = load_dataset()
    with console.status("training the dispatch classifier"):
        started = time.perf_counter()
        model = DispatchClassifier.train(rows)
        trained_in = time.perf_counter() - started
        result = model.evaluate(rows)
    console.print(result.report)
    console.print(
        f"macro-F1 on the held-out split: [bold]{result.macro_f1:.3f}[/bold] "
        f"({result.test_size} test / {result.train_size} train; "
        + ", ".join(f"{k} {v:.3f}" for k, v in result.per_language.items())
        + f"); trained in {trained_in:.2f} s"
    )
    texts = [r["text"] for r in rows]
    started = time.perf_counter()
    model.predict_many(texts)
    rate = len(texts) / (time.perf_counter() - started)
    console.print(f"throughput: {rate:,.0f} classifications/s (batch of {len(texts)})")
    if unseen:
        split = unseen_template_split(rows)
        harsh = DispatchClassifier.train(split).evaluate(split)
        console.print(f"macro-F1 with whole subjects unseen in training: {harsh.macro_f1:.3f}")


@citizen_app.command()
def train() -> None:
    """Train the classifier once (as the server does on first use) and print its held-out macro-F1."""
    evaluate(unseen=False)


@citizen_app.command()
def classify(text: str) -> None:
    """Show where a free-text request would be dispatched, with the top three departments."""
    from civicmesh.citizen.catalogue import default_catalogue
    from civicmesh.citizen.classifier import get_classifier

    catalogue = default_catalogue()
    prediction = get_classifier().predict(text)
    threshold = float(catalogue.dispatch.get("confidence_threshold", 0.45))
    for dept, p in prediction.ranking[:3]:
        console.print(f"{p:6.3f}  {dept:18s} {catalogue.department_name(dept)}")
    console.print("-> " + (prediction.department if prediction.confidence >= threshold else "manual triage"))


@citizen_app.command()
def catalogue(
    file: Annotated[Path | None, typer.Option(help="Catalogue YAML to check (default: packaged).")] = None,
) -> None:
    """Load and validate a dispatch catalogue and print its categories."""
    from civicmesh.citizen.catalogue import CatalogueError, load_catalogue

    try:
        cat = load_catalogue(file)
    except (CatalogueError, OSError) as exc:
        console.print(f"[red]catalogue invalid:[/red] {exc}")
        raise typer.Exit(1) from exc
    table = Table("service_code", "name", "kind", "days", "lead", "co")
    for s in cat.services.values():
        table.add_row(s.code, s.name, s.kind, str(cat.limit_days(s.kind)), s.lead, ", ".join(s.co))
    console.print(table)
    console.print(
        f"{len(cat.departments)} departments, {len(cat.districts)} districts, "
        f"jurisdiction {cat.jurisdiction_id}"
    )


@citizen_app.command("issue-key")
def issue_key(
    client: str,
    per_hour: int = typer.Option(None, help="Requests per hour (default from catalogue)."),
    database_url: str = typer.Option(None, help="Default: CIVICMESH_DATABASE_URL."),
) -> None:
    """Issue an Open311 api_key for a client application."""
    from civicmesh.store.citizen import CitizenStore
    from civicmesh.store.db import Database

    url = _database_url(database_url)
    key = secrets.token_urlsafe(24)

    async def run() -> None:
        db = Database.from_url(url)
        await db.open()
        try:
            store = CitizenStore(db)
            await store.migrate()
            await store.add_api_key(
                key, client, per_hour, dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            )
        finally:
            await db.close()

    asyncio.run(run())
    console.print(f"api_key for {client}: [bold]{key}[/bold]  (stored in {url.split('@')[-1]})")


@citizen_app.command()
def supervise(database_url: str = typer.Option(None, help="Default: CIVICMESH_DATABASE_URL.")) -> None:
    """Run one supervision round now: reminders, overdue notices, censures."""
    from civicmesh.citizen.catalogue import default_catalogue
    from civicmesh.citizen.classifier import get_classifier
    from civicmesh.citizen.service import CitizenDesk
    from civicmesh.store.citizen import CitizenStore
    from civicmesh.store.db import Database

    async def run() -> list[dict[str, object]]:
        db = Database.from_url(_database_url(database_url))
        await db.open()
        try:
            store = CitizenStore(db)
            await store.migrate()
            return await CitizenDesk(store, default_catalogue(), get_classifier).supervise()
        finally:
            await db.close()

    for action in asyncio.run(run()):
        console.print(action)
