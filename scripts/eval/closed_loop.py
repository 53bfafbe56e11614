"""The closed loop: retrain the case's model with a debug-train set and measure what it fixed.

For each set (a `dcd debug-set` JSONL: `key`, weak `label`, `suggested_label` when present),
the model is refitted on the case's reference (its training set) plus the set, with the labels
the set hands to training (`suggested_label`, else the weak label), and scored on the held-out
failures and on the clean test set. Beside every set, in the same table:

    nothing   the model as it is (reference only)
    random    the same number of pool items drawn at random, weak labels (mean over seeds)
    oracle    the same number of the pool's failing-slice items, true labels (mean over seeds)

and for each set: its size, precision (share from the failing slice), label accuracy (the
labels it hands to training), gain on held-out failures over random, that gain as a share of
the oracle's, and the change on the clean test set.

The model is logistic regression on pixels (case.json's "model": "pixels"), or on the
backbone's features where pixels cannot learn the task ("features": read from
<case>/features.npy and its .keys.txt, written by `dcd embed`).

Usage: closed_loop.py --case DIR --set NAME=FILE [--set ...] [--seeds N] [--json OUT]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression


class Case:
    def __init__(self, root: Path):
        self.root = root.resolve()
        self.meta = json.loads((root / "case.json").read_text())
        self.model_kind = self.meta.get("model", "pixels")
        self.truth = {}
        with open(root / "truth.csv") as f:
            for row in csv.DictReader(f):
                self.truth[row["path"]] = row
        self.pool_paths = list(self.truth)
        self._features = None
        if self.model_kind == "features":
            x = np.load(root / "features.npy")
            keys = (root / "features.keys.txt").read_text().splitlines()
            self._features = {self.rel(k): i for i, k in enumerate(keys)}
            self._feature_rows = x

    def rel(self, key: str) -> str:
        """A pool key (the absolute path dcd stored) as a path relative to the case."""
        p = Path(key)
        try:
            return p.resolve().relative_to(self.root).as_posix()
        except ValueError:
            raise SystemExit(f"{key}: not a file of the case at {self.root}")

    def inputs(self, rels: list[str]) -> np.ndarray:
        if self.model_kind == "features":
            missing = [r for r in rels if r not in self._features]
            if missing:
                raise SystemExit(f"{missing[0]}: no features (rerun dcd embed over the case)")
            return self._feature_rows[[self._features[r] for r in rels]]
        side = self.meta["pixel_side"]
        out = np.empty((len(rels), side * side), dtype=np.float32)
        for i, r in enumerate(rels):
            img = Image.open(self.root / r).convert("L")
            if img.size != (side, side):
                img = img.resize((side, side), Image.BILINEAR)
            out[i] = np.asarray(img, dtype=np.float32).ravel() / 255
        return out

    def folder(self, name: str) -> tuple[list[str], list[str]]:
        rels, labels = [], []
        for p in sorted((self.root / name).glob("*/*.png")):
            rels.append(p.relative_to(self.root).as_posix())
            labels.append(p.parent.name)
        return rels, labels


def fit(x: np.ndarray, y: list[str]) -> LogisticRegression:
    return LogisticRegression(max_iter=500, C=0.05).fit(x, y)


def read_set(case: Case, path: Path) -> tuple[list[str], list[str]]:
    rels, labels = [], []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            item = json.loads(line)
            rels.append(case.rel(item["key"]))
            labels.append(item.get("suggested_label") or item["label"])
    return rels, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", type=Path, required=True)
    ap.add_argument("--set", action="append", default=[], help="NAME=FILE.jsonl")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    case = Case(args.case)

    ref_rels, ref_labels = case.folder("reference")
    held_rels, held_labels = case.folder("heldout")
    test_rels, test_labels = case.folder("test")
    x_ref, x_held, x_test = case.inputs(ref_rels), case.inputs(held_rels), case.inputs(test_rels)
    y_held, y_test = np.asarray(held_labels), np.asarray(test_labels)
    # Cases with several failing slices say which slice each held-out failure is from.
    slice_of = {}
    if (case.root / "slices.csv").exists():
        with open(case.root / "slices.csv") as f:
            slice_of = {row["path"]: row["slice"] for row in csv.DictReader(f)}
    held_slices = np.asarray([slice_of.get(r, "") for r in held_rels])
    slice_names = sorted(set(slice_of.values()))

    def score(rels: list[str], labels: list[str]) -> tuple[float, float, dict]:
        if rels:
            x = np.vstack([x_ref, case.inputs(rels)])
            y = ref_labels + labels
        else:
            x, y = x_ref, ref_labels
        m = fit(x, y)
        right = m.predict(x_held) == y_held
        by_slice = {name: float(np.mean(right[held_slices == name])) for name in slice_names}
        return float(np.mean(right)), float(np.mean(m.predict(x_test) == y_test)), by_slice

    failing = [p for p in case.pool_paths if case.truth[p]["domain"] == "failure"]
    nothing_held, nothing_test, nothing_slices = score([], [])
    rows = []
    for spec in args.set:
        name, _, file = spec.partition("=")
        rels, labels = read_set(case, Path(file))
        n = len(rels)
        if n == 0:
            rows.append({"set": name, "size": 0})
            continue
        precision = float(np.mean([case.truth[r]["domain"] == "failure" for r in rels]))
        label_acc = float(np.mean([case.truth[r]["true_label"] == l for r, l in zip(rels, labels)]))
        held, test, held_slices_set = score(rels, labels)
        rand, orac, rand_slices, orac_slices = [], [], [], []
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            pick = [case.pool_paths[i] for i in rng.choice(len(case.pool_paths), n, replace=False)]
            h, t, sl = score(pick, [case.truth[p]["weak_label"] for p in pick])
            rand.append((h, t))
            rand_slices.append(sl)
            pick = [failing[i] for i in rng.choice(len(failing), min(n, len(failing)), replace=False)]
            h, t, sl = score(pick, [case.truth[p]["true_label"] for p in pick])
            orac.append((h, t))
            orac_slices.append(sl)
        rand_held, rand_test = np.mean(rand, axis=0)
        orac_held, orac_test = np.mean(orac, axis=0)
        mean_of = lambda runs: {k: float(np.mean([r[k] for r in runs])) for k in slice_names}  # noqa: E731
        gain, oracle_gain = held - rand_held, orac_held - rand_held
        rows.append({
            "set": name,
            "size": n,
            "precision": precision,
            "label_accuracy": label_acc,
            "heldout": held,
            "test": test,
            "random_heldout": float(rand_held),
            "random_test": float(rand_test),
            "oracle_heldout": float(orac_held),
            "oracle_test": float(orac_test),
            "gain_vs_random": float(gain),
            "oracle_gain_vs_random": float(oracle_gain),
            "share_of_oracle_gain": float(gain / oracle_gain) if oracle_gain > 0 else None,
            "test_change_vs_nothing": test - nothing_test,
            **({"slices": {
                "of_set": dict(Counter(case.truth[r].get("slice", "") or case.truth[r]["domain"] for r in rels)),
                "heldout": held_slices_set,
                "random_heldout": mean_of(rand_slices),
                "oracle_heldout": mean_of(orac_slices),
            }} if slice_names else {}),
        })
    out = {"case": case.meta["name"], "model": case.model_kind,
           "nothing": {"heldout": nothing_held, "test": nothing_test,
                       **({"heldout_slices": nothing_slices} if slice_names else {})},
           "sets": rows}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{case.meta['name']} (model: {case.model_kind}; nothing added: held-out {nothing_held:.3f}, test {nothing_test:.3f})")
    print(f"{'set':<24}{'size':>6}{'prec':>7}{'labels':>8}{'held':>7}{'random':>8}{'oracle':>8}{'gain':>7}{'/oracle':>9}{'test Δ':>8}")
    for r in rows:
        if r["size"] == 0:
            print(f"{r['set']:<24}{0:>6}")
            continue
        share = r["share_of_oracle_gain"]
        print(f"{r['set']:<24}{r['size']:>6}{r['precision']:>7.3f}{r['label_accuracy']:>8.3f}{r['heldout']:>7.3f}"
              f"{r['random_heldout']:>8.3f}{r['oracle_heldout']:>8.3f}{r['gain_vs_random'] * 100:>+7.2f}"
              f"{(share if share is not None else float('nan')):>9.2f}{r['test_change_vs_nothing'] * 100:>+8.2f}")
        if "slices" in r:
            sl = r["slices"]
            print("    per slice: " + "; ".join(
                f"{k}: {sl['of_set'].get(k, 0)} items, held {sl['heldout'][k]:.3f} "
                f"(random {sl['random_heldout'][k]:.3f}, oracle {sl['oracle_heldout'][k]:.3f}, "
                f"nothing {nothing_slices[k]:.3f})" for k in slice_names))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
