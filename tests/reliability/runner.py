"""Runs corpus cases against the real programs and judges each outcome.

A CLI case runs ``python -m mlkube …`` as a child process (so a traceback, an exit code
or a stray line on stderr is seen exactly as a user sees it) on a private copy of the
reference store, and passes when: the exit code is the expected one, stderr holds no
traceback and exactly one ``mlkube <command>: error:`` line containing the expected
fragment, the trainer's termination log holds the same ``{"error": …}``, and the store
tree is byte-for-byte unchanged. HTTP cases share one real server; each passes when the
status and ``{"error": …}`` body match, and at the end the server must still be live with
no traceback in its log.
"""

from __future__ import annotations

import contextlib
import fnmatch
import http.client
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from reliability.corpus import CliCase, HttpCase
from reliability.workspace import Reference, copy_store, tree, tree_diff

_STARTED = re.compile(r"serving model \S+ version \S+ on \S+:(\d+)")


@dataclass
class Outcome:
    id: str
    surface: str
    where: str
    expect: str
    passed: bool
    seen: str  # the message the user got
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def mlkube_command() -> list[str]:
    return [sys.executable, "-m", "mlkube"]


def run_cli_case(case: CliCase, ref: Reference, work: Path, *, in_process: bool = False) -> Outcome:
    """Runs one case; ``in_process`` calls ``mlkube.cli.main`` (no interpreter start-up,
    for the fast form in ``make test``; an escaping exception counts as a crash) except for
    server cases, which always run as a child so a wrongly starting server can be stopped."""
    started = time.perf_counter()
    case_dir = work / case.id
    if case_dir.exists():
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)
    store = copy_store(ref, case_dir / "store")
    args = case.build(case_dir, ref)
    before = tree(store)
    if in_process and case.surface != "serve":
        code, stdout, stderr = _run_in_process(args)
    else:
        code, stdout, stderr = _run(args, case.surface == "serve")
    after = tree(store)
    problems: list[str] = []
    if code != case.exit_code:
        problems.append(f"exit code {code}, expected {case.exit_code}")
    if "Traceback" in stderr:
        problems.append("traceback on stderr")
    command = args[0]
    seen = _stderr_verdict(case, command, stderr, stdout, problems)
    written = [p for p in after if p not in before]
    allowed = [p for p in written if case.writes and fnmatch.fnmatch(p, case.writes)]
    problems += _output_problems(case, store, allowed, seen + stdout)
    diff = [
        d
        for d in tree_diff(before, after)
        if not (
            d.startswith("+ ")
            and (d[2:] in allowed or any(a.startswith(d[2:] + "/") for a in allowed))
        )
    ]
    if diff:
        problems.append("store changed: " + ", ".join(diff[:5]))
    if command == "train":
        problems += _termination_log_problems(case_dir / "termination-log", case.expect)
    return Outcome(
        case.id,
        case.surface,
        case.where,
        case.expect,
        not problems,
        seen,
        problems,
        time.perf_counter() - started,
    )


def _stderr_verdict(
    case: CliCase, command: str, stderr: str, stdout: str, problems: list[str]
) -> str:
    """The line that says what happened; one error line on failure, none on success."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith(f"mlkube {command}: ")]
    errors = [line for line in ours if line.startswith(f"mlkube {command}: error: ")]
    if case.exit_code == 0:
        if errors:
            problems.append("an error line on success")
        return ours[-1] if ours else next(iter(stdout.strip().splitlines()[-1:]), "")
    # Progress lines ("mlkube train: [ 1.2s] …") are allowed; anything else is not.
    if len(errors) != 1 or len(ours) != len(lines):
        problems.append(
            f"expected one error line on stderr, got {len(errors)} "
            f"(and {len(lines) - len(ours)} foreign lines)"
        )
    seen = errors[0] if errors else (lines[-1] if lines else "")
    if case.expect.lower() not in seen.lower():
        problems.append(f"message lacks {case.expect!r}")
    return seen


def _output_problems(case: CliCase, store: Path, allowed: list[str], said: str) -> list[str]:
    """On success: the expected words in the output or the report, and valid JSON written."""
    if case.exit_code != 0:
        return []
    problems = []
    produced = "\n".join((store / p).read_text(errors="replace") for p in allowed)
    if case.expect.lower() not in (said + produced).lower():
        problems.append(f"neither output nor report mentions {case.expect!r}")
    for path in allowed:
        try:
            json.loads((store / path).read_text())
        except ValueError:
            problems.append(f"{path} is not valid JSON")
    return problems


def _termination_log_problems(path: Path, expect: str) -> list[str]:
    try:
        document = json.loads(path.read_bytes() or b"null")
    except (OSError, ValueError):
        return ["termination log missing or not JSON"]
    if not isinstance(document, dict) or "error" not in document:
        return ["termination log has no error"]
    if expect.lower() not in str(document["error"]).lower():
        return [f"termination log lacks {expect!r}"]
    return []


def _run_in_process(args: list[str]) -> tuple[int, str, str]:
    from mlkube.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except Exception:
            traceback.print_exc()
            code = 1
    return code, out.getvalue(), err.getvalue()


def _run(args: list[str], is_server: bool, timeout: float = 120.0) -> tuple[int, str, str]:
    """Exit code, stdout and stderr; a command still running at the timeout is killed."""
    proc = subprocess.Popen(
        [*mlkube_command(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=45 if is_server else timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += b"\n(timed out: the command kept running)"
        return -1, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


# ---------------------------------------------------------------- HTTP


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body or None, headers=headers or {})
            response = conn.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            conn.close()


@contextmanager
def serving(model_dir: Path, log: Path, *extra: str) -> Iterator[Server]:
    """``mlkube serve`` on a free loopback port until the block ends (then SIGTERM)."""
    handle = log.open("wb")
    proc = subprocess.Popen(
        [
            *mlkube_command(),
            "serve",
            "--model-dir",
            str(model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            *extra,
        ],
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    handle.close()
    try:
        deadline = time.monotonic() + 90
        port = 0
        while not port:
            match = _STARTED.search(log.read_text(errors="replace"))
            if match:
                port = int(match.group(1))
            elif proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlkube serve did not start: {log.read_text()[-2000:]}")
            else:
                time.sleep(0.1)
        server = Server(proc, port, log)
        while server.request("GET", "/v2/health/ready")[0] != 200:
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def run_http_case(case: HttpCase, server: Server) -> Outcome:
    started = time.perf_counter()
    problems: list[str] = []
    try:
        status, _headers, body = server.request(case.method, case.path, case.body, case.headers)
    except OSError as error:
        return Outcome(
            case.id,
            case.surface,
            case.where,
            case.expect,
            False,
            str(error),
            [f"connection failed: {error}"],
            time.perf_counter() - started,
        )
    seen = body.decode("utf-8", "replace")[:300]
    if status != case.status:
        problems.append(f"HTTP {status}, expected {case.status}")
    if status >= 500 and status != 503:
        problems.append("server error")
    try:
        message = str(json.loads(body).get("error", ""))
    except (ValueError, AttributeError):
        message = ""
        problems.append("body is not a JSON object")
    if not message:
        problems.append("no error message in the body")
    elif case.expect.lower() not in message.lower():
        problems.append(f"message lacks {case.expect!r}")
    return Outcome(
        case.id,
        case.surface,
        case.where,
        case.expect,
        not problems,
        message or seen,
        problems,
        time.perf_counter() - started,
    )


def run_http_cases(cases: Iterable[HttpCase], ref: Reference, work: Path) -> list[Outcome]:
    """All HTTP cases against one server; a last outcome checks it survived them."""
    work.mkdir(parents=True, exist_ok=True)
    store = copy_store(ref, work / "store")
    model_dir = store / "default" / "churn" / "v1"
    version_before = tree(model_dir)
    outcomes: list[Outcome] = []
    with serving(
        model_dir,
        work / "serve.log",
        "--max-body-bytes",
        str(1 << 20),
        "--max-batch-rows",
        "1000",
        "--sample-rate",
        "1",
        "--log-dir",
        str(work / "inference"),
    ) as server:
        outcomes = [run_http_case(case, server) for case in cases]
        status, _, _ = server.request("GET", "/v2/health/live")
        alive = status == 200 and server.proc.poll() is None
    log = (work / "serve.log").read_text(errors="replace")
    problems = [] if alive else ["server not live after the corpus"]
    if "Traceback" in log:
        problems.append("traceback in the server log")
    if tree_diff(version_before, tree(model_dir)):
        problems.append("the served version changed on disk")
    outcomes.append(
        Outcome(
            "infer-server-survives",
            "infer",
            "liveness + server log",
            "",
            not problems,
            "live" if alive else "dead",
            problems,
        )
    )
    return outcomes
