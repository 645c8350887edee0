"""The base map agrees with the demo city: entities sit on land in the district their address names, and only
what stands on the Xixing Bridge is over the river."""

from __future__ import annotations

from shapely.geometry import shape

from civicmesh.demo import demo_entities
from civicmesh.demo.basemap import city_basemap
from civicmesh.demo.generate import DISTRICT_BBOX, ROADS

M_PER_DEG = 111_320


def features(kind: str) -> dict[str, object]:
    return {f["id"]: shape(f["geometry"]) for f in city_basemap()["features"] if f["properties"]["kind"] == kind}


def test_the_base_map_is_valid_geojson_inside_the_demo_box() -> None:
    doc = city_basemap()
    assert doc["type"] == "FeatureCollection" and doc["bbox"] == list(DISTRICT_BBOX)
    west, south, east, north = DISTRICT_BBOX
    for feature in doc["features"]:
        geometry = shape(feature["geometry"])
        assert geometry.is_valid, feature["id"]
        x0, y0, x1, y1 = geometry.bounds
        assert west <= x0 and x1 <= east and south <= y0 and y1 <= north, feature["id"]
        assert feature["properties"]["name"]["zh"] and feature["properties"]["name"]["en"]
    assert set(features("road")) == {f"road:{r['slug']}" for r in ROADS}
    districts, river = features("district"), features("river")["river:qiantang"]
    # The districts and the river tile the box without overlapping.
    total = sum(d.area for d in districts.values()) + river.area
    assert abs(total - (east - west) * (north - south)) < 1e-9
    for district in districts.values():
        assert district.intersection(river).area < 1e-12


def test_entities_are_on_land_in_their_district_except_on_the_bridge() -> None:
    districts, river = features("district"), features("river")["river:qiantang"]
    bridge = features("road")["road:xixing-bridge"]
    names = {"district:binjiang": "Binjiang District", "district:shangcheng": "Shangcheng District"}
    over_water, checked = [], 0
    for entity in demo_entities():
        if "location" not in entity:
            continue
        where = shape(entity["location"]["value"])
        if where.intersects(river):
            # On the bridge: its road, lights, traffic detectors, sensors and the station mounted on it.
            if where.distance(bridge) * M_PER_DEG > 60:
                over_water.append(entity["id"])
            continue
        address = entity.get("address", {}).get("value", {})
        if "district" in address:
            inside = [names[k] for k, d in districts.items() if d.covers(where.representative_point())]
            assert inside == [address["district"]], (entity["id"], inside, address["district"])
            checked += 1
    assert over_water == []
    assert checked > 50  # every entity with an address (73 in the demo)
