#!/usr/bin/env bash
# Runs every test: unit tests, sqllogictest files, end-to-end tests against the built binary,
# the Python client tests (psycopg 3, SQLAlchemy, pandas in ./.venv), the file source tests
# against moto's S3 server (./.venv), and the side-by-side
# comparison with PostgreSQL 15 (tests/compat.rs), which gets a throwaway server started here
# and PostgreSQL's own regression scripts.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$AUGUR_ROOT"

# psql and openssl drive the psql and TLS tests.
apt_install postgresql-client openssl

# ONNX Runtime for the model tests; the Python client libraries and moto's S3 server, in ./.venv.
install_onnxruntime
if ! .venv/bin/python -c "import psycopg, sqlalchemy, pandas, moto.server" 2>/dev/null; then
  echo "==> installing the Python test libraries into .venv" >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi

cargo build --tests
cache_rocksdb

log="$(mktemp)"
trap 'rm -f "$log"; stop_reference_postgres' EXIT
start_reference_postgres "${AUGUR_COMPAT_PG_PORT:-55433}"
export AUGUR_COMPAT_PG="$REF_PG_CONN"
AUGUR_PG_REGRESS="$(fetch_pg_regress)"
export AUGUR_PG_REGRESS
set +e
cargo test --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite: Rust test binaries, sqllogictest files, Python clients.
awk '
  /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
  /^[0-9]+ passed, [0-9]+ failed$/ && !/test result/ { p += $1; f += $3 }
  END { printf "suite: %d passed, %d failed\n", p, f }
' "$log"
exit "$status"
