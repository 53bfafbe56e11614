#!/usr/bin/env python3
"""Backbone forward-pass throughput: dcd vs PyTorch eager and onnxruntime (CPU), same machine,
same thread count, same batch, random weights, in one run; prints images/s and ratios.

  python3 -m venv .venv-torch && .venv-torch/bin/pip install -r scripts/requirements-torch.txt
  cargo build --release
  .venv-torch/bin/python scripts/bench_embed_peers.py --threads 2 --batch 8 [--json out.json]

Models: ResNet-50 (torchvision), DINO ViT-S/16 (transformers ViTModel, facebook/dino-vits16
config), DINOv2-S/14 (transformers Dinov2Model, facebook/dinov2-small config, 224 input).
Each is exported to ONNX (opset 17) from the same PyTorch module that is timed eagerly.
Also decode + preprocess of one 500x375 JPEG (the chelsea photo resized), one core:
PIL + torchvision's transforms vs dcd.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def build(name):
    if name == "resnet50":
        import torchvision
        m = torchvision.models.resnet50()
        m.fc = torch.nn.Identity()
        return m
    from transformers import Dinov2Config, Dinov2Model, ViTConfig, ViTModel
    if name == "dino-vits16":
        cfg = ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                        patch_size=16, image_size=224, layer_norm_eps=1e-6)
        inner = ViTModel(cfg, add_pooling_layer=False)
    else:
        cfg = Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, patch_size=14,
                           image_size=224)
        inner = Dinov2Model(cfg)
    inner.config.attn_implementation = "eager"

    class Cls(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(pixel_values=x).last_hidden_state[:, 0]

    return Cls()


def timed(fn, seconds):
    fn()
    calls, t0 = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - t0 < seconds:
        fn()
        calls += 1
    return calls, time.perf_counter() - t0


def preprocess_row(args, tmp):
    """Single-core decode+preprocess of a 500x375 photo JPEG: PIL+torchvision vs dcd."""
    from PIL import Image
    import torchvision.transforms as T
    photo = Image.open(os.path.join(ROOT, "tests", "fixtures", "backbones", "chelsea.jpg")).resize((500, 375))
    path = os.path.join(tmp, "photo500x375.jpg")
    photo.save(path, quality=90)
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    torch.set_num_threads(1)
    calls, wall = timed(lambda: tf(Image.open(path).convert("RGB")), 3.0)
    torch.set_num_threads(args.threads)
    pil = calls / wall
    out = subprocess.run([args.dcd, "--threads", "1", "bench", "embed", "--backbone", "resnet18", "--random-weights",
                          "--batch", "1", "--seconds", "0.1", "--image", path, "--images", "1000", "--json"],
                         check=True, capture_output=True, text=True).stdout
    dcd = json.loads(out)["preprocess"]["per_core_images_per_s"]
    print(f"{'preprocess':14s} dcd {dcd:6.0f}  PIL+torchvision {pil:6.0f} images/s per core  dcd/PIL {dcd / pil:.2f}",
          flush=True)
    return dict(model="decode+preprocess 500x375 JPEG", threads=1, dcd=dcd, pil_torchvision=pil, dcd_over_pil=dcd / pil)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--models", default="resnet50,dino-vits16,dinov2-vits14")
    ap.add_argument("--dcd", default=os.path.join(ROOT, "target", "release", "dcd"))
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime as ort
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(preprocess_row(args, tmp))
    for name in args.models.split(","):
        model = build(name).eval()
        x = torch.randn(args.batch, 3, 224, 224)
        with torch.inference_mode():
            calls, wall = timed(lambda: model(x), args.seconds)
        torch_ips = args.batch * calls / wall
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "m.onnx")
            with torch.no_grad():
                torch.onnx.export(model, (x,), path, opset_version=17, dynamo=False,
                                  input_names=["x"], output_names=["y"])
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            xn = x.numpy()
            calls, wall = timed(lambda: sess.run(None, {"x": xn}), args.seconds)
            ort_ips = args.batch * calls / wall
        out = subprocess.run([args.dcd, "--threads", str(args.threads), "bench", "embed", "--backbone", name,
                              "--random-weights", "--batch", str(args.batch), "--seconds", str(args.seconds),
                              "--images", "50", "--json"], check=True, capture_output=True, text=True).stdout
        dcd_ips = json.loads(out)["forward"][0]["images_per_s"]
        row = dict(model=name, batch=args.batch, threads=args.threads, dcd=dcd_ips, torch=torch_ips,
                   onnxruntime=ort_ips, dcd_over_ort=dcd_ips / ort_ips, dcd_over_torch=dcd_ips / torch_ips)
        rows.append(row)
        print(f"{name:14s} dcd {dcd_ips:6.2f}  torch {torch_ips:6.2f}  onnxruntime {ort_ips:6.2f} images/s"
              f"  dcd/ort {row['dcd_over_ort']:.2f}  dcd/torch {row['dcd_over_torch']:.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
