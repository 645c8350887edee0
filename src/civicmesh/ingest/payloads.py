"""Measurement payloads: UltraLight 2.0 (`t|25.1|h|40`) and JSON, mapped onto NGSI-LD attributes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


class PayloadError(ValueError):
    pass


def parse_ultralight(text: str) -> list[dict[str, str]]:
    """UltraLight 2.0: `key|value|key|value`, several measures separated by `#`, an optional leading timestamp
    group `TimeInstant|2025-06-16T10:00:00Z`."""
    groups = []
    for group in text.strip().split("#"):
        if not group:
            continue
        parts = group.split("|")
        if len(parts) % 2:
            raise PayloadError(f"UltraLight group {group!r} has an odd number of fields (key|value pairs expected)")
        pairs = {}
        for key, value in zip(parts[::2], parts[1::2], strict=True):
            if not key:
                raise PayloadError(f"UltraLight group {group!r} has an empty key")
            pairs[key] = value
        groups.append(pairs)
    if not groups:
        raise PayloadError("the UltraLight payload is empty")
    return groups


def parse_json(raw: bytes) -> list[dict[str, Any]]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"the JSON payload is malformed: {exc}") from exc
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(i, dict) and i for i in items):
        raise PayloadError("a JSON measurement is an object of attribute -> value (or a list of them)")
    return items


@dataclass(frozen=True)
class Mapping:
    """One attribute of a device: the key it sends, the NGSI-LD name, the type, and the unit."""

    object_id: str
    name: str
    type: str = "Number"
    unit_code: str | None = None


def to_attributes(measure: dict[str, Any], mappings: dict[str, Mapping], observed_at: str) -> dict[str, Any]:
    """Concise NGSI-LD attributes for one measurement; unknown keys and bad numbers raise PayloadError."""
    measure = dict(measure)
    stamp = measure.pop("TimeInstant", None) or observed_at
    out: dict[str, Any] = {}
    for key, raw in measure.items():
        mapping = mappings.get(key)
        if mapping is None:
            raise PayloadError(f"attribute {key!r} is not provisioned for this device")
        value: Any = raw
        if mapping.type in ("Number", "Float", "Integer"):
            try:
                value = float(raw) if not isinstance(raw, (int, float)) or isinstance(raw, bool) else raw
            except (TypeError, ValueError):
                raise PayloadError(f"attribute {key!r} should be a number, got {raw!r}") from None
            if isinstance(value, bool):
                raise PayloadError(f"attribute {key!r} should be a number, got {raw!r}")
            if mapping.type == "Integer":
                value = int(value)
        elif mapping.type == "Boolean":
            value = raw if isinstance(raw, bool) else str(raw).lower() in ("true", "1", "on")
        attribute: dict[str, Any] = {"type": "Property", "value": value, "observedAt": stamp}
        if mapping.unit_code:
            attribute["unitCode"] = mapping.unit_code
        out[mapping.name] = attribute
    return out
