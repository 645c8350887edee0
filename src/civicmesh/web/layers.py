"""The map's layers, and every layer's entities for one caller in one answer (`GET /web/layers`).

The page used to send one NGSI-LD query per layer (nine at once, more than a browser sends in parallel to one
host), and its first load waited for the slowest. `/web/layers` runs one broker query over every layer type as the
caller, so the exchange gate screens exactly as it screens `GET /ngsi-ld/v1/entities` for that caller (same
verdicts, masking and metering: one `query`, counted once per agreement), and answers keyValues with the demo
@context's short names, grouped by layer. It is compact: each entity carries only what its layer draws (a layer's
`attrs`, plus `location`); the page asks for the whole entity when one is opened, and the live stream sends whole
entities.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from civicmesh.access import Caller
from civicmesh.ngsild import DEMO_CONTEXT_URN
from civicmesh.ngsild.render import SIMPLIFIED, View, render_entity
from civicmesh.store.base import EntityQuery

if TYPE_CHECKING:
    from civicmesh.ngsild.context import TermMap
    from civicmesh.platform import Platform

# Citizen requests are published as Smart Data Models IssueTracking entities (citizen/entity.py); the demo
# @context has no term for them, so the layer names the type by its IRI.
ISSUE = "https://smartdatamodels.org/dataModel.IssueTracking/"
SERVICE_REQUEST = ISSUE + "service_requests"
NAMES = ["name", "alternateName"]
# What the map draws: layer id -> the entity types it shows, the attributes its markers and titles use (None:
# all, for the alerts panel), its names and whether it is on at first.
LAYERS: list[dict[str, Any]] = [
    {"id": "air", "types": ["AirQualityObserved"], "attrs": [*NAMES, "airQualityIndex", "airQualityLevel"],
     "zh": "空气质量", "en": "Air quality", "on": True},
    {"id": "traffic", "types": ["TrafficFlowObserved"], "attrs": [*NAMES, "averageVehicleSpeed", "intensity"],
     "zh": "交通流量", "en": "Traffic flow", "on": True},
    {"id": "streetlights", "types": ["Streetlight"], "attrs": [*NAMES, "powerState", "status"],
     "zh": "路灯", "en": "Streetlights", "on": True},
    {"id": "parking", "types": ["OffStreetParking"], "attrs": [*NAMES, "availableSpotNumber", "totalSpotNumber"],
     "zh": "停车场", "en": "Parking", "on": True},
    {"id": "energy", "types": ["SolarEnergy", "StorageBatteryDevice", "EVChargingStation"],
     "attrs": [*NAMES, "totalActivePower"], "zh": "能源设施", "en": "Energy assets", "on": True},
    {"id": "bridge", "types": ["Bridge", "DeviceMeasurement"], "attrs": [*NAMES, "numValue"],
     "zh": "桥梁监测", "en": "Bridge monitoring", "on": True},
    {"id": "weather", "types": ["WeatherObserved"], "attrs": NAMES, "zh": "气象站", "en": "Weather", "on": False},
    {"id": "buildings", "types": ["Building"], "attrs": NAMES, "zh": "建筑", "en": "Buildings", "on": False},
    {"id": "citizen", "types": [SERVICE_REQUEST], "attrs": [ISSUE + "service_name", ISSUE + "status"],
     "zh": "市民诉求", "en": "Citizen requests", "on": True},
    {"id": "alerts", "types": ["Alert"], "attrs": None, "zh": "告警", "en": "Alerts", "on": True},
]
# More than any demo city holds; a city this large needs a map that loads by area, not everything at once.
SNAPSHOT_LIMIT = 50_000


def demo_terms(platform: Platform) -> TermMap:
    return platform.contexts.term_map(DEMO_CONTEXT_URN)


async def snapshot(platform: Platform, caller: Caller, tenant: str) -> dict[str, Any]:
    """Every layer's entities as this caller may read them: {"layers": {id: [keyValues entity, ...]}}."""
    terms = demo_terms(platform)
    layer_of: dict[str, str] = {}
    for layer in LAYERS:
        for entity_type in layer["types"]:
            layer_of.setdefault(terms.expand(entity_type), layer["id"])
    query = EntityQuery(types=[frozenset({iri}) for iri in layer_of], limit=SNAPSHOT_LIMIT + 1)
    docs, _ = await platform.broker.query(tenant, query, caller)
    location = terms.expand("location")
    views = {layer["id"]: View(terms, SIMPLIFIED, attrs=None if layer["attrs"] is None else frozenset(
        [location, *(terms.expand(a) for a in layer["attrs"])])) for layer in LAYERS}
    layers: dict[str, list[dict[str, Any]]] = {layer["id"]: [] for layer in LAYERS}
    for doc in docs[:SNAPSHOT_LIMIT]:
        # An entity of several types is drawn once, in the first layer (in LAYERS order) that shows one of them.
        found = sorted((_rank(layer_of[t]), layer_of[t]) for t in doc["type"] if t in layer_of)
        if found:
            layers[found[0][1]].append(render_entity(doc, views[found[0][1]]))
    return {"layers": layers, "truncated": len(docs) > SNAPSHOT_LIMIT}


def _rank(layer_id: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if layer["id"] == layer_id)
