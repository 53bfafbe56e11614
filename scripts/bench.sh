#!/usr/bin/env bash
# dcd against faiss-cpu and hnswlib in one run: makes a Python venv (.venv), builds dcd in
# release mode, generates a clustered dataset, runs `bench_peers.py compare` and the plot.
#   scripts/bench.sh [N] [DIM] [THREADS]      e.g. scripts/bench.sh 100000 384 1,2
# Time it on an idle machine: anything running beside it skews the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100000}"; dim="${2:-384}"; threads="${3:-1,2}"

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
.venv/bin/pip install -q -r scripts/requirements-bench.txt
cargo build --release --locked

out="bench-out/c${n}x${dim}"
[ -f "$out/gt.ivecs" ] || .venv/bin/python scripts/bench_peers.py gen --out "$out" --n "$n" --dim "$dim" --queries 1000
.venv/bin/python scripts/bench_peers.py compare --data "$out" --dcd target/release/dcd \
  --threads "$threads" --out "$out/results.jsonl" | tee "$out/results.txt"
.venv/bin/python scripts/bench_peers.py plot --results "$out/results.jsonl" --out "$out/recall_qps.png"
