"""Dispatch classification: macro-F1 on the fixed held-out split and classifications per second.

Baselines from the same run: a majority-class guess (the F1 floor) and the batch rate, which bounds the
one-at-a-time rate from above.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from sklearn.metrics import f1_score

from civicmesh.citizen.classifier import DispatchClassifier
from civicmesh.citizen.dataset import load_dataset, unseen_template_split


def run() -> list[dict[str, Any]]:
    rows = load_dataset()
    classifier = DispatchClassifier.train(rows)
    held_out = classifier.evaluate(rows)
    test = [r for r in rows if r["split"] == "test"]
    majority = Counter(r["label"] for r in rows if r["split"] == "train").most_common(1)[0][0]
    floor = f1_score([r["label"] for r in test], [majority] * len(test), average="macro")
    unseen_rows = unseen_template_split(rows)
    unseen = DispatchClassifier.train(unseen_rows).evaluate(unseen_rows)

    texts = [r["text"] for r in test]
    started = time.perf_counter()
    classifier.predict_many(texts)
    batch_rate = len(texts) / (time.perf_counter() - started)
    started = time.perf_counter()
    for text in texts[:300]:
        classifier.predict(text)
    single_rate = 300 / (time.perf_counter() - started)
    return [
        dict(scenario=f"dispatch macro-F1, held-out split ({held_out.test_size} requests)", value=held_out.macro_f1,
             unit="F1", baseline=f"majority class {floor:.3f}; whole templates held out {unseen.macro_f1:.3f}",
             target=">= 0.90", met=held_out.macro_f1 >= 0.90),
        dict(scenario="dispatch classifications, one at a time", value=single_rate, unit="texts/s",
             baseline=f"batch {batch_rate:,.0f} texts/s", target=">= 1,000/s", met=single_rate >= 1000),
    ]
