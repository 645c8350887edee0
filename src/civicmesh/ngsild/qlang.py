"""The NGSI-LD query language (`q`, ETSI GS CIM 009 clause 4.9): parser, typed AST, evaluator.

The AST keeps attribute names exactly as written (the broker expands them with the request's @context via
`map_terms`). The store compiles the AST to SQL; `evaluate` re-checks in Python (subscriptions, fallbacks).

Grammar accepted (URL-decoding has already happened):

    expr     := and ('|' and)*                 ; AND binds tighter than OR
    and      := primary (';' primary)*
    primary  := '(' expr ')' | '!' path | path [op value]
    path     := name ('.' name)* ('[' key ']')*
    op       := '==' | '!=' | '>' | '>=' | '<' | '<=' | '~=' | '!~='
    value    := literal | literal '..' literal | literal (',' literal)+     ; ranges/lists only with == and !=

Literals: numbers (`12`, `-1.5e3`), quoted strings (`"x"` with backslash escapes), `true`/`false`,
unquoted DateTime (`2024-01-01T10:00:00Z`), Date (`2024-01-01`), Time (`10:00:00Z`) and URIs
(`urn:ngsi-ld:City:Pisa`). Whitespace between tokens is ignored; inside quoted strings it is kept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import lru_cache
from typing import Any

from civicmesh import regex
from civicmesh.errors import Problem

# -- AST ----------------------------------------------------------------------------------------------------

# Members of an attribute instance that `a.<member>` addresses directly rather than a sub-attribute.
METADATA_MEMBERS = frozenset({"observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt"})


@dataclass(frozen=True)
class AttrPath:
    """`name.sub1.sub2[key1][key2]`: attribute, sub-attribute chain, then keys into the (JSON) value."""

    name: str
    sub: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()

    def __str__(self) -> str:
        return ".".join((self.name, *self.sub)) + "".join(f"[{k}]" for k in self.keys)


@dataclass(frozen=True)
class DateTime:
    value: str  # as written; `parsed` is timezone-aware (naive input is taken as UTC)

    @property
    def parsed(self) -> datetime:
        return _parse_datetime(self.value)  # type: ignore[return-value]


@dataclass(frozen=True)
class Date:
    value: str

    @property
    def parsed(self) -> date:
        return date.fromisoformat(self.value)


@dataclass(frozen=True)
class Time:
    value: str

    @property
    def parsed(self) -> time:
        return _parse_time(self.value)  # type: ignore[return-value]


@dataclass(frozen=True)
class Uri:
    value: str


@dataclass(frozen=True)
class Regex:
    value: str  # the pattern; validated with Python `re` at parse time


Scalar = bool | int | float | str | DateTime | Date | Time | Uri


@dataclass(frozen=True)
class Range:
    low: Scalar
    high: Scalar


@dataclass(frozen=True)
class ValueList:
    items: tuple[Scalar, ...]


Value = Scalar | Range | ValueList | Regex


@dataclass(frozen=True)
class Compare:
    path: AttrPath
    op: str  # one of OPERATORS
    value: Value


@dataclass(frozen=True)
class Exists:
    path: AttrPath


@dataclass(frozen=True)
class NotExists:
    path: AttrPath


@dataclass(frozen=True)
class And:
    items: tuple[QExpr, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[QExpr, ...]


QExpr = And | Or | Compare | Exists | NotExists

# Deeper nesting is no real query and would exhaust the parser's recursion.
MAX_NESTING = 50
# Each term is one probe of the attribute index. SQLite refused a 9,000-term q (its expression depth limit) while
# PostgreSQL ran it for 4 s (issue 13, finding 20): the parser sets one limit for both, far above any real filter.
MAX_TERMS = 256
OPERATORS = ("==", "!=", ">", ">=", "<", "<=", "~=", "!~=")
# Longest first so that `>=` is not read as `>` followed by `=`.
_OPS_BY_LENGTH = ("!~=", "==", "!=", ">=", "<=", "~=", ">", "<")
ORDERING_OPS = frozenset({">", ">=", "<", "<="})

# -- lexical pieces -----------------------------------------------------------------------------------------

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s\"<>\\^`{|}]+")
# Characters that end an unquoted value: logical operators, grouping, list separator, whitespace.
_VALUE_END = frozenset(";|),\t\n\r ")


def _name_char(c: str) -> bool:
    # Spec attrName = ALPHA / DIGIT / "_"; ':' and '-' are also let through so compact IRIs
    # (`schema:name`) and hyphenated terms work; non-ASCII letters are allowed for non-English vocabularies.
    return c.isalnum() or c in "_:-"


def _parse_datetime(text: str) -> datetime | None:
    if not _DATETIME.fullmatch(text):
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parse_date(text: str) -> date | None:
    if not _DATE.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _parse_time(text: str) -> time | None:
    if not _TIME.fullmatch(text):
        return None
    try:
        parsed = time.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# -- parser -------------------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0
        self.terms = 0

    # Positions in messages are 1-based character positions, as a person counts them.
    def fail(self, expected: str, at: int | None = None) -> Problem:
        at = self.pos if at is None else at
        found = f"'{self.text[at]}'" if at < len(self.text) else "the end of the expression"
        return Problem("BadRequestData",
                       f"invalid q expression {self.text!r} at position {at + 1}: expected {expected}, "
                       f"found {found}")

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self, token: str) -> bool:
        return self.text.startswith(token, self.pos)

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def parse(self) -> QExpr:
        self.skip_ws()
        if self.at_end():
            raise Problem("BadRequestData", "invalid q expression: it is empty")
        expr = self.parse_or()
        self.skip_ws()
        if not self.at_end():
            if self.peek(")"):
                raise self.fail("';', '|' or the end (this ')' has no matching '(')")
            raise self.fail("';', '|' or the end of the expression")
        return expr

    def parse_or(self) -> QExpr:
        items = [self.parse_and()]
        self.skip_ws()
        while self.peek("|"):
            self.pos += 1
            items.append(self.parse_and())
            self.skip_ws()
        return _flatten(Or, items)

    def parse_and(self) -> QExpr:
        items = [self.parse_primary()]
        self.skip_ws()
        while self.peek(";"):
            self.pos += 1
            items.append(self.parse_primary())
            self.skip_ws()
        return _flatten(And, items)

    def parse_primary(self) -> QExpr:
        self.skip_ws()
        if self.peek("("):
            opened = self.pos
            self.pos += 1
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise Problem("BadRequestData", f"invalid q expression: parentheses nest deeper than "
                                                f"{MAX_NESTING} levels at position {opened + 1}")
            inner = self.parse_or()
            self.depth -= 1
            self.skip_ws()
            if not self.peek(")"):
                raise self.fail(f"')' to close the '(' opened at position {opened + 1}")
            self.pos += 1
            return inner
        if self.peek("!") and not self.peek("!=") and not self.peek("!~="):
            self.pos += 1
            self.skip_ws()
            return NotExists(self.parse_path("an attribute name after '!'"))
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise Problem("BadRequestData", f"invalid q expression: it has more than {MAX_TERMS} terms (the "
                                            f"{MAX_TERMS + 1}th starts at position {self.pos + 1})")
        path = self.parse_path("an attribute name or '('")
        self.skip_ws()
        op = next((o for o in _OPS_BY_LENGTH if self.peek(o)), None)
        if op is None:
            if self.at_end() or self.text[self.pos] in ";|)":
                return Exists(path)
            if self.peek("="):
                raise self.fail("an operator ('==' for equality; a single '=' is not an operator)")
            raise self.fail("an operator (==, !=, >, >=, <, <=, ~=, !~=), ';', '|', ')' or the end")
        self.pos += len(op)
        self.skip_ws()
        if op in ("~=", "!~="):
            return Compare(path, op, self.parse_regex(op))
        return Compare(path, op, self.parse_value(op))

    def parse_path(self, expected: str) -> AttrPath:
        name = self.parse_name(expected)
        sub: list[str] = []
        while self.peek("."):
            self.pos += 1
            sub.append(self.parse_name("a sub-attribute name after '.'"))
        keys: list[str] = []
        while self.peek("["):
            opened = self.pos
            self.pos += 1
            end = self.text.find("]", self.pos)
            if end < 0:
                raise self.fail(f"']' to close the '[' opened at position {opened + 1}", len(self.text))
            key = self.text[self.pos:end]
            if not key or "[" in key:
                raise self.fail("a key name inside '[...]'")
            keys.append(key)
            self.pos = end + 1
        if self.peek("."):
            raise self.fail("an operator: sub-attributes ('.') must come before keys ('[...]')")
        return AttrPath(name, tuple(sub), tuple(keys))

    def parse_name(self, expected: str) -> str:
        start = self.pos
        while self.pos < len(self.text) and _name_char(self.text[self.pos]):
            self.pos += 1
        if self.pos == start:
            raise self.fail(expected)
        return self.text[start:self.pos]

    def parse_regex(self, op: str) -> Regex:
        start = self.pos
        if self.peek('"'):
            pattern = self.parse_string()
        else:
            # Unquoted: runs to the next ';', '|' or ')' outside the pattern's own groups/classes,
            # so `a~=(x|y)z` keeps its alternation; a top-level '|' ends the term (quote such patterns).
            depth, in_class, i = 0, False, self.pos
            while i < len(self.text):
                c = self.text[i]
                if c == "\\":
                    i += 2
                    continue
                if in_class:
                    in_class = c != "]"
                elif c == "[":
                    in_class = True
                elif c == "(":
                    depth += 1
                elif c == ")":
                    if depth == 0:
                        break
                    depth -= 1
                elif c in ";|" and depth == 0:
                    break
                i += 1
            pattern = self.text[self.pos:i].rstrip()
            self.pos = i
        if not pattern:
            raise self.fail(f"a regular expression after '{op}'", start)
        regex.compile_pattern(pattern, f"the regular expression of q at position {start + 1}")
        return Regex(pattern)

    def parse_string(self) -> str:
        opened = self.pos
        self.pos += 1
        out: list[str] = []
        escapes = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "t": "\t", "r": "\r", "'": "'"}
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c == "\\":
                nxt = self.text[self.pos + 1:self.pos + 2]
                if nxt not in escapes:
                    raise self.fail('an escape (\\" \\\\ \\/ \\n \\t \\r) after the backslash', self.pos + 1)
                out.append(escapes[nxt])
                self.pos += 2
                continue
            if c == '"':
                self.pos += 1
                return "".join(out)
            out.append(c)
            self.pos += 1
        raise self.fail(f"'\"' to close the string opened at position {opened + 1}", len(self.text))

    def parse_value(self, op: str) -> Value:
        first_at = self.pos
        first = self.parse_scalar(op)
        if self.peek(".."):
            if op not in ("==", "!="):
                raise self.fail(f"a single value: a range ('..') only goes with '==' or '!=', not '{op}'")
            self.pos += 2
            high_at = self.pos
            high = self.parse_scalar(op)
            for side, at in ((first, first_at), (high, high_at)):
                if isinstance(side, (bool, Uri)):
                    raise self.fail("a number, string, DateTime, Date or Time as a range bound", at)
            if _kind(first) != _kind(high):
                raise self.fail(f"a range upper bound of the same kind as the lower bound ({_kind(first)})",
                                high_at)
            return Range(first, high)
        self.skip_ws()
        if self.peek(","):
            if op not in ("==", "!="):
                raise self.fail(f"a single value: a list (',') only goes with '==' or '!=', not '{op}'")
            items = [first]
            while self.peek(","):
                self.pos += 1
                self.skip_ws()
                items.append(self.parse_scalar(op))
                self.skip_ws()
            return ValueList(tuple(items))
        if op in ORDERING_OPS and isinstance(first, (bool, Uri)):
            raise self.fail(f"a number, quoted string, DateTime, Date or Time to compare with '{op}'",
                            first_at)
        return first

    def parse_scalar(self, op: str) -> Scalar:
        if self.at_end():
            raise self.fail(f"a value after '{op}'")
        if self.peek('"'):
            return self.parse_string()
        start = self.pos
        number = _NUMBER.match(self.text, self.pos)
        if number and self._ends_value(number.end()):
            self.pos = number.end()
            text = number.group()
            value = float(text) if any(c in text for c in ".eE") else int(text)
            # Both engines compare numbers as 64-bit values: a 400-digit literal was an OverflowError (a 500).
            if isinstance(value, int) and not -2**63 <= value < 2**64 or isinstance(value, float) and \
                    not math.isfinite(value):
                raise Problem("BadRequestData", f"invalid q expression: the number {text[:40]!r} at position "
                              f"{start + 1} is out of range")
            return value
        end = start
        while not self._ends_value(end):
            end += 1
        token = self.text[start:end]
        if not token:
            raise self.fail(f"a value after '{op}'")
        self.pos = end
        if token in ("true", "false"):
            return token == "true"
        if _DATETIME.fullmatch(token):
            if _parse_datetime(token) is None:
                raise self.fail("a valid DateTime (the date or time is out of range)", start)
            return DateTime(token)
        if _DATE.fullmatch(token):
            if _parse_date(token) is None:
                raise self.fail("a valid Date (the month or day is out of range)", start)
            return Date(token)
        if _TIME.fullmatch(token):
            if _parse_time(token) is None:
                raise self.fail("a valid Time (hour, minute or second out of range)", start)
            return Time(token)
        if _URI.fullmatch(token):
            return Uri(token)
        raise self.fail("a number, a quoted string, true/false, a DateTime/Date/Time or a URI (strings must "
                        f"be quoted: \"{token}\")", start)

    def _ends_value(self, end: int) -> bool:
        return end >= len(self.text) or self.text[end] in _VALUE_END or self.text.startswith("..", end)


def _flatten(kind: type[And] | type[Or], items: list[QExpr]) -> QExpr:
    if len(items) == 1:
        return items[0]
    flat: list[QExpr] = []
    for item in items:
        flat.extend(item.items if isinstance(item, kind) else (item,))
    return kind(tuple(flat))


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def parse_q(text: str) -> QExpr:
    """Parse a `q` expression; raises Problem(BadRequestData) naming the position and what was expected."""
    if not isinstance(text, str):
        raise Problem("BadRequestData", f"invalid q expression: expected a string, got {type(text).__name__}")
    return _parse_cached(text)


@lru_cache(maxsize=1024)
def _parse_cached(text: str) -> QExpr:
    return _Parser(text).parse()


# -- walking ------------------------------------------------------------------------------------------------


def _paths(expr: QExpr) -> Iterable[AttrPath]:
    if isinstance(expr, (And, Or)):
        for item in expr.items:
            yield from _paths(item)
    else:
        yield expr.path


def attribute_names(expr: QExpr) -> set[str]:
    """Top-level attribute names the expression refers to (as written / as mapped)."""
    return {p.name for p in _paths(expr)}


def map_terms(expr: QExpr, fn: Callable[[str], str], *, sub_attributes: bool = True) -> QExpr:
    """A copy with each attribute name replaced by `fn(name)` (e.g. @context expansion).

    Sub-attribute names are terms too and are mapped unless `sub_attributes=False`; the metadata members
    (observedAt, unitCode, ...) and the bracketed keys into JSON values are not terms and are kept.
    """
    if isinstance(expr, (And, Or)):
        return type(expr)(tuple(map_terms(i, fn, sub_attributes=sub_attributes) for i in expr.items))
    p = expr.path
    sub = tuple(s if s in METADATA_MEMBERS or not sub_attributes else fn(s) for s in p.sub)
    path = AttrPath(fn(p.name), sub, p.keys)
    if isinstance(expr, Compare):
        return Compare(path, expr.op, expr.value)
    return type(expr)(path)


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Regex):
        return _scalar_text(value.value)
    return str(value.value)


def format_q(expr: QExpr) -> str:
    """Canonical text of an expression; `parse_q(format_q(e)) == e`."""
    if isinstance(expr, (And, Or)):
        sep = ";" if isinstance(expr, And) else "|"
        parts = [f"({format_q(i)})" if isinstance(i, (And, Or)) else format_q(i) for i in expr.items]
        return sep.join(parts)
    if isinstance(expr, Exists):
        return str(expr.path)
    if isinstance(expr, NotExists):
        return "!" + str(expr.path)
    value = expr.value
    if isinstance(value, Range):
        text = f"{_scalar_text(value.low)}..{_scalar_text(value.high)}"
    elif isinstance(value, ValueList):
        text = ",".join(_scalar_text(v) for v in value.items)
    else:
        text = _scalar_text(value)
    return f"{expr.path}{expr.op}{text}"


# -- evaluation ---------------------------------------------------------------------------------------------

Lookup = Callable[[AttrPath], list[Any]]


def _candidates(values: Iterable[Any]) -> Iterable[Any]:
    # An array-valued attribute (or several instances of it) matches when any element does.
    for v in values:
        if isinstance(v, (list, tuple)):
            yield from _candidates(v)
        else:
            yield v


def _as_comparable(value: Any) -> tuple[str, Any] | None:
    """(kind, python value) for ordering/equality; None for what compares with nothing (objects, null)."""
    if isinstance(value, bool):
        return "bool", value
    if isinstance(value, (int, float)):
        return "num", value
    if isinstance(value, datetime):
        return "dt", value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return "date", value
    if isinstance(value, time):
        return "time", value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, DateTime):
        return "dt", value.parsed
    if isinstance(value, Date):
        return "date", value.parsed
    if isinstance(value, Time):
        return "time", value.parsed
    if isinstance(value, Uri):
        return "str", value.value
    if isinstance(value, str):
        # Strings that spell a DateTime/Date/Time compare as such (on either side), so
        # `2024-01-01T10:00:00+01:00` equals `2024-01-01T09:00:00Z`.
        if (dt := _parse_datetime(value)) is not None:
            return "dt", dt
        if (d := _parse_date(value)) is not None:
            return "date", d
        if (t := _parse_time(value)) is not None:
            return "time", t
        return "str", value
    return None


def _cmp(literal: Any, candidate: Any) -> int | None:
    """-1/0/1 comparing `candidate` to `literal`, None when their types do not match."""
    lit, cand = _as_comparable(literal), _as_comparable(candidate)
    if lit is None or cand is None:
        return None
    (lk, lv), (ck, cv) = lit, cand
    # A bare date against a timestamp means midnight UTC of that day.
    if lk == "date" and ck == "dt":
        lk, lv = "dt", datetime(lv.year, lv.month, lv.day, tzinfo=UTC)
    elif ck == "date" and lk == "dt":
        ck, cv = "dt", datetime(cv.year, cv.month, cv.day, tzinfo=UTC)
    if lk != ck:
        return None
    if lk == "time":
        lv, cv = _time_key(lv), _time_key(cv)
    return int((cv > lv) - (cv < lv))


def _time_key(t: time) -> float:
    offset = t.utcoffset()
    seconds = t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6
    return seconds - (offset.total_seconds() if offset else 0.0)


def _positive(op: str, value: Value, candidate: Any) -> bool:
    if op == "~=":
        return isinstance(candidate, str) and regex.search(value.value, candidate)  # type: ignore[union-attr]
    if isinstance(value, Range):
        low, high = _cmp(value.low, candidate), _cmp(value.high, candidate)
        return low is not None and high is not None and low >= 0 and high <= 0
    if isinstance(value, ValueList):
        return any(_cmp(item, candidate) == 0 for item in value.items)
    order = _cmp(value, candidate)
    if order is None:
        return False
    return {"==": order == 0, ">": order > 0, ">=": order >= 0, "<": order < 0, "<=": order <= 0}[op]


def evaluate(expr: QExpr, lookup: Lookup) -> bool:
    """Whether an entity satisfies `expr`; `lookup(path)` gives the entity's values at that path (empty list
    when absent; one entry per attribute instance; arrays may be nested and are matched element-wise).

    `!=` and `!~=` hold when the attribute exists and no element matches; a comparison between different
    types (number vs string, ...) is false; strings that spell DateTimes compare as instants.
    """
    if isinstance(expr, And):
        return all(evaluate(i, lookup) for i in expr.items)
    if isinstance(expr, Or):
        return any(evaluate(i, lookup) for i in expr.items)
    values = lookup(expr.path)
    if isinstance(expr, Exists):
        return bool(values)
    if isinstance(expr, NotExists):
        return not values
    candidates = list(_candidates(values))
    if expr.op in ("!=", "!~="):
        positive = "==" if expr.op == "!=" else "~="
        return bool(values) and not any(_positive(positive, expr.value, c) for c in candidates)
    return any(_positive(expr.op, expr.value, c) for c in candidates)
