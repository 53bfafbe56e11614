# Sourced by the scripts that run on a GPU machine (gpu_session.sh, gpu_overhead.sh) from the
# repository root, with OUT_DIR as its argument: finds the two cuda binaries (built by
# scripts/cuda_build.sh, or unpacked from their gzipped copies in target/gpu-carry), puts the
# CUDA 13 libraries of the machine's NVIDIA wheels on the loader path, records the card, and
# defines `step NAME LIMIT COMMAND...` (runs COMMAND under a time limit, its output in
# OUT_DIR/NAME.log, and adds a line to `summary`).
out=$1
mkdir -p "$out"
dcd=${DCD_BIN:-target/release/dcd}
tests=${DCD_GPU_TEST:-target/gpu-test}
# The stripped, gzipped copies cuda_build.sh leaves in target/gpu-carry (small enough to carry).
if [ ! -x "$dcd" ] && [ -f target/gpu-carry/dcd.gz ]; then
  mkdir -p /tmp/dcd-gpu
  for bin in dcd gpu-test; do
    gunzip -c "target/gpu-carry/$bin.gz" >"/tmp/dcd-gpu/$bin" && chmod +x "/tmp/dcd-gpu/$bin"
  done
  dcd=/tmp/dcd-gpu/dcd tests=/tmp/dcd-gpu/gpu-test
fi
for bin in "$dcd" "$tests"; do
  [ -x "$bin" ] || { echo "$0: $bin is missing: run scripts/cuda_build.sh and carry it" >&2; exit 2; }
done
# The CUDA 13 libraries dcd opens besides the driver's (cuBLAS, cuRAND): the lib folders of
# the NVIDIA wheels beside the machine's PyTorch, if any.
libs=$(python3 - <<'EOF' 2>/dev/null
import glob, os, site
dirs = set()
for base in site.getsitepackages():
    for d in glob.glob(os.path.join(base, "nvidia", "*", "lib")):
        dirs.add(d)
print(":".join(sorted(dirs)))
EOF
)
export LD_LIBRARY_PATH="${libs:+$libs:}${LD_LIBRARY_PATH:-}"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"

summary=()
step() {
  local name=$1 limit=$2
  shift 2
  local started=$SECONDS
  echo "== $name (limit ${limit}s): $*"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  tail -40 "$out/$name.log"
  local verdict=passed
  case $rc in
    0) ;;
    124) verdict="timed out" ;;
    *) verdict="failed (exit $rc)" ;;
  esac
  summary+=("$name: $verdict in $((SECONDS - started)) s")
}
