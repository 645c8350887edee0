"""Entity type selection (the `type` query parameter, ETSI GS CIM 009 clause 4.17).

    expr    := and ((',' | '|') and)*          ; ',' and '|' both mean OR; AND binds tighter
    and     := primary (';' primary)*
    primary := '(' expr ')' | name

Names are kept as written (short terms or IRIs); the broker expands them with the @context via `map_terms`.
An entity matches a name when the name is one of its types (entities may have several).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

from civicmesh.errors import Problem


@dataclass(frozen=True)
class TypeName:
    name: str


@dataclass(frozen=True)
class TypeAnd:
    items: tuple[TypeExpr, ...]


@dataclass(frozen=True)
class TypeOr:
    items: tuple[TypeExpr, ...]


TypeExpr = TypeName | TypeAnd | TypeOr

# Beyond this many alternatives the DNF stops being a useful SQL filter; the caller evaluates in Python.
# Deeper nesting is no real query and would exhaust the parser's recursion.
MAX_NESTING = 50
MAX_DISJUNCTS = 256
_SPECIAL = frozenset(",|;()")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0

    def fail(self, expected: str, at: int | None = None) -> Problem:
        at = self.pos if at is None else at
        found = f"'{self.text[at]}'" if at < len(self.text) else "the end of the expression"
        return Problem("BadRequestData",
                       f"invalid type expression {self.text!r} at position {at + 1}: expected {expected}, "
                       f"found {found}")

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse(self) -> TypeExpr:
        self.skip_ws()
        if self.pos >= len(self.text):
            raise Problem("BadRequestData", "invalid type expression: it is empty")
        expr = self.parse_or()
        self.skip_ws()
        if self.pos < len(self.text):
            if self.peek() == ")":
                raise self.fail("',', '|', ';' or the end (this ')' has no matching '(')")
            raise self.fail("',', '|', ';' or the end of the expression")
        return expr

    def parse_or(self) -> TypeExpr:
        items = [self.parse_and()]
        self.skip_ws()
        while self.peek() in (",", "|"):
            self.pos += 1
            items.append(self.parse_and())
            self.skip_ws()
        return _flatten(TypeOr, items)

    def parse_and(self) -> TypeExpr:
        items = [self.parse_primary()]
        self.skip_ws()
        while self.peek() == ";":
            self.pos += 1
            items.append(self.parse_primary())
            self.skip_ws()
        return _flatten(TypeAnd, items)

    def parse_primary(self) -> TypeExpr:
        self.skip_ws()
        if self.peek() == "(":
            opened = self.pos
            self.pos += 1
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise Problem("BadRequestData", f"invalid type expression: parentheses nest deeper than "
                                                f"{MAX_NESTING} levels at position {opened + 1}")
            inner = self.parse_or()
            self.depth -= 1
            self.skip_ws()
            if self.peek() != ")":
                raise self.fail(f"')' to close the '(' opened at position {opened + 1}")
            self.pos += 1
            return inner
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _SPECIAL \
                and not self.text[self.pos].isspace():
            self.pos += 1
        if self.pos == start:
            raise self.fail("a type name or '('")
        return TypeName(self.text[start:self.pos])


def _flatten(kind: type[TypeAnd] | type[TypeOr], items: list[TypeExpr]) -> TypeExpr:
    if len(items) == 1:
        return items[0]
    flat: list[TypeExpr] = []
    for item in items:
        flat.extend(item.items if isinstance(item, kind) else (item,))
    return kind(tuple(flat))


def parse_types(text: str) -> TypeExpr:
    """Parse a type expression; raises Problem(BadRequestData) naming the position and what was expected."""
    if not isinstance(text, str):
        raise Problem("BadRequestData",
                      f"invalid type expression: expected a string, got {type(text).__name__}")
    return _parse_cached(text)


@lru_cache(maxsize=1024)
def _parse_cached(text: str) -> TypeExpr:
    return _Parser(text).parse()


def _names(expr: TypeExpr) -> Iterable[str]:
    if isinstance(expr, TypeName):
        yield expr.name
    else:
        for item in expr.items:
            yield from _names(item)


def type_names(expr: TypeExpr) -> set[str]:
    return set(_names(expr))


def evaluate(expr: TypeExpr, entity_types: set[str] | frozenset[str]) -> bool:
    if isinstance(expr, TypeName):
        return expr.name in entity_types
    if isinstance(expr, TypeAnd):
        return all(evaluate(i, entity_types) for i in expr.items)
    return any(evaluate(i, entity_types) for i in expr.items)


def map_terms(expr: TypeExpr, fn: Callable[[str], str]) -> TypeExpr:
    """A copy with each type name replaced by `fn(name)` (e.g. @context expansion)."""
    if isinstance(expr, TypeName):
        return TypeName(fn(expr.name))
    return type(expr)(tuple(map_terms(i, fn) for i in expr.items))


def _dnf(expr: TypeExpr) -> list[frozenset[str]] | None:
    if isinstance(expr, TypeName):
        return [frozenset({expr.name})]
    parts = [_dnf(i) for i in expr.items]
    if any(p is None for p in parts):
        return None
    if isinstance(expr, TypeOr):
        out = [c for p in parts for c in p]  # type: ignore[union-attr]
    else:
        out = [frozenset()]
        for p in parts:
            out = [a | b for a in out for b in p]  # type: ignore[union-attr]
            if len(out) > MAX_DISJUNCTS:
                return None
    return _absorb(out) if len(out) <= MAX_DISJUNCTS else None


def _absorb(conjuncts: list[frozenset[str]]) -> list[frozenset[str]]:
    # A conjunct that is a superset of another adds nothing to an OR: (A) | (A;B) is just A.
    unique = sorted(set(conjuncts), key=lambda c: (len(c), sorted(c)))
    kept: list[frozenset[str]] = []
    for c in unique:
        if not any(k <= c for k in kept):
            kept.append(c)
    return kept


def as_disjunction(expr: TypeExpr) -> list[frozenset[str]] | None:
    """Disjunctive normal form: the entity matches when all types of any one conjunct are among its types.
    Deterministic order (smallest conjuncts first); None when it would exceed MAX_DISJUNCTS alternatives."""
    return _dnf(expr)


def format_types(expr: TypeExpr) -> str:
    """Canonical text; `parse_types(format_types(e)) == e`."""
    if isinstance(expr, TypeName):
        return expr.name
    sep = ";" if isinstance(expr, TypeAnd) else ","
    return sep.join(f"({format_types(i)})" if not isinstance(i, TypeName) else i.name for i in expr.items)
