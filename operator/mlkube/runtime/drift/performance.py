"""The live score: logged predictions joined with their labels, overall and per slice.

The join is a hash join on ``request id # row`` whose memory does not grow with the
rows: labels are read first into a table of at most ``BUCKET_LABELS`` entries; when
there are more, labels and then predictions are spilled by hash into ``PARTITIONS``
files in a scratch directory and each partition is joined on its own. Predictions are
always streamed. What is kept across rows is bounded by the classes (a confusion count
per slice), a few sums (regression), a reservoir of label delays for the median, and
for a retrain the newest ``live_max_rows`` labelled rows.

Scores come from scikit-learn on the confusion counts with ``sample_weight``, which is
exactly what it computes on the expanded rows. A label that joins no logged prediction
in the window (an unknown id, a sampled-out request, an old prediction) is counted as
unmatched; a later label for the same prediction replaces the earlier one (counted as a
duplicate); a label that is not a class of the model, or not a number for a regressor,
is counted as invalid. None of them is an error.
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from mlkube.api.performance import OVERALL_SLICE, LabelCounts, PerformanceVerdict
from mlkube.runtime.drift.labels import PredictionCounts, read_labels, read_predictions
from mlkube.runtime.drift.livescore import SliceAccumulator, check_slices, verdict_of
from mlkube.runtime.drift.perfspec import PerformanceSettings
from mlkube.runtime.drift.window import Window
from mlkube.runtime.profile import category_key

BUCKET_LABELS: Final = 65_536
PARTITIONS: Final = 64
CHUNK_ROWS: Final = 16_384
DELAY_SAMPLE: Final = 10_000
MEMO_VALUES: Final = 10_000

Label = tuple[Any, Any, float]  # (comparable key, value for training, ts)


@dataclass
class PerformanceResult:
    verdict: PerformanceVerdict
    metric: str
    score: float | None
    validation_score: float | None
    slices: list[tuple[str, float | None, int]]
    counts: LabelCounts
    predictions: int
    coverage: float
    median_delay: float | None
    message: str
    live_rows: list[bytes] = field(default_factory=list)  # JSON lines, newest last


class LabelNormaliser:
    """Makes labels and outputs comparable: a class key (classification) or a float."""

    def __init__(self, metadata: Mapping[str, Any]) -> None:
        self.classification = metadata["task"] == "classification"
        classes = (metadata.get("target") or {}).get("classes") or []
        self.classes = {category_key(c): c for c in classes}
        self.memo: dict[tuple[type, Any], str | None] = {}

    def key(self, value: Any) -> str | None:
        """``category_key`` of a label or output, remembered for the few distinct values."""
        try:
            return self.memo[type(value), value]
        except KeyError:
            key = category_key(value)
            if len(self.memo) < MEMO_VALUES:
                self.memo[type(value), value] = key
            return key
        except TypeError:  # unhashable: not a class, but say so through category_key
            return category_key(value)

    def label(self, value: Any) -> tuple[Any, Any] | None:
        """(key, training value) of a label, or None when it cannot be one."""
        if isinstance(value, bool) or value is None:
            return None
        if self.classification:
            key = self.key(value)
            if key is None or (self.classes and key not in self.classes):
                return None
            return key, self.classes.get(key, value)
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        return (number, number) if math.isfinite(number) else None

    def output(self, value: Any) -> Any:
        if self.classification:
            return self.key(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            return math.nan


class Join:
    """One check's join state: labels table (or partitions), counts, accumulators."""

    def __init__(
        self,
        settings: PerformanceSettings,
        metadata: Mapping[str, Any],
        scratch: Path,
    ) -> None:
        self.settings = settings
        self.norm = LabelNormaliser(metadata)
        self.counts: LabelCounts = {
            "received": 0,
            "matched": 0,
            "unmatched": 0,
            "duplicates": 0,
            "invalid": 0,
        }
        self.table: dict[str, Label] = {}
        self.scratch = scratch
        self.spilled = False
        self.partitions: list[Any] = []
        self.acc = SliceAccumulator(settings, metadata)
        self.delays: list[float] = []
        self.seen_delays = 0
        self.rng = random.Random(0)  # noqa: S311 (a sample, not a secret)
        self.target = str((metadata.get("target") or {}).get("name") or "target")
        self.newest: list[tuple[float, int, bytes]] = []
        self.sequence = 0

    # -- labels -------------------------------------------------------------------------
    def add_labels(self, labels: Iterator[tuple[str, Any, float | None]]) -> None:
        for key, value, ts in labels:
            self.counts["received"] += 1
            normal = self.norm.label(value) if key else None
            if normal is None:
                self.counts["invalid"] += 1
                continue
            entry = (normal[0], normal[1], ts if ts is not None else math.inf)
            if self.spilled:
                self._spill(key, entry)
            else:
                self._put(self.table, key, entry)
                if len(self.table) > BUCKET_LABELS:
                    self._start_spilling()

    def _put(self, table: dict[str, Label], key: str, entry: Label) -> None:
        old = table.get(key)
        if old is not None:
            self.counts["duplicates"] += 1
            if old[2] > entry[2]:
                return
        table[key] = entry

    def _start_spilling(self) -> None:
        self.spilled = True
        self.partitions = [
            (self.scratch / f"labels-{i}.jsonl").open("ab") for i in range(PARTITIONS)
        ]
        table, self.table = self.table, {}
        for key, entry in table.items():
            self._spill(key, entry)

    def _spill(self, key: str, entry: Label) -> None:
        ts = None if entry[2] == math.inf else entry[2]
        line = orjson.dumps([key, entry[0], entry[1], ts], option=orjson.OPT_APPEND_NEWLINE)
        self.partitions[hash(key) % PARTITIONS].write(line)

    # -- predictions --------------------------------------------------------------------
    def add_predictions(
        self,
        predictions: Iterator[tuple[str, Any, float, dict[str, Any]]],
        observe: Callable[[Any], None] | None,
    ) -> None:
        if not self.spilled:
            for key, output, ts, inputs in predictions:
                if observe is not None:
                    observe(output)
                self._match(self.table, key, output, ts, inputs)
            self.counts["unmatched"] = len(self.table)
            self.acc.flush()
            return
        for handle in self.partitions:
            handle.close()
        outputs = [(self.scratch / f"preds-{i}.jsonl").open("ab") for i in range(PARTITIONS)]
        for key, output, ts, inputs in predictions:
            if observe is not None:
                observe(output)
            if key:
                line = orjson.dumps([key, output, ts, inputs], option=orjson.OPT_APPEND_NEWLINE)
                outputs[hash(key) % PARTITIONS].write(line)
        for handle in outputs:
            handle.close()
        for index in range(PARTITIONS):
            self._join_partition(index)
        self.acc.flush()

    def _join_partition(self, index: int) -> None:
        table: dict[str, Label] = {}
        with (self.scratch / f"labels-{index}.jsonl").open("rb") as handle:
            for line in handle:
                key, label_key, value, ts = orjson.loads(line)
                self._put(table, key, (label_key, value, math.inf if ts is None else ts))
        with (self.scratch / f"preds-{index}.jsonl").open("rb") as handle:
            for line in handle:
                key, output, ts, inputs = orjson.loads(line)
                self._match(table, key, output, ts, inputs)
        self.counts["unmatched"] += len(table)

    def _match(
        self, table: dict[str, Label], key: str, output: Any, ts: float, inputs: dict[str, Any]
    ) -> None:
        """Joins one prediction; a matched label leaves the table (a repeated id then
        finds nothing: the first logged prediction with a request id owns its label)."""
        entry = table.pop(key, None)
        if entry is None:
            return
        self.counts["matched"] += 1
        self.acc.add(entry[0], self.norm.output(output), inputs)
        if entry[2] != math.inf:
            self._delay(entry[2] - ts)
        if self.settings.include_live:
            self._keep_row(ts, inputs, entry[1])

    def _delay(self, seconds: float) -> None:
        self.seen_delays += 1
        if len(self.delays) < DELAY_SAMPLE:
            self.delays.append(seconds)
            return
        slot = self.rng.randrange(self.seen_delays)
        if slot < DELAY_SAMPLE:
            self.delays[slot] = seconds

    def _keep_row(self, ts: float, inputs: dict[str, Any], label: Any) -> None:
        self.sequence += 1
        line = orjson.dumps({**inputs, self.target: label}, option=orjson.OPT_APPEND_NEWLINE)
        item = (ts, self.sequence, line)
        if len(self.newest) < self.settings.live_max_rows:
            heapq.heappush(self.newest, item)
        else:
            heapq.heappushpop(self.newest, item)


def check_performance(
    log: Path,
    metadata: Mapping[str, Any],
    settings: PerformanceSettings,
    window: Window,
    *,
    late_labels: Path | None = None,
    observe: Callable[[Any], None] | None = None,
) -> PerformanceResult:
    """Joins the window's logged predictions with every label and scores them.

    ``settings`` must be resolved (``perfspec.resolve``); ``observe`` sees every logged
    output of the window (the prediction-drift summary), labelled or not.
    """
    check_slices(settings, metadata)
    seen = PredictionCounts()
    with tempfile.TemporaryDirectory(prefix="mlkube-join-") as scratch:
        join = Join(settings, metadata, Path(scratch))
        join.add_labels(read_labels(log, window, late_labels))
        version = metadata.get("version")
        join.add_predictions(
            read_predictions(log, window, seen, version if isinstance(version, int) else None),
            observe,
        )
        for handle in join.partitions:
            handle.close()
    return _result(join, settings, metadata, seen.read)


def _result(
    join: Join, settings: PerformanceSettings, metadata: Mapping[str, Any], predictions: int
) -> PerformanceResult:
    scores = join.acc.scores()
    overall = next(s for s in scores if s[0] == OVERALL_SLICE)
    metric = str(settings.metric)
    validation = (metadata.get("metrics") or {}).get(metric)
    if validation is None and metadata.get("metric") == metric:
        validation = metadata.get("score")
    verdict, message = verdict_of(settings, scores, validation)
    matched = join.counts["matched"]
    rows = [line for _, _, line in sorted(join.newest)]
    return PerformanceResult(
        verdict=verdict,
        metric=metric,
        score=overall[1],
        validation_score=None if validation is None else float(validation),
        slices=scores,
        counts=join.counts,
        predictions=predictions,
        coverage=round(matched / predictions, 6) if predictions else 0.0,
        median_delay=round(statistics.median(join.delays), 3) if join.delays else None,
        message=message,
        live_rows=rows,
    )


def as_report(result: PerformanceResult) -> dict[str, Any]:
    """The report's ``performance`` object: metric, score, labels, slices and the rest."""
    return {
        "verdict": result.verdict.value,
        "metric": result.metric,
        "score": result.score,
        "validationScore": result.validation_score,
        "labels": {
            **result.counts,
            "coverage": result.coverage,
            "medianDelaySeconds": result.median_delay,
        },
        "predictions": result.predictions,
        "slices": [{"name": n, "score": s, "labels": c} for n, s, c in result.slices],
        "message": result.message,
    }
