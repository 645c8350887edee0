"""Input–output (Leontief) multipliers and the economy-wide effect of the project's spending.

Three ways to give a table:

1. **CSV** (UTF-8, comma separated, one currency unit, e.g. 100 million CNY), one row per sector, then the
   factor rows::

       ,<sector 1>,...,<sector n>,household,final_demand,output
       <sector i>,z_i1,...,z_in,<household consumption of i>,<other final demand for i>,<total output x_i>
       wages,<w_1>,...,<w_n>,,,            (labour income; needed for Type II)
       employment,<jobs_1>,...,<jobs_n>,,, (optional, in any job unit)
       value_added,<va_1>,...,<va_n>,,,    (optional; wages are part of it)

2. **pymrio**: the folder `IOSystem.save_all()` writes (tab-separated Z.txt, Y.txt, optional x.txt and one
   sub-folder per extension with F.txt). Sectors are named `region/sector`, or summed over regions with
   `aggregate_regions: true`. Factor rows come from an extension: `wages: {extension: factor_inputs, row: ...}`.

3. **Inline** (for HTTP requests, which may not name files): a mapping with `sectors`, `Z`, `output`,
   `household`, and optionally `wages`, `employment`, `value_added`.

Type I multipliers use the open model L = (I − A)⁻¹, A = Z·diag(x)⁻¹. Type II closes the model for households:
a wages-per-output row and a household-consumption-per-income column are appended before inverting, so the
spending of the wages the project pays is counted too (induced effects). Type II ≥ Type I.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HOUSEHOLD_CATEGORY = "Final consumption expenditure by households"


class TableError(ValueError):
    pass


@dataclass
class IOTable:
    sectors: list[str]
    Z: np.ndarray  # noqa: N815 - the textbook's name
    x: np.ndarray
    household: np.ndarray  # household consumption of each sector's output
    wages: np.ndarray
    employment: np.ndarray
    value_added: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        n = len(self.sectors)
        if self.Z.shape != (n, n):
            raise TableError(f"{self.source}: Z must be {n}×{n} for {n} sectors, it is {self.Z.shape}")
        for name in ("x", "household", "wages", "employment", "value_added"):
            value = getattr(self, name)
            if value.shape != (n,):
                raise TableError(f"{self.source}: {name} needs {n} values, one per sector, it has {value.size}")
            if not np.all(np.isfinite(value)):
                raise TableError(f"{self.source}: {name} has a value that is not a finite number")
        if not np.all(np.isfinite(self.Z)) or np.any(self.Z < 0):
            raise TableError(f"{self.source}: the intermediate flows Z must be finite and non-negative")
        bad = [s for s, v in zip(self.sectors, self.x, strict=True) if v <= 0]
        if bad:
            raise TableError(f"{self.source}: every sector needs a positive total output; {', '.join(bad)} has none")
        over = [s for s, v in zip(self.sectors, self.A.sum(axis=0), strict=True) if v >= 1]
        if over:
            raise TableError(f"{self.source}: {', '.join(over)} buys inputs worth its whole output or more, so "
                             "(I − A) has no meaningful inverse")
        if len(set(self.sectors)) != n:
            raise TableError(f"{self.source}: sector names must be unique")

    @property
    def A(self) -> np.ndarray:  # noqa: N802
        coefficients: np.ndarray = self.Z / self.x[None, :]
        return coefficients

    @property
    def L(self) -> np.ndarray:  # noqa: N802
        return np.linalg.inv(np.eye(len(self.x)) - self.A)

    @property
    def has_households(self) -> bool:
        return bool(self.wages.sum() > 0 and self.household.sum() > 0)

    def closed_L(self) -> np.ndarray:  # noqa: N802
        """The Leontief inverse with households as an extra sector (Type II)."""
        if not self.has_households:
            raise TableError(f"{self.source}: Type II multipliers need a wages row and household consumption")
        n = len(self.x)
        closed = np.zeros((n + 1, n + 1))
        closed[:n, :n] = self.A
        closed[n, :n] = self.wages / self.x
        closed[:n, n] = self.household / self.wages.sum()
        # A non-negative coefficient matrix has a non-negative inverse of (I − A) only when its spectral
        # radius is below 1; otherwise households would spend more than the economy can produce.
        if np.max(np.abs(np.linalg.eigvals(closed))) >= 1:
            raise TableError(f"{self.source}: households spend more than they earn; the closed model has no "
                             "meaningful inverse")
        return np.linalg.inv(np.eye(n + 1) - closed)


# -- loading -------------------------------------------------------------------------------------------------
def _floats(cells: list[str], where: str) -> np.ndarray:
    try:
        return np.array([float(c) if c.strip() else 0.0 for c in cells])
    except ValueError as exc:
        raise TableError(f"{where} has a cell that is not a number ({exc})") from exc


def load_csv(path: str | Path) -> IOTable:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [r for r in csv.reader(handle) if any(cell.strip() for cell in r)]
    except OSError as exc:
        raise TableError(f"input-output table {path} cannot be read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise TableError(f"input-output table {path} is not UTF-8 text") from exc
    if not rows:
        raise TableError(f"input-output table {path} is empty")
    header = [h.strip() for h in rows[0]]
    for needed in ("household", "final_demand", "output"):
        if needed not in header:
            raise TableError(f"input-output table {path}: the header needs a {needed!r} column")
    sectors = header[1:header.index("household")]
    n = len(sectors)
    body = {r[0].strip(): r[1:] for r in rows[1:]}
    missing = [s for s in sectors if s not in body]
    if missing:
        raise TableError(f"input-output table {path}: no row for sector(s) {', '.join(missing)}")
    full = {s: _floats((body[s] + [""] * len(header))[:len(header) - 1], f"{path}, row {s!r}") for s in sectors}

    def factor(label: str) -> np.ndarray:
        if label not in body:
            return np.zeros(n)
        return _floats((body[label] + [""] * n)[:n], f"{path}, row {label!r}")

    column = {name: header.index(name) - 1 for name in ("household", "output")}
    return IOTable(sectors, np.array([full[s][:n] for s in sectors]),
                   np.array([full[s][column["output"]] for s in sectors]),
                   np.array([full[s][column["household"]] for s in sectors]),
                   factor("wages"), factor("employment"), factor("value_added"), source=str(path))


def _read_matrix(path: Path, index_cols: int, header_rows: int) -> tuple[list[tuple[str, ...]],
                                                                         list[tuple[str, ...]], np.ndarray]:
    """A pandas-written, tab-separated table with multi-level headers and index."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle, delimiter="\t"))
    except OSError as exc:
        raise TableError(f"pymrio table {path} cannot be read: {exc.strerror}") from exc
    headers = [r[index_cols:] for r in rows[:header_rows]]
    data = rows[header_rows:]
    # With a multi-level header pandas adds a row naming the index levels; its value cells are empty.
    if data and not any(c.strip() for c in data[0][index_cols:]):
        data = data[1:]
    columns = list(zip(*headers, strict=True))
    labels = [tuple(r[:index_cols]) for r in data]
    values = np.array([_floats(r[index_cols:], f"{path}, row {'/'.join(r[:index_cols])}") for r in data])
    if values.size and values.shape[1] != len(columns):
        raise TableError(f"pymrio table {path}: rows have {values.shape[1]} values for {len(columns)} columns")
    return labels, columns, values


def _parameters(folder: Path, key: str, default: tuple[str, int, int]) -> tuple[Path, int, int]:
    spec_path = folder / "file_parameters.json"
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8")).get("files", {}).get(key) if spec_path.exists() \
            else None
    except (OSError, ValueError) as exc:
        raise TableError(f"{spec_path} is not readable JSON: {exc}") from exc
    if not spec:
        return folder / default[0], default[1], default[2]
    return folder / spec["name"], int(spec["nr_index_col"]), int(spec["nr_header"])


def load_pymrio(folder: str | Path, options: dict[str, Any] | None = None) -> IOTable:
    """Read a folder saved by pymrio's `IOSystem.save_all()` (text format) without needing pymrio."""
    folder = Path(folder)
    options = options or {}
    if not (folder / "Z.txt").exists() and not (folder / "file_parameters.json").exists():
        raise TableError(f"{folder} is not a pymrio folder (no Z.txt or file_parameters.json)")
    z_labels, z_columns, Z = _read_matrix(*_parameters(folder, "Z", ("Z.txt", 2, 2)))  # noqa: N806
    if [tuple(c) for c in z_columns] != z_labels:
        raise TableError(f"{folder}/Z.txt: the rows and columns do not list the same sectors in the same order")
    y_labels, y_columns, Y = _read_matrix(*_parameters(folder, "Y", ("Y.txt", 2, 2)))  # noqa: N806
    if y_labels != z_labels:
        raise TableError(f"{folder}/Y.txt: its rows do not match the sectors of Z.txt")
    category = str(options.get("household_category", HOUSEHOLD_CATEGORY))
    is_household = np.array([c[-1] == category for c in y_columns])
    x_path, x_index, x_header = _parameters(folder, "x", ("x.txt", 2, 1))
    x = _read_matrix(x_path, x_index, x_header)[2][:, 0] if x_path.exists() else Z.sum(axis=1) + Y.sum(axis=1)
    household = Y[:, is_household].sum(axis=1)
    factors = {}
    for name in ("wages", "employment", "value_added"):
        spec = options.get(name)
        factors[name] = _extension_row(folder, spec, z_labels, name) if spec else np.zeros(len(z_labels))
    if options.get("aggregate_regions"):
        names = list(dict.fromkeys(label[-1] for label in z_labels))
        group = np.array([[label[-1] == s for label in z_labels] for s in names], dtype=float)
        return IOTable(names, group @ Z @ group.T, group @ x, group @ household, group @ factors["wages"],
                       group @ factors["employment"], group @ factors["value_added"],
                       source=f"{folder} (regions summed)")
    return IOTable(["/".join(label) for label in z_labels], Z, x, household,
                   factors["wages"], factors["employment"], factors["value_added"], source=str(folder))


def _extension_row(folder: Path, spec: Any, sectors: list[tuple[str, ...]], name: str) -> np.ndarray:
    if not isinstance(spec, dict) or "extension" not in spec or "row" not in spec:
        raise TableError(f"input_output.pymrio.{name} must be {{extension: <folder>, row: <stressor name>}}")
    extension = folder / str(spec["extension"])
    labels, columns, F = _read_matrix(*_parameters(extension, "F", ("F.txt", 1, 2)))  # noqa: N806
    if [tuple(c) for c in columns] != sectors:
        raise TableError(f"{extension}/F.txt: its columns do not match the sectors of Z.txt")
    for label, values in zip(labels, F, strict=True):
        if label[0] == spec["row"]:
            row: np.ndarray = values
            return row
    raise TableError(f"{extension}/F.txt has no row {spec['row']!r}; it has {', '.join(lb[0] for lb in labels)}")


def from_mapping(data: dict[str, Any], where: str = "input_output.table") -> IOTable:
    try:
        sectors = [str(s) for s in data["sectors"]]
        n = len(sectors)

        def vector(key: str) -> np.ndarray:
            return np.asarray(data.get(key) or [0.0] * n, dtype=float)

        return IOTable(sectors, np.asarray(data["Z"], dtype=float), np.asarray(data["output"], dtype=float),
                       vector("household"), vector("wages"), vector("employment"), vector("value_added"),
                       source=where)
    except KeyError as exc:
        raise TableError(f"{where} needs sectors, Z and output; {exc.args[0]} is missing") from exc
    except (TypeError, ValueError) as exc:
        raise TableError(f"{where}: every entry must be a number ({exc})") from exc


# -- multipliers and impact ----------------------------------------------------------------------------------
def multipliers(table: IOTable) -> dict[str, Any]:
    """Per-sector multipliers: output (Type I and II: total output per unit of final demand), value added,
    income and employment per unit of final demand, and the income ratio (Type I: total/direct income)."""
    L = table.L  # noqa: N806
    n = len(table.sectors)
    out: dict[str, Any] = {"sectors": table.sectors, "type_i_output": L.sum(axis=0).tolist()}
    closed = table.closed_L()[:n, :n] if table.has_households else None
    if closed is not None:
        out["type_ii_output"] = closed.sum(axis=0).tolist()
    for name, row in (("value_added", table.value_added), ("income", table.wages), ("employment", table.employment)):
        if row.sum() <= 0:
            continue
        coefficient = row / table.x
        out[f"type_i_{name}"] = (coefficient @ L).tolist()
        if closed is not None:
            out[f"type_ii_{name}"] = (coefficient @ closed).tolist()
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(coefficient > 0, (coefficient @ L) / coefficient, np.nan)
        out[f"type_i_{name}_ratio"] = [None if np.isnan(v) else float(v) for v in ratio]
    return out


def impact(table: IOTable, shock: dict[str, float], unit: float = 1.0) -> dict[str, Any]:
    """Economy-wide effect of spending `shock` (sector -> amount in currency) as a final-demand shock.

    `unit` is how many currency units one table unit holds (1e8 for a table in 亿元); outputs come back in
    currency, jobs in the table's employment unit.
    """
    unknown = sorted(set(shock) - set(table.sectors))
    if unknown:
        raise TableError(f"the shock names sectors the table does not have: {', '.join(unknown)}; "
                         f"the table has {', '.join(table.sectors)}")
    if unit <= 0:
        raise TableError("the table unit must be positive")
    if any(v < 0 for v in shock.values()):
        raise TableError("the shock's amounts must not be negative")
    dy = np.array([shock.get(s, 0.0) for s in table.sectors]) / unit
    spending = float(dy.sum())
    if spending <= 0:
        raise TableError("the shock spends nothing")
    n = len(table.sectors)
    effects = {"type_i": table.L @ dy}
    if table.has_households:
        effects["type_ii"] = (table.closed_L() @ np.append(dy, 0.0))[:n]
    result: dict[str, Any] = {"spending": spending * unit, "shock_sectors": [s for s in table.sectors if shock.get(s)],
                              "shock": {s: float(shock[s]) for s in table.sectors if shock.get(s)}}
    for kind, dx in effects.items():
        result[f"output_{kind}"] = float(dx.sum()) * unit
        result[f"by_sector_{kind}"] = {s: float(v) * unit for s, v in zip(table.sectors, dx, strict=True)}
        # Gross output per unit of spending ("drive ratio"): counts intermediate goods at every stage, so it is
        # larger than the value added the spending creates; both are given.
        result[f"drive_ratio_{kind}"] = float(dx.sum()) / spending
        if table.value_added.sum() > 0:
            result[f"value_added_{kind}"] = float((table.value_added / table.x) @ dx) * unit
        if table.wages.sum() > 0:
            result[f"income_{kind}"] = float((table.wages / table.x) @ dx) * unit
        if table.employment.sum() > 0:
            result[f"jobs_{kind}"] = float((table.employment / table.x) @ dx)
    return result


def load_table(spec: dict[str, Any], base_dir: Path | None) -> IOTable:
    """The table named by a project's `input_output` block."""
    table = spec.get("table")
    if isinstance(table, dict):
        return from_mapping(table)
    if not isinstance(table, str):
        raise TableError("input_output.table must name a CSV file or pymrio folder, or be an inline table")
    if base_dir is None:
        raise TableError("input_output.table names a file, which requests over HTTP may not do; give the table "
                         "inline (sectors, Z, output, household, wages, employment, value_added)")
    path = base_dir / table
    fmt = spec.get("format") or ("pymrio" if path.is_dir() else "csv")
    if fmt == "pymrio":
        options = spec.get("pymrio") or {}
        if not isinstance(options, dict):
            raise TableError("input_output.pymrio must be a mapping of options")
        return load_pymrio(path, options)
    if fmt != "csv":
        raise TableError(f"input_output.format must be csv or pymrio, not {fmt!r}")
    return load_csv(path)
