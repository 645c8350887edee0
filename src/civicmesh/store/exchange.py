"""The data exchange's SQL: a repository over the platform's one Database (store/db.py).

Every table is prefixed `exchange_` and versioned as room `exchange` in the migration table. Documents that the
exchange treats as a whole (organizations, products, negotiations) are stored as JSON next to the columns that
queries filter on. A change and its change events (exchange.*, which the ledger records) commit together.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from civicmesh.store.db import Database, Tx

Events = Sequence[tuple[str, str, dict[str, Any]]]  # change events: (kind, subject, data)

_DDL = [
    "CREATE TABLE IF NOT EXISTS exchange_settings (name TEXT PRIMARY KEY, doc TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS exchange_orgs (id TEXT PRIMARY KEY, doc TEXT NOT NULL, created_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS exchange_keys (id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL,"
    " organization TEXT NOT NULL, subject TEXT NOT NULL, roles TEXT NOT NULL, scopes TEXT NOT NULL,"
    " created_at TEXT NOT NULL, expires_at TEXT, revoked_at TEXT)",
    "CREATE TABLE IF NOT EXISTS exchange_owners (tenant TEXT NOT NULL, entity_id TEXT NOT NULL,"
    " organization TEXT NOT NULL, claimed_at TEXT NOT NULL, PRIMARY KEY (tenant, entity_id))",
    "CREATE TABLE IF NOT EXISTS exchange_products (id TEXT PRIMARY KEY, provider TEXT NOT NULL,"
    " public INTEGER NOT NULL, doc TEXT NOT NULL, created_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS exchange_negotiations (id TEXT PRIMARY KEY, product TEXT NOT NULL,"
    " provider TEXT NOT NULL, consumer TEXT NOT NULL, state TEXT NOT NULL, doc TEXT NOT NULL,"
    " created_at TEXT NOT NULL, updated_at TEXT NOT NULL, responded_at TEXT, agreed_at TEXT,"
    " expires_at TEXT, uses INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS exchange_negotiations_consumer ON exchange_negotiations (consumer, state)",
    "CREATE TABLE IF NOT EXISTS exchange_transitions (id {pk}, negotiation TEXT NOT NULL, at TEXT NOT NULL,"
    " from_state TEXT, to_state TEXT NOT NULL, actor TEXT NOT NULL, reason TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS exchange_transitions_neg ON exchange_transitions (negotiation, id)",
    "CREATE TABLE IF NOT EXISTS exchange_metering (id {pk}, at TEXT NOT NULL, day TEXT NOT NULL,"
    " consumer TEXT NOT NULL, provider TEXT, product TEXT, agreement TEXT, operation TEXT NOT NULL,"
    " tenant TEXT NOT NULL, entities INTEGER NOT NULL, bytes INTEGER NOT NULL, status TEXT NOT NULL,"
    " reason TEXT NOT NULL, duration_ms {real} NOT NULL)",
    "CREATE INDEX IF NOT EXISTS exchange_metering_day ON exchange_metering (day, consumer, provider)",
    "CREATE INDEX IF NOT EXISTS exchange_metering_agreement ON exchange_metering (agreement)",
]
# Step 2: the audit trail of administrative and security events: keys issued, revoked, rotated; organizations,
# trust (OIDC) and ownership changed; failed authentications.
_AUDIT_DDL = [
    "CREATE TABLE IF NOT EXISTS exchange_audit (id {pk}, at TEXT NOT NULL, kind TEXT NOT NULL, actor TEXT,"
    " organization TEXT, subject TEXT NOT NULL, data TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS exchange_audit_kind ON exchange_audit (kind, id)",
]
_TABLES = ("exchange_audit", "exchange_metering", "exchange_transitions", "exchange_negotiations", "exchange_products",
           "exchange_owners", "exchange_keys", "exchange_orgs", "exchange_settings")
METERING_COLUMNS = ("at", "day", "consumer", "provider", "product", "agreement", "operation", "tenant",
                    "entities", "bytes", "status", "reason", "duration_ms")


def _doc(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(row["doc"])  # type: ignore[no-any-return]


def _negotiation(row: dict[str, Any]) -> dict[str, Any]:
    doc = _doc(row)
    doc.update(state=row["state"], updated_at=row["updated_at"], uses=int(row["uses"]),
               responded_at=row["responded_at"], agreed_at=row["agreed_at"], expires_at=row["expires_at"])
    return doc


class ExchangeStore:
    """The exchange's store. Each method is one short transaction; reads never wait for the writer."""

    # Ownership ends in the transaction that deletes the entity (the entity store runs this for each deletion
    # and records the released owner in the deletion event), so a create of the same id right after is never
    # orphaned by a late release, and a deletion notification still knows whose entity it was.
    RELEASE_ON_DELETE = ("DELETE FROM exchange_owners WHERE tenant = ? AND entity_id = ? RETURNING organization")

    def __init__(self, db: Database) -> None:
        self.db = db

    async def migrate(self) -> None:
        await self.db.migrate("exchange", [self.db.typed(_DDL), self.db.typed(_AUDIT_DDL)],
                              legacy="exchange_schema_version")

    async def drop_all(self) -> None:
        await self.db.drop_room("exchange", _TABLES)

    @staticmethod
    def _events(tx: Tx, events: Events) -> None:
        """Change events (kind, subject, data) go into the outbox in the same transaction as the change they
        describe, so the ledger can never miss a transition that happened nor record one that did not."""
        for kind, subject, data in events:
            tx.emit(kind, subject, data)

    async def get_setting(self, name: str) -> dict[str, Any] | None:
        rows = await self.db.fetch("SELECT doc FROM exchange_settings WHERE name = ?", [name])
        return _doc(rows[0]) if rows else None

    async def put_setting(self, name: str, doc: dict[str, Any]) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM exchange_settings WHERE name = ?", [name])
            await tx.execute("INSERT INTO exchange_settings (name, doc) VALUES (?, ?)", [name, json.dumps(doc)])

    # --- organizations ------------------------------------------------------------------------------------
    async def add_org(self, doc: dict[str, Any], events: Events = ()) -> bool:
        async with self.db.transaction() as tx:
            if await tx.fetch("SELECT 1 AS x FROM exchange_orgs WHERE id = ?", [doc["id"]]):
                return False
            await tx.execute("INSERT INTO exchange_orgs (id, doc, created_at) VALUES (?, ?, ?)",
                             [doc["id"], json.dumps(doc, ensure_ascii=False), doc["created_at"]])
            self._events(tx, events)
        return True

    async def put_org(self, doc: dict[str, Any]) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("UPDATE exchange_orgs SET doc = ? WHERE id = ?",
                             [json.dumps(doc, ensure_ascii=False), doc["id"]])

    async def get_org(self, org_id: str) -> dict[str, Any] | None:
        rows = await self.db.fetch("SELECT doc FROM exchange_orgs WHERE id = ?", [org_id])
        return _doc(rows[0]) if rows else None

    async def list_orgs(self) -> list[dict[str, Any]]:
        rows = await self.db.fetch("SELECT doc FROM exchange_orgs ORDER BY id")
        return [_doc(r) for r in rows]

    # --- API keys -----------------------------------------------------------------------------------------
    async def add_key(self, row: dict[str, Any]) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO exchange_keys (id, secret_hash, organization, subject, roles, scopes, created_at,"
                " expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                [row["id"], row["secret_hash"], row["organization"], row["subject"], json.dumps(row["roles"]),
                 json.dumps(row["scopes"]), row["created_at"], row["expires_at"]])

    async def get_key(self, key_id: str) -> dict[str, Any] | None:
        rows = await self.db.fetch("SELECT * FROM exchange_keys WHERE id = ?", [key_id])
        if not rows:
            return None
        row = dict(rows[0])
        row["roles"], row["scopes"] = json.loads(row["roles"]), json.loads(row["scopes"])
        return row

    async def list_keys(self, organization: str | None) -> list[dict[str, Any]]:
        where, params = ("WHERE organization = ?", [organization]) if organization else ("", [])
        rows = await self.db.fetch("SELECT id, organization, subject, roles, scopes, created_at, expires_at,"
                                f" revoked_at FROM exchange_keys {where} ORDER BY created_at", params)
        out = []
        for r in rows:
            row = dict(r)
            row["roles"], row["scopes"] = json.loads(row["roles"]), json.loads(row["scopes"])
            out.append(row)
        return out

    async def revoke_key(self, key_id: str, at: str,
                         events: Events = ()) -> bool:
        async with self.db.transaction() as tx:
            rows = await tx.fetch("UPDATE exchange_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"
                                    " RETURNING id", [at, key_id])
            if rows:
                self._events(tx, events)
        return bool(rows)

    async def rotate_key(self, old_id: str, row: dict[str, Any], at: str, old_expires_at: str | None) -> bool:
        """Replace a live key by `row` in one transaction: the old key is revoked at `at`, or, with
        `old_expires_at`, keeps working until then (a grace period to roll the new secret out). False when the
        old key is already revoked (nothing written)."""
        async with self.db.transaction() as tx:
            if old_expires_at is None:
                rows = await tx.fetch("UPDATE exchange_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"
                                      " RETURNING id", [at, old_id])
            else:
                rows = await tx.fetch(
                    "UPDATE exchange_keys SET expires_at = ? WHERE id = ? AND revoked_at IS NULL AND (expires_at IS"
                    " NULL OR expires_at > ?) RETURNING id", [old_expires_at, old_id, old_expires_at])
                if not rows:  # it expires sooner than the grace would last: leave its expiry, still rotate
                    rows = await tx.fetch("SELECT id FROM exchange_keys WHERE id = ? AND revoked_at IS NULL",
                                          [old_id])
            if not rows:
                return False
            await tx.execute(
                "INSERT INTO exchange_keys (id, secret_hash, organization, subject, roles, scopes, created_at,"
                " expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                [row["id"], row["secret_hash"], row["organization"], row["subject"], json.dumps(row["roles"]),
                 json.dumps(row["scopes"]), row["created_at"], row["expires_at"]])
        return True

    # --- audit trail --------------------------------------------------------------------------------------
    async def add_audit(self, row: dict[str, Any]) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("INSERT INTO exchange_audit (at, kind, actor, organization, subject, data)"
                             " VALUES (?, ?, ?, ?, ?, ?)", [row["at"], row["kind"], row["actor"],
                                                            row["organization"], row["subject"],
                                                            json.dumps(row["data"])])

    async def audit(self, *, kind: str | None = None, organization: str | None = None, after: int = 0,
                    limit: int = 100) -> list[dict[str, Any]]:
        """Audit rows after id `after`, oldest first; `kind` matches a kind or a dotted prefix of kinds."""
        where, params = ["id > ?"], list[Any]([after])
        if kind:
            where.append("(kind = ? OR kind LIKE ?)")
            params += [kind, kind.replace("_", "").replace("%", "") + ".%"]
        if organization:
            where.append("organization = ?")
            params.append(organization)
        rows = await self.db.fetch("SELECT id, at, kind, actor, organization, subject, data FROM exchange_audit"
                                   f" WHERE {' AND '.join(where)} ORDER BY id LIMIT ?", [*params, limit])
        return [{**dict(r), "id": int(r["id"]), "data": json.loads(r["data"])} for r in rows]

    async def has_platform_admin(self) -> bool:
        rows = await self.db.fetch("SELECT roles FROM exchange_keys WHERE revoked_at IS NULL")
        return any("platform_admin" in json.loads(r["roles"]) for r in rows)

    # --- ownership ----------------------------------------------------------------------------------------
    async def owners(self, tenant: str, ids: Sequence[str]) -> dict[str, str]:
        if not ids:
            return {}
        found: dict[str, str] = {}
        # Chunked so a 1000-entity page stays under SQLite's parameter limit.
        for start in range(0, len(ids), 500):
            chunk = list(ids[start:start + 500])
            marks = ", ".join("?" for _ in chunk)
            rows = await self.db.fetch(f"SELECT entity_id, organization FROM exchange_owners WHERE tenant = ?"
                                    f" AND entity_id IN ({marks})", [tenant, *chunk])
            found.update({r["entity_id"]: r["organization"] for r in rows})
        return found

    async def claim(self, tenant: str, entity_id: str, organization: str, at: str) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM exchange_owners WHERE tenant = ? AND entity_id = ?", [tenant, entity_id])
            await tx.execute("INSERT INTO exchange_owners (tenant, entity_id, organization, claimed_at)"
                             " VALUES (?, ?, ?, ?)", [tenant, entity_id, organization, at])

    async def claim_unowned(self, tenant: str, ids: Sequence[str], organization: str, at: str) -> int:
        """Record `organization` as the owner of those of `ids` that have none; how many it took."""
        async with self.db.transaction() as tx:
            taken = 0
            for entity_id in ids:
                rows = await tx.fetch("INSERT INTO exchange_owners (tenant, entity_id, organization, claimed_at)"
                                        " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING entity_id",
                                        [tenant, entity_id, organization, at])
                taken += len(rows)
        return taken

    # --- products -----------------------------------------------------------------------------------------
    async def add_product(self, doc: dict[str, Any], events: Events = ()) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("INSERT INTO exchange_products (id, provider, public, doc, created_at)"
                             " VALUES (?, ?, ?, ?, ?)",
                             [doc["id"], doc["provider"], int(bool(doc.get("public"))),
                              json.dumps(doc, ensure_ascii=False), doc["created_at"]])
            self._events(tx, events)

    async def get_product(self, product_id: str) -> dict[str, Any] | None:
        rows = await self.db.fetch("SELECT doc FROM exchange_products WHERE id = ?", [product_id])
        return _doc(rows[0]) if rows else None

    async def list_products(self, *, public_only: bool = False) -> list[dict[str, Any]]:
        where = " WHERE public = 1" if public_only else ""
        rows = await self.db.fetch(f"SELECT doc FROM exchange_products{where} ORDER BY created_at, id")
        return [_doc(r) for r in rows]

    # --- negotiations (access request -> agreement) ---------------------------------------------------------
    async def add_negotiation(self, doc: dict[str, Any], transition: dict[str, Any],
                              events: Events = ()) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO exchange_negotiations (id, product, provider, consumer, state, doc, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [doc["id"], doc["product"], doc["provider"], doc["consumer"], doc["state"],
                 json.dumps(doc, ensure_ascii=False), doc["created_at"], doc["created_at"]])
            await self._transition(tx, transition)
            self._events(tx, events)

    async def move(self, negotiation_id: str, expect: Sequence[str], state: str, transition: dict[str, Any],
                   *, doc: dict[str, Any] | None = None, responded: bool = False,
                   agreed_at: str | None = None, expires_at: str | None = None,
                   events: Events = ()) -> dict[str, Any] | None:
        """Move to `state` only if still in one of `expect` (so two approvers cannot both act). None: it was not."""
        sets = ["state = ?", "updated_at = ?"]
        params: list[Any] = [state, transition["at"]]
        if doc is not None:
            sets.append("doc = ?")
            params.append(json.dumps(doc, ensure_ascii=False))
        if responded:
            sets.append("responded_at = COALESCE(responded_at, ?)")
            params.append(transition["at"])
        if agreed_at is not None:
            sets += ["agreed_at = ?", "expires_at = ?"]
            params += [agreed_at, expires_at]
        marks = ", ".join("?" for _ in expect)
        async with self.db.transaction() as tx:
            rows = await tx.fetch(f"UPDATE exchange_negotiations SET {', '.join(sets)} WHERE id = ? AND state IN"
                                    f" ({marks}) RETURNING *", [*params, negotiation_id, *expect])
            if not rows:
                return None
            await self._transition(tx, transition)
            self._events(tx, events)
        return _negotiation(rows[0])

    @staticmethod
    async def _transition(tx: Tx, t: dict[str, Any]) -> None:
        await tx.execute("INSERT INTO exchange_transitions (negotiation, at, from_state, to_state, actor, reason)"
                         " VALUES (?, ?, ?, ?, ?, ?)",
                         [t["negotiation"], t["at"], t["from"], t["to"], t["actor"], t["reason"]])

    async def get_negotiation(self, negotiation_id: str) -> dict[str, Any] | None:
        rows = await self.db.fetch("SELECT * FROM exchange_negotiations WHERE id = ?", [negotiation_id])
        return _negotiation(rows[0]) if rows else None

    async def list_negotiations(self, *, organization: str | None = None, state: str | None = None,
                                consumer: str | None = None) -> list[dict[str, Any]]:
        clauses, params = [], []
        if organization:
            clauses.append("(consumer = ? OR provider = ?)")
            params += [organization, organization]
        if consumer:
            clauses.append("consumer = ?")
            params.append(consumer)
        if state:
            clauses.append("state = ?")
            params.append(state)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = await self.db.fetch(f"SELECT * FROM exchange_negotiations{where} ORDER BY created_at, id", params)
        return [_negotiation(r) for r in rows]

    async def transitions(self, negotiation_id: str) -> list[dict[str, Any]]:
        return await self.db.fetch("SELECT at, from_state, to_state, actor, reason FROM exchange_transitions"
                                " WHERE negotiation = ? ORDER BY id", [negotiation_id])

    async def use(self, agreement_id: str, limit: int | None) -> int | None:
        """Count one use; with a limit, only while under it. The new count, or None when the limit is reached."""
        guard, params = ("", [agreement_id]) if limit is None else (" AND uses < ?", [agreement_id, limit])
        async with self.db.transaction() as tx:
            rows = await tx.fetch("UPDATE exchange_negotiations SET uses = uses + 1 WHERE id = ?"
                                    f"{guard} RETURNING uses", params)
        return int(rows[0]["uses"]) if rows else None

    # --- metering -----------------------------------------------------------------------------------------
    async def add_metering(self, records: Sequence[dict[str, Any]],
                           events: Events = ()) -> None:
        if not records:
            return
        marks = ", ".join("?" for _ in METERING_COLUMNS)
        async with self.db.transaction() as tx:
            for record in records:
                await tx.execute(f"INSERT INTO exchange_metering ({', '.join(METERING_COLUMNS)}) VALUES ({marks})",
                                 [record[c] for c in METERING_COLUMNS])
            self._events(tx, events)

    async def metering(self, *, organization: str | None = None, agreement: str | None = None,
                       since: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        clauses, params = [], []
        if organization:
            clauses.append("(consumer = ? OR provider = ?)")
            params += [organization, organization]
        if agreement:
            clauses.append("agreement = ?")
            params.append(agreement)
        if since:
            clauses.append("at >= ?")
            params.append(since)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        return await self.db.fetch(f"SELECT * FROM exchange_metering{where} ORDER BY id DESC LIMIT ?",
                                [*params, int(limit)])

    async def metering_daily(self, organization: str | None = None) -> list[dict[str, Any]]:
        where, params = (" WHERE (consumer = ? OR provider = ?)", [organization, organization]) \
            if organization else ("", [])
        return await self.db.fetch(
            "SELECT day, consumer, provider, COUNT(*) AS requests, SUM(entities) AS entities,"
            " SUM(bytes) AS bytes, SUM(CASE WHEN status = 'denied' THEN 1 ELSE 0 END) AS denied"
            f" FROM exchange_metering{where} GROUP BY day, consumer, provider ORDER BY day, consumer, provider",
            params)

    async def metering_totals(self) -> list[dict[str, Any]]:
        """Per (consumer, provider, product, status): how many requests (for KPIs)."""
        return await self.db.fetch(
            "SELECT consumer, provider, product, status, COUNT(*) AS requests, SUM(entities) AS entities"
            " FROM exchange_metering GROUP BY consumer, provider, product, status")
