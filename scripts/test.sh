#!/usr/bin/env bash
# Runs every test: unit tests, sqllogictest files, end-to-end tests against the built binary,
# and the Python client tests (psycopg 3, SQLAlchemy, pandas in ./.venv).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$AUGUR_ROOT"

# psql and openssl drive the psql and TLS tests.
apt_install postgresql-client openssl

# Python client libraries, in a project-local virtual environment.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import psycopg, sqlalchemy, pandas" 2>/dev/null; then
  echo "==> installing Python client libraries into .venv" >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/clients/requirements.txt
fi

cargo build --tests
cache_rocksdb
cargo test --no-fail-fast "$@"
