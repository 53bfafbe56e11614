#!/usr/bin/env bash
# Builds the `--features cuda` dcd and its GPU test binary for a GPU machine, on any machine
# (no GPU or CUDA toolkit needed here; see scripts/cuda_env.sh):
#
#   scripts/cuda_build.sh        # -> target/release/dcd, target/gpu-test, target/gpu-carry/*.gz
#
# The binaries need no CUDA library to start. To use a GPU they open libcuda.so.1 (the
# driver's), libcublas.so.13, libcublasLt.so.13 and libcurand.so.10 (CUDA 13; e.g. the PyPI
# wheels nvidia-cublas and nvidia-curand, whose lib directories go on LD_LIBRARY_PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cuda_env.sh
cuda_cargo build --release --bin dcd
test_bin=$(cuda_cargo test --release --test gpu --no-run --message-format=json |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "gpu":
        print(m["executable"])' | tail -1)
cp "$test_bin" target/gpu-test
# For a GPU machine reached through a size-limited copy (e.g. a 64 MiB lease): the two binaries
# are ~260 MB each with debug info, ~60 MB stripped, ~18 MB each gzipped.
mkdir -p target/gpu-carry
for bin in target/release/dcd target/gpu-test; do
  strip -o "target/gpu-carry/$(basename "$bin")" "$bin"
  gzip -f "target/gpu-carry/$(basename "$bin")"
done
echo "built target/release/dcd and target/gpu-test; stripped and gzipped copies in target/gpu-carry:"
ls -l target/gpu-carry
