#!/usr/bin/env bash
# Ensures the binaries of a real Kubernetes node exist in the cache, building them from the
# Go modules pinned beside this script (and tests/controlplane/k8s) when they do not:
#   kubelet, kube-proxy          the control plane's own k8s.io/kubernetes module
#   containerd, shim, ctr        tests/node/containerd (CGO off, no btrfs/devmapper/zfs)
#   runc                         tests/node/runc (cgo + libseccomp)
#   bridge, host-local, loopback, portmap   tests/node/cni
#   metrics-server-<version>     tests/node/metrics-server, only with MLKUBE_METRICS_SERVER=1
#                                (the HPA test's resource metrics; its first build is long, so
#                                `make test-realnode` asks for it and `make test` does not;
#                                the version is in the binary's name: a bump builds it alone)
# Installs the Debian packages the build and the node need (root only; skipped when present).
# Prints the bin directory on stdout; progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
k8s_mod="$here/../controlplane/k8s"
version_of() { awk -v m="$2" '$1 == "require" && $2 == m {print $3}' "$1/go.mod"; }
K8S_VERSION=$(version_of "$k8s_mod" k8s.io/kubernetes)
CONTAINERD_VERSION=$(version_of "$here/containerd" github.com/containerd/containerd/v2)
RUNC_VERSION=$(version_of "$here/runc" github.com/opencontainers/runc)
CNI_VERSION=$(version_of "$here/cni" github.com/containernetworking/plugins)
METRICS_VERSION=$(version_of "$here/metrics-server" sigs.k8s.io/metrics-server)
cache=${MLKUBE_CACHE:-$HOME/.cache/mlkube}
. "$here/../buildlock.sh"
lock_build "$cache" node "$0" "$@"
bin="$cache/node-k8s-$K8S_VERSION-containerd-$CONTAINERD_VERSION-runc-$RUNC_VERSION-cni-$CNI_VERSION/bin"
tools=(kubelet kube-proxy containerd containerd-shim-runc-v2 ctr runc
  cni/bridge cni/host-local cni/loopback cni/portmap)
[ "${MLKUBE_METRICS_SERVER:-0}" = 1 ] && tools+=("metrics-server-$METRICS_VERSION")

# Debian packages: libseccomp for runc (build and run), iptables/conntrack for kubelet and
# kube-proxy, a C compiler for runc's cgo.
need_pkgs=()
command -v gcc >/dev/null || need_pkgs+=(gcc libc6-dev)
command -v pkg-config >/dev/null || need_pkgs+=(pkg-config)
[ -e /usr/include/seccomp.h ] || need_pkgs+=(libseccomp-dev)
command -v iptables >/dev/null || need_pkgs+=(iptables)
command -v conntrack >/dev/null || need_pkgs+=(conntrack)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "node build needs Debian packages: ${need_pkgs[*]} (run as root or install them)" >&2
    exit 1
  fi
  echo "installing ${need_pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >&2
fi

missing=()
for t in "${tools[@]}"; do [ -x "$bin/$t" ] || missing+=("$t"); done
if [ ${#missing[@]} -eq 0 ]; then
  echo "$bin"
  exit 0
fi

export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=mod
partial="$bin.partial"
mkdir -p "$partial/cni"
start=$(date +%s)
echo "building node (kubelet $K8S_VERSION, containerd $CONTAINERD_VERSION, runc $RUNC_VERSION," \
  "CNI $CNI_VERSION) into $bin: ${missing[*]} (about 8 min on 2 cores with the control plane's" \
  "Go build cache, 15 min without)" >&2

major=$(echo "$K8S_VERSION" | sed -E 's/^v([0-9]+)\..*/\1/')
minor=$(echo "$K8S_VERSION" | sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/')
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  k8s_ldflags+=" -X $pkg.gitCommit=0000000000000000000000000000000000000000 -X $pkg.gitTreeState=clean"
  k8s_ldflags+=" -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
done
ctrd_tags="no_btrfs no_devmapper no_zfs no_dynamic_plugins"
ctrd_ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"

for t in "${missing[@]}"; do
  s=$(date +%s)
  case "$t" in
    kubelet | kube-proxy)
      (cd "$k8s_mod" && go build -trimpath -ldflags "$k8s_ldflags" -o "$partial/$t" "k8s.io/kubernetes/cmd/$t") ;;
    containerd | containerd-shim-runc-v2 | ctr)
      (cd "$here/containerd" && go build -trimpath -tags "$ctrd_tags" -ldflags "$ctrd_ldflags" \
        -o "$partial/$t" "github.com/containerd/containerd/v2/cmd/$t") ;;
    runc)
      (cd "$here/runc" && CGO_ENABLED=1 go build -trimpath -tags seccomp \
        -ldflags "-s -w -X main.version=${RUNC_VERSION#v}" -o "$partial/runc" github.com/opencontainers/runc) ;;
    metrics-server-*)
      (cd "$here/metrics-server" && go build -trimpath -ldflags "-s -w" -o "$partial/$t" \
        sigs.k8s.io/metrics-server/cmd/metrics-server) ;;
    cni/*)
      p=${t#cni/}
      case "$p" in bridge | loopback) kind=main ;; host-local) kind=ipam ;; portmap) kind=meta ;; esac
      (cd "$here/cni" && go build -trimpath -ldflags "-s -w" -o "$partial/$t" \
        "github.com/containernetworking/plugins/plugins/$kind/$p") ;;
  esac
  echo "  $t built in $(( $(date +%s) - s ))s" >&2
done
mkdir -p "$bin/cni"
for t in "${missing[@]}"; do mv "$partial/$t" "$bin/$t"; done
rm -rf "$partial"
echo "node built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
