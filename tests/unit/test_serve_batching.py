"""Adaptive batching (issue 16): concurrent requests share a model call, each gets its rows.

Real scikit-learn models written with the store's ``write_version``, loaded with the
server's ``load_model``, and a real ``mlkube serve`` on loopback. The model here has a
nullable feature but no imputer, so a ``null`` passes schema validation and then the
model itself refuses the rows: the one bad request the batcher must isolate.

- in process, with the prediction thread and on the event loop: requests of sizes 3, 1,
  7, 2, 1 (bad), 5, 4 queued at once are coalesced into calls of at most ``max_rows``
  rows; the call holding the bad request is retried request by request, so only the bad
  request fails, and every caller gets exactly its own rows' labels and probabilities.
  On the event loop the first call gathers the others only because the server counts
  them under way; a lone request is predicted before the loop runs anything else;
- over HTTP, on the prediction thread and on the event loop, V2 and V1 callers of
  interleaved sizes and bad requests sent from many threads each get their own rows
  (checked against scikit-learn row by row), the bad ones a 400 naming the problem, and
  ``/metrics`` shows the model-call histograms;
- ``--batch-rows 0`` turns batching off and still answers; settings refuse bad values;
- a pipeline trained with ``n_jobs=-1`` serves with ``n_jobs=1``.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serve_support import Server, base_metadata, cancer_data, metric_value, v2_matrix
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlkube.runtime.artifact import FeatureSchema, load_pipeline, write_version
from mlkube.runtime.serve.batching import Batcher
from mlkube.runtime.serve.decoding import Schema, decode_v2_inputs
from mlkube.runtime.serve.model import ModelInputError, Prediction, load_model
from mlkube.runtime.serve.settings import SettingsError, load_settings

X, Y, NAMES = cancer_data()
SIZES = [3, 1, 7, 2, 1, 5, 4]
BAD = 4  # the request at this position carries a null the model cannot take


def write_strict_model(store: Path) -> Path:
    """breast_cancer LR whose first feature is nullable in the schema but not imputed."""
    pipeline = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=2000))])
    pipeline.fit(X, Y)
    features = [
        FeatureSchema(name=n, kind="numeric", dtype="float64", nullable=i == 0)
        for i, n in enumerate(NAMES)
    ]
    metadata = base_metadata("strict", 1, "classification", features)
    metadata["target"] = {"name": "target", "classes": [0, 1]}
    target = store / "default" / "strict" / "v1"
    write_version(target, pipeline, metadata)
    return target


def request_rows(sizes: list[int]) -> list[np.ndarray[Any, Any]]:
    out, start = [], 0
    for size in sizes:
        out.append(X[start : start + size])
        start += size
    return out


def strict_batches(model: Any) -> tuple[list[np.ndarray[Any, Any]], list[Any]]:
    """The rows of ``SIZES``'s requests and their decoded batches (``BAD``'s holds a null)."""
    schema = Schema(model.features, 1000)
    rows = request_rows(SIZES)
    batches = []
    for index, part in enumerate(rows):
        doc = v2_matrix(part)
        if index == BAD:
            doc["inputs"][0]["data"][0] = None
        batches.append(decode_v2_inputs(doc["inputs"], schema))
    return rows, batches


@pytest.mark.parametrize("threaded", [True, False], ids=["thread", "inline"])
def test_queued_requests_share_calls_and_a_bad_one_fails_alone(
    tmp_path: Path, threaded: bool
) -> None:
    model = load_model(write_strict_model(tmp_path), None, engine="sklearn")
    rows, batches = strict_batches(model)
    calls: list[tuple[int, int]] = []
    batcher = Batcher(
        model.predict,
        max_rows=10,
        max_wait=0.05,
        threaded=threaded,
        thread_initializer=model.configure_thread,
        observe=lambda r, n: calls.append((r, n)),
    )
    batcher.watch_requests(lambda: len(SIZES))  # as uvicorn would count them

    async def send_all() -> list[Prediction | BaseException]:
        return await asyncio.gather(*(batcher.predict(b) for b in batches), return_exceptions=True)

    try:
        results = asyncio.run(send_all())
    finally:
        batcher.close()
    # Calls of at most 10 rows in arrival order; the one holding the bad request (7, 2,
    # bad 1) failed as a whole and was retried request by request.
    assert calls == [(4, 2), (7, 1), (2, 1), (9, 2)]
    for index, (part, result) in enumerate(zip(rows, results, strict=True)):
        if index == BAD:
            assert isinstance(result, ModelInputError)
            assert "NaN" in str(result)
            continue
        assert isinstance(result, Prediction), result
        assert result.labels.tolist() == model.pipeline.predict(part).tolist()
        assert result.proba is not None
        np.testing.assert_allclose(
            result.proba, model.pipeline.predict_proba(part), rtol=1e-12, atol=1e-15
        )


def test_inline_calls_gather_only_when_others_are_under_way(tmp_path: Path) -> None:
    """Without the server's count, concurrent inline requests are predicted one by one:
    nothing is held back on the guess that someone might come."""
    model = load_model(write_strict_model(tmp_path), None, engine="sklearn")
    _, batches = strict_batches(model)
    del batches[BAD]
    calls: list[tuple[int, int]] = []
    batcher = Batcher(
        model.predict, max_rows=10, max_wait=0.05, observe=lambda r, n: calls.append((r, n))
    )

    async def send_all() -> None:
        await asyncio.gather(*(batcher.predict(b) for b in batches))

    asyncio.run(send_all())
    assert calls == [(b.rows, 1) for b in batches]


def test_a_request_cancelled_while_gathering_leaves_the_others_answered(tmp_path: Path) -> None:
    model = load_model(write_strict_model(tmp_path), None, engine="sklearn")
    _, batches = strict_batches(model)
    del batches[BAD]
    batcher = Batcher(model.predict, max_rows=100, max_wait=1.0)
    batcher.watch_requests(lambda: len(batches))

    async def scenario() -> list[Prediction | BaseException]:
        tasks = [asyncio.create_task(batcher.predict(b)) for b in batches]
        await asyncio.sleep(0)  # the first request is gathering; the others have queued
        tasks[0].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert isinstance(results[0], asyncio.CancelledError)
    for batch, result in zip(batches[1:], results[1:], strict=True):
        assert isinstance(result, Prediction), result
        assert result.labels.tolist() == model.predict(batch).labels.tolist()


def test_an_idle_inline_model_answers_a_lone_request(tmp_path: Path) -> None:
    model = load_model(write_strict_model(tmp_path), None, engine="sklearn")
    batch = decode_v2_inputs(v2_matrix(X[:2])["inputs"], Schema(model.features, 10))
    calls: list[tuple[int, int]] = []
    batcher = Batcher(
        model.predict, max_rows=256, max_wait=1.0, observe=lambda r, n: calls.append((r, n))
    )
    assert batcher.threading == "inline"
    batcher.watch_requests(lambda: 1)  # only this request is under way
    loop_ran: list[bool] = []

    def predict(b: Any) -> Prediction:
        loop_ran.append(bool(ran))
        return model.predict(b)

    batcher._predict = predict
    ran: list[int] = []

    async def alone() -> Prediction:
        asyncio.get_running_loop().call_soon(ran.append, 1)  # runs at the loop's next pass
        return await batcher.predict(batch)

    result = asyncio.run(alone())
    assert result.labels.tolist() == Y[:2].tolist()
    assert calls == [(2, 1)]
    assert loop_ran == [False]  # predicted before the loop ran anything else


def _client(
    server: Server, pipeline: Any, jobs: list[tuple[int, int, str]], failures: list[str]
) -> None:
    """Sends each (start, size, route) request; checks its answer is its own rows'."""
    for start, size, route in jobs:
        part = X[start : start + size]
        bad = size == 2  # every two-row request carries a null
        if route == "v2":
            doc = v2_matrix(part)
            if bad:
                doc["inputs"][0]["data"][0] = None
            reply = server.post("/v2/models/strict/infer", doc)
        else:
            instances: list[Any] = part.tolist()
            if bad:
                instances[0][0] = None
            reply = server.post("/v1/models/strict:predict", {"instances": instances})
        if bad:
            if reply.status != 400 or "rejected the input" not in reply.json()["error"]:
                failures.append(f"bad {route} request got {reply.status}: {reply.body[:200]!r}")
            continue
        if reply.status != 200:
            failures.append(f"{route} {start}+{size}: {reply.status} {reply.body[:200]!r}")
            continue
        body = reply.json()
        labels = body["outputs"][0]["data"] if route == "v2" else body["predictions"]
        if labels != pipeline.predict(part).tolist():
            failures.append(f"{route} {start}+{size}: labels of other rows: {labels}")


@pytest.mark.parametrize("mode", ["thread", "inline"])
def test_concurrent_clients_each_get_their_own_rows(tmp_path: Path, mode: str) -> None:
    model_dir = write_strict_model(tmp_path)
    inline_ms = "0.000001" if mode == "thread" else "1000"
    server = Server.start(
        tmp_path,
        ["--model-dir", str(model_dir), "--engine", "sklearn", "--batch-rows", "64"],
        env={"MLKUBE_SERVE_INLINE_PREDICT_MS": inline_ms},
    )
    pipeline = load_pipeline(model_dir)
    failures: list[str] = []
    threads = []
    for client in range(8):
        jobs = [
            ((client * 37 + i * 11) % 500, (1, 2, 5, 17, 40)[(client + i) % 5], ("v2", "v1")[i % 2])
            for i in range(12)
        ]
        threads.append(threading.Thread(target=_client, args=(server, pipeline, jobs, failures)))
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert failures == []
        metrics = server.get("/metrics").body.decode()
        labels = {"model_name": "strict", "model_version": "1"}
        calls = metric_value(metrics, "mlkube_serve_model_call_rows_count", **labels)
        rows = metric_value(metrics, "mlkube_serve_model_call_rows_sum", **labels)
        answered = metric_value(metrics, "mlkube_serve_model_call_requests_sum", **labels)
        good = sum(1 for c in range(8) for i in range(12) if (1, 2, 5, 17, 40)[(c + i) % 5] != 2)
        assert calls is not None and rows is not None and answered is not None
        assert answered == good  # every good request was answered by exactly one call
        assert 1 <= calls <= good
        info = metric_value(metrics, "mlkube_serve_model_info", threading=mode, **labels)
        assert info == 1.0
    finally:
        assert server.stop() == 0


def test_batching_off_still_answers(tmp_path: Path) -> None:
    model_dir = write_strict_model(tmp_path)
    server = Server.start(tmp_path, ["--model-dir", str(model_dir), "--batch-rows", "0"])
    try:
        reply = server.post("/v2/models/strict/infer", v2_matrix(X[:3]))
        assert reply.status == 200, reply.body
        assert reply.json()["outputs"][0]["data"] == Y[:3].tolist()
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"batch_rows": -1}, "batch_rows must be 0"),
        ({"batch_wait_ms": 5000.0}, "batch_wait_ms must be between 0 and 1000"),
    ],
)
def test_bad_batching_settings_are_refused(flags: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings({"model_dir": "/tmp/v1", **flags}, environ={})


def test_estimators_predict_with_one_job(tmp_path: Path) -> None:
    forest = RandomForestClassifier(n_estimators=5, n_jobs=-1, random_state=0).fit(X, Y)
    pipeline = Pipeline([("scale", StandardScaler()), ("clf", forest)])
    pipeline.fit(X, Y)
    features = [
        FeatureSchema(name=n, kind="numeric", dtype="float64", nullable=False) for n in NAMES
    ]
    metadata = base_metadata("forest", 1, "classification", features)
    target = tmp_path / "default" / "forest" / "v1"
    write_version(target, pipeline, metadata)
    assert load_pipeline(target).get_params()["clf__n_jobs"] == -1
    model = load_model(target, None, engine="sklearn")
    assert model.pipeline.get_params()["clf__n_jobs"] == 1
