"""``mlkube drift-check``: compare a window of live rows with a version's reference profile.

In a cluster, ``--monitor NS/NAME`` does the same from the Monitor and its Model and
writes the Monitor's status (see ``incluster``). Local mode reads ``--model-dir`` and
``--live`` and writes the report beside the inference logs or to ``--report``. This
module only parses flags and prints; the check itself is ``check.run_check``. Exit codes:
0 checked (the verdict is in the report and on stdout), 2 bad input, 1 internal error,
3 drift found with ``--fail-on-drift``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from mlkube.api.errors import CommandError
from mlkube.runtime.drift.check import DriftInputError, LiveOptions, load_performance, load_settings
from mlkube.runtime.drift.remote import check_anywhere
from mlkube.runtime.drift.window import INFERENCE_DIR, parse_duration, parse_time
from mlkube.runtime.store.s3 import S3Location, location

EXIT_DRIFT: Final = 3


def _monitor_command(args: argparse.Namespace) -> int:
    from mlkube.runtime.drift.incluster import run_monitor  # loads the kubernetes client

    try:
        now = parse_time(args.now) if args.now else None
        outcome = run_monitor(args.monitor, now, fail_on_drift=args.fail_on_drift)
    except (DriftInputError, ValueError) as error:
        raise CommandError(str(error)) from None
    if outcome.result is not None:
        print(outcome.result.table)
        print(f"report: {outcome.result.report_path}")
    if outcome.exit_code == 2:
        raise CommandError(outcome.message)
    print(outcome.message)
    return outcome.exit_code


def command(args: argparse.Namespace) -> int:
    if args.monitor:
        if args.model_dir or args.live or args.file or args.report or args.window or args.labels:
            raise CommandError(
                "--monitor reads everything from the cluster; it takes no "
                "--model-dir, --live, -f, --report, --window or --labels"
            )
        return _monitor_command(args)
    if args.model_dir and not args.live and isinstance(args.model_dir, S3Location):
        args.live = args.model_dir.parent / INFERENCE_DIR  # the predictor's default log
    if not args.model_dir or not args.live:
        raise CommandError("give --model-dir and --live (local mode) or --monitor NS/NAME")
    try:
        settings = load_settings(args.file)
        options = LiveOptions(
            performance=load_performance(args.file),
            late_labels=args.labels,
        )
        if args.window:
            settings = replace(settings, window=parse_duration(args.window))
        # Not truncated to the second: rows logged earlier in this second belong to the
        # window (names and the report's times are still written to the second).
        now = parse_time(args.now) if args.now else datetime.now(UTC)
        result = check_anywhere(
            args.model_dir,
            args.live,
            settings,
            now,
            report_path=args.report,
            plot=not args.no_plot,
            options=options,
        )
    except DriftInputError as error:
        raise CommandError(str(error)) from None
    except ValueError as error:
        raise CommandError(str(error)) from None
    print(result.table)
    print(
        f"report: {result.report_path}"
        + (f"  plot: {result.plot_path}" if result.plot_path else "")
    )
    if result.evaluation.live_rows == 0:
        print(
            f"mlkube drift-check: no live rows in {args.live} for the window; "
            "verdict insufficient-data",
            file=sys.stderr,
        )
    if args.fail_on_drift and result.report["verdict"] == "drift":
        return EXIT_DRIFT
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "drift-check",
        help="compare live rows with a model version's reference profile",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--monitor",
        metavar="NS/NAME",
        help="in a cluster: check this Monitor, write its status, retrain",
    )
    parser.add_argument(
        "--model-dir", type=location, help="the serving version: DIR/NS/MODEL/vN, or s3://…/vN"
    )
    parser.add_argument(
        "--live",
        type=location,
        help="inference-log directory, or a CSV/Parquet/JSONL data file (a directory or s3://…; "
        "default for an s3:// --model-dir: its ../inference)",
    )
    parser.add_argument("-f", "--file", type=Path, help="Monitor manifest (YAML) with the settings")
    parser.add_argument(
        "--report",
        type=location,
        help="report path or s3:// key (default: <store>/<ns>/<model>/drift/<time>.json)",
    )
    parser.add_argument("--window", help="window duration, e.g. 24h (overrides the Monitor)")
    parser.add_argument(
        "--labels",
        type=location,
        help="late labels (CSV/Parquet/JSONL with id,label, or a directory of them) for "
        "the Monitor's spec.performance, besides the feedback log",
    )
    parser.add_argument("--now", help="end of the window, RFC 3339 (default: now)")
    parser.add_argument("--fail-on-drift", action="store_true", help="exit 3 when drift is found")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the PNG")
    parser.set_defaults(func=command)
