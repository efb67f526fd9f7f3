"""The KServe peer of ``benchmarks/serve/run.py``; runs in KServe's own bench venv.

KServe's scikit-learn server (``sklearnserver``) is not published as a package, only the
``kserve`` library is, so this is the smallest server built on that library the way a
KServe custom predictor is: a ``kserve.Model`` per joblib-dumped estimator (the files
the benchmark writes for MLServer) whose ``predict`` answers a V2 request with the
estimator's ``predict`` output, served by ``kserve.ModelServer`` with ``--workers``
uvicorn processes.

Changed from KServe's defaults, and why:
- no gRPC server, and the REST server (its host is fixed to 0.0.0.0 in the library)
  listens on 127.0.0.1: the benchmark stays on loopback;
- no per-request logging, like the other servers measured (MLServer tuned, mlkube with
  sample rate 0): KServe's timing middleware (two lines per request) and uvicorn's
  access log are raised to WARNING in KServe's logging config, latency logging is off,
  and FastAPI's deprecation warning for KServe's ``ORJSONResponse`` is ignored (FastAPI
  resets its warning filters per request, so it is printed on every request).

Usage: python kserve_sklearn.py --models-dir DIR --http_port PORT [--workers N]
(DIR holds one folder per model, named as the model, with its ``model.joblib``).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

import joblib
import kserve
from fastapi.exceptions import FastAPIDeprecationWarning
from kserve import model_server
from kserve.logging import KSERVE_LOG_CONFIG
from kserve.protocol.rest import server as rest
from kserve.protocol.rest.multiprocess import server as multiprocess
from kserve.utils.utils import get_predict_input, get_predict_response

# At import, so both hold in the worker processes too: they are spawned, import this
# module, then configure logging from KSERVE_LOG_CONFIG.
warnings.filterwarnings("ignore", category=FastAPIDeprecationWarning)
for _name in ("kserve.trace", "uvicorn.access"):
    KSERVE_LOG_CONFIG["loggers"][_name]["level"] = "WARNING"


class LoopbackRESTServer(rest.RESTServer):
    """KServe's REST server, listening on 127.0.0.1."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config.host = "127.0.0.1"


class JoblibModel(kserve.Model):
    """One estimator: V2 inputs to ``predict``, its output as the V2 response."""

    def __init__(self, name: str, path: Path) -> None:
        super().__init__(name)
        self.path, self.estimator = path, None

    def load(self) -> bool:
        self.estimator = joblib.load(self.path)
        self.ready = True
        return self.ready

    def predict(self, payload: Any, headers: Any = None) -> Any:
        rows = get_predict_input(payload)
        return get_predict_response(payload, self.estimator.predict(rows), self.name)


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--models-dir", type=Path, required=True)
    args, _ = parser.parse_known_args()
    model_server.RESTServer = LoopbackRESTServer
    multiprocess.RESTServer = LoopbackRESTServer
    models = []
    for folder in sorted(p for p in args.models_dir.iterdir() if p.is_dir()):
        model = JoblibModel(folder.name, folder / "model.joblib")
        model.load()
        models.append(model)
    kserve.ModelServer(
        http_port=args.http_port,
        workers=args.workers,
        enable_grpc=False,
        enable_latency_logging=False,
    ).start(models)


if __name__ == "__main__":
    main()
