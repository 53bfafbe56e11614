#!/usr/bin/env bash
# A vector-engine demo: build dcd, make a 50k x 384 clustered "embedding" file, put it in a
# pool (durable vectors + SQLite catalog + HNSW index), and search it. Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."
export DCD_DATA_DIR="${DCD_DATA_DIR:-./dcd-data}"

cargo build --release --locked
dcd=target/release/dcd
data=bench-out/quickstart

[ -f "$data/base.fvecs" ] || $dcd bench gen --out "$data" --n 50000 --dim 384 --queries 3
if ! $dcd pool info demo >/dev/null 2>&1; then
  $dcd pool create demo --dim 384
  $dcd vectors import --pool demo --file "$data/base.fvecs"
fi
$dcd pool info demo
echo "--- 5 nearest neighbours of 3 queries (JSON lines)"
$dcd search --pool demo --queries "$data/queries.fvecs" --k 5
echo "--- the same queries, exact"
$dcd search --pool demo --queries "$data/queries.fvecs" --k 5 --exact
