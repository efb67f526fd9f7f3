"""A real S3-compatible server on loopback for tests: SeaweedFS's ``weed server -s3``.

Why a real server: the S3 store's promises (a version committed by its last object, a
conditional put that refuses an existing ``metadata.json``, listing by prefix, signed
requests refused with a wrong secret) are the server's behaviour, which a mock would only
restate. ``tests/objectstore/build.sh`` builds ``weed`` once from the pinned Go module
into ``~/.cache/mlkube``; ``ObjectStore.start`` runs one process (master, volume server,
filer and S3 gateway) bound to 127.0.0.1 on free ports, with its data in a temporary
directory, one identity (access key and secret) and a bucket; ``stop`` ends it by PID.

``python -m harness.objectstore up --dir DIR`` starts one for people and scripts and
prints the ``AWS_*`` variables; ``down --dir DIR`` stops it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.ports import free_ports

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tests" / "objectstore" / "build.sh"
HOST = "127.0.0.1"


class ObjectStoreError(RuntimeError):
    pass


def ensure_binary() -> Path:
    """The cached ``weed`` binary, built first when it is not cached (stderr shows progress)."""
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, check=False, timeout=3600
    )
    if result.returncode != 0:
        raise ObjectStoreError(f"{BUILD_SCRIPT} failed (exit {result.returncode})")
    return Path(result.stdout.decode().strip().splitlines()[-1])


@dataclass
class ObjectStore:
    """One running ``weed server -s3``; ``env`` is what a client needs (the AWS variables)."""

    root: Path
    bucket: str = "mlkube"
    access_key: str = field(default_factory=lambda: "AK" + secrets.token_hex(8).upper())
    secret_key: str = field(default_factory=lambda: secrets.token_hex(20))
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "weed.log"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
            "MLKUBE_S3_ADDRESSING_STYLE": "path",
        }

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *[p.strip("/") for p in parts if p]])

    def start(self, timeout: float = 120.0) -> ObjectStore:
        weed = ensure_binary()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "data").mkdir(exist_ok=True)
        config = self.root / "s3.json"
        identity = {
            "name": "mlkube",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        config.chmod(0o600)
        ports = free_ports(8)
        self.port = ports[0]
        args = [
            str(weed),
            "server",
            f"-dir={self.root / 'data'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-master.port={ports[1]}",
            f"-master.port.grpc={ports[2]}",
            f"-volume.port={ports[3]}",
            f"-volume.port.grpc={ports[4]}",
            f"-filer.port={ports[5]}",
            f"-filer.port.grpc={ports[6]}",
            "-s3",
            f"-s3.port={self.port}",
            f"-s3.port.grpc={ports[7]}",
            f"-s3.config={config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=16",
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        (self.root / "weed.pid").write_text(str(self.proc.pid))
        self._wait_until_ready(timeout)
        return self

    def client(self) -> Any:
        import boto3
        import botocore.config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=botocore.config.Config(
                s3={"addressing_style": "path"}, retries={"max_attempts": 1}
            ),
        )

    def _wait_until_ready(self, timeout: float) -> None:
        """Until the gateway answers and the bucket exists (the filer comes up last)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ObjectStoreError(f"weed exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                client = self.client()
                client.create_bucket(Bucket=self.bucket)
                client.put_object(Bucket=self.bucket, Key=".ready", Body=b"ok")
                client.delete_object(Bucket=self.bucket, Key=".ready")
                return
            except Exception as error:  # not up yet: connection refused, 503, no volumes
                code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
                if code in ("BucketAlreadyExists", "BucketAlreadyOwnedByYou"):
                    continue
                last = f"{type(error).__name__}: {error}"
            time.sleep(0.3)
        self.stop()
        raise ObjectStoreError(f"the S3 server never became ready ({last}):\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None:
            _stop_pid(self.proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            self.proc = None


def _stop_pid(pid: int, grace: float = 10.0) -> None:
    """SIGTERM to the server's process group, SIGKILL after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _cli(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.objectstore")
    parser.add_argument("action", choices=("up", "down"))
    parser.add_argument("--dir", type=Path, default=Path(".objectstore"))
    args = parser.parse_args(argv)
    state = args.dir / "state.json"
    if args.action == "down":
        if state.exists():
            _stop_pid(int(json.loads(state.read_text())["pid"]))
            state.unlink()
        return 0
    store = ObjectStore(args.dir.resolve()).start()
    assert store.proc is not None
    state.write_text(json.dumps({"pid": store.proc.pid, **store.env}))
    state.chmod(0o600)
    for name, value in store.env.items():
        print(f"export {name}={value}")
    print(
        f"# bucket s3://{store.bucket}; stop: python -m harness.objectstore down --dir {args.dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(_cli(sys.argv[1:]))
