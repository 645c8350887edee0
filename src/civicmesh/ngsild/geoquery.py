"""Geo-queries (ETSI GS CIM 009 clause 4.10) and GeoJSON geometry validation (clause 4.7, RFC 7946).

Coordinates are WGS 84 longitude/latitude. The topological relations (within, contains, intersects, equals,
disjoint, overlaps) are evaluated on the lon/lat plane, as PostGIS does for `geometry(4326)`. `near` is
measured in metres on a sphere of the mean Earth radius: haversine to points; for lines and polygons the
nearest point is found in a local equirectangular projection centred on the reference point, and its
distance is then taken with haversine.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import numpy as np
import shapely
from shapely.geometry import Point, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import nearest_points

from civicmesh.errors import Problem

GEORELS = ("near", "within", "contains", "intersects", "equals", "disjoint", "overlaps")
GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")
DEFAULT_GEOPROPERTY = "location"
EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius


@dataclass(frozen=True)
class GeoQuery:
    relation: str  # one of GEORELS
    geometry_type: str  # one of GEOMETRY_TYPES
    coordinates: tuple[Any, ...]  # the GeoJSON coordinates as nested tuples (hashable)
    geoproperty: str = DEFAULT_GEOPROPERTY  # as written; the broker expands it with the @context
    min_distance: float | None = None  # metres, `near` only
    max_distance: float | None = None  # metres, `near` only
    geometry: BaseGeometry = field(default=None, compare=False, repr=False)

    @property
    def georel(self) -> str:
        """The `georel` parameter text, e.g. `near;maxDistance==2000`."""
        parts = [self.relation]
        if self.max_distance is not None:
            parts.append(f"maxDistance=={_number_text(self.max_distance)}")
        if self.min_distance is not None:
            parts.append(f"minDistance=={_number_text(self.min_distance)}")
        return ";".join(parts)

    @property
    def geojson(self) -> dict[str, Any]:
        return {"type": self.geometry_type, "coordinates": _as_lists(self.coordinates)}

    def with_geoproperty(self, geoproperty: str) -> GeoQuery:
        """The same query on another (e.g. expanded) GeoProperty name."""
        return GeoQuery(self.relation, self.geometry_type, self.coordinates, geoproperty, self.min_distance,
                        self.max_distance, self.geometry)


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _as_tuples(value: Any) -> Any:
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list) else value


def _as_lists(value: Any) -> Any:
    return [_as_lists(v) for v in value] if isinstance(value, tuple) else value


def _show(value: Any) -> str:
    """JSON of a value for an error message, cut short so a huge body does not become a huge error."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _bad(detail: str) -> Problem:
    return Problem("BadRequestData", detail)


# -- GeoJSON validation --------------------------------------------------------------------------------------


def _position_problem(p: Any, where: str) -> str | None:
    if not isinstance(p, list):
        return f"{where} must be a position [longitude, latitude], got {_show(p)}"
    if len(p) not in (2, 3):
        return f"{where} must have 2 or 3 numbers (longitude, latitude[, altitude]), got {len(p)}"
    for i, c in enumerate(p):
        if isinstance(c, bool) or not isinstance(c, (int, float)):
            return f"{where}[{i}] must be a number, got {_show(c)}"
        if not math.isfinite(c):
            return f"{where}[{i}] must be a finite number, got {c}"
    if not -180 <= p[0] <= 180:
        return f"{where}: longitude {p[0]} is outside -180..180"
    if not -90 <= p[1] <= 90:
        return f"{where}: latitude {p[1]} is outside -90..90"
    return None


def _positions_problem(ps: Any, where: str, minimum: int, what: str) -> str | None:
    if not isinstance(ps, list):
        return f"{where} must be an array of positions for a {what}, got {_show(ps)}"
    if len(ps) < minimum:
        plural = "s" if minimum > 1 else ""
        return f"{where}: a {what} needs at least {minimum} position{plural}, got {len(ps)}"
    for i, p in enumerate(ps):
        if err := _position_problem(p, f"{where}[{i}]"):
            return err
    return None


def _polygon_problem(rings: Any, where: str) -> str | None:
    if not isinstance(rings, list) or not rings:
        return f"{where}: a Polygon needs an array of at least one linear ring, got {_show(rings)}"
    for i, ring in enumerate(rings):
        ring_where = f"{where}[{i}]"
        if err := _positions_problem(ring, ring_where, 4, "linear ring"):
            return err
        if ring[0][:2] != ring[-1][:2]:
            return (f"{ring_where}: the linear ring is not closed (it starts at {ring[0]} and ends at "
                    f"{ring[-1]}; the last position must repeat the first)")
    return None


def _multi_problem(items: Any, where: str, what: str, check: Any) -> str | None:
    if not isinstance(items, list) or not items:
        return f"{where}: a {what} needs an array of at least one member, got {_show(items)}"
    for i, item in enumerate(items):
        if err := check(item, f"{where}[{i}]"):
            return str(err)
    return None


def coordinates_problem(geometry_type: str, coords: Any, where: str = "coordinates") -> str | None:
    """None when `coords` are valid GeoJSON coordinates for `geometry_type`, else what is wrong and where."""
    if geometry_type == "Point":
        return _position_problem(coords, where)
    if geometry_type == "MultiPoint":
        return _positions_problem(coords, where, 1, "MultiPoint")
    if geometry_type == "LineString":
        return _positions_problem(coords, where, 2, "LineString")
    if geometry_type == "MultiLineString":
        return _multi_problem(coords, where, "MultiLineString",
                              lambda c, w: _positions_problem(c, w, 2, "LineString"))
    if geometry_type == "Polygon":
        return _polygon_problem(coords, where)
    if geometry_type == "MultiPolygon":
        return _multi_problem(coords, where, "MultiPolygon", _polygon_problem)
    return f"geometry type {geometry_type!r} is not one of {', '.join(GEOMETRY_TYPES)}"


def _build(geometry_type: str, coords: Any, where: str, require_valid: bool) -> BaseGeometry:
    if err := coordinates_problem(geometry_type, coords, where):
        raise _bad(err)
    geom = shape({"type": geometry_type, "coordinates": coords})
    if require_valid and geometry_type in ("Polygon", "MultiPolygon") and not geom.is_valid:
        # Self-intersecting or inside-out rings make the spatial predicates undefined.
        raise _bad(f"{where}: the {geometry_type} is not a valid area: {shapely.is_valid_reason(geom)}")
    return geom


def parse_geojson_geometry(obj: Any, *, require_valid: bool = True, where: str = "geometry") -> BaseGeometry:
    """Validate a GeoJSON geometry object (e.g. a GeoProperty value) and return it as a shapely geometry.

    Raises Problem(BadRequestData) saying what is wrong and where (`geometry.coordinates[0][3]: ...`)."""
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except (ValueError, RecursionError) as exc:
            raise _bad(f"{where} is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise _bad(f"{where} must be a GeoJSON geometry object with 'type' and 'coordinates', "
                   f"got {type(obj).__name__}")
    kind = obj.get("type")
    if kind not in GEOMETRY_TYPES:
        raise _bad(f"{where}.type {_show(kind)} is not a supported GeoJSON geometry type "
                   f"(one of {', '.join(GEOMETRY_TYPES)})")
    if "coordinates" not in obj:
        raise _bad(f"{where}: the {kind} has no 'coordinates' member")
    return _build(kind, obj["coordinates"], f"{where}.coordinates", require_valid)


# -- query parameters ----------------------------------------------------------------------------------------


def _parse_distance(name: str, text: str, georel: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise _bad(f"georel {georel!r}: {name} must be a non-negative number of metres, got {text!r}")
    return value


def _parse_georel(georel: str) -> tuple[str, float | None, float | None]:
    relation, *params = [p.strip() for p in georel.split(";")]
    if relation not in GEORELS:
        raise _bad(f"georel {georel!r}: unknown relation {relation!r}; expected one of {', '.join(GEORELS)}")
    if relation != "near":
        if params:
            raise _bad(f"georel {georel!r}: the relation {relation!r} takes no parameters "
                       "(only near takes maxDistance/minDistance)")
        return relation, None, None
    found: dict[str, float] = {}
    for param in params:
        name, sep, value = param.partition("==")
        if not sep or name not in ("maxDistance", "minDistance"):
            raise _bad(f"georel {georel!r}: expected maxDistance==<metres> or minDistance==<metres> after "
                       f"'near;', got {param!r}")
        if name in found:
            raise _bad(f"georel {georel!r}: {name} is given twice")
        found[name] = _parse_distance(name, value, georel)
    if not found:
        raise _bad(f"georel {georel!r}: near needs a distance, e.g. near;maxDistance==2000 or "
                   "near;minDistance==10")
    low, high = found.get("minDistance"), found.get("maxDistance")
    if low is not None and high is not None and low > high:
        raise _bad(f"georel {georel!r}: minDistance {_number_text(low)} is greater than maxDistance "
                   f"{_number_text(high)}, so nothing can match")
    return relation, low, high


def _parse_coordinates(coordinates: str | list[Any]) -> Any:
    if isinstance(coordinates, list):
        return coordinates
    if not isinstance(coordinates, str):
        raise _bad(f"coordinates must be a JSON array, got {type(coordinates).__name__}")
    text = coordinates.strip()
    if "%" in text:  # still percent-encoded (double encoding by some clients)
        text = unquote(text)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise _bad(f"coordinates {_show(coordinates)} is not a JSON array: {exc}") from exc
    except RecursionError as exc:
        raise _bad("coordinates nest arrays far deeper than any GeoJSON geometry") from exc
    if not isinstance(value, list):
        raise _bad(f"coordinates {_show(coordinates)} must be a JSON array, got {type(value).__name__}")
    return value


# Vertices one query geometry may have (Settings.max_geometry_vertices): testing a 15,000-vertex polygon against
# the demo city took 9 s while /health waited (issue 13, finding 9); a district boundary needs a few hundred.
MAX_VERTICES = 1000


def _vertices(coords: Any) -> int:
    """Positions in nested GeoJSON coordinates, counted without recursion (the nesting is the caller's)."""
    count, stack = 0, [coords]
    while stack:
        item = stack.pop()
        if isinstance(item, list | tuple):
            if item and isinstance(item[0], int | float) and not isinstance(item[0], bool):
                count += 1
            else:
                stack.extend(item)
    return count


def parse_geoquery(georel: str | None, geometry: str | None, coordinates: str | list[Any] | None,
                   geoproperty: str | None = None, *, max_vertices: int = MAX_VERTICES) -> GeoQuery | None:
    """The geo-query of a request, or None when it has none. Raises Problem(BadRequestData) for any
    incomplete or invalid combination, naming the parameter and the problem."""
    given = {"georel": georel, "geometry": geometry, "coordinates": coordinates}
    present = [k for k, v in given.items() if v not in (None, "")]
    if not present:
        if geoproperty not in (None, ""):
            raise _bad("geoproperty is given but georel, geometry and coordinates are missing")
        return None
    missing = [k for k in given if k not in present]
    if missing:
        raise _bad(f"a geo-query needs georel, geometry and coordinates together; {' and '.join(missing)} "
                   f"{'is' if len(missing) == 1 else 'are'} missing")
    assert georel is not None and geometry is not None and coordinates is not None
    if not isinstance(georel, str):
        raise _bad(f"georel must be a string, got {type(georel).__name__}")
    relation, low, high = _parse_georel(georel.strip())
    if geometry not in GEOMETRY_TYPES:
        raise _bad(f"geometry {geometry!r} is not one of {', '.join(GEOMETRY_TYPES)}")
    if relation == "near" and geometry != "Point":
        raise _bad(f"georel near measures distance from a Point, but geometry is {geometry!r}")
    coords = _parse_coordinates(coordinates)
    if (vertices := _vertices(coords)) > max_vertices:
        raise _bad(f"the {geometry} of the geo-query has {vertices:,} vertices; at most {max_vertices:,} are "
                   "allowed (simplify the area)")
    # A self-intersecting query area is repaired rather than refused: the ETSI suite queries with one, and
    # PostGIS answers such queries too.
    geom = _build(geometry, coords, "coordinates", require_valid=False)
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    prop = DEFAULT_GEOPROPERTY if geoproperty in (None, "") else geoproperty
    if not isinstance(prop, str) or any(c.isspace() for c in prop) or any(c in prop for c in ";|,()[]"):
        raise _bad(f"geoproperty {prop!r} is not an attribute name")
    shapely.prepare(geom)  # one query geometry is tested against many stored ones
    return GeoQuery(relation, geometry, _as_tuples(coords), prop, low, high, geom)


def parse_geoq_object(obj: Any) -> GeoQuery:
    """The `geoQ` member of a Subscription or a Query body: {georel, geometry, coordinates, geoproperty?}."""
    if not isinstance(obj, dict):
        raise _bad("geoQ must be a JSON object with georel, geometry and coordinates, "
                   f"got {type(obj).__name__}")
    query = parse_geoquery(obj.get("georel"), obj.get("geometry"), obj.get("coordinates"),
                           obj.get("geoproperty"))
    if query is None:
        raise _bad("geoQ needs georel, geometry and coordinates")
    return query


# -- evaluation ----------------------------------------------------------------------------------------------


def _haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def _as_geometry(geom: BaseGeometry | dict[str, Any]) -> BaseGeometry:
    return parse_geojson_geometry(geom, require_valid=False) if isinstance(geom, dict) else geom


def distance_m(point_lonlat: tuple[float, float] | Point, geom: BaseGeometry | dict[str, Any]) -> float:
    """Metres from a (lon, lat) point to the nearest point of `geom` (0 inside an area; inf if empty)."""
    lon0, lat0 = (point_lonlat.x, point_lonlat.y) if isinstance(point_lonlat, Point) else point_lonlat
    geom = _as_geometry(geom)
    if geom.is_empty:
        return math.inf
    if geom.geom_type in ("Point", "MultiPoint"):
        points = shapely.get_coordinates(geom)
        return min(_haversine_m(lon0, lat0, float(x), float(y)) for x, y in points)
    scale_x = EARTH_RADIUS_M * math.radians(1) * max(math.cos(math.radians(lat0)), 1e-12)
    scale_y = EARTH_RADIUS_M * math.radians(1)

    def to_local(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(((xy[:, 0] - lon0) * scale_x, (xy[:, 1] - lat0) * scale_y))

    local = shapely.transform(geom, to_local)
    origin = Point(0.0, 0.0)
    if local.intersects(origin):
        return 0.0
    nearest = nearest_points(local, origin)[0]
    return _haversine_m(lon0, lat0, lon0 + nearest.x / scale_x, lat0 + nearest.y / scale_y)


def matches(query: GeoQuery, geom: BaseGeometry | dict[str, Any]) -> bool:
    """Whether an entity's geometry satisfies the geo-query (the entity geometry is the subject:
    `within` = the entity lies within the query geometry, `contains` = the entity contains it)."""
    geom = _as_geometry(geom)
    if query.relation == "near":
        ref = query.geometry
        d = distance_m((ref.x, ref.y), geom)
        if query.max_distance is not None and d > query.max_distance:
            return False
        return query.min_distance is None or d >= query.min_distance
    if geom.geom_type in ("Polygon", "MultiPolygon") and not geom.is_valid:
        # A stored self-intersecting area (writes may be lenient) gives GEOS undefined answers: a bowtie
        # inside a square would not be "within" it. Repair it to the area it encloses.
        geom = shapely.make_valid(geom)
    return _relate(query.relation, geom, query.geometry)


def _relate(relation: str, subject: BaseGeometry, reference: BaseGeometry) -> bool:
    if relation == "within":
        return bool(subject.within(reference))
    if relation == "contains":
        return bool(subject.contains(reference))
    if relation == "intersects":
        return bool(subject.intersects(reference))
    if relation == "equals":
        return bool(subject.equals(reference))
    if relation == "disjoint":
        return bool(subject.disjoint(reference))
    return bool(subject.overlaps(reference))


def bbox_for(query: GeoQuery) -> tuple[float, float, float, float] | None:
    """A (min lon, min lat, max lon, max lat) box that every matching geometry intersects, for index
    pre-filtering; None when no box can be given (disjoint, near with only minDistance)."""
    if query.relation == "disjoint":
        return None
    if query.relation != "near":
        minx, miny, maxx, maxy = query.geometry.bounds
        return (minx, miny, maxx, maxy)
    if query.max_distance is None:
        return None
    lon0, lat0 = query.geometry.x, query.geometry.y
    # Angular radius of the search cap, widened slightly so rounding never drops a boundary match.
    radius = query.max_distance / EARTH_RADIUS_M * (1 + 1e-9) + 1e-12
    dlat = math.degrees(radius)
    miny, maxy = lat0 - dlat, lat0 + dlat
    if radius >= math.pi / 2 or miny <= -90 or maxy >= 90:
        return (-180.0, max(miny, -90.0), 180.0, min(maxy, 90.0))
    ratio = math.sin(radius) / math.cos(math.radians(lat0))
    if ratio >= 1:
        return (-180.0, miny, 180.0, maxy)
    dlon = math.degrees(math.asin(ratio)) * (1 + 1e-9) + 1e-12
    if lon0 - dlon < -180 or lon0 + dlon > 180:
        # The cap crosses the antimeridian; one box cannot express the wrap, so take every longitude.
        return (-180.0, miny, 180.0, maxy)
    return (lon0 - dlon, miny, lon0 + dlon, maxy)
