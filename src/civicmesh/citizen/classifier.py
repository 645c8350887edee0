"""The dispatch text classifier: character n-gram TF-IDF and a linear model (scikit-learn).

Character n-grams need no word segmenter, so Chinese and English share one model. The model is trained from
the packaged dataset the first time it is needed (a few seconds, off the event loop) and kept in memory;
`civicmesh citizen train` does the same and reports the held-out macro-F1.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import classification_report, f1_score
from sklearn.pipeline import Pipeline

from civicmesh.citizen.dataset import DATASET_PATH, load_dataset


@dataclass(frozen=True)
class Prediction:
    department: str
    confidence: float
    ranking: tuple[tuple[str, float], ...]  # every department, most likely first


@dataclass(frozen=True)
class Evaluation:
    macro_f1: float
    test_size: int
    train_size: int
    per_language: dict[str, float]
    report: str


def build_pipeline() -> Pipeline:
    return Pipeline(
        [
            (
                "tfidf",
                TfidfVectorizer(
                    analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=2, lowercase=True
                ),
            ),
            ("model", LogisticRegression(C=20.0, max_iter=2000, class_weight="balanced")),
        ]
    )


class DispatchClassifier:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.labels: list[str] = [str(c) for c in pipeline.classes_]

    @classmethod
    def train(cls, rows: list[dict[str, Any]]) -> DispatchClassifier:
        train = [r for r in rows if r["split"] == "train"]
        pipeline = build_pipeline()
        pipeline.fit([r["text"] for r in train], [r["label"] for r in train])
        return cls(pipeline)

    def predict(self, text: str, exclude: set[str] | None = None) -> Prediction:
        return self.predict_many([text], exclude)[0]

    def predict_many(self, texts: list[str], exclude: set[str] | None = None) -> list[Prediction]:
        probabilities = self.pipeline.predict_proba(texts)
        out = []
        for row in probabilities:
            pairs = [
                (self.labels[i], float(p))
                for i, p in enumerate(row)
                if not exclude or self.labels[i] not in exclude
            ]
            total = sum(p for _, p in pairs) or 1.0
            # After excluding departments that returned the request, renormalize over the remaining ones.
            ranking = tuple(sorted(((d, p / total) for d, p in pairs), key=lambda x: -x[1]))
            out.append(Prediction(ranking[0][0], ranking[0][1], ranking))
        return out

    def evaluate(self, rows: list[dict[str, Any]]) -> Evaluation:
        test = [r for r in rows if r["split"] == "test"]
        predicted = self.pipeline.predict([r["text"] for r in test])
        truth = [r["label"] for r in test]
        per_language = {}
        for lang in sorted({r["lang"] for r in test}):
            idx = [i for i, r in enumerate(test) if r["lang"] == lang]
            per_language[lang] = float(f1_score(np.array(truth)[idx], predicted[idx], average="macro"))
        return Evaluation(
            float(f1_score(truth, predicted, average="macro")),
            len(test),
            sum(1 for r in rows if r["split"] == "train"),
            per_language,
            str(classification_report(truth, predicted, digits=3, zero_division=0)),
        )


_lock = threading.Lock()
_cached: DispatchClassifier | None = None


def get_classifier(path: Path = DATASET_PATH) -> DispatchClassifier:
    """The process-wide classifier, trained on first use from the packaged dataset."""
    global _cached
    with _lock:
        if _cached is None:
            _cached = DispatchClassifier.train(load_dataset(path))
        return _cached
