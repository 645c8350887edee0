"""Persistence of the early-warning room: rules and each rule's detector state per entity.

Portable SQL over the main store's `run_statements` / `fetch_rows`; tables prefixed `alerts_`, versioned as
room `alerts` in the migration table (store/db.py). A state row remembers the outbox sequence number it has seen,
so an event replayed after a crash is not counted twice by EWMA or CUSUM.
"""

from __future__ import annotations

from typing import Any

import orjson

_DDL = [
    "CREATE TABLE IF NOT EXISTS alerts_rules (tenant TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, "
    "modified_at TEXT NOT NULL, PRIMARY KEY (tenant, id))",
    "CREATE TABLE IF NOT EXISTS alerts_state (tenant TEXT NOT NULL, rule_id TEXT NOT NULL, entity_id TEXT NOT NULL, "
    "state TEXT NOT NULL, last_seq BIGINT NOT NULL, PRIMARY KEY (tenant, rule_id, entity_id))",
]


class AlertStore:
    def __init__(self, store: Any) -> None:
        self.store = store

    async def migrate(self) -> None:
        await self.store.db.migrate("alerts", [_DDL], legacy="alerts_schema_version")

    async def put_rule(self, tenant: str, rule: dict[str, Any], now: str, *, create: bool) -> bool:
        """create=True: insert, False when the id exists; create=False: insert or replace (state is reset)."""
        body = orjson.dumps(rule).decode()
        if create:
            changed = await self.store.run_statements([(
                "INSERT INTO alerts_rules (tenant, id, body, modified_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (tenant, id) DO NOTHING", [(tenant, rule["id"], body, now)])])
            return bool(changed)
        await self.store.run_statements([
            ("INSERT INTO alerts_rules (tenant, id, body, modified_at) VALUES (?, ?, ?, ?) ON CONFLICT (tenant, id) "
             "DO UPDATE SET body = excluded.body, modified_at = excluded.modified_at",
             [(tenant, rule["id"], body, now)]),
            ("DELETE FROM alerts_state WHERE tenant = ? AND rule_id = ?", [(tenant, rule["id"])])])
        return True

    async def rules(self, tenant: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        sql, params = "SELECT tenant, body FROM alerts_rules", []
        if tenant is not None:
            sql += " WHERE tenant = ?"
            params.append(tenant)
        return [(t, orjson.loads(b)) for t, b in await self.store.fetch_rows(sql + " ORDER BY tenant, id", params)]

    async def rule(self, tenant: str, rule_id: str) -> dict[str, Any] | None:
        rows = await self.store.fetch_rows("SELECT body FROM alerts_rules WHERE tenant = ? AND id = ?",
                                           [tenant, rule_id])
        return orjson.loads(rows[0][0]) if rows else None

    async def delete_rule(self, tenant: str, rule_id: str) -> bool:
        changed = await self.store.run_statements([
            ("DELETE FROM alerts_rules WHERE tenant = ? AND id = ?", [(tenant, rule_id)]),
            ("DELETE FROM alerts_state WHERE tenant = ? AND rule_id = ?", [(tenant, rule_id)])])
        return bool(changed)

    async def state(self, tenant: str, rule_id: str, entity_id: str) -> tuple[dict[str, Any], int] | None:
        rows = await self.store.fetch_rows(
            "SELECT state, last_seq FROM alerts_state WHERE tenant = ? AND rule_id = ? AND entity_id = ?",
            [tenant, rule_id, entity_id])
        return (orjson.loads(rows[0][0]), int(rows[0][1])) if rows else None

    async def save_states(self, rows: list[tuple[str, str, str, dict[str, Any], int]]) -> None:
        """(tenant, rule id, entity id, state, last seq) rows, in one transaction."""
        if rows:
            await self.store.run_statements([(
                "INSERT INTO alerts_state (tenant, rule_id, entity_id, state, last_seq) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (tenant, rule_id, entity_id) DO UPDATE SET state = excluded.state, "
                "last_seq = excluded.last_seq",
                [(t, r, e, orjson.dumps(s).decode(), q) for t, r, e, s, q in rows])])
