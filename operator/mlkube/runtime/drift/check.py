"""One drift check: a window of live rows against a version's reference profile.

The library both ways of running a check share: ``command`` (local paths, the CLI) and
``incluster`` (a Monitor's CronJob pod). Every input is checked and the whole window is
read before anything is written, so a bad input leaves nothing behind; the report goes
beside the inference logs (``<store>/<ns>/<model>/drift/<UTC time>.json``) unless a path
is given.
"""

from __future__ import annotations

import contextlib
import ctypes
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import yaml

from mlkube.runtime.artifact import ArtifactError, Metadata, read_metadata
from mlkube.runtime.drift.accumulate import LiveSummary
from mlkube.runtime.drift.evaluate import Evaluation, evaluate, needs_live_sample
from mlkube.runtime.drift.groundtruth import LiveChecks, run_live_checks
from mlkube.runtime.drift.labels import log_root
from mlkube.runtime.drift.perfspec import PerformanceSettings, performance_from_monitor
from mlkube.runtime.drift.report import build_report, render_table, write_plot, write_report
from mlkube.runtime.drift.spec import DriftSettings, SpecError, settings_from_monitor
from mlkube.runtime.drift.window import LiveDataError, Window, WindowCounts, read_live
from mlkube.runtime.profile import ProfileError, ReferenceProfile, read_reference_profile
from mlkube.runtime.store.s3 import S3Location

DRIFT_DIR: Final = "drift"


class DriftInputError(Exception):
    """An input of the check is unusable; the commands turn it into a CommandError."""


@dataclass
class CheckResult:
    report: dict[str, Any]
    evaluation: Evaluation
    report_path: Path | S3Location
    plot_path: Path | S3Location | None
    table: str
    live: LiveChecks = field(default_factory=LiveChecks)


@dataclass(frozen=True)
class LiveOptions:
    """What the output checks need besides the drift settings (see ``groundtruth``)."""

    performance: PerformanceSettings | None = None
    model: dict[str, Any] | None = None
    late_labels: Path | S3Location | None = None
    """Staged to a local copy before ``run_check`` sees it, when it is in S3."""


def load_settings(path: Path | None) -> DriftSettings:
    return _load(path)[0]


def load_performance(path: Path | None) -> PerformanceSettings | None:
    """The manifest's ``spec.performance`` (None without one)."""
    return _load(path)[1]


def _load(path: Path | None) -> tuple[DriftSettings, PerformanceSettings | None]:
    if path is None:
        return DriftSettings(), None
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    except OSError as error:
        raise DriftInputError(f"cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise DriftInputError(f"{path} is not valid YAML: {error}") from None
    monitors = [d for d in documents if isinstance(d, dict) and d.get("kind") == "Monitor"]
    if len(monitors) != 1:
        raise DriftInputError(f"{path} must hold exactly one Monitor manifest")
    try:
        return settings_from_monitor(monitors[0]), performance_from_monitor(monitors[0])
    except SpecError as error:
        raise DriftInputError(f"{path}: {error}") from None


def load_reference(model_dir: Path) -> tuple[Metadata, ReferenceProfile, dict[str, str]]:
    """The version's metadata, its profile, and the kind of every profiled feature."""
    try:
        metadata = read_metadata(model_dir)
        profile = read_reference_profile(metadata.get("profile"))
    except (ArtifactError, ProfileError) as error:
        raise DriftInputError(f"{model_dir}: {error}") from None
    kinds: dict[str, str] = {f["name"]: f["kind"] for f in metadata.get("features", [])}
    absent = [name for name in kinds if name not in profile["features"]]
    if not kinds or absent:
        raise DriftInputError(
            f"{model_dir}: the reference profile does not cover the feature schema "
            f"(missing: {', '.join(absent) or 'no features in the schema'})"
        )
    for name, kind in kinds.items():
        if profile["features"][name]["kind"] != kind:
            raise DriftInputError(
                f"{model_dir}: feature {name!r} is {kind} in the schema "
                f"but {profile['features'][name]['kind']} in the profile"
            )
    return metadata, profile, kinds


def summarise_live(
    live: Path,
    profile: ReferenceProfile,
    kinds: dict[str, str],
    settings: DriftSettings,
    window: Window,
) -> tuple[LiveSummary, WindowCounts]:
    numeric = [n for n, k in kinds.items() if k == "numeric"]
    categorical = [n for n, k in kinds.items() if k == "categorical"]
    summary = LiveSummary(
        profile,
        numeric,
        categorical,
        keep_sample=needs_live_sample(profile, numeric, settings),
    )
    counts = WindowCounts()
    try:
        for chunk in read_live(live, list(kinds), set(categorical), window, counts):
            summary.add(chunk)
    except LiveDataError as error:
        raise DriftInputError(str(error)) from None
    if counts.windowed and summary.rows:
        never = [name for name in kinds if name not in counts.seen_keys]
        if never:
            raise DriftInputError(
                f"{live}: logged inputs lack feature(s) of the reference: {', '.join(never)} "
                "(schema mismatch between the serving version and the log?)"
            )
    return summary, counts


def release_free_memory() -> None:
    """Returns freed heap pages to the OS (glibc's malloc_trim) before the plotting stack
    loads, so drawing the PNG after the window's buffers are gone does not raise the
    check's peak RSS (~30 MB on 100k rows). Does nothing where there is no glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def default_report_path(model_dir: Path, checked_at: datetime) -> Path:
    return model_dir.resolve().parent / DRIFT_DIR / f"{checked_at.strftime('%Y%m%dT%H%M%SZ')}.json"


def _live_checks(  # noqa: PLR0917 (one call site, all positions named there)
    live: Path,
    metadata: Metadata,
    settings: DriftSettings,
    now: datetime,
    options: LiveOptions,
    target: Path,
) -> LiveChecks:
    try:
        return run_live_checks(
            log_root(live),
            dict(metadata),
            settings,
            options.performance,
            now,
            model=options.model,
            late_labels=_local(options.late_labels),
            rows_dir=target.parent,
        )
    except (LiveDataError, SpecError) as error:
        raise DriftInputError(str(error)) from None
    except OSError as error:
        raise DriftInputError(f"cannot write the live rows beside {target}: {error}") from None


def _local(labels: Path | S3Location | None) -> Path | None:
    if isinstance(labels, S3Location):  # remote.check_anywhere stages it first
        raise DriftInputError(f"{labels}: late labels in S3 are read through check_anywhere")
    return labels


def run_check(
    model_dir: Path,
    live: Path,
    settings: DriftSettings,
    now: datetime,
    *,
    report_path: Path | None = None,
    plot: bool = True,
    live_source: str | None = None,
    options: LiveOptions | None = None,
) -> CheckResult:
    """Runs one check end to end; raises ``DriftInputError`` before writing on bad input."""
    metadata, profile, kinds = load_reference(model_dir)
    if settings.model and settings.model != metadata["name"]:
        raise DriftInputError(
            f"the Monitor watches model {settings.model!r} but {model_dir} "
            f"holds model {metadata['name']!r}"
        )
    try:
        for name, kind in kinds.items():
            settings.method_for(
                name, kind, profile["rows"], profile["features"][name].get("distinct")
            )
    except SpecError as error:
        raise DriftInputError(str(error)) from None
    window = Window(now - settings.window, now)
    summary, counts = summarise_live(live, profile, kinds, settings, window)
    evaluation = evaluate(profile, summary, settings, kinds)
    report = build_report(
        model=metadata["name"],
        version=metadata["version"],
        checked_at=now,
        window=window if counts.windowed else None,
        counts=counts,
        evaluation=evaluation,
        share_threshold=settings.dataset_drift_share,
        live_source=live_source or str(live),
    )
    target = report_path or default_report_path(model_dir, now)
    checks = _live_checks(live, metadata, settings, now, options or LiveOptions(), target)
    report.update(checks.report())
    try:
        write_report(target, report)
        plot_path = target.with_suffix(".png")
        wrote_plot = False
        if plot and evaluation.live_rows > 0:
            release_free_memory()
            wrote_plot = write_plot(plot_path, evaluation)
    except OSError as error:
        raise DriftInputError(f"cannot write the report to {target}: {error.strerror}") from None
    table = render_table(report, evaluation)
    return CheckResult(
        report,
        evaluation,
        target,
        plot_path if wrote_plot else None,
        f"{table}\n{checks.table()}" if checks.table() else table,
        checks,
    )
