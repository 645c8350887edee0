"""The demo city file: valid normalized NGSI-LD, inside Hangzhou, self-consistent, and reproducible."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from datetime import datetime
from importlib import resources
from typing import Any

import pytest
from shapely.geometry import LineString, Point, Polygon, shape

from civicmesh.demo import demo_context, demo_context_text, demo_entities
from civicmesh.demo.generate import china_aqi, iaqi, main, render_all

# Hangzhou municipality (all districts and counties) and the Binjiang / Qianjiang New City demo area.
HANGZHOU = (118.34, 29.18, 120.72, 30.57)
DEMO_AREA = (120.14, 30.17, 120.26, 30.27)

EXPECTED_COUNTS = {
    "Streetlight": 120,
    "TrafficFlowObserved": 68,
    "Building": 38,
    "RoadSegment": 34,
    "Device": 34,
    "OffStreetParking": 14,
    "EVChargingStation": 12,
    "ACMeasurement": 12,
    "DeviceMeasurement": 12,
    "Road": 10,
    "StreetlightGroup": 10,
    "AirQualityObserved": 10,
    "SolarEnergy": 8,
    "WeatherObserved": 3,
    "StorageBatteryDevice": 2,
    "StorageBatteryMeasurement": 2,
    "Bridge": 1,
}

# Term names of the NGSI-LD core context (v1.8/v1.9). The broker has it built in and it is @protected,
# so the demo context must not redefine any of them; attributes named like them need no entry.
CORE_TERMS = frozenset(
    """
id type Attribute AttributeList ContextSourceIdentity ContextSourceNotification ContextSourceRegistration Date
DateTime EntityMap EntityType EntityTypeInfo EntityTypeList ExecutionResultDetails Feature FeatureCollection
GeoProperty GeometryCollection JsonProperty LanguageProperty LineString ListProperty ListRelationship
MultiLineString MultiPoint MultiPolygon Notification Point Polygon Property Relationship Snapshot
SnapshotNotification Subscription TemporalProperty Time VocabProperty accept aggrParams aggrMethods
aggrPeriodDuration attributeCount attributeDetails attributeList attributeName attributeNames attributeTypes
attributes attrs avg bbox cacheDuration collation containedBy contextSourceAlias contextSourceExtras
contextSourceInfo contextSourceTimeAt contextSourceUptime cooldown coordinates createdAt csf data dataset
datasetId deletedAt description detail distinctCount endAt endTimeAt endpoint entities entity entityCount
entityId entityList entityMap entityMapLifetime error errors expandValues expiresAt features format geoQ
geometry geoproperty georel idPattern information instanceId isActive join joinLevel json jsonKeys
jsonldContext jsons key lang languageMap languageMaps langString lastFailure lastN lastNotification
lastSuccess lastUsedAt linkedMaps localOnly location management managementInterval max min mode modifiedAt
ngsildproof ngsildConformance notification notificationTrigger notifiedAt notifierInfo notUpdated object
objectList objectLists objects objectType observationInterval observationSpace observedAt omit operations
operationSpace orderBy ordering pick previousJson previousLanguageMap previousObject previousObjectList
previousValue previousValueList previousVocab problemDetails properties propertyNames q reason receiverInfo
refreshRate registrationId registrationName relationshipNames resultStatus scope scopeQ showChanges
snapshotId snapshotLifetime snapshotPriority snapshotQueries snapshotQueriesDetails snapshotStatus
snapshotTemporalQueries snapshotTemporalQueriesDetails splitEntities startAt status stddev subscriptionId
subscriptionName success sum sumsq sysAttrs temporalQ tenant throttling timeAt timeInterval timeout
timeproperty timerel timesFailed timesSent title totalCount triggerReason typeList typeName typeNames
unchanged unitCode updated uri value valueList valueLists values valueType vocab vocabs watchedAttributes
""".split()
)

ATTRIBUTE_TYPES = {"Property", "Relationship", "GeoProperty", "LanguageProperty"}
META_KEYS = {"type", "value", "object", "languageMap", "datasetId", "observedAt", "unitCode"}
ID_RE = re.compile(r"^urn:ngsi-ld:([A-Za-z]+):hz-[a-z0-9-]+$")
UTC_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")

# Which entity type each relationship must point at.
RELATIONSHIP_TARGETS = {
    "refRoad": {"Road"},
    "refRoadSegment": {"RoadSegment"},
    "refStreetlightGroup": {"StreetlightGroup"},
    "refDevice": {"Device"},
    "refWeatherObserved": {"WeatherObserved"},
    "refBuilding": {"Building"},
    "refStorageBatteryDevice": {"StorageBatteryDevice"},
    "controlledAsset": {"Building", "Bridge"},
}


@pytest.fixture(scope="module")
def entities() -> list[dict[str, Any]]:
    return demo_entities()


@pytest.fixture(scope="module")
def by_id(entities: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in entities}


def instances(attr: Any) -> list[dict[str, Any]]:
    return attr if isinstance(attr, list) else [attr]


def attributes(entity: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (name, inst)
        for name, attr in entity.items()
        if name not in ("id", "type")
        for inst in instances(attr)
    ]


def geometries(entities: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (e["id"], inst["value"])
        for e in entities
        for _, inst in attributes(e)
        if inst["type"] == "GeoProperty"
    ]


def positions(geometry: dict[str, Any]) -> list[list[float]]:
    def walk(node: Any) -> list[list[float]]:
        if isinstance(node[0], (int, float)):
            return [node]
        return [p for child in node for p in walk(child)]

    return walk(geometry["coordinates"])


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    dx = (a[0] - b[0]) * 111_320 * math.cos(math.radians(a[1]))
    return math.hypot(dx, (a[1] - b[1]) * 111_320)


def test_size_and_count_per_type(entities: list[dict[str, Any]]) -> None:
    size = len(resources.files("civicmesh.demo").joinpath("city.jsonld").read_bytes())
    assert size < 1_500_000, f"city.jsonld is {size:,} bytes; the budget is 1.5 MB"
    assert 300 <= len(entities) <= 500
    assert dict(Counter(e["type"] for e in entities)) == EXPECTED_COUNTS


def test_ids_are_unique_urns_naming_their_type(entities: list[dict[str, Any]]) -> None:
    ids = [e["id"] for e in entities]
    assert len(ids) == len(set(ids)), "duplicate entity ids"
    for entity in entities:
        match = ID_RE.match(entity["id"])
        assert match, f"{entity['id']} is not urn:ngsi-ld:<Type>:hz-<local>"
        assert match.group(1) == entity["type"], f"{entity['id']} has type {entity['type']}"
        assert "@context" not in entity, f"{entity['id']} carries its own @context"


def test_every_attribute_is_normalized(entities: list[dict[str, Any]]) -> None:
    for entity in entities:
        for name, attr in entity.items():
            if name in ("id", "type"):
                continue
            insts = instances(attr)
            where = f"{entity['id']} {name}"
            assert insts, f"{where}: empty multi-attribute"
            defaults = [i for i in insts if "datasetId" not in i]
            assert len(defaults) <= 1, f"{where}: more than one instance without datasetId"
            dataset_ids = [i["datasetId"] for i in insts if "datasetId" in i]
            assert len(dataset_ids) == len(set(dataset_ids)), f"{where}: repeated datasetId"
            assert all(d.startswith("urn:") for d in dataset_ids), f"{where}: datasetId is not a URI"
            for inst in insts:
                kind = inst.get("type")
                assert kind in ATTRIBUTE_TYPES, f"{where}: attribute type {kind!r}"
                if kind == "Relationship":
                    assert isinstance(inst["object"], str) and inst["object"].startswith("urn:ngsi-ld:")
                    assert "value" not in inst
                elif kind == "LanguageProperty":
                    assert set(inst["languageMap"]) == {"zh", "en"}, f"{where}: needs zh and en"
                    assert re.search(r"[\u4e00-\u9fff]", inst["languageMap"]["zh"]), (
                        f"{where}: zh not Chinese"
                    )
                else:
                    assert "value" in inst and "object" not in inst, f"{where}: no value"
                    assert inst["value"] is not None
                if "observedAt" in inst:
                    assert UTC_RE.match(inst["observedAt"]), f"{where}: observedAt {inst['observedAt']}"
                    datetime.fromisoformat(inst["observedAt"].replace("Z", "+00:00"))
                if "unitCode" in inst:
                    assert re.fullmatch(r"[A-Z0-9]{2,3}", inst["unitCode"]), f"{where}: unitCode"
                for sub in set(inst) - META_KEYS:
                    assert isinstance(inst[sub], dict) and inst[sub].get("type") in ATTRIBUTE_TYPES, (
                        f"{where}: sub-attribute {sub} is not normalized"
                    )


def test_measurements_carry_units_and_observation_times(entities: list[dict[str, Any]]) -> None:
    pollutants = {
        "pm25": "GQ",
        "pm10": "GQ",
        "no2": "GQ",
        "o3": "GQ",
        "so2": "GQ",
        "co": "GP",
        "temperature": "CEL",
    }
    for e in (e for e in entities if e["type"] == "AirQualityObserved"):
        for name, unit in pollutants.items():
            for inst in instances(e[name]):
                assert inst["unitCode"] == unit and "observedAt" in inst, f"{e['id']} {name}"
        assert e["relativeHumidity"]["unitCode"] and 0 < e["relativeHumidity"]["value"] < 1
    two_source = [e for e in entities if isinstance(e.get("pm25"), list)]
    assert len(two_source) >= 2, "the demo promises pm25 from two sources at some stations"
    for e in (e for e in entities if e["type"] == "TrafficFlowObserved"):
        assert e["averageVehicleSpeed"]["unitCode"] == "KMH" and "observedAt" in e["intensity"]


def test_geometries_are_valid_geojson_inside_hangzhou(entities: list[dict[str, Any]]) -> None:
    seen_types = set()
    for entity_id, geometry in geometries(entities):
        kind = geometry["type"]
        seen_types.add(kind)
        for lon, lat in positions(geometry):
            assert HANGZHOU[0] <= lon <= HANGZHOU[2] and HANGZHOU[1] <= lat <= HANGZHOU[3], entity_id
            assert DEMO_AREA[0] <= lon <= DEMO_AREA[2] and DEMO_AREA[1] <= lat <= DEMO_AREA[3], entity_id
        if kind == "LineString":
            assert len(geometry["coordinates"]) >= 2
        if kind == "Polygon":
            ring = geometry["coordinates"][0]
            assert len(ring) >= 4 and ring[0] == ring[-1], f"{entity_id}: ring not closed"
            polygon = Polygon(ring)
            assert polygon.is_valid and polygon.exterior.is_ccw, f"{entity_id}: invalid or clockwise ring"
        assert shape(geometry).is_valid, entity_id
    assert {"Point", "LineString", "Polygon", "MultiPoint", "MultiLineString"} <= seen_types


def test_relationships_point_at_entities_in_the_file(
    entities: list[dict[str, Any]], by_id: dict[str, dict[str, Any]]
) -> None:
    count = 0
    for entity in entities:
        for name, inst in attributes(entity):
            if inst["type"] != "Relationship":
                continue
            count += 1
            target = by_id.get(inst["object"])
            assert target is not None, f"{entity['id']} {name} -> {inst['object']} is not in the file"
            assert target["type"] in RELATIONSHIP_TARGETS[name], f"{entity['id']} {name} -> {target['type']}"
    assert count > 250


def test_context_covers_exactly_the_terms_used(entities: list[dict[str, Any]]) -> None:
    context = demo_context()["@context"]
    assert json.loads(demo_context_text()) == demo_context()
    used: set[str] = set()
    for entity in entities:
        used.add(entity["type"])
        for name, inst in attributes(entity):
            used.add(name)
            used.update(set(inst) - META_KEYS)
            value = inst.get("value")
            if inst["type"] == "Property" and isinstance(value, dict) and "coordinates" not in value:
                used.update(value)  # JSON-LD expands the keys of object values as well
    missing = sorted(used - CORE_TERMS - context.keys())
    assert not missing, f"terms without a context entry: {missing}"
    assert not sorted(context.keys() & CORE_TERMS), "the demo context redefines protected core terms"
    assert set(context) == used - CORE_TERMS, f"unused context entries: {sorted(set(context) - used)}"
    for term, iri in context.items():
        assert isinstance(iri, str) and re.match(
            r"^(https://smartdatamodels\.org/|urn:civicmesh:vocab:)", iri
        ), f"{term} -> {iri}"
        assert iri.rsplit("/", 1)[-1].rsplit(":", 1)[-1] == term, f"{term} -> {iri}"


def test_regenerating_gives_the_committed_files(tmp_path: Any) -> None:
    package = resources.files("civicmesh.demo")
    for name, text in render_all().items():
        assert package.joinpath(name).read_text(encoding="utf-8") == text, (
            f"{name} is stale: run python -m civicmesh.demo.generate"
        )
    assert main(["--check"]) == 0
    assert main(["--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / "city.jsonld").read_bytes() == package.joinpath("city.jsonld").read_bytes()
    (tmp_path / "city.jsonld").write_text("[]\n", encoding="utf-8")
    assert main(["--check", "--out-dir", str(tmp_path)]) == 1


def test_demo_entities_returns_an_independent_copy() -> None:
    first = demo_entities()
    first[0]["type"] = "Changed"
    assert demo_entities()[0]["type"] != "Changed"


@pytest.mark.parametrize(
    ("pollutant", "concentration", "expected"),
    [
        # HJ 633-2012 Table 1 breakpoints (hourly columns for gases, 24-hour for particles)
        ("pm25", 35, 50),
        ("pm25", 75, 100),
        ("pm25", 115, 150),
        ("pm25", 500, 500),
        ("pm10", 150, 100),
        ("o3", 160, 50),
        ("o3", 200, 100),
        ("o3", 300, 150),
        ("no2", 200, 100),
        ("co", 10, 100),
        ("so2", 500, 100),
        ("pm25", 55, 75),
    ],
)
def test_iaqi_matches_the_hj633_table(pollutant: str, concentration: float, expected: float) -> None:
    assert iaqi(pollutant, concentration) == pytest.approx(expected)


def test_iaqi_refuses_values_outside_the_table() -> None:
    with pytest.raises(ValueError, match="above"):
        iaqi("so2", 801)
    with pytest.raises(ValueError, match="negative"):
        iaqi("pm25", -1)


def test_station_aqi_agrees_with_its_pollutants(entities: list[dict[str, Any]]) -> None:
    levels = {(0, 50): "excellent", (51, 100): "good", (101, 150): "lightlyPolluted"}
    for e in (e for e in entities if e["type"] == "AirQualityObserved"):
        default = {
            p: next(i["value"] for i in instances(e[p]) if "datasetId" not in i)
            for p in ("pm25", "pm10", "no2", "o3", "co", "so2")
        }
        aqi = e["airQualityIndex"]["value"]
        assert (aqi, e["airQualityLevel"]["value"]) == china_aqi(default), e["id"]
        assert any(
            lo <= aqi <= hi and name == e["airQualityLevel"]["value"] for (lo, hi), name in levels.items()
        ), f"{e['id']}: AQI {aqi} outside a June evening's range"


def test_buildings_stand_clear_of_roads_and_each_other(entities: list[dict[str, Any]]) -> None:
    footprints = [
        (e["id"], Polygon(e["location"]["value"]["coordinates"][0]))
        for e in entities
        if e["location"]["value"]["type"] == "Polygon"
    ]
    roads = [
        LineString(e["location"]["value"]["coordinates"]) for e in entities if e["type"] == "RoadSegment"
    ]
    for i, (a_id, a) in enumerate(footprints):
        assert not any(a.intersects(road) for road in roads), f"{a_id} sits on a road"
        for b_id, b in footprints[i + 1 :]:
            assert not a.intersects(b), f"{a_id} overlaps {b_id}"


def test_streetlights_line_their_roads(entities: list[dict[str, Any]]) -> None:
    segments = [e["location"]["value"]["coordinates"] for e in entities if e["type"] == "RoadSegment"]
    for light in (e for e in entities if e["type"] == "Streetlight"):
        lon, lat = light["location"]["value"]["coordinates"]
        nearest = min(LineString(s).distance(Point(lon, lat)) for s in segments)
        # degrees to metres at this latitude, conservatively with the shorter (longitude) scale
        assert nearest * 111_320 * math.cos(math.radians(lat)) < 30, f"{light['id']} is far from any road"


def test_traffic_figures_are_physically_plausible(
    entities: list[dict[str, Any]], by_id: dict[str, dict[str, Any]]
) -> None:
    for flow in (e for e in entities if e["type"] == "TrafficFlowObserved"):
        segment = by_id[flow["refRoadSegment"]["object"]]
        limit = segment["maximumAllowedSpeed"]["value"]
        speed = flow["averageVehicleSpeed"]["value"]
        assert 0 < speed <= limit * 1.1, f"{flow['id']}: {speed} km/h on a {limit} km/h road"
        assert 0 <= flow["occupancy"]["value"] <= 1
        lanes = segment["totalLaneNumber"]["value"] // 2
        # 5-minute count; no lane carries more than ~2,200 vehicles an hour
        assert 0 < flow["intensity"]["value"] <= lanes * 2200 / 12, flow["id"]
        assert flow["congested"]["value"] == (speed < 0.4 * limit or flow["occupancy"]["value"] > 0.3)
        ends = flow["location"]["value"]["coordinates"]
        seg_ends = segment["location"]["value"]["coordinates"]
        assert (
            metres(tuple(ends[0]), tuple(seg_ends[0 if flow["laneDirection"]["value"] == "forward" else -1]))
            < 1
        )
