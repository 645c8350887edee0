"""What both store engines share: the data classes of the interface and the index extraction.

Entities are stored whole (the expanded document, as orjson bytes) and indexed for queries:
- `entity_types(eid, tkey)`: every type of every entity;
- `attr_index(eid, akey, atype, kind, num, txt)`: one row per indexed leaf value. `akey` interns
  (attribute IRI, path) where the path names a sub-attribute chain and/or keys into a JSON value, so that a `q`
  term becomes an index range scan, never a JSON scan;
- a geometry index per GeoProperty (an R*Tree in SQLite, PostGIS with GiST in PostgreSQL).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import psycopg_pool

from civicmesh.ngsild.model import ATTRIBUTE_TYPES, CORE_MEMBERS
from civicmesh.store.db import CONNECTION_WAIT

__all__ = ["CONNECTION_WAIT"]

DEFAULT_TENANT = ""

# The exception classes a database that is out of reach raises (see `unavailable`).
DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlite3.OperationalError, psycopg.OperationalError,
                                                psycopg_pool.PoolTimeout)


def unavailable(exc: BaseException) -> str | None:
    """Why the database is out of reach for now, when `exc` says so (pool exhausted, connection lost or refused,
    SQLite busy past its timeout), else None. Such a failure is the server's condition, not the request's fault
    nor a bug: callers answer 503 and may retry; nothing was written (each write is one transaction)."""
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return "every database connection is busy"
    if isinstance(exc, psycopg.OperationalError):
        return "the database connection failed"
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
        return "the database is locked by another writer"
    return None


# (tenant, kind, document id, change): a read-modify-write of one document inside another write's transaction
DocumentUpdate = tuple[str, str, str, Callable[[dict[str, Any]], dict[str, Any]]]


@dataclass
class Change:
    """One entity-level change a write plan wants committed."""

    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None  # None deletes the entity
    attributes: list[str] = field(default_factory=list)
    owner: str | None = None  # for a deletion: the organization whose ownership ended with the entity

    @property
    def kind(self) -> str:
        if self.before is None:
            return "entity.created"
        if self.after is None:
            return "entity.deleted"
        return "entity.updated"


# A plan gets the current documents of the requested ids (None where absent) and says what to change.
# It may raise civicmesh.errors.Problem to abandon the whole transaction.
WritePlan = Callable[[dict[str, dict[str, Any] | None]], list[Change]]


@dataclass
class EntityQuery:
    ids: list[str] | None = None
    id_pattern: str | None = None
    # Disjunctive normal form of expanded type IRIs: any conjunct whose types all match.
    types: list[frozenset[str]] | None = None
    # Entities must have at least one of these expanded attributes.
    attrs_any: list[str] | None = None
    q: Any = None  # civicmesh.ngsild.qlang AST with expanded attribute names
    geo: Any = None  # civicmesh.ngsild.geoquery.GeoQuery with expanded geoproperty
    # scopeQ as DNF of regular expressions over the stored "|/a/b|/c" scope string.
    scopes: list[list[str]] | None = None
    limit: int = 20
    offset: int = 0
    count: bool = False


# -- index extraction -----------------------------------------------------------------------------------------

_DATETIME_LIKE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$")


def normalize_text(value: str) -> str:
    """Datetimes are indexed and compared in one canonical UTC form so text order is time order."""
    if len(value) < 16 or value[4] != "-" or value[10] != "T":
        return value
    if len(value) == 27 and value[19] == "." and value[26] == "Z":
        return value  # already canonical (the broker's own timestamps)
    if _DATETIME_LIKE.match(value):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def path_key(segments: list[str], brackets: list[str]) -> str:
    return " ".join(segments) + "".join(f"[{b}]" for b in brackets)


# Row: (akey name tuple (attr, path), atype or None, kind, num, txt)
IndexRow = tuple[str, str, str | None, str, float | None, str | None]


def _leaf_rows(attr: str, path: str, atype: str | None, value: Any, out: list[IndexRow]) -> None:
    kind = type(value)
    if kind is str:
        out.append((attr, path, atype, "s", None, normalize_text(value)))
    elif kind is bool:
        out.append((attr, path, atype, "b", 1.0 if value else 0.0, None))
    elif kind is int or kind is float:
        out.append((attr, path, atype, "n", float(value), None))
    elif kind is list:
        if not value:
            out.append((attr, path, atype, "o", None, None))
        for i, item in enumerate(value):
            _leaf_rows(attr, path, atype if i == 0 else None, item, out)
    elif kind is dict:
        out.append((attr, path, atype, "o", None, None))
        for key, item in value.items():
            _leaf_rows(attr, f"{path}[{key}]", None, item, out)
    else:
        out.append((attr, path, atype, "o", None, None))


_META_INDEXED = ("observedAt", "unitCode", "datasetId")


def _instance_rows(attr: str, prefix: str, inst: dict[str, Any], out: list[IndexRow]) -> None:
    """Rows for one instance; `prefix` is the space-joined sub-attribute path ('' at the top)."""
    kind = inst.get("type", "Property")
    atype = None if prefix else kind
    if kind == "Property" or kind == "Relationship":
        _leaf_rows(attr, prefix, atype, inst.get("value" if kind == "Property" else "object"), out)
    elif kind == "GeoProperty":
        out.append((attr, prefix, atype, "o", None, None))
    elif kind == "LanguageProperty":
        out.append((attr, prefix, atype, "o", None, None))
        for lang, text in (inst.get("languageMap") or {}).items():
            for item in text if isinstance(text, list) else [text]:
                out.append((attr, prefix, None, "s", None, item))
                out.append((attr, f"{prefix}[{lang}]", None, "s", None, item))
    elif kind == "ListRelationship":
        objects = [o if isinstance(o, str) else o.get("object") for o in inst.get("objectList") or []]
        _leaf_rows(attr, prefix, atype, objects, out)
    else:
        _leaf_rows(attr, prefix, atype, inst.get(ATTRIBUTE_TYPES.get(kind, "value")), out)
    for key, sub in inst.items():
        if key in _META_INDEXED:
            # createdAt/modifiedAt of instances are not indexed: they would double the index for a rare query.
            _leaf_rows(attr, f"{prefix} {key}" if prefix else key, None, sub, out)
        elif key not in CORE_MEMBERS and type(sub) is dict:
            _instance_rows(attr, f"{prefix} {key}" if prefix else key, sub, out)


def index_rows(doc: dict[str, Any], names: set[str] | None = None) -> list[IndexRow]:
    """The index rows of an entity, or only of the attributes in `names`."""
    out: list[IndexRow] = []
    for attr, instances in doc["attrs"].items():
        if names is None or attr in names:
            for inst in instances:
                _instance_rows(attr, "", inst, out)
    return out


@dataclass
class WriteOutcome:
    """What one batch of changes does to the stored entities and their indexes, for either engine."""

    final: dict[str, dict[str, Any]]  # entity id -> the document stored (the last change of it wins)
    whole: list[str]  # stored entities whose index rows, types and geometries go (deleted or re-indexed whole)
    partial: dict[str, set[str]]  # stored entities re-indexed in part -> the attributes whose rows change
    regeo: set[str]  # of those, the ones whose geometries change

    @classmethod
    def of(cls, changes: list[Change], current: dict[str, dict[str, Any] | None],
           stored: set[str]) -> WriteOutcome:
        """An update that touches two of an entity's twenty attributes rewrites two attributes' index rows, not
        twenty; a new entity, a deleted one and a change of types are re-indexed whole."""
        final = {c.entity_id: c.after for c in changes if c.after is not None}
        scope: dict[str, set[str] | None] = {}
        for c in changes:
            if c.after is None:
                final.pop(c.entity_id, None)
                scope.pop(c.entity_id, None)
                continue
            known = scope.get(c.entity_id, set())
            if c.before is None or c.entity_id not in stored or known is None or c.before["type"] != c.after["type"]:
                scope[c.entity_id] = None
            else:
                scope[c.entity_id] = known | set(c.attributes)
        partial = {i: names for i, names in scope.items() if names is not None}
        regeo = {i for i, names in partial.items()
                 if _geometry_touched(current.get(i), names) or _geometry_touched(final.get(i), names)}
        whole = [i for i in dict.fromkeys(c.entity_id for c in changes) if i in stored and i not in partial]
        return cls(final, whole, partial, regeo)


def _geometry_touched(doc: dict[str, Any] | None, attrs: set[str]) -> bool:
    return doc is not None and any(a in attrs for a, _ in geometries(doc))


def geometries(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for attr, instances in doc["attrs"].items():
        for inst in instances:
            if inst.get("type") == "GeoProperty" and isinstance(inst.get("value"), dict):
                yield attr, inst["value"]


def tenant_key(tenant: str | None) -> str:
    return tenant or DEFAULT_TENANT
