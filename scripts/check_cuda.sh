#!/usr/bin/env bash
# Proves the `cuda` feature compiles on a machine without a GPU: installs nvcc from PyPI into
# target/cuda-venv (pinned to CUDA 13.0, the oldest 13.x, so the PTX it writes loads on any
# CUDA 13 driver) and runs clippy with --features cuda, which builds candle's CUDA kernels and
# dcd's (kernels/*.cu -> PTX). check and clippy do not link, so no libcuda is needed here.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/cuda-venv
if [ ! -f "$venv/bin/nvcc-ok" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-runtime==13.0.88 nvidia-cuda-cccl==13.0.85
  touch "$venv/bin/nvcc-ok"
fi
cuda_root=$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')
export CUDA_ROOT="$cuda_root" CUDA_PATH="$cuda_root" PATH="$cuda_root/bin:$PATH"
# sm_90 (H100/H200): candle's kernels need a target without nvidia-smi; dcd's PTX is
# compute_90, which newer GPUs JIT-compile.
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
echo "== cargo clippy --all-targets --features cuda -D warnings (nvcc $(nvcc --version | tail -1))"
cargo clippy --all-targets --locked --features cuda -- -D warnings
