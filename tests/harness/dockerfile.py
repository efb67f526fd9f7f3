"""Reads a Dockerfile and replays its build steps on this machine, without a Docker engine.

The parser knows what mlkube's Dockerfiles use (ARG, FROM … AS, ENV, WORKDIR, COPY
[--from], RUN, USER, LABEL, EXPOSE, ENTRYPOINT, CMD). The replay gives every stage one
shared directory standing for the container's filesystem: absolute paths under the
application roots (/opt, /src) are mapped into it, COPY copies from the repository,
RUN runs in bash with the stage's ENV and WORKDIR and ``python`` being this machine's
interpreter (the same minor version as the base image). Stages share the directory
because a venv is not relocatable: ``COPY --from=build /opt/x /opt/x`` then copies a
path onto itself, which is what the engine's result amounts to.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

APP_ROOTS = ("opt", "src")


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]


def parse(path: Path) -> list[Stage]:
    """Stages of a Dockerfile, with ARG defaults substituted."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), rest.strip())
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            parts = rest.split()
            stages.append(Stage(parts[0], parts[2] if len(parts) > 2 else None))
        else:
            stages[-1].instructions.append(Instruction(keyword, rest))
    return stages


def env_pairs(args: str) -> dict[str, str]:
    return dict(token.split("=", 1) for token in shlex.split(args))


@dataclass
class Replay:
    """One replayed build: ``root`` stands for the image's filesystem."""

    dockerfile: Path
    context: Path
    root: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def host(self, path: str, workdir: str = "/") -> Path:
        absolute = path if path.startswith("/") else os.path.join(workdir, path)
        return self.root / absolute.lstrip("/")

    def rewrite(self, command: str) -> str:
        roots = "|".join(APP_ROOTS)
        return re.sub(rf"(?<![\w./-])/(?=({roots})(/|\b))", f"{self.root}/", command)

    def run(self) -> list[Stage]:
        stages = parse(self.dockerfile)
        shim = self.root / ".shim"
        shim.mkdir(parents=True, exist_ok=True)
        base_python = Path(getattr(sys, "_base_executable", sys.executable))
        for name in ("python", "python3"):
            link = shim / name
            if not link.exists():
                link.symlink_to(base_python)
        for stage in stages:
            env = {"PATH": f"{shim}:/usr/local/bin:/usr/bin:/bin", "HOME": str(self.root)}
            workdir = "/"
            for step in stage.instructions:
                if step.keyword == "ENV":
                    for key, value in env_pairs(step.args).items():
                        env[key] = self.rewrite(value.replace("$PATH", env["PATH"]))
                elif step.keyword == "WORKDIR":
                    workdir = step.args
                    self.host(workdir).mkdir(parents=True, exist_ok=True)
                elif step.keyword == "COPY":
                    self.copy(step.args, workdir)
                elif step.keyword == "RUN":
                    self.execute(step.args, {**env, **self.env_overrides}, workdir)
        return stages

    def copy(self, args: str, workdir: str) -> None:
        parts = shlex.split(args)
        from_stage = any(p.startswith("--from=") for p in parts)
        sources, target = [p for p in parts if not p.startswith("--")][:-1], parts[-1]
        for source in sources:
            destination = self.host(target, workdir)
            if from_stage:
                origin = self.host(source)
                if origin.resolve() != destination.resolve():
                    shutil.copytree(origin, destination, symlinks=True, dirs_exist_ok=True)
                continue
            origin = self.context / source
            if origin.is_dir():
                shutil.copytree(
                    origin,
                    destination,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"),
                )
            else:
                if target.endswith("/") or destination.is_dir():
                    destination = destination / origin.name
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, destination)

    def execute(self, command: str, env: dict[str, str], workdir: str) -> None:
        rewritten = self.rewrite(command)
        self.log.append(rewritten)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", rewritten],
            cwd=self.host(workdir),
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"RUN failed ({result.returncode}): {command}\n{result.stdout[-3000:]}"
                f"\n{result.stderr[-3000:]}"
            )


def entrypoint(stage: Stage) -> list[str]:
    (value,) = stage.all("ENTRYPOINT")
    parsed: list[str] = json.loads(value)
    return parsed
