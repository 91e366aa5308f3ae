#!/usr/bin/env bash
# Runs the benchmarks in release mode on this machine and prints Markdown tables for
# benches/README.md. `benches/run.sh` runs all of them; `benches/run.sh NAME` runs one of
# point_lookup, streaming, predict, nexmark, kafka, files, http, freshness. point_lookup measures against a throwaway
# PostgreSQL 15 (Debian's package) started here, in the same run.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
cd "$AUGUR_ROOT"

which=("${@:-point_lookup streaming predict nexmark kafka files http freshness}")
read -r -a which <<<"${which[*]}"

# Built with the release profile and run directly (`cargo bench` would build everything again
# under its own profile). One build of the binary and the benches together: one feature
# resolution, one set of artifacts.
declare -A executables
while IFS='=' read -r name path; do
  executables[$name]=$path
done < <(cargo build --release --bin augur --bench point_lookup --bench streaming --bench predict --bench nexmark --bench kafka --bench files --bench http --bench freshness --message-format=json \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["bench"]:
        print(m["target"]["name"] + "=" + m["executable"])')
cache_rocksdb
echo "==> $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')" >&2

for bench in "${which[@]}"; do
  case "$bench" in
    point_lookup)
      start_reference_postgres "${AUGUR_BENCH_PG_PORT:-55432}"
      AUGUR_BENCH_PG="$REF_PG_CONN" "${executables[point_lookup]}"
      stop_reference_postgres
      ;;
    freshness)
      "${executables[$bench]}"
      ;;
    streaming | kafka | files)
      # DuckDB as the batch reference (read_json and read_parquet for kafka and files) and
      # Pathway as the streaming one (streaming), from PyPI into .venv.
      [ -x "$AUGUR_ROOT/.venv/bin/python" ] || python3 -m venv "$AUGUR_ROOT/.venv"
      "$AUGUR_ROOT/.venv/bin/python" -c 'import duckdb' 2>/dev/null \
        || "$AUGUR_ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check duckdb
      if [ "$bench" = streaming ]; then
        "$AUGUR_ROOT/.venv/bin/python" -c 'import pathway' 2>/dev/null \
          || "$AUGUR_ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check pathway
      fi
      "${executables[$bench]}"
      ;;
    predict | http)
      install_onnxruntime
      "${executables[$bench]}"
      ;;
    nexmark)
      "${executables[nexmark]}"
      ;;
    *)
      echo "unknown benchmark $bench (point_lookup, streaming, predict, nexmark, kafka, files, http, freshness)" >&2
      exit 2
      ;;
  esac
done
