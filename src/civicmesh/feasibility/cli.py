"""`civicmesh feasibility evaluate project.yaml --report report.html`."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from civicmesh.feasibility.project import ProjectError, load_project
from civicmesh.feasibility.report import render_html, write_pdf
from civicmesh.feasibility.run import as_json, run

feasibility_app = typer.Typer(help="Economic feasibility: NPV/IRR, payback, sensitivity, Monte Carlo risk, "
                                   "input-output multipliers, SWOT, and a report.", no_args_is_help=True)
console = Console(stderr=True)


@feasibility_app.command()
def evaluate(
    project: Path = typer.Argument(..., help="The project file (YAML)."),
    report: Path = typer.Option(None, "--report", help="Write the HTML report here."),
    pdf: bool = typer.Option(False, "--pdf", help="Also print the report to PDF (needs Chromium)."),
    lang: str = typer.Option("en", "--lang", help="Report language: zh or en."),
    as_json_output: bool = typer.Option(False, "--json", help="Print every figure as JSON on stdout."),
    draws: int = typer.Option(10_000, "--draws", help="Monte Carlo draws."),
) -> None:
    """Evaluate a project file."""
    if lang not in ("zh", "en"):
        console.print(f"[red]--lang must be zh or en, not {lang!r}[/]")
        raise typer.Exit(2)
    try:
        parsed = load_project(project)
        with Progress(TextColumn("Monte Carlo"), BarColumn(), MofNCompleteColumn(), console=console,
                      transient=True) as bar:
            task = bar.add_task("draws", total=draws)
            result = run(parsed, draws=draws, progress=lambda n: bar.advance(task, n))
    except ProjectError as exc:
        console.print(f"[red]{project}: {exc}[/]")
        raise typer.Exit(2) from exc
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    eco, fin = result.results["economic"], result.results["financial"]
    console.print(f"economic NPV {eco['npv']:,.0f} {parsed.currency}, financial NPV {fin['npv']:,.0f}, "
                  f"payback {fin['payback'] if fin['payback'] is not None else 'never'}")
    if report:
        text = render_html(result, lang)
        report.write_text(text, encoding="utf-8")
        console.print(f"report: {report}")
        if pdf:
            try:
                write_pdf(text, report.with_suffix(".pdf"))
                console.print(f"pdf: {report.with_suffix('.pdf')}")
            except RuntimeError as exc:
                console.print(f"[red]{exc}[/]")
                raise typer.Exit(1) from exc
    if as_json_output:
        typer.echo(orjson.dumps(as_json(result), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())
