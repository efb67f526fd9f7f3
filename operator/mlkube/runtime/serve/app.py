"""The HTTP transport: a raw ASGI application (no framework) run by uvicorn with httptools.

Why raw ASGI: at ~0.2 ms of model time per request, a web framework's routing,
middleware and request objects would cost as much as the prediction. Routing here is a
few string comparisons; bodies are read with a size cap before any parsing.

Routes (GET unless noted)::

    /v2/health/live  /v2/health/ready  /v2  /metrics
    /v2/models/{name}[/versions/{v}]          metadata with the input schema
    /v2/models/{name}[/versions/{v}]/ready
    /v2/models/{name}[/versions/{v}]/infer    POST, Open Inference Protocol V2
    /v1/models/{name}                         KServe V1 readiness
    /v1/models/{name}:predict                 POST, {"instances": [...]}
    /v2/models/{name}[/versions/{v}]/feedback POST, ground-truth labels (``feedback``)

Fast models predict on the event loop (a thread hop would cost more than the predict);
models slower than ``inline_predict_ms`` at warm-up predict on the worker's one
prediction thread, so health checks and metrics stay responsive, and requests that arrive
meanwhile are coalesced into the next call (``batching``). At most ``max_in_flight``
predictions are admitted at once; the rest get 503 with Retry-After instead of an
unbounded queue, and ``/v2/health/ready`` answers 503 while that limit is reached, so
readiness never claims capacity it lacks.

A slow client cannot starve fast ones: a prediction slot is taken only once the whole
body has arrived, and the body must arrive within ``body_timeout`` seconds (else 408 and
the connection is closed). A request id longer than 128 characters is refused (400)
before the body is read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

import orjson

from mlkube.api.performance import FEEDBACK_ROUTE, LABELS_SUBDIR
from mlkube.runtime.serve.batching import Batcher
from mlkube.runtime.serve.binary import HEADER as BINARY_HEADER
from mlkube.runtime.serve.dataplane import DataPlane, check_request_id
from mlkube.runtime.serve.errors import (
    JSON_HEADERS,
    BadRequestError,
    Headers,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServeError,
    UnavailableError,
    UnsupportedMediaTypeError,
    error_response,
    internal_error_response,
)
from mlkube.runtime.serve.feedback import Feedback
from mlkube.runtime.serve.inferencelog import InferenceLogger
from mlkube.runtime.serve.metrics import ModelMetrics, exposition
from mlkube.runtime.serve.model import ServedModel
from mlkube.runtime.serve.settings import ServeSettings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger(__name__)

POST_ROUTES: Final = frozenset({"infer", "predict", FEEDBACK_ROUTE})
# Binary-framed V2 requests (tritonclient's default) are JSON followed by raw bytes.
ACCEPTED_MEDIA: Final = frozenset({b"application/json", b"application/octet-stream"})
CLIENT_CLOSED: Final = 499  # nginx's code for "client closed the request", for metrics only


class ClientGoneError(Exception):
    """The client disconnected before its body arrived; there is no one to answer."""


class ServeApp:
    """The ASGI callable; build it with ``create_app``."""

    def __init__(
        self,
        settings: ServeSettings,
        dataplane: DataPlane,
        logger: InferenceLogger | None,
        label_writer: InferenceLogger | None = None,
    ) -> None:
        self.settings = settings
        self.dataplane = dataplane
        self.metrics = dataplane.metrics
        self.logger = logger
        self.label_writer = label_writer
        self.feedback = Feedback(dataplane.model, label_writer, settings.max_batch_rows)
        self.ready = False
        self.in_flight = 0
        model = dataplane.model
        self.metrics.info(model.estimator_class, dataplane.batcher.threading)
        self.metrics.watch_in_flight(lambda: self.in_flight)
        self._ready_body = orjson.dumps({"name": model.name, "ready": True})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for writer in (self.logger, self.label_writer):
                    if writer is not None:
                        writer.start()
                self.ready = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def watch_requests(self, count: Callable[[], int]) -> None:
        """``count()``: the requests this worker's server is handling (for batching)."""
        self.dataplane.batcher.watch_requests(count)

    def close(self) -> None:
        """Stops reporting ready, finishes predictions in threads, flushes the inference log."""
        self.ready = False
        self.dataplane.batcher.close()
        for writer in (self.logger, self.label_writer):
            if writer is not None:
                writer.close(self.settings.graceful_timeout)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        route = "unknown"
        headers: Headers = JSON_HEADERS
        try:
            route, name, version = _route(scope["path"])
            method = scope["method"]
            if route in POST_ROUTES:
                if method != "POST":
                    raise MethodNotAllowedError(method, scope["path"], ("POST",))
                if route == FEEDBACK_ROUTE:
                    body, headers = await self._feedback(scope, receive, name, version)
                else:
                    body, headers = await self._predict(route, scope, receive, name, version)
            else:
                if method not in ("GET", "HEAD"):
                    raise MethodNotAllowedError(method, scope["path"], ("GET",))
                body, headers = self._get(route, name, version)
            status = 200
        except ServeError as error:
            status, headers, body = error_response(error)
        except ClientGoneError:
            self.metrics.request_done(route, CLIENT_CLOSED, time.perf_counter() - started)
            return
        except Exception:
            log.exception("unexpected error serving %s %s", scope["method"], scope["path"])
            status, headers, body = internal_error_response()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
        self.metrics.request_done(route, status, time.perf_counter() - started)

    def _get(self, route: str, name: str, version: str | None) -> tuple[bytes, Headers]:
        dataplane = self.dataplane
        if route == "live":
            return b'{"live":true}', JSON_HEADERS
        if route == "metrics":
            text, content_type = exposition()
            return text, [(b"content-type", content_type)]
        if route == "server":
            return dataplane.server_metadata, JSON_HEADERS
        if route == "ready":
            self._check_capacity()
            return b'{"ready":true}', JSON_HEADERS
        dataplane.check_model(name, version)
        if route == "model":
            return dataplane.model_metadata, JSON_HEADERS
        self._check_capacity()
        return self._ready_body, JSON_HEADERS

    def _check_capacity(self) -> None:
        """``UnavailableError`` unless the model is loaded and a prediction slot is free."""
        if not self.ready:
            raise UnavailableError("the model is not ready")
        if self.in_flight >= self.settings.max_in_flight:
            raise UnavailableError(
                f"overloaded: {self.in_flight} requests in flight (limit "
                f"{self.settings.max_in_flight}); retry shortly"
            )

    async def _feedback(
        self, scope: Scope, receive: Receive, name: str, version: str | None
    ) -> tuple[bytes, Headers]:
        """Labels for earlier predictions: checked whole, then queued (no prediction slot)."""
        self.dataplane.check_model(name, version)
        _check_headers(scope["headers"], self.settings.max_body_bytes)
        body = await _read_body(receive, self.settings.max_body_bytes, self.settings.body_timeout)
        return self.feedback.handle(body), JSON_HEADERS

    async def _predict(
        self, route: str, scope: Scope, receive: Receive, name: str, version: str | None
    ) -> tuple[bytes, Headers]:
        if not self.ready:
            raise UnavailableError("the model is not ready")
        request_id, binary = _check_headers(scope["headers"], self.settings.max_body_bytes)
        body = await _read_body(receive, self.settings.max_body_bytes, self.settings.body_timeout)
        self._check_capacity()
        self.in_flight += 1
        try:
            if route == "infer":
                answer, json_length = await self.dataplane.infer(
                    body, name, version, request_id, binary
                )
            else:
                answer = await self.dataplane.predict_v1(body, name, request_id)
                json_length = None
            if json_length is None:
                return answer, JSON_HEADERS
            return answer, [
                (b"content-type", b"application/octet-stream"),
                (BINARY_HEADER, str(json_length).encode()),
            ]
        finally:
            self.in_flight -= 1


def _route(path: str) -> tuple[str, str, str | None]:
    """(route, model name, version) for a path; ``NotFoundError`` for anything else."""
    if path == "/v2/health/live":
        return "live", "", None
    if path == "/v2/health/ready":
        return "ready", "", None
    if path in ("/v2", "/v2/"):
        return "server", "", None
    if path == "/metrics":
        return "metrics", "", None
    parts = path.split("/")
    if len(parts) >= 4 and parts[1] == "v2" and parts[2] == "models" and parts[3]:
        name, rest, version = parts[3], parts[4:], None
        if len(rest) >= 2 and rest[0] == "versions" and rest[1]:
            version, rest = rest[1], rest[2:]
        if not rest:
            return "model", name, version
        if rest == ["ready"]:
            return "model_ready", name, version
        if len(rest) == 1 and rest[0] in ("infer", FEEDBACK_ROUTE):
            return rest[0], name, version
    if len(parts) == 4 and parts[1] == "v1" and parts[2] == "models" and parts[3]:
        if parts[3].endswith(":predict"):
            return "predict", parts[3].removesuffix(":predict"), None
        if ":" not in parts[3]:
            return "model_ready", parts[3], None
    raise NotFoundError(f"no route {path}; see /v2/models/<name> and /v2/models/<name>/infer")


def _check_headers(headers: list[tuple[bytes, bytes]], limit: int) -> tuple[str | None, int | None]:
    """Checks content type and length; returns x-request-id and the binary JSON length, if any."""
    request_id = None
    binary_length = None
    for key, value in headers:
        if key == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            if media not in ACCEPTED_MEDIA and not media.endswith(b"+json"):
                raise UnsupportedMediaTypeError(
                    f"content type {value.decode('latin-1')!r} is not supported; "
                    "send the body as application/json"
                )
        elif key == b"content-length":
            if not value.isdigit():
                raise BadRequestError("the content-length header is not a number")
            if int(value) > limit:
                raise PayloadTooLargeError(f"the body has {int(value)} bytes; the limit is {limit}")
        elif key == b"x-request-id":
            request_id = value.decode("latin-1")
            check_request_id(request_id, "the x-request-id header")
        elif key == BINARY_HEADER:
            if not value.isdigit():
                raise BadRequestError("the Inference-Header-Content-Length header is not a number")
            binary_length = int(value)
    return request_id, binary_length


async def _read_body(receive: Receive, limit: int, seconds: float) -> bytes:
    """The whole body, within ``limit`` bytes and ``seconds``; a prediction slot is not held."""
    try:
        async with asyncio.timeout(seconds):
            return await _receive_body(receive, limit)
    except TimeoutError:
        raise RequestTimeoutError(
            f"the request body did not arrive within {seconds:g} s; send it at once"
        ) from None


async def _receive_body(receive: Receive, limit: int) -> bytes:
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGoneError
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise PayloadTooLargeError(f"the body exceeds the limit of {limit} bytes")
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGoneError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def create_app(settings: ServeSettings, model: ServedModel) -> ServeApp:
    """Builds the application for one loaded model: metrics, inference log, dataplane."""
    metrics = ModelMetrics(model.name, model.version_label)
    logger = label_writer = None
    if settings.sample_rate > 0.0:
        logger, label_writer = (
            InferenceLogger(
                directory,
                model=model.name,
                version=model.version,
                feature_names=model.feature_names,
                metrics=metrics,
                writer_id=settings.writer_id,
                max_queued_rows=settings.log_queue_rows,
                rotate_bytes=settings.log_rotate_bytes,
                retain_bytes=settings.log_retain_bytes,
                retain_files=settings.log_retain_files,
                batch_rows=settings.log_batch_rows,
                batch_seconds=settings.log_batch_seconds,
                pending_bytes=settings.log_pending_bytes,
            )
            for directory in (
                settings.inference_log_dir,
                settings.inference_log_dir / LABELS_SUBDIR,
            )
        )
    batcher = Batcher(
        model.predict,
        max_rows=settings.batch_rows,
        max_wait=settings.batch_wait_ms / 1000,
        threaded=model.predict_ms > settings.inline_predict_ms,
        thread_initializer=model.configure_thread,
        observe=metrics.model_call,
    )
    dataplane = DataPlane(
        model, metrics, settings.max_batch_rows, logger, settings.sample_rate, batcher=batcher
    )
    return ServeApp(settings, dataplane, logger, label_writer)
