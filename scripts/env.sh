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
  # A loop, not `ls | ... | head`: with pipefail, head closing the pipe early fails the script.
  local out="" dir lib
  for dir in "$AUGUR_ROOT"/target/*/build/librocksdb-sys-*/out; do
    if [ -f "$dir/librocksdb.a" ] && [ -f "$dir/libsnappy.a" ]; then
      out="$dir"
      break
    fi
  done
  [ -n "$out" ] || return 0
  mkdir -p "$ROCKSDB_CACHE"
  for lib in librocksdb.a libsnappy.a; do
    cp "$out/$lib" "$ROCKSDB_CACHE/$lib.tmp.$$"
    mv "$ROCKSDB_CACHE/$lib.tmp.$$" "$ROCKSDB_CACHE/$lib"
  done
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

# A throwaway PostgreSQL 15 (Debian's package) for side-by-side tests and benchmarks:
# `start_reference_postgres PORT` initialises a cluster in a temporary directory, starts it on
# 127.0.0.1:PORT and sets REF_PG_CONN; `stop_reference_postgres` stops it and removes it.
PG_BIN=/usr/lib/postgresql/15/bin
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
start_reference_postgres() {
  local port="$1"
  apt_install postgresql-15
  REF_PG_DIR="$(mktemp -d /tmp/augur-ref-pg.XXXXXX)"
  [ "$(id -u)" = 0 ] && chown postgres "$REF_PG_DIR"
  as_postgres "$PG_BIN/initdb" -D "$REF_PG_DIR/data" -A trust -U postgres -E UTF8 \
    --locale=C.UTF-8 >/dev/null
  as_postgres "$PG_BIN/pg_ctl" -D "$REF_PG_DIR/data" -l "$REF_PG_DIR/log" -w \
    -o "-p $port -k $REF_PG_DIR -c listen_addresses=127.0.0.1 -c timezone=UTC" start >/dev/null
  REF_PG_CONN="host=127.0.0.1 port=$port user=postgres dbname=postgres"
  echo "==> PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on port $port" >&2
}
stop_reference_postgres() {
  [ -n "${REF_PG_DIR:-}" ] || return 0
  as_postgres "$PG_BIN/pg_ctl" -D "$REF_PG_DIR/data" -m fast stop >/dev/null || true
  rm -rf "$REF_PG_DIR"
  REF_PG_DIR=
}

# PostgreSQL's own regression scripts (src/test/regress: sql/ and data/) for the version of the
# reference server, from Debian's source archive, cached outside the clone. Prints the directory.
fetch_pg_regress() {
  local version cache tarball
  version="$("$PG_BIN/postgres" --version | awk '{print $3}')"
  cache="${AUGUR_BUILD_CACHE:-$HOME/.cache/augur}/postgresql-$version"
  if [ ! -d "$cache/src/test/regress/sql" ]; then
    echo "==> fetching PostgreSQL $version's regression scripts" >&2
    mkdir -p "$cache"
    tarball="$(mktemp)"
    # A point release's sources are in the main archive, a security update's in its own.
    local file="p/postgresql-15/postgresql-15_$version.orig.tar.bz2"
    curl -sSf -o "$tarball" "http://deb.debian.org/debian/pool/main/$file" ||
      curl -sSf -o "$tarball" "http://deb.debian.org/debian-security/pool/updates/main/$file"
    tar xjf "$tarball" -C "$cache" --strip-components=1 \
      "postgresql-$version/src/test/regress/sql" "postgresql-$version/src/test/regress/data"
    rm -f "$tarball"
  fi
  echo "$cache/src/test/regress"
}
