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
echo "== cargo test --features cuda --test gpu --test cli"
cuda_cargo test --test gpu --test cli
