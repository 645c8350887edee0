"""GeoJSON geometry checks shared by writes and queries."""

from __future__ import annotations

from typing import Any

from civicmesh.ngsild.model import GEOMETRY_TYPES


def geometry_problem(value: Any) -> str | None:
    """None when `value` is a valid GeoJSON geometry, else what is wrong with it (the checks geo-queries use)."""
    from civicmesh.ngsild.geoquery import coordinates_problem

    if not isinstance(value, dict):
        return "a geometry must be a JSON object with type and coordinates"
    kind = value.get("type")
    if kind not in GEOMETRY_TYPES:
        return f"geometry type {kind!r} is not one of {', '.join(sorted(GEOMETRY_TYPES))}"
    if value.get("coordinates") is None:
        return f"{kind} has no coordinates"
    return coordinates_problem(kind, value["coordinates"])


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
