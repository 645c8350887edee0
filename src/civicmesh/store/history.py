"""The attribute history behind the temporal API. Portable SQL over either engine's run_statements/fetch_rows;
the few engine differences (time arithmetic for aggregation periods) are chosen by `store.engine`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

# (attr, instance id, dataset id, observed at, created at, modified at, deleted at, numeric value, instance JSON)
HistoryRow = tuple[str, str, str | None, str | None, str, str, str | None, float | None, bytes | None]

TIME_COLUMNS = {"observedAt": "observed_at", "createdAt": "created_at", "modifiedAt": "modified_at",
                "deletedAt": "deleted_at"}

# Seconds since the Unix epoch of a canonical UTC text timestamp, per engine.
# (SQLite's julianday() loses tens of microseconds, so whole seconds and the fraction are taken apart.)
_EPOCH = {"sqlite": "(CAST(strftime('%s', {col}) AS INTEGER) + CAST(substr({col}, 20, 7) AS REAL))",
          "postgres": "extract(epoch from ({col})::timestamptz)::float8"}
# Period number of a row: the time since its attribute's origin divided by the period, rounded down (never
# negative here, since rows before the origin are filtered out, so a cast that truncates is a floor).
_PERIOD = {"sqlite": "CAST(({epoch} - s.origin) / ? AS INTEGER)",
           "postgres": "CAST(floor(({epoch} - s.origin) / ?) AS BIGINT)"}


def _period_order(row: tuple[Any, ...]) -> tuple[str, int]:
    return row[0], row[1]


def epoch_seconds(text: str | None) -> float | None:
    """Epoch seconds of a stored (canonical UTC) timestamp."""
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


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


_UPSERT_ENTITY = (
    "INSERT INTO history_entities (tenant, entity_id, types, created_at, deleted_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (tenant, entity_id) DO UPDATE SET types = excluded.types, deleted_at = excluded.deleted_at")
_INSERT_INSTANCES = (
    "INSERT INTO history (tenant, entity_id, attr, instance_id, dataset_id, observed_at, created_at, modified_at, "
    "deleted_at, num, value, observed_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (tenant, entity_id, instance_id) DO NOTHING")


def _recorded(changes: list[tuple[str, str, str, str, list[HistoryRow], str | None]]
              ) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The statements recording changes (tenant, entity_id, types, created_at, rows, deleted_at): each entity
    once (its first created_at, its last types and deletion), then every instance."""
    entities: dict[tuple[str, str], tuple[str, str, str, str, str | None]] = {}
    instances: list[tuple[Any, ...]] = []
    for tenant, entity_id, types, created_at, rows, deleted_at in changes:
        first = entities.get((tenant, entity_id))
        entities[(tenant, entity_id)] = (tenant, entity_id, types, first[3] if first else created_at, deleted_at)
        instances.extend((tenant, entity_id, *row, epoch_seconds(row[3])) for row in rows)
    return [(_UPSERT_ENTITY, list(entities.values())), (_INSERT_INSTANCES, instances)]


class History:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.engine = getattr(store, "engine", "sqlite")

    async def add(self, tenant: str, entity_id: str, types: str, created_at: str, rows: list[HistoryRow],
                  *, deleted_at: str | None = None, replace_same_time: bool = False) -> None:
        """Record instances. With `replace_same_time` (temporal writes), an instance of the same attribute and
        datasetId observed at the same time as a new one is replaced by it instead of being kept twice."""
        statements: list[tuple[str, list[tuple[Any, ...]]]] = []
        timed = [row for row in rows if row[3] is not None]
        if replace_same_time and timed:
            # One index range read finds the instances the new ones replace (usually none: history is mostly
            # appended); they are then deleted by instance id. Per-row DELETEs with a generic plan turned into
            # sequential scans on PostgreSQL and made bulk loads quadratic.
            names = sorted({row[0] for row in timed})
            stamps = [row[3] for row in timed if row[3] is not None]
            existing = await self.store.fetch_rows(
                "SELECT instance_id, attr, observed_at, dataset_id FROM history WHERE tenant = ? AND entity_id = ? "
                f"AND attr IN ({','.join('?' * len(names))}) AND observed_at >= ? AND observed_at <= ? "
                "AND deleted_at IS NULL",
                [tenant, entity_id, *names, min(stamps), max(stamps)])
            new = {(row[0], row[3], row[2]) for row in timed}
            doomed = [(tenant, entity_id, found[0]) for found in existing if tuple(found[1:]) in new]
            statements.append(("DELETE FROM history WHERE tenant = ? AND entity_id = ? AND instance_id = ?", doomed))
        statements += _recorded([(tenant, entity_id, types, created_at, rows, deleted_at)])
        await self.store.run_statements(statements)

    async def add_many(self, changes: list[tuple[str, str, str, str, list[HistoryRow], str | None]]) -> None:
        """Record the instances of many changes in one transaction (the change-event consumer's batch). Each change
        is (tenant, entity_id, types, created_at, rows, deleted_at); an entity's last change sets its types and
        deletion, as it would one change at a time."""
        if changes:
            await self.store.run_statements(_recorded(changes))

    async def entities(self, tenant: str, ids: list[str] | None = None) -> list[tuple[str, str, str, str | None]]:
        sql = "SELECT entity_id, types, created_at, deleted_at FROM history_entities WHERE tenant = ?"
        params: list[Any] = [tenant]
        if ids:
            sql += f" AND entity_id IN ({','.join('?' * len(ids))})"
            params.extend(ids)
        return await self.store.fetch_rows(sql + " ORDER BY entity_id", params)  # type: ignore[no-any-return]

    async def attributes(self, tenant: str, entity_id: str) -> list[str]:
        """The attributes an entity has history of: a loose index scan (one index seek per attribute), so the
        cost does not grow with the number of instances."""
        sql = ("WITH RECURSIVE a(attr) AS (SELECT min(attr) FROM history WHERE tenant = ? AND entity_id = ? "
               "UNION ALL SELECT (SELECT min(attr) FROM history WHERE tenant = ? AND entity_id = ? AND attr > a.attr) "
               "FROM a WHERE a.attr IS NOT NULL) SELECT attr FROM a WHERE attr IS NOT NULL")
        rows = await self.store.fetch_rows(sql, [tenant, entity_id, tenant, entity_id])
        return [r[0] for r in rows]

    async def rows(self, tenant: str, entity_id: str, attrs: list[str] | None, timeproperty: str,
                   lower: str | None, upper: str | None, last_n: int | None,
                   dataset_ids: frozenset[str | None] | None = None) -> list[tuple[Any, ...]]:
        """Instances in [lower, upper) of the time property (lower exclusive for timerel=after), oldest first;
        with `last_n`, only the most recent `last_n` of each attribute."""
        column = TIME_COLUMNS[timeproperty]
        select = (f"SELECT attr, instance_id, dataset_id, observed_at, created_at, modified_at, deleted_at, num, "
                  f"value, {column} FROM history WHERE tenant = ? AND entity_id = ?")
        conditions = ""
        condition_params: list[Any] = []
        if timeproperty == "deletedAt":
            conditions += " AND deleted_at IS NOT NULL"
        conditions += _window_condition(column, lower, upper, lower_inclusive=upper is not None,
                                        params=condition_params)
        conditions += _dataset_condition(dataset_ids, condition_params)
        if not last_n:
            sql, params = select, [tenant, entity_id]
            if attrs:
                sql += f" AND attr IN ({','.join('?' * len(attrs))})"
                params.extend(attrs)
            sql += f"{conditions} ORDER BY attr, {column}, hid"
            return await self.store.fetch_rows(sql, [*params, *condition_params])  # type: ignore[no-any-return]
        # The newest last_n of each attribute: one index walk from the newest end per attribute.
        names = attrs or await self.attributes(tenant, entity_id)
        parts: list[str] = []
        all_params: list[Any] = []
        for name in names:
            parts.append(f"SELECT * FROM ({select} AND attr = ?{conditions} "
                         f"ORDER BY {column} DESC, hid DESC LIMIT ?) AS newest")
            all_params.extend([tenant, entity_id, name, *condition_params, last_n])
        if not parts:
            return []
        rows = await self.store.fetch_rows(" UNION ALL ".join(parts), all_params)
        return sorted(rows, key=lambda r: (r[0], r[9] or ""))

    def _aggregate_sql(self, tenant: str, entity_id: str, attrs: list[str] | None, timeproperty: str,
                       lower: str | None, upper: str | None, origin: float | None, period: float,
                       dataset_ids: frozenset[str | None] | None, distinct: bool) -> tuple[str, list[Any]]:
        """CTEs `present` (the attributes asked for that have history, or all it has), `starts` (each one's
        period origin) and `periods` (per attribute and period: attr, period number, origin,
        count, numeric count, distinct numbers, sum, min, max, sum of squares, time of the last instance)."""
        column = TIME_COLUMNS[timeproperty]
        epoch = _EPOCH[self.engine].format(col=column)
        bounds: tuple[Any, Any] = (lower, upper)
        if timeproperty == "observedAt":
            # observedAt has its epoch seconds stored beside it, in an index that also holds the numbers.
            column = epoch = "observed_s"
            bounds = (epoch_seconds(lower), epoch_seconds(upper))
        params: list[Any] = []
        # The attributes: a loose index scan, one index seek per attribute whatever the number of instances (and
        # the plan both engines keep; a probe per attribute asked for became a semi-join or a sequential scan in
        # PostgreSQL's plans).
        names = ("names(attr) AS (SELECT min(attr) FROM history WHERE tenant = ? AND entity_id = ? UNION ALL "
                 "SELECT (SELECT min(attr) FROM history WHERE tenant = ? AND entity_id = ? AND attr > names.attr) "
                 "FROM names WHERE names.attr IS NOT NULL)")
        params += [tenant, entity_id, tenant, entity_id]
        if attrs:
            # Naming the attributes lets the engine seek the index per attribute instead of reading all of them.
            names += f", present(attr) AS (SELECT attr FROM names WHERE attr IN ({', '.join('?' * len(attrs))}))"
            params += attrs
        else:
            names += ", present(attr) AS (SELECT attr FROM names WHERE attr IS NOT NULL)"
        window_params: list[Any] = []
        window = (f" AND {column} IS NOT NULL"
                  + _window_condition(column, *bounds, lower_inclusive=upper is not None, params=window_params)
                  + _dataset_condition(dataset_ids, window_params))
        if origin is None:  # each attribute's periods start at its first instance in the window: one index seek
            start = (f"(SELECT min({epoch}) FROM history WHERE tenant = ? AND entity_id = ? "
                     f"AND attr = present.attr{window})")
            params += [tenant, entity_id, *window_params]
        else:
            start = "CAST(? AS DOUBLE PRECISION)"
            params.append(origin)
        # MATERIALIZED: inlined, the origin's subquery ran again for every instance that used it (SQLite).
        materialized = "MATERIALIZED " if origin is None else ""
        starts = f"starts(attr, origin) AS {materialized}(SELECT attr, {start} FROM present)"
        # Counting distinct values sorts them; only done when asked for (0 stands in otherwise).
        aggregates = (f"count(*), count(num), {'count(DISTINCT num)' if distinct else '0'}, sum(num), min(num), "
                      f"max(num), sum(num * num), max({epoch})")
        bucket = _PERIOD[self.engine].format(epoch=epoch)
        # Each attribute's window is one index range (attr is a key column before the time).
        if self.engine == "postgres":
            # A lateral subquery per attribute: a plain join was planned as a hash join reading the index range of
            # every attribute of the entity instead of seeking each one's window.
            periods = (f"periods AS (SELECT s.attr, a.* FROM starts s CROSS JOIN LATERAL (SELECT {bucket} AS bucket, "
                       f"s.origin, {aggregates} FROM history WHERE tenant = ? AND entity_id = ? AND attr = s.attr"
                       f"{window} GROUP BY bucket) AS a)")
        else:
            periods = (f"periods AS (SELECT s.attr, {bucket} AS bucket, s.origin, {aggregates} FROM starts s "
                       f"JOIN history h ON h.attr = s.attr WHERE h.tenant = ? AND h.entity_id = ?{window} "
                       "GROUP BY s.attr, bucket)")
        params += [period, tenant, entity_id, *window_params]
        return f"WITH RECURSIVE {names}, {starts}, {periods}", params

    async def aggregate(self, tenant: str, entity_id: str, attrs: list[str] | None, timeproperty: str,
                        lower: str | None, upper: str | None, origin: float | None, period: float,
                        dataset_ids: frozenset[str | None] | None = None, *,
                        distinct: bool = True) -> list[tuple[Any, ...]]:
        """Per attribute and period: (attr, period number, origin, count, numeric count, distinct numbers, sum,
        min, max, sum of squares, time of the last instance), computed by the engine in one statement. Without an
        `origin` each attribute's periods start at its own first instance in the window."""
        ctes, params = self._aggregate_sql(tenant, entity_id, attrs, timeproperty, lower, upper, origin, period,
                                           dataset_ids, distinct)
        rows = await self.store.fetch_rows(f"{ctes} SELECT * FROM periods", params)
        return sorted((tuple(r) for r in rows), key=_period_order)  # sorted here: ORDER BY costs SQLite a B-tree

    async def aggregate_entity(self, tenant: str, entity_id: str, attrs: list[str] | None, timeproperty: str,
                               lower: str | None, upper: str | None, origin: float | None, period: float,
                               dataset_ids: frozenset[str | None] | None = None, *, distinct: bool = True
                               ) -> tuple[str, list[str], list[tuple[Any, ...]]] | None:
        """A temporal retrieve's aggregation in one statement (under CPU contention every round trip to the
        engine waits to be scheduled again): the entity's types (JSON), the attributes asked for that it has
        history of (all of them without `attrs`), and the periods as `aggregate` gives them; None when the entity
        has no history."""
        ctes, params = self._aggregate_sql(tenant, entity_id, attrs, timeproperty, lower, upper, origin, period,
                                           dataset_ids, distinct)
        # Three kinds of rows: periods, attribute names (no period) and the entity's types (first column). The
        # periods come first so that PostgreSQL takes the column types from them.
        rows = await self.store.fetch_rows(
            f"{ctes} SELECT NULL, periods.* FROM periods UNION ALL SELECT NULL, attr{', NULL' * 10} FROM present "
            f"UNION ALL SELECT types{', NULL' * 11} FROM history_entities "
            "WHERE tenant = ? AND entity_id = ?", [*params, tenant, entity_id])
        types = next((r[0] for r in rows if r[0] is not None), None)
        if types is None:
            return None
        present = [r[1] for r in rows if r[0] is None and r[2] is None]
        periods = sorted((tuple(r[1:]) for r in rows if r[2] is not None), key=_period_order)
        return types, present, periods

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
        sql = ("UPDATE history SET dataset_id = ?, observed_at = ?, observed_s = ?, modified_at = ?, num = ?, "
               "value = ? WHERE tenant = ? AND entity_id = ? AND attr = ? AND instance_id = ?")
        return await self.store.run_statements(  # type: ignore[no-any-return]
            [(sql, [(row[2], row[3], epoch_seconds(row[3]), row[5], row[7], row[8], tenant, entity_id, attr,
                     instance_id)])])
