# Sourced by the other scripts: installs what a fresh machine lacks and sets up the build.
#
# - libclang (RocksDB's Rust bindings run bindgen) from Debian's packages;
# - a cache of the compiled RocksDB outside the clone, so that a fresh clone does not compile
#   RocksDB's C++ again (it is most of a clean build);
# - ONNX Runtime's library, from the `onnxruntime` package on PyPI, in ./.venv (where Augur
#   looks for it).

set -euo pipefail

AUGUR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export AUGUR_ROOT

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "error: '$*' needs root" >&2; return 1; fi
}

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]}" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

apt_install libclang-dev

# RocksDB compiled once per machine, keyed by the librocksdb-sys version in Cargo.lock.
rocksdb_version="$(grep -A1 '^name = "librocksdb-sys"' "$AUGUR_ROOT/Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p')"
ROCKSDB_CACHE="${AUGUR_BUILD_CACHE:-$HOME/.cache/augur}/librocksdb-sys-$rocksdb_version"
if [ -f "$ROCKSDB_CACHE/librocksdb.a" ] && [ -f "$ROCKSDB_CACHE/libsnappy.a" ]; then
  export ROCKSDB_LIB_DIR="$ROCKSDB_CACHE" ROCKSDB_STATIC=1
  export SNAPPY_LIB_DIR="$ROCKSDB_CACHE" SNAPPY_STATIC=1
fi

# After a build that compiled RocksDB, keep the libraries for the next clone.
cache_rocksdb() {
  [ -n "${ROCKSDB_LIB_DIR:-}" ] && return 0
  local out
  out="$(ls -d "$AUGUR_ROOT"/target/*/build/librocksdb-sys-*/out 2>/dev/null | while read -r d; do
    [ -f "$d/librocksdb.a" ] && echo "$d"; done | head -n 1)"
  if [ -n "$out" ] && [ -f "$out/libsnappy.a" ]; then
    mkdir -p "$ROCKSDB_CACHE"
    for lib in librocksdb.a libsnappy.a; do
      cp "$out/$lib" "$ROCKSDB_CACHE/$lib.tmp.$$"
      mv "$ROCKSDB_CACHE/$lib.tmp.$$" "$ROCKSDB_CACHE/$lib"
    done
  fi
}

# ONNX Runtime for CREATE MODEL and PREDICT: the `onnxruntime` Python package ships the library
# (onnxruntime/capi/libonnxruntime.so.*); Augur finds it in ./.venv.
ONNXRUNTIME_VERSION=1.31.1
install_onnxruntime() {
  if [ ! -x "$AUGUR_ROOT/.venv/bin/python" ]; then
    python3 -m venv "$AUGUR_ROOT/.venv"
  fi
  if ! "$AUGUR_ROOT/.venv/bin/python" -c "import onnxruntime" 2>/dev/null; then
    echo "==> installing onnxruntime $ONNXRUNTIME_VERSION into .venv" >&2
    "$AUGUR_ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check \
      "onnxruntime==$ONNXRUNTIME_VERSION"
  fi
}
