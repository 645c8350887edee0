"""A tenant's stored subscriptions, read through a short cache, and the term map each one's names are meant in."""

from __future__ import annotations

import time
from typing import Any

import orjson

from civicmesh.errors import Problem
from civicmesh.ngsild.context import ContextResolver, TermMap
from civicmesh.ngsild.model import is_uri
from civicmesh.ngsild.subscriptions.matcher import KIND

CACHE_SECONDS = 2.0  # matching reads the tenant's subscriptions per relayed batch; CRUD clears the cache at once


class Book:
    """Stored subscriptions per tenant (cached for matching) and their compiled @context term maps."""

    def __init__(self, store: Any, resolver: ContextResolver) -> None:
        self.store = store
        self.resolver = resolver
        self._cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._generation = 0
        self._term_maps: dict[Any, TermMap] = {}

    async def all(self, tenant: str) -> list[dict[str, Any]]:
        cached = self._cache.get(tenant)
        if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        generation = self._generation
        subs = await self.store.list_documents(tenant, KIND)
        if generation == self._generation:  # a create/patch/delete during the read must not be cached over
            self._cache[tenant] = (time.monotonic(), subs)
        return subs  # type: ignore[no-any-return]

    def changed(self, tenant: str) -> None:
        self._generation += 1
        self._cache.pop(tenant, None)

    async def save(self, tenant: str, sub: dict[str, Any], *, create: bool) -> bool:
        self.changed(tenant)
        saved = await self.store.put_document(tenant, KIND, sub["id"], sub, create=create)
        self.changed(tenant)
        return saved  # type: ignore[no-any-return]

    async def get(self, tenant: str, sub_id: str) -> dict[str, Any]:
        if not is_uri(sub_id):
            raise Problem("BadRequestData", f"subscription id {sub_id!r} is not a URI")
        sub = await self.store.get_document(tenant, KIND, sub_id)
        if sub is None:
            raise Problem("ResourceNotFound", f"subscription {sub_id} does not exist")
        return sub  # type: ignore[no-any-return]

    def terms(self, sub: dict[str, Any]) -> TermMap:
        """How the subscription's own names (types, attributes, q) are meant: its @context."""
        context = sub.get("@context")
        key = context if isinstance(context, str) else tuple(context) if isinstance(context, list) and all(
            isinstance(c, str) for c in context) else orjson.dumps(context, option=orjson.OPT_SORT_KEYS)
        terms = self._term_maps.get(key)
        if terms is None:  # the resolver keys its cache by the serialized context: too dear once per event
            if len(self._term_maps) > 1000:
                self._term_maps.clear()
            terms = self._term_maps[key] = self.resolver.term_map(context)
        return terms

    def render_terms(self, sub: dict[str, Any]) -> TermMap:
        """How notifications name things: jsonldContext when the subscriber gave one, else its @context."""
        return self.resolver.term_map(sub["jsonldContext"]) if sub.get("jsonldContext") else self.terms(sub)
