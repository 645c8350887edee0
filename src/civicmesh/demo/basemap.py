"""The demo city's base map as GeoJSON: the river, the two districts either side of it and the main roads.

The dashboard draws the city from this instead of internet tiles. It is derived from the same constants the entity
generator uses (the road polylines, the district split at the river, the demo bounding box), so every entity lands
where the map says it should: only things on the Xixing Bridge stand over the water (a test checks this).

The river banks are hand-drawn approximations of the Qiantang River between Binjiang and Qianjiang New City.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from civicmesh.demo.generate import BRIDGE_ROAD, DISTRICT_BBOX, ROADS

# West to east. The south bank bends north around the Olympic stadium on the Binjiang shore.
SOUTH_BANK = [(120.140, 30.2105), (120.160, 30.2150), (120.175, 30.2180), (120.188, 30.2212), (120.202, 30.2236),
              (120.216, 30.2262), (120.2215, 30.2280), (120.2245, 30.2342), (120.232, 30.2356), (120.245, 30.2375),
              (120.260, 30.2400)]
NORTH_BANK = [(120.140, 30.2290), (120.160, 30.2330), (120.175, 30.2356), (120.190, 30.2370), (120.200, 30.2366),
              (120.210, 30.2369), (120.220, 30.2380), (120.230, 30.2395), (120.245, 30.2420), (120.260, 30.2450)]

DISTRICTS = (
    ("binjiang", "滨江区", "Binjiang District"),
    ("shangcheng", "上城区", "Shangcheng District"),
)


def _ring(points: list[tuple[float, float]]) -> list[list[float]]:
    return [list(p) for p in points] + [list(points[0])]


def river() -> list[list[float]]:
    """The river polygon's outer ring: along the south bank eastward, back along the north bank."""
    return _ring(SOUTH_BANK + list(reversed(NORTH_BANK)))


@lru_cache(maxsize=1)
def city_basemap() -> dict[str, Any]:
    """A GeoJSON FeatureCollection; each feature's `kind` is district, river or road, names in zh and en."""
    west, south, east, north = DISTRICT_BBOX
    features: list[dict[str, Any]] = []
    south_ring = _ring([(west, south), (east, south)] + [(east, SOUTH_BANK[-1][1])] + list(reversed(SOUTH_BANK))
                       + [(west, SOUTH_BANK[0][1])])
    north_ring = _ring([(west, NORTH_BANK[0][1])] + NORTH_BANK + [(east, NORTH_BANK[-1][1]), (east, north),
                                                                  (west, north)])
    for (slug, zh, en), ring in zip(DISTRICTS, (south_ring, north_ring), strict=True):
        features.append({"type": "Feature", "id": f"district:{slug}",
                         "properties": {"kind": "district", "name": {"zh": zh, "en": en}},
                         "geometry": {"type": "Polygon", "coordinates": [ring]}})
    features.append({"type": "Feature", "id": "river:qiantang",
                     "properties": {"kind": "river", "name": {"zh": "钱塘江", "en": "Qiantang River"}},
                     "geometry": {"type": "Polygon", "coordinates": [river()]}})
    for road in ROADS:
        features.append({"type": "Feature", "id": f"road:{road['slug']}",
                         "properties": {"kind": "road", "class": road["class"], "lanes": road["lanes"],
                                        "bridge": road["slug"] == BRIDGE_ROAD,
                                        "name": {"zh": road["zh"], "en": road["en"]}},
                         "geometry": {"type": "LineString", "coordinates": [list(c) for c in road["coords"]]}})
    return {"type": "FeatureCollection", "bbox": list(DISTRICT_BBOX), "features": features}
