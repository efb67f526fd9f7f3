"""Holdout split, metrics and optional k-fold cross-validation.

Metrics keep their natural values (an rmse stays an rmse); which direction is better is
reported beside them (``spec.LOWER_IS_BETTER``) so the operator's promotion gate can
compare versions without knowing each metric. A metric that is undefined on some rows
(roc_auc on a slice holding one class) is ``None`` rather than a made-up number.

For classification, ``f1``, ``precision`` and ``recall`` are the positive class's on a
binary target (the positive class is the second of the sorted classes, scikit-learn's
convention) and macro averages on a multiclass one; ``roc_auc`` is one-vs-rest macro on
multiclass. K-fold refits the pipeline ``folds`` times, so it only runs when asked for.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlkube.runtime.train.spec import Task

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Predictions:
    """What a fitted pipeline said about some rows, enough for every metric."""

    y_true: Array
    y_pred: Array
    proba: Array | None  # columns in ``classes`` order
    classes: Array | None

    def subset(self, mask: Array) -> Predictions:
        return Predictions(
            self.y_true[mask],
            self.y_pred[mask],
            None if self.proba is None else self.proba[mask],
            self.classes,
        )


_ARGMAX_CHECK_ROWS = 512


def predict(model: Any, x: Array, y: Array, task: Task) -> Predictions:
    """Predictions and, where the model has them, class probabilities.

    Most classifiers predict the most probable class, so labels are taken from the
    probabilities instead of a second pass over the trees (which halves the cost of
    validating a forest). That shortcut is checked against ``predict`` on the first
    rows and dropped for models where it does not hold (an SVC's Platt scaling, say).
    """
    if task == "regression" or not hasattr(model, "predict_proba"):
        classes = None if task == "regression" else np.asarray(model.classes_)
        return Predictions(y, np.asarray(model.predict(x)), None, classes)
    classes = np.asarray(model.classes_)
    proba = np.asarray(model.predict_proba(x))
    y_pred = classes[np.argmax(proba, axis=1)]
    head = x[:_ARGMAX_CHECK_ROWS]
    if not np.array_equal(np.asarray(model.predict(head)), y_pred[: len(head)]):
        y_pred = np.asarray(model.predict(x))
    return Predictions(y, y_pred, proba, classes)


def holdout_split(
    y: Array, task: Task, test_fraction: float, seed: int
) -> tuple[Array, Array, bool]:
    """Row positions of train and test; stratified whenever the class counts allow it."""
    from sklearn.model_selection import train_test_split

    positions = np.arange(len(y))
    stratify = None
    if task == "classification":
        _, counts = np.unique(y, return_counts=True)
        test_rows = math.ceil(len(y) * test_fraction)
        if counts.min() >= 2 and len(counts) <= test_rows <= len(y) - len(counts):
            stratify = y
    train, test = train_test_split(
        positions, test_size=test_fraction, random_state=seed, shuffle=True, stratify=stratify
    )
    return np.sort(train), np.sort(test), stratify is not None


def _positive_class(classes: Array) -> Any:
    return classes[1] if len(classes) == 2 else None


def metric_value(name: str, p: Predictions) -> float | None:
    """One metric on some predictions, or None where it is undefined on them."""
    from sklearn import metrics as m

    if len(p.y_true) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = _compute(name, p, m)
        except ValueError:
            return None
    return value if value is None or math.isfinite(value) else None


def _compute(name: str, p: Predictions, m: Any) -> float | None:
    regression: dict[str, Callable[[], float]] = {
        "r2": lambda: m.r2_score(p.y_true, p.y_pred) if len(p.y_true) > 1 else math.nan,
        "rmse": lambda: math.sqrt(m.mean_squared_error(p.y_true, p.y_pred)),
        "mae": lambda: m.mean_absolute_error(p.y_true, p.y_pred),
    }
    if name in regression:
        return float(regression[name]())
    if name == "accuracy":
        return float(m.accuracy_score(p.y_true, p.y_pred))
    classes = p.classes if p.classes is not None else np.unique(p.y_true)
    positive = _positive_class(classes)
    if name in ("f1", "precision", "recall", "f1_macro"):
        scorer = {
            "f1": m.f1_score,
            "f1_macro": m.f1_score,
            "precision": m.precision_score,
            "recall": m.recall_score,
        }[name]
        if positive is not None and name != "f1_macro":
            return float(scorer(p.y_true, p.y_pred, pos_label=positive, zero_division=0))
        # Macro over the labels present, so a slice holding two of three classes is not
        # charged a zero for the class it cannot contain.
        return float(scorer(p.y_true, p.y_pred, average="macro", zero_division=0))
    if p.proba is None:
        return None
    if name == "log_loss":
        return float(m.log_loss(p.y_true, p.proba, labels=classes))
    if name == "roc_auc":
        present = np.unique(p.y_true)
        if len(present) < 2:
            return None
        if positive is not None:
            return float(m.roc_auc_score(p.y_true == positive, p.proba[:, 1]))
        if len(present) != len(classes):
            return None
        return float(
            m.roc_auc_score(p.y_true, p.proba, multi_class="ovr", average="macro", labels=classes)
        )
    raise ValueError(f"unknown metric {name}")


STANDARD_METRICS: dict[Task, tuple[str, ...]] = {
    "classification": ("accuracy", "f1_macro", "roc_auc", "log_loss"),
    "regression": ("r2", "rmse", "mae"),
}


def standard_metrics(task: Task, metric: str, p: Predictions) -> dict[str, float]:
    """The spec's metric plus the standard set for the task; undefined ones are left out."""
    names = list(dict.fromkeys([metric, *STANDARD_METRICS[task]]))
    values = {name: metric_value(name, p) for name in names}
    return {name: round(value, 6) for name, value in values.items() if value is not None}


def fold_splits(
    y: Array, *, task: Task, folds: int, seed: int
) -> tuple[list[tuple[Array, Array]], bool]:
    """The k folds as (train, test) positions into ``y``: shuffled with ``seed``, and
    stratified for classification when every class has a row for each fold. A search
    scores every trial on these same folds."""
    from sklearn.model_selection import KFold, StratifiedKFold

    splitter: Any = KFold(n_splits=folds, shuffle=True, random_state=seed)
    stratified = False
    if task == "classification" and np.unique(y, return_counts=True)[1].min() >= folds:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        stratified = True
    return list(splitter.split(np.zeros(len(y)), y)), stratified


def cross_validate(
    make_model: Callable[[], Any],
    x: Array,
    y: Array,
    *,
    task: Task,
    metric: str,
    folds: int,
    seed: int,
) -> dict[str, Any]:
    """K-fold scores of ``metric`` (stratified for classification when every class allows)."""
    splits, stratified = fold_splits(y, task=task, folds=folds, seed=seed)
    scores: list[float | None] = []
    for train, test in splits:
        model = make_model().fit(x[train], y[train])
        scores.append(metric_value(metric, predict(model, x[test], y[test], task)))
    defined = [s for s in scores if s is not None]
    return {
        "folds": folds,
        "metric": metric,
        "stratified": stratified,
        "scores": [None if s is None else round(s, 6) for s in scores],
        "mean": round(float(np.mean(defined)), 6) if defined else None,
        "std": round(float(np.std(defined)), 6) if defined else None,
    }
