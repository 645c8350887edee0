"""Turns an EntityQuery into SQL over the index tables. Shared by both engines; a Dialect holds the differences."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from civicmesh.errors import Problem
from civicmesh.store.base import EntityQuery, normalize_text, path_key

Lookup = Callable[[str, str], int | None]  # (attribute IRI, path) -> akey, None when never seen


class Dialect(Protocol):
    attr_index: str  # the FROM item for correlated index probes, aliased `a`
    probe_end: str  # appended inside each EXISTS probe (PostgreSQL: keep it a per-row probe)

    def type_filter(self, n: int) -> str: ...  # entity has one of n type keys (bound in order)

    def regex(self, column: str) -> str: ...
    def geo_condition(self, query: Any, akey: int, params: list[Any]) -> str: ...



FALSE = "1=0"


class QueryCompiler:
    def __init__(self, dialect: Dialect, akey: Lookup, tkey: Callable[[str], int | None]) -> None:
        self.dialect = dialect
        self.akey = akey
        self.tkey = tkey

    def compile(self, tenant: str, query: EntityQuery) -> tuple[str, list[Any]]:
        where = ["e.tenant = ?"]
        params: list[Any] = [tenant]
        if query.ids:
            where.append(f"e.id IN ({','.join('?' * len(query.ids))})")
            params.extend(query.ids)
        if query.id_pattern:
            where.append(self.dialect.regex("e.id"))
            params.append(query.id_pattern)
        if query.types is not None:
            where.append(self._types(query.types, params))
        if query.attrs_any:
            keys = [k for k in (self.akey(a, "") for a in query.attrs_any) if k is not None]
            if not keys:
                where.append(FALSE)
            else:
                where.append(f"EXISTS (SELECT 1 FROM {self.dialect.attr_index} WHERE a.eid = e.eid AND a.akey IN "
                             f"({','.join('?' * len(keys))}){self.dialect.probe_end})")
                params.extend(keys)
        if query.q is not None:
            where.append(self._q(query.q, params))
        if query.geo is not None:
            akey = self.akey(query.geo.geoproperty, "")
            if akey is None:
                where.append(FALSE)
            else:
                where.append(self.dialect.geo_condition(query.geo, akey, params))
        if query.scopes:
            alternatives = []
            for conjunct in query.scopes:
                alternatives.append("(" + " AND ".join(self.dialect.regex("e.scopes") for _ in conjunct) + ")")
                params.extend(conjunct)
            where.append("(" + " OR ".join(alternatives) + ")")
        return " AND ".join(where), params

    def _types(self, dnf: list[frozenset[str]], params: list[Any]) -> str:
        singles = [next(iter(c)) for c in dnf if len(c) == 1]
        if len(singles) == len(dnf):
            keys = [k for k in (self.tkey(t) for t in singles) if k is not None]
            if not keys:
                return FALSE
            params.extend(keys)
            return self.dialect.type_filter(len(keys))
        alternatives = []
        for conjunct in dnf:
            found = [self.tkey(t) for t in conjunct]
            if any(k is None for k in found):
                continue
            parts = []
            for k in found:
                parts.append("e.eid IN (SELECT eid FROM entity_types WHERE tkey = ?)")
                params.append(k)
            alternatives.append("(" + " AND ".join(parts) + ")")
        return "(" + " OR ".join(alternatives) + ")" if alternatives else FALSE

    # -- q -----------------------------------------------------------------------------------------------
    def _q(self, expr: Any, params: list[Any]) -> str:
        kind = type(expr).__name__
        if kind in ("And", "Or"):
            joiner = " AND " if kind == "And" else " OR "
            return "(" + joiner.join(self._q(item, params) for item in expr.items) + ")"
        if kind == "Exists":
            return self._exists(expr.path, params)
        if kind == "NotExists":
            return "NOT " + self._exists(expr.path, params)
        if kind == "Compare":
            return self._compare(expr, params)
        raise Problem("BadRequestData", f"unsupported q expression {kind}")

    def _key(self, path: Any) -> int | None:
        return self.akey(path.name, path_key(list(path.sub), list(path.keys)))

    def _exists(self, path: Any, params: list[Any]) -> str:
        akey = self._key(path)
        if akey is None:
            return FALSE
        params.append(akey)
        return (f"EXISTS (SELECT 1 FROM {self.dialect.attr_index} WHERE a.eid = e.eid AND a.akey = ?"
                f"{self.dialect.probe_end})")

    def _compare(self, expr: Any, params: list[Any]) -> str:
        akey = self._key(expr.path)
        op = expr.op
        if akey is None:
            return FALSE
        if op in ("!=", "!~="):
            exists = self._exists(expr.path, params)
            positive = self._match(akey, "==" if op == "!=" else "~=", expr.value, params)
            return f"({exists} AND NOT {positive})"
        return self._match(akey, op, expr.value, params)

    def _match(self, akey: int, op: str, value: Any, params: list[Any]) -> str:
        conditions: list[str] = []
        local: list[Any] = []
        vkind = type(value).__name__
        if op == "~=":
            conditions.append("a.kind = 's' AND " + self.dialect.regex("a.txt"))
            local.append(value if isinstance(value, str) else getattr(value, "value", str(value)))
        elif vkind == "Range":
            low, high = _literal(value.low), _literal(value.high)
            if low[0] != high[0]:
                raise Problem("BadRequestData", "a range needs two values of the same kind")
            column = "txt" if low[0] == "s" else "num"
            kinds = "('n')" if low[0] == "n" else "('s')"
            conditions.append(f"a.kind IN {kinds} AND a.{column} BETWEEN ? AND ?")
            local.extend([low[1], high[1]])
        elif vkind == "ValueList":
            groups: dict[str, list[Any]] = {}
            for item in value.items:
                k, v = _literal(item)
                groups.setdefault(k, []).append(v)
            parts = []
            for k, vals in groups.items():
                column = "txt" if k == "s" else "num"
                parts.append(f"(a.kind = '{k}' AND a.{column} IN ({','.join('?' * len(vals))}))")
                local.extend(vals)
            conditions.append("(" + " OR ".join(parts) + ")")
        else:
            k, v = _literal(value)
            column = "txt" if k == "s" else "num"
            sql_op = {"==": "=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}[op]
            conditions.append(f"a.kind = '{k}' AND a.{column} {sql_op} ?")
            local.append(v)
        params.append(akey)
        params.extend(local)
        return (f"EXISTS (SELECT 1 FROM {self.dialect.attr_index} WHERE a.eid = e.eid AND a.akey = ? AND "
                f"{' AND '.join(conditions)}{self.dialect.probe_end})")


def _literal(value: Any) -> tuple[str, Any]:
    """(index kind, comparable value) of a q literal."""
    if isinstance(value, bool):
        return "b", 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return "n", float(value)
    if isinstance(value, str):
        return "s", normalize_text(value)
    inner = getattr(value, "value", None)
    if inner is not None:
        return _literal(inner)
    return "s", str(value)
