#!/usr/bin/env bash
# Everything the GPU path owes in one short run on a GPU machine (H100/H200), for a lease of
# minutes: build here first with scripts/cuda_build.sh (no GPU needed), carry the two binaries
# it writes (or, where the copy is size-limited, its target/gpu-carry folder: ~37 MB), and run
# from the repository root there:
#
#   scripts/gpu_session.sh OUT_DIR            # at most ~9.6 min (575 s of step limits)
#
# 1. the GPU tests (target/gpu-test: every plan against the CPU, appends, bad input);
# 2. the mma plan against the gemm plan at Q = 64, 256, 1024: f16 pools of 1M x 384, 1M x 768
#    and 10M x 384, and an f32 pool (3xTF32) of 1M x 384 (dcd bench exact); on the first pool
#    also Q = 1 with dcd's own choice, and every setting timed stage by stage (--gpu-stages:
#    where the fixed cost of a Q = 1 call and the time of the Q >= 256 plans go); each pool
#    first times fused, gemm and mma at Q = 1, 2, 4, ... 1024 (--gpu-plans measure: the
#    crossovers on this card, and the choice `auto` then follows);
# 3. the wide plan beyond shared memory, k = 16384 (dcd bench exact), and the f32 pool of
#    1M x 384 answered exactly through its f16 copy (--gpu-certify; the grid's f32 rows are the
#    same pool, held in f32);
# 4. the issue's grid against the roofline and PyTorch (scripts/bench_gpu.py), 1M rows first so
#    that a step cut short by its limit still leaves whole rows of the table.
# Logs and the JSON lines go to OUT_DIR; a summary of what passed, failed or timed out is
# printed last. A step that fails does not stop the later ones. With a minute of the lease
# left, scripts/gpu_overhead.sh places the fixed cost of a one-query search.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_machine.sh "${1:?usage: scripts/gpu_session.sh OUT_DIR}"

step gpu-tests 110 "$tests" --nocapture --test-threads 1
step mma-f16-1000000x384 46 "$dcd" bench exact --device cuda --random 1000000x384 \
  --random-queries 1024 --batch 1,64,256,1024 --k 100 --dtype f16 --gpu-plan auto,gemm,mma \
  --gpu-stages 20 --gpu-plans measure --json
for run in f16:1000000x768 f16:10000000x384 f32:1000000x384; do
  step "mma-${run/:/-}" 40 "$dcd" bench exact --device cuda --random "${run#*:}" \
    --random-queries 1024 --batch 64,256,1024 --k 100 --dtype "${run%%:*}" --gpu-plan gemm,mma \
    --gpu-plans measure --json
done
step wide-k16384 32 "$dcd" bench exact --device cuda --random 1000000x384 --random-queries 64 \
  --batch 1,64 --k 16384 --dtype f16 --gpu-plan wide --json
step certified-1000000x384 32 "$dcd" bench exact --device cuda --random 1000000x384 \
  --random-queries 1024 --batch 1,64,1024 --k 100 --dtype f16 --gpu-certify --json
step grid-1m 115 python3 scripts/bench_gpu.py --dcd "$dcd" --n 1000000 --dim 384,768 \
  --q 1,64,256,1024 --k 100 --out "$out/grid-1m.jsonl"
step grid-10m 120 python3 scripts/bench_gpu.py --dcd "$dcd" --n 10000000 --dim 384,768 \
  --q 1,64,1024 --k 100 --out "$out/grid-10m.jsonl"

echo "== summary"
printf '%s\n' "${summary[@]}" | tee "$out/summary.txt"
