"""`civicmesh feasibility evaluate PROJECT.yaml --report report.html [--pdf] [--lang zh|en] [--json]`."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from civicmesh.feasibility.evaluate import as_json, run
from civicmesh.feasibility.model import ProjectError, load_project
from civicmesh.feasibility.report import money, render_html, write_pdf

feasibility_app = typer.Typer(help="Economic feasibility: NPV/IRR, payback, sensitivity, Monte Carlo risk, "
                                   "input-output multipliers, SWOT, and a report.", no_args_is_help=True)
console = Console(stderr=True, soft_wrap=True)  # error lines stay whole for grep and logs


@feasibility_app.callback()
def feasibility() -> None:
    """Economic feasibility of a project file."""
    # A callback keeps `evaluate` a subcommand even while it is the only one.


@feasibility_app.command()
def evaluate(
    project: Path = typer.Argument(..., help="The project file (YAML or JSON)."),
    report: Path | None = typer.Option(None, "--report", help="Write the self-contained HTML report here."),
    pdf: bool = typer.Option(False, "--pdf", help="Also print the report to PDF next to it (needs Chromium)."),
    lang: str = typer.Option("en", "--lang", help="Report language: zh or en."),
    json_output: bool = typer.Option(False, "--json", help="Print every figure as JSON on stdout."),
    draws: int = typer.Option(10_000, "--draws", min=100, max=5_000_000, help="Monte Carlo draws."),
    seed: int = typer.Option(2026, "--seed", help="Random seed (the same seed gives the same figures)."),
) -> None:
    """Evaluate a project file: indicators, sensitivity, risk, input-output effects, SWOT and a report."""
    if lang not in ("zh", "en"):
        console.print(f"[red]--lang must be zh or en, not {lang!r}[/]")
        raise typer.Exit(2)
    if pdf and report is None:
        console.print("[red]--pdf prints the report: give --report too[/]")
        raise typer.Exit(2)
    try:
        parsed = load_project(project)
        with Progress(TextColumn("Monte Carlo"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True, disable=not (parsed.uncertainty or parsed.risks)) as bar:
            task = bar.add_task("draws", total=draws)
            result = run(parsed, draws=draws, seed=seed, progress=lambda n: bar.advance(task, n))
    except ProjectError as exc:
        console.print(f"[red]{project}: {exc}[/]")
        raise typer.Exit(2) from exc
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    eco, fin = result.results["economic"], result.results["financial"]
    def m(v: float | None) -> str:
        return money(v, parsed.currency, "en")

    payback = "never" if fin["payback"] is None else f"{fin['payback']:.2f} years"
    console.print(f"economic NPV {m(eco['npv'])} at {parsed.social_rate:.0%}, financial NPV {m(fin['npv'])} at "
                  f"{parsed.financial_rate:.0%}, payback {payback}")
    if report is not None:
        text = render_html(result, lang)
        try:
            report.write_text(text, encoding="utf-8")
        except OSError as exc:
            console.print(f"[red]cannot write {report}: {exc.strerror}[/]")
            raise typer.Exit(1) from exc
        console.print(f"report: {report}")
        if pdf:
            target = report.with_suffix(".pdf")
            try:
                write_pdf(text, target)
            except RuntimeError as exc:
                console.print(f"[red]{exc}[/]")
                raise typer.Exit(1) from exc
            console.print(f"pdf: {target}")
    if json_output:
        typer.echo(orjson.dumps(as_json(result), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())
