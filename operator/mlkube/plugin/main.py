"""Entry point of ``kubectl-mlkube`` (kubectl finds it on PATH as ``kubectl mlkube``).

Each subcommand is one function taking the parsed arguments and the connection and
returning the text to print; errors the user can act on are one line on stderr and
exit code 1, as kubectl reports them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from mlkube import __version__
from mlkube.api import names
from mlkube.api.rollout import RolloutAction
from mlkube.plugin import rollout, views
from mlkube.plugin.client import Connection, PluginError, connect
from mlkube.plugin.perfview import perf_report

MODELS = names.PLURALS[names.MODEL]
TRAINING_JOBS = names.PLURALS[names.TRAINING_JOB]
MONITORS = names.PLURALS[names.MONITOR]


def cmd_status(args: argparse.Namespace, conn: Connection) -> str:
    models = conn.list(MODELS, args.all_namespaces)
    if not models:
        where = "any namespace" if args.all_namespaces else f"namespace {conn.namespace}"
        return f"No models found in {where}."
    monitors = conn.list(MONITORS, args.all_namespaces)
    return views.status_table(models, monitors, args.all_namespaces)


def cmd_versions(args: argparse.Namespace, conn: Connection) -> str:
    model = conn.get(MODELS, args.model)
    if args.diff:
        return views.version_diff(model, args.diff[0], args.diff[1])
    text = views.versions_table(model, views.winning_trials(conn.list(TRAINING_JOBS)))
    if (model.get("status") or {}).get("promotions"):
        text += "\n\nPromotions:\n" + views.promotions_table(model)
    return text


def cmd_trials(args: argparse.Namespace, conn: Connection) -> str:
    return views.trials_table(conn.get(TRAINING_JOBS, args.training_job))


def cmd_train(args: argparse.Namespace, conn: Connection) -> str:
    model = conn.get(MODELS, args.model)
    reason = args.reason or f"kubectl mlkube train ({conn.user or 'unknown user'})"
    created = conn.create(TRAINING_JOBS, views.training_job_body(model, reason))
    name = created["metadata"]["name"]
    watch = f"kubectl get tj {name} -n {conn.namespace} -w"
    return f"trainingjob.mlkube.io/{name} created (watch: {watch})"


def cmd_promote(args: argparse.Namespace, conn: Connection) -> str:
    model = conn.get(MODELS, args.model)
    views.check_promotable(model, args.version)
    approver = conn.whoami()
    reason = args.reason or "kubectl mlkube promote"
    conn.patch(MODELS, args.model, views.serving_pin(args.version, approver, reason))
    return (
        f"model.mlkube.io/{args.model} pinned to version {args.version} "
        f"(spec.serving.version), approved by {approver}"
    )


def cmd_rollback(args: argparse.Namespace, conn: Connection) -> str:
    model = conn.get(MODELS, args.model)
    previous = views.previous_serving_version(model)
    views.check_promotable(model, previous)
    approver = conn.whoami()
    conn.patch(MODELS, args.model, views.serving_pin(previous, approver, "kubectl mlkube rollback"))
    current = model["status"]["servingVersion"]
    return f"model.mlkube.io/{args.model} rolled back from version {current} to {previous} (pinned)"


def cmd_rollout(args: argparse.Namespace, conn: Connection) -> str:
    model = conn.get(MODELS, args.model)
    if args.action == "status":
        return rollout.rollout_status(model)
    patch, message = rollout.rollout_request_patch(model, RolloutAction(args.action))
    conn.patch(MODELS, args.model, patch)
    return f"model.mlkube.io/{args.model}: {message}"


def cmd_drift(args: argparse.Namespace, conn: Connection) -> str:
    return views.drift_report(conn.get(MONITORS, args.monitor), top=args.top)


def cmd_perf(args: argparse.Namespace, conn: Connection) -> str:
    return perf_report(conn.get(MONITORS, args.monitor))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl mlkube",
        description="Inspect and steer mlkube models: status, versions, training, rollback, "
        "drift, perf.",
    )
    parser.add_argument("--version", action="version", version=f"kubectl-mlkube {__version__}")
    parser.add_argument(
        "--kubeconfig", help="path to the kubeconfig (default: $KUBECONFIG, ~/.kube/config)"
    )
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument(
        "-n", "--namespace", help="namespace (default: the context's, else default)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        name: str, func: Callable[[argparse.Namespace, Connection], str], text: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(func=func)
        return sub

    status = add(
        "status", cmd_status, "Models with serving version, score, readiness and last drift."
    )
    status.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    versions = add(
        "versions", cmd_versions, "Version history of a model with lineage and promotion reasons."
    )
    versions.add_argument("model")
    versions.add_argument(
        "--diff", nargs=2, type=int, metavar=("A", "B"), help="compare two versions' lineage"
    )
    add(
        "trials", cmd_trials, "The trials of a TrainingJob's model search, best marked."
    ).add_argument("training_job")
    train = add("train", cmd_train, "Start a manual TrainingJob of a model.")
    train.add_argument("model")
    train.add_argument("--reason", help="recorded in the TrainingJob and the version history")
    promote = add("promote", cmd_promote, "Pin a model's serving version (spec.serving.version).")
    promote.add_argument("model")
    promote.add_argument("version", type=int)
    promote.add_argument("--reason", help="why, recorded with who approved in the promotions")
    add(
        "rollback", cmd_rollback, "Pin the version that served before the current one."
    ).add_argument("model")
    steer = add("rollout", cmd_rollout, "Show a model's canary, or promote or abort it now.")
    steer.add_argument("action", choices=["status", *(a.value for a in RolloutAction)])
    steer.add_argument("model")
    drift = add("drift", cmd_drift, "Summary of a Monitor's last drift check.")
    drift.add_argument("monitor")
    drift.add_argument("--top", type=int, default=10, help="features to list (default 10)")
    perf = add("perf", cmd_perf, "A Monitor's live score from labels, overall and per slice.")
    perf.add_argument("monitor")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        conn = connect(args.kubeconfig, args.context, args.namespace)
        output = args.func(args, conn)
    except (PluginError, views.ViewError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
