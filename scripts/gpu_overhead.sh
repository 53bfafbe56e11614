#!/usr/bin/env bash
# Where the fixed cost of a one-query GPU search goes (issue 5: 1M x 384 f16 at Q = 1 reached
# only 0.54 of the bandwidth bound on an H100, ~0.2 ms a call above it), in under two minutes on
# a GPU machine, after scripts/gpu_session.sh if the lease has time left (same binaries, same
# set-up: scripts/gpu_machine.sh):
#
#   scripts/gpu_overhead.sh OUT_DIR           # at most 96 s of step limits
#
# The fused plan at Q = 1 on 1M x 384 f16 and on 1000 x 384 f16 (no scan to speak of: the
# floor of a call), each timed stage by stage (--gpu-stages), as CUDA and cudarc leave things
# and with each of two changes to the host's side of a call: no per-buffer events
# (--gpu-buffer-events false) and a memory pool that keeps what buffers free instead of giving
# it back to the driver at every synchronisation (--gpu-pool-keep true). Each in its own run,
# because both settings are the context's; the most telling first, should the lease end.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_machine.sh "${1:?usage: scripts/gpu_overhead.sh OUT_DIR}"

# rows, events, pool-keep
for setting in "1000000 true false" "1000000 true true" "1000000 false false" \
  "1000000 false true" "1000 true false" "1000 false true"; do
  read -r rows events keep <<<"$setting"
  step "q1-${rows}-events-$events-keep-$keep" 16 "$dcd" bench exact --device cuda \
    --random "${rows}x384" --random-queries 64 --batch 1 --k 100 --dtype f16 --gpu-plan fused \
    --gpu-stages 50 --gpu-buffer-events "$events" --gpu-pool-keep "$keep"
done

echo "== summary"
printf '%s\n' "${summary[@]}" | tee "$out/summary.txt"
