#!/usr/bin/env bash
# The main job: build dcd and serve its gRPC API on 127.0.0.1:50051 and the review page on
# http://127.0.0.1:8080/ (DCD_HTTP_ADDR) over ./dcd-data, letting clients start ingestion jobs
# on folders below the current directory. Extra arguments go to
# `dcd serve` (e.g. --allow-root /data --api-key KEY --metrics-addr 127.0.0.1:9100).
# Stop it with Ctrl-C: running requests finish, ingestion jobs resume at the next start.
set -euo pipefail
cd "$(dirname "$0")/.."
export DCD_DATA_DIR="${DCD_DATA_DIR:-./dcd-data}"
export DCD_HTTP_ADDR="${DCD_HTTP_ADDR:-127.0.0.1:8080}"
cargo build --release --locked
exec target/release/dcd serve --allow-root "${DCD_ALLOW_ROOT:-$PWD}" "$@"
