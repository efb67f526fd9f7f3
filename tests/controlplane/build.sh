#!/usr/bin/env bash
# Ensures the control-plane binaries the tests run (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl) exist in the cache, building
# them from the Go modules pinned beside this script when they do not.
# Prints the bin directory on stdout; progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/k8s/go.mod")
ETCD_VERSION=$(awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" {print $3}' "$here/etcd/go.mod")
cache=${MLKUBE_CACHE:-$HOME/.cache/mlkube}
. "$here/../buildlock.sh"
lock_build "$cache" controlplane "$0" "$@"
bin="$cache/k8s-$K8S_VERSION-etcd-$ETCD_VERSION/bin"
tools=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)

missing=()
for t in "${tools[@]}"; do [ -x "$bin/$t" ] || missing+=("$t"); done
if [ ${#missing[@]} -eq 0 ]; then
  echo "$bin"
  exit 0
fi

export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$bin.partial"
start=$(date +%s)
echo "building control plane ($K8S_VERSION, etcd $ETCD_VERSION) into $bin: ${missing[*]} (15-25 min on a cold cache)" >&2

git_commit=0000000000000000000000000000000000000000
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
major=$(echo "$K8S_VERSION" | sed -E 's/^v([0-9]+)\..*/\1/')
minor=$(echo "$K8S_VERSION" | sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/')
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitCommit=$git_commit -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

for t in "${missing[@]}"; do
  echo "  go build $t" >&2
  if [ "$t" = etcd ]; then
    (cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$bin.partial/etcd" go.etcd.io/etcd/server/v3)
  else
    (cd "$here/k8s" && go build -trimpath -ldflags "$ldflags" -o "$bin.partial/$t" "k8s.io/kubernetes/cmd/$t")
  fi
done
mkdir -p "$bin"
for t in "${missing[@]}"; do mv "$bin.partial/$t" "$bin/$t"; done
rmdir "$bin.partial" 2>/dev/null || true
echo "control plane built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
