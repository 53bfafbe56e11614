#!/usr/bin/env bash
# Where the fixed cost of a one-query GPU search goes (issue 5: 1M x 384 f16 at Q = 1 reached
# only 0.54 of the bandwidth bound on an H100, ~0.2 ms a call above it), in about a minute on
# a GPU machine, after scripts/gpu_session.sh if the lease has time left (same binaries, same
# set-up: scripts/gpu_machine.sh):
#
#   scripts/gpu_overhead.sh OUT_DIR           # at most 64 s of step limits
#
# The fused plan at Q = 1 on 1M x 384 f16 and on 1000 x 384 f16 (no scan to speak of: the
# floor of a call), each timed stage by stage (--gpu-stages), with cudarc's per-buffer events
# (its default) and without them (--gpu-buffer-events false), in separate runs because the
# setting is the context's.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_machine.sh "${1:?usage: scripts/gpu_overhead.sh OUT_DIR}"

for rows in 1000000 1000; do
  for events in true false; do
    step "q1-${rows}-events-$events" 16 "$dcd" bench exact --device cuda --random "${rows}x384" \
      --random-queries 64 --batch 1 --k 100 --dtype f16 --gpu-plan fused --gpu-stages 50 \
      --gpu-buffer-events "$events"
  done
done

echo "== summary"
printf '%s\n' "${summary[@]}" | tee "$out/summary.txt"
