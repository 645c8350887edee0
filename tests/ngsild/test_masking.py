"""Filters judged again for a caller who may not read every attribute (ngsild/masking.py), without a server."""

from __future__ import annotations

from typing import Any

from civicmesh.ngsild import geoquery, qlang
from civicmesh.ngsild.masking import matches_seen, plan, relaxed
from civicmesh.store.base import EntityQuery

ENTITY: dict[str, Any] = {"id": "urn:ngsi-ld:Flow:1", "type": ["Flow"], "attrs": {
    "speed": [{"type": "Property", "value": 40}], "occupancy": [{"type": "Property", "value": 0.42}],
    "location": [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.2, 30.2]}}]}}


def seen(visible: set[str] | None, **query: Any) -> bool:
    if isinstance(query.get("q"), str):
        query["q"] = qlang.parse_q(query["q"])
    return matches_seen(plan(EntityQuery(**query)), ENTITY, visible)


def test_terms_on_masked_attributes_are_false_and_not_exists_true() -> None:
    speed_only = {"speed", "location"}
    assert seen(speed_only, q="speed>30") and not seen(speed_only, q="occupancy>0.4")
    assert not seen(speed_only, q="occupancy!=1") and seen(speed_only, q="!occupancy")
    assert seen(speed_only, q="occupancy>0.4|speed>30") and not seen(speed_only, q="occupancy>0.4;speed>30")
    assert seen(None, q="occupancy>0.4") and seen({"speed", "location", "occupancy"}, q="occupancy>0.4")
    assert not seen(speed_only, attrs_any=["occupancy"]) and seen(speed_only, attrs_any=["occupancy", "speed"])


def test_a_geo_query_on_a_masked_geoproperty_matches_nothing() -> None:
    geo = geoquery.parse_geoquery("near;maxDistance==100", "Point", "[120.2,30.2]", "location")
    assert seen({"speed", "location"}, geo=geo) and not seen({"speed"}, geo=geo)


def test_the_store_query_drops_only_not_exists_terms() -> None:
    q = qlang.parse_q("speed>30;!occupancy")
    assert relaxed(q) == qlang.parse_q("speed>30") and relaxed(qlang.parse_q("!a|b")) is None
    unchanged = qlang.parse_q("speed>30|occupancy<1")
    assert relaxed(unchanged) is unchanged
    flt = plan(EntityQuery(q=q))
    assert flt.store_query.q == qlang.parse_q("speed>30") and flt.recheck_all
    # With the store's q relaxed, an entity the caller sees whole is judged again too.
    assert not matches_seen(flt, ENTITY, None) and matches_seen(flt, ENTITY, {"speed"})
