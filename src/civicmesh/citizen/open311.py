"""Open311 GeoReport v2 wire formats: XML (required by the standard) and JSON (the Spark convention of it).

Lists are top-level JSON arrays; in XML a list is a root element with one child per item. Errors are a list
of {code, description} in either format.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.responses import Response

from civicmesh.citizen.catalogue import Catalogue, Service
from civicmesh.citizen.privacy import mask_text
from civicmesh.citizen.service import CitizenDesk, SubmitInput

FORMATS = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}
SUBMIT_FIELDS = {
    "api_key",
    "jurisdiction_id",
    "service_code",
    "lat",
    "long",
    "address_string",
    "address_id",
    "email",
    "device_id",
    "account_id",
    "first_name",
    "last_name",
    "phone",
    "description",
    "media_url",
    "zipcode",
}


class FormError(ValueError):
    pass


def _xml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _to_xml(parent: ET.Element, tag: str, value: Any) -> None:
    element = ET.SubElement(parent, tag)
    if isinstance(value, dict):
        for key, inner in value.items():
            _to_xml(element, key, inner)
    elif isinstance(value, list):
        # The standard names the children of its lists: attributes/attribute, values/value, keywords as text.
        child = {
            "attributes": "attribute",
            "values": "value",
            "formats": "format",
            "endpoints": "endpoint",
            "errors": "error",
        }.get(tag, "item")
        for inner in value:
            _to_xml(element, child, inner)
    else:
        element.text = _xml_value(value)


def render(fmt: str, root: str, item: str | None, body: Any, status: int = 200) -> Response:
    """`body` is a list (rendered as root/item*) or a dict (rendered as root with fields)."""
    if fmt == "json":
        return Response(orjson.dumps(body), status_code=status, media_type=FORMATS["json"])
    element = ET.Element(root)
    if isinstance(body, list):
        for entry in body:
            _to_xml(element, item or "item", entry)
    else:
        for key, value in body.items():
            _to_xml(element, key, value)
    text = b'<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(
        element, encoding="utf-8", xml_declaration=False
    )
    return Response(text, status_code=status, media_type=FORMATS["xml"])


def errors(
    fmt: str,
    status: int,
    description: str,
    code: int | str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    response = render(
        fmt if fmt in FORMATS else "json",
        "errors",
        "error",
        [{"code": code if code is not None else status, "description": description}],
        status,
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def service_list(catalogue: Catalogue) -> list[dict[str, Any]]:
    return [
        {
            "service_code": s.code,
            "service_name": s.name,
            "description": s.description,
            "metadata": s.metadata,
            "type": "realtime",
            "keywords": ", ".join(s.keywords),
            "group": s.group,
        }
        for s in catalogue.services.values()
    ]


def service_definition(service: Service) -> dict[str, Any]:
    return {
        "service_code": service.code,
        "attributes": [
            {
                "variable": True,
                "code": a.code,
                "datatype": a.datatype,
                "required": a.required,
                "datatype_description": a.datatype_description or None,
                "order": a.order,
                "description": a.description,
                "values": [{"key": k, "name": n} for k, n in a.values],
            }
            for a in service.attributes
        ],
    }


def public_request(desk: CitizenDesk, row: dict[str, Any]) -> dict[str, Any]:
    """The GET Service Request fields; never the reporter's name, e-mail or phone."""
    catalogue = desk.catalogue
    return {
        "service_request_id": str(row["id"]),
        "status": desk.open311_status(row),
        "status_notes": mask_text(row.get("status_notes")),
        "service_name": row.get("service_name"),
        "service_code": row["service_code"],
        "description": mask_text(row.get("description")),
        "agency_responsible": catalogue.department_name(row.get("lead_department")) or None,
        "service_notice": row.get("service_notice"),
        "requested_datetime": desk.local_text(row["requested_at"]),
        "updated_datetime": desk.local_text(row["updated_at"]),
        "expected_datetime": desk.local_text(row.get("expected_at")),
        "address": mask_text(row.get("address_string")),
        "address_id": row.get("address_id"),
        "zipcode": row.get("zipcode"),
        "lat": row.get("lat"),
        "long": row.get("lon"),
        "media_url": row.get("media_url"),
    }


def parse_submit_form(body: bytes) -> SubmitInput:
    """Parse an application/x-www-form-urlencoded body strictly (UTF-8, every pair `name=value`)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormError(f"the form body is not UTF-8 (byte {exc.start})") from exc
    try:
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            encoding="utf-8",
            errors="strict",
            max_num_fields=200,
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormError(f"malformed form data: {exc}") from exc
    form = SubmitInput()
    for name, value in pairs:
        if name.startswith("attribute["):
            # attribute[code]=v, or attribute[code][]=v1&attribute[code][]=v2 for multivaluelist
            inner = name[len("attribute[") :]
            code, _, rest = inner.partition("]")
            if not code or rest not in ("", "[]"):
                raise FormError(
                    f"malformed attribute field name {name!r}; use attribute[code] or attribute[code][]"
                )
            form.attributes.setdefault(code, []).append(value)
        elif name in SUBMIT_FIELDS:
            if getattr(form, name) not in (None, ""):
                raise FormError(f"field {name!r} is given more than once")
            setattr(form, name, value)
        # Unknown fields are ignored, as the standard leaves room for extensions.
    return form
