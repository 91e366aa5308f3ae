#!/usr/bin/env bash
# Runs the benchmarks against a throwaway PostgreSQL 15 (Debian's package) started here, on this
# machine, in the same run. Prints a Markdown table for benches/README.md.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
cd "$AUGUR_ROOT"

apt_install postgresql-15
PGBIN=/usr/lib/postgresql/15/bin
PGDIR="$(mktemp -d /tmp/augur-bench-pg.XXXXXX)"
PGPORT="${AUGUR_BENCH_PG_PORT:-55432}"
chown postgres "$PGDIR" 2>/dev/null || true
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
as_pg "$PGBIN/initdb" -D "$PGDIR/data" -A trust -U postgres >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -o "-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1" -l "$PGDIR/log" -w start >/dev/null
trap 'as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast stop >/dev/null; rm -rf "$PGDIR"' EXIT

# Built with the release profile and run directly (`cargo bench` would build everything again
# under its own profile).
# One build of the binary and the bench together: one feature resolution, one set of artifacts.
bench="$(cargo build --release --bin augur --bench point_lookup --message-format=json \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "point_lookup" and m.get("executable"):
        print(m["executable"])')"
cache_rocksdb
echo "==> $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}')" >&2
AUGUR_BENCH_PG="host=127.0.0.1 port=$PGPORT user=postgres dbname=postgres" "$bench"
