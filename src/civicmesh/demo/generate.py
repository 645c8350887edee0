"""Generate the demo city: a few hundred NGSI-LD entities for Binjiang and Qianjiang New City, Hangzhou.

The output is data the project owns: `city.jsonld` (a JSON array of entities in normalized form, no
@context inside) and `context.jsonld` (the @context that maps every non-core term used to an IRI).
Everything is derived from one seeded `random.Random`, so running the generator again gives byte-identical
files; tests check that the committed files equal a fresh run.

Coordinates are WGS84 approximations of the real street layout (Chinese web maps use GCJ-02, which is
offset by a few hundred metres; nothing here is survey grade). Attribute names follow the FIWARE Smart Data
Models; values describe a June weekday at 18:00 China Standard Time (10:00Z): evening rush hour, sunset
approaching, plum-rain-season weather.

Run `python -m civicmesh.demo.generate` to rewrite the files, `--check` to verify them.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from shapely.geometry import LineString as ShapelyLine
from shapely.geometry import Polygon as ShapelyPolygon
from shapely.geometry.base import BaseGeometry

SEED = 20250616
OBSERVED_AT = "2025-06-16T10:00:00Z"  # 18:00 CST, evening peak
WINDOW_START = "2025-06-16T09:55:00Z"  # traffic detectors report 5-minute windows

# The demo district, and the city around it: every coordinate must fall inside both boxes.
DISTRICT_BBOX = (120.14, 30.17, 120.26, 30.27)  # (min lon, min lat, max lon, max lat)
HANGZHOU_BBOX = (118.34, 29.18, 120.72, 30.57)

SDM = "https://smartdatamodels.org/"
# The bridge has no Smart Data Model; its type lives in a project vocabulary that claims no domain.
PROJECT_VOCAB = "urn:civicmesh:vocab:"

# Which Smart Data Models domain each term is taken from. A term shared by several domains (temperature,
# occupancy, category, ...) needs one IRI in a single @context, so it is listed once, under the domain
# where it is defined first. GSMA "commons" (name, address, ...) map to the top-level SDM namespace.
TERM_DOMAINS: dict[str, tuple[str, ...]] = {
    "": (
        "name",
        "alternateName",
        "address",
        "areaServed",
        "dataProvider",
        "source",
        "owner",
        "seeAlso",
        "dateCreated",
        "dateModified",
        # keys inside `address` values (schema.org PostalAddress); JSON-LD expands these too
        "streetAddress",
        "addressLocality",
        "addressRegion",
        "addressCountry",
        "postalCode",
        "district",
    ),
    "dataModel.Environment": (
        "AirQualityObserved",
        "dateObserved",
        "pm25",
        "pm10",
        "no2",
        "o3",
        "co",
        "so2",
        "temperature",
        "relativeHumidity",
        "airQualityIndex",
        "airQualityLevel",
        "reliability",
        "typeofLocation",
        "refDevice",
        "refWeatherObserved",
    ),
    "dataModel.Weather": (
        "WeatherObserved",
        "atmosphericPressure",
        "windSpeed",
        "windDirection",
        "precipitation",
        "solarRadiation",
        "dewPoint",
        "weatherType",
        "visibility",
    ),
    "dataModel.Transportation": (
        "Road",
        "RoadSegment",
        "TrafficFlowObserved",
        "EVChargingStation",
        "roadClass",
        "length",
        "refRoad",
        "refRoadSegment",
        "startPoint",
        "endPoint",
        "totalLaneNumber",
        "laneUsage",
        "maximumAllowedSpeed",
        "width",
        "allowedVehicleType",
        "dateObservedFrom",
        "dateObservedTo",
        "intensity",
        "occupancy",
        "averageVehicleSpeed",
        "averageVehicleLength",
        "averageHeadwayTime",
        "averageGapDistance",
        "congested",
        "laneId",
        "laneDirection",
        "capacity",
        "availableCapacity",
        "socketType",
        "chargeType",
        "amperage",
        "voltage",
        "operator",
        "network",
        "openingHours",
        "acceptedPaymentMethod",
    ),
    "dataModel.Streetlighting": (
        "Streetlight",
        "StreetlightGroup",
        "powerState",
        "illuminanceLevel",
        "powerConsumption",
        "powerRating",
        "lanternHeight",
        "dateLastLampChange",
        "dateServiceStarted",
        "locationCategory",
        "controllingMethod",
        "refStreetlightGroup",
        "dateLastSwitchingOn",
        "dateLastSwitchingOff",
        "circuitId",
    ),
    "dataModel.Parking": (
        "OffStreetParking",
        "totalSpotNumber",
        "availableSpotNumber",
        "occupiedSpotNumber",
        "maximumAllowedHeight",
        "priceRatePerMinute",
        "priceCurrency",
        "requiredPermit",
        "layout",
    ),
    "dataModel.Building": ("Building", "category", "floorsAboveGround", "floorsBelowGround", "refBuilding"),
    "dataModel.Energy": (
        "SolarEnergy",
        "ACMeasurement",
        "phaseType",
        "totalActivePower",
        "totalPowerFactor",
        "totalActiveEnergyImport",
        "frequency",
        "energyGenerated",
        "totalEnergyGenerated",
        "maxSolarPowerMeasure",
        "observationDateTime",
    ),
    "dataModel.Battery": (
        "StorageBatteryDevice",
        "StorageBatteryMeasurement",
        "batteryType",
        "application",
        "nominalCapacity",
        "usableEnergy",
        "maxOutputPower",
        "chargePower",
        "dischargePower",
        "roundTripEfficiency",
        "stateOfCharge",
        "stateOfHealth",
        "batteryStatus",
        "activePower",
        "refStorageBatteryDevice",
    ),
    "dataModel.Device": (
        "Device",
        "DeviceMeasurement",
        "controlledProperty",
        "controlledAsset",
        "deviceState",
        "serialNumber",
        "dateInstalled",
        "supportedProtocol",
        "numValue",
        "unit",
        "measurementType",
        "deviceType",
        "outlier",
    ),
}
PROJECT_TERMS: tuple[str, ...] = ("Bridge",)

# NGSI-LD core terms this file uses. They are defined (and @protected) by the core context that the
# broker has built in, so the demo context must not define them again.
CORE_TERMS_USED = frozenset(
    {
        "id",
        "type",
        "location",
        "status",
        "description",
        "observedAt",
        "unitCode",
        "datasetId",
        "value",
        "object",
        "languageMap",
    }
)

# UN/CEFACT Recommendation 20 unit codes used below
GQ, GP = "GQ", "GP"  # microgram / milligram per cubic metre
CEL, KMH, MTR, KMT = "CEL", "KMH", "MTR", "KMT"
KWT, KWH, WTT, VLT, AMP, HTZ = "KWT", "KWH", "WTT", "VLT", "AMP", "HTZ"
A97, MTS, DD, D54, C62, P1, MMT, C25 = "A97", "MTS", "DD", "D54", "C62", "P1", "MMT", "C25"
PPM = "59"  # part per million: the code used for microstrain


# ---------------------------------------------------------------------------------------------------
# NGSI-LD attribute builders (normalized form)


def prop(
    value: Any, unit: str | None = None, observed: str | None = None, dataset: str | None = None
) -> dict[str, Any]:
    attr: dict[str, Any] = {"type": "Property", "value": value}
    if unit is not None:
        attr["unitCode"] = unit
    if observed is not None:
        attr["observedAt"] = observed
    if dataset is not None:
        attr["datasetId"] = dataset
    return attr


def rel(target: str) -> dict[str, Any]:
    return {"type": "Relationship", "object": target}


def geo(geometry: dict[str, Any]) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": geometry}


def lang(zh: str, en: str) -> dict[str, Any]:
    return {"type": "LanguageProperty", "languageMap": {"zh": zh, "en": en}}


def point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [round(lon, 6), round(lat, 6)]}


def urn(entity_type: str, local: str) -> str:
    return f"urn:ngsi-ld:{entity_type}:hz-{local}"


# ---------------------------------------------------------------------------------------------------
# Geometry on a local plane: metres east/north of a fixed origin. Good to centimetres over a few km.

ORIGIN = (120.20, 30.22)
M_PER_DEG_LAT = 111_320.0
M_PER_DEG_LON = M_PER_DEG_LAT * math.cos(math.radians(ORIGIN[1]))


def to_xy(lon: float, lat: float) -> tuple[float, float]:
    return (lon - ORIGIN[0]) * M_PER_DEG_LON, (lat - ORIGIN[1]) * M_PER_DEG_LAT


def to_lonlat(x: float, y: float) -> tuple[float, float]:
    return round(ORIGIN[0] + x / M_PER_DEG_LON, 6), round(ORIGIN[1] + y / M_PER_DEG_LAT, 6)


def line_length_m(coords: Sequence[Sequence[float]]) -> float:
    return float(ShapelyLine([to_xy(*c) for c in coords]).length)


def along_line(
    coords: Sequence[Sequence[float]], fraction: float, side_m: float = 0.0
) -> tuple[float, float]:
    """The point `fraction` of the way along a polyline, pushed `side_m` metres to its left."""
    line = ShapelyLine([to_xy(*c) for c in coords])
    d = fraction * line.length
    p = line.interpolate(d)
    q = line.interpolate(min(d + 1.0, line.length)) if d < line.length else line.interpolate(d - 1.0)
    dx, dy = (q.x - p.x, q.y - p.y) if d < line.length else (p.x - q.x, p.y - q.y)
    norm = math.hypot(dx, dy) or 1.0
    return to_lonlat(p.x - dy / norm * side_m, p.y + dx / norm * side_m)


def ring_from_xy(points: Iterable[tuple[float, float]]) -> list[list[float]]:
    ring = [list(to_lonlat(x, y)) for x, y in points]
    ring.append(list(ring[0]))
    return ring


def rectangle(
    center: tuple[float, float], width_m: float, depth_m: float, angle_deg: float
) -> list[list[float]]:
    """A closed counter-clockwise ring (RFC 7946 exterior) for a rotated rectangle around a lon/lat centre."""
    cx, cy = to_xy(*center)
    a = math.radians(angle_deg)
    corners = [
        (-width_m / 2, -depth_m / 2),
        (width_m / 2, -depth_m / 2),
        (width_m / 2, depth_m / 2),
        (-width_m / 2, depth_m / 2),
    ]
    return ring_from_xy(
        (cx + u * math.cos(a) - v * math.sin(a), cy + u * math.sin(a) + v * math.cos(a)) for u, v in corners
    )


def oval(center: tuple[float, float], rx_m: float, ry_m: float, sides: int = 16) -> list[list[float]]:
    cx, cy = to_xy(*center)
    return ring_from_xy(
        (cx + rx_m * math.cos(2 * math.pi * k / sides), cy + ry_m * math.sin(2 * math.pi * k / sides))
        for k in range(sides)
    )


def footprint(ring: list[list[float]]) -> ShapelyPolygon:
    return ShapelyPolygon([to_xy(*c) for c in ring])


def centroid(ring: list[list[float]]) -> tuple[float, float]:
    c = footprint(ring).centroid
    return to_lonlat(c.x, c.y)


# ---------------------------------------------------------------------------------------------------
# China HJ 633-2012 air quality index, hourly (real-time) variant: SO2, NO2, CO and O3 use their 1-hour
# breakpoints; PM10 and PM2.5 use the 24-hour ones, as the hourly bulletins do. Concentrations in ug/m3,
# CO in mg/m3. SO2 1-hour stops at 800 ug/m3 (above that the standard switches to the 24-hour value).

IAQI_STEPS = (0, 50, 100, 150, 200, 300, 400, 500)
HOURLY_BREAKPOINTS: dict[str, tuple[float, ...]] = {
    "so2": (0, 150, 500, 650, 800),
    "no2": (0, 100, 200, 700, 1200, 2340, 3090, 3840),
    "co": (0, 5, 10, 35, 60, 90, 120, 150),
    "o3": (0, 160, 200, 300, 400, 800, 1000, 1200),
    "pm10": (0, 50, 150, 250, 350, 420, 500, 600),
    "pm25": (0, 35, 75, 115, 150, 250, 350, 500),
}
AQI_LEVELS = (
    (50, "excellent"),
    (100, "good"),
    (150, "lightlyPolluted"),
    (200, "moderatelyPolluted"),
    (300, "heavilyPolluted"),
    (10**9, "severelyPolluted"),
)


def iaqi(pollutant: str, concentration: float) -> float:
    """Individual AQI by linear interpolation inside the breakpoint band that holds the concentration."""
    bps = HOURLY_BREAKPOINTS[pollutant]
    if concentration < 0:
        raise ValueError(f"{pollutant} concentration {concentration} is negative")
    for i in range(1, len(bps)):
        if concentration <= bps[i]:
            lo, hi = bps[i - 1], bps[i]
            return IAQI_STEPS[i - 1] + (IAQI_STEPS[i] - IAQI_STEPS[i - 1]) * (concentration - lo) / (hi - lo)
    raise ValueError(f"{pollutant} concentration {concentration} is above the HJ 633 hourly table")


def china_aqi(concentrations: dict[str, float]) -> tuple[int, str]:
    """AQI (the largest IAQI, rounded up as most bulletins do) and its category name."""
    aqi = math.ceil(max(iaqi(p, c) for p, c in concentrations.items()) - 1e-9)
    return aqi, aqi_level(aqi)


def aqi_level(aqi: int) -> str:
    """The HJ 633-2012 category of an AQI (the `airQualityLevel` of AirQualityObserved)."""
    return next(name for top, name in AQI_LEVELS if aqi <= top)


# ---------------------------------------------------------------------------------------------------
# The street network. Polylines are (lon, lat) vertices; each pair of vertices is one RoadSegment.

ROADS: tuple[dict[str, Any], ...] = (
    {
        "slug": "jiangnan-avenue",
        "en": "Jiangnan Avenue",
        "zh": "江南大道",
        "class": "primary",
        "lanes": 6,
        "speed": 60,
        "width": 32.0,
        "coords": [
            (120.1540, 30.2047),
            (120.1700, 30.2055),
            (120.1860, 30.2066),
            (120.2000, 30.2076),
            (120.2150, 30.2086),
            (120.2330, 30.2098),
        ],
    },
    {
        "slug": "binsheng-road",
        "en": "Binsheng Road",
        "zh": "滨盛路",
        "class": "secondary",
        "lanes": 4,
        "speed": 50,
        "width": 24.0,
        "coords": [
            (120.1720, 30.2128),
            (120.1880, 30.2136),
            (120.2020, 30.2144),
            (120.2180, 30.2152),
            (120.2320, 30.2160),
        ],
    },
    {
        "slug": "wentao-road",
        "en": "Wentao Road",
        "zh": "闻涛路",
        "class": "tertiary",
        "lanes": 4,
        "speed": 50,
        "width": 20.0,
        "coords": [(120.1880, 30.2200), (120.2020, 30.2222), (120.2160, 30.2246), (120.2300, 30.2272)],
    },
    {
        "slug": "jiangling-road",
        "en": "Jiangling Road",
        "zh": "江陵路",
        "class": "primary",
        "lanes": 6,
        "speed": 60,
        "width": 30.0,
        "coords": [
            (120.2118, 30.2250),
            (120.2112, 30.2150),
            (120.2106, 30.2050),
            (120.2100, 30.1950),
            (120.2094, 30.1860),
        ],
    },
    {
        "slug": "changhe-road",
        "en": "Changhe Road",
        "zh": "长河路",
        "class": "secondary",
        "lanes": 4,
        "speed": 50,
        "width": 22.0,
        "coords": [(120.1962, 30.2200), (120.1960, 30.2100), (120.1956, 30.2000), (120.1950, 30.1900)],
    },
    {
        "slug": "minxin-road",
        "en": "Minxin Road",
        "zh": "民心路",
        "class": "secondary",
        "lanes": 4,
        "speed": 50,
        "width": 24.0,
        "coords": [(120.2010, 30.2505), (120.2100, 30.2490), (120.2190, 30.2474), (120.2280, 30.2458)],
    },
    {
        "slug": "fuchun-road",
        "en": "Fuchun Road",
        "zh": "富春路",
        "class": "secondary",
        "lanes": 4,
        "speed": 50,
        "width": 24.0,
        "coords": [(120.2060, 30.2590), (120.2075, 30.2520), (120.2090, 30.2450), (120.2105, 30.2385)],
    },
    {
        "slug": "qianjiang-road",
        "en": "Qianjiang Road",
        "zh": "钱江路",
        "class": "primary",
        "lanes": 6,
        "speed": 60,
        "width": 34.0,
        "coords": [(120.2165, 30.2600), (120.2158, 30.2530), (120.2150, 30.2460), (120.2143, 30.2395)],
    },
    {
        "slug": "zhijiang-road",
        "en": "Zhijiang Road",
        "zh": "之江路",
        "class": "trunk",
        "lanes": 6,
        "speed": 60,
        "width": 32.0,
        "coords": [
            (120.1900, 30.2380),
            (120.2000, 30.2375),
            (120.2100, 30.2378),
            (120.2200, 30.2390),
            (120.2300, 30.2405),
        ],
    },
    {
        "slug": "xixing-bridge",
        "en": "Xixing Bridge",
        "zh": "西兴大桥",
        "class": "trunk",
        "lanes": 6,
        "speed": 60,
        "width": 28.0,
        "coords": [(120.1985, 30.2372), (120.1978, 30.2290), (120.1968, 30.2205)],
    },
)
BRIDGE_ROAD = "xixing-bridge"
NORTH_BANK_LAT = 30.232  # north of the river: Qianjiang New City (Shangcheng District)

# Evening-peak load per road: fraction of lane capacity in use, forward / backward
ROAD_LOAD = {
    "jiangnan-avenue": (0.85, 0.70),
    "binsheng-road": (0.55, 0.50),
    "wentao-road": (0.40, 0.45),
    "jiangling-road": (0.90, 0.75),
    "changhe-road": (0.60, 0.55),
    "minxin-road": (0.65, 0.70),
    "fuchun-road": (0.60, 0.55),
    "qianjiang-road": (0.80, 0.85),
    "zhijiang-road": (0.75, 0.90),
    "xixing-bridge": (0.95, 0.70),
}


def district_of(lat: float) -> tuple[str, str]:
    """(district, postal code) for a latitude: the river splits the demo area in two."""
    return ("Shangcheng District", "310020") if lat > NORTH_BANK_LAT else ("Binjiang District", "310051")


def address(street: str, lat: float) -> dict[str, Any]:
    district, postcode = district_of(lat)
    return prop(
        {
            "streetAddress": street,
            "district": district,
            "addressLocality": "Hangzhou",
            "addressRegion": "Zhejiang",
            "addressCountry": "CN",
            "postalCode": postcode,
        }
    )


class CityBuilder:
    """Accumulates entities in a fixed order; every random draw comes from one seeded generator."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.entities: list[dict[str, Any]] = []
        # (shape, clearance in metres) of roads and footprints already placed. Exact distances rather than
        # buffers: a buffer is a polygonal approximation whose vertices may change between GEOS versions,
        # which would change which candidates are accepted and so the whole file.
        self.occupied: list[tuple[BaseGeometry, float]] = []
        self.segments: dict[str, list[dict[str, Any]]] = {}
        self.buildings: list[dict[str, Any]] = []

    def add(self, entity: dict[str, Any]) -> dict[str, Any]:
        self.entities.append(entity)
        return entity

    def uniform(self, lo: float, hi: float, digits: int = 1) -> float:
        return round(self.rng.uniform(lo, hi), digits)

    # -- roads and traffic ------------------------------------------------------------------------

    def build_roads(self) -> None:
        for road in ROADS:
            coords = [list(c) for c in road["coords"]]
            road_id = urn("Road", road["slug"])
            self.occupied.append((ShapelyLine([to_xy(*c) for c in coords]), road["width"] / 2 + 12))
            self.add(
                {
                    "id": road_id,
                    "type": "Road",
                    "name": prop(road["en"]),
                    "alternateName": prop(road["zh"]),
                    "roadClass": prop(road["class"]),
                    "length": prop(round(line_length_m(coords) / 1000, 3), KMT),
                    "location": geo({"type": "MultiLineString", "coordinates": [coords]}),
                    "dataProvider": prop("Hangzhou Municipal Transportation Bureau"),
                }
            )
            self.segments[road["slug"]] = []
            half = road["lanes"] // 2
            for i in range(len(coords) - 1):
                a, b = coords[i], coords[i + 1]
                mid = [round((a[0] + b[0]) / 2, 6), round((a[1] + b[1]) / 2, 6)]
                seg_coords = [a, mid, b]
                seg = self.add(
                    {
                        "id": urn("RoadSegment", f"{road['slug']}-{i + 1}"),
                        "type": "RoadSegment",
                        "name": prop(f"{road['en']} segment {i + 1}"),
                        "alternateName": prop(f"{road['zh']}第{i + 1}段"),
                        "refRoad": rel(road_id),
                        "location": geo({"type": "LineString", "coordinates": seg_coords}),
                        "startPoint": prop(point(*a)),
                        "endPoint": prop(point(*b)),
                        "totalLaneNumber": prop(road["lanes"]),
                        "laneUsage": prop(["forward"] * half + ["backward"] * half),
                        "maximumAllowedSpeed": prop(road["speed"], KMH),
                        "length": prop(round(line_length_m(seg_coords) / 1000, 3), KMT),
                        "width": prop(road["width"], MTR),
                        "allowedVehicleType": prop(["car", "bus", "motorcycle", "van"]),
                        "status": prop("open"),
                    }
                )
                self.segments[road["slug"]].append(seg)

    def build_traffic(self) -> None:
        for road in ROADS:
            half = road["lanes"] // 2
            for seg in self.segments[road["slug"]]:
                seg_coords = seg["location"]["value"]["coordinates"]
                for lane_id, direction, load in (
                    (1, "forward", ROAD_LOAD[road["slug"]][0]),
                    (2, "backward", ROAD_LOAD[road["slug"]][1]),
                ):
                    coords = seg_coords if direction == "forward" else list(reversed(seg_coords))
                    # Greenshields-style evening peak: speed falls as the load approaches capacity.
                    load = min(0.98, max(0.2, load + self.rng.uniform(-0.08, 0.08)))
                    per_lane_per_hour = 1800 * (1 - (1 - load) ** 2) if load < 0.9 else 1800 * load
                    speed = max(8.0, road["speed"] * (1 - 0.85 * load**3) + self.rng.uniform(-3, 3))
                    vehicle_len = self.uniform(4.6, 5.4)
                    density = per_lane_per_hour / speed  # vehicles per km and lane
                    occupancy = min(0.95, density * (vehicle_len + 2.0) / 1000)
                    slug = seg["id"].rsplit(":hz-", 1)[1]
                    self.add(
                        {
                            "id": urn("TrafficFlowObserved", f"{slug}-{direction}"),
                            "type": "TrafficFlowObserved",
                            "location": geo({"type": "LineString", "coordinates": coords}),
                            "refRoadSegment": rel(seg["id"]),
                            "laneId": prop(lane_id),
                            "laneDirection": prop(direction),
                            "dateObserved": prop(OBSERVED_AT),
                            "dateObservedFrom": prop(WINDOW_START),
                            "dateObservedTo": prop(OBSERVED_AT),
                            "intensity": prop(round(per_lane_per_hour * half / 12), observed=OBSERVED_AT),
                            "occupancy": prop(round(occupancy, 3), C62, OBSERVED_AT),
                            "averageVehicleSpeed": prop(round(speed, 1), KMH, OBSERVED_AT),
                            "averageVehicleLength": prop(vehicle_len, MTR),
                            "averageHeadwayTime": prop(round(3600 / per_lane_per_hour, 2), "SEC"),
                            "averageGapDistance": prop(round(max(1.0, 1000 / density - vehicle_len), 1), MTR),
                            "congested": prop(
                                speed < 0.4 * road["speed"] or occupancy > 0.3, observed=OBSERVED_AT
                            ),
                        }
                    )

    # -- streetlights -----------------------------------------------------------------------------

    def build_streetlights(self) -> None:
        for road in ROADS:
            coords = road["coords"]
            group_id = urn("StreetlightGroup", road["slug"])
            on_bridge = road["slug"] == BRIDGE_ROAD
            group_on = on_bridge  # the bridge's architectural circuit is lit from 18:00; streets at dusk
            lights: list[dict[str, Any]] = []
            count = 12
            for k in range(count):
                side = (road["width"] / 2 + 2.0) * (1 if k % 2 == 0 else -1)
                lon, lat = along_line(coords, (k + 0.5) / count, side)
                roll = self.rng.random()
                status = "ok" if roll < 0.9 else ("defectiveLamp" if roll < 0.97 else "brokenLantern")
                lit = group_on and status == "ok"
                rating = 150 if road["lanes"] >= 6 else 100
                lights.append(
                    self.add(
                        {
                            "id": urn("Streetlight", f"{road['slug']}-{k + 1:02d}"),
                            "type": "Streetlight",
                            "location": geo(point(lon, lat)),
                            "status": prop(status),
                            "powerState": prop("on" if lit else "off", observed=OBSERVED_AT),
                            "illuminanceLevel": prop(0.8 if lit else 0.0, C62, OBSERVED_AT),
                            "powerConsumption": prop(
                                round(rating * 0.8 * (1 + self.rng.uniform(-0.05, 0.05)), 1) if lit else 0.0,
                                WTT,
                                OBSERVED_AT,
                            ),
                            "powerRating": prop(rating, WTT),
                            "lanternHeight": prop(12 if road["lanes"] >= 6 else 10, MTR),
                            "locationCategory": prop("road"),
                            "controllingMethod": prop("group"),
                            "dateServiceStarted": prop(
                                f"20{self.rng.randint(12, 21)}-0{self.rng.randint(1, 9)}-15"
                            ),
                            "dateLastLampChange": prop(
                                f"202{self.rng.randint(2, 5)}-0{self.rng.randint(1, 5)}-"
                                f"{self.rng.randint(10, 28)}T02:00:00Z"
                            ),
                            "refStreetlightGroup": rel(group_id),
                        }
                    )
                )
            self.add(
                {
                    "id": group_id,
                    "type": "StreetlightGroup",
                    "name": prop(f"{road['en']} lighting circuit"),
                    "location": geo(
                        {
                            "type": "MultiPoint",
                            "coordinates": [light["location"]["value"]["coordinates"] for light in lights],
                        }
                    ),
                    "areaServed": prop(district_of(coords[0][1])[0]),
                    "circuitId": prop(f"HZ-{road['slug'].upper()[:3]}-{ROADS.index(road) + 1:02d}"),
                    "powerState": prop("on" if group_on else "off", observed=OBSERVED_AT),
                    "dateLastSwitchingOn": prop(
                        "2025-06-16T10:00:00Z" if group_on else "2025-06-15T11:05:00Z"
                    ),
                    "dateLastSwitchingOff": prop("2025-06-15T21:10:00Z"),
                }
            )

    # -- buildings --------------------------------------------------------------------------------

    def place_footprint(self, ring: list[list[float]]) -> bool:
        shape = footprint(ring)
        if any(shape.distance(other) < clearance + 8 for other, clearance in self.occupied):
            return False
        self.occupied.append((shape, 0.0))
        return True

    def add_building(
        self,
        slug: str,
        ring: list[list[float]],
        category: list[str],
        floors: int,
        below: int,
        street: str,
        name: dict[str, Any],
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        c = centroid(ring)
        entity: dict[str, Any] = {
            "id": urn("Building", slug),
            "type": "Building",
            "name": name,
            "category": prop(category),
            "address": address(street, c[1]),
            "floorsAboveGround": prop(floors),
            "floorsBelowGround": prop(below),
            "location": geo({"type": "Polygon", "coordinates": [ring]}),
        }
        entity.update(extra or {})
        self.buildings.append(self.add(entity))
        return entity

    def build_landmarks(self) -> None:
        landmarks = (
            (
                "international-conference-center",
                "杭州国际会议中心",
                "Hangzhou International Conference Center",
                oval((120.2137, 30.2448), 48, 48),
                ["civic", "hotel"],
                19,
                2,
                "Zhijiang Road",
            ),
            (
                "grand-theatre",
                "杭州大剧院",
                "Hangzhou Grand Theatre",
                oval((120.2112, 30.2466), 75, 55),
                ["civic"],
                5,
                1,
                "Fuchun Road",
            ),
            (
                "citizen-center",
                "杭州市民中心",
                "Hangzhou Citizen Center",
                oval((120.2040, 30.2440), 110, 95, 24),
                ["civic", "office"],
                23,
                3,
                "Fuchun Road",
            ),
            (
                "raffles-city",
                "杭州来福士广场",
                "Raffles City Hangzhou",
                rectangle((120.2205, 30.2428), 150, 90, 8),
                ["commercial", "office"],
                60,
                4,
                "Xintang Road",
            ),
            (
                "olympic-stadium",
                "杭州奥体中心体育场",
                "Hangzhou Olympic Sports Center Stadium",
                oval((120.2285, 30.2318), 165, 150, 24),
                ["stadium"],
                6,
                1,
                "Feiyun Jiang Road",
            ),
            (
                "olympic-expo-center",
                "杭州国际博览中心",
                "Hangzhou International Expo Center",
                rectangle((120.2380, 30.2230), 260, 160, 10),
                ["civic", "commercial"],
                5,
                2,
                "Benjing Avenue",
            ),
            (
                "binjiang-government",
                "滨江区人民政府",
                "Binjiang District People's Government",
                rectangle((120.2055, 30.2104), 90, 50, 3),
                ["civic", "office"],
                14,
                2,
                "Jiangnan Avenue",
            ),
        )
        for slug, zh, en, ring, category, floors, below, street in landmarks:
            if not self.place_footprint(ring):
                raise AssertionError(f"landmark {slug} overlaps a road or another landmark")
            self.add_building(
                slug,
                ring,
                category,
                floors,
                below,
                street,
                lang(zh, en),
                {"description": prop(f"{en} ({zh}), a landmark of the demo district")},
            )

    def build_blocks(self) -> None:
        # City blocks between the roads: (min lon, min lat, max lon, max lat, street, kinds, how many)
        blocks = (
            (120.1740, 30.2072, 120.1940, 30.2122, "Jiangnan Avenue", ("office", "commercial"), 5),
            (120.1990, 30.2082, 120.2090, 30.2136, "Binsheng Road", ("office",), 3),
            (120.2140, 30.2094, 120.2300, 30.2146, "Binsheng Road", ("office", "office", "commercial"), 5),
            (
                120.1760,
                30.1960,
                120.1930,
                30.2042,
                "Changhe Road",
                ("residential", "residential", "school"),
                5,
            ),
            (
                120.2130,
                30.1960,
                120.2300,
                30.2070,
                "Jiangling Road",
                ("residential", "residential", "school"),
                5,
            ),
            (120.1990, 30.2158, 120.2090, 30.2205, "Wentao Road", ("residential",), 2),
            (120.2008, 30.2512, 120.2062, 30.2585, "Fuchun Road", ("office", "residential"), 2),
            (120.2180, 30.2485, 120.2280, 30.2565, "Minxin Road", ("office", "office", "commercial"), 4),
        )
        sizes = {
            "office": ((35, 50), (30, 45), (18, 46), 3),
            "commercial": ((70, 110), (50, 80), (4, 8), 2),
            "residential": ((55, 75), (14, 18), (18, 33), 2),
            "school": ((90, 120), (50, 70), (4, 5), 1),
        }
        serial = {"office": 0, "commercial": 0, "residential": 0, "school": 0}
        for lon0, lat0, lon1, lat1, street, kinds, wanted in blocks:
            placed = 0
            for _ in range(400):  # rejection sampling; the bound keeps a bad block from looping forever
                if placed == wanted:
                    break
                kind = kinds[self.rng.randrange(len(kinds))]
                (w0, w1), (d0, d1), (f0, f1), below = sizes[kind]
                center = (self.rng.uniform(lon0, lon1), self.rng.uniform(lat0, lat1))
                ring = rectangle(
                    center, self.rng.uniform(w0, w1), self.rng.uniform(d0, d1), self.rng.uniform(-6, 6)
                )
                if not self.place_footprint(ring):
                    continue
                serial[kind] += 1
                placed += 1
                area = district_of(center[1])[0].split()[0]
                label = {
                    "office": "office tower",
                    "commercial": "shopping centre",
                    "residential": "residential block",
                    "school": "school",
                }[kind]
                number = self.rng.randint(1, 900)
                self.add_building(
                    f"{kind}-{serial[kind]:02d}",
                    ring,
                    [kind],
                    self.rng.randint(f0, f1),
                    below,
                    f"{number} {street}",
                    prop(f"{area} {label} {serial[kind]}"),
                )
            if placed < wanted:
                raise AssertionError(f"could only place {placed} of {wanted} buildings near {street}")

    # -- parking and EV charging ------------------------------------------------------------------

    def build_parking(self) -> list[tuple[str, tuple[float, float], str]]:
        sites: list[tuple[str, tuple[float, float], str]] = []  # (parking id, where, street)
        underground = [
            b
            for b in self.buildings
            if "office" in b["category"]["value"] or "civic" in b["category"]["value"]
        ][:8]
        for i, building in enumerate(underground):
            ring = building["location"]["value"]["coordinates"][0]
            c = centroid(ring)
            name = building["name"]
            title = name["languageMap"]["en"] if name["type"] == "LanguageProperty" else name["value"]
            street = building["address"]["value"]["streetAddress"]
            sites.append(
                self._parking(
                    f"garage-{i + 1:02d}",
                    geo(point(*c)),
                    f"{title} underground garage",
                    street,
                    c,
                    self.rng.choice([300, 450, 600, 800, 1200]),
                    ["underground", "feeChargeable"],
                    2.2,
                )
            )
        surface = (
            (120.1780, 30.2010, "Changhe Road"),
            (120.1920, 30.2150, "Binsheng Road"),
            (120.2240, 30.2030, "Jiangling Road"),
            (120.2330, 30.2195, "Wentao Road"),
            (120.2230, 30.2540, "Minxin Road"),
            (120.2070, 30.2150, "Binsheng Road"),
        )
        for i, (lon, lat, street) in enumerate(surface):
            for attempt in range(200):
                jitter = (lon + self.rng.uniform(-0.002, 0.002), lat + self.rng.uniform(-0.0012, 0.0012))
                ring = rectangle(
                    jitter if attempt else (lon, lat),
                    self.rng.uniform(55, 80),
                    self.rng.uniform(35, 50),
                    self.rng.uniform(-5, 5),
                )
                if self.place_footprint(ring):
                    break
            else:
                raise AssertionError(f"no room for surface car park near {street}")
            c = centroid(ring)
            sites.append(
                self._parking(
                    f"surface-{i + 1:02d}",
                    geo({"type": "Polygon", "coordinates": [ring]}),
                    f"{street} surface car park",
                    street,
                    c,
                    self.rng.choice([60, 80, 120, 150]),
                    ["ground", "feeChargeable"],
                    None,
                )
            )
        return sites

    def _parking(
        self,
        slug: str,
        location: dict[str, Any],
        title: str,
        street: str,
        where: tuple[float, float],
        total: int,
        category: list[str],
        max_height: float | None,
    ) -> tuple[str, tuple[float, float], str]:
        occupied = round(total * self.rng.uniform(0.55, 0.97))
        entity: dict[str, Any] = {
            "id": urn("OffStreetParking", slug),
            "type": "OffStreetParking",
            "name": prop(title),
            "location": location,
            "address": address(street, where[1]),
            "category": prop(category + ["public"]),
            "allowedVehicleType": prop(["car"]),
            "totalSpotNumber": prop(total),
            "availableSpotNumber": prop(total - occupied, observed=OBSERVED_AT),
            "occupiedSpotNumber": prop(occupied, observed=OBSERVED_AT),
            "occupancy": prop(round(occupied / total, 3), C62, OBSERVED_AT),
            "chargeType": prop(["temporaryPrice"]),
            "priceRatePerMinute": prop(round(self.rng.choice([4, 5, 6, 8]) / 60, 4)),
            "priceCurrency": prop("CNY"),
            "acceptedPaymentMethod": prop(["Cash", "DirectDebit"]),
            "openingHours": prop("Mo-Su 00:00-24:00"),
            "status": prop(["open"]),
        }
        if max_height is not None:
            entity["maximumAllowedHeight"] = prop(max_height, MTR)
        self.add(entity)
        return entity["id"], where, street

    def build_ev_chargers(self, sites: list[tuple[str, tuple[float, float], str]]) -> None:
        operators = ("State Grid Zhejiang Electric Vehicle Service", "Star Charge", "TELD New Energy")
        places = [(where, street) for _, where, street in sites[:8]] + [
            (along_line(ROADS[0]["coords"], 0.62, -22.0), "Jiangnan Avenue"),
            (along_line(ROADS[1]["coords"], 0.30, 18.0), "Binsheng Road"),
            (along_line(ROADS[5]["coords"], 0.55, 18.0), "Minxin Road"),
            (along_line(ROADS[3]["coords"], 0.70, -21.0), "Jiangling Road"),
        ]
        for i, (where, street) in enumerate(places):
            dc = i % 3 != 2
            capacity = self.rng.choice([6, 8, 10, 12] if dc else [4, 6])
            busy = round(capacity * self.rng.uniform(0.4, 1.0))
            lon, lat = where
            if i < 8:
                lon, lat = to_lonlat(*(a + 12.0 for a in to_xy(lon, lat)))  # at the garage entrance
            self.add(
                {
                    "id": urn("EVChargingStation", f"{i + 1:02d}"),
                    "type": "EVChargingStation",
                    "name": prop(f"{street} {'DC fast' if dc else 'AC'} charging station"),
                    "location": geo(point(lon, lat)),
                    "address": address(street, lat),
                    "operator": prop(operators[i % len(operators)]),
                    "capacity": prop(capacity),
                    "availableCapacity": prop(capacity - busy, observed=OBSERVED_AT),
                    # GB/T 20234 connectors are not in the model's socketType list, hence "Other"
                    "socketType": prop(["Other"]),
                    "description": prop("GB/T 20234.3 DC connectors" if dc else "GB/T 20234.2 AC connectors"),
                    "allowedVehicleType": prop(["car"]),
                    "amperage": prop(250 if dc else 32, AMP),
                    "voltage": prop(750 if dc else 220, VLT),
                    "powerConsumption": prop(
                        round(busy * (60 if dc else 7) * self.rng.uniform(0.6, 0.95), 1), KWT, OBSERVED_AT
                    ),
                    "chargeType": prop(["temporaryPrice"]),
                    "openingHours": prop("Mo-Su 00:00-24:00"),
                    "status": prop(["working"] if busy < capacity else ["full"]),
                }
            )

    # -- energy -----------------------------------------------------------------------------------

    def build_energy(self) -> None:
        roofs = [
            b
            for b in self.buildings
            if b["category"]["value"][0] in ("office", "school", "commercial")
            and b["type"] == "Building"
            and b["name"]["type"] == "Property"
        ][:8]
        for i, building in enumerate(roofs):
            ring = building["location"]["value"]["coordinates"][0]
            c = centroid(ring)
            roof_m2 = footprint(ring).area
            peak_kw = round(roof_m2 * 0.6 * 0.2, 1)  # 60 % of the roof covered, ~200 W per m2 of panel
            self.add(
                {
                    "id": urn("SolarEnergy", f"rooftop-{i + 1:02d}"),
                    "type": "SolarEnergy",
                    "name": prop(f"Rooftop PV on {building['name']['value']}"),
                    "location": geo(point(*c)),
                    "refBuilding": rel(building["id"]),
                    "maxSolarPowerMeasure": prop(peak_kw, KWT),
                    # overcast evening: 5-15 % of peak
                    "totalActivePower": prop(
                        round(peak_kw * self.rng.uniform(0.05, 0.15), 1), KWT, OBSERVED_AT
                    ),
                    "energyGenerated": prop(round(peak_kw * self.rng.uniform(1.8, 3.2), 1), KWH, OBSERVED_AT),
                    "totalEnergyGenerated": prop(
                        round(peak_kw * self.rng.uniform(900, 3500)), KWH, OBSERVED_AT
                    ),
                    "voltage": prop(round(self.rng.uniform(398, 404), 1), VLT, OBSERVED_AT),
                    "frequency": prop(round(self.rng.uniform(49.96, 50.04), 2), HTZ, OBSERVED_AT),
                    "observationDateTime": prop(OBSERVED_AT),
                }
            )
        batteries = (
            ("jiangling-substation", "Jiangling Road substation battery", (120.2128, 30.1985), 2000, 1000),
            ("expo-center", "Expo Center battery", (120.2355, 30.2190), 500, 250),
        )
        for slug, title, where, kwh, kw in batteries:
            device_id = urn("StorageBatteryDevice", slug)
            self.add(
                {
                    "id": device_id,
                    "type": "StorageBatteryDevice",
                    "name": prop(title),
                    "location": geo(point(*where)),
                    "batteryType": prop("Li-Ion"),
                    "application": prop(["energyStorage"]),
                    "nominalCapacity": prop(kwh, KWH),
                    "usableEnergy": prop(round(kwh * 0.9), KWH),
                    "maxOutputPower": prop(kw, KWT),
                    "chargePower": prop(kw, KWT),
                    "dischargePower": prop(kw, KWT),
                    "roundTripEfficiency": prop(0.88),
                }
            )
            self.add(
                {
                    "id": urn("StorageBatteryMeasurement", slug),
                    "type": "StorageBatteryMeasurement",
                    "name": prop(f"{title} status"),
                    "location": geo(point(*where)),
                    "refStorageBatteryDevice": rel(device_id),
                    "dateObserved": prop(OBSERVED_AT),
                    "stateOfCharge": prop(round(self.rng.uniform(0.55, 0.8), 2), C62, OBSERVED_AT),
                    "stateOfHealth": prop(round(self.rng.uniform(0.93, 0.98), 2), C62, OBSERVED_AT),
                    "batteryStatus": prop("discharging", observed=OBSERVED_AT),  # shaving the evening peak
                    "activePower": prop(round(kw * self.rng.uniform(0.5, 0.8)), KWT, OBSERVED_AT),
                }
            )
        metered = [b for b in self.buildings if b["category"]["value"][0] != "residential"][:12]
        for i, building in enumerate(metered):
            ring = building["location"]["value"]["coordinates"][0]
            c = centroid(ring)
            meter_id = urn("Device", f"meter-{i + 1:02d}")
            area = footprint(ring).area * building["floorsAboveGround"]["value"]
            kw = round(area * self.rng.uniform(0.03, 0.06))  # 30-60 W per m2 of floor space at 18:00
            self.add(
                {
                    "id": meter_id,
                    "type": "Device",
                    "name": prop(f"Main electricity meter {i + 1:02d}"),
                    "category": prop(["meter"]),
                    "controlledProperty": prop(["electricityConsumption"]),
                    "controlledAsset": rel(building["id"]),
                    "location": geo(point(*c)),
                    "serialNumber": prop(f"HZM{self.rng.randint(10_000_000, 99_999_999)}"),
                    "deviceState": prop("ok"),
                    "supportedProtocol": prop(["dlms"]),
                }
            )
            self.add(
                {
                    "id": urn("ACMeasurement", f"meter-{i + 1:02d}"),
                    "type": "ACMeasurement",
                    "name": prop(f"Building load, meter {i + 1:02d}"),
                    "location": geo(point(*c)),
                    "refDevice": rel(meter_id),
                    "dateObserved": prop(OBSERVED_AT),
                    "phaseType": prop("threePhase"),
                    "totalActivePower": prop(kw, KWT, OBSERVED_AT),
                    "totalPowerFactor": prop(round(self.rng.uniform(0.9, 0.98), 2), C62, OBSERVED_AT),
                    "totalActiveEnergyImport": prop(
                        round(kw * self.rng.uniform(3000, 9000)), KWH, OBSERVED_AT
                    ),
                    "frequency": prop(round(self.rng.uniform(49.97, 50.03), 2), HTZ, OBSERVED_AT),
                }
            )

    # -- weather and air quality ------------------------------------------------------------------

    def build_weather(self) -> list[tuple[str, tuple[float, float]]]:
        stations = (
            ("qianjiang-new-city", (120.2120, 30.2500)),
            ("binjiang", (120.2030, 30.2000)),
            ("xixing-bridge", (120.1976, 30.2290)),
        )
        out = []
        for slug, where in stations:
            temperature = self.uniform(26.5, 28.0)
            humidity = round(self.rng.uniform(0.74, 0.84), 2)
            entity = self.add(
                {
                    "id": urn("WeatherObserved", slug),
                    "type": "WeatherObserved",
                    "name": prop(f"{slug.replace('-', ' ').title()} weather station"),
                    "location": geo(point(*where)),
                    "dateObserved": prop(OBSERVED_AT),
                    "temperature": prop(temperature, CEL, OBSERVED_AT),
                    "relativeHumidity": prop(humidity, C62, OBSERVED_AT),
                    # Magnus formula, so dew point and humidity agree
                    "dewPoint": prop(round(_dew_point(temperature, humidity), 1), CEL, OBSERVED_AT),
                    "atmosphericPressure": prop(self.uniform(1002.0, 1004.5), A97, OBSERVED_AT),
                    "windSpeed": prop(
                        self.uniform(2.0, 5.5 if slug == "xixing-bridge" else 3.5), MTS, OBSERVED_AT
                    ),
                    "windDirection": prop(self.rng.randint(110, 150), DD, OBSERVED_AT),
                    "precipitation": prop(self.uniform(0.0, 1.2), "MMT", OBSERVED_AT),
                    "solarRadiation": prop(self.rng.randint(60, 140), D54, OBSERVED_AT),
                    "visibility": prop(self.rng.randint(6000, 12000), MTR, OBSERVED_AT),
                    "weatherType": prop("overcast"),
                }
            )
            out.append((entity["id"], where))
        return out

    def build_air_quality(self, weather: list[tuple[str, tuple[float, float]]]) -> None:
        stations = (
            ("binjiang", "滨江", "Binjiang", (120.2045, 30.2090), "urban", True),
            ("olympic-center", "奥体中心", "Olympic Center", (120.2250, 30.2245), "urban", True),
            (
                "jiangnan-avenue",
                "江南大道路边",
                "Jiangnan Avenue roadside",
                (120.1880, 30.2080),
                "roadside",
                False,
            ),
            ("changhe", "长河", "Changhe", (120.1940, 30.1920), "urban", False),
            (
                "jiangling-road",
                "江陵路路边",
                "Jiangling Road roadside",
                (120.2124, 30.2030),
                "roadside",
                False,
            ),
            ("wentao-riverside", "闻涛路江边", "Wentao riverside", (120.2100, 30.2250), "urban", False),
            ("qianjiang-new-city", "钱江新城", "Qianjiang New City", (120.2120, 30.2520), "urban", True),
            ("citizen-center", "市民中心", "Citizen Center", (120.2010, 30.2470), "urban", True),
            ("zhijiang-road", "之江路路边", "Zhijiang Road roadside", (120.2050, 30.2395), "roadside", False),
            ("xixing-bridge", "西兴大桥", "Xixing Bridge", (120.1974, 30.2300), "roadside", False),
        )
        for slug, zh, en, where, setting, two_sources in stations:
            roadside = setting == "roadside"
            c = {
                "pm25": self.uniform(18, 34),
                "pm10": self.uniform(32, 62),
                "no2": self.uniform(45, 95) if roadside else self.uniform(22, 48),
                # photochemical ozone peaks in the afternoon; traffic NO titrates it at the kerb
                "o3": self.uniform(150, 190) if roadside else self.uniform(170, 228),
                "co": round(self.rng.uniform(0.6, 1.1) if roadside else self.rng.uniform(0.4, 0.7), 2),
                "so2": self.uniform(4, 9),
            }
            aqi, level = china_aqi(c)
            nearest = min(weather, key=lambda w: math.dist(to_xy(*w[1]), to_xy(*where)))
            device_id = urn("Device", f"aq-{slug}")
            self.add(
                {
                    "id": device_id,
                    "type": "Device",
                    "name": prop(f"{en} air quality analyser"),
                    "category": prop(["sensor"]),
                    "controlledProperty": prop(["airPollution", "temperature", "humidity"]),
                    "location": geo(point(*where)),
                    "serialNumber": prop(f"HZAQ{self.rng.randint(100_000, 999_999)}"),
                    "deviceState": prop("ok"),
                    "dateInstalled": prop(f"20{self.rng.randint(15, 22)}-03-01"),
                    "supportedProtocol": prop(["mqtt"]),
                }
            )
            _, lat = where
            pm25: Any = prop(c["pm25"], GQ, OBSERVED_AT)
            if two_sources:
                # A co-located low-cost optical counter reads high in humid air; kept as a second instance.
                pm25 = [
                    pm25,
                    prop(
                        round(c["pm25"] * self.rng.uniform(1.08, 1.25), 1),
                        GQ,
                        OBSERVED_AT,
                        "urn:ngsi-ld:Dataset:hz-lowcost-optical",
                    ),
                ]
            self.add(
                {
                    "id": urn("AirQualityObserved", slug),
                    "type": "AirQualityObserved",
                    "name": prop(f"{en} air quality station"),
                    "alternateName": prop(f"{zh}空气质量监测站"),
                    "location": geo(point(*where)),
                    "address": address(f"{en} monitoring site", lat),
                    "areaServed": prop(district_of(lat)[0]),
                    "typeofLocation": prop("outdoor"),
                    "dateObserved": prop(OBSERVED_AT),
                    "pm25": pm25,
                    "pm10": prop(c["pm10"], GQ, OBSERVED_AT),
                    "no2": prop(c["no2"], GQ, OBSERVED_AT),
                    "o3": prop(c["o3"], GQ, OBSERVED_AT),
                    "co": prop(c["co"], GP, OBSERVED_AT),
                    "so2": prop(c["so2"], GQ, OBSERVED_AT),
                    "temperature": prop(self.uniform(26.5, 28.5), CEL, OBSERVED_AT),
                    "relativeHumidity": prop(round(self.rng.uniform(0.72, 0.85), 2), C62, OBSERVED_AT),
                    "airQualityIndex": prop(aqi, observed=OBSERVED_AT),
                    "airQualityLevel": prop(level, observed=OBSERVED_AT),
                    "reliability": prop(0.9 if roadside else 0.95),
                    "refDevice": rel(device_id),
                    "refWeatherObserved": rel(nearest[0]),
                    "dataProvider": prop("Hangzhou Ecology and Environment Bureau"),
                }
            )

    # -- the monitored bridge ---------------------------------------------------------------------

    def build_bridge(self) -> None:
        road = next(r for r in ROADS if r["slug"] == BRIDGE_ROAD)
        coords = [list(c) for c in road["coords"]]
        bridge_id = urn("Bridge", BRIDGE_ROAD)
        self.add(
            {
                "id": bridge_id,
                "type": "Bridge",
                "name": lang("西兴大桥（钱江三桥）", "Xixing Bridge (Qianjiang No. 3 Bridge)"),
                "location": geo({"type": "LineString", "coordinates": coords}),
                "refRoadSegment": rel(self.segments[BRIDGE_ROAD][0]["id"]),
                "length": prop(round(line_length_m(coords) / 1000, 3), KMT),
                "width": prop(road["width"], MTR),
                "description": prop(
                    "River crossing between Binjiang and the north bank, fitted with strain, "
                    "deflection and tilt sensors for structural early warning"
                ),
            }
        )
        # (kind, controlled property, unit, normal range, how many)
        kinds = (
            ("strain", "strain", PPM, (60.0, 140.0)),
            ("displacement", "displacement", MMT, (4.0, 22.0)),
            ("tilt", "tilt", C25, (0.05, 0.35)),
        )
        for kind, controlled, unit, (lo, hi) in kinds:
            for k in range(4):
                where = along_line(coords, 0.15 + 0.7 * k / 3, 6.0 if k % 2 else -6.0)
                device_id = urn("Device", f"bridge-{kind}-{k + 1}")
                value = round(self.rng.uniform(lo, hi), 2)
                if kind == "displacement" and k == 2:
                    value = round(hi * 1.45, 2)  # mid-span deflection above the normal band: an alert to find
                self.add(
                    {
                        "id": device_id,
                        "type": "Device",
                        "name": prop(f"Xixing Bridge {kind} sensor {k + 1}"),
                        "category": prop(["sensor"]),
                        "controlledProperty": prop([controlled]),
                        "controlledAsset": rel(bridge_id),
                        "location": geo(point(*where)),
                        "serialNumber": prop(f"XXB-{kind[:3].upper()}-{self.rng.randint(1000, 9999)}"),
                        "deviceState": prop("ok"),
                        "dateInstalled": prop("2023-10-20"),
                        "supportedProtocol": prop(["mqtt"]),
                    }
                )
                self.add(
                    {
                        "id": urn("DeviceMeasurement", f"bridge-{kind}-{k + 1}"),
                        "type": "DeviceMeasurement",
                        "name": prop(f"Xixing Bridge {kind} {k + 1}"),
                        "location": geo(point(*where)),
                        "refDevice": rel(device_id),
                        "deviceType": prop("sensor"),
                        "controlledProperty": prop(controlled),
                        "measurementType": prop(kind),
                        "dateObserved": prop(OBSERVED_AT),
                        "numValue": prop(value, unit, OBSERVED_AT),
                        "unit": prop(unit),
                        "outlier": prop(False),
                    }
                )

    def build(self) -> list[dict[str, Any]]:
        self.build_roads()
        self.build_traffic()
        self.build_streetlights()
        self.build_landmarks()
        self.build_blocks()
        sites = self.build_parking()
        self.build_ev_chargers(sites)
        self.build_energy()
        weather = self.build_weather()
        self.build_air_quality(weather)
        self.build_bridge()
        return self.entities


def _dew_point(temperature_c: float, relative_humidity: float) -> float:
    a, b = 17.62, 243.12
    gamma = math.log(relative_humidity) + a * temperature_c / (b + temperature_c)
    return b * gamma / (a - gamma)


# ---------------------------------------------------------------------------------------------------
# The @context and the files


def term_iris() -> dict[str, str]:
    iris: dict[str, str] = {}
    for domain, terms in TERM_DOMAINS.items():
        for term in terms:
            if term in iris:
                raise ValueError(f"term {term!r} is listed under two domains")
            iris[term] = f"{SDM}{domain}/{term}" if domain else f"{SDM}{term}"
    for term in PROJECT_TERMS:
        iris[term] = f"{PROJECT_VOCAB}{term}"
    return iris


ATTRIBUTE_META = frozenset({"type", "value", "object", "languageMap", "datasetId", "observedAt", "unitCode"})


def terms_used(entities: Iterable[dict[str, Any]]) -> set[str]:
    """Entity types, attribute and sub-attribute names, and keys inside JSON object values."""
    used: set[str] = set()
    for entity in entities:
        used.add(entity["type"])
        for name, attr in entity.items():
            if name in ("id", "type"):
                continue
            used.add(name)
            for instance in attr if isinstance(attr, list) else [attr]:
                used.update(k for k in instance if k not in ATTRIBUTE_META)
                value = instance.get("value")
                if isinstance(value, dict) and instance["type"] == "Property" and "coordinates" not in value:
                    used.update(value)
    return used


def build_city(seed: int = SEED) -> list[dict[str, Any]]:
    return CityBuilder(seed).build()


def build_context(entities: Iterable[dict[str, Any]]) -> dict[str, Any]:
    iris = term_iris()
    used = terms_used(entities) - CORE_TERMS_USED
    missing = sorted(used - iris.keys())
    if missing:
        raise ValueError(f"terms without an IRI in TERM_DOMAINS: {', '.join(missing)}")
    return {"@context": {term: iris[term] for term in sorted(used)}}


def render_city(entities: list[dict[str, Any]]) -> str:
    # One entity per line: compact enough for the size budget, and diffs stay readable.
    lines = [json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in entities]
    return "[\n" + ",\n".join(lines) + "\n]\n"


def render_context(context: dict[str, Any]) -> str:
    return json.dumps(context, ensure_ascii=False, indent=2) + "\n"


def render_all(seed: int = SEED) -> dict[str, str]:
    """File name -> exact file text, as committed."""
    entities = build_city(seed)
    return {"city.jsonld": render_city(entities), "context.jsonld": render_context(build_context(entities))}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m civicmesh.demo.generate", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path(__file__).parent,
        help="where to write city.jsonld and context.jsonld (default: the package)",
    )
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if a file differs")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render_all().items():
        path = args.out_dir / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path} ({len(text.encode()):,} bytes)")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python -m civicmesh.demo.generate", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
