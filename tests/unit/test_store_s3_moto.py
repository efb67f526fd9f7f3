"""The S3 store's pure parts and its edge cases, on moto's in-memory S3.

What the real server (SeaweedFS) shows is in ``tests/integration/test_store_s3.py``;
here: locations, redaction, the addressing setting, and the inference-log sink's
batching, compression, bounded retries and memory bound, with a fake clock, plus
uploads that fail (a missing bucket) or are throttled (a 503 ``SlowDown``).
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from moto import mock_aws

from mlkube.runtime.store import s3
from mlkube.runtime.store.logsink import S3LogSink, SinkCounters
from mlkube.runtime.store.s3 import ObjectStoreError, S3Location, location, redact


@pytest.fixture
def moto_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDUNITTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unit-test-secret-value")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv(s3.ADDRESSING_ENV, "path")  # moto answers 404 to virtual-host URLs here
    s3._clients.clear()
    with mock_aws():
        client = s3.client()
        client.create_bucket(Bucket="logs")
        yield client
    s3._clients.clear()


class Counts:
    def __init__(self) -> None:
        self.rows = 0
        self.dropped = 0
        self.errors = 0

    def counters(self) -> SinkCounters:
        def rows(n: int) -> None:
            self.rows += n

        def dropped(n: int) -> None:
            self.dropped += n

        def error() -> None:
            self.errors += 1

        return SinkCounters(rows, dropped, error)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(n: int, tag: str = "x") -> bytes:
    return b"".join(
        b'{"ts":"2026-01-02T03:04:05.000Z","i":%d,"t":"%s"}\n' % (i, tag.encode()) for i in range(n)
    )


def objects(client: Any, bucket: str = "logs") -> dict[str, bytes]:
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def test_locations_join_like_paths_and_refuse_traversal() -> None:
    root = S3Location.parse("s3://models/prod/store/")
    version = root / "default/iris/v3"
    assert str(version) == "s3://models/prod/store/default/iris/v3"
    assert version.name == "v3" and str(version.parent) == "s3://models/prod/store/default/iris"
    assert str(version.parent / "inference") == "s3://models/prod/store/default/iris/inference"
    assert str(S3Location.parse("s3://models")) == "s3://models"
    assert location("./store") == Path("store")
    for bad in ("s3://models/a/../b", "s3://Bad_Bucket/x", "s3://", "s3://a/./b"):
        with pytest.raises(ValueError):
            S3Location.parse(bad)


def test_redact_removes_every_credential_value() -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE1", "AWS_SECRET_ACCESS_KEY": "s3cr3t/value"}
    text = redact("denied for AKIDEXAMPLE1 signed with s3cr3t/value", env)
    assert "AKIDEXAMPLE1" not in text and "s3cr3t/value" not in text and "***" in text


def test_addressing_style_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(s3.ADDRESSING_ENV, "sideways")
    with pytest.raises(ObjectStoreError, match="path, virtual"):
        s3.addressing_style()
    monkeypatch.setenv(s3.ADDRESSING_ENV, "PATH")
    assert s3.addressing_style() == "path"


def new_sink(
    bucket: str = "logs", *, prefix: str = "inference", writer: str = "w", **options: Any
) -> tuple[S3LogSink, Counts, Clock]:
    """A sink under ``bucket/prefix`` with fresh counters and a fake clock."""
    counts, clock = Counts(), Clock()
    sink = S3LogSink(S3Location(bucket, prefix), writer, counts.counters(), clock=clock, **options)
    return sink, counts, clock


def test_sink_batches_by_rows_into_gzip_objects_per_hour(moto_s3: Any) -> None:
    sink, counts, _clock = new_sink(prefix="ns/m/inference", writer="w1", batch_rows=10)
    sink.append("2026-01-02/03", lines(6), 6)
    assert objects(moto_s3) == {}  # below the batch size, within its time
    sink.append("2026-01-02/03", lines(6), 6)  # 12 rows >= 10: sealed and uploaded
    sink.append("2026-01-02/04", lines(2, "y"), 2)  # a new hour starts a new batch
    sink.close()
    stored = objects(moto_s3)
    assert sorted(stored) == [
        "ns/m/inference/2026-01-02/03/w1-000001.jsonl.gz",
        "ns/m/inference/2026-01-02/04/w1-000002.jsonl.gz",
    ]
    assert (
        gzip.decompress(stored["ns/m/inference/2026-01-02/03/w1-000001.jsonl.gz"]).count(b"\n")
        == 12
    )
    assert (counts.rows, counts.dropped, counts.errors) == (14, 0, 0)


def test_sink_seals_a_batch_when_its_seconds_are_up(moto_s3: Any) -> None:
    sink, counts, clock = new_sink(batch_seconds=30)
    sink.append("2026-01-02/03", lines(3), 3)
    assert sink.wait_seconds() == 30
    clock.now += 29
    sink.tick()
    assert objects(moto_s3) == {}
    clock.now += 1
    sink.tick()
    assert list(objects(moto_s3)) == ["inference/2026-01-02/03/w-000001.jsonl.gz"]
    assert sink.wait_seconds() is None and counts.rows == 3


def test_failed_uploads_are_counted_retried_with_a_bound_then_dropped(moto_s3: Any) -> None:
    sink, counts, clock = new_sink("no-such-bucket", batch_rows=1, max_attempts=3)
    sink.append("2026-01-02/03", lines(4), 4)
    assert counts.errors == 1 and counts.dropped == 0 and sink.pending_bytes > 0
    for _ in range(5):
        wait = sink.wait_seconds()
        if wait is None:
            break
        clock.now += wait
        sink.tick()
    assert counts.errors == 3  # max_attempts, then no more tries
    assert counts.dropped == 4 and counts.rows == 0 and sink.pending_bytes == 0


def test_pending_batches_are_bounded_in_bytes(moto_s3: Any) -> None:
    sink, counts, _clock = new_sink("no-such-bucket", batch_rows=100, max_pending_bytes=4096)
    for i in range(50):
        sink.append("2026-01-02/03", lines(100, f"batch-{i}-" + "z" * 200), 100)
        assert sink.pending_bytes <= 4096 + 64 * 1024  # one sealed batch may exceed alone
    assert counts.dropped >= 30 * 100  # all but the few newest batches that fit the bound
    assert counts.rows == 0


def fail_first_puts(monkeypatch: pytest.MonkeyPatch, count: int, error: Exception) -> None:
    """The shared client's first ``count`` PutObject calls raise ``error``; the rest pass."""
    client = s3.client(connect_timeout=2.0, attempts=0)
    real_put = client.put_object
    calls = {"n": 0}

    def put(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= count:
            raise error
        return real_put(**kwargs)

    monkeypatch.setattr(client, "put_object", put)


def test_throttled_upload_is_counted_and_the_retry_succeeds(
    moto_s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink, counts, clock = new_sink(batch_rows=1)
    slow_down = botocore.exceptions.ClientError(
        {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}},
        "PutObject",
    )
    fail_first_puts(monkeypatch, 1, slow_down)
    sink.append("2026-01-02/03", lines(2), 2)
    assert counts.errors == 1 and counts.rows == 0
    clock.now += sink.wait_seconds() or 0
    sink.tick()
    assert counts.rows == 2 and counts.dropped == 0
    assert list(objects(moto_s3)) == ["inference/2026-01-02/03/w-000001.jsonl.gz"]


def test_a_batch_that_fails_as_the_server_stops_is_retried_not_dropped(
    moto_s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pauses: list[float] = []
    sink, counts, _clock = new_sink(batch_rows=100, sleep=pauses.append)
    refused = botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.2")
    fail_first_puts(monkeypatch, 2, refused)
    sink.append("2026-01-02/03", lines(5), 5)  # an open batch: sealed by close
    sink.close()
    assert counts.rows == 5 and counts.dropped == 0 and counts.errors == 2
    assert len(pauses) == 2
    assert list(objects(moto_s3)) == ["inference/2026-01-02/03/w-000001.jsonl.gz"]


def test_closing_on_a_dead_endpoint_drops_after_the_attempts(moto_s3: Any) -> None:
    pauses: list[float] = []
    sink, counts, _clock = new_sink(
        "no-such-bucket", batch_rows=100, max_attempts=3, sleep=pauses.append
    )
    sink.append("2026-01-02/03", lines(5), 5)
    sink.close()
    assert counts.errors == 3 and counts.dropped == 5 and counts.rows == 0
    assert sink.pending_bytes == 0


def test_conditional_put_refuses_an_existing_object(moto_s3: Any) -> None:
    where = S3Location("logs", "v1/metadata.json")
    assert s3.put_bytes(where, b"{}", if_absent=True) is True
    assert s3.put_bytes(where, b"{}", if_absent=True) is False
    assert s3.get_bytes(where, 10) == b"{}"
    with pytest.raises(ObjectStoreError, match="more than the limit"):
        s3.get_bytes(where, 1)
    assert s3.get_bytes(S3Location("logs", "absent"), 10) is None


def test_serve_settings_take_s3_locations_and_refuse_bad_ones() -> None:
    from mlkube.runtime.serve.settings import SettingsError, load_settings

    settings = load_settings({"model_dir": "s3://models/p/ns/m/v3"}, environ={})
    assert settings.model_dir == S3Location("models", "p/ns/m/v3")
    assert settings.inference_log_dir == S3Location("models", "p/ns/m/inference")
    env = {"MLKUBE_SERVE_MODEL_DIR": "/store/ns/m/v3", "MLKUBE_SERVE_LOG_DIR": "s3://logs/x"}
    from_env = load_settings({}, environ=env)
    assert from_env.model_dir == Path("/store/ns/m/v3")
    assert from_env.inference_log_dir == S3Location("logs", "x")
    with pytest.raises(SettingsError, match="not a valid bucket name"):
        load_settings({"model_dir": "s3://Models/v1"}, environ={})
    with pytest.raises(SettingsError, match="log_batch_seconds"):
        load_settings({"model_dir": "/m/v1", "log_batch_seconds": "0"}, environ={})


def test_drift_reads_only_the_window_hours() -> None:
    from datetime import UTC, datetime

    from mlkube.runtime.drift.remote import window_hours
    from mlkube.runtime.drift.window import Window

    end = datetime(2026, 1, 2, 1, 30, tzinfo=UTC)
    window = Window(datetime(2026, 1, 1, 22, 45, tzinfo=UTC), end)
    assert window_hours(window) == [
        "2026-01-01/22",
        "2026-01-01/23",
        "2026-01-02/00",
        "2026-01-02/01",
    ]


def test_errors_never_carry_a_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDLEAKCHECK")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "leak/check/secret")
    # some servers echo the key id (and, misconfigured, more) in their error message
    echoed = botocore.exceptions.ClientError(
        {"Error": {"Code": "InvalidAccessKeyId", "Message": "AKIDLEAKCHECK leak/check/secret"}},
        "GetObject",
    )
    message = str(s3.describe(echoed, "cannot read s3://b/k"))
    assert "InvalidAccessKeyId" in message
    assert "AKIDLEAKCHECK" not in message and "leak/check/secret" not in message
    unreachable = s3.describe(
        botocore.exceptions.EndpointConnectionError(endpoint_url="http://AKIDLEAKCHECK@x"), "w"
    )
    assert isinstance(unreachable, s3.ObjectStoreUnavailableError)
    assert "AKIDLEAKCHECK" not in str(unreachable)


@pytest.mark.parametrize("call", ["get_bytes", "download", "put_bytes"])
def test_a_missing_client_is_one_clear_error(
    call: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # An image without boto3: every entry point says so, not ModuleNotFoundError.
    for module in ("boto3", "botocore", "botocore.config", "botocore.exceptions"):
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setattr(s3, "_clients", {})
    where = location("s3://bucket/key")
    calls = {
        "get_bytes": lambda: s3.get_bytes(where, 10),
        "download": lambda: s3.download(where, tmp_path / "out", 10),
        "put_bytes": lambda: s3.put_bytes(where, b"x"),
    }
    with pytest.raises(ObjectStoreError, match="needs boto3"):
        calls[call]()
