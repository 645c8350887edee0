"""Exact geo predicates for the SQLite engine (PostGIS evaluates them in SQL on PostgreSQL)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import shapely


@lru_cache(maxsize=100_000)
def _shape(geojson: str) -> Any:
    return shapely.from_geojson(geojson)


def bbox_of(query: Any) -> tuple[float, float, float, float] | None:
    from civicmesh.ngsild.geoquery import bbox_for

    return bbox_for(query)


def geo_predicate(query: Any, geojson: str) -> bool:
    from civicmesh.ngsild.geoquery import matches

    return bool(matches(query, _shape(geojson)))
