#!/usr/bin/env bash
# Ensures the S3-compatible server the tests run (SeaweedFS's `weed`, whose `server -s3` mode
# is a master, a volume server, a filer and the S3 gateway in one process) exists in the cache,
# building it from the Go module pinned beside this script when it does not. SeaweedFS is
# Apache-2.0; MinIO (AGPL) is deliberately not used.
# Prints the binary's path on stdout; progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
WEED_VERSION=$(awk '$1 == "require" && $2 == "github.com/seaweedfs/seaweedfs" {print $3}' "$here/seaweedfs/go.mod")
cache=${MLKUBE_CACHE:-$HOME/.cache/mlkube}
. "$here/../buildlock.sh"
lock_build "$cache" objectstore "$0" "$@"
bin="$cache/seaweedfs-$WEED_VERSION/bin"
if [ -x "$bin/weed" ]; then
  echo "$bin/weed"
  exit 0
fi

export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$bin.partial"
start=$(date +%s)
echo "building the S3 test server (SeaweedFS $WEED_VERSION) into $bin (about 11 min from an empty Go cache on 2 cores, downloads included)" >&2
(cd "$here/seaweedfs" && go build -trimpath -ldflags "-s -w" -o "$bin.partial/weed" github.com/seaweedfs/seaweedfs/weed)
mkdir -p "$bin"
mv "$bin.partial/weed" "$bin/weed"
rmdir "$bin.partial" 2>/dev/null || true
echo "S3 test server built in $(( $(date +%s) - start ))s" >&2
echo "$bin/weed"
