#!/usr/bin/env bash
# Proves the `cuda` feature builds on a machine without a GPU (CI runs this on every submission):
# clippy over the whole cuda build (candle's CUDA kernels and dcd's kernels/*.cu -> PTX), then
# the cuda build's GPU and CLI tests, linked and run. Without a device the GPU tests print one
# line saying why they skipped; the CLI tests check that a cuda dcd starts where no driver is
# installed and answers --device cuda with the CPU path named. The build is the one
# scripts/cuda_env.sh sets up (nvcc from PyPI, cudarc loading CUDA at run time).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cuda_env.sh
echo "== cargo clippy --all-targets --features cuda -D warnings (nvcc $(nvcc --version | tail -1))"
cuda_cargo clippy --all-targets -- -D warnings
# What the driver does at the first search, done here: dcd's PTX (the flags build.rs uses, plus
# warnings as errors) assembled by ptxas for the capability built for. A kernel ptxas refuses
# (registers or shared memory past the chip's limits) fails here instead of on a GPU; the
# registers and spills of each kernel are printed for the record.
echo "== ptxas -arch=sm_$CUDA_COMPUTE_CAP over kernels/*.cu"
ptx_dir=$(mktemp -d)
trap 'rm -rf "$ptx_dir"' EXIT
for src in kernels/*.cu; do
  stem=$(basename "$src" .cu)
  nvcc --ptx -O3 -std=c++17 -arch="compute_$CUDA_COMPUTE_CAP" --Werror all-warnings \
    -o "$ptx_dir/$stem.ptx" "$src"
  ptxas -arch="sm_$CUDA_COMPUTE_CAP" -v -o "$ptx_dir/$stem.cubin" "$ptx_dir/$stem.ptx" 2>&1 |
    awk -v file="$stem" '/Compiling entry function/ { name = $7; gsub(/\047/, "", name) }
      /spill stores/ { spill = $5 }
      /Used [0-9]+ registers/ { printf "  %-8s %-18s %3d registers, %d bytes spilled\n", file, name, $5, spill }
      !/^ptxas info|^    [0-9]+ bytes stack/ { print }'
done
echo "== cargo test --features cuda --test gpu --test cli"
cuda_cargo test --test gpu --test cli
