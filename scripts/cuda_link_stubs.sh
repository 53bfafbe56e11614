#!/usr/bin/env bash
# Builds a `--features cuda` dcd (and its GPU test) on a machine without CUDA's libraries, to be
# run on a GPU machine that has them. candle links libcuda, libnvrtc, libcurand, libcublas and
# libcublasLt at build time; this writes stand-in shared objects with the same sonames and the
# function names cudarc declares (empty bodies, never called: the loader binds the real
# libraries by soname on the GPU machine), then runs the release build against them. On the GPU
# machine, put the directories holding libcuda.so.1, libcublas.so.13, libcublasLt.so.13,
# libcurand.so.10, libnvrtc.so.13 and libcudart.so.13 on LD_LIBRARY_PATH.
#
#   scripts/cuda_link_stubs.sh            # -> target/release/dcd, target/gpu-test (the test binary)
#
# Needs nvcc from scripts/check_cuda.sh's venv and a C compiler.
set -euo pipefail
cd "$(dirname "$0")/.."
stubs=target/cuda-stubs
mkdir -p "$stubs"
cudarc=$(cargo metadata --format-version 1 --locked --features cuda 2>/dev/null |
  python3 -c 'import json,sys,os; m=json.load(sys.stdin); print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"]=="cudarc"))')

# stub NAME SONAME PREFIX-REGEX SYS-MODULE
stub() {
  local c="$stubs/$1.c"
  grep -ohE "fn $3[A-Za-z0-9_]*" "$cudarc/src/$4/sys/mod.rs" | sed 's/^fn //' | sort -u |
    sed 's/.*/void &(void) {}/' >"$c"
  cc -shared -fPIC -o "$stubs/lib$1.so" -Wl,-soname,"$2" "$c"
}
stub cuda libcuda.so.1 'cu[A-Z]' driver
stub nvrtc libnvrtc.so.13 nvrtc nvrtc
stub curand libcurand.so.10 curand curand
stub cublas libcublas.so.13 cublas cublas
stub cublasLt libcublasLt.so.13 cublasLt cublaslt

venv=target/cuda-venv
[ -f "$venv/bin/nvcc-ok" ] || { echo "run scripts/check_cuda.sh first (it installs nvcc)"; exit 1; }
cuda_root=$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')
export CUDA_ROOT="$cuda_root" CUDA_PATH="$cuda_root" PATH="$cuda_root/bin:$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
# candle-kernels also links the CUDA runtime, which the nvcc venv has for real.
ln -sf "$cuda_root/lib/libcudart.so.13" "$stubs/libcudart.so"
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$PWD/$stubs"
cargo build --release --locked --features cuda --bin dcd
test_bin=$(cargo test --release --locked --features cuda --test gpu --no-run --message-format=json |
  python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]=="gpu": print(m["executable"])' | tail -1)
cp "$test_bin" target/gpu-test
echo "built target/release/dcd and target/gpu-test"
