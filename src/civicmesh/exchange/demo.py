"""The demo city's organizations: who owns which of its entities, and what they offer each other.

`civicmesh serve --demo` seeds these once (idempotent): four owners (three city departments and an energy
enterprise) and two consumers without data of their own (a logistics enterprise and a research institute), each
demo entity owned by the department responsible for its type, an open-data product (air quality, public) and a
product offered on request (live traffic flow). No API keys are made: the README's walk-through issues them with
the bootstrap admin key, as an operator would.
"""

from __future__ import annotations

import logging
from typing import Any

from civicmesh.access import Caller
from civicmesh.exchange.identity import iso, utcnow

log = logging.getLogger("civicmesh.exchange")

ORGANIZATIONS: list[dict[str, Any]] = [
    {"id": "hz-transport", "kind": "department", "sector": "transport",
     "name": {"zh": "滨江区交通运输局", "en": "Binjiang Transport Bureau"}},
    {"id": "hz-environment", "kind": "department", "sector": "environment",
     "name": {"zh": "滨江区生态环境分局", "en": "Binjiang Ecology and Environment Bureau"}},
    {"id": "hz-urban", "kind": "department", "sector": "urban-management",
     "name": {"zh": "滨江区城市管理局", "en": "Binjiang Urban Management Bureau"}},
    {"id": "hz-energy", "kind": "enterprise", "sector": "energy",
     "name": {"zh": "滨江综合能源服务公司", "en": "Binjiang Integrated Energy Services"}},
    {"id": "hz-logistics", "kind": "enterprise", "sector": "logistics",
     "name": {"zh": "城配物流有限公司", "en": "City Freight Logistics Ltd."}},
    {"id": "zju-urban-lab", "kind": "research_institute", "sector": "research",
     "name": {"zh": "城市大脑联合实验室", "en": "Urban Brain Joint Laboratory"}},
]

OWNER_OF_TYPE = {
    "TrafficFlowObserved": "hz-transport", "RoadSegment": "hz-transport", "Road": "hz-transport",
    "OffStreetParking": "hz-transport", "Bridge": "hz-transport",
    "AirQualityObserved": "hz-environment", "WeatherObserved": "hz-environment",
    "Streetlight": "hz-urban", "StreetlightGroup": "hz-urban", "Building": "hz-urban",
    "SolarEnergy": "hz-energy", "StorageBatteryDevice": "hz-energy", "StorageBatteryMeasurement": "hz-energy",
    "EVChargingStation": "hz-energy", "ACMeasurement": "hz-energy", "DeviceMeasurement": "hz-energy",
    "Device": "hz-energy",
}

# Binjiang district and the river bank opposite, roughly: the area the traffic product covers (every demo road).
BINJIANG = {"type": "Polygon", "coordinates": [[[120.14, 30.17], [120.25, 30.17], [120.25, 30.27],
                                                [120.14, 30.27], [120.14, 30.17]]]}


def products(context_url: str) -> list[tuple[str, dict[str, Any]]]:
    """(provider, product body) pairs, in the demo city's own @context."""
    return [
        ("hz-environment", {
            "title": {"zh": "滨江空气质量（开放数据）", "en": "Binjiang air quality (open data)"},
            "description": {"zh": "各监测站实时空气质量指数与污染物浓度",
                            "en": "Live air-quality index and pollutant levels at every station"},
            "sector": "environment", "updateFrequency": "continuous",
            "licence": "https://creativecommons.org/licenses/by/4.0/", "tenant": "", "public": True,
            "entityTypes": ["AirQualityObserved"],
            "attributes": ["name", "airQualityIndex", "airQualityLevel", "pm25", "pm10", "no2", "o3", "location",
                           "dateObserved"],
            "keywords": ["air", "空气", "open data"], "@context": context_url,
            "offer": {"permission": [{"action": "read"}]}}),
        ("hz-transport", {
            "title": {"zh": "滨江实时路况", "en": "Binjiang live traffic flow"},
            "description": {"zh": "主干道各车道实时车流量、平均车速与占有率",
                            "en": "Live vehicle counts, average speeds and occupancy per lane on main roads"},
            "sector": "transport", "updateFrequency": "continuous",
            "licence": "https://creativecommons.org/licenses/by-nc/4.0/", "tenant": "", "area": BINJIANG,
            "entityTypes": ["TrafficFlowObserved"],
            "attributes": ["intensity", "averageVehicleSpeed", "occupancy", "congested", "location",
                           "dateObserved", "laneDirection"],
            "keywords": ["traffic", "路况", "logistics"], "requestTimeout": "P7D", "@context": context_url,
            "offer": {"permission": [{"action": "read", "constraint": [
                {"leftOperand": "purpose", "operator": "isA", "rightOperand": "public-service"}]}],
                "prohibition": [{"action": "read", "constraint": [
                    {"leftOperand": "purpose", "operator": "isA", "rightOperand": "commercial"}]}]}}),
    ]


async def seed(exchange: Any, entity_ids_by_type: dict[str, list[str]], context_url: str) -> None:
    """Organizations, ownership and products of the demo city; what exists already is left alone."""
    for body in ORGANIZATIONS:
        if await exchange.org(body["id"]) is None:
            await exchange.create_org({**body, "tenants": [""]})
    at = iso(utcnow())
    claimed = 0
    for type_name, ids in entity_ids_by_type.items():
        owner = OWNER_OF_TYPE.get(type_name)
        if owner:
            claimed += await exchange.store.claim_unowned("", ids, owner, at)
    offered = {(p["provider"], p["title"]["en"]) for p in await exchange.store.list_products()}
    for provider, body in products(context_url):
        if (provider, body["title"]["en"]) not in offered:
            await exchange.create_product(Caller("demo-seed", provider, frozenset({"data_steward"})), body)
    if claimed:
        log.info("demo city: %d entities assigned to their departments; organizations: %s", claimed,
                 ", ".join(o["id"] for o in ORGANIZATIONS))
