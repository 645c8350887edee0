"""SWOT with weights and ratings (IFE/EFE matrices) and the strategic quadrant they point to."""

from __future__ import annotations

from typing import Any

from civicmesh.feasibility.project import ProjectError

STRATEGIES = {
    "SO": ("aggressive: use strengths to seize opportunities", "增长型（SO）：发挥优势，抓住机会"),
    "WO": ("turnaround: fix weaknesses to seize opportunities", "扭转型（WO）：克服劣势，利用机会"),
    "ST": ("diversify: use strengths against threats", "多元化（ST）：利用优势，规避威胁"),
    "WT": ("defensive: reduce weaknesses and avoid threats", "防御型（WT）：减少劣势，回避威胁"),
}


def evaluate_swot(swot: dict[str, Any]) -> dict[str, Any] | None:
    if not swot:
        return None
    scores: dict[str, float] = {}
    for part in ("strengths", "weaknesses", "opportunities", "threats"):
        items = swot.get(part) or []
        total = 0.0
        for i, item in enumerate(items):
            where = f"swot.{part}.{i}"
            if not isinstance(item, dict) or "text" not in item:
                raise ProjectError(where, "needs text, weight and rating")
            weight, rating = item.get("weight"), item.get("rating")
            if not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
                raise ProjectError(f"{where}.weight", "must be a number between 0 and 1")
            if not isinstance(rating, (int, float)) or not 1 <= rating <= 4:
                raise ProjectError(f"{where}.rating", "must be a number between 1 and 4")
            total += weight * rating
        scores[part] = total
    for side, parts in (("internal", ("strengths", "weaknesses")), ("external", ("opportunities", "threats"))):
        weights = sum(float(i.get("weight", 0)) for part in parts for i in swot.get(part) or [])
        if weights and abs(weights - 1.0) > 1e-6:
            raise ProjectError(f"swot ({side})", f"the {' and '.join(parts)} weights must sum to 1, not {weights:.3g}")
    x = scores["strengths"] - scores["weaknesses"]
    y = scores["opportunities"] - scores["threats"]
    quadrant = ("S" if x >= 0 else "W") + ("O" if y >= 0 else "T")
    return {"scores": scores, "ife": scores["strengths"] + scores["weaknesses"],
            "efe": scores["opportunities"] + scores["threats"], "position": [x, y], "quadrant": quadrant,
            "strategy_en": STRATEGIES[quadrant][0], "strategy_zh": STRATEGIES[quadrant][1], "items": swot}
