"""The attribute history behind the temporal API. Portable SQL over either engine's run_statements/fetch_rows."""

from __future__ import annotations

from typing import Any

# (attr, instance id, dataset id, observed at, created at, modified at, deleted at, numeric value, instance JSON)
HistoryRow = tuple[str, str, str | None, str | None, str, str, str | None, float | None, bytes | None]

TIME_COLUMNS = {"observedAt": "observed_at", "createdAt": "created_at", "modifiedAt": "modified_at",
                "deletedAt": "deleted_at"}


class History:
    def __init__(self, store: Any) -> None:
        self.store = store

    async def add(self, tenant: str, entity_id: str, types: str, created_at: str, rows: list[HistoryRow],
                  *, deleted_at: str | None = None) -> None:
        statements: list[tuple[str, list[tuple[Any, ...]]]] = [
            ("INSERT INTO history_entities (tenant, entity_id, types, created_at, deleted_at) VALUES (?, ?, ?, ?, ?) "
             "ON CONFLICT (tenant, entity_id) DO UPDATE SET types = excluded.types, deleted_at = excluded.deleted_at",
             [(tenant, entity_id, types, created_at, deleted_at)]),
            ("INSERT INTO history (tenant, entity_id, attr, instance_id, dataset_id, observed_at, created_at, "
             "modified_at, deleted_at, num, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
             "ON CONFLICT (tenant, entity_id, instance_id) DO NOTHING",
             [(tenant, entity_id, *row) for row in rows]),
        ]
        await self.store.run_statements(statements)

    async def entities(self, tenant: str, ids: list[str] | None = None) -> list[tuple[str, str, str, str | None]]:
        sql = "SELECT entity_id, types, created_at, deleted_at FROM history_entities WHERE tenant = ?"
        params: list[Any] = [tenant]
        if ids:
            sql += f" AND entity_id IN ({','.join('?' * len(ids))})"
            params.extend(ids)
        return await self.store.fetch_rows(sql + " ORDER BY entity_id", params)  # type: ignore[no-any-return]

    async def rows(self, tenant: str, entity_id: str, attrs: list[str] | None, timeproperty: str,
                   timerel: str | None, start: str | None, end: str | None,
                   last_n: int | None) -> list[tuple[Any, ...]]:
        column = TIME_COLUMNS[timeproperty]
        sql = (f"SELECT attr, instance_id, dataset_id, observed_at, created_at, modified_at, deleted_at, num, value, "
               f"{column} FROM history WHERE tenant = ? AND entity_id = ?")
        params: list[Any] = [tenant, entity_id]
        if attrs:
            sql += f" AND attr IN ({','.join('?' * len(attrs))})"
            params.extend(attrs)
        if timerel:
            sql += f" AND {column} IS NOT NULL"
            if timerel == "before":
                sql += f" AND {column} < ?"
                params.append(start)
            elif timerel == "after":
                sql += f" AND {column} > ?"
                params.append(start)
            else:
                sql += f" AND {column} >= ? AND {column} < ?"
                params.extend([start, end])
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
