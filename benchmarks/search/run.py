"""Search benchmark: one 16-candidate grid through mlkube on the node agent (an Indexed
Job, parallelism 2) against ``GridSearchCV(n_jobs=2)`` in one process, same data, folds
and grid; 100,000 rows x 30 features of synthetic classification data.

mlkube runs the whole path: a control plane, ``mlkube operator``, the node agent running
each trial pod as a process (each reads the data itself from a claim), the select Job,
then the version. The clock runs from creating the Model to the TrainingJob's Succeeded.
GridSearchCV gets the training rows and the same StratifiedKFold, and refits its winner;
it runs once before and once after mlkube (the machine is shared and its load drifts
over minutes), and the ratio is against the mean of the two. Both use single-threaded
estimators (a decision tree), so the 2 cores are the only parallelism either side has.

Prints the wall-clock times with the load average of each phase, the overhead ratio
(mlkube / GridSearchCV), the fits each side made, where the time outside the trials
went (each trial pod's run beyond its own work; the select Job), what the trials took,
and the projected wall-clock with more nodes from the per-trial timings (waves of
trials, longest-first, plus the fixed cost measured here). Results go to
``benchmarks/results/search.json``.

Measured here, 2026-12-03 (2 cores shared with the lead's CI run; decision tree,
max_depth x min_samples_leaf 4 x 4, 5 folds), three runs of the default command:

| run | mlkube | GridSearchCV(n_jobs=2) | ratio | fits: mlkube / GridSearchCV |
| --- | --- | --- | --- | --- |
| 1 | 294.2 s | 232.2 s (after) | 1.27 | 85 / 81 |
| 2 | 353.6 s | 163.2 s (after; the load fell from ~5.5 to ~2.7) | 2.17 | 85 / 81 |
| 3 | 237.5 s | 170.1 s before, 195.9 s after | 1.30 (1.40 / 1.21) | 87 / 81 |

Runs 1 and 2 timed GridSearchCV only after mlkube; run 3 brackets it and is the one to
quote: 1.30 (1.40 and 1.21 against each side of the bracket; load average 2.3-3.1
before, 3.1-3.6 during mlkube, 3.6-5.8 after), at the target of 1.3, not clearly under.
The same 16 trials summed 436.5 s, 540.1 s and 346.6 s in the three runs, so the
machine's speed moved by half from run to run: a single run's ratio moves by at least
+-0.1 here, and run 2's 2.17 is the load, not the code. Every run picked
max_depth=16, min_samples_leaf=10, as GridSearchCV did.

Before (2026-12-02): 516.7 s against 332.3 s, 1.55, 96 fits: every trial also fitted
and wrote its own final pipeline. Now a trial keeps its pipeline only if no result
recorded when its folds end ranks above it (5 to 7 of 16 here: the grid's order puts the
deeper, better trees last, so many trials are briefly the best so far), and the select
step loads the winner's; the folds leave out the median imputer on complete numeric
data (its medians cost up to a fifth of a depth-4 tree's fit). What remains outside the
trials' work is per pod: 81-110 s summed over the 16 trial pods (5-7 s each: an
interpreter, importing scikit-learn and pandas, reading and checking the 100k rows),
0-1 s from the trials Job's end to the select Job, a 7-10 s select Job, and about 1 s
per pod between one pod's end and the next one's start (Job controller, node agent).
GridSearchCV starts its two workers once; one process per trial is the design.
Projected wall-clock from run 3's per-trial times, with 2 trial pods per node and the
64.2 s outside the trials counted as fixed (pessimistic: pod start-up spreads over nodes
too): 1 node 238 s, 2 nodes 153 s, 4 nodes 112 s, 8 nodes 103 s; past 4 nodes the
longest trial (~50 s) bounds it, so the speed-up is linear only while trials outnumber
pod slots.

Run: ``.venv/bin/python benchmarks/search/run.py [--rows 100000] [--features 30]``.
Needs the control-plane binaries the test harness builds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from demo.processes import start_node_agent, start_operator, stop  # noqa: E402
from harness.controlplane import ControlPlane  # noqa: E402
from nodeagent.kube import Kube  # noqa: E402

GROUP = "/apis/mlkube.io/v1alpha1"
NAMESPACE = "bench"
FOLDS = 5
SEED = 0
GRID = {"max_depth": [4, 8, 12, 16], "min_samples_leaf": [1, 10, 50, 200]}
ESTIMATOR = "sklearn.tree.DecisionTreeClassifier"


def synthetic(rows: int, features: int) -> pd.DataFrame:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=rows, n_features=features, n_informative=features // 2, random_state=SEED
    )
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(features)])
    frame["target"] = y
    return frame


def grid_search_cv(frame: pd.DataFrame) -> dict[str, Any]:
    """GridSearchCV(n_jobs=2) on the training rows mlkube uses, with its folds."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
    from sklearn.tree import DecisionTreeClassifier

    y = frame["target"].to_numpy()
    x = frame.drop(columns="target").to_numpy()
    train, _ = train_test_split(
        np.arange(len(y)), test_size=0.2, random_state=SEED, shuffle=True, stratify=y
    )
    train = np.sort(train)
    started = time.monotonic()
    search = GridSearchCV(
        DecisionTreeClassifier(random_state=SEED),
        GRID,
        scoring="f1",
        cv=StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=SEED),
        n_jobs=2,
    ).fit(x[train], y[train])
    return {
        "seconds": time.monotonic() - started,
        "best_params": search.best_params_,
        "best_score": float(search.best_score_),
        # every candidate on every fold, then the winner refitted on all training rows
        "fits": len(search.cv_results_["params"]) * FOLDS + 1,
    }


def _model() -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "synth"},
        "spec": {
            "task": "classification",
            "training": {
                "data": {"uri": "pvc://datasets/synth.parquet", "target": "target"},
                "validation": {"metric": "f1", "folds": FOLDS, "randomSeed": SEED},
                "dataQuality": {"maxMissingFraction": 0.0},
                "search": {"parallelism": 2, "candidates": [{"class": ESTIMATOR, "grid": GRID}]},
                "resources": {"limits": {"cpu": "1", "memory": "2Gi"}},
                "activeDeadlineSeconds": 3600,
            },
        },
    }


def _claim(kube: Kube, name: str) -> Path:
    """A claim the node agent provisions; returns its host directory once bound."""
    kube.create(f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}},
    })  # fmt: skip
    path = f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims/{name}"
    while not (volume := kube.get(path)["spec"].get("volumeName")):
        time.sleep(0.2)
    return Path(kube.get(f"/api/v1/persistentvolumes/{volume}")["spec"]["hostPath"]["path"])


def mlkube_search(plane: ControlPlane, frame: pd.DataFrame, work: Path) -> dict[str, Any]:
    kube = Kube(plane.kubeconfig)
    plane.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    crds = plane.kubectl("get", "-f", str(REPO / "crds"), "-o", "name").stdout.split()
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", *crds)
    plane.kubectl("create", "namespace", NAMESPACE)
    agent = start_node_agent(plane.kubeconfig, work / "agent", NAMESPACE, work / "agent.log")
    operator = start_operator(plane.kubeconfig, NAMESPACE, work / "operator.log")
    try:
        data_dir = _claim(kube, "datasets")
        frame.to_parquet(data_dir / "synth.parquet")
        (data_dir / "synth.parquet").chmod(0o644)
        models_dir = _claim(kube, "mlkube-models")
        started = time.monotonic()
        kube.create(f"{GROUP}/namespaces/{NAMESPACE}/models", _model())
        tj_path = f"{GROUP}/namespaces/{NAMESPACE}/trainingjobs/synth-v1"
        while True:
            status = (kube.find(tj_path) or {}).get("status") or {}
            if status.get("phase") in ("Succeeded", "Failed", "Rejected"):
                break
            time.sleep(0.5)
        seconds = time.monotonic() - started
        if status["phase"] == "Failed":
            raise RuntimeError(f"the search failed: {status.get('message')}")
        metadata = json.loads((models_dir / NAMESPACE / "synth/v1/metadata.json").read_text())
        return {
            "seconds": seconds,
            "status": status,
            "search": metadata["search"],
            "timeline": timeline(kube, metadata["search"]["trials"]),
        }
    finally:
        stop(operator)
        stop(agent)
        kube.close()


def _time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def timeline(kube: Kube, trials: list[dict[str, Any]]) -> dict[str, float]:
    """Where the wall-clock outside the trials' own work went, from the API's timestamps
    (whole seconds): each trial pod's run beyond its ``fitSeconds`` (interpreter,
    imports, data read and checks), and the select Job from its creation to its end."""
    fit = {row["trial"]: float(row.get("fitSeconds") or 0.0) for row in trials}
    pods = kube.get(f"/api/v1/namespaces/{NAMESPACE}/pods")["items"]
    outside = []
    for pod in pods:
        annotations = pod["metadata"].get("annotations") or {}
        index = annotations.get("batch.kubernetes.io/job-completion-index")
        states = (pod.get("status") or {}).get("containerStatuses") or [{}]
        ended = (states[0].get("state") or {}).get("terminated")
        if index is None or not ended or "synth-v1-train" not in pod["metadata"]["name"]:
            continue
        ran = _time(ended["finishedAt"]) - _time(ended["startedAt"])
        outside.append(max(0.0, ran - fit.get(int(index), 0.0)))
    jobs = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"
    trials_job = kube.get(f"{jobs}/synth-v1-train")
    select = kube.get(f"{jobs}/synth-v1-select")
    return {
        "trial_pods": len(outside),
        "pod_seconds_outside_trial": round(sum(outside), 1),
        "trials_job_seconds": _time(trials_job["status"]["completionTime"])
        - _time(trials_job["status"]["startTime"]),
        "select_gap_seconds": _time(select["metadata"]["creationTimestamp"])
        - _time(trials_job["status"]["completionTime"]),
        "select_job_seconds": _time(select["status"]["completionTime"])
        - _time(select["metadata"]["creationTimestamp"]),
    }


def mlkube_fits(search: dict[str, Any]) -> dict[str, int]:
    """Fits the search made: every fold of every trial, the pipelines trials kept, and
    the select step's own fit of the winner when it had kept none."""
    trials = search["trials"]
    folds = sum(len(row.get("foldScores") or []) for row in trials)
    kept = sum(row.get("pipeline") is True for row in trials)
    refit = int(bool(search.get("refit")))
    return {"folds": folds, "pipelines": kept, "refit": refit, "total": folds + kept + refit}


def _loaded(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run``'s result with the machine's 1-minute load average before and after it."""
    start = os.getloadavg()[0]
    result = run()
    return {**result, "load": f"{start:.1f} -> {os.getloadavg()[0]:.1f}"}


def projection(trial_seconds: list[float], fixed: float, nodes: list[int]) -> dict[int, float]:
    """Wall-clock with N nodes (2 trials each, as here): longest-first onto the least
    loaded slot, plus the fixed cost (data reads, pod start-up, the select step)."""
    result = {}
    for count in nodes:
        slots = [0.0] * (2 * count)
        for seconds in sorted(trial_seconds, reverse=True):
            slots[slots.index(min(slots))] += seconds
        result[count] = round(max(slots) + fixed, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=30)
    args = parser.parse_args()
    frame = synthetic(args.rows, args.features)
    print(f"data: {args.rows} rows x {args.features} features; grid: 16 candidates, {FOLDS} folds")
    # GridSearchCV runs before and after mlkube: on a shared machine the load drifts
    # over minutes, and the bracket shows by how much.
    before = _loaded(lambda: grid_search_cv(frame))
    print(f"GridSearchCV(n_jobs=2), before: {before['seconds']:.1f} s (load {before['load']}), "
          f"best {before['best_params']}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mlkube-search-bench-") as tmp:
        work = Path(tmp)
        plane = ControlPlane.start(work / "controlplane")
        try:
            ours = _loaded(lambda: mlkube_search(plane, frame, work))
        finally:
            plane.stop()
    print(f"mlkube done in {ours['seconds']:.1f} s (load {ours['load']})", flush=True)
    after = _loaded(lambda: grid_search_cv(frame))
    print(f"GridSearchCV(n_jobs=2), after: {after['seconds']:.1f} s (load {after['load']})")
    reference = {**after, "seconds": (before["seconds"] + after["seconds"]) / 2}
    rows = ours["status"].get("trialResults") or []
    trial_seconds = [float(r.get("fitSeconds") or 0.0) for r in rows]
    busy = sum(trial_seconds) / 2
    fixed = max(0.0, ours["seconds"] - busy)
    ratio = ours["seconds"] / reference["seconds"]
    best = rows[ours["status"]["bestTrial"]] if rows else {}
    print(
        f"mlkube (Indexed Job, parallelism 2): {ours['seconds']:.1f} s, best {best.get('params')}"
    )
    print(f"overhead ratio mlkube / GridSearchCV (mean of before and after): {ratio:.2f} "
          f"(against each: {ours['seconds'] / before['seconds']:.2f}, "
          f"{ours['seconds'] / after['seconds']:.2f})")  # fmt: skip
    fits = mlkube_fits(ours["search"])
    print(f"fits: mlkube {fits['total']} ({fits['folds']} folds, {fits['pipelines']} pipelines "
          f"kept by trials, {fits['refit']} in the select step); "
          f"GridSearchCV {reference['fits']}")  # fmt: skip
    spent = ours["timeline"]
    print(f"outside the trials' work: {spent['pod_seconds_outside_trial']} s in "
          f"{spent['trial_pods']} trial pods (start-up, imports, data reads), "
          f"{spent['select_gap_seconds']:.0f} s from the trials Job's end to the select Job, "
          f"{spent['select_job_seconds']:.0f} s select Job")  # fmt: skip
    print(f"trials: {len(rows)}, sum of trial times {sum(trial_seconds):.1f} s; "
          f"outside the trials {fixed:.1f} s")  # fmt: skip
    projected = projection(trial_seconds, fixed, [1, 2, 4, 8])
    print("projected wall-clock by nodes (2 trial pods each): "
          + ", ".join(f"{n}: {s} s" for n, s in projected.items()))  # fmt: skip
    results = REPO / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / "search.json").write_text(json.dumps({
        "rows": args.rows, "features": args.features, "grid_search_cv": reference,
        "grid_search_cv_before": before, "grid_search_cv_after": after, "load": ours["load"],
        "mlkube_seconds": ours["seconds"], "ratio": ratio, "trial_seconds": trial_seconds,
        "fixed_seconds": fixed, "projected_by_nodes": projected,
        "mlkube_best": best, "trials": ours["status"].get("trials"),
        "fits": {"mlkube": fits, "grid_search_cv": reference["fits"]},
        "timeline": spent, "refit": ours["search"].get("refit"),
    }, indent=2, default=str))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
