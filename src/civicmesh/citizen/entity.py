"""Each service request as an NGSI-LD entity (Smart Data Models, IssueTracking `service_requests`).

The entity is what the rest of the city sees (subscriptions, the map, the ledger), so it carries the public
fields of the Open311 request and never the reporter's name, e-mail or phone. Attribute names are expanded to
full IRIs and the entity is in normalized form, as the broker's `upsert(tenant, entity)` expects.
"""

from __future__ import annotations

from typing import Any

from civicmesh.citizen.catalogue import Catalogue
from civicmesh.citizen.privacy import mask_text

SDM = "https://smartdatamodels.org/dataModel.IssueTracking/"
ENTITY_TYPE = SDM + "service_requests"
NGSI_LD_LOCATION = "https://uri.etsi.org/ngsi-ld/location"


def entity_id(service_request_id: int | str) -> str:
    return f"urn:ngsi-ld:service_requests:{service_request_id}"


def request_to_entity(
    request: dict[str, Any],
    catalogue: Catalogue,
    *,
    open311_status: str,
    expected_datetime: str | None,
    requested_datetime: str,
    updated_datetime: str,
) -> dict[str, Any]:
    """Build the normalized, expanded NGSI-LD entity for one stored request.

    `request` is a row of the citizen store; the datetimes are the same strings Open311 shows (with offset).
    """

    def prop(value: Any) -> dict[str, Any]:
        return {"type": "Property", "value": value}

    def when(value: str) -> dict[str, Any]:
        return {"type": "Property", "value": {"@type": "DateTime", "@value": value}}

    entity: dict[str, Any] = {
        "id": entity_id(request["id"]),
        "type": ENTITY_TYPE,
        SDM + "service_request_id": prop(str(request["id"])),
        SDM + "jurisdiction_id": prop(request.get("jurisdiction_id") or catalogue.jurisdiction_id),
        SDM + "service_code": prop(request["service_code"]),
        SDM + "service_name": prop(request.get("service_name") or request["service_code"]),
        SDM + "status": prop(open311_status),
        SDM + "requested_datetime": when(requested_datetime),
        SDM + "updated_datetime": when(updated_datetime),
    }
    optional = {
        "description": mask_text(request.get("description")),
        "status_notes": mask_text(request.get("status_notes")),
        "service_notice": request.get("service_notice"),
        "agency_responsible": catalogue.department_name(request.get("lead_department")) or None,
        "address": mask_text(request.get("address_string")),
        "address_id": request.get("address_id"),
        "zipcode": request.get("zipcode"),
        "media_url": request.get("media_url"),
    }
    for field, value in optional.items():
        if value:
            entity[SDM + field] = prop(value)
    if expected_datetime:
        entity[SDM + "expected_datetime"] = when(expected_datetime)
    if request.get("lat") is not None and request.get("lon") is not None:
        entity[NGSI_LD_LOCATION] = {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [request["lon"], request["lat"]]},
        }
    if request.get("master_id"):
        entity[SDM + "duplicateOf"] = {"type": "Relationship", "object": entity_id(request["master_id"])}
    return entity
