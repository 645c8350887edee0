"""Projections (pick/omit with nested braces), linked-entity retrieval (join) and orderBy.

A projection such as `id,locatedAt{id,name,isInCountry{description}}` is a tree: names at one level, and for a
relationship a sub-tree that applies to the entity it links to (NGSI-LD 4.21 and 4.5.23).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from civicmesh.errors import Problem

Projection = dict[str, "Projection | None"]
_NAME = re.compile(r"[^,{}\s;()<>\"'=\\]+")
ENTITY_MEMBERS = ("id", "type", "scope")


def parse_projection(text: str, param: str) -> Projection:
    """Parse `a,b{c,d{e}}`; say precisely what is wrong otherwise."""
    pos = 0

    def fail(what: str) -> Problem:
        return Problem("BadRequestData", f"invalid {param} expression {text!r} at position {pos}: {what}")

    def level(depth: int) -> Projection:
        nonlocal pos
        tree: Projection = {}
        while True:
            match = _NAME.match(text, pos)
            if not match:
                found = repr(text[pos]) if pos < len(text) else "the end"
                raise fail(f"expected an attribute or member name, found {found}")
            name = match.group(0)
            pos = match.end()
            sub: Projection | None = None
            if pos < len(text) and text[pos] == "{":
                pos += 1
                sub = level(depth + 1)
                if pos >= len(text) or text[pos] != "}":
                    raise fail("a '{' is not closed")
                pos += 1
            if name in tree:
                raise fail(f"{name!r} is listed twice")
            tree[name] = sub
            if pos >= len(text):
                if depth:
                    raise fail("a '{' is not closed")
                return tree
            if text[pos] == ",":
                pos += 1
                continue
            if text[pos] == "}" and depth:
                return tree
            raise fail(f"unexpected {text[pos]!r}")

    if not text:
        raise Problem("BadRequestData", f"{param} is empty")
    return level(0)


def selected(tree: Projection | None, *, omit: bool) -> tuple[set[str], set[str]]:
    """(attribute names, entity members) a tree keeps (pick) or drops (omit) at its own level."""
    if tree is None:
        return set(), set()
    names = {n for n, sub in tree.items() if not (omit and sub is not None)}
    members = {n for n in names if n in ENTITY_MEMBERS}
    return names - members, members


def relationship_objects(inst: dict[str, Any]) -> list[str]:
    if inst.get("type") == "Relationship":
        obj = inst.get("object")
        return [o for o in (obj if isinstance(obj, list) else [obj]) if isinstance(o, str)]
    if inst.get("type") == "ListRelationship":
        objects = [o if isinstance(o, str) else (o or {}).get("object") for o in inst.get("objectList") or []]
        return [o for o in objects if isinstance(o, str)]
    return []


Fetch = Callable[[list[str]], Awaitable[dict[str, dict[str, Any]]]]
Render = Callable[[dict[str, Any], "Projection | None", "Projection | None"], dict[str, Any]]


async def join(roots: list[tuple[dict[str, Any], dict[str, Any]]], *, mode: str, level: int, simplified: bool,
               compact: Callable[[str], str], fetch: Fetch, render: Render, pick: Projection | None,
               omit: Projection | None) -> list[dict[str, Any]]:
    """Resolve relationships of rendered entities `(doc, rendered)` up to `level` hops.

    inline: the linked entity goes into the relationship (`entity` member; in simplified form it replaces the
    relationship's value). flat: the linked entities follow the roots in one list, each once.
    """
    flat: list[dict[str, Any]] = []
    seen = {doc["id"] for doc, _ in roots}

    async def visit(doc: dict[str, Any], rendered: dict[str, Any], depth: int, pick_tree: Projection | None,
                    omit_tree: Projection | None) -> None:
        if depth > level:
            return
        wanted: list[tuple[str, list[str], Projection | None, Projection | None]] = []
        for iri, instances in doc["attrs"].items():
            name = compact(iri)
            if name not in rendered:
                continue
            objects = [o for inst in instances for o in relationship_objects(inst)]
            if objects:
                sub_pick = pick_tree.get(name) if pick_tree else None
                sub_omit = omit_tree.get(name) if omit_tree else None
                wanted.append((name, objects, sub_pick, sub_omit))
        if not wanted:
            return
        found = await fetch(sorted({o for _, objects, _, _ in wanted for o in objects}))
        for name, objects, sub_pick, sub_omit in wanted:
            linked = []
            for target_id in objects:
                target = found.get(target_id)
                if target is None:
                    continue
                shown = render(target, sub_pick, sub_omit)
                await visit(target, shown, depth + 1, sub_pick, sub_omit)
                linked.append((target_id, shown))
            if mode == "flat":
                for target_id, shown in linked:
                    if target_id not in seen:
                        seen.add(target_id)
                        flat.append(shown)
                continue
            by_id = dict(linked)
            value = rendered[name]
            if simplified:
                if isinstance(value, str) and value in by_id:
                    rendered[name] = by_id[value]
                elif isinstance(value, list):
                    rendered[name] = [by_id.get(v, v) if isinstance(v, str) else v for v in value]
                continue
            for inst in value if isinstance(value, list) else [value]:
                if isinstance(inst, dict):
                    obj = inst.get("object")
                    if isinstance(obj, str) and obj in by_id:
                        inst["entity"] = by_id[obj]

    for doc, rendered in roots:
        await visit(doc, rendered, 1, pick, omit)
    return [r for _, r in roots] + flat


def parse_order_by(text: str) -> list[tuple[list[str], bool]]:
    """`name;asc,type;desc,name.createdAt` -> [(path segments, descending)]."""
    keys = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise Problem("BadRequestData", f"orderBy {text!r} has an empty term")
        path, _, direction = part.partition(";")
        if direction not in ("", "asc", "desc"):
            raise Problem("BadRequestData", f"orderBy direction {direction!r} is not asc or desc")
        segments = path.split(".")
        if not all(segments):
            raise Problem("BadRequestData", f"orderBy term {part!r} is not a name or name.member")
        keys.append((segments, direction == "desc"))
    return keys


def sort_key_value(doc: dict[str, Any], segments: list[str], expand: Callable[[str], str],
                   compact: Callable[[str], str]) -> Any:
    head = segments[0]
    if head == "id":
        return doc["id"]
    if head == "type":
        return ",".join(sorted(compact(t) for t in doc.get("type", [])))
    if head in ("createdAt", "modifiedAt") and len(segments) == 1:
        return doc.get(head)
    instances = doc["attrs"].get(expand(head)) or []
    if not instances:
        return None
    node: Any = instances[0]
    for segment in segments[1:]:
        if not isinstance(node, dict):
            return None
        node = node.get(segment) if segment in ("createdAt", "modifiedAt", "observedAt", "unitCode") \
            else node.get(expand(segment))
    if isinstance(node, dict):
        for member in ("value", "object", "vocab", "json"):
            if member in node:
                return node[member]
        if "languageMap" in node:
            return next(iter(node["languageMap"].values()), None)
        return None
    return node


def order(docs: list[dict[str, Any]], keys: list[tuple[list[str], bool]], expand: Callable[[str], str],
          compact: Callable[[str], str]) -> list[dict[str, Any]]:
    """Stable multi-key sort; entities without a value for a key come last in either direction."""
    result = list(docs)
    for segments, descending in reversed(keys):
        present = [d for d in result if sort_key_value(d, segments, expand, compact) is not None]
        missing = [d for d in result if sort_key_value(d, segments, expand, compact) is None]
        present.sort(key=lambda d: _comparable(sort_key_value(d, segments, expand, compact)), reverse=descending)
        result = present + missing
    return result


def _comparable(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, (int, float)):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, str(value))
