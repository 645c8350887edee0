"""The dispatch catalogue (派单目录): departments, districts, Open311 services and the rules around them."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from shapely.geometry import Point, Polygon
from shapely.prepared import PreparedGeometry, prep

DATATYPES = {"string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"}
KINDS = {"consultation", "help", "suggestion", "complaint", "report", "urgent"}


class CatalogueError(ValueError):
    """The catalogue file is inconsistent; the message names the offending entry."""


@dataclass(frozen=True)
class Department:
    code: str
    name: str
    name_en: str


@dataclass(frozen=True)
class District:
    code: str
    name: str
    name_en: str
    department: str
    polygon: Polygon
    prepared: PreparedGeometry = field(compare=False, repr=False)


@dataclass(frozen=True)
class Attribute:
    code: str
    datatype: str
    required: bool
    description: str
    order: int
    values: tuple[tuple[str, str], ...] = ()
    datatype_description: str = ""


@dataclass(frozen=True)
class Service:
    code: str
    name: str
    description: str
    group: str
    keywords: tuple[str, ...]
    kind: str
    lead: str  # a department code, "district" or "classifier"
    co: tuple[str, ...]
    attributes: tuple[Attribute, ...]

    @property
    def metadata(self) -> bool:
        return bool(self.attributes)


@dataclass(frozen=True)
class Catalogue:
    jurisdiction_id: str
    timezone_offset: str
    entity_tenant: str
    time_limits: dict[str, int]
    supervision: dict[str, int]
    dispatch: dict[str, float]
    duplicates: dict[str, float]
    limits: dict[str, int]
    departments: dict[str, Department]
    districts: dict[str, District]
    services: dict[str, Service]

    def district_at(self, lat: float, lon: float) -> District | None:
        point = Point(lon, lat)
        for district in self.districts.values():
            if district.prepared.covers(point):
                return district
        return None

    def district_named_in(self, text: str) -> District | None:
        """A district whose Chinese or English name appears in an address string."""
        lowered = text.lower()
        for district in self.districts.values():
            if district.name in text or district.name_en.lower() in lowered:
                return district
        return None

    def limit_days(self, kind: str) -> int:
        return int(self.time_limits.get(kind, self.time_limits.get("complaint", 10)))

    def department_name(self, code: str | None) -> str:
        if code is None:
            return ""
        dept = self.departments.get(code)
        return dept.name if dept else code

    def to_dict(self) -> dict[str, Any]:
        return {
            "jurisdiction_id": self.jurisdiction_id,
            "time_limits": self.time_limits,
            "departments": [
                {"code": d.code, "name": d.name, "name_en": d.name_en} for d in self.departments.values()
            ],
            "districts": [
                {
                    "code": d.code,
                    "name": d.name,
                    "name_en": d.name_en,
                    "department": d.department,
                    "polygon": [list(c) for c in d.polygon.exterior.coords],
                }
                for d in self.districts.values()
            ],
            "categories": [
                {
                    "service_code": s.code,
                    "service_name": s.name,
                    "kind": s.kind,
                    "time_limit_working_days": self.limit_days(s.kind),
                    "lead": s.lead,
                    "co": list(s.co),
                }
                for s in self.services.values()
            ],
        }


def parse_catalogue(raw: dict[str, Any]) -> Catalogue:
    try:
        departments = {
            code: Department(code, str(d["name"]), str(d.get("name_en", d["name"])))
            for code, d in raw["departments"].items()
        }
        districts: dict[str, District] = {}
        for code, d in raw["districts"].items():
            poly = Polygon([(float(x), float(y)) for x, y in d["polygon"]])
            if not poly.is_valid:
                raise CatalogueError(f"district {code}: polygon is not valid")
            if d["department"] not in departments:
                raise CatalogueError(f"district {code}: unknown department {d['department']!r}")
            districts[code] = District(
                code, str(d["name"]), str(d.get("name_en", d["name"])), str(d["department"]), poly, prep(poly)
            )
        services: dict[str, Service] = {}
        for s in raw["services"]:
            code = str(s["code"])
            if s["kind"] not in KINDS:
                raise CatalogueError(f"service {code}: kind {s['kind']!r} is not one of {sorted(KINDS)}")
            for dept in [s["lead"], *s.get("co", [])]:
                if dept not in departments and dept not in {"district", "classifier"}:
                    raise CatalogueError(f"service {code}: unknown department {dept!r}")
            attrs = []
            for order, a in enumerate(s.get("attributes") or [], start=1):
                if a["datatype"] not in DATATYPES:
                    raise CatalogueError(f"service {code}: attribute {a['code']}: datatype {a['datatype']!r}")
                values = tuple((str(v["key"]), str(v["name"])) for v in a.get("values") or [])
                if a["datatype"].endswith("valuelist") and not values:
                    raise CatalogueError(f"service {code}: attribute {a['code']} is a list without values")
                attrs.append(
                    Attribute(
                        str(a["code"]),
                        a["datatype"],
                        bool(a.get("required", False)),
                        str(a.get("description", "")),
                        order,
                        values,
                        str(a.get("datatype_description", "")),
                    )
                )
            services[code] = Service(
                code,
                str(s["name"]),
                str(s.get("description", "")),
                str(s.get("group", "")),
                tuple(s.get("keywords") or []),
                s["kind"],
                str(s["lead"]),
                tuple(s.get("co") or []),
                tuple(attrs),
            )
        return Catalogue(
            str(raw["jurisdiction_id"]),
            str(raw.get("timezone_offset", "+08:00")),
            str(raw.get("entity_tenant", "")),
            dict(raw["time_limits"]),
            dict(raw.get("supervision", {})),
            dict(raw.get("dispatch", {})),
            dict(raw.get("duplicates", {})),
            dict(raw.get("limits", {})),
            departments,
            districts,
            services,
        )
    except KeyError as exc:
        raise CatalogueError(f"catalogue is missing the field {exc.args[0]!r}") from exc


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Load the given YAML file, or the packaged demo catalogue."""
    if path is None:
        return default_catalogue()
    return parse_catalogue(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


@lru_cache(maxsize=1)
def default_catalogue() -> Catalogue:
    text = resources.files("civicmesh.citizen").joinpath("data/catalogue.yaml").read_text(encoding="utf-8")
    return parse_catalogue(yaml.safe_load(text))
