"""Regular expressions that callers send (idPattern, the `~=` of q, scopeQ), compiled by RE2.

Python's `re` backtracks: `^urn:ngsi-ld:ReDoS:(a+)+$` took 2.6 s against one id and doubled with each character,
holding the GIL inside SQLite (issue 13, finding 9). RE2 matches in time linear in the text, so no pattern can
stall the server. Its price is a smaller language: no backreferences and no lookarounds. A pattern that uses a
construct RE2 cannot run is refused with a 400 that names the construct.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

from civicmesh.errors import Problem

# The longest pattern accepted: ids and values are matched with patterns of a few dozen characters; 1,024 leaves
# room for any honest one and keeps RE2's compiled program well under its 8 MB default memory budget.
MAX_PATTERN = 1024

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is the caller's mistake, answered with a 400: not a server log line

# RE2's parser message -> the construct a caller would recognise.
_CONSTRUCTS = (
    ("invalid perl operator: (?=", "a lookahead (?=...)"),
    ("invalid perl operator: (?!", "a negative lookahead (?!...)"),
    ("invalid perl operator: (?<=", "a lookbehind (?<=...)"),
    ("invalid perl operator: (?<!", "a negative lookbehind (?<!...)"),
    ("invalid perl operator: (?>", "an atomic group (?>...)"),
    ("invalid perl operator: (?P=", "a named backreference (?P=name)"),
    ("invalid perl operator: (?P", "a named backreference (?P=name)"),
    ("invalid escape sequence: \\k", "a named backreference \\k<name>"),
    ("bad repetition operator", "a possessive quantifier such as *+"),
    ("invalid repetition size", "a repetition count above 1000"),
)


def _construct(message: str) -> str | None:
    for prefix, construct in _CONSTRUCTS:
        if message.startswith(prefix):
            return construct
    if message.startswith("invalid escape sequence: \\") and message[-1:].isdigit():
        return f"a backreference {message.rsplit(' ', 1)[-1]}"
    return None


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern, _OPTIONS)


def compile_pattern(pattern: str, name: str = "the regular expression") -> Any:
    """The compiled RE2 program, or a 400 Problem naming what is wrong (the construct, when RE2 lacks it)."""
    if len(pattern) > MAX_PATTERN:
        raise Problem("BadRequestData", f"{name} has {len(pattern):,} characters; at most {MAX_PATTERN:,} are "
                      "allowed")
    if "\x00" in pattern:
        raise Problem("BadRequestData", f"{name} contains a NUL character")
    try:
        return _compiled(pattern)
    except re2.error as exc:
        raw = exc.args[0] if exc.args else str(exc)
        message = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        construct = _construct(message)
        if construct is not None:
            raise Problem("BadRequestData", f"{name} {pattern!r} uses {construct}, which the linear-time regular "
                          "expression engine (RE2) cannot run; rewrite it without") from None
        raise Problem("BadRequestData", f"{name} {pattern!r} is not a valid regular expression (it does not "
                      f"compile: {message})") from None


def search(pattern: str, text: str) -> bool:
    """Whether `pattern` (checked by `compile_pattern` when it came in) matches anywhere in `text`. A pattern
    stored before RE2 (a subscription's idPattern with a backreference) matches nothing rather than failing."""
    try:
        return _compiled(pattern).search(text) is not None
    except re2.error:
        return False
