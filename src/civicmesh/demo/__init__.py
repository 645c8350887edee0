"""The demo city: Smart-Data-Models entities for Binjiang and Qianjiang New City, Hangzhou.

`demo_entities()` gives the committed entities (normalized NGSI-LD, no @context inside);
`demo_context()` gives the JSON-LD @context they are meant to be sent with. Both files are produced by
`civicmesh.demo.generate` and are read from the installed package, so they work from a wheel too.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

CITY_FILE = "city.jsonld"
CONTEXT_FILE = "context.jsonld"


def _read(name: str) -> Any:
    return json.loads(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


def demo_entities() -> list[dict[str, Any]]:
    """A fresh list of the demo city's entities, in load order (referenced entities are all present)."""
    entities = _read(CITY_FILE)
    if not isinstance(entities, list):
        raise ValueError(f"{CITY_FILE} must hold a JSON array of entities")
    return entities


def demo_context() -> dict[str, Any]:
    """The demo @context document: {"@context": {term: IRI}} for every non-core term the entities use."""
    context = _read(CONTEXT_FILE)
    if not isinstance(context, dict) or "@context" not in context:
        raise ValueError(f"{CONTEXT_FILE} must be a JSON-LD context document")
    return context


def demo_context_text() -> str:
    """The context file's exact text, for serving it byte-for-byte at a stable URL."""
    return resources.files(__package__).joinpath(CONTEXT_FILE).read_text(encoding="utf-8")
