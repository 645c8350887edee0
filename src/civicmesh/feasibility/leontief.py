"""Input–output (Leontief) multipliers and the economy-wide effect of the project's spending.

CSV layout (UTF-8, comma separated, amounts in one currency unit):

    ,<sector 1>,...,<sector n>,household,final_demand,output
    <sector i>,z_i1,...,z_in,<household consumption of i>,<other final demand of i>,<total output x_i>
    wages,<w_1>,...,<w_n>,,,
    employment,<jobs_1>,...,<jobs_n>,,,
    value_added,<va_1>,...,<va_n>,,,      (optional; wages are part of it)

Type I multipliers use the open model; Type II closes it for households (wages row, household column).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class TableError(ValueError):
    pass


@dataclass
class IOTable:
    sectors: list[str]
    Z: np.ndarray
    x: np.ndarray
    household: np.ndarray
    wages: np.ndarray
    employment: np.ndarray
    value_added: np.ndarray

    @property
    def A(self) -> np.ndarray:  # noqa: N802 - the textbook's name
        return self.Z / self.x[None, :]

    @property
    def L(self) -> np.ndarray:  # noqa: N802
        return np.linalg.inv(np.eye(len(self.x)) - self.A)

    def closed_L(self) -> np.ndarray:
        """The Leontief inverse with households as a sector (Type II)."""
        n = len(self.x)
        total_wages = self.wages.sum()
        if total_wages <= 0:
            raise TableError("Type II multipliers need a wages row with a positive total")
        closed = np.zeros((n + 1, n + 1))
        closed[:n, :n] = self.A
        closed[n, :n] = self.wages / self.x
        closed[:n, n] = self.household / total_wages
        return np.linalg.inv(np.eye(n + 1) - closed)


def load_table(path: str | Path) -> IOTable:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [r for r in csv.reader(handle) if any(cell.strip() for cell in r)]
    except OSError as exc:
        raise TableError(f"input-output table {path} cannot be read: {exc.strerror}") from exc
    header = [h.strip() for h in rows[0]]
    for needed in ("household", "final_demand", "output"):
        if needed not in header:
            raise TableError(f"input-output table {path}: the header needs a {needed!r} column")
    sectors = header[1:header.index("household")]
    body = {r[0].strip(): r[1:] for r in rows[1:]}

    def numbers(label: str, width: int, optional: bool = False) -> np.ndarray:
        if label not in body:
            if optional:
                return np.zeros(width)
            raise TableError(f"input-output table {path}: row {label!r} is missing")
        cells = body[label][:width]
        try:
            return np.array([float(c) if c.strip() else 0.0 for c in cells])
        except ValueError as exc:
            raise TableError(f"input-output table {path}: row {label!r} has a non-number: {exc}") from exc

    n = len(sectors)
    Z = np.array([numbers(s, n) for s in sectors])  # noqa: N806
    full = {s: numbers(s, len(header) - 1) for s in sectors}
    household = np.array([full[s][n] for s in sectors])
    x = np.array([full[s][n + 2] for s in sectors])
    if np.any(x <= 0):
        raise TableError(f"input-output table {path}: every sector needs a positive total output")
    table = IOTable(sectors, Z, x, household, numbers("wages", n), numbers("employment", n, True),
                    numbers("value_added", n, True))
    if np.any(table.A.sum(axis=0) >= 1):
        raise TableError(f"input-output table {path}: some sector buys more inputs than its output")
    return table


def multipliers(table: IOTable) -> dict[str, Any]:
    L = table.L  # noqa: N806
    n = len(table.sectors)
    out: dict[str, Any] = {"sectors": table.sectors, "type_i_output": L.sum(axis=0).tolist()}
    if table.wages.sum() > 0:
        closed = table.closed_L()
        out["type_ii_output"] = closed[:n, :n].sum(axis=0).tolist()
        income = table.wages / table.x
        out["type_i_income"] = ((income @ L) / np.where(income > 0, income, np.nan)).tolist()
    if table.employment.sum() > 0:
        jobs = table.employment / table.x
        out["employment_per_unit"] = (jobs @ L).tolist()
    if table.value_added.sum() > 0:
        out["value_added_per_unit"] = ((table.value_added / table.x) @ L).tolist()
    return out


def impact(table: IOTable, shock: dict[str, float], unit: float = 1.0) -> dict[str, Any]:
    """Economy-wide effect of spending `shock` (sector -> amount in currency) as final demand.

    `unit` is how many currency units one table unit holds (1e8 for a table in 亿元); outputs come back in
    currency, jobs in the table's employment unit.
    """
    unknown = set(shock) - set(table.sectors)
    if unknown:
        raise TableError(f"the shock names sectors the table does not have: {', '.join(sorted(unknown))}")
    if unit <= 0:
        raise TableError("the table unit must be positive")
    dy = np.array([shock.get(s, 0.0) for s in table.sectors]) / unit
    direct = float(dy.sum())
    type_i = table.L @ dy
    result: dict[str, Any] = {"spending": direct * unit, "output_type_i": float(type_i.sum()) * unit,
                              "by_sector_type_i": {s: float(v) * unit for s, v in zip(table.sectors, type_i,
                                                                                        strict=True)}}
    if table.wages.sum() > 0:
        n = len(table.sectors)
        type_ii = (table.closed_L() @ np.append(dy, 0.0))[:n]
        result["output_type_ii"] = float(type_ii.sum()) * unit
    if table.employment.sum() > 0:
        result["jobs_type_i"] = float((table.employment / table.x) @ type_i)
    # Output per unit of spending: "Type I" counts direct and indirect purchases, "Type II" adds the spending
    # of the wages they pay. Gross output double-counts intermediate goods; it is not value added.
    result["drive_ratio_type_i"] = float(type_i.sum()) / direct if direct else None
    if "output_type_ii" in result and direct:
        result["drive_ratio_type_ii"] = result["output_type_ii"] / (direct * unit)
    return result
