#!/usr/bin/env python3
"""Regenerates tests/fixtures/preprocess: small images and the tensors torchvision's evaluation
transform gives for them (Resize(40) -> CenterCrop(32) -> ToTensor -> Normalize(ImageNet)), for
bilinear and bicubic.

torchvision applies these transforms to a PIL image as PIL calls (size rule and crop offsets
from torchvision.transforms.functional), which this script does directly, so it needs only
Pillow and numpy:  .venv/bin/pip install pillow==11.3.0 numpy && .venv/bin/python THIS
"""
import os

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "preprocess")
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
RESIZE, CROP = 40, 32


def photo_like(w, h, seed):
    """Smooth gradients, a few hard-edged shapes and mild noise: what photos stress in resizing."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([
        128 + 100 * np.sin(x / (w / 3.0) + seed),
        128 + 100 * np.cos(y / (h / 4.0)),
        255 * (x + y) / (w + h),
    ], axis=-1)
    for _ in range(4):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(3, min(w, h) / 3)
        img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def torchvision_eval(img, resample):
    """torchvision: Resize(RESIZE) on the shorter side (longer side truncated), CenterCrop
    with int(round(...)) offsets, ToTensor, Normalize."""
    img = img.convert("RGB")
    w, h = img.size
    if w <= h:
        size = (RESIZE, int(RESIZE * h / w))
    else:
        size = (int(RESIZE * w / h), RESIZE)
    img = img.resize(size, resample)
    w, h = img.size
    top, left = int(round((h - CROP) / 2.0)), int(round((w - CROP) / 2.0))
    img = img.crop((left, top, left + CROP, top + CROP))
    x = np.asarray(img, dtype=np.float32) / 255.0
    return ((x - MEAN) / STD).transpose(2, 0, 1).copy()


def main():
    os.makedirs(OUT, exist_ok=True)
    images = {
        "landscape.png": photo_like(97, 61, 1),
        "portrait.png": photo_like(50, 83, 2),
        "grey.png": photo_like(64, 64, 3).convert("L"),
        "rgba.png": photo_like(70, 45, 4).convert("RGBA"),
        "photo.jpg": photo_like(120, 90, 5),
    }
    for name, img in images.items():
        path = os.path.join(OUT, name)
        if name.endswith(".jpg"):
            img.save(path, quality=90)
        else:
            img.save(path)
        decoded = Image.open(path)
        for tag, resample in (("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC)):
            np.save(os.path.join(OUT, f"{name}.{tag}.npy"), torchvision_eval(decoded, resample))
    # A CMYK JPEG of the decoded photo (tests/preprocess.rs compares the two decodes).
    Image.open(os.path.join(OUT, "photo.jpg")).convert("RGB").convert("CMYK").save(
        os.path.join(OUT, "cmyk.jpg"), quality=92)
    print(f"wrote {len(images)} images and their tensors, and cmyk.jpg, to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
