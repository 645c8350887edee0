"""The attribute history behind the temporal API. Portable SQL over either engine's run_statements/fetch_rows;
the few engine differences (time arithmetic for aggregation periods) are chosen by `store.engine`."""

from __future__ import annotations

from typing import Any

# (attr, instance id, dataset id, observed at, created at, modified at, deleted at, numeric value, instance JSON)
HistoryRow = tuple[str, str, str | None, str | None, str, str, str | None, float | None, bytes | None]

TIME_COLUMNS = {"observedAt": "observed_at", "createdAt": "created_at", "modifiedAt": "modified_at",
                "deletedAt": "deleted_at"}

# Seconds since the Unix epoch of a canonical UTC text timestamp, per engine.
# (SQLite's julianday() loses tens of microseconds, so whole seconds and the fraction are taken apart.)
_EPOCH = {"sqlite": "(CAST(strftime('%s', {col}) AS INTEGER) + CAST(substr({col}, 20, 7) AS REAL))",
          "postgres": "extract(epoch from ({col})::timestamptz)::float8"}
# Period number of a row: the time since the origin divided by the period, rounded down (never negative here,
# since rows before the origin are filtered out, so a cast that truncates is a floor).
_BUCKET = {"sqlite": "CAST(({epoch} - ?) / ? AS INTEGER)",
           "postgres": "CAST(floor(({epoch} - ?) / ?) AS BIGINT)"}


def _dataset_condition(dataset_ids: frozenset[str | None] | None, params: list[Any]) -> str:
    if dataset_ids is None:
        return ""
    named = sorted(d for d in dataset_ids if d is not None)
    parts = []
    if None in dataset_ids:
        parts.append("dataset_id IS NULL")
    if named:
        parts.append(f"dataset_id IN ({','.join('?' * len(named))})")
        params.extend(named)
    return " AND (" + " OR ".join(parts) + ")" if parts else " AND 1 = 0"


def _window_condition(column: str, lower: str | None, upper: str | None, *, lower_inclusive: bool,
                      params: list[Any]) -> str:
    sql = ""
    if lower is not None or upper is not None:
        sql += f" AND {column} IS NOT NULL"
    if lower is not None:
        sql += f" AND {column} {'>=' if lower_inclusive else '>'} ?"
        params.append(lower)
    if upper is not None:
        sql += f" AND {column} < ?"
        params.append(upper)
    return sql


class History:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.engine = getattr(store, "engine", "sqlite")

    async def add(self, tenant: str, entity_id: str, types: str, created_at: str, rows: list[HistoryRow],
                  *, deleted_at: str | None = None, replace_same_time: bool = False) -> None:
        """Record instances. With `replace_same_time` (temporal writes), an instance of the same attribute and
        datasetId observed at the same time as a new one is replaced by it instead of being kept twice."""
        statements: list[tuple[str, list[tuple[Any, ...]]]] = [
            ("INSERT INTO history_entities (tenant, entity_id, types, created_at, deleted_at) VALUES (?, ?, ?, ?, ?) "
             "ON CONFLICT (tenant, entity_id) DO UPDATE SET types = excluded.types, deleted_at = excluded.deleted_at",
             [(tenant, entity_id, types, created_at, deleted_at)]),
        ]
        if replace_same_time:
            statements.append((
                "DELETE FROM history WHERE tenant = ? AND entity_id = ? AND attr = ? AND observed_at = ? "
                "AND coalesce(dataset_id, '') = ? AND deleted_at IS NULL",
                [(tenant, entity_id, row[0], row[3], row[2] or "") for row in rows if row[3] is not None]))
        statements.append((
            "INSERT INTO history (tenant, entity_id, attr, instance_id, dataset_id, observed_at, created_at, "
            "modified_at, deleted_at, num, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (tenant, entity_id, instance_id) DO NOTHING",
            [(tenant, entity_id, *row) for row in rows]))
        await self.store.run_statements(statements)

    async def entities(self, tenant: str, ids: list[str] | None = None) -> list[tuple[str, str, str, str | None]]:
        sql = "SELECT entity_id, types, created_at, deleted_at FROM history_entities WHERE tenant = ?"
        params: list[Any] = [tenant]
        if ids:
            sql += f" AND entity_id IN ({','.join('?' * len(ids))})"
            params.extend(ids)
        return await self.store.fetch_rows(sql + " ORDER BY entity_id", params)  # type: ignore[no-any-return]

    async def attributes(self, tenant: str, entity_id: str) -> set[str]:
        rows = await self.store.fetch_rows("SELECT DISTINCT attr FROM history WHERE tenant = ? AND entity_id = ?",
                                           [tenant, entity_id])
        return {r[0] for r in rows}

    async def rows(self, tenant: str, entity_id: str, attrs: list[str] | None, timeproperty: str,
                   lower: str | None, upper: str | None, last_n: int | None,
                   dataset_ids: frozenset[str | None] | None = None) -> list[tuple[Any, ...]]:
        """Instances in [lower, upper) of the time property (lower exclusive for timerel=after), oldest first;
        with `last_n`, only the most recent `last_n` of each attribute."""
        column = TIME_COLUMNS[timeproperty]
        sql = (f"SELECT attr, instance_id, dataset_id, observed_at, created_at, modified_at, deleted_at, num, value, "
               f"{column} FROM history WHERE tenant = ? AND entity_id = ?")
        params: list[Any] = [tenant, entity_id]
        if attrs:
            sql += f" AND attr IN ({','.join('?' * len(attrs))})"
            params.extend(attrs)
        if timeproperty == "deletedAt":
            sql += " AND deleted_at IS NOT NULL"
        sql += _window_condition(column, lower, upper, lower_inclusive=upper is not None, params=params)
        sql += _dataset_condition(dataset_ids, params)
        order = "DESC" if last_n else "ASC"
        sql += f" ORDER BY attr, {column} {order}, hid {order}"
        rows = await self.store.fetch_rows(sql, params)
        if last_n:
            kept: list[tuple[Any, ...]] = []
            counts: dict[str, int] = {}
            for row in rows:
                counts[row[0]] = counts.get(row[0], 0) + 1
                if counts[row[0]] <= last_n:
                    kept.append(row)
            rows = sorted(kept, key=lambda r: (r[0], r[9] or ""))
        return rows  # type: ignore[no-any-return]

    async def aggregate(self, tenant: str, entity_id: str, attrs: list[str] | None, timeproperty: str,
                        lower: str | None, upper: str | None, origin: float | None, period: float,
                        dataset_ids: frozenset[str | None] | None = None) -> list[tuple[Any, ...]]:
        """Per attribute and period: (attr, period number, origin, count, numeric count, distinct numbers, sum,
        min, max, sum of squares, time of the last instance), computed by the engine. Without an `origin` each
        attribute's periods start at its own first instance in the window."""
        column = TIME_COLUMNS[timeproperty]
        epoch = _EPOCH[self.engine].format(col=column)
        where = f" FROM history WHERE tenant = ? AND entity_id = ? AND {column} IS NOT NULL"
        params: list[Any] = [tenant, entity_id]
        if attrs:
            where += f" AND attr IN ({','.join('?' * len(attrs))})"
            params.extend(attrs)
        where += _window_condition(column, lower, upper, lower_inclusive=upper is not None, params=params)
        where += _dataset_condition(dataset_ids, params)
        bucket = _BUCKET[self.engine].format(epoch=epoch)
        aggregates = ("count(*), count(num), count(DISTINCT num), sum(num), min(num), max(num), sum(num * num), "
                      f"max({epoch})")
        if origin is not None:
            sql = f"SELECT attr, {bucket} AS bucket, {aggregates}{where} GROUP BY attr, bucket ORDER BY attr, bucket"
            found = await self.store.fetch_rows(sql, [origin, period, *params])
            return [(r[0], r[1], origin, *r[2:]) for r in found]
        # Each attribute's own first instance is its origin: a join with the per-attribute minimum.
        sql = (f"SELECT h.attr, {bucket.replace('?', 'o.origin', 1)} AS bucket, o.origin, {aggregates} "
               f"FROM history h JOIN (SELECT attr AS oattr, min({epoch}) AS origin{where} GROUP BY attr) o "
               f"ON h.attr = o.oattr WHERE h.tenant = ? AND h.entity_id = ? AND {column} IS NOT NULL")
        outer: list[Any] = [tenant, entity_id]
        if attrs:
            sql += f" AND h.attr IN ({','.join('?' * len(attrs))})"
            outer.extend(attrs)
        sql += _window_condition(column, lower, upper, lower_inclusive=upper is not None, params=outer)
        sql += _dataset_condition(dataset_ids, outer)
        sql += " GROUP BY h.attr, bucket, o.origin ORDER BY h.attr, bucket"
        return await self.store.fetch_rows(sql, [period, *params, *outer])  # type: ignore[no-any-return]

    async def delete(self, tenant: str, entity_id: str, *, attr: str | None = None, dataset_id: str | None = None,
                     all_datasets: bool = True, instance_id: str | None = None) -> int:
        sql = "DELETE FROM history WHERE tenant = ? AND entity_id = ?"
        params: list[Any] = [tenant, entity_id]
        if attr is not None:
            sql += " AND attr = ?"
            params.append(attr)
            if not all_datasets:
                sql += " AND dataset_id IS NULL" if dataset_id is None else " AND dataset_id = ?"
                if dataset_id is not None:
                    params.append(dataset_id)
        if instance_id is not None:
            sql += " AND instance_id = ?"
            params.append(instance_id)
        statements: list[tuple[str, list[tuple[Any, ...]]]] = [(sql, [tuple(params)])]
        if attr is None and instance_id is None:
            statements.append(("DELETE FROM history_entities WHERE tenant = ? AND entity_id = ?",
                               [(tenant, entity_id)]))
        return await self.store.run_statements(statements)  # type: ignore[no-any-return]

    async def replace_instance(self, tenant: str, entity_id: str, attr: str, instance_id: str,
                               row: HistoryRow) -> int:
        sql = ("UPDATE history SET dataset_id = ?, observed_at = ?, modified_at = ?, num = ?, value = ? "
               "WHERE tenant = ? AND entity_id = ? AND attr = ? AND instance_id = ?")
        return await self.store.run_statements(  # type: ignore[no-any-return]
            [(sql, [(row[2], row[3], row[5], row[7], row[8], tenant, entity_id, attr, instance_id)])])
