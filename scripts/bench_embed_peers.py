#!/usr/bin/env python3
"""Backbone forward-pass throughput: dcd vs PyTorch eager and onnxruntime (CPU), same machine,
same thread count, same batch, random weights, in one run; prints images/s and ratios.

  python3 -m venv .venv-torch && .venv-torch/bin/pip install -r scripts/requirements-torch.txt
  cargo build --release
  .venv-torch/bin/python scripts/bench_embed_peers.py --threads 2 --batch 1,8,32 [--rounds 3] [--json out.json]

dcd is timed in every precision of --precisions (f32, and bf16 where the CPU has AVX512-BF16;
a precision dcd refuses here is reported as refused); the peers run f32. Ratios are against the
peers' f32 rate. The CPU model and dcd's cores_busy are printed with the rows.

Models: ResNet-50 (torchvision), DINO ViT-S/16 (transformers ViTModel, facebook/dino-vits16
config), DINOv2-S/14 (transformers Dinov2Model, facebook/dinov2-small config, 224 input).
Each is exported to ONNX (opset 17) from the same PyTorch module that is timed eagerly.
Also decode + preprocess of one 500x375 JPEG (the chelsea photo resized), one core:
PIL + torchvision's transforms vs dcd.
"""
import argparse
import json
import os
import statistics
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


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            fields = dict(l.split(":", 1) for l in f.read().split("\n\n")[0].splitlines() if ":" in l)
        return " ".join(f"{k.strip()} {fields[k].strip()}" if k.strip() != "model name" else fields[k].strip()
                        for k in fields if k.strip() in ("model name", "cpu family", "model"))
    except OSError:
        return "unknown CPU"


def dcd_rate(args, name, batch, precision):
    """images/s and cores_busy of dcd's forward pass, or the reason dcd refused."""
    run = subprocess.run([args.dcd, "--threads", str(args.threads), "bench", "embed", "--backbone", name,
                          "--random-weights", "--precision", precision, "--batch", str(batch),
                          "--seconds", str(args.seconds), "--images", "50", "--json"],
                         capture_output=True, text=True)
    if run.returncode != 0:
        return None, None, run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "failed"
    fwd = json.loads(run.stdout)["forward"][0]
    return fwd["images_per_s"], fwd.get("cores_busy"), None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", default="8", help="comma-separated batch sizes, all timed in one run")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds each engine is timed per round")
    ap.add_argument("--rounds", type=int, default=1,
                    help="times each engine is timed, alternating; medians are reported (3 on a shared machine)")
    ap.add_argument("--models", default="resnet50,dino-vits16,dinov2-vits14")
    ap.add_argument("--precisions", default="f32,bf16", help="dcd precisions to time")
    ap.add_argument("--dcd", default=os.path.join(ROOT, "target", "release", "dcd"))
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime as ort
    batches = [int(b) for b in args.batch.split(",")]
    print(f"CPU: {cpu_model()}; {args.threads} threads; onnxruntime {ort.__version__}, torch {torch.__version__}",
          flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(preprocess_row(args, tmp))
    for name in args.models.split(","):
        model = build(name).eval()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "m.onnx")
            with torch.no_grad():
                torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), path, opset_version=17, dynamo=False,
                                  input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            for batch in batches:
                x = torch.randn(batch, 3, 224, 224)
                xn = x.numpy()
                # Rounds alternate the engines, so a slow spell of a shared machine falls on all
                # of them; each engine's median is reported, with its range.
                rates = {"torch": [], "onnxruntime": []}
                dcd_runs = {p: [] for p in args.precisions.split(",")}
                for _ in range(args.rounds):
                    with torch.inference_mode():
                        calls, wall = timed(lambda: model(x), args.seconds)
                    rates["torch"].append(batch * calls / wall)
                    calls, wall = timed(lambda: sess.run(None, {"x": xn}), args.seconds)
                    rates["onnxruntime"].append(batch * calls / wall)
                    for precision in dcd_runs:
                        dcd_runs[precision].append(dcd_rate(args, name, batch, precision))
                torch_ips = statistics.median(rates["torch"])
                ort_ips = statistics.median(rates["onnxruntime"])
                for precision, runs in dcd_runs.items():
                    row = dict(model=name, batch=batch, threads=args.threads, precision=precision,
                               rounds=args.rounds, torch=torch_ips, onnxruntime=ort_ips,
                               torch_range=[min(rates["torch"]), max(rates["torch"])],
                               onnxruntime_range=[min(rates["onnxruntime"]), max(rates["onnxruntime"])])
                    refused = next((r for _, _, r in runs if r), None)
                    if refused:
                        row.update(dcd=None, refused=refused)
                        print(f"{name:14s} b{batch:<3d} dcd {precision}: refused ({refused})", flush=True)
                        rows.append(row)
                        continue
                    dcd_all = [ips for ips, _, _ in runs]
                    dcd_ips = statistics.median(dcd_all)
                    busy = statistics.median(b for _, b, _ in runs)
                    row.update(dcd=dcd_ips, dcd_range=[min(dcd_all), max(dcd_all)], cores_busy=busy,
                               dcd_over_ort=dcd_ips / ort_ips, dcd_over_torch=dcd_ips / torch_ips)
                    spread = "" if args.rounds == 1 else (
                        f"  [ranges dcd {min(dcd_all):.1f}-{max(dcd_all):.1f}"
                        f" torch {row['torch_range'][0]:.1f}-{row['torch_range'][1]:.1f}"
                        f" ort {row['onnxruntime_range'][0]:.1f}-{row['onnxruntime_range'][1]:.1f}]")
                    print(f"{name:14s} b{batch:<3d} dcd {precision:4s} {dcd_ips:6.2f} (cores {busy:.2f})"
                          f"  torch {torch_ips:6.2f}  onnxruntime {ort_ips:6.2f} images/s"
                          f"  dcd/ort {row['dcd_over_ort']:.2f}  dcd/torch {row['dcd_over_torch']:.2f}{spread}",
                          flush=True)
                    rows.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(cpu=cpu_model(), threads=args.threads, rows=rows), f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
