"""The NGSI-LD `q` language: what parses to what, what is refused and why, and what matches."""

from __future__ import annotations

from typing import Any

import pytest

from civicmesh.errors import Problem
from civicmesh.ngsild.qlang import (
    And,
    AttrPath,
    Compare,
    Date,
    DateTime,
    Exists,
    NotExists,
    Or,
    Range,
    Regex,
    Time,
    Uri,
    ValueList,
    attribute_names,
    evaluate,
    format_q,
    map_terms,
    parse_q,
)


def P(name: str, *sub: str, keys: tuple[str, ...] = ()) -> AttrPath:
    return AttrPath(name, tuple(sub), keys)


def C(path: AttrPath | str, op: str, value: Any) -> Compare:
    return Compare(P(path) if isinstance(path, str) else path, op, value)


PARSES = [
    # the ETSI conformance suite's q expressions
    ('name=="Eiffel Tower"', C("name", "==", "Eiffel Tower")),
    ("airQualityLevel>=4;airQualityLevel<7",
     And((C("airQualityLevel", ">=", 4), C("airQualityLevel", "<", 7)))),
    ("locatedIn==urn:ngsi-ld:City:Pisa|locatedIn==urn:ngsi-ld:City:Paris",
     Or((C("locatedIn", "==", Uri("urn:ngsi-ld:City:Pisa")),
         C("locatedIn", "==", Uri("urn:ngsi-ld:City:Paris"))))),
    ('(name=="Pisa Tower"|name=="Eiffel Tower");almostFull==false',
     And((Or((C("name", "==", "Pisa Tower"), C("name", "==", "Eiffel Tower"))),
          C("almostFull", "==", False)))),
    # every operator
    ("a!=1", C("a", "!=", 1)),
    ("a>1", C("a", ">", 1)),
    ("a>=1", C("a", ">=", 1)),
    ("a<1", C("a", "<", 1)),
    ("a<=1", C("a", "<=", 1)),
    ("a~=^x.*", C("a", "~=", Regex("^x.*"))),
    ("a!~=^x.*", C("a", "!~=", Regex("^x.*"))),
    # literals
    ("a==-1.5e3", C("a", "==", -1500.0)),
    ("a==0", C("a", "==", 0)),
    ("a==true", C("a", "==", True)),
    ('a=="with \\"quotes\\" and \\\\ ; | ( )"', C("a", "==", 'with "quotes" and \\ ; | ( )')),
    ('a==""', C("a", "==", "")),
    ("a==2018-08-07T12:00:00Z", C("a", "==", DateTime("2018-08-07T12:00:00Z"))),
    ("a>=2018-08-07T12:00:00.123+02:00", C("a", ">=", DateTime("2018-08-07T12:00:00.123+02:00"))),
    ("a<2018-08-07", C("a", "<", Date("2018-08-07"))),
    ("a>12:30:00Z", C("a", ">", Time("12:30:00Z"))),
    ("a==https://example.org/x?y=1", C("a", "==", Uri("https://example.org/x?y=1"))),
    # ranges and lists
    ("a==1..5", C("a", "==", Range(1, 5))),
    ("a!=1.5..2.5", C("a", "!=", Range(1.5, 2.5))),
    ('a=="a".."m"', C("a", "==", Range("a", "m"))),
    ("a==2018-01-01T00:00:00Z..2018-12-31T23:59:59Z",
     C("a", "==", Range(DateTime("2018-01-01T00:00:00Z"), DateTime("2018-12-31T23:59:59Z")))),
    ('a=="x","y"', C("a", "==", ValueList(("x", "y")))),
    ("a==1,2,3", C("a", "==", ValueList((1, 2, 3)))),
    ("a!=urn:x:1,urn:x:2", C("a", "!=", ValueList((Uri("urn:x:1"), Uri("urn:x:2"))))),
    # paths
    ("a.b.c==1", C(P("a", "b", "c"), "==", 1)),
    ("speed.observedAt>2020-01-01T00:00:00Z",
     C(P("speed", "observedAt"), ">", DateTime("2020-01-01T00:00:00Z"))),
    ("a[b][c]==1", C(P("a", keys=("b", "c")), "==", 1)),
    ('a.b[c]=="x"', C(P("a", "b", keys=("c",)), "==", "x")),
    ('name[fr-CH]=="Tour"', C(P("name", keys=("fr-CH",)), "==", "Tour")),
    ("schema:name", Exists(P("schema:name"))),
    # existence
    ("a", Exists(P("a"))),
    ("!a", NotExists(P("a"))),
    ("!a.b", NotExists(P("a", "b"))),
    ("a;!b", And((Exists(P("a")), NotExists(P("b"))))),
    # precedence and grouping: AND binds tighter than OR
    ("a|b;c", Or((Exists(P("a")), And((Exists(P("b")), Exists(P("c"))))))),
    ("a;b|c", Or((And((Exists(P("a")), Exists(P("b")))), Exists(P("c"))))),
    ("(a|b);c", And((Or((Exists(P("a")), Exists(P("b")))), Exists(P("c"))))),
    ("((a))", Exists(P("a"))),
    ("a;(b;c)", And((Exists(P("a")), Exists(P("b")), Exists(P("c"))))),
    ("a|(b|c)|d", Or((Exists(P("a")), Exists(P("b")), Exists(P("c")), Exists(P("d"))))),
    # whitespace between tokens is ignored, kept inside strings
    (' a == "x y" ; ( b > 1 | c ) ', And((C("a", "==", "x y"), Or((C("b", ">", 1), Exists(P("c"))))))),
    # regex: unquoted patterns keep their own groups, quoted ones may hold anything
    ("a~=(?i)mer(c|k).*;b", And((C("a", "~=", Regex("(?i)mer(c|k).*")), Exists(P("b"))))),
    ('a~="x|y;z"', C("a", "~=", Regex("x|y;z"))),
    ("a~=[;|]x", C("a", "~=", Regex("[;|]x"))),
]


@pytest.mark.parametrize(("text", "expected"), PARSES, ids=[t for t, _ in PARSES])
def test_parse(text: str, expected: Any) -> None:
    assert parse_q(text) == expected


@pytest.mark.parametrize(("text", "expected"), PARSES, ids=[t for t, _ in PARSES])
def test_format_round_trips(text: str, expected: Any) -> None:
    assert parse_q(format_q(expected)) == expected


def test_numbers_keep_their_python_type() -> None:
    assert type(parse_q("a==3").value) is int  # type: ignore[union-attr]
    assert type(parse_q("a==3.0").value) is float  # type: ignore[union-attr]


ERRORS = [
    # (expression, words the detail must contain)
    ("", ["empty"]),
    ("   ", ["empty"]),
    ("a=1", ["position 2", "'=='", "single '='"]),
    ("a==", ["position 4", "a value after '=='", "end of the expression"]),
    ("a==abc", ["position 4", "quoted", '"abc"']),
    ("a=='x'", ["position 4", "quoted"]),
    ("(a==1", ["position 6", "')' to close the '(' opened at position 1"]),
    ("a==1)", ["position 5", "no matching '('"]),
    ("a==1 b==2", ["position 6", "';', '|' or the end"]),
    (";a", ["position 1", "attribute name"]),
    ("a;", ["position 3", "attribute name"]),
    ("a|", ["position 3", "attribute name"]),
    ("a;;b", ["position 3", "attribute name"]),
    ("()", ["position 2", "attribute name"]),
    ("a.==1", ["position 3", "sub-attribute name"]),
    ("a[b==1", ["position 7", "']' to close the '[' opened at position 2"]),
    ("a[]==1", ["position 3", "key name"]),
    ("a[b].c==1", ["position 5", "sub-attributes ('.') must come before keys"]),
    ('a=="x', ["position 6", "to close the string opened at position 4"]),
    ('a=="x\\q"', ["position 7", "escape"]),
    ("a>true", ["position 3", "to compare with '>'"]),
    ("a<=urn:x:1", ["position 4", "to compare with '<='"]),
    ("a>1..5", ["position 4", "range", "not '>'"]),
    ("a<1,2", ["position 4", "list", "not '<'"]),
    ("a==1..", ["position 7", "a value"]),
    ("a==1..true", ["position 7", "range bound"]),
    ('a==1.."x"', ["position 7", "same kind", "number"]),
    ("a==1,", ["position 6", "a value"]),
    ("a==1,,2", ["position 6", "a value"]),
    ("a==2018-13-01", ["position 4", "valid Date"]),
    ("a==2018-02-30T10:00:00Z", ["position 4", "valid DateTime"]),
    ("a==25:00:00", ["position 4", "valid Time"]),
    ("a~=", ["position 4", "regular expression"]),
    ("a~=(", ["position 4", "does not compile"]),
    ('a~="["', ["position 4", "does not compile"]),
    ("!", ["position 2", "attribute name after '!'"]),
    ("!(a)", ["position 2", "attribute name after '!'"]),
    ("a b", ["position 3", "operator"]),
    ("a=>1", ["position 2", "single '='"]),
    ("==1", ["position 1", "attribute name"]),
]


@pytest.mark.parametrize(("text", "words"), ERRORS, ids=[repr(t) for t, _ in ERRORS])
def test_invalid_expressions_are_bad_request_data_naming_the_problem(text: str, words: list[str]) -> None:
    with pytest.raises(Problem) as caught:
        parse_q(text)
    problem = caught.value
    assert problem.kind == "BadRequestData"
    assert problem.status == 400
    assert problem.detail != problem.title
    for word in words:
        assert word in problem.detail, (word, problem.detail)


def test_non_string_is_refused() -> None:
    with pytest.raises(Problem, match="expected a string"):
        parse_q(["a"])  # type: ignore[arg-type]


def test_attribute_names_lists_top_level_names() -> None:
    expr = parse_q('(a.b==1|c[d]=="x");!e;f.observedAt>2020-01-01T00:00:00Z')
    assert attribute_names(expr) == {"a", "c", "e", "f"}


def test_map_terms_expands_names_and_sub_attributes_but_not_metadata_or_keys() -> None:
    expand = {"a": "https://x/a", "b": "https://x/b", "c": "https://x/c"}.__getitem__
    expr = map_terms(parse_q('a.b[k]==1|!c.observedAt|a.unitCode=="CEL"'), expand)
    assert expr == Or((
        C(P("https://x/a", "https://x/b", keys=("k",)), "==", 1),
        NotExists(P("https://x/c", "observedAt")),
        C(P("https://x/a", "unitCode"), "==", "CEL"),
    ))
    only_names = map_terms(parse_q("a.b"), lambda n: n.upper(), sub_attributes=False)
    assert only_names == Exists(P("A", "b"))


# -- evaluation ----------------------------------------------------------------------------------------------

ENTITY: dict[str, list[Any]] = {
    # one entry per attribute instance; lists are array values
    "speed": [120],
    "speed.observedAt": ["2020-08-01T12:00:00Z"],
    "temperature": [21.5, 25],  # two instances (datasetIds)
    "brandName": ["Mercedes"],
    "colors": [["red", "blue"]],
    "isParked": ["urn:ngsi-ld:OffStreetParking:Downtown1"],
    "almostFull": [False],
    "installedOn": ["2019-03-04"],
    "opensAt": ["08:30:00Z"],
    "lastSeen": ["2020-08-01T14:00:00+02:00"],
    "address[city]": ["Berlin"],
    "address[zip]": [10115],
    "empty": [[]],
    "config": [{"a": 1}],
}


def lookup(path: AttrPath) -> list[Any]:
    return ENTITY.get(str(path), [])


MATCHES = [
    ("speed==120", True),
    ("speed==120.0", True),
    ("speed==121", False),
    ("speed!=121", True),
    ("speed!=120", False),
    ("speed>100", True),
    ("speed>=120", True),
    ("speed<120", False),
    ("speed<=120", True),
    ("speed==100..150", True),
    ("speed==121..150", False),
    ("speed!=121..150", True),
    ("speed==1,120", True),
    ("speed!=1,120", False),
    ('speed=="120"', False),  # a string never equals a number
    ('speed!="120"', True),
    ("speed==true", False),
    ("speed", True),
    ("!speed", False),
    ("nothing", False),
    ("!nothing", True),
    ("nothing!=1", False),  # unequal needs the attribute to exist
    ("nothing!~=x", False),
    # several instances / array values: any element
    ("temperature>24", True),
    ("temperature<22", True),
    ("temperature==21.5", True),
    ("temperature!=21.5", False),
    ('colors=="blue"', True),
    ('colors=="green"', False),
    ('colors!="green"', True),
    ('colors!="red"', False),
    ('colors=="green","red"', True),
    ("empty==1", False),
    ("empty!=1", True),
    ("config==1", False),
    # strings and regular expressions
    ('brandName=="Mercedes"', True),
    ('brandName>"Audi"', True),
    ('brandName=="Audi".."Opel"', True),
    ("brandName~=^Merc", True),
    ("brandName~=^merc", False),
    ("brandName~=(?i)^merc", True),
    ("brandName!~=^Merc", False),
    ("brandName!~=^Audi", True),
    ("speed~=120", False),  # regex only applies to strings
    # relationships compare by object URI
    ("isParked==urn:ngsi-ld:OffStreetParking:Downtown1", True),
    ('isParked=="urn:ngsi-ld:OffStreetParking:Downtown1"', True),
    ("isParked!=urn:ngsi-ld:OffStreetParking:Downtown1", False),
    # booleans
    ("almostFull==false", True),
    ("almostFull==true", False),
    ("almostFull==0", False),  # no bool/number confusion
    # datetimes compare as instants, whatever the offset
    ("lastSeen==2020-08-01T12:00:00Z", True),
    ('lastSeen=="2020-08-01T12:00:00Z"', True),
    ("lastSeen>2020-08-01T11:59:59.999Z", True),
    ("lastSeen<2020-08-01T13:00:00+02:00", False),
    ("lastSeen==2020-08-01T00:00:00Z..2020-08-02T00:00:00Z", True),
    ("speed.observedAt>=2020-08-01T12:00:00Z", True),
    ("speed.observedAt>2020-08-01T12:00:00Z", False),
    ("speed.observedAt>2020-08-01", True),  # a date means midnight UTC against a DateTime
    ("speed.observedAt<2020-08-01", False),
    # dates and times
    ("installedOn==2019-03-04", True),
    ("installedOn<2019-03-05", True),
    ("installedOn==2019-01-01..2019-12-31", True),
    ("opensAt<09:00:00Z", True),
    ("opensAt==09:30:00+01:00", True),
    ("opensAt>08:30:00Z", False),
    ("installedOn==2019", False),  # number vs date string
    # keys into JSON values
    ('address[city]=="Berlin"', True),
    ("address[zip]>10000", True),
    ('address[country]=="DE"', False),
    # combinations
    ('speed>100;brandName=="Mercedes"', True),
    ('speed>200;brandName=="Mercedes"', False),
    ('speed>200|brandName=="Mercedes"', True),
    ("speed>200|nothing|!speed", False),
    ("(speed>200|almostFull==false);!nothing", True),
    ("speed>200;nothing|almostFull==false", True),
]


@pytest.mark.parametrize(("text", "expected"), MATCHES, ids=[t for t, _ in MATCHES])
def test_evaluate(text: str, expected: bool) -> None:
    assert evaluate(parse_q(text), lookup) is expected


def test_evaluate_accepts_python_datetimes() -> None:
    from datetime import UTC, date, datetime

    def values(path: AttrPath) -> list[Any]:
        return {"t": [datetime(2020, 1, 1, 12, tzinfo=UTC)], "d": [date(2020, 1, 1)]}.get(path.name, [])

    assert evaluate(parse_q("t==2020-01-01T12:00:00Z"), values)
    assert evaluate(parse_q("t>2020-01-01"), values)
    assert evaluate(parse_q("d==2020-01-01"), values)
    assert evaluate(parse_q("d<2020-01-01T00:00:01Z"), values)
    assert not evaluate(parse_q("t>2021-01-01T00:00:00Z"), values)


def test_typed_literals_expose_parsed_values() -> None:
    dt = parse_q("a==2020-01-01T01:00:00+01:00").value  # type: ignore[union-attr]
    assert isinstance(dt, DateTime) and dt.parsed.isoformat() == "2020-01-01T01:00:00+01:00"
    assert Date("2020-02-29").parsed.day == 29
    assert Time("10:00:00Z").parsed.hour == 10


def test_nesting_is_limited_instead_of_crashing() -> None:
    assert parse_q("(" * 50 + "a" + ")" * 50) == Exists(P("a"))
    with pytest.raises(Problem, match="nest deeper than 50 levels"):
        parse_q("(" * 5000 + "a" + ")" * 5000)


def test_garbage_never_escapes_as_anything_but_bad_request_data() -> None:
    # a bad request must never become a 500: random token soup either parses (and then round-trips and
    # evaluates) or is refused with BadRequestData
    import random

    rng = random.Random(20260101)
    pieces = list('ab.[]()"\\;|,!=<>~-:0123456789 eTZ') + ["==", "..", "2020-01-01T00:00:00Z", "urn:x:y",
                                                             "true", '"s"', "(?i)", "%5B"]
    parsed = 0
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        try:
            expr = parse_q(text)
        except Problem as problem:
            assert problem.kind == "BadRequestData"
            continue
        parsed += 1
        assert parse_q(format_q(expr)) == expr
        evaluate(expr, lambda path: [1, "x", [2, "2020-01-01"], True, {"a": 1}, None])
    assert parsed > 500  # the soup does produce valid expressions, so both paths are exercised
