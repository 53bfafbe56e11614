"""Two runs of scripts/eval/run.sh side by side: the same cases and recipes built from two
feature sets (e.g. `DCD_PRECISION=f32` and `bf16`), to show whether the debug-train sets
changed. Per case and set: size, precision (share from the failing slice), label accuracy and
the retrained held-out accuracy of each run (random's beside them), and how many items the two
sets share (|A ∩ B| / |A ∪ B|).

Usage: compare_runs.py OUT_A OUT_B [CASE ...]   (each OUT as given to scripts/eval/run.sh)
"""
import json
import sys
from pathlib import Path


def items(path: Path, case: str):
    """The set's pool items, as paths inside the case (the runs' folders differ)."""
    marker = f"/cases/{case}/"
    keys = set()
    for line in path.read_text().splitlines():
        if line.strip():
            key = json.loads(line)["key"]
            keys.add(key.split(marker, 1)[-1])
    return keys


def main(out_a: Path, out_b: Path, cases):
    if not cases:
        cases = sorted(p.stem for p in out_a.glob("*.json") if (out_b / p.name).exists())
    print(f"A = {out_a}, B = {out_b}")
    header = (f"{'case':<16}{'set':<14}{'size A/B':>10}{'prec A/B':>14}{'labels A/B':>14}"
              f"{'held A/B':>14}{'random A/B':>14}{'shared':>8}")
    print(header)
    for case in cases:
        runs = [json.loads((out / f"{case}.json").read_text()) for out in (out_a, out_b)]
        by_name = [{s["set"]: s for s in run["sets"]} for run in runs]
        for name in [s["set"] for s in runs[0]["sets"]]:
            if name not in by_name[1]:
                continue
            a, b = by_name[0][name], by_name[1][name]
            sets = [items(out / "sets" / case / f"{name}.jsonl", case) for out in (out_a, out_b)]
            union = len(sets[0] | sets[1])
            shared = len(sets[0] & sets[1]) / union if union else 1.0
            pair = lambda key, fmt: f"{fmt.format(a[key])}/{fmt.format(b[key])}"
            print(f"{case:<16}{name:<14}{pair('size', '{}'):>10}{pair('precision', '{:.3f}'):>14}"
                  f"{pair('label_accuracy', '{:.3f}'):>14}{pair('heldout', '{:.3f}'):>14}"
                  f"{pair('random_heldout', '{:.3f}'):>14}{shared:>8.3f}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
