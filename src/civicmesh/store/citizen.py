"""The citizen desk's SQL: a repository over the platform's one Database (store/db.py).

Every table of this room is prefixed `citizen_` and versioned as room `citizen` in the migration table, so the
room shares a database with the broker without touching its tables. A state change and its milestone event
(citizen.<state>, which the ledger records) commit in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from civicmesh.store.db import Database, Event, Tx

# The milestone events of a request as stored after a change (none when its state did not change).
Milestones = Callable[[dict[str, Any]], Sequence[Event]]

# Columns a caller may set on a request; anything else is rejected before SQL is built.
REQUEST_COLUMNS = (
    "token",
    "jurisdiction_id",
    "service_code",
    "service_name",
    "kind",
    "description",
    "state",
    "status_notes",
    "lat",
    "lon",
    "address_string",
    "address_id",
    "zipcode",
    "district",
    "media_url",
    "email",
    "phone",
    "first_name",
    "last_name",
    "device_id",
    "account_id",
    "api_key",
    "attributes",
    "lead_department",
    "co_departments",
    "dispatch_method",
    "confidence",
    "master_id",
    "service_notice",
    "requested_at",
    "updated_at",
    "expected_at",
    "dispatched_at",
    "accepted_at",
    "resolved_at",
    "closed_at",
    "satisfaction",
    "citizen_resolved",
    "visit_comment",
    "reminded_at",
    "escalation_level",
    "returned_by",
)
JSON_COLUMNS = {"attributes", "co_departments", "returned_by"}

_DDL = [
    "CREATE TABLE IF NOT EXISTS citizen_api_keys (api_key TEXT PRIMARY KEY, client TEXT NOT NULL,"
    " per_hour INTEGER, created_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS citizen_requests ("
    " id {pk}, token TEXT NOT NULL UNIQUE, jurisdiction_id TEXT, service_code TEXT NOT NULL,"
    " service_name TEXT, kind TEXT, description TEXT, state TEXT NOT NULL, status_notes TEXT,"
    " lat {real}, lon {real}, address_string TEXT, address_id TEXT, zipcode TEXT, district TEXT,"
    " media_url TEXT, email TEXT, phone TEXT, first_name TEXT, last_name TEXT, device_id TEXT,"
    " account_id TEXT, api_key TEXT, attributes TEXT, lead_department TEXT, co_departments TEXT,"
    " dispatch_method TEXT, confidence {real}, master_id BIGINT, service_notice TEXT,"
    " requested_at TEXT NOT NULL, updated_at TEXT NOT NULL, expected_at TEXT, dispatched_at TEXT,"
    " accepted_at TEXT, resolved_at TEXT, closed_at TEXT, satisfaction INTEGER, citizen_resolved INTEGER,"
    " visit_comment TEXT, reminded_at TEXT, escalation_level INTEGER NOT NULL DEFAULT 0, returned_by TEXT)",
    "CREATE INDEX IF NOT EXISTS citizen_requests_requested ON citizen_requests (requested_at)",
    "CREATE INDEX IF NOT EXISTS citizen_requests_code ON citizen_requests (service_code, requested_at)",
    "CREATE INDEX IF NOT EXISTS citizen_requests_dept ON citizen_requests (lead_department, state)",
    "CREATE INDEX IF NOT EXISTS citizen_requests_key ON citizen_requests (api_key, requested_at)",
    "CREATE INDEX IF NOT EXISTS citizen_requests_master ON citizen_requests (master_id)",
    "CREATE TABLE IF NOT EXISTS citizen_request_events ("
    " id {pk}, request_id BIGINT NOT NULL, at TEXT NOT NULL, action TEXT NOT NULL, department TEXT,"
    " note TEXT)",
    "CREATE INDEX IF NOT EXISTS citizen_events_request ON citizen_request_events (request_id, id)",
]
_TABLES = ("citizen_request_events", "citizen_requests", "citizen_api_keys")


def _encode(row: dict[str, Any]) -> dict[str, Any]:
    unknown = set(row) - set(REQUEST_COLUMNS)
    if unknown:
        raise ValueError(f"unknown request columns: {sorted(unknown)}")
    return {
        k: (json.dumps(v, ensure_ascii=False) if k in JSON_COLUMNS and v is not None else v)
        for k, v in row.items()
    }


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in JSON_COLUMNS:
        if out.get(key) is not None:
            out[key] = json.loads(out[key])
    return out


def _in(column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    return f"{column} IN ({', '.join('?' for _ in values)})", list(values)


class CitizenStore:
    """The citizen desk's store. Every write runs in one transaction; a failed write leaves nothing behind."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def migrate(self) -> None:
        await self.db.migrate("citizen", [self.db.typed(_DDL)], legacy="citizen_schema_version")

    async def drop_all(self) -> None:
        await self.db.drop_room("citizen", _TABLES)

    # --- API keys ---------------------------------------------------------------------------------------
    async def add_api_key(self, api_key: str, client: str, per_hour: int | None, created_at: str) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO citizen_api_keys (api_key, client, per_hour, created_at) VALUES (?, ?, ?, ?)",
                [api_key, client, per_hour, created_at],
            )

    async def get_api_key(self, api_key: str) -> dict[str, Any] | None:
        rows = await self.db.fetch("SELECT * FROM citizen_api_keys WHERE api_key = ?", [api_key])
        return rows[0] if rows else None

    async def count_requests_by_key(self, api_key: str, since: str) -> int:
        rows = await self.db.fetch(
            "SELECT COUNT(*) AS n FROM citizen_requests WHERE api_key = ? AND requested_at >= ?",
            [api_key, since],
        )
        return int(rows[0]["n"])

    # --- requests ---------------------------------------------------------------------------------------
    async def create_request(
        self, row: dict[str, Any], events: Sequence[tuple[str, str | None, str]],
        milestones: Milestones | None = None,
    ) -> dict[str, Any]:
        data = _encode(row)
        columns = list(data)
        async with self.db.transaction() as tx:
            created = await tx.fetch(
                f"INSERT INTO citizen_requests ({', '.join(columns)})"
                f" VALUES ({', '.join('?' for _ in columns)}) RETURNING *",
                [data[c] for c in columns],
            )
            for event in events:
                await self._add_event(tx, created[0]["id"], data["requested_at"], event)
            stored = _decode(created[0])
            for milestone in milestones(stored) if milestones else ():
                tx.emit(*milestone)
        return stored

    async def update_request(
        self,
        request_id: int,
        changes: dict[str, Any],
        event: tuple[str, str | None, str] | None = None,
        children: dict[str, Any] | None = None,
        expect_state: Iterable[str] | None = None,
        expect: dict[str, Any] | None = None,
        milestones: Milestones | None = None,
    ) -> dict[str, Any] | None:
        """Apply `changes` (and mirror `children` onto linked duplicates) in one transaction.

        With `expect_state`, the update happens only if the request is still in one of those states, so two
        departments acting at once cannot both move it; `expect` adds column == value guards (None: IS NULL),
        so two API workers supervising at once send one reminder, not two. None: the update did not apply.
        `milestones`: the events the updated request owes, committed with the update.
        """
        data = _encode(changes)
        assignments = ", ".join(f"{c} = ?" for c in data)
        where, params = "id = ?", [*data.values(), request_id]
        if expect_state is not None:
            clause, values = _in("state", list(expect_state))
            where += " AND " + clause
            params += values
        for column, value in (expect or {}).items():
            if column not in REQUEST_COLUMNS:
                raise ValueError(f"unknown request column {column!r}")
            where += f" AND {column} IS NULL" if value is None else f" AND {column} = ?"
            params += [] if value is None else [value]
        async with self.db.transaction() as tx:
            updated = await tx.fetch(
                f"UPDATE citizen_requests SET {assignments} WHERE {where} RETURNING *", params
            )
            if not updated:
                return None
            if event is not None:
                await self._add_event(
                    tx, request_id, str(data.get("updated_at") or updated[0]["updated_at"]), event
                )
            if children:
                child = _encode(children)
                await tx.execute(
                    f"UPDATE citizen_requests SET {', '.join(f'{c} = ?' for c in child)} WHERE master_id = ?",
                    [*child.values(), request_id],
                )
            stored = _decode(updated[0])
            for milestone in milestones(stored) if milestones else ():
                tx.emit(*milestone)
        return stored

    async def get_request(self, request_id: int) -> dict[str, Any] | None:
        rows = await self.db.fetch("SELECT * FROM citizen_requests WHERE id = ?", [request_id])
        return _decode(rows[0]) if rows else None

    async def get_by_token(self, token: str) -> dict[str, Any] | None:
        rows = await self.db.fetch("SELECT * FROM citizen_requests WHERE token = ?", [token])
        return _decode(rows[0]) if rows else None

    async def query_requests(
        self,
        *,
        ids: Sequence[int] | None = None,
        service_codes: Sequence[str] | None = None,
        states: Sequence[str] | None = None,
        start: str | None = None,
        end: str | None = None,
        department: str | None = None,
        dispatch_method: str | None = None,
        master_id: int | None = None,
        only_masters: bool = False,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, values in (("id", ids), ("service_code", service_codes), ("state", states)):
            if values is not None:
                if not values:
                    return []
                clause, vals = _in(column, list(values))
                clauses.append(clause)
                params += vals
        for sql, value in (
            ("requested_at >= ?", start),
            ("requested_at <= ?", end),
            ("lead_department = ?", department),
            ("dispatch_method = ?", dispatch_method),
            ("master_id = ?", master_id),
        ):
            if value is not None:
                clauses.append(sql)
                params.append(value)
        if only_masters:
            clauses.append("master_id IS NULL")
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = await self.db.fetch(
            f"SELECT * FROM citizen_requests{where} ORDER BY requested_at DESC, id DESC LIMIT ?",
            [*params, int(limit)],
        )
        return [_decode(r) for r in rows]

    async def duplicate_candidates(
        self,
        service_code: str,
        since: str,
        lat_min: float,
        lat_max: float,
        lon_min: float,
        lon_max: float,
        open_states: Sequence[str],
    ) -> list[dict[str, Any]]:
        state_clause, state_params = _in("state", list(open_states))
        rows = await self.db.fetch(
            "SELECT * FROM citizen_requests WHERE service_code = ? AND requested_at >= ?"
            " AND master_id IS NULL AND lat BETWEEN ? AND ? AND lon BETWEEN ? AND ? AND "
            + state_clause
            + " ORDER BY requested_at ASC, id ASC",
            [service_code, since, lat_min, lat_max, lon_min, lon_max, *state_params],
        )
        return [_decode(r) for r in rows]

    async def events(self, request_id: int) -> list[dict[str, Any]]:
        return await self.db.fetch(
            "SELECT at, action, department, note FROM citizen_request_events WHERE request_id = ? ORDER BY id",
            [request_id],
        )

    async def add_event(self, request_id: int, at: str, event: tuple[str, str | None, str]) -> None:
        async with self.db.transaction() as tx:
            await self._add_event(tx, request_id, at, event)

    @staticmethod
    async def _add_event(tx: Tx, request_id: int, at: str, event: tuple[str, str | None, str]) -> None:
        action, department, note = event
        await tx.execute(
            "INSERT INTO citizen_request_events (request_id, at, action, department, note)"
            " VALUES (?, ?, ?, ?, ?)",
            [request_id, at, action, department, note],
        )
