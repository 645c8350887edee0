"""The standard data interface: ETSI NGSI-LD (GS CIM 009) over the store."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from civicmesh.platform import Room

if TYPE_CHECKING:
    from civicmesh.config import Settings
    from civicmesh.ngsild.context import ContextResolver
    from civicmesh.platform import Platform

log = logging.getLogger("civicmesh.ngsild")

DEMO_CONTEXT_ID = "demo-city"
# The same document under a name that does not depend on where the server listens (rules and the simulator).
DEMO_CONTEXT_URN = "urn:civicmesh:context:demo-city"


def demo_context_url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.port}/ngsi-ld/v1/jsonldContexts/{DEMO_CONTEXT_ID}"


def build_contexts(settings: Settings) -> ContextResolver:
    """The @context resolver: the configured cache directory, and the demo city's context always hosted, so its
    data reads back with short names."""
    from civicmesh.demo import demo_context
    from civicmesh.ngsild.context import ContextResolver, HostedContext
    from civicmesh.ngsild.model import now_iso

    resolver = ContextResolver(settings.context_dir)
    url = demo_context_url(settings)
    resolver.hosted[DEMO_CONTEXT_ID] = HostedContext(DEMO_CONTEXT_ID, url, "Hosted", demo_context(), now_iso())
    resolver.register_document(url, demo_context())
    resolver.register_document(DEMO_CONTEXT_URN, demo_context())
    return resolver


def build(platform: Platform) -> Room:
    """Serve /ngsi-ld/v1 with the platform's broker; restore hosted contexts and load the demo city on start."""
    from civicmesh.demo import demo_entities
    from civicmesh.ngsild.routes import router

    settings = platform.settings

    async def load_demo() -> None:
        from civicmesh.loader import load_entities

        entities = demo_entities()
        if await platform.store.get("", entities[0]["id"]) is not None:
            log.info("demo city already loaded")
            return
        result = await load_entities(platform.store, settings.context_dir, entities,
                                     context=demo_context_url(settings), resolver=platform.contexts)
        log.info("demo city: loaded %d entities (%d failed)", len(result.success), len(result.errors))

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        await platform.ngsi.restore_contexts()
        if settings.demo:
            await load_demo()
        yield

    return Room("ngsild", routers=[router(platform.ngsi)], lifespan=lifespan)
