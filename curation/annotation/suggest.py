"""The suggestion model: a domain (or out of scope) for every item, learnt from the
trusted labels over the items' sentence embeddings, with a calibrated score.

A class-balanced multinomial logistic regression reads the embeddings; its logits are
divided by one temperature fitted on out-of-fold predictions (folds keep paraphrase
families whole), so that a score of 0.8 is right about 80% of the time on items like
the training ones. How far that holds on new sources is what `evaluate` measures: it
trains on all sources but one and scores the one left out, for each source in turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, precision_recall_fscore_support
from sklearn.model_selection import GroupKFold

from curation.core.progress import bar

RELIABILITY_BINS = 10
ABSENT = -1e4  # the logit of a class a fold's model never saw


@dataclass(frozen=True)
class Suggester:
    """A fitted model: logits over `classes`, divided by `temperature`."""

    model: LogisticRegression
    classes: tuple[str, ...]
    temperature: float

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        return softmax(logits(self.model, vectors, self.classes) / self.temperature, axis=1)


def logits(model: LogisticRegression, vectors: np.ndarray,
           classes: tuple[str, ...]) -> np.ndarray:
    """The model's logits in the order of `classes` (a class it never saw: ABSENT)."""
    raw = model.decision_function(vectors)
    if raw.ndim == 1:  # two classes: one margin, as logits -m/2 and m/2
        raw = np.column_stack([-raw / 2, raw / 2])
    out = np.full((len(vectors), len(classes)), ABSENT)
    for column, name in enumerate(model.classes_):
        out[:, classes.index(name)] = raw[:, column]
    return out


def _classifier(regularization: float, seed: int) -> LogisticRegression:
    return LogisticRegression(C=regularization, class_weight="balanced", max_iter=2000,
                              random_state=seed)


def fit(vectors: np.ndarray, labels: np.ndarray, groups: np.ndarray, folds: int,
        regularization: float, seed: int, rows: np.ndarray | None = None
        ) -> tuple[Suggester, np.ndarray, np.ndarray]:
    """The model on every labelled item, each item's out-of-fold probabilities (from a
    model that saw neither it nor its family), which fit the temperature, and which items
    have them (a fold whose training part holds one label cannot score its items).

    `rows`: the rows of `vectors` that `labels` and `groups` describe (default: all). Each
    fit takes its own rows, so beside `vectors` one copy at most is held (before, a copy
    of the labelled rows, then one per source and per fold: 1.9 GB at 163K items)."""
    classes = tuple(sorted(set(labels.tolist())))
    held_out = np.zeros((len(labels), len(classes)))
    splits = min(folds, len(set(groups.tolist())))
    if splits >= 2:
        # GroupKFold reads only the length of X: the labels stand in for the vectors
        for train, test in GroupKFold(n_splits=splits).split(labels, labels, groups):
            if len(set(labels[train].tolist())) < 2:
                held_out[test] = ABSENT
                continue
            model = _classifier(regularization, seed).fit(_rows(vectors, rows, train),
                                                          labels[train])
            held_out[test] = logits(model, _rows(vectors, rows, test), classes)
    temperature = fit_temperature(held_out, np.array([classes.index(x) for x in labels]))
    model = _classifier(regularization, seed).fit(
        vectors if rows is None else vectors[rows], labels)
    return (Suggester(model, classes, temperature), softmax(held_out / temperature, axis=1),
            (held_out > ABSENT).sum(axis=1) >= 2)


def _rows(vectors: np.ndarray, rows: np.ndarray | None, picked: np.ndarray) -> np.ndarray:
    """The vectors of the `picked` samples, whose rows in `vectors` are `rows`."""
    return vectors[picked if rows is None else rows[picked]]


def fit_temperature(held_out_logits: np.ndarray, truth: np.ndarray) -> float:
    """The temperature that minimises the out-of-fold negative log-likelihood, over the
    items whose fold model could score them and knew their label (a label a fold never saw
    is wrong at any temperature, and would push it to its bound)."""
    rows = np.arange(len(truth))
    usable = (((held_out_logits > ABSENT).sum(axis=1) >= 2)
              & (held_out_logits[rows, truth] > ABSENT))
    if not usable.any():
        return 1.0
    scores, answers = held_out_logits[usable], truth[usable]

    def loss(log_t: float) -> float:
        return -float(log_softmax(scores / np.exp(log_t), axis=1)[
            np.arange(len(answers)), answers].mean())

    return round(float(np.exp(minimize_scalar(loss, bounds=(-3.0, 3.0),
                                              method="bounded").x)), 6)


def top_two(probabilities: np.ndarray, classes: tuple[str, ...]
            ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Each row's best class, its score and its margin over the runner-up."""
    order = np.argsort(-probabilities, axis=1, kind="stable")
    rows = np.arange(len(probabilities))
    best = probabilities[rows, order[:, 0]]
    second = probabilities[rows, order[:, 1]] if probabilities.shape[1] > 1 else 0.0
    return [classes[i] for i in order[:, 0]], best, best - second


def evaluate(vectors: np.ndarray, labels: np.ndarray, groups: np.ndarray,
             sources: np.ndarray, folds: int, regularization: float, seed: int,
             rows: np.ndarray | None = None) -> dict[str, Any]:
    """Leave one source out: train on the others, score the one left out. Macro-F1 per
    held-out source and pooled, precision and recall per label, and the reliability of
    the score (accuracy per score bin, and the expected calibration error). Items whose
    label no other source holds cannot be learnt that way: they are counted, not scored.
    Families are kept whole: a family with items in the held-out source trains nothing.
    `rows`: as in `fit`."""
    rows = np.arange(len(labels)) if rows is None else rows
    truth, predicted, scores, per_source = [], [], [], []
    names = sorted(set(sources.tolist()))
    with bar(len(names), "suggest: held-out sources", " sources") as progress:
        for source in names:
            progress.update(1)
            entry, found = _held_out(vectors, rows, labels, groups, sources, source,
                                     folds, regularization, seed)
            per_source.append(entry)
            if found is not None:
                truth += found[0]
                predicted += found[1]
                scores += found[2]
    return {"held_out_by_source": per_source, **pooled(truth, predicted, np.array(scores))}


def _held_out(vectors: np.ndarray, rows: np.ndarray, labels: np.ndarray,
              groups: np.ndarray, sources: np.ndarray, source: str, folds: int,
              regularization: float, seed: int
              ) -> tuple[dict[str, Any], tuple[list, list, list] | None]:
    """One held-out source: its figures, and its (truth, predicted, score) lists."""
    own_families = np.isin(groups, groups[sources == source])
    train = (sources != source) & ~own_families  # its paraphrases elsewhere stay out too
    known = set(labels[train].tolist())
    test = (sources == source) & np.isin(labels, sorted(known))
    entry: dict[str, Any] = {"source": source, "items": int((sources == source).sum()),
                             "scored": int(test.sum()),
                             "labels_no_other_source_has": sorted(
                                 set(labels[sources == source].tolist()) - known)}
    if len(known) < 2 or not test.any():
        return {**entry, "macro_f1": None}, None
    model, *_ = fit(vectors, labels[train], groups[train], folds, regularization, seed,
                    rows[train])
    best, score, _ = top_two(model.probabilities(vectors[rows[test]]), model.classes)
    present = sorted(set(labels[test].tolist()))
    entry.update(labels=present,
                 macro_f1=round(float(f1_score(labels[test], best, labels=present,
                                               average="macro", zero_division=0)), 4),
                 accuracy=round(float(np.mean(np.array(best) == labels[test])), 4))
    return entry, (labels[test].tolist(), best, score.tolist())


def pooled(truth: list[str], predicted: list[str], scores: np.ndarray) -> dict[str, Any]:
    """Figures over every held-out prediction together."""
    if not truth:
        return {"items": 0, "macro_f1": None, "by_label": {}, "reliability": [],
                "expected_calibration_error": None}
    names = sorted(set(truth) | set(predicted))
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=names, zero_division=0)
    right = np.array(truth) == np.array(predicted)
    bins = np.minimum((scores * RELIABILITY_BINS).astype(int), RELIABILITY_BINS - 1)
    curve, error = [], 0.0
    for b in range(RELIABILITY_BINS):
        inside = bins == b
        if inside.any():
            confidence, accuracy = float(scores[inside].mean()), float(right[inside].mean())
            error += inside.sum() / len(scores) * abs(confidence - accuracy)
            curve.append({"bin": f"{b / RELIABILITY_BINS:.1f}-{(b + 1) / RELIABILITY_BINS:.1f}",
                          "items": int(inside.sum()), "mean_score": round(confidence, 4),
                          "accuracy": round(accuracy, 4)})
    return {
        "items": len(truth),
        "macro_f1": round(float(f1_score(truth, predicted, labels=sorted(set(truth)),
                                         average="macro", zero_division=0)), 4),
        "accuracy": round(float(right.mean()), 4),
        "by_label": {name: {"precision": round(float(p), 4), "recall": round(float(r), 4),
                            "f1": round(float(f), 4), "support": int(s)}
                     for name, p, r, f, s in zip(names, precision, recall, f1, support,
                                                 strict=True)},
        "reliability": curve,
        "expected_calibration_error": round(float(error), 4),
    }
