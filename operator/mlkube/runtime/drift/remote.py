"""Drift checks on an S3 store: the window's partitions staged locally, the report put back.

Why staging: the check reads a log directory in chunks with bounded memory
(``drift.window``); the same reader runs on a temporary copy of exactly the objects it
needs, so the S3 path and the disk path cannot disagree. Only the window's hour prefixes
(``YYYY-MM-DD/HH/``) are listed, never the whole log; of the version only
``metadata.json`` (the reference profile) is read. The report (and its plot) is written
locally and then uploaded, by default to ``<model>/drift/<time>.json`` beside the log.
"""

from __future__ import annotations

import dataclasses
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from mlkube.api.performance import LABELS_SUBDIR
from mlkube.runtime.artifact import METADATA_FILE
from mlkube.runtime.drift.check import (
    DRIFT_DIR,
    CheckResult,
    DriftInputError,
    LiveOptions,
    run_check,
)
from mlkube.runtime.drift.spec import DriftSettings
from mlkube.runtime.drift.window import INFERENCE_DIR, LOG_SUFFIXES, Window
from mlkube.runtime.store import s3
from mlkube.runtime.store.s3 import ObjectStoreError, S3Location

MAX_OBJECT_BYTES = 1 << 30
DATA_SUFFIXES = (".parquet", ".pq", ".csv", ".csv.gz", ".jsonl", ".ndjson", ".json")


def window_hours(window: Window) -> list[str]:
    """``YYYY-MM-DD/HH`` of every hour partition that may hold rows of the window."""
    hour = window.start.replace(minute=0, second=0, microsecond=0)
    found = []
    while hour <= window.end:
        found.append(hour.strftime("%Y-%m-%d/%H"))
        hour += timedelta(hours=1)
    return found


def stage_reference(version: S3Location, into: Path) -> Path:
    """Only ``metadata.json`` of the version: the profile and the feature schema."""
    data = s3.get_bytes(version / METADATA_FILE, MAX_OBJECT_BYTES)
    if data is None:
        raise DriftInputError(f"no {METADATA_FILE} in {version}: not a (committed) model version")
    local = into / "model" / (version.name or "version")
    local.mkdir(parents=True)
    (local / METADATA_FILE).write_bytes(data)
    return local


def stage_live(live: S3Location, window: Window, into: Path) -> Path:
    """A data object, or the window's log objects, copied under ``into``."""
    if live.name.lower().endswith(DATA_SUFFIXES) and s3.exists(live):
        target = into / live.name
        s3.download(live, target, MAX_OBJECT_BYTES)
        return target
    root = live
    if live.name != INFERENCE_DIR and any(True for _ in s3.list_keys(live / INFERENCE_DIR)):
        root = live / INFERENCE_DIR
    local = into / INFERENCE_DIR
    local.mkdir(parents=True)
    # The feedback route's labels sit beside the log, partitioned the same way.
    for source, target in ((root, local), (root / LABELS_SUBDIR, local / LABELS_SUBDIR)):
        for hour in window_hours(window):
            for name in s3.list_keys(source / hour):
                if "/" in name or not name.endswith(LOG_SUFFIXES):
                    continue
                folder = target / hour
                folder.mkdir(parents=True, exist_ok=True)
                s3.download(source / hour / name, folder / name, MAX_OBJECT_BYTES)
    return local


def stage_labels(labels: S3Location, into: Path) -> Path:
    """A late-labels object, or every data object under a prefix, copied under ``into``."""
    target = into / "late-labels"
    target.mkdir(parents=True)
    if labels.name.lower().endswith(DATA_SUFFIXES) and s3.exists(labels):
        s3.download(labels, target / labels.name, MAX_OBJECT_BYTES)
        return target / labels.name
    for name in s3.list_keys(labels):
        if name.lower().endswith(DATA_SUFFIXES):
            local = target / name.replace("/", "_")
            s3.download(labels / name, local, MAX_OBJECT_BYTES)
    return target


def check_anywhere(
    model_dir: Path | S3Location,
    live: Path | S3Location,
    settings: DriftSettings,
    now: datetime,
    *,
    report_path: Path | S3Location | None = None,
    plot: bool = True,
    options: LiveOptions | None = None,
) -> CheckResult:
    """``check.run_check`` where any of the three (and the late labels) may be ``s3://``."""
    options = options or LiveOptions()
    remote = [
        x for x in (model_dir, live, report_path, options.late_labels) if isinstance(x, S3Location)
    ]
    if not remote:
        assert isinstance(model_dir, Path) and isinstance(live, Path)
        assert not isinstance(report_path, S3Location)
        return run_check(
            model_dir, live, settings, now, report_path=report_path, plot=plot, options=options
        )
    if report_path is None:
        stamp = f"{now.strftime('%Y%m%dT%H%M%SZ')}.json"
        report_path = (
            model_dir.parent / DRIFT_DIR / stamp
            if isinstance(model_dir, S3Location)
            else model_dir.resolve().parent / DRIFT_DIR / stamp
        )
    try:
        with tempfile.TemporaryDirectory(prefix="mlkube-drift-") as tmp:
            if isinstance(options.late_labels, S3Location):
                late = stage_labels(options.late_labels, Path(tmp))
                options = dataclasses.replace(options, late_labels=late)
            return _staged(
                model_dir, live, settings, now=now, report=report_path, plot=plot, tmp=Path(tmp),
                options=options,
            )  # fmt: skip
    except ObjectStoreError as error:
        raise DriftInputError(str(error)) from None


def _staged(
    model_dir: Path | S3Location,
    live: Path | S3Location,
    settings: DriftSettings,
    *,
    now: datetime,
    report: Path | S3Location,
    plot: bool,
    tmp: Path,
    options: LiveOptions,
) -> CheckResult:
    window = Window(now - settings.window, now)
    local_model = (
        stage_reference(model_dir, tmp) if isinstance(model_dir, S3Location) else model_dir
    )
    local_live = stage_live(live, window, tmp) if isinstance(live, S3Location) else live
    local_report = tmp / "report" / report.name if isinstance(report, S3Location) else report
    result = run_check(
        local_model,
        local_live,
        settings,
        now,
        report_path=local_report,
        plot=plot,
        live_source=str(live),
        options=options,
    )
    if not isinstance(report, S3Location):
        return result
    rows_file = result.live.rows_file  # "drift/live-rows-<time>.jsonl", beside the report
    if rows_file:
        rows = local_report.parent / Path(rows_file).name
        s3.put_bytes(
            report.parent / rows.name, rows.read_bytes(), ContentType="application/x-ndjson"
        )
    s3.put_bytes(report, local_report.read_bytes(), ContentType="application/json")
    plot_path: S3Location | None = None
    if result.plot_path is not None and isinstance(result.plot_path, Path):
        plot_path = report.parent / Path(report.name).with_suffix(".png").name
        s3.put_bytes(plot_path, result.plot_path.read_bytes(), ContentType="image/png")
    return dataclasses.replace(result, report_path=report, plot_path=plot_path)
