"""FIWARE IoT Agent provisioning bodies (`/iot/services`, `/iot/devices`), checked and normalized.

A service group gives an apikey (and resource) to a set of devices of one entity type, with shared attribute
mappings and static attributes. A device maps its `device_id` onto an entity id and type; its own attributes and
static attributes extend and override the group's. Units come as `unitCode` on the mapping or as FIWARE
`metadata.unitCode.value`.
"""

from __future__ import annotations

import re
from typing import Any

from civicmesh.errors import Problem
from civicmesh.ingest.payloads import Mapping, PayloadError, convert
from civicmesh.ngsild.model import check_name, is_uri

DEFAULT_RESOURCE = "/iot/d"
_KEY = re.compile(r"^[A-Za-z0-9_\-.:]{1,128}$")
_SERVICEPATH = re.compile(r"^(/[A-Za-z0-9_\-]*)+$")


def servicepath_of(raw: str | None) -> str:
    path = (raw or "/").strip() or "/"
    if not _SERVICEPATH.match(path) or len(path) > 256:
        raise Problem("BadRequestData", f"fiware-servicepath {path!r} must look like /district/sensors")
    return path


def _key(value: object, what: str) -> str:
    if not isinstance(value, str) or not _KEY.match(value):
        raise Problem("BadRequestData", f"{what} {value!r} must be 1-128 letters, digits, '_', '-', '.' or ':' "
                                        "(it appears in MQTT topics and URLs)")
    return value


def _unit(item: dict[str, Any]) -> str | None:
    unit = item.get("unitCode")
    if unit is None:
        meta = (item.get("metadata") or {}).get("unitCode")
        unit = meta.get("value") if isinstance(meta, dict) else meta
    if unit is not None and (not isinstance(unit, str) or not unit):
        raise Problem("BadRequestData", f"attribute {item.get('name')!r} has a unitCode that is not a string")
    return unit


def _attributes(raw: object, where: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise Problem("BadRequestData", f"{where}.attributes must be a list of {{object_id, name, type}}")
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise Problem("BadRequestData", f"each of {where}.attributes needs a 'name'")
        check_name(item["name"])
        object_id = item.get("object_id", item["name"])
        if not isinstance(object_id, str) or not object_id or "|" in object_id or "#" in object_id:
            raise Problem("BadRequestData", f"attribute {item['name']!r} has an unusable object_id {object_id!r}")
        entry = {"object_id": object_id, "name": item["name"], "type": str(item.get("type") or "Text")}
        unit = _unit(item)
        if unit:
            entry["unitCode"] = unit
        out.append(entry)
    return out


def _static(raw: object, where: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise Problem("BadRequestData", f"{where}.static_attributes must be a list of {{name, type, value}}")
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or "value" not in item:
            raise Problem("BadRequestData", f"each of {where}.static_attributes needs 'name' and 'value'")
        check_name(item["name"])
        entry = {"name": item["name"], "type": str(item.get("type") or "Text"), "value": item["value"]}
        unit = _unit(item)
        if unit:
            entry["unitCode"] = unit
        try:
            convert(Mapping(item["name"], item["name"], entry["type"]), item["name"], item["value"])
        except PayloadError as exc:
            raise Problem("BadRequestData", f"static attribute {item['name']!r}: {exc.detail}") from None
        out.append(entry)
    return out


def _context(raw: object, resolver: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not is_uri(raw):
        raise Problem("BadRequestData", f"jsonldContext {raw!r} must be the URL of a JSON-LD @context")
    resolver.term_map(raw)  # a context the broker cannot resolve offline is refused now, not at ingestion time
    return raw


def _flag(raw: object, name: str) -> bool:
    if raw is None:
        return False
    if not isinstance(raw, bool):
        raise Problem("BadRequestData", f"{name} must be true or false")
    return raw


def service_group(raw: object, resolver: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise Problem("BadRequestData", "a service group must be a JSON object")
    entity_type = raw.get("entity_type")
    if entity_type is not None:
        if not isinstance(entity_type, str) or not entity_type:
            raise Problem("BadRequestData", "entity_type must be a non-empty string")
        check_name(entity_type, "entity type")
    resource = raw.get("resource", DEFAULT_RESOURCE)
    if not isinstance(resource, str) or not resource.startswith("/"):
        raise Problem("BadRequestData", f"resource {resource!r} must be a path such as /iot/d")
    return {"apikey": _key(raw.get("apikey"), "apikey"), "resource": resource, "entity_type": entity_type,
            "attributes": _attributes(raw.get("attributes"), "service"),
            "static_attributes": _static(raw.get("static_attributes"), "service"),
            "explicitAttrs": _flag(raw.get("explicitAttrs"), "explicitAttrs"),
            "jsonldContext": _context(raw.get("jsonldContext", raw.get("@context")), resolver),
            "description": str(raw.get("description") or "")}


def device(raw: object, resolver: Any, groups: list[dict[str, Any]]) -> dict[str, Any]:
    """Normalize one device; `groups` are the service groups of its service and service path."""
    if not isinstance(raw, dict):
        raise Problem("BadRequestData", "a device must be a JSON object")
    device_id = _key(raw.get("device_id"), "device_id")
    apikey = raw.get("apikey")
    if apikey is None:
        if len({g["apikey"] for g in groups}) != 1:
            which = "no service group" if not groups else "several service groups"
            raise Problem("BadRequestData", f"device {device_id!r} has no apikey and its service path has {which}; "
                                            "give the device an apikey")
        apikey = groups[0]["apikey"]
    apikey = _key(apikey, "apikey")
    group = next((g for g in groups if g["apikey"] == apikey), None)
    entity_type = raw.get("entity_type") or (group or {}).get("entity_type")
    if not isinstance(entity_type, str) or not entity_type:
        raise Problem("BadRequestData", f"device {device_id!r} needs an entity_type (or a service group with one)")
    check_name(entity_type, "entity type")
    entity_name = raw.get("entity_name") or f"urn:ngsi-ld:{entity_type}:{device_id}"
    if not is_uri(entity_name):
        raise Problem("BadRequestData", f"entity_name {entity_name!r} must be a URI such as urn:ngsi-ld:Type:id")
    transport = raw.get("transport", "MQTT")
    if transport not in ("MQTT", "HTTP"):
        raise Problem("BadRequestData", f"transport {transport!r} must be MQTT or HTTP")
    return {"device_id": device_id, "apikey": apikey, "entity_name": entity_name, "entity_type": entity_type,
            "protocol": str(raw.get("protocol") or "PDI-IoTA-UltraLight"), "transport": transport,
            "attributes": _attributes(raw.get("attributes"), "device"),
            "static_attributes": _static(raw.get("static_attributes"), "device"),
            "explicitAttrs": _flag(raw.get("explicitAttrs"), "explicitAttrs") if "explicitAttrs" in raw else None,
            "jsonldContext": _context(raw.get("jsonldContext", raw.get("@context")), resolver)}


def mappings_of(group: dict[str, Any] | None, dev: dict[str, Any]) -> dict[str, Mapping]:
    """object_id -> Mapping, the device's own attributes overriding its group's."""
    out: dict[str, Mapping] = {}
    for item in [*((group or {}).get("attributes") or []), *dev.get("attributes", [])]:
        out[item["object_id"]] = Mapping(item["object_id"], item["name"], item["type"], item.get("unitCode"))
    return out


def static_attributes_of(group: dict[str, Any] | None, dev: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Concise NGSI-LD attributes for the static attributes of a device (device overriding group)."""
    out: dict[str, dict[str, Any]] = {}
    for item in [*((group or {}).get("static_attributes") or []), *dev.get("static_attributes", [])]:
        attribute = convert(Mapping(item["name"], item["name"], item["type"]), item["name"], item["value"])
        if item.get("unitCode") and attribute["type"] == "Property":
            attribute["unitCode"] = item["unitCode"]
        out[item["name"]] = attribute
    return out
