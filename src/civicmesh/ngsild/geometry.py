"""GeoJSON geometry checks shared by writes and queries."""

from __future__ import annotations

from typing import Any

from civicmesh.ngsild.model import GEOMETRY_TYPES


def _position(p: Any) -> str | None:
    if not isinstance(p, list) or len(p) < 2 or len(p) > 3:
        return f"position {p!r} must be [longitude, latitude] (optionally with altitude)"
    if not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in p):
        return f"position {p!r} must contain numbers"
    if not -180 <= p[0] <= 180 or not -90 <= p[1] <= 90:
        return f"position {p!r} is outside longitude -180..180 / latitude -90..90"
    return None


def _positions(ps: Any, minimum: int, what: str) -> str | None:
    if not isinstance(ps, list) or len(ps) < minimum:
        return f"a {what} needs at least {minimum} positions"
    for p in ps:
        if err := _position(p):
            return err
    return None


def _ring(ring: Any) -> str | None:
    if err := _positions(ring, 4, "polygon ring"):
        return err
    if ring[0][:2] != ring[-1][:2]:
        return "a polygon ring must end where it starts"
    return None


def _polygon(rings: Any) -> str | None:
    if not isinstance(rings, list) or not rings:
        return "a Polygon needs at least one ring"
    for ring in rings:
        if err := _ring(ring):
            return err
    return None


def geometry_problem(value: Any) -> str | None:
    """None when `value` is a valid GeoJSON geometry, else what is wrong with it."""
    if not isinstance(value, dict):
        return "a geometry must be a JSON object with type and coordinates"
    kind = value.get("type")
    if kind not in GEOMETRY_TYPES:
        return f"geometry type {kind!r} is not one of {', '.join(sorted(GEOMETRY_TYPES))}"
    coords = value.get("coordinates")
    if coords is None:
        return f"{kind} has no coordinates"
    if kind == "Point":
        return _position(coords)
    if kind == "MultiPoint":
        return _positions(coords, 1, "MultiPoint")
    if kind == "LineString":
        return _positions(coords, 2, "LineString")
    if kind == "MultiLineString":
        if not isinstance(coords, list) or not coords:
            return "a MultiLineString needs at least one line"
        for line in coords:
            if err := _positions(line, 2, "LineString"):
                return err
        return None
    if kind == "Polygon":
        return _polygon(coords)
    if not isinstance(coords, list) or not coords:
        return "a MultiPolygon needs at least one polygon"
    for poly in coords:
        if err := _polygon(poly):
            return err
    return None


def bbox(value: dict[str, Any]) -> tuple[float, float, float, float]:
    """(min lon, min lat, max lon, max lat) of a valid geometry."""
    if value["type"] == "Point":
        x, y = value["coordinates"][:2]
        return x, y, x, y
    xs: list[float] = []
    ys: list[float] = []

    def walk(c: Any) -> None:
        if c and isinstance(c[0], (int, float)):
            xs.append(float(c[0]))
            ys.append(float(c[1]))
        else:
            for item in c:
                walk(item)

    walk(value["coordinates"])
    return min(xs), min(ys), max(xs), max(ys)
