"""The trainer's view of a store on disk: the next version number, pruning old versions,
and a write probe before any work.

Kept apart from ``run`` because they are about the store's directory, not about training:
an S3 store stages a run in a local directory and commits it elsewhere (``remote``).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from mlkube.runtime.train import TrainingInputError

_VERSION_DIR = re.compile(r"^v([1-9][0-9]*)$")


def next_version(model_dir: Path) -> int:
    """1 + the highest ``v<N>`` already in the store for this model (1 for a new model)."""
    try:
        names = [entry.name for entry in model_dir.iterdir()]
    except (FileNotFoundError, NotADirectoryError):
        return 1
    except OSError as error:
        raise TrainingInputError(
            f"cannot list the store at {model_dir}: {error.strerror}"
        ) from None
    found = [int(m.group(1)) for name in names if (m := _VERSION_DIR.match(name))]
    return max(found, default=0) + 1


def prune_versions(model_dir: Path, *, below: int, keep: set[int]) -> list[int]:
    """Deletes ``v<N>`` directories with N < ``below`` and not in ``keep``; returns the Ns.

    Each goes by a rename to a hidden name first, so a reader never sees half a version.
    """
    pruned = []
    for entry in sorted(model_dir.iterdir()):
        match = _VERSION_DIR.match(entry.name)
        if match is None or int(match.group(1)) >= below or int(match.group(1)) in keep:
            continue
        doomed = model_dir / f".pruning-{entry.name}"
        entry.rename(doomed)
        shutil.rmtree(doomed)
        pruned.append(int(match.group(1)))
    return sorted(pruned)


def check_store_writable(target: Path) -> None:
    """Probes the deepest existing ancestor of ``target`` with a temporary directory.

    A probe rather than ``os.access`` because it also catches read-only mounts and a
    root user; it is removed at once, so a refused run leaves the store as it was.
    """
    ancestor = target
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise TrainingInputError(f"cannot write to the store: {ancestor} is not a directory")
    try:
        Path(tempfile.mkdtemp(prefix=".mlkube-probe.", dir=ancestor)).rmdir()
    except OSError as error:
        raise TrainingInputError(
            f"cannot write to the store at {ancestor}: {error.strerror}"
        ) from None
