"""`make bench`: run every bench/bench_*.py module's `run()` and print one table.

Each row carries a baseline measured in the same run, because this machine is shared and noisy.
Usage: python -m bench [name ...]   (names: broker, ledger, feasibility, ...; default all)
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def main(argv: list[str]) -> int:
    # The rooms are measured with authentication off; bench_exchange measures what the gate itself costs.
    os.environ.setdefault("CIVICMESH_NO_AUTH", "true")
    # The benchmarks' receivers listen on loopback, which the endpoint policy admits only when listed; and they
    # measure throughput, which a per-key request quota (CIVICMESH_RATE_PER_SECOND) would cap by design.
    os.environ.setdefault("CIVICMESH_ENDPOINT_ALLOW", "127.0.0.1")
    os.environ.setdefault("CIVICMESH_RATE_PER_SECOND", "0")
    here = Path(__file__).parent
    names = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    wanted = argv or names
    console = Console()
    rows: list[dict] = []
    for name in wanted:
        if name not in names:
            console.print(f"[red]no benchmark named {name!r}; have {', '.join(names)}[/]")
            return 2
        started = time.perf_counter()
        console.print(f"[bold]bench {name}[/] ...")
        module = importlib.import_module(f"bench.bench_{name}")
        for row in module.run():
            rows.append({"bench": name, **row})
        console.print(f"  done in {time.perf_counter() - started:.0f} s")
    table = Table(title="civicmesh benchmarks")
    for column in ("bench", "scenario", "value", "unit", "baseline", "target", "met"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["bench"], row["scenario"], _figure(row["value"]), row["unit"], row["baseline"],
                      row["target"], "yes" if row["met"] else "NO")
    console.print(table)
    out = here / "results"
    out.mkdir(exist_ok=True)
    lines = ["| bench | scenario | value | unit | baseline (same run) | target | met |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['bench']} | {r['scenario']} | {_figure(r['value'])} | {r['unit']} | {r['baseline']} | "
              f"{r['target']} | {'yes' if r['met'] else 'no'} |" for r in rows]
    (out / "latest.md").write_text("\n".join(lines) + "\n")
    console.print(f"written to {out / 'latest.md'}")
    return 0


def _figure(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 10 else f"{value:,.1f}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
