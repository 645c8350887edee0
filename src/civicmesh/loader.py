"""Bulk loading of NGSI-LD entities (the `load` command and the demo city)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from civicmesh.access import Gate
from civicmesh.errors import Problem
from civicmesh.ngsild.broker import BatchResult, Broker
from civicmesh.ngsild.context import ContextResolver
from civicmesh.ngsild.model import EntityParser


async def load_entities(store: Any, context_dir: str | None, entities: list[Any], *, tenant: str = "",
                        context: Any = None, batch: int = 500, resolver: ContextResolver | None = None,
                        progress: Callable[[int], None] | None = None) -> BatchResult:
    """Upsert entities in batches; each entity's own @context wins over `context`."""
    resolver = resolver or ContextResolver(context_dir)
    broker = Broker(store, Gate())
    total = BatchResult()
    for start in range(0, len(entities), batch):
        chunk = entities[start:start + batch]
        docs = []
        for raw in chunk:
            entity_id = raw.get("id", "?") if isinstance(raw, dict) else "?"
            try:
                if not isinstance(raw, dict):
                    raise Problem("BadRequestData", "an entity must be a JSON object")
                ctx = raw.get("@context", context)
                body = {k: v for k, v in raw.items() if k != "@context"}
                docs.append(EntityParser(resolver.term_map(ctx)).entity(body))
            except Problem as problem:
                total.errors.append((str(entity_id), problem))
        if docs:
            result = await broker.batch(tenant, "upsert", docs, option="replace")
            total.success.extend(result.success)
            total.errors.extend(result.errors)
        if progress:
            progress(len(chunk))
    return total
