"""Geo-queries: parameter validation, GeoJSON validation, exact predicates, distances and index boxes."""

from __future__ import annotations

import math
from typing import Any

import pytest
from shapely.geometry import Point, shape

from civicmesh.errors import Problem
from civicmesh.ngsild.geoquery import (
    EARTH_RADIUS_M,
    GeoQuery,
    bbox_for,
    distance_m,
    matches,
    parse_geojson_geometry,
    parse_geoq_object,
    parse_geoquery,
)

METRES_PER_DEGREE = EARTH_RADIUS_M * math.pi / 180  # along a meridian / the equator

# Worked example of ETSI conformance test 019_10 (Buildings in Berlin): three entity locations, and for each
# query the number of entities the suite expects.
BERLIN_BUILDINGS = [
    {"type": "Point", "coordinates": [13.3986, 52.5547]},
    {"type": "Point", "coordinates": [13.509818, 52.363457]},
    {"type": "Point", "coordinates": [13.215983, 52.470441]},
]
BERLIN_POLYGON = ("[[[13.1616211,52.5438124],[13.597641,52.4840224],[13.5948944,52.3402782],"
                  "[13.142395,52.386428],[13.1616211,52.5438124]]]")
ETSI_019_10 = [
    ("equals", "Point", "[13.3986, 52.5547]", 1),
    ("near;maxDistance==15000", "Point", "[13.388930, 52.534473]", 2),
    ("near;minDistance==15000", "Point", "[13.388930, 52.534473]", 1),
    ("within", "Polygon", BERLIN_POLYGON, 2),
    ("disjoint", "Polygon", BERLIN_POLYGON, 1),
    ("disjoint", "Point", "[13.3986, 52.5547]", 2),
    ("contains", "Point", "[13.3986, 52.5547]", 1),
    ("intersects", "Point", "[13.3986, 52.5547]", 1),
]


@pytest.mark.parametrize(("georel", "geometry", "coordinates", "count"), ETSI_019_10,
                         ids=[f"{r}-{g}" for r, g, _, _ in ETSI_019_10])
def test_etsi_019_10_counts(georel: str, geometry: str, coordinates: str, count: int) -> None:
    query = parse_geoquery(georel, geometry, coordinates, None)
    assert query is not None
    assert sum(matches(query, b) for b in BERLIN_BUILDINGS) == count
    # the index pre-filter must never drop a match
    box = bbox_for(query)
    if box is not None:
        for building in BERLIN_BUILDINGS:
            if matches(query, building):
                x, y = building["coordinates"]
                assert box[0] <= x <= box[2] and box[1] <= y <= box[3]


def test_parse_fields_and_defaults() -> None:
    q = parse_geoquery("near;maxDistance==2000", "Point", "[-8.503,41.202]", None)
    assert q is not None
    assert (q.relation, q.geometry_type, q.coordinates, q.geoproperty) == ("near", "Point", (-8.503, 41.202),
                                                                           "location")
    assert (q.min_distance, q.max_distance) == (None, 2000.0)
    assert q.georel == "near;maxDistance==2000"
    assert q.geojson == {"type": "Point", "coordinates": [-8.503, 41.202]}
    assert q.geometry.equals(Point(-8.503, 41.202))
    both = parse_geoquery("near;minDistance==10;maxDistance==20.5", "Point", [0, 0], "position")
    assert both is not None
    assert (both.min_distance, both.max_distance, both.geoproperty) == (10.0, 20.5, "position")
    assert both.georel == "near;maxDistance==20.5;minDistance==10"
    assert hash(both) == hash(parse_geoquery(both.georel, "Point", "[0,0]", "position"))
    assert both.with_geoproperty("https://x/position").geoproperty == "https://x/position"


def test_no_geo_parameters_means_no_geo_query() -> None:
    assert parse_geoquery(None, None, None, None) is None
    assert parse_geoquery("", "", "", None) is None


@pytest.mark.parametrize("coordinates", [
    "[[[0,0],[1,0],[1,1],[0,1],[0,0]]]",
    "%5B%5B%5B0%2C0%5D%2C%5B1%2C0%5D%2C%5B1%2C1%5D%2C%5B0%2C1%5D%2C%5B0%2C0%5D%5D%5D",  # still URL-encoded
    " [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]] ",
    [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]],  # already parsed (geoQ in a JSON body)
])
def test_coordinates_forms(coordinates: Any) -> None:
    q = parse_geoquery("intersects", "Polygon", coordinates, None)
    assert q is not None and q.geometry.area == 1.0


@pytest.mark.parametrize("geometry, coordinates", [
    ("Point", "[1, 2, 30]"),
    ("MultiPoint", "[[1, 2], [3, 4]]"),
    ("LineString", "[[1, 2], [3, 4]]"),
    ("MultiLineString", "[[[1, 2], [3, 4]], [[5, 6], [7, 8]]]"),
    ("Polygon", "[[[0,0],[4,0],[4,4],[0,4],[0,0]], [[1,1],[2,1],[2,2],[1,2],[1,1]]]"),
    ("MultiPolygon", "[[[[0,0],[1,0],[1,1],[0,0]]], [[[5,5],[6,5],[6,6],[5,5]]]]"),
])
def test_every_geometry_type_is_accepted(geometry: str, coordinates: str) -> None:
    q = parse_geoquery("intersects", geometry, coordinates, None)
    assert q is not None and q.geometry.geom_type == geometry


PARAM_ERRORS = [
    # (georel, geometry, coordinates, geoproperty, words the detail must contain)
    ("within", None, None, None, ["geometry and coordinates are missing"]),
    (None, "Point", "[1,2]", None, ["georel is missing"]),
    ("within", "Point", None, None, ["coordinates is missing"]),
    (None, None, None, "location", ["geoproperty is given", "missing"]),
    ("crosses", "Point", "[1,2]", None, ["unknown relation 'crosses'", "near, within"]),
    ("Within", "Point", "[1,2]", None, ["unknown relation 'Within'"]),
    ("near", "Point", "[1,2]", None, ["near needs a distance"]),
    ("near;maxDistance=2000", "Point", "[1,2]", None, ["maxDistance==<metres>", "'maxDistance=2000'"]),
    ("near;distance==5", "Point", "[1,2]", None, ["'distance==5'"]),
    ("near;maxDistance==-1", "Point", "[1,2]", None, ["maxDistance", "non-negative", "'-1'"]),
    ("near;maxDistance==far", "Point", "[1,2]", None, ["maxDistance", "'far'"]),
    ("near;maxDistance==nan", "Point", "[1,2]", None, ["maxDistance", "'nan'"]),
    ("near;maxDistance==1;maxDistance==2", "Point", "[1,2]", None, ["maxDistance is given twice"]),
    ("near;minDistance==20;maxDistance==10", "Point", "[1,2]", None,
     ["minDistance 20 is greater than maxDistance 10"]),
    ("within;maxDistance==10", "Polygon", "[[[0,0],[1,0],[1,1],[0,0]]]", None,
     ["'within' takes no parameters"]),
    ("near;maxDistance==10", "Polygon", "[[[0,0],[1,0],[1,1],[0,0]]]", None, ["near", "Point", "'Polygon'"]),
    ("within", "Circle", "[1,2]", None, ["geometry 'Circle' is not one of"]),
    ("within", "Point", "[1,2", None, ["not a JSON array"]),
    ("within", "Point", '{"x": 1}', None, ["must be a JSON array", "dict"]),
    ("within", "Point", "[1]", None, ["2 or 3 numbers", "got 1"]),
    ("within", "Point", "[1,2,3,4]", None, ["2 or 3 numbers", "got 4"]),
    ("within", "Point", '[1,"2"]', None, ["coordinates[1] must be a number", '"2"']),
    ("within", "Point", "[true,2]", None, ["coordinates[0] must be a number", "true"]),
    ("within", "Point", "[NaN,2]", None, ["finite"]),
    ("within", "Point", "[181,2]", None, ["longitude 181 is outside -180..180"]),
    ("within", "Point", "[1,-91]", None, ["latitude -91 is outside -90..90"]),
    ("within", "MultiPoint", "[]", None, ["MultiPoint needs at least 1 position", "got 0"]),
    ("within", "MultiPoint", "[[1,2],[3]]", None, ["coordinates[1] must have 2 or 3 numbers"]),
    ("within", "LineString", "[[1,2]]", None, ["LineString needs at least 2 positions", "got 1"]),
    ("within", "LineString", "[1,2]", None, ["coordinates[0] must be a position"]),
    ("within", "MultiLineString", "[]", None, ["MultiLineString needs an array of at least one member"]),
    ("within", "MultiLineString", "[[[1,2],[3,4]],[[1,2]]]", None,
     ["coordinates[1]", "LineString needs at least 2"]),
    ("within", "Polygon", "[]", None, ["Polygon needs an array of at least one linear ring"]),
    ("within", "Polygon", "[[[0,0],[1,0],[0,0]]]", None, ["coordinates[0]", "linear ring needs at least 4"]),
    ("within", "Polygon", "[[[0,0],[1,0],[1,1],[0,1]]]", None,
     ["coordinates[0]", "not closed", "starts at [0, 0] and ends at [0, 1]"]),
    ("within", "MultiPolygon", "[[[[0,0],[1,0],[1,1],[0,0]]], [[[0,0],[1,0],[1,1],[0,1]]]]", None,
     ["coordinates[1][0]", "not closed"]),
    ("within", "MultiPolygon", "[]", None, ["MultiPolygon needs an array of at least one member"]),
    ("within", "Point", "[1,2]", "my location", ["geoproperty 'my location' is not an attribute name"]),
]


@pytest.mark.parametrize(("georel", "geometry", "coordinates", "geoproperty", "words"), PARAM_ERRORS,
                         ids=[f"{i}-{e[0]}-{e[1]}" for i, e in enumerate(PARAM_ERRORS)])
def test_invalid_geo_queries_are_bad_request_data(georel: Any, geometry: Any, coordinates: Any,
                                                  geoproperty: Any, words: list[str]) -> None:
    with pytest.raises(Problem) as caught:
        parse_geoquery(georel, geometry, coordinates, geoproperty)
    assert caught.value.kind == "BadRequestData" and caught.value.status == 400
    for word in words:
        assert word in caught.value.detail, (word, caught.value.detail)


# -- GeoJSON geometry objects (GeoProperty values on write) --------------------------------------------------

def test_geojson_geometry_object() -> None:
    line = {"type": "LineString", "coordinates": [[0, 0], [1, 1]], "bbox": [0, 0, 1, 1]}
    geom = parse_geojson_geometry(line)
    assert geom.geom_type == "LineString" and geom.length == pytest.approx(math.sqrt(2))
    assert parse_geojson_geometry('{"type": "Point", "coordinates": [5, 6]}').equals(Point(5, 6))


GEOJSON_ERRORS = [
    ([1, 2], ["GeoJSON geometry object", "list"]),
    ("{nope", ["not valid JSON"]),
    ({"coordinates": [1, 2]}, ["geometry.type null is not a supported GeoJSON geometry type"]),
    ({"type": "GeometryCollection", "geometries": []}, ['"GeometryCollection" is not a supported']),
    ({"type": "point", "coordinates": [1, 2]}, ['"point" is not a supported']),
    ({"type": "Point"}, ["the Point has no 'coordinates' member"]),
    ({"type": "Point", "coordinates": [1, 200]}, ["geometry.coordinates: latitude 200 is outside"]),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]], [[0, 0], [1, 0]]]},
     ["geometry.coordinates[1]", "at least 4"]),
]


@pytest.mark.parametrize(("obj", "words"), GEOJSON_ERRORS, ids=[str(i) for i in range(len(GEOJSON_ERRORS))])
def test_invalid_geojson_is_bad_request_data(obj: Any, words: list[str]) -> None:
    with pytest.raises(Problem) as caught:
        parse_geojson_geometry(obj)
    assert caught.value.kind == "BadRequestData"
    for word in words:
        assert word in caught.value.detail, (word, caught.value.detail)


def test_self_intersecting_polygon_may_be_stored_when_not_required_valid() -> None:
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    with pytest.raises(Problem, match="not a valid area"):
        parse_geojson_geometry(bowtie)
    assert not parse_geojson_geometry(bowtie, require_valid=False).is_valid
    # and queries against it still answer instead of failing
    inside_right_lobe = parse_geoquery("intersects", "Point", "[0.9, 0.5]", None)
    below_the_crossing = parse_geoquery("intersects", "Point", "[0.5, 0.2]", None)
    assert inside_right_lobe is not None and below_the_crossing is not None
    assert matches(inside_right_lobe, bowtie) is True
    assert matches(below_the_crossing, bowtie) is False
    square = parse_geoquery("within", "Polygon", "[[[0,0],[1,0],[1,1],[0,1],[0,0]]]", None)
    assert square is not None and matches(square, bowtie) is True


def test_geoq_object() -> None:
    q = parse_geoq_object({"georel": "near;maxDistance==10", "geometry": "Point", "coordinates": [1, 2]})
    assert (q.relation, q.max_distance, q.geoproperty) == ("near", 10.0, "location")
    with pytest.raises(Problem, match="geoQ must be a JSON object"):
        parse_geoq_object("near")
    with pytest.raises(Problem, match="geoQ needs georel"):
        parse_geoq_object({})


# -- predicates ----------------------------------------------------------------------------------------------

SQUARE = "[[[0,0],[10,0],[10,10],[0,10],[0,0]]]"


def poly(*ring: list[float]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [list(ring)]}


RELATIONS = [
    # (georel, query geometry, query coordinates, entity geometry, expected)
    ("within", "Polygon", SQUARE, {"type": "Point", "coordinates": [5, 5]}, True),
    ("within", "Polygon", SQUARE, {"type": "Point", "coordinates": [10, 5]}, False),  # boundary is not within
    ("within", "Polygon", SQUARE, {"type": "Point", "coordinates": [11, 5]}, False),
    ("within", "Polygon", SQUARE, {"type": "LineString", "coordinates": [[1, 1], [9, 9]]}, True),
    ("within", "Polygon", SQUARE, {"type": "LineString", "coordinates": [[1, 1], [19, 9]]}, False),
    ("contains", "Point", "[5,5]", poly([0, 0], [10, 0], [10, 10], [0, 10], [0, 0]), True),
    ("contains", "Point", "[50,5]", poly([0, 0], [10, 0], [10, 10], [0, 0]), False),
    ("contains", "Polygon", SQUARE, {"type": "Point", "coordinates": [5, 5]}, False),
    ("intersects", "LineString", "[[-5,5],[5,5]]", poly([0, 0], [10, 0], [10, 10], [0, 10], [0, 0]), True),
    ("intersects", "LineString", "[[-5,5],[-1,5]]", poly([0, 0], [10, 0], [10, 10], [0, 10], [0, 0]), False),
    ("intersects", "Polygon", SQUARE, {"type": "Point", "coordinates": [10, 10]}, True),  # touching counts
    ("equals", "Point", "[1,2]", {"type": "Point", "coordinates": [1, 2]}, True),
    ("equals", "Point", "[1,2]", {"type": "Point", "coordinates": [1, 2.000001]}, False),
    ("equals", "Polygon", SQUARE, poly([10, 10], [0, 10], [0, 0], [10, 0], [10, 10]), True),  # topological
    ("disjoint", "Polygon", SQUARE, {"type": "Point", "coordinates": [20, 20]}, True),
    ("disjoint", "Polygon", SQUARE, {"type": "Point", "coordinates": [10, 10]}, False),
    ("overlaps", "Polygon", SQUARE, poly([5, 5], [15, 5], [15, 15], [5, 15], [5, 5]), True),
    ("overlaps", "Polygon", SQUARE, poly([1, 1], [2, 1], [2, 2], [1, 2], [1, 1]), False),  # inside
    ("overlaps", "Polygon", SQUARE, {"type": "Point", "coordinates": [5, 5]}, False),  # different dimensions
    ("within", "MultiPolygon", "[[[[0,0],[1,0],[1,1],[0,1],[0,0]]],[[[5,5],[6,5],[6,6],[5,6],[5,5]]]]",
     {"type": "MultiPoint", "coordinates": [[0.5, 0.5], [5.5, 5.5]]}, True),
]


@pytest.mark.parametrize(("georel", "geometry", "coordinates", "entity", "expected"), RELATIONS,
                         ids=[f"{i}-{r[0]}" for i, r in enumerate(RELATIONS)])
def test_relations(georel: str, geometry: str, coordinates: str, entity: dict[str, Any],
                   expected: bool) -> None:
    query = parse_geoquery(georel, geometry, coordinates, None)
    assert query is not None
    assert matches(query, entity) is expected
    assert matches(query, shape(entity)) is expected  # shapely geometries work too
    box = bbox_for(query)
    if expected and box is not None:
        minx, miny, maxx, maxy = shape(entity).bounds
        assert minx <= box[2] and maxx >= box[0] and miny <= box[3] and maxy >= box[1]


# -- distances -----------------------------------------------------------------------------------------------

def test_haversine_distance_of_points() -> None:
    # one degree along the equator and along a meridian on the mean-radius sphere
    assert distance_m((0, 0), {"type": "Point", "coordinates": [1, 0]}) == pytest.approx(METRES_PER_DEGREE)
    assert distance_m((0, 0), {"type": "Point", "coordinates": [0, 1]}) == pytest.approx(METRES_PER_DEGREE)
    # one degree of longitude at 60 degrees north is about half as long
    assert distance_m((0, 60), {"type": "Point", "coordinates": [1, 60]}) == pytest.approx(
        METRES_PER_DEGREE * 0.5, rel=1e-4)
    # across the antimeridian it is short, not 359 degrees
    across = distance_m((179.5, 0), {"type": "Point", "coordinates": [-179.5, 0]})
    assert across == pytest.approx(METRES_PER_DEGREE)
    # Paris (Notre-Dame) to London (St Paul's): about 342 km on the sphere
    assert distance_m((2.3499, 48.8530), Point(-0.0984, 51.5138)) == pytest.approx(342_000, rel=0.01)
    assert distance_m(Point(0, 0), {"type": "MultiPoint", "coordinates": [[3, 0], [0, 2]]}) == pytest.approx(
        2 * METRES_PER_DEGREE)


def test_distance_to_lines_and_areas_uses_the_nearest_point() -> None:
    line = {"type": "LineString", "coordinates": [[1, -1], [1, 1]]}
    assert distance_m((0, 0), line) == pytest.approx(METRES_PER_DEGREE, rel=1e-6)
    square = {"type": "Polygon", "coordinates": [[[1, 1], [2, 1], [2, 2], [1, 2], [1, 1]]]}
    assert distance_m((1.5, 1.5), square) == 0.0  # inside
    assert distance_m((1.5, 0.9), square) == pytest.approx(0.1 * METRES_PER_DEGREE, rel=1e-4)
    # 10 km north of an east-west road at 45 degrees latitude
    road = {"type": "LineString", "coordinates": [[9.0, 45.0], [10.0, 45.0]]}
    north = 45.0 + 10_000 / METRES_PER_DEGREE
    assert distance_m((9.5, north), road) == pytest.approx(10_000, rel=1e-3)
    assert distance_m((0, 0), shape({"type": "Point", "coordinates": [0, 0]}).buffer(0).buffer(0)) == math.inf


NEAR = [
    # (georel, entity point, expected) around the reference point (0, 0); one degree = 111.195 km
    ("near;maxDistance==111196", [1, 0], True),
    ("near;maxDistance==111194", [1, 0], False),
    ("near;minDistance==111194", [1, 0], True),
    ("near;minDistance==111196", [1, 0], False),
    ("near;minDistance==100000;maxDistance==120000", [0, 1], True),
    ("near;minDistance==100000;maxDistance==110000", [0, 1], False),
    ("near;maxDistance==0", [0, 0], True),
]


@pytest.mark.parametrize(("georel", "point", "expected"), NEAR, ids=[f"{g}-{p}" for g, p, _ in NEAR])
def test_near(georel: str, point: list[float], expected: bool) -> None:
    query = parse_geoquery(georel, "Point", "[0, 0]", None)
    assert query is not None
    assert matches(query, {"type": "Point", "coordinates": point}) is expected


def test_near_an_area_counts_from_its_edge() -> None:
    query = parse_geoquery("near;maxDistance==12000", "Point", "[0, 0]", None)
    assert query is not None
    close = poly([0.1, -1], [2, -1], [2, 1], [0.1, 1], [0.1, -1])  # west edge ~11.1 km away
    far = poly([0.2, -1], [2, -1], [2, 1], [0.2, 1], [0.2, -1])  # west edge ~22.2 km away
    assert matches(query, close) and not matches(query, far)


# -- index boxes ---------------------------------------------------------------------------------------------

def _query(georel: str, geometry: str, coordinates: str) -> GeoQuery:
    query = parse_geoquery(georel, geometry, coordinates, None)
    assert query is not None
    return query


def test_bbox_for_areas_is_the_query_geometry_bounds() -> None:
    assert bbox_for(_query("within", "Polygon", SQUARE)) == (0, 0, 10, 10)
    assert bbox_for(_query("intersects", "LineString", "[[1,2],[3,-4]]")) == (1, -4, 3, 2)


def test_bbox_for_without_a_bounded_region_is_none() -> None:
    assert bbox_for(_query("disjoint", "Polygon", SQUARE)) is None
    assert bbox_for(_query("near;minDistance==10", "Point", "[0,0]")) is None


@pytest.mark.parametrize("lat", [0.0, 45.0, 60.0, 80.0, -70.0])
def test_near_bbox_is_conservative_and_tight(lat: float) -> None:
    max_distance = 5_000.0
    query = _query(f"near;maxDistance=={max_distance}", "Point", f"[10, {lat}]")
    box = bbox_for(query)
    assert box is not None
    minx, miny, maxx, maxy = box
    # points exactly at the radius in every direction fall inside the box
    for bearing in range(0, 360, 5):
        b = math.radians(bearing)
        r = max_distance / EARTH_RADIUS_M
        p1, l1 = math.radians(lat), math.radians(10)
        p2 = math.asin(math.sin(p1) * math.cos(r) + math.cos(p1) * math.sin(r) * math.cos(b))
        l2 = l1 + math.atan2(math.sin(b) * math.sin(r) * math.cos(p1),
                             math.cos(r) - math.sin(p1) * math.sin(p2))
        x, y = math.degrees(l2), math.degrees(p2)
        assert matches(query, Point(x, y)) or distance_m((10, lat), Point(x, y)) > max_distance * (1 - 1e-9)
        assert minx <= x <= maxx and miny <= y <= maxy
    # and the box is not needlessly large: within 1% of the circle's extent
    assert (maxy - miny) == pytest.approx(2 * max_distance / METRES_PER_DEGREE, rel=0.01)
    assert (maxx - minx) == pytest.approx(2 * max_distance / METRES_PER_DEGREE / math.cos(math.radians(lat)),
                                          rel=0.01)


def test_near_bbox_over_the_antimeridian_or_pole_covers_all_longitudes() -> None:
    wrapped = bbox_for(_query("near;maxDistance==50000", "Point", "[179.9, 0]"))
    assert wrapped is not None and (wrapped[0], wrapped[2]) == (-180.0, 180.0)
    polar = bbox_for(_query("near;maxDistance==50000", "Point", "[0, 89.9]"))
    assert polar is not None and polar[0] == -180.0 and polar[2] == 180.0 and polar[3] == 90.0


def test_absurd_coordinates_are_refused_briefly() -> None:
    with pytest.raises(Problem, match="far deeper than any GeoJSON geometry"):
        parse_geoquery("within", "Polygon", "[" * 100_000 + "]" * 100_000, None)
    huge = {"not": "a position", "padding": [[0.5, 0.5]] * 10_000}
    with pytest.raises(Problem) as caught:
        parse_geoquery("within", "MultiPoint", [[1, 2], huge], None)
    assert caught.value.detail.startswith("coordinates[1] must be a position [longitude, latitude], got {")
    assert len(caught.value.detail) < 300  # the offending value is shown cut short


def test_a_self_intersecting_query_area_is_repaired_not_refused() -> None:
    # The ETSI suite (019_11) queries with a bow-tie polygon and expects an answer, as PostGIS gives one.
    query = parse_geoquery("within", "Polygon", "[[[0,0],[2,2],[2,0],[0,2],[0,0]]]", None)
    assert query is not None and query.geometry.is_valid
    assert matches(query, {"type": "Point", "coordinates": [1.8, 1.0]}) is True
    assert matches(query, {"type": "Point", "coordinates": [1.0, 0.2]}) is False
