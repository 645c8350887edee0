"""Filters for a caller who may not read every attribute: a term on a masked attribute acts as if it were absent.

The store evaluates `q`, geo-queries and `attrs` on the entity as stored. For a screened caller that answer is
only a first cut: an entity whose filter refers to an attribute the caller may not read is judged again on what
the caller sees (`matches_seen`), so `q=occupancy>0.5` cannot bisect a masked value and a count cannot count it.
The store's cut must hold every entity that could match once masked: `q` is monotone in its terms (a term on a
missing attribute is false) except for `!name`, which `relaxed` therefore drops before the store sees it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Set
from typing import Any

from civicmesh.ngsild import qlang
from civicmesh.ngsild.model import ATTRIBUTE_TYPES
from civicmesh.store.base import EntityQuery


@dataclasses.dataclass(frozen=True)
class Filter:
    """What a query filters on, worked out once per query: the store's (relaxed) query and how to judge a
    screened entity again."""

    store_query: EntityQuery  # what the store runs
    names: frozenset[str]  # expanded attribute names the query's terms refer to
    recheck_all: bool  # the store's q was relaxed: every entity is judged again, not only masked ones
    query: EntityQuery  # the query as asked


def plan(query: EntityQuery) -> Filter:
    names: set[str] = set(query.attrs_any or ())
    if query.q is not None:
        names |= qlang.attribute_names(query.q)
    if query.geo is not None:
        names.add(query.geo.geoproperty)
    relaxed_q = relaxed(query.q) if query.q is not None else None
    changed = relaxed_q is not query.q
    store_query = dataclasses.replace(query, q=relaxed_q) if changed else query
    return Filter(store_query, frozenset(names), changed, query)


def matches_seen(flt: Filter, doc: dict[str, Any], visible: Set[str] | None) -> bool:
    """Whether a stored entity that the store's query returned still matches once the attributes outside
    `visible` (None: all are visible) are gone. Geo-queries: the store judged the geoproperty's own value, so a
    visible geoproperty needs no second look and a masked one matches nothing."""
    if not flt.recheck_all and (visible is None or flt.names <= visible):
        return True
    query = flt.query
    attrs = doc["attrs"] if visible is None else {k: v for k, v in doc["attrs"].items() if k in visible}
    if query.geo is not None and query.geo.geoproperty not in attrs:
        return False
    if query.attrs_any and not any(a in attrs for a in query.attrs_any):
        return False
    if query.q is not None:
        return qlang.evaluate(query.q, lambda path: values({"attrs": attrs}, path))
    return True


def relaxed(expr: qlang.QExpr) -> qlang.QExpr | None:
    """`expr` with every `!name` term taken as true (None: the whole expression is then true), the same object
    when it has none. Matches at least whatever `expr` matches on any masked view of an entity."""
    if isinstance(expr, qlang.NotExists):
        return None
    if isinstance(expr, (qlang.And, qlang.Or)):
        items = [relaxed(i) for i in expr.items]
        if all(new is old for new, old in zip(items, expr.items, strict=True)):
            return expr
        if isinstance(expr, qlang.Or):
            if any(i is None for i in items):
                return None
            return qlang.Or(tuple(i for i in items if i is not None))
        kept = tuple(i for i in items if i is not None)
        return None if not kept else kept[0] if len(kept) == 1 else qlang.And(kept)
    return expr


def values(doc: dict[str, Any], path: Any) -> list[Any]:
    """Candidate values of a q path in a stored entity (for qlang.evaluate)."""
    out: list[Any] = []
    for inst in doc["attrs"].get(path.name, []):
        node: Any = inst
        for sub in path.sub:
            node = node.get(sub) if isinstance(node, dict) else None
        if node is None:
            continue
        if isinstance(node, dict) and "type" in node:
            member = ATTRIBUTE_TYPES.get(node["type"], "value")
            node = node.get(member)
        for key in path.keys:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            out.extend(node if isinstance(node, list) else [node])
    return out
