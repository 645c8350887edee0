"""Render stored entities for a caller: compact names with their @context, pick the representation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from civicmesh.ngsild.context import TermMap
from civicmesh.ngsild.model import ATTRIBUTE_TYPES, CORE_MEMBERS, SYSTEM_MEMBERS

NORMALIZED, CONCISE, SIMPLIFIED = "normalized", "concise", "keyValues"


@dataclass(frozen=True)
class View:
    """How a caller wants entities shown."""

    terms: TermMap
    form: str = NORMALIZED
    sys_attrs: bool = False
    attrs: frozenset[str] | None = None  # expanded attribute names to keep (attrs / pick)
    omit: frozenset[str] = frozenset()  # expanded attribute names to drop, and "id"/"type" members
    pick_members: frozenset[str] | None = None  # "id"/"type" members when pick is used
    lang: str | None = None
    # Instances to show by datasetId (None stands for the default instance); None shows all.
    dataset_ids: frozenset[str | None] | None = None
    # Simplified form of an attribute with several instances as {"dataset": {datasetId | "@none": value}}
    # (NGSI-LD 1.8) instead of a bare list of values, which loses which value belongs to which dataset.
    dataset_map: bool = False


def render_entity(doc: dict[str, Any], view: View) -> dict[str, Any]:
    terms = view.terms
    out: dict[str, Any] = {}
    members = view.pick_members

    def keep_member(member: str) -> bool:
        return members is None or member in members

    if keep_member("id") and "id" not in view.omit:
        out["id"] = doc["id"]
    if keep_member("type") and "type" not in view.omit and doc.get("type"):
        types = [terms.compact(t) for t in doc["type"]]
        out["type"] = types[0] if len(types) == 1 else types
    if doc.get("scope") and keep_member("scope"):
        scope = doc["scope"]
        out["scope"] = scope[0] if len(scope) == 1 else scope
    if view.sys_attrs and view.form != SIMPLIFIED:
        out["createdAt"] = doc["createdAt"]
        out["modifiedAt"] = doc["modifiedAt"]
        if doc.get("deletedAt"):
            out["deletedAt"] = doc["deletedAt"]
    for iri, instances in doc["attrs"].items():
        if view.attrs is not None and iri not in view.attrs:
            continue
        if iri in view.omit:
            continue
        if view.dataset_ids is not None:
            instances = [i for i in instances if i.get("datasetId") in view.dataset_ids]
        if not instances:
            continue
        rendered = [render_instance(i, view) for i in instances]
        if view.dataset_map and view.form == SIMPLIFIED and len(rendered) > 1:
            by_dataset = zip(instances, rendered, strict=True)
            out[terms.compact(iri)] = {"dataset": {i.get("datasetId", "@none"): r for i, r in by_dataset}}
            continue
        out[terms.compact(iri)] = rendered[0] if len(rendered) == 1 else rendered
    return out


def simple_value(inst: dict[str, Any], view: View) -> Any:
    kind = inst["type"]
    if kind == "LanguageProperty":
        return pick_language(inst["languageMap"], view.lang) if view.lang else {"languageMap": inst["languageMap"]}
    if kind == "VocabProperty":
        return _compact_vocab(inst["vocab"], view.terms)
    if kind == "ListRelationship":
        return [o if isinstance(o, str) else o.get("object") for o in inst["objectList"]]
    return inst[ATTRIBUTE_TYPES[kind]]


def render_instance(inst: dict[str, Any], view: View) -> Any:
    if view.form == SIMPLIFIED:
        return simple_value(inst, view)
    terms = view.terms
    kind = inst["type"]
    out: dict[str, Any] = {}
    member = ATTRIBUTE_TYPES[kind]
    if kind == "LanguageProperty" and view.lang:
        out["type"] = "Property"
        value = pick_language(inst["languageMap"], view.lang)
        out["value"] = value
        out["lang"] = _chosen_language(inst["languageMap"], view.lang)
    else:
        out["type"] = kind
        value = inst[member]
        out[member] = _compact_vocab(value, terms) if kind == "VocabProperty" else value
    has_extra = False
    for key, sub in inst.items():
        if key in CORE_MEMBERS:
            if key in ("datasetId", "observedAt", "unitCode"):
                out[key] = sub
                has_extra = True
            elif key in SYSTEM_MEMBERS and view.sys_attrs:
                out[key] = sub
                has_extra = True
            continue
        out[terms.compact(key)] = render_instance(sub, view)
        has_extra = True
    if view.form == CONCISE:
        del out["type"]
        if not has_extra and kind in ("Property", "GeoProperty") and "lang" not in out:
            value = out["value"]
            if kind == "GeoProperty" or not isinstance(value, (dict, list)):
                return value
    return out


def pick_language(language_map: dict[str, Any], lang: str) -> Any:
    chosen = _chosen_language(language_map, lang)
    return language_map.get(chosen) if chosen else None


def _chosen_language(language_map: dict[str, Any], lang: str) -> str | None:
    wanted = [part.split(";")[0].strip() for part in lang.split(",") if part.strip()]
    for tag in wanted:
        if tag == "*":
            break
        if tag in language_map:
            return tag
        for key in language_map:
            if key.split("-")[0] == tag.split("-")[0]:
                return key
    if "@none" in language_map:
        return "@none"
    return next(iter(language_map), None)


def _compact_vocab(value: Any, terms: TermMap) -> Any:
    if isinstance(value, list):
        return [terms.compact(v) for v in value]
    return terms.compact(value)


def to_geojson(doc: dict[str, Any], view: View, geometry_iri: str) -> dict[str, Any]:
    """One entity as a GeoJSON Feature whose geometry is the chosen GeoProperty."""
    body = render_entity(doc, view)
    body.pop("id", None)
    geometry = None
    for inst in doc["attrs"].get(geometry_iri, []):
        if inst["type"] == "GeoProperty":
            geometry = inst["value"]
            break
    return {"id": doc["id"], "type": "Feature", "geometry": geometry, "properties": body}
