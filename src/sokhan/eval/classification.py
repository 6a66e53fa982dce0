"""Classification figures from true and predicted labels: the confusion matrix, accuracy, macro-F1, the
majority class's share, and the confusion matrix as a picture.

The definitions are scikit-learn's (`sklearn.metrics.confusion_matrix`, `f1_score(average="macro")`),
written out so that no dependency is added for a few sums:

* `confusion[i, j]`: records whose true label is i and whose predicted label is j (rows true,
  columns predicted, as scikit-learn orders them);
* a label's F1 = 2·TP / (2·TP + FP + FN), the harmonic mean of its precision and recall; 0 where
  TP is 0 (scikit-learn's `zero_division=0`, what its default warning falls back to);
* macro-F1: the unweighted mean of the labels' F1 over the labels that occur among the true or
  the predicted labels (scikit-learn's default `labels=None`); a label of the model that neither
  occurs nor is predicted has no F1 and is left out rather than counted as 0;
* the majority class's share: the accuracy of always answering the commonest true label, the
  floor a classifier must clear to have learnt anything beyond the label counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sokhan.inspect.picture import Heatmap, Picture


def confusion_matrix(truth: Sequence[int], predicted: Sequence[int], labels: int) -> np.ndarray:
    """(labels, labels) counts: row = true label, column = predicted label."""
    matrix = np.zeros((labels, labels), dtype=np.int64)
    np.add.at(matrix, (np.asarray(truth, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return matrix


def accuracy(matrix: np.ndarray) -> float:
    return float(np.trace(matrix) / max(matrix.sum(), 1))


def per_label(matrix: np.ndarray) -> list[dict[str, float | int]]:
    """Precision, recall, F1 and support (true records) of every label, in the matrix's order."""
    out = []
    for k in range(len(matrix)):
        tp = int(matrix[k, k])
        predicted, support = int(matrix[:, k].sum()), int(matrix[k].sum())
        out.append({"precision": tp / predicted if predicted else 0.0, "recall": tp / support if support else 0.0,
                    "f1": 2 * tp / (predicted + support) if tp else 0.0, "support": support,
                    "predicted": predicted})
    return out


def macro_f1(matrix: np.ndarray) -> float:
    """The mean F1 of the labels that are true or predicted at least once (module docstring)."""
    scores = [row["f1"] for row in per_label(matrix) if row["support"] or row["predicted"]]
    return float(np.mean(scores)) if scores else 0.0


def majority(matrix: np.ndarray) -> tuple[int, float]:
    """The commonest true label (the first of a tie) and its share of the records."""
    support = matrix.sum(axis=1)
    best = int(np.argmax(support))
    return best, float(support[best] / max(support.sum(), 1))


def confusion_picture(matrix: np.ndarray, labels: list[str], name: str, title: str, subtitle: str = "") -> Picture:
    """The confusion matrix as a heatmap of counts, each written in its cell (labels as the data spells them:
    a Persian label is shaped in the PNG and laid out right to left on the page)."""
    panel = Heatmap(matrix.astype(np.float64), list(labels), list(labels), "confusion matrix (counts of records)",
                    "true label", "predicted label", "records", cmap="Blues", vmin=0.0,
                    vmax=float(max(matrix.max(), 1)), colorbar=False, annotate=True)  # the counts are written
    side = min(max(3.0, 0.9 * len(labels) + 2.5), 12.0)
    return Picture(name, title, [panel], subtitle=subtitle, panel_size=(max(side, 7.0), side))


def summary(matrix: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """What a result file records beside the figures: the matrix and every label's precision, recall and F1."""
    return {"labels": list(labels), "confusion_matrix": matrix.tolist(),
            "per_label": dict(zip(labels, per_label(matrix)))}
