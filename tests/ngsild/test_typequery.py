"""Entity type selection: parsing, matching, the DNF the store turns into SQL, and refusals."""

from __future__ import annotations

import itertools

import pytest

from civicmesh.errors import Problem
from civicmesh.ngsild.typequery import (
    MAX_DISJUNCTS,
    TypeAnd,
    TypeName,
    TypeOr,
    as_disjunction,
    evaluate,
    format_types,
    map_terms,
    parse_types,
    type_names,
)

A, B, C, D = (TypeName(n) for n in "ABCD")

PARSES = [
    ("Building", TypeName("Building")),
    ("A,B", TypeOr((A, B))),
    ("A|B", TypeOr((A, B))),
    ("A,B|C", TypeOr((A, B, C))),
    ("A;B", TypeAnd((A, B))),
    ("A;B,C", TypeOr((TypeAnd((A, B)), C))),  # AND binds tighter
    ("A,B;C", TypeOr((A, TypeAnd((B, C))))),
    ("(A,B);C", TypeAnd((TypeOr((A, B)), C))),
    ("(A|B);(C|D)", TypeAnd((TypeOr((A, B)), TypeOr((C, D))))),
    ("((A))", A),
    (" A ; ( B | C ) ", TypeAnd((A, TypeOr((B, C))))),
    ("https://uri.etsi.org/ngsi-ld/default-context/Vehicle,ex:Car",
     TypeOr((TypeName("https://uri.etsi.org/ngsi-ld/default-context/Vehicle"), TypeName("ex:Car")))),
]


@pytest.mark.parametrize(("text", "expected"), PARSES, ids=[t for t, _ in PARSES])
def test_parse_and_round_trip(text: str, expected: object) -> None:
    parsed = parse_types(text)
    assert parsed == expected
    assert parse_types(format_types(parsed)) == parsed


ERRORS = [
    ("", ["empty"]),
    (" ", ["empty"]),
    (",A", ["position 1", "type name or '('"]),
    ("A,", ["position 3", "type name", "end of the expression"]),
    ("A;;B", ["position 3", "type name"]),
    ("A||B", ["position 3", "type name"]),
    ("(A,B", ["position 5", "')' to close the '(' opened at position 1"]),
    ("A)", ["position 2", "no matching '('"]),
    ("()", ["position 2", "type name"]),
    ("A B", ["position 3", "',', '|', ';' or the end"]),
    ("A(B)", ["position 2", "',', '|', ';' or the end"]),
]


@pytest.mark.parametrize(("text", "words"), ERRORS, ids=[repr(t) for t, _ in ERRORS])
def test_invalid_type_expressions(text: str, words: list[str]) -> None:
    with pytest.raises(Problem) as caught:
        parse_types(text)
    assert caught.value.kind == "BadRequestData" and caught.value.status == 400
    for word in words:
        assert word in caught.value.detail, (word, caught.value.detail)


def test_non_string_is_refused() -> None:
    with pytest.raises(Problem, match="expected a string"):
        parse_types(["A"])  # type: ignore[arg-type]


MATCHES = [
    ("A", {"A"}, True),
    ("A", {"B"}, False),
    ("A", {"A", "B"}, True),  # entities can have several types
    ("A,B", {"B"}, True),
    ("A;B", {"A"}, False),
    ("A;B", {"A", "B", "C"}, True),
    ("A;B,C", {"C"}, True),
    ("(A,B);C", {"A"}, False),
    ("(A,B);C", {"B", "C"}, True),
    ("(A|B);(C|D)", {"B", "D"}, True),
    ("(A|B);(C|D)", {"A", "B"}, False),
]


@pytest.mark.parametrize(("text", "types", "expected"), MATCHES,
                         ids=[f"{t}-{sorted(s)}" for t, s, _ in MATCHES])
def test_evaluate(text: str, types: set[str], expected: bool) -> None:
    assert evaluate(parse_types(text), types) is expected


DNF = [
    ("A", [{"A"}]),
    ("A,B", [{"A"}, {"B"}]),
    ("A;B", [{"A", "B"}]),
    ("(A,B);C", [{"A", "C"}, {"B", "C"}]),
    ("(A|B);(C|D)", [{"A", "C"}, {"A", "D"}, {"B", "C"}, {"B", "D"}]),
    ("A,A;B", [{"A"}]),  # A;B adds nothing once A alone matches
    ("A;A", [{"A"}]),
    ("B,A", [{"A"}, {"B"}]),  # deterministic order
]


@pytest.mark.parametrize(("text", "expected"), DNF, ids=[t for t, _ in DNF])
def test_as_disjunction(text: str, expected: list[set[str]]) -> None:
    assert as_disjunction(parse_types(text)) == [frozenset(c) for c in expected]


@pytest.mark.parametrize("text", [t for t, _ in PARSES] + [t for t, _, _ in MATCHES])
def test_dnf_agrees_with_evaluate_on_every_type_set(text: str) -> None:
    expr = parse_types(text)
    dnf = as_disjunction(expr)
    assert dnf is not None
    names = sorted(type_names(expr))
    for r in range(len(names) + 1):
        for combo in itertools.combinations(names, r):
            types = set(combo)
            assert evaluate(expr, types) == any(c <= types for c in dnf), (text, types)


def test_dnf_gives_up_beyond_the_limit() -> None:
    # nine ORs of two names each ANDed together expand to 2**9 = 512 alternatives
    text = ";".join(f"(T{i}a,T{i}b)" for i in range(9))
    assert 2 ** 9 > MAX_DISJUNCTS
    assert as_disjunction(parse_types(text)) is None
    assert evaluate(parse_types(text), {f"T{i}a" for i in range(9)})


def test_type_names_and_map_terms() -> None:
    expr = parse_types("(Building,Vehicle);ex:Thing")
    assert type_names(expr) == {"Building", "Vehicle", "ex:Thing"}
    expanded = map_terms(expr, lambda n: n if ":" in n else f"https://example.org/{n}")
    assert expanded == TypeAnd((TypeOr((TypeName("https://example.org/Building"),
                                        TypeName("https://example.org/Vehicle"))), TypeName("ex:Thing")))
    assert as_disjunction(expanded) == [frozenset({"https://example.org/Building", "ex:Thing"}),
                                        frozenset({"https://example.org/Vehicle", "ex:Thing"})]


def test_nesting_is_limited_instead_of_crashing() -> None:
    with pytest.raises(Problem, match="nest deeper than 50 levels"):
        parse_types("(" * 5000 + "A" + ")" * 5000)
