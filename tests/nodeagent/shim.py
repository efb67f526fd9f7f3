"""Starts one container: mounts its volumes where the pod spec says, then execs its command.

Run by the agent as ``ip netns exec <pod-ns> python -I -S shim.py <spec.json>``: ``ip netns
exec`` puts the process in the pod's network namespace and in a fresh mount namespace whose
mounts never propagate back to the host. This script then gives the container its own
hostname, lets the pod's user reach the interpreter, bind-mounts each volume at its
``mountPath``, optionally makes the root read-only, drops to the pod's user and execs
the command, so the process id stays the one the agent watches. It imports nothing outside
the standard library and must stay runnable with ``-S``.

A mount point that does not exist (``/mnt/store``, ``/dev/termination-log``) is never
created on the host: the nearest existing parent is covered by a tmpfs in this namespace
whose entries are bind mounts of the original ones, and the mount point is made there.
Sources are reached through ``O_PATH`` descriptors, so a volume mounted over ``/tmp``
cannot hide a source the agent keeps under ``/tmp``.
"""

from __future__ import annotations

import ctypes
import json
import os
import stat
import sys

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
CLONE_NEWUTS = 0x04000000

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    rc = _libc.mount(
        source.encode(), target.encode(), fstype.encode() if fstype else None, flags, data.encode()
    )
    if rc != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source} on {target}: {os.strerror(errno)}")


def _shadow(parent: str, extra_mode: int = 0) -> None:
    """Covers ``parent`` with a tmpfs that still shows (bind mounts of) what it held."""
    info = os.stat(parent)
    mode = (info.st_mode & 0o7777) | extra_mode
    entries = os.listdir(parent)
    original = os.open(parent, os.O_PATH | os.O_DIRECTORY)
    _mount("tmpfs", parent, "tmpfs", 0, f"mode={mode:o}")
    os.chown(parent, info.st_uid, info.st_gid)
    for entry in entries:
        src, dst = f"/proc/self/fd/{original}/{entry}", os.path.join(parent, entry)
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
            continue
        if os.path.isdir(src):
            os.mkdir(dst)
        else:
            open(dst, "a").close()
        _mount(src, dst, None, MS_BIND | MS_REC)
    os.close(original)


def _expose(path: str) -> None:
    """Lets any user traverse to ``path`` (the interpreter may live under a 0700 /root)."""
    current = "/"
    for part in os.path.realpath(path).strip("/").split("/"):
        current = os.path.join(current, part)
        if not os.stat(current).st_mode & stat.S_IXOTH:
            _shadow(current, stat.S_IXGRP | stat.S_IXOTH)


def _ensure_mountpoint(target: str, is_file: bool) -> str:
    path = os.path.realpath(target)
    if os.path.exists(path):
        return path
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent == "/":
        raise OSError(f"refusing to create {path} on the host's root")
    _shadow(parent)
    if is_file:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "a").close()
    else:
        os.makedirs(path, exist_ok=True)
    return path


def _covered(path: str, targets: list[str]) -> bool:
    return any(path == t or path.startswith(t.rstrip("/") + "/") for t in targets)


def _restore(preserved: list[tuple[str, int]], targets: list[str]) -> None:
    """Binds back what a volume hid: the venv and source tree the entry point runs from.

    A pod that mounts an emptyDir at ``/tmp`` would otherwise hide a checkout (and its venv)
    that lives under ``/tmp``, as a CI clone may.
    """
    for path, descriptor in preserved:
        if _covered(path, targets):
            os.makedirs(path, exist_ok=True)
            _mount(f"/proc/self/fd/{descriptor}", path, None, MS_BIND | MS_REC)
        os.close(descriptor)


def main(spec_path: str) -> None:
    with open(spec_path) as handle:
        spec = json.load(handle)
    if _libc.unshare(CLONE_NEWUTS) == 0:
        name = spec["hostname"].encode()
        _libc.sethostname(name, len(name))
    if spec["uid"]:
        for path in spec["expose"]:
            _expose(path)
    mounts = sorted(spec["mounts"], key=lambda m: m["target"].count("/"))
    # Sources are opened before any mount: a volume at /tmp may cover a later source.
    sources = [os.open(m["source"], os.O_PATH) for m in mounts]
    preserved = [
        (os.path.realpath(p), os.open(p, os.O_PATH | os.O_DIRECTORY))
        for p in spec.get("preserve", [])
        if os.path.isdir(p)
    ]
    for mount, source in zip(mounts, sources, strict=True):
        is_file = os.path.isfile(f"/proc/self/fd/{source}")
        target = _ensure_mountpoint(mount["target"], is_file)
        _mount(f"/proc/self/fd/{source}", target, None, MS_BIND | MS_REC)
        os.close(source)
        if mount["readOnly"]:
            _mount("none", target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    _restore(preserved, [os.path.realpath(m["target"]) for m in mounts])
    if spec["readOnlyRoot"]:
        _mount("none", "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    if spec["gid"] is not None:
        os.setgroups(spec["groups"])
        os.setgid(spec["gid"])
    if spec["uid"] is not None:
        os.setuid(spec["uid"])
    os.chdir(spec["workingDir"])
    argv = spec["argv"]
    os.execvpe(argv[0], argv, spec["env"])


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except OSError as error:
        print(f"nodeagent: cannot start container: {error}", file=sys.stderr)
        sys.exit(128)
