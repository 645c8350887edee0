"""The NGSI-LD entity built from a request, and masking of contact details."""

from __future__ import annotations

from civicmesh.citizen.catalogue import default_catalogue
from civicmesh.citizen.entity import ENTITY_TYPE, NGSI_LD_LOCATION, SDM, request_to_entity
from civicmesh.citizen.privacy import mask_email, mask_phone, mask_text

ROW = {
    "id": 7,
    "jurisdiction_id": "meshcity.gov.cn",
    "service_code": "pothole",
    "service_name": "道路坑洼 Pothole",
    "description": "大坑，联系我 13912345678 或 wang@example.org",
    "status_notes": None,
    "lead_department": "binjiang_gov",
    "address_string": None,
    "lat": 30.209,
    "lon": 120.2045,
    "media_url": "https://img.example/1.jpg",
    "master_id": 3,
    "first_name": "王",
    "email": "wang@example.org",
    "phone": "13912345678",
    "service_notice": "已派单",
}


def test_entity_is_normalized_expanded_and_public() -> None:
    entity = request_to_entity(
        ROW,
        default_catalogue(),
        open311_status="open",
        expected_datetime="2026-10-20T23:59:59+08:00",
        requested_datetime="2026-09-30T10:00:00+08:00",
        updated_datetime="2026-09-30T10:00:00+08:00",
    )
    assert entity["id"] == "urn:ngsi-ld:service_requests:7"
    assert (
        entity["type"]
        == ENTITY_TYPE
        == "https://smartdatamodels.org/dataModel.IssueTracking/service_requests"
    )
    for key in entity:
        if key not in ("id", "type"):
            assert key.startswith("https://"), key
            assert entity[key]["type"] in ("Property", "GeoProperty", "Relationship")
    assert entity[SDM + "service_request_id"] == {"type": "Property", "value": "7"}
    assert entity[SDM + "expected_datetime"]["value"] == {
        "@type": "DateTime",
        "@value": "2026-10-20T23:59:59+08:00",
    }
    assert entity[NGSI_LD_LOCATION]["value"] == {"type": "Point", "coordinates": [120.2045, 30.209]}
    assert entity[SDM + "agency_responsible"]["value"] == "滨江区人民政府"
    assert entity[SDM + "duplicateOf"] == {"type": "Relationship", "object": "urn:ngsi-ld:service_requests:3"}
    text = repr(entity)
    assert "13912345678" not in text and "wang@example.org" not in text and "王" not in text
    assert SDM + "status_notes" not in entity  # empty fields are left out, not sent as null


def test_masking() -> None:
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("+86 138-1234-5678") == "138****5678"
    assert mask_email("zhang.san@example.com") == "z***@example.com"
    masked = mask_text("电话 138 1234 5678, mail li.si@gov.cn")
    assert masked == "电话 138****5678, mail l***@gov.cn"
    assert mask_text(None) is None
