#!/usr/bin/env bash
# `make test` after the venv: lint and every test tier, with the one-time builds overlapped.
#
# Why a script: on an empty cache the builds (control plane, the S3 server, the node
# binaries, the images) were most of the run, one after the other, while the tests left
# CPU idle waiting on the control plane. Here the control plane is built first (nearly
# every tier needs it); the S3 server, then the node binaries and images (when this
# machine can host a real node) build in the background while lint and the tests run.
# The tests that need the S3 server run last (tests/conftest.py orders them), and its
# fixture waits on the build's lock (tests/buildlock.sh) if the build is still going. On a
# warm cache every build is a no-op and this is the same run as before.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export PYTHONPATH=${PYTHONPATH:-$PWD/tests}
start=$(date +%s)
stamp() { echo "[tiers $(( $(date +%s) - start ))s] $*"; }

realnode_reason=$($BIN/python -m harness.node why-not)  # empty: a real node can run here
builds_log=$(mktemp -t mlkube-builds.XXXXXX)
# setsid: the builds are a process group of their own, stopped whole if this script stops.
setsid bash -c '
  bash tests/objectstore/build.sh >/dev/null
  if [ -z "$1" ]; then bash tests/node/build.sh >/dev/null && bash tests/node/images.sh >/dev/null; fi
' builds "$realnode_reason" 2>"$builds_log" &
builds=$!
trap 'kill -- -"$builds" 2>/dev/null || true' EXIT

stamp "control plane"
bash tests/controlplane/build.sh >/dev/null
stamp "lint (the S3 server builds in the background: $builds_log)"
make --no-print-directory lint
stamp "tests"
$BIN/pytest tests -q --durations=15 --ignore=tests/realnode
stamp "waiting for the background builds"
if ! wait "$builds"; then
  echo "a one-time build failed:" >&2
  tail -30 "$builds_log" >&2
  exit 1
fi
trap - EXIT
rm -f "$builds_log"
if [ -n "$realnode_reason" ]; then
  echo "real-node tier skipped: $realnode_reason"
else
  stamp "real-node tier"
  $BIN/pytest tests/realnode -q --durations=15
fi
stamp "done"
