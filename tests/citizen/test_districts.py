"""The citizen desk's districts are the demo city's: the base map's two districts (each with its half of the river),
so a request filed anywhere in the demo city lands in the district the map shows there."""

from __future__ import annotations

from shapely.geometry import box, shape

from civicmesh.citizen.catalogue import default_catalogue
from civicmesh.demo import demo_entities
from civicmesh.demo.basemap import city_basemap
from civicmesh.demo.generate import DISTRICT_BBOX


def basemap_districts() -> dict[str, object]:
    return {f["properties"]["name"]["en"]: shape(f["geometry"]) for f in city_basemap()["features"]
            if f["properties"]["kind"] == "district"}


def test_the_desk_districts_are_the_base_map_districts_and_cover_the_demo_city() -> None:
    desk = {d.name_en: d for d in default_catalogue().districts.values()}
    drawn = basemap_districts()
    assert set(desk) == set(drawn) == {"Binjiang District", "Shangcheng District"}
    for name, land in drawn.items():
        assert land.difference(desk[name].polygon).area < 1e-12, name  # the drawn district is all the desk's
    binjiang, shangcheng = desk["Binjiang District"].polygon, desk["Shangcheng District"].polygon
    assert binjiang.intersection(shangcheng).area < 1e-12
    # Together they tile the demo box: the river between them is split, no place is outside both.
    assert abs(binjiang.union(shangcheng).area - box(*DISTRICT_BBOX).area) < 1e-12
    assert desk["Binjiang District"].department == "binjiang_gov"
    assert desk["Shangcheng District"].department == "shangcheng_gov"


def test_every_demo_place_is_in_one_desk_district_the_one_its_address_names() -> None:
    catalogue = default_catalogue()
    river = next(shape(f["geometry"]) for f in city_basemap()["features"] if f["properties"]["kind"] == "river")
    located = 0
    for entity in demo_entities():
        if "location" not in entity:
            continue
        where = shape(entity["location"]["value"])
        lon, lat = where.representative_point().coords[0]
        district = catalogue.district_at(lat, lon)
        assert district is not None, entity["id"]
        named = entity.get("address", {}).get("value", {}).get("district")
        # Over the water (the Xixing Bridge) the mid-line decides; an address there is a postal convention.
        if named and not where.intersects(river):
            assert district.name_en == named, (entity["id"], district.name_en, named)
        located += 1
    assert located > 300
