"""Persistence of the IoT agent: service groups, devices, per-device counters and the dead-letter list.

Portable SQL over the main store's `run_statements` / `fetch_rows` (SQLite's single writer thread, or the
PostgreSQL pool), so the agent never competes with the broker for SQLite's write lock. Tables are prefixed
`ingest_` and versioned as room `ingest` in the migration table (store/db.py).

Every service group and device belongs to an organization (the provisioning caller's), which the agent writes as;
rows of a version-1 database (before ownership existed) belong to the platform organization.
"""

from __future__ import annotations

from typing import Any

import orjson

# Owner of groups and devices provisioned before version 2: the platform acted for them then, and still does.
PLATFORM_ORG = "platform"
# How many dead letters a tenant keeps; older ones are trimmed so a flood of garbage cannot fill the disk.
DEAD_LETTER_CAP = 10_000


def _ddl(engine: str) -> list[str]:
    serial = "BIGSERIAL PRIMARY KEY" if engine == "postgres" else "INTEGER PRIMARY KEY"
    return [
        # apikey is unique across tenants: it alone routes an MQTT topic to a tenant.
        "CREATE TABLE IF NOT EXISTS ingest_groups (apikey TEXT NOT NULL, resource TEXT NOT NULL, "
        "tenant TEXT NOT NULL, servicepath TEXT NOT NULL, body TEXT NOT NULL, created_at TEXT NOT NULL, "
        "PRIMARY KEY (apikey, resource))",
        "CREATE INDEX IF NOT EXISTS ingest_groups_tenant ON ingest_groups (tenant, servicepath)",
        "CREATE TABLE IF NOT EXISTS ingest_devices (tenant TEXT NOT NULL, device_id TEXT NOT NULL, "
        "apikey TEXT NOT NULL, servicepath TEXT NOT NULL, body TEXT NOT NULL, created_at TEXT NOT NULL, "
        "PRIMARY KEY (tenant, device_id))",
        "CREATE UNIQUE INDEX IF NOT EXISTS ingest_devices_key ON ingest_devices (apikey, device_id)",
        f"CREATE TABLE IF NOT EXISTS ingest_deadletters (id {serial}, tenant TEXT NOT NULL, apikey TEXT, "
        "device_id TEXT, transport TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL, payload TEXT, "
        "received_at TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS ingest_deadletters_tenant ON ingest_deadletters (tenant, id)",
        "CREATE TABLE IF NOT EXISTS ingest_counters (tenant TEXT NOT NULL, apikey TEXT NOT NULL, "
        "device_id TEXT NOT NULL, outcome TEXT NOT NULL, n BIGINT NOT NULL, "
        "PRIMARY KEY (tenant, apikey, device_id, outcome))",
    ]


# Step 2: groups and devices get an owner; those provisioned before are the platform's.
_OWNERSHIP = [f"ALTER TABLE {table} ADD COLUMN organization TEXT NOT NULL DEFAULT '{PLATFORM_ORG}'"
              for table in ("ingest_groups", "ingest_devices")]

# Restricts counters and dead letters to the devices one organization owns (params: tenant, organization).
_OWN_DEVICES = " AND device_id IN (SELECT device_id FROM ingest_devices WHERE tenant = ? AND organization = ?)"


def _body(device: dict[str, Any]) -> str:
    """The stored JSON of a device: its owner lives in its own column, not in the body."""
    return orjson.dumps({k: v for k, v in device.items() if k != "organization"}).decode()


class IngestStore:
    def __init__(self, store: Any) -> None:
        self.store = store

    async def migrate(self) -> None:
        await self.store.db.migrate("ingest", [_ddl(self.store.engine), _OWNERSHIP], legacy="ingest_schema_version")

    # -- service groups ----------------------------------------------------------------------------------
    async def add_groups(self, groups: list[dict[str, Any]], tenant: str, servicepath: str, now: str,
                         organization: str = PLATFORM_ORG) -> None:
        """All or none: a conflicting apikey/resource aborts the whole request (the caller checked first)."""
        await self.store.run_statements([(
            "INSERT INTO ingest_groups (apikey, resource, tenant, servicepath, body, created_at, organization) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(g["apikey"], g["resource"], tenant, servicepath, orjson.dumps(g).decode(), now, organization)
             for g in groups])])

    async def groups(self, tenant: str | None = None, servicepath: str | None = None,
                     apikey: str | None = None, resource: str | None = None,
                     organization: str | None = None) -> list[dict[str, Any]]:
        """Service groups matching every given filter; `organization` in each is its owner."""
        sql = "SELECT tenant, servicepath, body, organization FROM ingest_groups WHERE 1 = 1"
        params: list[Any] = []
        for column, value in (("tenant", tenant), ("servicepath", servicepath), ("apikey", apikey),
                              ("resource", resource), ("organization", organization)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        rows = await self.store.fetch_rows(sql + " ORDER BY created_at, apikey", params)
        return [{**orjson.loads(body), "service": t, "subservice": sp, "organization": org}
                for t, sp, body, org in rows]

    async def replace_group(self, group: dict[str, Any]) -> None:
        await self.store.run_statements([(
            "UPDATE ingest_groups SET body = ? WHERE apikey = ? AND resource = ?",
            [(orjson.dumps(group).decode(), group["apikey"], group["resource"])])])

    async def delete_group(self, apikey: str, resource: str) -> int:
        return await self.store.run_statements([(  # type: ignore[no-any-return]
            "DELETE FROM ingest_groups WHERE apikey = ? AND resource = ?", [(apikey, resource)])])

    # -- devices -----------------------------------------------------------------------------------------
    async def add_devices(self, devices: list[dict[str, Any]], tenant: str, servicepath: str, now: str,
                          organization: str = PLATFORM_ORG) -> None:
        await self.store.run_statements([(
            "INSERT INTO ingest_devices (tenant, device_id, apikey, servicepath, body, created_at, organization) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(tenant, d["device_id"], d["apikey"], servicepath, _body(d), now, d.get("organization") or organization)
             for d in devices])])

    async def device(self, tenant: str, device_id: str) -> dict[str, Any] | None:
        rows = await self.store.fetch_rows(
            "SELECT servicepath, body, organization FROM ingest_devices WHERE tenant = ? AND device_id = ?",
            [tenant, device_id])
        if not rows:
            return None
        return {**orjson.loads(rows[0][1]), "service": tenant, "service_path": rows[0][0], "organization": rows[0][2]}

    async def device_by_key(self, apikey: str, device_id: str) -> tuple[str, dict[str, Any]] | None:
        rows = await self.store.fetch_rows(
            "SELECT tenant, servicepath, body, organization FROM ingest_devices WHERE apikey = ? AND device_id = ?",
            [apikey, device_id])
        if not rows:
            return None
        tenant, servicepath, body, org = rows[0]
        return tenant, {**orjson.loads(body), "service": tenant, "service_path": servicepath, "organization": org}

    async def devices(self, tenant: str, servicepath: str | None, limit: int, offset: int,
                      organization: str | None = None) -> tuple[list[dict[str, Any]], int]:
        where, params = "tenant = ?", [tenant]
        for column, value in (("servicepath", servicepath), ("organization", organization)):
            if value is not None:
                where += f" AND {column} = ?"
                params.append(value)
        total = (await self.store.fetch_rows(f"SELECT COUNT(*) FROM ingest_devices WHERE {where}", params))[0][0]
        rows = await self.store.fetch_rows(
            f"SELECT servicepath, body, organization FROM ingest_devices WHERE {where} "
            "ORDER BY device_id LIMIT ? OFFSET ?", [*params, limit, offset])
        return [{**orjson.loads(b), "service": tenant, "service_path": sp, "organization": org}
                for sp, b, org in rows], int(total)

    async def replace_device(self, tenant: str, device: dict[str, Any]) -> None:
        """New body and apikey; the owner stays."""
        await self.store.run_statements([(
            "UPDATE ingest_devices SET body = ?, apikey = ? WHERE tenant = ? AND device_id = ?",
            [(_body(device), device["apikey"], tenant, device["device_id"])])])

    async def delete_device(self, tenant: str, device_id: str) -> int:
        return await self.store.run_statements([(  # type: ignore[no-any-return]
            "DELETE FROM ingest_devices WHERE tenant = ? AND device_id = ?", [(tenant, device_id)])])

    # -- outcomes ----------------------------------------------------------------------------------------
    async def record(self, counts: dict[tuple[str, str, str, str], int],
                     dead: list[tuple[str, str | None, str | None, str, str, str, str | None, str]]) -> None:
        """Add to the per-device counters and append dead letters, in one transaction.

        counts: (tenant, apikey, device_id, outcome) -> n;
        dead: (tenant, apikey, device_id, transport, reason, detail, payload, received_at).
        """
        statements: list[tuple[str, list[tuple[Any, ...]]]] = []
        if counts:
            statements.append((
                "INSERT INTO ingest_counters (tenant, apikey, device_id, outcome, n) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (tenant, apikey, device_id, outcome) DO UPDATE SET n = ingest_counters.n + excluded.n",
                [(*key, n) for key, n in sorted(counts.items())]))
        if dead:
            statements.append((
                "INSERT INTO ingest_deadletters (tenant, apikey, device_id, transport, reason, detail, payload, "
                "received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", dead))
            statements.append((
                "DELETE FROM ingest_deadletters WHERE tenant = ? AND id <= "
                "(SELECT MAX(id) FROM ingest_deadletters WHERE tenant = ?) - ?",
                [(t, t, DEAD_LETTER_CAP) for t in sorted({d[0] for d in dead})]))
        if statements:
            await self.store.run_statements(statements)

    async def counters(self, tenant: str, device_id: str | None = None,
                       organization: str | None = None) -> dict[str, dict[str, int]]:
        """device id -> outcome -> count; with `organization`, only that organization's devices."""
        sql, params = "SELECT device_id, outcome, n FROM ingest_counters WHERE tenant = ?", [tenant]
        if device_id is not None:
            sql += " AND device_id = ?"
            params.append(device_id)
        if organization is not None:
            sql += _OWN_DEVICES
            params += [tenant, organization]
        out: dict[str, dict[str, int]] = {}
        for dev, outcome, n in await self.store.fetch_rows(sql, params):
            bucket = out.setdefault(dev, {})
            bucket[outcome] = bucket.get(outcome, 0) + int(n)
        return out

    async def dead_letters(self, tenant: str, device_id: str | None, reason: str | None, limit: int,
                           offset: int, organization: str | None = None) -> list[dict[str, Any]]:
        """Newest first; with `organization`, only letters of that organization's devices."""
        sql = ("SELECT id, apikey, device_id, transport, reason, detail, payload, received_at "
               "FROM ingest_deadletters WHERE tenant = ?")
        params: list[Any] = [tenant]
        if organization is not None:
            sql += _OWN_DEVICES
            params += [tenant, organization]
        if device_id is not None:
            sql += " AND device_id = ?"
            params.append(device_id)
        if reason is not None:
            sql += " AND reason = ?"
            params.append(reason)
        rows = await self.store.fetch_rows(sql + " ORDER BY id DESC LIMIT ? OFFSET ?", [*params, limit, offset])
        keys = ("id", "apikey", "device_id", "transport", "reason", "detail", "payload", "receivedAt")
        return [dict(zip(keys, row, strict=True)) for row in rows]
