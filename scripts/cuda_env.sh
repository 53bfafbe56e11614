# Sourced by scripts/check_cuda.sh and scripts/cuda_build.sh: everything a `--features cuda`
# build needs on a machine without a GPU or a CUDA toolkit, and `cuda_cargo`, which runs cargo
# on that build.
#
# - nvcc (CUDA 13.0, the oldest 13.x, so the PTX it writes loads on any CUDA 13 driver) from
#   PyPI into target/cuda-venv, with the static CUDA runtime that build.rs links.
# - candle-core 0.11.1 asks cudarc to link libcuda, libcublas and libcurand at build time
#   (cudarc's `dynamic-linking`), so such a binary does not start at all where no driver is
#   installed: the loader refuses it before main. `cuda_cargo` builds from target/cuda-ws, a
#   workspace whose sources are links to this one and whose manifest adds a [patch] with a
#   copy of candle-core that asks for `dynamic-loading` instead (the only change; the copy is
#   made from the registry's own candle-core-0.11.1). cudarc then opens the libraries on first
#   use, and dcd checks for them first, so a machine without a driver gets dcd's error naming
#   the CPU path (src/gpu/cuda/libraries.rs). Nothing to link against, so no CUDA libraries here.
# - sm_90 (H100/H200) for candle's kernels, which need a target when there is no nvidia-smi;
#   dcd's own kernels are PTX for compute_90, which newer GPUs JIT-compile.

cuda_env_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cuda_env_venv="$cuda_env_repo/target/cuda-venv"
if [ ! -f "$cuda_env_venv/bin/nvcc-ok" ]; then
  python3 -m venv "$cuda_env_venv"
  "$cuda_env_venv/bin/pip" install --quiet --disable-pip-version-check \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-runtime==13.0.88 nvidia-cuda-cccl==13.0.85
  touch "$cuda_env_venv/bin/nvcc-ok"
fi
cuda_root=$("$cuda_env_venv/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')
export CUDA_ROOT="$cuda_root" CUDA_PATH="$cuda_root" PATH="$cuda_root/bin:$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"

# The workspace: fetch what the lock names (so the build below can run offline and cannot
# move a version), then copy candle-core out of the registry and patch its cudarc features.
(cd "$cuda_env_repo" && cargo fetch --locked --quiet)
cuda_ws="$cuda_env_repo/target/cuda-ws"
cuda_env_candle=$(cd "$cuda_env_repo" && cargo metadata --format-version 1 --locked --offline --features cuda |
  python3 -c 'import json, os, sys
m = json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"] == "candle-core"))')
mkdir -p "$cuda_ws"
# The marker names the copy's source, so a new candle version in the lock makes a new copy.
if [ "$(cat "$cuda_ws/candle-core/.dcd-patched" 2>/dev/null)" != "$cuda_env_candle" ]; then
  rm -rf "$cuda_ws/candle-core"
  cp -r "$cuda_env_candle" "$cuda_ws/candle-core"
  grep -q '"dynamic-linking",' "$cuda_ws/candle-core/Cargo.toml" || {
    echo "cuda_env.sh: $cuda_env_candle/Cargo.toml no longer asks cudarc for dynamic-linking; revisit this patch" >&2
    return 1
  }
  sed -i 's/"dynamic-linking",/"dynamic-loading",/' "$cuda_ws/candle-core/Cargo.toml"
  echo "$cuda_env_candle" >"$cuda_ws/candle-core/.dcd-patched"
fi
# Made only when missing or pointing elsewhere: cargo reads a rerun-if-changed path's own
# mtime, so a link made anew at every sourcing re-ran build.rs (protox, nvcc) and rebuilt dcd.
for entry in build.rs src kernels proto tests benches; do
  [ "$(readlink "$cuda_ws/$entry")" = "$cuda_env_repo/$entry" ] ||
    ln -sfn "$cuda_env_repo/$entry" "$cuda_ws/$entry"
done
{
  cat "$cuda_env_repo/Cargo.toml"
  printf '\n# Added by scripts/cuda_env.sh: candle-core with cudarc loading CUDA at run time.\n'
  printf '[workspace]\n\n[patch.crates-io]\ncandle-core = { path = "candle-core" }\n'
} >"$cuda_ws/Cargo.toml.new"
# Rewritten only when it changed, so cargo's fingerprints survive repeated runs.
cmp -s "$cuda_ws/Cargo.toml.new" "$cuda_ws/Cargo.toml" || mv "$cuda_ws/Cargo.toml.new" "$cuda_ws/Cargo.toml"
rm -f "$cuda_ws/Cargo.toml.new"
cmp -s "$cuda_env_repo/Cargo.lock" "$cuda_ws/Cargo.lock.base" || {
  cp "$cuda_env_repo/Cargo.lock" "$cuda_ws/Cargo.lock"
  cp "$cuda_env_repo/Cargo.lock" "$cuda_ws/Cargo.lock.base"
}

# cuda_cargo SUBCOMMAND ARGS...: cargo SUBCOMMAND on the cuda build, artifacts beside the
# CPU build's (CARGO_TARGET_DIR or target/), so the dependencies they share build once.
cuda_cargo() {
  local sub=$1
  shift
  cargo "$sub" --manifest-path "$cuda_ws/Cargo.toml" --target-dir "${CARGO_TARGET_DIR:-$cuda_env_repo/target}" \
    --offline --features cuda "$@"
}
