#!/usr/bin/env bash
# Builds Augur (release) and starts it. Arguments are passed to `augur`
# (defaults: --data-dir ./augur-data --listen 127.0.0.1:5440).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$AUGUR_ROOT"
install_onnxruntime
cargo build --release --bin augur
cache_rocksdb
exec ./target/release/augur "$@"
