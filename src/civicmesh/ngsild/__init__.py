"""The standard data interface: ETSI NGSI-LD (GS CIM 009) over the store."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI

log = logging.getLogger("civicmesh.ngsild")

DEMO_CONTEXT_ID = "demo-city"
# The same document under a name that does not depend on where the server listens (rules and the simulator).
DEMO_CONTEXT_URN = "urn:civicmesh:context:demo-city"


def demo_context_url(settings: Any) -> str:
    return f"http://{settings.host}:{settings.port}/ngsi-ld/v1/jsonldContexts/{DEMO_CONTEXT_ID}"


def mount(app: FastAPI, platform: Any) -> None:
    """Build the broker on the platform's store and gate, and serve /ngsi-ld/v1."""
    from civicmesh.demo import demo_context, demo_entities
    from civicmesh.ngsild.broker import Broker, EntitySink
    from civicmesh.ngsild.context import ContextResolver, HostedContext
    from civicmesh.ngsild.model import now_iso
    from civicmesh.ngsild.routes import NgsiLd
    from civicmesh.ngsild.routes import mount as mount_routes

    settings = platform.settings
    resolver = ContextResolver(settings.context_dir)
    broker = Broker(platform.store, platform.gate)
    platform.extras["contexts"] = resolver
    platform.extras["broker"] = broker
    platform.extras["entities"] = EntitySink(broker, resolver.core)
    # The demo city's @context is always hosted, so its data reads back with short names.
    url = demo_context_url(settings)
    resolver.hosted[DEMO_CONTEXT_ID] = HostedContext(DEMO_CONTEXT_ID, url, "Hosted", demo_context(), now_iso())
    resolver.register_document(url, demo_context())
    resolver.register_document(DEMO_CONTEXT_URN, demo_context())
    ngsi = NgsiLd(broker, resolver, max_body=settings.max_body_bytes, max_limit=settings.max_limit,
                  default_limit=settings.default_limit, max_vertices=settings.max_geometry_vertices)
    mount_routes(app, ngsi)
    platform.extras["ngsild"] = ngsi
    app.state.startup_hooks.append(ngsi.restore_contexts)

    async def load_demo() -> None:
        from civicmesh.loader import load_entities

        entities = demo_entities()
        if await platform.store.get("", entities[0]["id"]) is not None:
            log.info("demo city already loaded")
            return
        result = await load_entities(platform.store, settings.context_dir, entities, context=url,
                                     resolver=resolver)
        log.info("demo city: loaded %d entities (%d failed)", len(result.success), len(result.errors))

    if settings.demo:
        app.state.startup_hooks.append(load_demo)
