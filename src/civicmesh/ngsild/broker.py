"""The broker: NGSI-LD operations over the store, each one passing the access gate.

Routes (HTTP), the IoT agent and other rooms call this; it never speaks HTTP itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from civicmesh.access import ANONYMOUS, AccessRequest, Caller, Gate
from civicmesh.errors import Problem
from civicmesh.ngsild import masking
from civicmesh.ngsild import operations as ops
from civicmesh.ngsild.model import clone, now_iso
from civicmesh.store.base import Change, EntityQuery

if TYPE_CHECKING:
    from civicmesh.store.interface import EntityStore

Doc = dict[str, Any]


@dataclass
class BatchResult:
    success: list[str] = field(default_factory=list)
    errors: list[tuple[str, Problem]] = field(default_factory=list)
    created: list[str] = field(default_factory=list)


@dataclass
class UpdateResult:
    updated: list[str]
    not_updated: list[tuple[str, str]]


class Broker:
    def __init__(self, store: EntityStore, gate: Gate) -> None:
        self.store = store
        self.gate = gate

    async def _allow(self, caller: Caller, tenant: str, operation: str, *, ids: tuple[str, ...] = (),
                     types: tuple[str, ...] = (), attrs: tuple[str, ...] = ()) -> None:
        decision = await self.gate.check(AccessRequest(caller, tenant, operation, types, ids, attrs))  # type: ignore[arg-type]
        if not decision.allowed:
            raise Problem("Forbidden", decision.reason or "the access gate denied this operation")

    async def authorize(self, caller: Caller, tenant: str, operation: str) -> None:
        """The gate check for operations on broker metadata (registrations, subscriptions, history)."""
        await self._allow(caller, tenant, operation)

    async def require_tenant(self, tenant: str) -> None:
        if not await self.store.tenant_exists(tenant):
            raise Problem("NonexistentTenant", f"tenant {tenant!r} does not exist (it is created by its first write)")

    # -- single entity ------------------------------------------------------------------------------------
    async def create(self, tenant: str, doc: Doc, caller: Caller = ANONYMOUS) -> None:
        await self._allow(caller, tenant, "create", ids=(doc["id"],), types=tuple(doc["type"]),
                          attrs=tuple(doc["attrs"]))

        def plan(current: dict[str, Doc | None]) -> list[Change]:
            if current[doc["id"]] is not None:
                raise Problem("AlreadyExists", f"entity {doc['id']} already exists")
            return [Change(doc["id"], None, doc, list(doc["attrs"]))]

        await self.store.write(tenant, [doc["id"]], plan)

    async def create_if_absent(self, tenant: str, doc: Doc, caller: Caller = ANONYMOUS) -> bool:
        """Create an entity whose history was written directly (a temporal create). The change touches no
        attributes, so the history recorder does not record its instances a second time."""
        await self._allow(caller, tenant, "create", ids=(doc["id"],), types=tuple(doc["type"]),
                          attrs=tuple(doc["attrs"]))

        def plan(current: dict[str, Doc | None]) -> list[Change]:
            if current[doc["id"]] is not None:
                return []
            return [Change(doc["id"], None, doc, [])]

        return bool(await self.store.write(tenant, [doc["id"]], plan))

    async def retrieve(self, tenant: str, entity_id: str, caller: Caller = ANONYMOUS) -> Doc:
        await self.require_tenant(tenant)
        await self._allow(caller, tenant, "read", ids=(entity_id,))
        doc = await self.store.get(tenant, entity_id)
        if doc is None:
            raise Problem("ResourceNotFound", f"entity {entity_id} does not exist")
        # EXCHANGE: the gate screens what is returned (owner, agreements, masked attributes); see exchange/enforce.py
        screen = getattr(self.gate, "screen", None)
        if screen is not None:
            doc = (await screen(caller, tenant, "read", [doc], single=True))[0]
        return doc

    async def _modify(self, tenant: str, entity_id: str, caller: Caller, operation: str,
                      change: Any) -> Any:
        """Run `change(doc) -> (new_doc | None, touched attributes, result)` on one existing entity."""
        await self.require_tenant(tenant)
        await self._allow(caller, tenant, operation, ids=(entity_id,))
        outcome: list[Any] = []

        def plan(current: dict[str, Doc | None]) -> list[Change]:
            before = current[entity_id]
            if before is None:
                raise Problem("ResourceNotFound", f"entity {entity_id} does not exist")
            after, touched, result = change(clone(before))
            outcome.append(result)
            if after is not None and touched == [] and after == before:
                return []
            return [Change(entity_id, before, after, touched)]

        await self.store.write(tenant, [entity_id], plan)
        return outcome[0] if outcome else None

    async def delete(self, tenant: str, entity_id: str, caller: Caller = ANONYMOUS) -> None:
        await self._modify(tenant, entity_id, caller, "delete", lambda d: (None, list(d["attrs"]), None))

    async def append(self, tenant: str, entity_id: str, attrs: dict[str, Any], *, no_overwrite: bool,
                     caller: Caller = ANONYMOUS, scope: list[str] | None = None,
                     types: list[str] | None = None) -> UpdateResult:
        def change(doc: Doc) -> tuple[Doc, list[str], UpdateResult]:
            updated, skipped = ops.append(doc, attrs, no_overwrite=no_overwrite, now=now_iso(), scope=scope,
                                          types=types)
            return doc, updated, UpdateResult(updated, skipped)
        return await self._modify(tenant, entity_id, caller, "update", change)  # type: ignore[no-any-return]

    async def update_attributes(self, tenant: str, entity_id: str, attrs: dict[str, Any],
                                caller: Caller = ANONYMOUS, scope: list[str] | None = None,
                                types: list[str] | None = None) -> UpdateResult:
        def change(doc: Doc) -> tuple[Doc, list[str], UpdateResult]:
            updated, skipped = ops.update(doc, attrs, now=now_iso(), scope=scope, types=types)
            return doc, updated, UpdateResult(updated, skipped)
        return await self._modify(tenant, entity_id, caller, "update", change)  # type: ignore[no-any-return]

    async def partial_update(self, tenant: str, entity_id: str, iri: str, name: str, fragment: dict[str, Any],
                             caller: Caller = ANONYMOUS) -> None:
        def change(doc: Doc) -> tuple[Doc, list[str], None]:
            ops.partial_update(doc, iri, name, fragment, now=now_iso())
            return doc, [iri], None
        await self._modify(tenant, entity_id, caller, "update", change)

    async def merge(self, tenant: str, entity_id: str, patch: Doc, caller: Caller = ANONYMOUS) -> None:
        def change(doc: Doc) -> tuple[Doc, list[str], None]:
            return doc, ops.merge(doc, patch, now=now_iso()), None
        await self._modify(tenant, entity_id, caller, "update", change)

    async def replace(self, tenant: str, entity_id: str, new: Doc, caller: Caller = ANONYMOUS) -> None:
        def change(doc: Doc) -> tuple[Doc, list[str], None]:
            touched = sorted(set(doc["attrs"]) | set(new["attrs"]))
            return ops.replace_entity(doc, new), touched, None
        await self._modify(tenant, entity_id, caller, "update", change)

    async def replace_attribute(self, tenant: str, entity_id: str, iri: str, name: str,
                                instances: list[dict[str, Any]], caller: Caller = ANONYMOUS) -> None:
        def change(doc: Doc) -> tuple[Doc, list[str], None]:
            ops.replace_attribute(doc, iri, name, instances, now=now_iso())
            return doc, [iri], None
        await self._modify(tenant, entity_id, caller, "update", change)

    async def delete_attribute(self, tenant: str, entity_id: str, iri: str, name: str, *,
                               dataset_id: str | None, delete_all: bool, caller: Caller = ANONYMOUS) -> None:
        def change(doc: Doc) -> tuple[Doc, list[str], None]:
            ops.delete_attribute(doc, iri, name, dataset_id=dataset_id, delete_all=delete_all, now=now_iso())
            return doc, [iri], None
        await self._modify(tenant, entity_id, caller, "update", change)

    # -- batches ------------------------------------------------------------------------------------------
    async def batch(self, tenant: str, mode: str, docs: list[Doc], *, option: str | None = None,
                    caller: Caller = ANONYMOUS) -> BatchResult:
        """create | upsert (option replace|update) | update (option noOverwrite) | merge, each entity atomic."""
        result = BatchResult()
        if mode != "create" and mode != "upsert":
            await self.require_tenant(tenant)
        allowed: list[Doc] = []
        for doc in docs:
            try:
                await self._allow(caller, tenant, "create" if mode in ("create", "upsert") else "update",
                                  ids=(doc["id"],), types=tuple(doc["type"]), attrs=tuple(doc["attrs"]))
                allowed.append(doc)
            except Problem as problem:
                result.errors.append((doc["id"], problem))
        now = now_iso()

        def plan(current: dict[str, Doc | None]) -> list[Change]:
            changes: list[Change] = []
            state = dict(current)  # later items see earlier items of the same batch
            for doc in allowed:
                entity_id = doc["id"]
                before = state.get(entity_id)
                try:
                    after, touched = _batch_apply(mode, option, before, doc, now)
                except PartialUpdate as partial:
                    result.errors.append((entity_id, partial.problem))
                    if partial.touched:
                        state[entity_id] = partial.after
                        changes.append(Change(entity_id, before, partial.after, partial.touched))
                    continue
                except Problem as problem:
                    result.errors.append((entity_id, problem))
                    continue
                state[entity_id] = after
                changes.append(Change(entity_id, before, after, touched))
                result.success.append(entity_id)
                if before is None:
                    result.created.append(entity_id)
            return changes

        await self.store.write(tenant, [d["id"] for d in allowed], plan)
        return result

    async def batch_delete(self, tenant: str, ids: list[str], caller: Caller = ANONYMOUS) -> BatchResult:
        await self.require_tenant(tenant)
        result = BatchResult()
        allowed: list[str] = []
        for entity_id in ids:
            try:
                await self._allow(caller, tenant, "delete", ids=(entity_id,))
                allowed.append(entity_id)
            except Problem as problem:
                result.errors.append((entity_id, problem))

        def plan(current: dict[str, Doc | None]) -> list[Change]:
            changes = []
            gone: set[str] = set()
            for entity_id in allowed:
                before = current.get(entity_id)
                if before is None or entity_id in gone:
                    result.errors.append((entity_id, Problem("ResourceNotFound", f"entity {entity_id} does not exist")))
                    continue
                gone.add(entity_id)
                changes.append(Change(entity_id, before, None, list(before["attrs"])))
                result.success.append(entity_id)
            return changes

        await self.store.write(tenant, allowed, plan)
        return result

    # -- queries ------------------------------------------------------------------------------------------
    async def query(self, tenant: str, query: EntityQuery, caller: Caller = ANONYMOUS) -> tuple[list[Doc], int | None]:
        await self.require_tenant(tenant)
        await self._allow(caller, tenant, "query")
        screen = getattr(self.gate, "screen", None)
        if screen is None or self.gate.sees_everything(caller):
            return await self.store.query(tenant, query)
        # EXCHANGE: a caller that is screened pages and counts over what it may see, not over what is stored.
        docs, decided, count = await self._screened_page(tenant, query, caller)
        return await screen(caller, tenant, "query", docs, decided=decided), count

    async def _screened_page(self, tenant: str, query: EntityQuery,
                             caller: Caller) -> tuple[list[Doc], list[Any], int | None]:
        page: list[Doc] = []
        decided: list[Any] = []
        seen, skip, at = 0, query.offset, 0
        chunk = max(100, query.offset + query.limit)
        # Filter terms on attributes the caller may not read act as if those attributes were absent (masking).
        terms = masking.plan(query)
        while True:
            batch, _ = await self.store.query(tenant, dataclasses.replace(terms.store_query, offset=at, limit=chunk,
                                                                          count=False))
            at += len(batch)
            for doc, verdict in zip(batch, await self.gate.admits(caller, tenant, batch), strict=True):
                if verdict is None or not masking.matches_seen(terms, doc, getattr(verdict, "visible", None)):
                    continue
                seen += 1
                if skip:
                    skip -= 1
                elif len(page) < query.limit:
                    page.append(doc)
                    decided.append(verdict)
            if len(batch) < chunk or (len(page) >= query.limit and not query.count):
                return page, decided, seen if query.count else None

    async def readable(self, tenant: str, ids: list[str], caller: Caller, operation: str) -> dict[str, set[str] | None]:
        """For reads of something other than the current state (history, notifications): which of these entities
        the caller may read, mapped to the attributes it may see (None: all). The gate decides on each entity's
        current state, exactly as for a query; the history of an entity that no longer exists (its ownership ended
        with it) is for those who see everything."""
        screen = getattr(self.gate, "screen", None)
        if screen is None or not ids or self.gate.sees_everything(caller):
            return dict.fromkeys(ids)
        docs, _ = await self.store.query(tenant, EntityQuery(ids=list(ids), limit=len(ids)))
        full = {d["id"]: set(d["attrs"]) for d in docs}
        shown = await screen(caller, tenant, operation, docs)
        return {d["id"]: None if set(d["attrs"]) == full[d["id"]] else set(d["attrs"]) for d in shown}

    async def prune(self, tenant: str, query: EntityQuery, names: set[str], *, keep: bool,
                    caller: Caller = ANONYMOUS) -> int:
        """Purge with keep/drop: remove attributes (all but `names` with keep) from every matching entity."""
        await self.require_tenant(tenant)
        await self._allow(caller, tenant, "update")
        ids = await self.store.query_ids(tenant, query)
        now = now_iso()

        def plan(current: dict[str, Doc | None]) -> list[Change]:
            changes = []
            for entity_id in ids:
                before = current.get(entity_id)
                if before is None:
                    continue
                after = clone(before)
                doomed = [a for a in after["attrs"] if (a not in names) == keep]
                for attr in doomed:
                    del after["attrs"][attr]
                if doomed:
                    after["modifiedAt"] = now
                    changes.append(Change(entity_id, before, after, doomed))
            return changes

        changes = await self.store.write(tenant, ids, plan)
        return len(changes)

    async def type_summary(self, tenant: str, caller: Caller = ANONYMOUS) -> list[tuple[str, int]]:
        await self.require_tenant(tenant)
        await self._allow(caller, tenant, "query")
        return await self.store.type_summary(tenant)

    async def attribute_summary(self, tenant: str, type_iri: str | None = None,
                                caller: Caller = ANONYMOUS) -> list[tuple[str, str, str, int]]:
        await self.require_tenant(tenant)
        await self._allow(caller, tenant, "query", types=(type_iri,) if type_iri else ())
        return await self.store.attribute_summary(tenant, type_iri)

    async def purge(self, tenant: str, query: EntityQuery, caller: Caller = ANONYMOUS) -> int:
        await self.require_tenant(tenant)
        await self._allow(caller, tenant, "delete")
        ids = await self.store.query_ids(tenant, query)
        if not ids:
            return 0
        result = await self.batch_delete(tenant, ids, caller)
        return len(result.success)


class PartialUpdate(Exception):
    """A batch item that was applied in part: what changed is kept, what was refused is reported."""

    def __init__(self, after: Doc, touched: list[str], problem: Problem) -> None:
        super().__init__(problem.detail)
        self.after = after
        self.touched = touched
        self.problem = problem


def _batch_apply(mode: str, option: str | None, before: Doc | None, doc: Doc, now: str) -> tuple[Doc | None, list[str]]:
    entity_id = doc["id"]
    if mode == "create":
        if before is not None:
            raise Problem("AlreadyExists", f"entity {entity_id} already exists")
        return doc, list(doc["attrs"])
    if mode == "upsert":
        if before is None:
            return doc, list(doc["attrs"])
        if option == "update":
            after = clone(before)
            for t in doc["type"]:
                if t not in after["type"]:
                    after["type"].append(t)
            updated, _ = ops.append(after, doc["attrs"], no_overwrite=False, now=now)
            return after, updated
        return ops.replace_entity(before, doc), sorted(set(before["attrs"]) | set(doc["attrs"]))
    if before is None:
        raise Problem("ResourceNotFound", f"entity {entity_id} does not exist")
    after = clone(before)
    if mode == "update":
        ops.add_types(after, doc["type"])
        updated, skipped = ops.append(after, doc["attrs"], no_overwrite=option == "noOverwrite", now=now)
        if skipped:
            names = ", ".join(sorted({name for name, _ in skipped}))
            raise PartialUpdate(after, updated, Problem(
                "BadRequestData", f"attributes {names} exist and noOverwrite was requested; they were kept"))
        return after, updated
    if mode == "merge":
        return after, ops.merge(after, doc, now=now)
    raise Problem("BadRequestData", f"unknown batch operation {mode!r}")


class EntitySink:
    """How other rooms publish their records as city data: upsert one normalized entity with expanded names."""

    def __init__(self, broker: Broker, parser_terms: Any) -> None:
        self._broker = broker
        self._terms = parser_terms

    async def upsert(self, tenant: str, entity: dict[str, Any]) -> None:
        from civicmesh.ngsild.model import EntityParser

        doc = EntityParser(self._terms).entity(entity)
        result = await self._broker.batch(tenant, "upsert", [doc], option="replace")
        if result.errors:
            raise result.errors[0][1]
