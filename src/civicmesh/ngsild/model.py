"""The entity model: parse NGSI-LD bodies (normalized or concise) into the stored, expanded form.

Stored form of an entity (`doc`), all names expanded to IRIs:

    {"id": "urn:...", "type": [IRI, ...], "scope": [...]?, "createdAt": ..., "modifiedAt": ...,
     "attrs": {IRI: [instance, ...]}}

An instance is a dict of core members (`type`, `value`, `object`, `languageMap`, `json`, `vocab`, `valueList`,
`objectList`, `datasetId`, `observedAt`, `unitCode`, `createdAt`, `modifiedAt`) plus sub-attributes under their
IRIs (always one instance each). A core member never contains ':' and an IRI always does, so they cannot clash.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

from civicmesh.errors import Problem
from civicmesh.ngsild.context import TermMap

NULL_URI = "urn:ngsi-ld:null"

ATTRIBUTE_TYPES = {
    "Property": "value", "Relationship": "object", "GeoProperty": "value", "LanguageProperty": "languageMap",
    "JsonProperty": "json", "VocabProperty": "vocab", "ListProperty": "valueList",
    "ListRelationship": "objectList",
}
# Concise form: the member that gives the attribute type away.
_MEMBER_TYPES = {"object": "Relationship", "languageMap": "LanguageProperty", "json": "JsonProperty",
                 "vocab": "VocabProperty", "valueList": "ListProperty", "objectList": "ListRelationship"}
VALUE_MEMBERS = set(ATTRIBUTE_TYPES.values())
_OTHER_MEMBERS = {m: tuple(VALUE_MEMBERS - {m}) for m in VALUE_MEMBERS}
SYSTEM_MEMBERS = {"createdAt", "modifiedAt", "deletedAt", "instanceId"}
META_MEMBERS = {"datasetId", "observedAt", "unitCode", "lang"}
CORE_MEMBERS = {"type"} | VALUE_MEMBERS | SYSTEM_MEMBERS | META_MEMBERS | {
    "previousValue", "previousObject", "previousLanguageMap", "previousJson", "previousVocab",
    "previousValueList", "previousObjectList"}
ENTITY_MEMBERS = {"id", "@id", "type", "@type", "@context", "scope", "createdAt", "modifiedAt", "deletedAt"}
GEOMETRY_TYPES = {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"}
GEO_CORE_NAMES = {"location", "observationSpace", "operationSpace"}

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]+$")
_FORBIDDEN_NAME = re.compile(r"[\s<>\"'=;()\\{},]|^@")
_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$")


_SECOND: tuple[int, str] = (0, "")  # the current second and its text: formatting it once a second, not per call


def now_iso() -> str:
    """The time now as NGSI-LD writes it (UTC, microseconds): hot, once per ingested observation."""
    global _SECOND
    now = time.time()
    whole = int(now)
    second, text = _SECOND
    if whole != second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _SECOND = (whole, text)
    return f"{text}.{int((now - whole) * 1_000_000):06d}Z"


def clone(doc: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a stored entity (JSON values only): an orjson round trip, ~5x cheaper than copy.deepcopy."""
    return orjson.loads(orjson.dumps(doc))  # type: ignore[no-any-return]


_KNOWN_URIS: set[str] = set()
_KNOWN_NAMES: set[str] = set()


def is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return False
    if value in _KNOWN_URIS:
        return True
    if not _URI.match(value):
        return False
    if len(_KNOWN_URIS) < 100_000:  # relationship targets repeat a lot; remembering them halves parse time
        _KNOWN_URIS.add(value)
    return True


def is_datetime(value: object) -> bool:
    return isinstance(value, str) and bool(_DATETIME.match(value))


def check_name(name: str, where: str = "attribute") -> None:
    if name in _KNOWN_NAMES:
        return
    if not name or _FORBIDDEN_NAME.search(name):
        raise Problem("BadRequestData", f"{where} name {name!r} contains characters NGSI-LD does not allow")
    if len(_KNOWN_NAMES) < 10_000:
        _KNOWN_NAMES.add(name)


def check_entity_id(entity_id: object) -> str:
    if not isinstance(entity_id, str) or not entity_id:
        raise Problem("BadRequestData", "the entity id is missing or not a string")
    if not is_uri(entity_id):
        raise Problem("BadRequestData", f"the entity id {entity_id!r} is not a URI")
    return entity_id


def is_geometry(value: object) -> bool:
    return isinstance(value, dict) and value.get("type") in GEOMETRY_TYPES and "coordinates" in value


def validate_geometry(value: object, name: str) -> dict[str, Any]:
    """Check a GeoJSON geometry well enough to index it; say exactly what is wrong."""
    from civicmesh.ngsild.geometry import geometry_problem

    problem = geometry_problem(value)
    if problem:
        raise Problem("BadRequestData", f"attribute {name!r}: invalid GeoJSON geometry: {problem}")
    return value  # type: ignore[return-value]


class EntityParser:
    """Parses request bodies against one compiled @context."""

    def __init__(self, terms: TermMap, now: str | None = None) -> None:
        self.terms = terms
        self.now = now or now_iso()

    # -- entities -----------------------------------------------------------------------------------------
    def entity(self, body: object, *, require_type: bool = True, entity_id: str | None = None) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise Problem("BadRequestData", "an entity must be a JSON object")
        raw_id = body.get("id", body.get("@id"))
        if entity_id is not None:
            if raw_id is not None and raw_id != entity_id:
                raise Problem("BadRequestData", f"the body's id {raw_id!r} differs from the id in the URL")
            raw_id = entity_id
        doc: dict[str, Any] = {"id": check_entity_id(raw_id)}
        raw_type = body.get("type", body.get("@type"))
        if raw_type is None:
            if require_type:
                raise Problem("BadRequestData", f"entity {raw_id} has no type")
            doc["type"] = []
        else:
            doc["type"] = self.types(raw_type)
        if "scope" in body:
            doc["scope"] = parse_scope(body["scope"])
        doc["createdAt"] = self.now
        doc["modifiedAt"] = self.now
        doc["attrs"] = self.attributes({k: v for k, v in body.items() if k not in ENTITY_MEMBERS})
        return doc

    def types(self, raw: object) -> list[str]:
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise Problem("BadRequestData", "the entity type list is empty")
        result: list[str] = []
        for item in items:
            if not isinstance(item, str) or not item:
                raise Problem("BadRequestData", f"entity type {item!r} is not a non-empty string")
            check_name(item, "entity type")
            iri = self.terms.expand(item)
            if iri.startswith("@"):
                raise Problem("BadRequestData", f"entity type {item!r} expands to the JSON-LD keyword {iri}")
            if iri not in result:
                result.append(iri)
        return result

    # -- attributes ---------------------------------------------------------------------------------------
    def attributes(self, fragment: dict[str, Any], *, allow_null: bool = False) -> dict[str, list[dict[str, Any]]]:
        attrs: dict[str, list[dict[str, Any]]] = {}
        for name, raw in fragment.items():
            check_name(name)
            iri = self.terms.expand(name)
            if iri.startswith("@"):
                raise Problem("BadRequestData", f"attribute {name!r} expands to the JSON-LD keyword {iri}")
            attrs[iri] = self.instances(name, raw, allow_null=allow_null)
        return attrs

    def instances(self, name: str, raw: object, *, allow_null: bool = False) -> list[dict[str, Any]]:
        if isinstance(raw, list) and raw and all(_looks_like_attribute(i) for i in raw):
            items = [self.instance(name, i, allow_null=allow_null) for i in raw]
            seen: set[str | None] = set()
            for item in items:
                key = item.get("datasetId")
                if key in seen:
                    which = f"datasetId {key}" if key else "the default instance"
                    raise Problem("BadRequestData", f"attribute {name!r} has {which} more than once")
                seen.add(key)
            return items
        return [self.instance(name, raw, allow_null=allow_null)]

    def instance(self, name: str, raw: object, *, allow_null: bool = False, sub: bool = False) -> dict[str, Any]:
        if raw is None:
            raise Problem("BadRequestData", f"attribute {name!r} is null; use \"urn:ngsi-ld:null\" to delete")
        if not isinstance(raw, dict):
            return self._finish(name, {"type": _concise_type(name, raw), "value": raw}, allow_null)
        if is_geometry(raw) and "value" not in raw:
            return self._finish(name, {"type": "GeoProperty", "value": raw}, allow_null)
        attr_type = raw.get("type")
        if attr_type is None:
            attr_type = next((t for m, t in _MEMBER_TYPES.items() if m in raw), None)
            if attr_type is None:
                if "value" in raw:
                    attr_type = "GeoProperty" if (is_geometry(raw["value"]) or name in GEO_CORE_NAMES) \
                        else "Property"
                else:
                    # A concise Property whose value is a JSON object.
                    return self._finish(name, {"type": "Property", "value": raw}, allow_null)
        elif attr_type not in ATTRIBUTE_TYPES:
            if "value" not in raw and not any(m in raw for m in VALUE_MEMBERS):
                # No NGSI-LD type and no value member: a concise Property holding a JSON object.
                return self._finish(name, {"type": "Property", "value": raw}, allow_null)
            raise Problem("BadRequestData", f"attribute {name!r} has unknown type {attr_type!r}")
        inst: dict[str, Any] = {"type": attr_type}
        for key, value in raw.items():
            if key == "type" or key in SYSTEM_MEMBERS:
                continue
            if key in VALUE_MEMBERS or key in META_MEMBERS:
                inst[key] = value
            elif key.startswith("previous"):
                continue
            elif key.startswith("@"):
                continue
            else:
                check_name(key, "sub-attribute")
                inst[self.terms.expand(key)] = self.instance(key, value, allow_null=allow_null, sub=True)
        return self._finish(name, inst, allow_null)

    def fragment(self, name: str, raw: object) -> dict[str, Any]:
        """The members of a partial attribute update: only what is given, sub-attributes expanded."""
        if not isinstance(raw, dict) or not {k for k in raw if k != "@context"}:
            raise Problem("BadRequestData", f"a partial update of {name!r} needs a non-empty JSON object")
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if key == "@context" or key in SYSTEM_MEMBERS or key.startswith("previous"):
                continue
            if key == "type":
                if value not in ATTRIBUTE_TYPES:
                    raise Problem("BadRequestData", f"attribute {name!r} has unknown type {value!r}")
                out["type"] = value
            elif key in VALUE_MEMBERS or key in META_MEMBERS:
                if value is None:
                    raise Problem("BadRequestData", f"attribute {name!r} has a null {key!r}")
                out[key] = value
            else:
                check_name(key, "sub-attribute")
                out[self.terms.expand(key)] = self.instance(key, value, allow_null=True, sub=True)
        if "object" in out and out["object"] != NULL_URI and not is_uri(out["object"]):
            raise Problem("BadRequestData", f"attribute {name!r} has an object that is not a URI")
        if "datasetId" in out and not is_uri(out["datasetId"]):
            raise Problem("BadRequestData", f"attribute {name!r} has a datasetId that is not a URI")
        if "observedAt" in out and not is_datetime(out["observedAt"]):
            raise Problem("BadRequestData", f"attribute {name!r} has an observedAt that is not a DateTime")
        if out.get("type") == "GeoProperty" and "value" in out and out["value"] != NULL_URI:
            validate_geometry(out["value"], name)
        if out.get("type") == "VocabProperty" and "vocab" in out:
            out["vocab"] = self._vocab(out["vocab"], name)
        out["modifiedAt"] = self.now
        return out

    def _finish(self, name: str, inst: dict[str, Any], allow_null: bool) -> dict[str, Any]:
        attr_type = inst["type"]
        member = ATTRIBUTE_TYPES[attr_type]
        if member not in inst:
            raise Problem("BadRequestData", f"{attr_type} {name!r} has no {member!r} member")
        value = inst[member]
        is_null = value == NULL_URI or value == [NULL_URI] or (
            isinstance(value, dict) and member == "languageMap" and bool(value)
            and all(v == NULL_URI for v in value.values()))
        if is_null and not allow_null:
            raise Problem("BadRequestData", f"attribute {name!r} is the NGSI-LD Null, which only merge accepts")
        if value is None:
            raise Problem("BadRequestData", f"{attr_type} {name!r} has a null {member!r}")
        for other in _OTHER_MEMBERS[member]:
            if other in inst and not (other == "value" and attr_type == "GeoProperty"):
                raise Problem("BadRequestData", f"{attr_type} {name!r} must not have a {other!r} member")
        if not is_null:
            if attr_type == "Relationship":
                objects = value if isinstance(value, list) else [value]
                if not objects or not all(is_uri(o) for o in objects):
                    raise Problem("BadRequestData", f"Relationship {name!r} has an object that is not a URI")
            elif attr_type == "ListRelationship":
                if not isinstance(value, list) or not all(
                        is_uri(o if isinstance(o, str) else (o or {}).get("object")) for o in value):
                    raise Problem("BadRequestData", f"ListRelationship {name!r} needs a list of URIs")
            elif attr_type == "GeoProperty":
                validate_geometry(value, name)
            elif attr_type == "LanguageProperty":
                if not isinstance(value, dict) or not all(
                        isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v))
                        for v in value.values()):
                    raise Problem("BadRequestData",
                                  f"LanguageProperty {name!r} needs a languageMap of language tag -> string")
            elif attr_type == "ListProperty" and not isinstance(value, list):
                raise Problem("BadRequestData", f"ListProperty {name!r} needs a valueList array")
            elif attr_type == "VocabProperty":
                inst["vocab"] = self._vocab(value, name)
            elif name in GEO_CORE_NAMES and attr_type == "Property":
                raise Problem("BadRequestData", f"{name!r} is reserved for a GeoProperty")
        if "datasetId" in inst and not is_uri(inst["datasetId"]):
            raise Problem("BadRequestData", f"attribute {name!r} has a datasetId that is not a URI")
        if "observedAt" in inst and not is_datetime(inst["observedAt"]):
            raise Problem("BadRequestData", f"attribute {name!r} has an observedAt that is not a DateTime")
        if "unitCode" in inst and not isinstance(inst["unitCode"], str):
            raise Problem("BadRequestData", f"attribute {name!r} has a unitCode that is not a string")
        inst["createdAt"] = self.now
        inst["modifiedAt"] = self.now
        return inst

    def _vocab(self, value: object, name: str) -> object:
        if isinstance(value, str):
            return self.terms.expand(value)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [self.terms.expand(v) for v in value]
        raise Problem("BadRequestData", f"VocabProperty {name!r} needs a string or a list of strings")


def _looks_like_attribute(item: object) -> bool:
    return isinstance(item, dict) and (
        item.get("type") in ATTRIBUTE_TYPES or any(m in item for m in VALUE_MEMBERS) or "datasetId" in item)


def _concise_type(name: str, raw: object) -> str:
    if name in GEO_CORE_NAMES:
        raise Problem("BadRequestData", f"{name!r} must be a GeoJSON geometry")
    return "Property"


def parse_scope(raw: object) -> list[str]:
    items = raw if isinstance(raw, list) else [raw]
    for item in items:
        if not isinstance(item, str) or not re.fullmatch(r"(/[^/#+\s]+)+", item):
            raise Problem("BadRequestData", f"scope {item!r} is not a path like /Madrid/Gardens")
    return list(items)
