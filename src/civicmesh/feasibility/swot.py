"""SWOT with weights and ratings: the internal (IFE) and external (EFE) factor scores and the strategic quadrant.

Each factor has a weight (the weights of strengths and weaknesses sum to 1, as do those of opportunities and
threats) and a rating from 1 to 4. The position is (S − W, O − T) of the weighted scores; its quadrant names the
strategy.
"""

from __future__ import annotations

from typing import Any

from civicmesh.feasibility.model import SWOT_PARTS, SwotItem

STRATEGIES = {
    "SO": ("aggressive (SO): use strengths to seize opportunities", "增长型战略（SO）：发挥优势，抓住机会"),
    "WO": ("turnaround (WO): overcome weaknesses to seize opportunities", "扭转型战略（WO）：克服劣势，利用机会"),
    "ST": ("diversification (ST): use strengths to counter threats", "多元化战略（ST）：发挥优势，规避威胁"),
    "WT": ("defensive (WT): reduce weaknesses and avoid threats", "防御型战略（WT）：减少劣势，回避威胁"),
}


def evaluate_swot(swot: dict[str, list[SwotItem]]) -> dict[str, Any] | None:
    if not swot:
        return None
    scores = {part: sum(i.weight * i.rating for i in swot.get(part, [])) for part in SWOT_PARTS}
    x = scores["strengths"] - scores["weaknesses"]
    y = scores["opportunities"] - scores["threats"]
    quadrant = ("S" if x >= 0 else "W") + ("O" if y >= 0 else "T")
    return {"scores": scores, "ife": scores["strengths"] + scores["weaknesses"],
            "efe": scores["opportunities"] + scores["threats"], "position": [x, y], "quadrant": quadrant,
            "strategy_en": STRATEGIES[quadrant][0], "strategy_zh": STRATEGIES[quadrant][1],
            "items": {part: [{"text": i.text, "weight": i.weight, "rating": i.rating, "score": i.weight * i.rating}
                             for i in swot.get(part, [])] for part in SWOT_PARTS}}
