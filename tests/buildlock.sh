# Sourced by the cached-build scripts: one build per binary set at a time. A second caller
# (a test fixture, another checkout's `make test`) waits for the first and then finds the
# binaries cached, instead of building the same thing beside it into the same directory.
# Usage: lock_build "$cache" <name> "$0" "$@"   (re-executes the script holding the lock)
lock_build() {
  local cache=$1 name=$2
  shift 2
  local var="MLKUBE_LOCKED_${name//-/_}"
  [ -n "${!var:-}" ] && return 0
  mkdir -p "$cache"
  exec env "$var=1" flock "$cache/.build-$name.lock" bash "$@"
}
