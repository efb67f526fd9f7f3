"""``mlkube train``: the command line around one training run.

In a cluster the operator runs it in the TrainingJob's pod with ``--model-json`` (the
effective Model: its template plus the TrainingJob's overrides) and reads the outcome
from the pod's termination message; on a laptop it takes ``-f model.yaml``, the same
YAML a user applies. Either way the outcome is one JSON line on stdout and in the
termination log, and a failure is one line on stderr, ``{"error": ...}`` in the
termination log, exit code 2 for input the user can fix and 1 for anything else, and
nothing in the store.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar

import yaml

from mlkube.api.datacheck import encode_data_check
from mlkube.api.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, CommandError
from mlkube.api.names import model_dir as model_dir_of
from mlkube.api.status import TrainerSummary, Trigger
from mlkube.api.summary import error_summary, fit_summary
from mlkube.runtime.artifact import ArtifactError
from mlkube.runtime.store.s3 import ObjectStoreError, ObjectStoreUnavailableError
from mlkube.runtime.train import TrainingInputError, TrainingUnavailableError
from mlkube.runtime.train.settings import TrainSettings
from mlkube.runtime.train.spec import TrainingSpec, parse_model

if TYPE_CHECKING:
    from mlkube.runtime.train.record import RunRequest
    from mlkube.runtime.train.run import Progress

T = TypeVar("T")
MAX_TRIAL_MESSAGE: Final = 4000

TRIGGERS: Final = tuple(Trigger)
DEFAULT_TERMINATION_LOG: Final = Path("/dev/termination-log")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train, validate and store one version of a Model",
        description="Train one version of a Model from its manifest and write it to a store "
        "directory as <store>/<namespace>/<model>/v<N>/. Prints a JSON summary.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "-f",
        "--filename",
        type=Path,
        metavar="MODEL_YAML",
        help="the Model manifest (YAML or JSON; - for stdin)",
    )
    source.add_argument(
        "--model-json", metavar="JSON", help="the effective Model manifest as a JSON string"
    )
    parser.add_argument(
        "--store",
        required=True,
        metavar="DIR|s3://BUCKET/PREFIX",
        help="the model store's root: a directory, or an S3 location (the standard AWS "
        "environment configures the client: AWS_ENDPOINT_URL, AWS_REGION, credentials)",
    )
    parser.add_argument(
        "--version",
        type=int,
        metavar="N",
        help="version to write (default: 1 + the highest in the store)",
    )
    parser.add_argument(
        "--namespace", metavar="NS", help="overrides metadata.namespace (default: default)"
    )
    _add_pod_arguments(parser)
    _add_search_arguments(parser)
    parser.set_defaults(func=run_command)


def _add_pod_arguments(parser: argparse.ArgumentParser) -> None:
    """What the operator passes in a pod: the store as mounted, lineage, termination log."""
    parser.add_argument(
        "--model-root",
        type=Path,
        metavar="DIR",
        help="this Model's directory of the store, when only it is mounted "
        "(default: <store>/<namespace>/<model>)",
    )
    parser.add_argument(
        "--prune-below",
        type=int,
        metavar="N",
        help="after writing, delete this Model's versions older than vN (see --keep)",
    )
    parser.add_argument(
        "--keep",
        default="",
        metavar="N,M",
        help="versions --prune-below never deletes (the serving and pinned ones)",
    )
    parser.add_argument(
        "--store-uri",
        metavar="URI",
        help="how the summary names the store (default: the absolute --store)",
    )
    parser.add_argument(
        "--termination-log",
        type=Path,
        metavar="PATH",
        help="where the summary goes too (default: /dev/termination-log, "
        "skipped when that cannot be written outside a pod)",
    )
    parser.add_argument(
        "--trigger",
        choices=TRIGGERS,
        default="manual",
        help="why this run happens, recorded in the lineage",
    )
    parser.add_argument(
        "--reason", default="", metavar="TEXT", help="free text recorded in the lineage"
    )
    parser.add_argument(
        "--training-job",
        metavar="NAME",
        help="the TrainingJob this run belongs to, recorded in the lineage",
    )
    parser.add_argument(
        "--live-rows",
        metavar="JSON",
        help="labelled live rows to add: a TrainingJob's spec.liveRows "
        '({"path": "drift/live-rows-<time>.jsonl", ...}, in the Model\'s directory)',
    )
    parser.add_argument(
        "--check-data",
        metavar="SHA256",
        help="train nothing: read the data, print its digest and whether it differs",
    )


def _add_search_arguments(parser: Any) -> None:
    search = parser.add_argument_group("model search (spec.training.search)")
    search.add_argument(
        "--parallel",
        type=int,
        default=1,
        metavar="N",
        help="run a search's trials in N processes (default 1: in this process)",
    )
    steps = search.add_mutually_exclusive_group()
    steps.add_argument(
        "--trial",
        type=int,
        nargs="?",
        const=-1,
        metavar="K",
        help="run only trial K (without K: $JOB_COMPLETION_INDEX, as an Indexed Job's pod)",
    )
    steps.add_argument(
        "--select",
        action="store_true",
        help="after the trials: make the best completed trial the version",
    )


def _one_line(message: str) -> str:
    return " ".join(message.split())


def read_manifest(args: argparse.Namespace) -> dict[str, Any]:
    """The Model from ``-f`` (first ``kind: Model`` document) or ``--model-json``."""
    if args.model_json is not None:
        try:
            document = json.loads(args.model_json)
        except ValueError as error:
            raise TrainingInputError(f"--model-json is not valid JSON: {error}") from None
        if not isinstance(document, dict):
            raise TrainingInputError("--model-json must be a JSON object (a Model)")
        return document
    path: Path = args.filename
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TrainingInputError(f"manifest {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise TrainingInputError(f"cannot read manifest {path}: {error}") from None
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        raise TrainingInputError(f"manifest {path} is not valid YAML: {error}") from None
    models = [d for d in documents if isinstance(d, dict) and d.get("kind", "Model") == "Model"]
    if len(models) != 1:
        found = "no Model" if not models else f"{len(models)} Models"
        raise TrainingInputError(f"manifest {path} holds {found}; expected exactly one")
    return models[0]


def write_termination_log(path: Path | None, payload: bytes) -> None:
    """Writes ``payload`` to ``path``; the default path is skipped outside a pod.

    ``None`` means the default ``/dev/termination-log``: outside a cluster its directory
    may be missing or not writable, and that must not fail a laptop run. An explicitly
    given path must be written; an ``OSError`` then reaches the caller.
    """
    if path is None:
        try:
            DEFAULT_TERMINATION_LOG.write_bytes(payload)
        except OSError:
            return
        return
    path.write_bytes(payload)


def _fail(args: argparse.Namespace, message: str, exit_code: int) -> NoReturn:
    message = _one_line(message)
    try:
        write_termination_log(args.termination_log, error_summary(message))
    except OSError as error:
        message += f" (and the termination log could not be written: {error.strerror})"
    raise CommandError(message, exit_code)


def run_command(args: argparse.Namespace) -> int:
    progress = _check_termination_log(args)
    if args.check_data is not None:
        return _check_data(args)
    if args.trial is not None:
        return _run_trial(args, progress)
    spec, summary = _guarded(args, lambda: _train(args, progress))
    payload = fit_summary(summary)
    try:
        write_termination_log(args.termination_log, payload)
    except OSError as error:
        from mlkube.runtime.train.remote import take_back

        take_back(args.store, args.model_root, spec, summary["version"])
        message = f"cannot write the termination log {args.termination_log}: {error.strerror}"
        _fail(args, message, EXIT_INTERNAL)
    if args.prune_below is not None:
        _prune(args, spec, progress)
    sys.stdout.write(payload.decode("utf-8") + "\n")
    sys.stdout.flush()
    progress(f"done: {summary['metric']}={summary['score']}")
    return 0


def _check_data(args: argparse.Namespace) -> int:
    """A schedule firing's check (retrainWhen DataChanged): the data read as training reads
    it, its sha256 against the last trained version's, one JSON line; nothing written."""
    from mlkube.runtime.train.data import load_data

    spec = _guarded(args, lambda: parse_model(read_manifest(args), args.namespace))
    loaded = _guarded(args, lambda: load_data(spec.data, TrainSettings.from_env()))
    _emit(args, encode_data_check(loaded.sha256, args.check_data))
    return 0


def _prune(args: argparse.Namespace, spec: TrainingSpec, progress: Progress) -> None:
    """Deletes old versions after this one is safely written; a failure is only logged."""
    from mlkube.runtime.train.localstore import prune_versions
    from mlkube.runtime.train.remote import prune, remote_store

    remote = remote_store(args.store)
    model_dir = args.model_root or Path(args.store) / model_dir_of(spec.namespace, spec.name)
    try:
        keep = {int(v) for v in args.keep.split(",") if v.strip()}
        if remote is not None:
            pruned = prune(remote, spec.namespace, spec.name, args.prune_below, keep)
        else:
            pruned = prune_versions(model_dir, below=args.prune_below, keep=keep)
    except (OSError, ValueError, ObjectStoreError) as error:
        progress(f"pruning old versions failed: {error}")
        return
    if pruned:
        progress(f"pruned {', '.join(f'v{v}' for v in pruned)} (older than v{args.prune_below})")


def _run_trial(args: argparse.Namespace, progress: Progress) -> int:
    """One trial of a search: its result goes to the store, stdout and the termination
    log (the operator counts trials from there), and exit 0 even when the trial failed."""
    from mlkube.runtime.train.search_run import trial_command

    index = args.trial
    if index < 0:
        index = _completion_index(args)
    result = _guarded(
        args,
        lambda: trial_command(_request(args), TrainSettings.from_env(), progress, index),
    )
    payload = json.dumps(result, separators=(",", ":")).encode("utf-8")
    if len(payload) > MAX_TRIAL_MESSAGE:
        payload = json.dumps({**result, "params": {}, "foldScores": []}).encode("utf-8")
    _emit(args, payload)
    return 0


def _emit(args: argparse.Namespace, payload: bytes) -> None:
    """One JSON line to the termination log and stdout (a trial's, a data check's)."""
    try:
        write_termination_log(args.termination_log, payload)
    except OSError as error:
        _fail(args, f"cannot write the termination log: {error.strerror}", EXIT_INTERNAL)
    sys.stdout.write(payload.decode("utf-8") + "\n")


def _completion_index(args: argparse.Namespace) -> int:
    raw = os.environ.get("JOB_COMPLETION_INDEX", "")
    if not raw.isdigit():
        _fail(args, "--trial without K needs JOB_COMPLETION_INDEX (an Indexed Job)", EXIT_BAD_INPUT)
    return int(raw)


def _check_termination_log(args: argparse.Namespace) -> Progress:
    """Fails before any work when an explicitly given termination log cannot be written."""
    if args.termination_log is not None:
        try:
            with args.termination_log.open("ab"):
                pass
        except OSError as error:
            message = f"cannot write the termination log {args.termination_log}: {error.strerror}"
            _fail(args, message, EXIT_BAD_INPUT)
    from mlkube.runtime.train.run import Progress  # scikit-learn loads only when training

    return Progress()


def _request(args: argparse.Namespace) -> RunRequest:
    from mlkube.runtime.train.liverows import parse_live_rows
    from mlkube.runtime.train.record import RunRequest
    from mlkube.runtime.train.remote import refuse_unsupported, remote_store
    from mlkube.runtime.train.run import default_store_uri

    if args.version is not None and args.version < 1:
        raise TrainingInputError(f"--version must be at least 1, got {args.version}")
    if args.parallel < 1:
        raise TrainingInputError(f"--parallel must be at least 1, got {args.parallel}")
    spec = parse_model(read_manifest(args), args.namespace)
    remote = remote_store(args.store)
    if remote is not None:
        refuse_unsupported(
            model_root=args.model_root, trial=args.trial is not None, select=args.select
        )
    return RunRequest(
        spec=spec,
        store=Path(args.store) if remote is None else Path(),
        store_uri=args.store_uri
        or (str(remote) if remote else default_store_uri(Path(args.store))),
        version=args.version,
        trigger=args.trigger,
        reason=args.reason,
        training_job=args.training_job,
        model_root=args.model_root,
        live_rows=parse_live_rows(args.live_rows),
    )


def _train(args: argparse.Namespace, progress: Progress) -> tuple[TrainingSpec, TrainerSummary]:
    """A single fit, a whole search, or a search's select step; on S3 through a staging store."""
    from mlkube.runtime.train.remote import (
        discard_staging,
        publish,
        remote_store,
        staged_request,
        train_local,
    )

    settings = TrainSettings.from_env()
    request = _request(args)
    remote = remote_store(args.store)
    if remote is None:
        return request.spec, train_local(request, settings, progress, args.select, args.parallel)
    staged = staged_request(request, remote)
    try:
        summary = train_local(staged, settings, progress, args.select, args.parallel)
        publish(staged, remote, summary["version"], progress)
    finally:
        discard_staging(staged)
    return request.spec, summary


def _guarded(args: argparse.Namespace, call: Callable[[], T]) -> T:
    """Runs ``call``; only the user's bad input exits 2, which the Job will not retry."""
    try:
        return call()
    except (TrainingInputError, ArtifactError) as error:
        _fail(args, str(error), EXIT_BAD_INPUT)
    except (TrainingUnavailableError, ObjectStoreUnavailableError) as error:
        _fail(args, str(error), EXIT_INTERNAL)
    except ObjectStoreError as error:  # a missing bucket, refused credentials: the user's
        _fail(args, str(error), EXIT_BAD_INPUT)
    except MemoryError:
        message = "out of memory while training; give the TrainingJob more memory"
        _fail(args, message, EXIT_INTERNAL)
    except Exception as error:
        _fail(args, f"internal error: {type(error).__name__}: {error}", EXIT_INTERNAL)
