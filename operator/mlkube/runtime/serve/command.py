"""``mlkube serve``: verify and load one model version, then serve it over HTTP.

The model is loaded (sha256, trusted types, warm-up) before any socket is opened, so a
bad artifact stops the command with one line on stderr and exit code 2 and the pod
never reports ready. With ``--workers N`` the loaded process binds N sockets to the same
port with SO_REUSEPORT (the kernel spreads connections over them) and forks one worker
per socket; workers share the model's memory copy-on-write. The parent forwards SIGTERM
and SIGINT to its workers, which stop accepting, finish in-flight requests and flush
their inference logs; if a worker dies, the parent stops the others and exits non-zero
so Kubernetes restarts the pod.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import logging
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from mlkube.runtime.artifact import ArtifactError
from mlkube.runtime.serve.settings import ServeSettings, SettingsError, load_settings

log = logging.getLogger("mlkube.serve")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="serve one model version (Open Inference Protocol V2 + a plain JSON route)",
        description="Serve one model version from the store. Every flag also reads "
        "MLKUBE_SERVE_<FLAG> (e.g. MLKUBE_SERVE_MODEL_DIR); flags win.",
    )
    parser.add_argument(
        "--model-dir", help="the version: <store>/<ns>/<model>/v<N>, a directory or s3://…"
    )
    parser.add_argument(
        "--model-cache", help="where an s3:// version is downloaded (default: a temp dir)"
    )
    parser.add_argument(
        "--sha256", help="expected sha256 of the artifact; refuses to start on mismatch"
    )
    parser.add_argument(
        "--engine",
        choices=("auto", "onnx", "sklearn"),
        help="what predicts: auto (onnxruntime when the version has a verified ONNX file, "
        "else scikit-learn; the default), onnx or sklearn",
    )
    parser.add_argument(
        "--onnx-sha256", help="expected sha256 of model.onnx; refuses to start on mismatch"
    )
    parser.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080; 0 picks one)")
    parser.add_argument("--workers", type=int, help="server processes sharing the port (default 1)")
    parser.add_argument(
        "--log-dir",
        help="inference log directory or s3://… prefix (default <model-dir>/../inference)",
    )
    parser.add_argument(
        "--sample-rate", type=float, help="share of requests logged, 0..1 (default 0)"
    )
    parser.add_argument(
        "--max-in-flight", type=int, help="requests handled at once per worker; more get 503"
    )
    parser.add_argument("--max-body-bytes", type=int, help="larger request bodies get 413")
    parser.add_argument(
        "--body-timeout", type=float, help="seconds a request body may take to arrive (408 after)"
    )
    parser.add_argument("--max-batch-rows", type=int, help="larger batches get 413")
    parser.add_argument(
        "--batch-rows",
        type=int,
        help="rows one model call may coalesce from concurrent requests (default 256; 0: off)",
    )
    parser.add_argument(
        "--batch-wait-ms",
        type=float,
        help="longest time requests may gather before a call (default 1; never on an idle model)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mlkube.api.errors import CommandError

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings(vars(args))
    except SettingsError as error:
        raise CommandError(str(error)) from None
    from threadpoolctl import threadpool_limits

    from mlkube.runtime.serve.model import load_model
    from mlkube.runtime.store.s3 import ObjectStoreError

    threadpool_limits(1)  # BLAS/OpenMP: one thread per worker, as the estimators' n_jobs
    try:
        settings = _fetched(settings)
        assert isinstance(settings.model_dir, Path)
        model = load_model(
            settings.model_dir, settings.sha256, settings.engine, settings.onnx_sha256
        )
    except (ArtifactError, ObjectStoreError) as error:
        raise CommandError(str(error)) from None
    try:
        sockets = _bind(settings)
    except OSError as error:
        raise CommandError(
            f"cannot listen on {settings.host}:{settings.port}: {error.strerror}"
        ) from None
    port = sockets[0].getsockname()[1]
    log.info("engine %s: %s", model.engine, model.engine_reason)
    log.info(
        "serving model %s version %s on %s:%d (%d worker(s), warm-up predict %.2f ms)",
        model.name,
        model.version,
        settings.host,
        port,
        settings.workers,
        model.predict_ms,
    )
    if settings.workers == 1:
        _serve(settings, model, sockets[0])
        return 0
    return _supervise(settings, model, sockets)


def _fetched(settings: ServeSettings) -> ServeSettings:
    """For an ``s3://`` version: the settings with it downloaded and verified locally.

    The inference log stays where it was meant to be (by default beside the version in
    the bucket), not beside the local copy.
    """
    from mlkube.runtime.store.s3 import S3Location
    from mlkube.runtime.store.versions import fetch_version

    if not isinstance(settings.model_dir, S3Location):
        return settings
    cache = settings.model_cache or Path(tempfile.mkdtemp(prefix="mlkube-model-"))
    log.info("fetching %s into %s", settings.model_dir, cache)
    local = fetch_version(settings.model_dir, cache, settings.sha256, settings.onnx_sha256)
    return dataclasses.replace(settings, model_dir=local, log_dir=settings.inference_log_dir)


def _bind(settings: ServeSettings) -> list[socket.socket]:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sockets: list[socket.socket] = []
    port = settings.port
    for _ in range(settings.workers):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if settings.workers > 1:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((settings.host, port))
        sock.listen(2048)
        sock.set_inheritable(True)
        port = sock.getsockname()[1]
        sockets.append(sock)
    return sockets


def _serve(settings: ServeSettings, model: Any, sock: socket.socket) -> None:
    import uvicorn

    from mlkube.runtime.serve.app import create_app

    app = create_app(settings, model)
    _freeze_heap()
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,  # nothing here reads the client's address
        timeout_graceful_shutdown=int(settings.graceful_timeout),
    )
    # uvicorn re-raises the signal it stopped on once it is done; a handler that does
    # nothing turns that into a normal return, so a graceful SIGTERM exits with 0.
    signal.signal(signal.SIGTERM, _graceful_exit_done)
    server = uvicorn.Server(config)
    # uvicorn's live request tasks: when others are under way, a call gathers them first.
    app.watch_requests(lambda: len(server.server_state.tasks))
    server.run(sockets=[sock])


def _freeze_heap() -> None:
    """Moves what start-up made (the libraries, the model) out of the collector's reach.

    Those objects live as long as the process; left in the oldest generation, every full
    collection walks all of them, a pause of milliseconds in the middle of a request (the
    p99 of issue 16). Requests' own garbage is still collected as before."""
    gc.collect()
    gc.freeze()


def _graceful_exit_done(_signum: int, _frame: object) -> None:
    """The SIGTERM uvicorn re-raises after its graceful shutdown: nothing left to do."""


def _supervise(settings: ServeSettings, model: Any, sockets: list[socket.socket]) -> int:
    children: dict[int, int] = {}
    for index, sock in enumerate(sockets):
        pid = os.fork()
        if pid == 0:
            for other in sockets:
                if other is not sock:
                    other.close()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 0
            try:
                _serve(settings.for_worker(index), model, sock)
            except BaseException:
                log.exception("worker %d failed", index)
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = index
    for sock in sockets:
        sock.close()
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            _kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    exit_code = 0
    while children:
        pid, status = os.wait()
        children.pop(pid, None)
        code = os.waitstatus_to_exitcode(status)
        if code != 0 and not stopping:
            log.error("worker pid %d exited with %d; stopping the others", pid, code)
            exit_code = 1
            stopping = True
            for child_pid in children:
                _kill(child_pid, signal.SIGTERM)
    return exit_code


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
