"""Pure decisions of the operator: promotion gate, version registry, conditions, kstatus,
spec checks, schedule firings and settings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mlkube.api.conditions import (
    READY,
    RECONCILING,
    STALLED,
    kstatus,
    phase_from,
    set_condition,
)
from mlkube.api.names import scheduled_training_job_name
from mlkube.controller.promotion import promotion_decision
from mlkube.controller.registry import update_registry
from mlkube.controller.schedule import last_fire
from mlkube.controller.settings import OperatorSettings, SettingsError
from mlkube.controller.spec import deep_merge, parse_storage_uri, training_problem
from mlkube.controller.versions import allocate

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2026, 1, 1, 13, 0, tzinfo=UTC)


def entry(
    version: int,
    score: float,
    *,
    higher: bool = True,
    metric: str = "f1",
    slices: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "version": version,
        "score": score,
        "higherIsBetter": higher,
        "metric": metric,
        "slices": slices or [],
    }


class TestPromotion:
    def test_first_version_passing_min_score_is_promoted(self) -> None:
        decision = promotion_decision(entry(1, 0.9), None, {"minScore": 0.85})
        assert decision.promote
        assert "0.9" in decision.reason

    def test_below_min_score_is_rejected(self) -> None:
        decision = promotion_decision(entry(1, 0.8), None, {"minScore": 0.85})
        assert decision.outcome == "Rejected"
        assert "minimum 0.85" in decision.reason

    def test_regression_beyond_allowance_is_rejected(self) -> None:
        decision = promotion_decision(entry(2, 0.88), entry(1, 0.9), {"maxRegression": 0.01})
        assert decision.outcome == "Rejected"
        assert "regresses from v1" in decision.reason

    def test_regression_within_allowance_is_promoted(self) -> None:
        assert promotion_decision(entry(2, 0.895), entry(1, 0.9), {"maxRegression": 0.01}).promote

    def test_error_metrics_are_lower_is_better(self) -> None:
        serving = entry(1, 10.0, higher=False, metric="rmse")
        assert promotion_decision(entry(2, 9.0, higher=False, metric="rmse"), serving, {}).promote
        worse = promotion_decision(entry(2, 11.0, higher=False, metric="rmse"), serving, {})
        assert worse.outcome == "Rejected"
        capped = promotion_decision(
            entry(2, 9.0, higher=False, metric="rmse"), None, {"minScore": 8.0}
        )
        assert capped.outcome == "Rejected" and "maximum 8" in capped.reason

    def test_failed_slice_rejects(self) -> None:
        slices = [{"name": "over-50", "score": 0.7, "minScore": 0.8, "passed": False}]
        decision = promotion_decision(entry(1, 0.95, slices=slices), None, {})
        assert decision.outcome == "Rejected"
        assert "over-50" in decision.reason

    def test_manual_policy_leaves_a_passing_version_pending(self) -> None:
        decision = promotion_decision(entry(1, 0.95), None, {"policy": "manual"})
        assert decision.outcome == "Pending"
        assert "spec.serving.version" in decision.reason

    def test_metric_change_skips_the_regression_check(self) -> None:
        assert promotion_decision(entry(2, 0.5, metric="accuracy"), entry(1, 0.9), {}).promote


def finished(name: str, version: int, score: float | None) -> dict[str, Any]:
    status: dict[str, Any] = {"version": version, "completionTime": "2026-01-01T00:00:00Z"}
    if score is None:
        status.update(phase="Failed", message="exit 1\nlog")
    else:
        status.update(
            phase="Succeeded",
            score=score,
            metric="f1",
            higherIsBetter=True,
            artifact={"uri": "pvc://m/x", "sha256": "a" * 64},
        )
    return {"metadata": {"name": name}, "spec": {"trigger": "manual"}, "status": status}


class TestRegistry:
    def test_versions_are_decided_in_order_against_the_serving_one(self) -> None:
        jobs = [
            finished("c", 3, 0.95),
            finished("a", 1, 0.9),
            finished("b", 2, 0.8),
            finished("d", 4, None),
        ]
        registry = update_registry({}, jobs, {}, "now")
        assert [v["decision"] for v in registry.versions] == [
            "Promoted",
            "Rejected",
            "Promoted",
            "Failed",
        ]
        assert registry.serving_version == 3
        assert [p["version"] for p in registry.promotions] == [1, 3]
        assert registry.versions[3]["reason"] == "exit 1"

    def test_decisions_are_made_once(self) -> None:
        first = update_registry({}, [finished("a", 1, 0.9)], {}, "t1")
        status = {
            "versions": first.versions,
            "promotions": first.promotions,
            "servingVersion": first.serving_version,
        }
        again = update_registry(status, [finished("a", 1, 0.9)], {}, "t2")
        assert again.versions == first.versions
        assert again.promotions == first.promotions
        assert again.decided == []

    def test_pin_rolls_back_and_unpinning_returns(self) -> None:
        jobs = [finished("a", 1, 0.9), finished("b", 2, 0.95)]
        base = update_registry({}, jobs, {}, "t")
        status = {
            "versions": base.versions,
            "promotions": base.promotions,
            "servingVersion": base.serving_version,
        }
        pinned = update_registry(status, jobs, {"serving": {"version": 1}}, "t")
        assert pinned.serving_version == 1
        assert "pinned" in pinned.promotions[-1]["reason"]
        status["servingVersion"], status["promotions"] = 1, pinned.promotions
        back = update_registry(status, jobs, {}, "t")
        assert back.serving_version == 2

    def test_pin_to_failed_or_missing_version_never_replaces_serving(self) -> None:
        jobs = [finished("a", 1, 0.9), finished("b", 2, None)]
        for pin in (2, 7):
            registry = update_registry({}, jobs, {"serving": {"version": pin}}, "t")
            assert registry.pin_problem is not None
            assert registry.serving_version is None

    def test_list_is_bounded_but_keeps_the_serving_version(self) -> None:
        jobs = [finished("a", 1, 0.99)] + [finished(f"j{i}", i, 0.5) for i in range(2, 8)]
        registry = update_registry({}, jobs, {}, "t", max_entries=3)
        assert [v["version"] for v in registry.versions] == [1, 6, 7]
        assert registry.serving_version == 1


class TestConditions:
    def test_transition_time_changes_only_with_status(self) -> None:
        one = set_condition([], READY, False, "Training", "a", generation=1, now=T0)
        two = set_condition(one, READY, False, "RollingOut", "b", generation=2, now=T1)
        assert two[0]["lastTransitionTime"] == "2026-01-01T12:00:00Z"
        assert (two[0]["reason"], two[0]["observedGeneration"]) == ("RollingOut", 2)
        three = set_condition(two, READY, True, "Available", "c", generation=2, now=T1)
        assert three[0]["lastTransitionTime"] == "2026-01-01T13:00:00Z"

    def test_abnormal_true_conditions_are_present_only_while_true(self) -> None:
        conditions = set_condition([], RECONCILING, True, "Training", "x", generation=1, now=T0)
        assert conditions[0]["status"] == "True"
        assert set_condition(conditions, RECONCILING, False, "Reconciled", "", generation=1) == []

    def test_kstatus_and_phase(self) -> None:
        def obj(conditions: list[dict[str, Any]], observed: int = 1) -> dict[str, Any]:
            return {
                "metadata": {"generation": 1},
                "status": {"observedGeneration": observed, "conditions": conditions},
            }

        ready = set_condition([], READY, True, "Available", "", generation=1, now=T0)
        assert kstatus(obj(ready)) == "Current"
        assert kstatus(obj(ready, observed=0)) == "InProgress"
        assert kstatus(
            obj(set_condition(ready, RECONCILING, True, "RollingOut", "", generation=1))
        ) == ("InProgress")
        stalled = set_condition([], STALLED, True, "InvalidSpec", "", generation=1)
        assert kstatus(obj(stalled)) == "Failed"
        assert phase_from(stalled) == "Invalid"
        assert phase_from(ready) == "Ready"
        assert kstatus(None) == "NotFound"


def test_deep_merge_overrides_maps_key_by_key() -> None:
    base = {"estimator": {"class": "a", "params": {"x": 1, "y": 2}}, "folds": [1]}
    merged = deep_merge(base, {"estimator": {"params": {"y": 3}}, "folds": [2]})
    assert merged == {"estimator": {"class": "a", "params": {"x": 1, "y": 3}}, "folds": [2]}
    assert base["estimator"]["params"]["y"] == 2  # type: ignore[index]


@pytest.mark.parametrize(
    ("uri", "mount"), [("pvc://models", "/mnt/store"), ("pvc://models/a/b/", "/mnt/store/a/b")]
)
def test_storage_uri(uri: str, mount: str) -> None:
    storage = parse_storage_uri(uri)
    assert storage.location == "models"
    assert storage.mount_path == mount


def test_training_problems_the_schema_cannot_catch() -> None:
    settings = OperatorSettings(estimator_allowlist=("sklearn.", "xgboost."))
    good = {
        "metadata": {"name": "m"},
        "spec": {
            "training": {
                "estimator": {"class": "xgboost.XGBClassifier"},
                "data": {"uri": "sklearn://iris", "target": "t"},
            }
        },
    }
    assert training_problem(good, None, settings) is None
    override = {"spec": {"overrides": {"estimator": {"class": "subprocess.Popen"}}}}
    assert "allow-list" in str(training_problem(good, override, settings))
    s3 = {**good, "spec": {**good["spec"], "storage": {"uri": "s3://bucket/x"}}}
    assert training_problem(s3, None, settings) is None
    elsewhere = {"uri": "s3://bucket/x", "endpoint": "http://127.0.0.2:9000"}
    s3["spec"]["storage"] = elsewhere
    assert "MLKUBE_S3_ALLOWED_ENDPOINTS" in str(training_problem(s3, None, settings))


def test_schedule_firings_collapse_and_names_are_per_firing() -> None:
    fired, nxt = last_fire("*/15 * * * *", T0, T1)
    assert fired == T1
    assert nxt == datetime(2026, 1, 1, 13, 15, tzinfo=UTC)
    none, first = last_fire("0 3 * * *", T0, T1)
    assert none is None and first == datetime(2026, 1, 2, 3, 0, tzinfo=UTC)
    assert scheduled_training_job_name("churn", T1) == "churn-s2601011300"


def test_settings_from_environment() -> None:
    settings = OperatorSettings.from_env(
        {
            "MLKUBE_RUNTIME_IMAGE": "img:2",
            "MLKUBE_ESTIMATOR_ALLOWLIST": "sklearn., lightgbm.",
            "MLKUBE_TRAINER_CPU": "2",
            "MLKUBE_NAMESPACES": "a,b",
            "MLKUBE_METRICS_PORT": "0",
        }
    )
    assert settings.runtime_image == "img:2"
    assert settings.estimator_allowlist == ("sklearn.", "lightgbm.")
    assert settings.trainer_resources["requests"]["cpu"] == "2"
    assert settings.namespaces == ("a", "b")
    with pytest.raises(SettingsError, match="MLKUBE_WORKERS"):
        OperatorSettings.from_env({"MLKUBE_WORKERS": "0"})
    with pytest.raises(SettingsError, match="DEFAULT_STORAGE"):
        OperatorSettings.from_env({"MLKUBE_DEFAULT_STORAGE": "/data"})


def test_leader_election_settings() -> None:
    assert OperatorSettings.from_env({}).leader_election is False
    settings = OperatorSettings.from_env(
        {
            "MLKUBE_LEADER_ELECTION": "true",
            "MLKUBE_LEADER_ELECTION_NAMESPACE": "ops",
            "MLKUBE_LEADER_LEASE_SECONDS": "30",
            "MLKUBE_LEADER_RENEW_SECONDS": "10",
        }
    )
    assert settings.leader_election is True
    assert (settings.leader_election_namespace, settings.leader_election_name) == (
        "ops",
        "mlkube-operator",
    )
    assert (settings.lease_duration_seconds, settings.renew_period_seconds) == (30, 10)
    with pytest.raises(SettingsError, match="at most half"):
        OperatorSettings.from_env(
            {"MLKUBE_LEADER_LEASE_SECONDS": "8", "MLKUBE_LEADER_RENEW_SECONDS": "5"}
        )
    with pytest.raises(SettingsError, match="MLKUBE_LEADER_ELECTION"):
        OperatorSettings.from_env({"MLKUBE_LEADER_ELECTION": "maybe"})


def run(name: str, uid: str | None = None, version: int | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": f"2026-01-01T00:00:0{len(name)}Z"}
    if uid:
        meta["uid"] = uid
    return {"metadata": meta, "status": {"version": version} if version else {}}


class TestAllocation:
    def test_numbers_follow_everything_seen_and_are_reserved(self) -> None:
        status = {"allocatedVersion": 3, "versions": [{"version": 2}]}
        allocations, reservations = allocate(status, [run("a", "u1")], [run("a", "u1")])
        assert [v for _, v in allocations] == [4]
        assert reservations == [{"trainingJob": "a", "version": 4, "uid": "u1"}]

    def test_a_crash_before_recording_gives_the_same_number_again(self) -> None:
        status = {"allocatedVersion": 1, "reservations": [{"trainingJob": "m-v1", "version": 1}]}
        tj = run("m-v1", "u1")
        allocations, reservations = allocate(status, [tj], [tj])
        assert allocations == [(tj, 1)]
        assert reservations == [{"trainingJob": "m-v1", "version": 1, "uid": "u1"}]

    def test_reservations_never_go_to_another_run(self) -> None:
        status = {
            "allocatedVersion": 2,
            "reservations": [{"trainingJob": "old", "version": 2, "uid": "u-old"}],
        }
        newcomer = run("old", "u-new")  # same name, another object
        unseen = run("other", "u2")  # the reserved run is not in the cache yet
        allocations, reservations = allocate(status, [newcomer], [newcomer])
        assert [v for _, v in allocations] == [3]
        assert {"trainingJob": "old", "version": 3, "uid": "u-new"} in reservations
        allocations, reservations = allocate(status, [unseen], [unseen])
        assert [v for _, v in allocations] == [3]
        assert reservations[0] == {"trainingJob": "old", "version": 2, "uid": "u-old"}

    def test_recorded_versions_release_their_reservation(self) -> None:
        status = {"allocatedVersion": 1, "reservations": [{"trainingJob": "a", "version": 1}]}
        allocations, reservations = allocate(status, [], [run("a", "u1", version=1)])
        assert allocations == []
        assert reservations == []
