"""DCAT-AP 3 export of the catalog, as JSON-LD and Turtle, so portals such as CKAN can harvest it."""

from __future__ import annotations

from typing import Any

PREFIXES = {
    "dcat": "http://www.w3.org/ns/dcat#", "dct": "http://purl.org/dc/terms/", "foaf": "http://xmlns.com/foaf/0.1/",
    "odrl": "http://www.w3.org/ns/odrl/2/", "xsd": "http://www.w3.org/2001/XMLSchema#",
    "locn": "http://www.w3.org/ns/locn#",
}
# Update frequencies as the EU frequency vocabulary names them.
FREQUENCY = {"continuous": "CONT", "hourly": "HOURLY", "daily": "DAILY", "weekly": "WEEKLY", "monthly": "MONTHLY",
             "quarterly": "QUARTERLY", "annual": "ANNUAL", "irregular": "IRREG"}
EU_FREQ = "http://publications.europa.eu/resource/authority/frequency/"


def catalog_jsonld(products: list[dict[str, Any]], orgs: dict[str, dict[str, Any]], base: str) -> dict[str, Any]:
    datasets = []
    for p in products:
        org = orgs.get(p["provider"], {})
        datasets.append({
            "@id": p["id"], "@type": "dcat:Dataset",
            "dct:identifier": p["id"],
            "dct:title": [{"@value": p["title"]["zh"], "@language": "zh"},
                          {"@value": p["title"]["en"], "@language": "en"}],
            "dct:description": [{"@value": p["description"]["zh"], "@language": "zh"},
                                {"@value": p["description"]["en"], "@language": "en"}],
            "dct:publisher": {"@id": f"{base}/exchange/organizations/{p['provider']}", "@type": "foaf:Agent",
                              "foaf:name": (org.get("name") or {}).get("en", p["provider"])},
            "dcat:theme": p["sector"],
            "dcat:keyword": p["keywords"] + p["entityTypes"],
            "dct:accrualPeriodicity": {"@id": EU_FREQ + FREQUENCY[p["updateFrequency"]]},
            "dct:issued": {"@value": p["created_at"], "@type": "xsd:dateTime"},
            **({"dct:spatial": {"@type": "dct:Location", "locn:geometry": {
                "@value": _wkt(p["area"]), "@type": "http://www.opengis.net/ont/geosparql#wktLiteral"}}}
               if p.get("area") else {}),
            "odrl:hasPolicy": p["offer"],
            "dcat:distribution": [{
                "@id": p["id"] + ":ngsi-ld", "@type": "dcat:Distribution",
                "dcat:accessURL": {"@id": f"{base}/ngsi-ld/v1/entities"},
                "dct:format": "application/ld+json", "dct:license": {"@id": p["licence"]}
                if p["licence"].startswith("http") else p["licence"],
                "dct:description": "NGSI-LD API; types: " + ", ".join(p["entityTypes"])}],
        })
    return {"@context": PREFIXES, "@id": f"{base}/exchange/catalog", "@type": "dcat:Catalog",
            "dct:title": [{"@value": "civicmesh 城市数据目录", "@language": "zh"},
                          {"@value": "civicmesh city data catalog", "@language": "en"}],
            "dct:description": [{"@value": "城市各部门、企业与科研机构共享的数据产品", "@language": "zh"},
                                {"@value": "Data products shared by the city's departments, enterprises and "
                                           "research institutes", "@language": "en"}],
            "dct:publisher": {"@type": "foaf:Agent", "foaf:name": "civicmesh"},
            "dcat:dataset": datasets}


def _wkt(geojson: dict[str, Any]) -> str:
    from shapely.geometry import shape

    return str(shape(geojson).wkt)


def _literal(value: Any) -> str:
    if isinstance(value, dict) and "@value" in value:
        text = _escape(str(value["@value"]))
        if "@language" in value:
            return f'"{text}"@{value["@language"]}'
        if "@type" in value:
            return f'"{text}"^^{_iri(value["@type"])}'
        return f'"{text}"'
    return f'"{_escape(str(value))}"'


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def _iri(value: str) -> str:
    prefix, _, rest = value.partition(":")
    if prefix in PREFIXES and not rest.startswith("//"):
        return value
    return f"<{value}>"


def turtle(doc: dict[str, Any]) -> str:
    """Turtle for the JSON-LD above (nested objects become blank nodes; policies are carried as JSON literals)."""
    import json

    lines = [f"@prefix {p}: <{iri}> ." for p, iri in PREFIXES.items()] + [""]

    def node(obj: dict[str, Any], indent: str) -> str:
        parts = []
        if "@type" in obj:
            parts.append(f"a {_iri(obj['@type'])}")
        for key, value in obj.items():
            if key.startswith("@"):
                continue
            values = value if isinstance(value, list) else [value]
            rendered = [obj_text(v, indent + "    ") for v in values]
            parts.append(f"{_iri(key)} " + ", ".join(rendered))
        return (" ;\n" + indent).join(parts)

    def obj_text(value: Any, indent: str) -> str:
        if isinstance(value, dict):
            if set(value) == {"@id"}:
                return _iri(value["@id"]) if ":" in value["@id"] else f"<{value['@id']}>"
            if "@value" in value:
                return _literal(value)
            if "@context" in value or "permission" in value:  # an ODRL policy: keep it whole
                return _literal({"@value": json.dumps(value, ensure_ascii=False),
                                 "@type": "http://www.w3.org/1999/02/22-rdf-syntax-ns#JSON"})
            subject = f"<{value['@id']}> " if "@id" in value else ""
            if subject:
                nested.append(value)
                return f"<{value['@id']}>"
            return "[ " + node(value, indent) + " ]"
        return _literal(value)

    nested: list[dict[str, Any]] = [doc]
    done: set[str] = set()
    while nested:
        item = nested.pop(0)
        if item["@id"] in done:
            continue
        done.add(item["@id"])
        body = {k: v for k, v in item.items() if k != "@context"}
        lines.append(f"<{item['@id']}> " + node(body, "    ") + " .")
        lines.append("")
    return "\n".join(lines)
