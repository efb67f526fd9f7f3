#!/usr/bin/env bash
# Builds the images a real node runs, daemonless and without a registry, as OCI archives that
# `ctr -n k8s.io images import` loads:
#   localhost/pause:3.10          the sandbox image: tests/node/pause.c, static, FROM scratch
#   localhost/mlkube-base:bookworm  Debian bookworm minbase + python3 (3.11, like python:3.11-slim)
#   docker.io/mlkube/runtime:dev  images/runtime/Dockerfile, unchanged, on that base
#   docker.io/mlkube/operator:dev images/operator/Dockerfile, unchanged, on that base
# (the names and tag are the ones docs/install.md's kind recipe builds and loads).
# The Dockerfiles get the base through their PYTHON_IMAGE build argument; buildah runs them
# with chroot isolation and the vfs driver, in a storage of its own that is emptied after.
# Each archive is cached under ~/.cache/mlkube/images by the hash of its inputs.
# Prints one line per image on stdout: "<reference> <archive>"; progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${MLKUBE_CACHE:-$HOME/.cache/mlkube}
. "$here/../buildlock.sh"
lock_build "$cache" images "$0" "$@"
out="$cache/images"
mkdir -p "$out"

need_pkgs=()
command -v gcc >/dev/null || need_pkgs+=(gcc libc6-dev)
command -v mmdebstrap >/dev/null || need_pkgs+=(mmdebstrap)
command -v buildah >/dev/null || need_pkgs+=(buildah)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "image build needs Debian packages: ${need_pkgs[*]} (run as root or install them)" >&2
    exit 1
  fi
  echo "installing ${need_pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >&2
fi

store="$cache/buildah"
bh() { buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs "$@"; }
cleanup_store() { bh rm --all >/dev/null 2>&1 || true; bh rmi --all --force >/dev/null 2>&1 || true; }
trap cleanup_store EXIT
hash_of() { sha256sum | cut -c1-16; }
# Keeps one archive per image: the one just built or found, and others used in the last two
# hours (another work tree may be about to import them); older ones are hundreds of MB.
prune() { touch "$2"; find "$out" -maxdepth 1 -name "$1-*.tar*" ! -name "$(basename "$2")" -mmin +120 -delete; }
# Bump when a recipe below changes in a way its hashed inputs do not show.
recipe=1

# -- pause ---------------------------------------------------------------------------
pause_ref=localhost/pause:3.10
pause_tar="$out/pause-$( (cat "$here/pause.c"; echo "$recipe") | hash_of).tar"
if [ ! -s "$pause_tar" ]; then
  s=$(date +%s)
  tmp=$(mktemp -d)
  gcc -static -Os -o "$tmp/pause" "$here/pause.c" && strip "$tmp/pause"
  c=$(bh from scratch)
  bh copy --chmod 0755 "$c" "$tmp/pause" /pause >/dev/null
  bh config --entrypoint '["/pause"]' --user 65535:65535 "$c"
  bh commit --quiet "$c" "$pause_ref" >/dev/null
  bh push --quiet "$pause_ref" "oci-archive:$pause_tar.partial:$pause_ref"
  mv "$pause_tar.partial" "$pause_tar"
  bh rm "$c" >/dev/null
  rm -rf "$tmp"
  echo "pause image built in $(( $(date +%s) - s ))s" >&2
fi
prune pause "$pause_tar"
echo "$pause_ref $pause_tar"

# -- base: Debian bookworm with python3, from the machine's own Debian sources ----------
base_ref=localhost/mlkube-base:bookworm
base_pkgs=python3,python3-venv,python-is-python3,ca-certificates
sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
  [ -s "$f" ] && sources+=("$f")
done
# rebuilt weekly, for Debian's security updates
base_tar="$out/base-$( (echo "$base_pkgs $recipe"; date -u +%Y-%V) | hash_of).tar"
if [ ! -s "$base_tar" ]; then
  s=$(date +%s)
  tmp=$(mktemp -d)
  mmdebstrap --quiet --variant=minbase --include="$base_pkgs" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    bookworm "$tmp/rootfs.tar" "${sources[@]}" >&2
  c=$(bh from scratch)
  bh add "$c" "$tmp/rootfs.tar" / >/dev/null
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 "$c"
  bh commit --quiet "$c" "$base_ref" >/dev/null
  bh push --quiet "$base_ref" "oci-archive:$base_tar.partial:$base_ref"
  mv "$base_tar.partial" "$base_tar"
  bh rm "$c" >/dev/null
  rm -rf "$tmp"
  echo "base image built in $(( $(date +%s) - s ))s" >&2
fi
prune base "$base_tar"
base_hash=$(basename "$base_tar" .tar)

# -- the project's images, from their Dockerfiles ------------------------------------------
# The build context holds exactly what .dockerignore lets in, so the hash covers every input.
context=$(mktemp -d)
trap 'cleanup_store; rm -rf "$context"' EXIT
(cd "$repo" && git ls-files -co --exclude-standard -- pyproject.toml README.md operator images \
  | grep -v -e '__pycache__' -e '\.pyc$' -e '\.egg-info/' \
  | while read -r f; do [ -f "$f" ] && echo "$f"; done) > "$context.files"
(cd "$repo" && tar -cf - -T "$context.files") | tar -xf - -C "$context"
context_hash=$( (cd "$context" && sort "$context.files" | xargs sha256sum; echo "$base_hash $recipe") | hash_of)
rm -f "$context.files"
volumes=()
# pip inside the build reaches the package index only through the machine's trust store
# and pip configuration (read-only), as a Docker build on this machine would need too.
[ -d /etc/ssl/certs ] && volumes+=(--volume /etc/ssl/certs:/etc/ssl/certs:ro)
[ -f /etc/pip.conf ] && volumes+=(--volume /etc/pip.conf:/etc/pip.conf:ro)
base_loaded=0
for name in runtime operator; do
  ref=docker.io/mlkube/$name:dev
  tar="$out/$name-$context_hash.tar"
  if [ ! -s "$tar" ]; then
    if [ $base_loaded = 0 ]; then
      bh pull --quiet "oci-archive:$base_tar" >/dev/null
      base_loaded=1
    fi
    s=$(date +%s)
    bh build --quiet --isolation chroot --layers=false --pull-never \
      --build-arg "PYTHON_IMAGE=$base_ref" "${volumes[@]}" \
      -f "$context/images/$name/Dockerfile" -t "$ref" "$context" >&2
    bh push --quiet "$ref" "oci-archive:$tar.partial:$ref"
    mv "$tar.partial" "$tar"
    echo "$name image built in $(( $(date +%s) - s ))s" >&2
  fi
  prune "$name" "$tar"
  echo "$ref $tar"
done
