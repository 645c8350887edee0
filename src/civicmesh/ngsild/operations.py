"""What each NGSI-LD write does to a stored entity. Pure functions over the stored form (see model.py)."""

from __future__ import annotations

import copy
from typing import Any

from civicmesh.errors import Problem
from civicmesh.ngsild.model import ATTRIBUTE_TYPES, CORE_MEMBERS, NULL_URI

Instances = list[dict[str, Any]]
Attrs = dict[str, Instances]


def _is_null(inst: dict[str, Any]) -> bool:
    member = ATTRIBUTE_TYPES.get(inst.get("type", ""), "value")
    value = inst.get(member)
    if isinstance(value, dict) and member == "languageMap":
        return bool(value) and all(v == NULL_URI for v in value.values())
    return value == NULL_URI or value == [NULL_URI]


def _find(instances: Instances, dataset_id: str | None) -> int:
    for i, inst in enumerate(instances):
        if inst.get("datasetId") == dataset_id:
            return i
    return -1


def _replace_instance(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    result = dict(new)
    result["createdAt"] = old.get("createdAt", new["createdAt"])
    return result


def add_types(doc: dict[str, Any], types: list[str]) -> bool:
    added = [t for t in types if t not in doc["type"]]
    doc["type"].extend(added)
    return bool(added)


def append(doc: dict[str, Any], attrs: Attrs, *, no_overwrite: bool, now: str, scope: list[str] | None = None,
           types: list[str] | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """POST /entities/{id}/attrs: add attributes; overwrite existing instances unless noOverwrite.

    A scope in the fragment replaces the entity's scope, or is merged into it under noOverwrite.
    """
    updated: list[str] = []
    skipped: list[tuple[str, str]] = []
    if types and add_types(doc, types):
        updated.append("type")
    if scope is not None:
        if no_overwrite and doc.get("scope"):
            doc["scope"] = list(dict.fromkeys(doc["scope"] + scope))
        else:
            doc["scope"] = scope
        updated.append("scope")
    for iri, instances in attrs.items():
        current = doc["attrs"].setdefault(iri, [])
        changed = False
        for inst in instances:
            at = _find(current, inst.get("datasetId"))
            if at < 0:
                current.append(inst)
                changed = True
            elif no_overwrite:
                skipped.append((iri, "attribute exists and noOverwrite was requested"))
            else:
                current[at] = _replace_instance(current[at], inst)
                changed = True
        if changed:
            updated.append(iri)
    if updated:
        doc["modifiedAt"] = now
    return updated, skipped


def update(doc: dict[str, Any], attrs: Attrs, *, now: str, scope: list[str] | None = None,
           types: list[str] | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """PATCH /entities/{id}/attrs: replace the attributes given; ones the entity lacks are appended (as the
    ETSI suite expects). A scope only replaces an existing scope."""
    updated: list[str] = []
    skipped: list[tuple[str, str]] = []
    if types and add_types(doc, types):
        updated.append("type")
    if scope is not None:
        if doc.get("scope"):
            doc["scope"] = scope
            updated.append("scope")
        else:
            skipped.append(("scope", "the entity has no scope to update"))
    for iri, instances in attrs.items():
        current = doc["attrs"].get(iri)
        if current is None:
            kept = [i for i in instances if not _is_null(i)]
            if kept:
                doc["attrs"][iri] = kept
                updated.append(iri)
            continue
        changed = False
        for inst in instances:
            at = _find(current, inst.get("datasetId"))
            if at < 0:
                skipped.append((iri, f"no instance with datasetId {inst.get('datasetId')}"))
            elif _is_null(inst):
                del current[at]
                changed = True
            else:
                current[at] = _replace_instance(current[at], inst)
                changed = True
        if not current:
            del doc["attrs"][iri]
        if changed:
            updated.append(iri)
    if updated:
        doc["modifiedAt"] = now
    return updated, skipped


def _merge_instance(old: dict[str, Any], new: dict[str, Any], now: str) -> dict[str, Any]:
    merged = dict(old)
    if new.get("type") and new["type"] != old.get("type"):
        # A different attribute type replaces the old value member wholesale.
        for member in ATTRIBUTE_TYPES.values():
            merged.pop(member, None)
    for key, value in new.items():
        if key in ("createdAt",):
            continue
        if key in CORE_MEMBERS:
            merged[key] = value
        elif isinstance(value, dict) and _is_null(value):
            merged.pop(key, None)
        elif key in old and isinstance(old[key], dict):
            merged[key] = _merge_instance(old[key], value, now)
        else:
            merged[key] = value
    merged["modifiedAt"] = now
    return merged


def merge(doc: dict[str, Any], patch: dict[str, Any], *, now: str) -> list[str]:
    """PATCH /entities/{id} (merge-patch): deep-merge attributes; the NGSI-LD Null deletes."""
    touched: list[str] = []
    for t in patch.get("type", []):
        if t not in doc["type"]:
            doc["type"].append(t)
    if "scope" in patch:
        doc["scope"] = patch["scope"]
    for iri, instances in patch["attrs"].items():
        current = doc["attrs"].get(iri, [])
        for inst in instances:
            at = _find(current, inst.get("datasetId"))
            if _is_null(inst):
                if at >= 0:
                    del current[at]
            elif at < 0:
                current.append(inst)
            else:
                current[at] = _merge_instance(current[at], inst, now)
        if current:
            doc["attrs"][iri] = current
        else:
            doc["attrs"].pop(iri, None)
        touched.append(iri)
    doc["modifiedAt"] = now
    return touched


def partial_update(doc: dict[str, Any], iri: str, name: str, fragment: dict[str, Any], *, now: str) -> None:
    """PATCH /entities/{id}/attrs/{attr}: change the given members of one existing instance."""
    current = doc["attrs"].get(iri)
    dataset_id = fragment.get("datasetId")
    at = _find(current, dataset_id) if current else -1
    if at < 0:
        which = f" with datasetId {dataset_id}" if dataset_id else ""
        raise Problem("ResourceNotFound", f"entity {doc['id']} has no attribute {name!r}{which}")
    assert current is not None
    if _is_null(fragment):
        del current[at]
        if not current:
            del doc["attrs"][iri]
    else:
        old = current[at]
        if fragment.get("type") and fragment["type"] != old["type"]:
            raise Problem("BadRequestData",
                          f"attribute {name!r} is a {old['type']}; a partial update cannot make it a "
                          f"{fragment['type']}")
        current[at] = _merge_instance(old, fragment, now)
    doc["modifiedAt"] = now


def replace_entity(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """PUT /entities/{id}: everything but the creation time comes from the new body."""
    result = copy.copy(new)
    result["createdAt"] = old["createdAt"]
    if not result.get("type"):
        result["type"] = old["type"]
    return result


def replace_attribute(doc: dict[str, Any], iri: str, name: str, instances: Instances, *, now: str) -> None:
    """PUT /entities/{id}/attrs/{attr}: the attribute must exist; its instance is replaced whole."""
    current = doc["attrs"].get(iri)
    if not current:
        raise Problem("ResourceNotFound", f"entity {doc['id']} has no attribute {name!r}")
    for inst in instances:
        at = _find(current, inst.get("datasetId"))
        if at < 0:
            raise Problem("ResourceNotFound",
                          f"attribute {name!r} has no instance with datasetId {inst.get('datasetId')}")
        current[at] = _replace_instance(current[at], inst)
    doc["modifiedAt"] = now


def delete_attribute(doc: dict[str, Any], iri: str, name: str, *, dataset_id: str | None,
                     delete_all: bool, now: str) -> None:
    if name == "scope" and iri.endswith("/scope") and iri not in doc["attrs"]:
        if not doc.get("scope"):
            raise Problem("ResourceNotFound", f"entity {doc['id']} has no scope")
        del doc["scope"]
        doc["modifiedAt"] = now
        return
    current = doc["attrs"].get(iri)
    if not current:
        raise Problem("ResourceNotFound", f"entity {doc['id']} has no attribute {name!r}")
    if delete_all:
        del doc["attrs"][iri]
    else:
        at = _find(current, dataset_id)
        if at < 0:
            which = f"datasetId {dataset_id}" if dataset_id else "a default instance (no datasetId)"
            raise Problem("ResourceNotFound", f"attribute {name!r} has no instance with {which}")
        del current[at]
        if not current:
            del doc["attrs"][iri]
    doc["modifiedAt"] = now
