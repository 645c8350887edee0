"""Measurement payloads: UltraLight 2.0 (`t|25.1|h|40`) and JSON, mapped onto concise NGSI-LD attributes.

UltraLight 2.0: `key|value|key|value`; several measurements in one message are separated by `#`; a measurement may
start with its timestamp (`2025-06-16T10:00:00Z|t|25.1`) or carry it as the `TimeInstant` key. JSON: an object of
key -> value (or a list of such objects); a value may be `{"value": v, "unitCode": "CEL"}` to state its unit,
which must then agree with the unit the attribute was provisioned with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from civicmesh.ngsild.model import is_datetime

TIMESTAMP_KEY = "TimeInstant"


class PayloadError(ValueError):
    """A measurement the agent cannot store; `reason` is the dead-letter category."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def parse_ultralight(text: str) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for group in text.strip().split("#"):
        group = group.strip()
        if not group:
            continue
        parts = group.split("|")
        measure: dict[str, Any] = {}
        if len(parts) % 2 == 1:
            if not is_datetime(parts[0]):
                raise PayloadError("malformed", f"UltraLight measurement {group[:80]!r} has an odd number of "
                                                "fields and does not start with a timestamp")
            measure[TIMESTAMP_KEY] = parts[0]
            parts = parts[1:]
        for key, value in zip(parts[::2], parts[1::2], strict=True):
            if not key:
                raise PayloadError("malformed", f"UltraLight measurement {group[:80]!r} has an empty key")
            measure[key] = value
        if not measure or set(measure) == {TIMESTAMP_KEY}:
            raise PayloadError("malformed", f"UltraLight measurement {group[:80]!r} has no values")
        groups.append(measure)
    if not groups:
        raise PayloadError("malformed", "the UltraLight payload is empty")
    return groups


def parse_json(raw: bytes) -> list[dict[str, Any]]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise PayloadError("malformed", f"the JSON payload is not valid JSON: {exc}") from None
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(i, dict) and i for i in items):
        raise PayloadError("malformed", "a JSON measurement must be a non-empty object of attribute -> value "
                                        "(or a list of them)")
    return items


def parse(raw: bytes, fmt: str) -> list[dict[str, Any]]:
    """fmt: "ul", "json" or "auto" (JSON when the payload starts with `{` or `[`)."""
    if fmt == "auto":
        fmt = "json" if raw.lstrip()[:1] in (b"{", b"[") else "ul"
    if fmt == "json":
        return parse_json(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("malformed", "the UltraLight payload is not UTF-8 text") from None
    return parse_ultralight(text)


@dataclass(frozen=True)
class Mapping:
    """One provisioned attribute: the key the device sends, its NGSI-LD name, its type and its unit."""

    object_id: str
    name: str
    type: str = "Number"
    unit_code: str | None = None


NUMERIC_TYPES = {"Number", "Float", "Integer", "number", "float", "integer", "Double", "double"}


def _number(key: str, raw: Any, integer: bool) -> float | int:
    if isinstance(raw, bool):
        raise PayloadError("bad_value", f"attribute {key!r} should be a number, got {raw!r}")
    if isinstance(raw, int | float):
        value: float | int = raw
    else:
        try:
            value = float(str(raw).strip())
        except ValueError:
            raise PayloadError("bad_value", f"attribute {key!r} should be a number, got {str(raw)[:40]!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise PayloadError("bad_value", f"attribute {key!r} is not a finite number")
    return int(value) if integer else value


def convert(mapping: Mapping, key: str, raw: Any) -> dict[str, Any]:
    kind = mapping.type
    if kind in NUMERIC_TYPES:
        return {"type": "Property", "value": _number(key, raw, kind.lower() == "integer")}
    if kind in ("Boolean", "boolean", "Bool"):
        if isinstance(raw, bool):
            return {"type": "Property", "value": raw}
        text = str(raw).strip().lower()
        if text not in ("true", "false", "1", "0", "on", "off"):
            raise PayloadError("bad_value", f"attribute {key!r} should be a boolean, got {str(raw)[:40]!r}")
        return {"type": "Property", "value": text in ("true", "1", "on")}
    if kind in ("DateTime", "ISO8601"):
        if not is_datetime(raw):
            raise PayloadError("bad_value", f"attribute {key!r} should be an ISO 8601 DateTime, got {raw!r}")
        return {"type": "Property", "value": raw}
    if kind == "geo:point":
        try:
            lat, lon = (float(p) for p in str(raw).split(","))
        except ValueError:
            raise PayloadError("bad_value", f"attribute {key!r} should be 'lat, lon', got {str(raw)[:40]!r}") from None
        return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}
    if kind in ("geo:json", "GeoProperty"):
        value = raw if isinstance(raw, dict) else _json_text(key, raw)
        return {"type": "GeoProperty", "value": value}
    if kind == "Relationship":
        return {"type": "Relationship", "object": str(raw)}
    return {"type": "Property", "value": raw}


def _json_text(key: str, raw: Any) -> Any:
    try:
        return orjson.loads(str(raw))
    except orjson.JSONDecodeError:
        raise PayloadError("bad_value", f"attribute {key!r} should hold GeoJSON") from None


def to_attributes(measure: dict[str, Any], mappings: dict[str, Mapping], observed_at: str, *,
                  explicit: bool = False) -> dict[str, Any]:
    """Concise NGSI-LD attributes for one measurement, each with observedAt (the measurement's own timestamp
    when it has one, else the arrival time) and the provisioned unitCode.

    Keys without a mapping pass through under their own name (FIWARE's default) unless `explicit` is set, in
    which case they are dropped.
    """
    stamp = measure.get(TIMESTAMP_KEY) or observed_at
    if not is_datetime(stamp):
        raise PayloadError("bad_value", f"the measurement timestamp {str(stamp)[:40]!r} is not an ISO 8601 DateTime")
    out: dict[str, Any] = {}
    for key, raw in measure.items():
        if key == TIMESTAMP_KEY:
            continue
        mapping = mappings.get(key)
        if mapping is None:
            if explicit:
                continue
            mapping = Mapping(key, key, "Text")
        sent_unit = None
        if isinstance(raw, dict) and "value" in raw:
            sent_unit = raw.get("unitCode")
            raw = raw["value"]
        if sent_unit is not None and mapping.unit_code is not None and sent_unit != mapping.unit_code:
            raise PayloadError("unit_mismatch", f"attribute {key!r} arrived in {sent_unit!r} but is provisioned "
                                                f"in {mapping.unit_code!r}")
        if raw is None:
            raise PayloadError("bad_value", f"attribute {key!r} is null")
        attribute = convert(mapping, key, raw)
        attribute["observedAt"] = stamp
        unit = mapping.unit_code or sent_unit
        if unit and attribute["type"] == "Property":
            attribute["unitCode"] = unit
        out[mapping.name] = attribute
    if not out:
        raise PayloadError("malformed", "the measurement has no provisioned attributes")
    return out
