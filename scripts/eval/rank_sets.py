"""Does `dcd eval`'s model-free score rank debug-train sets as retraining does?

For each case, pairs every set's retrained gain over random (closed_loop.py's JSON) with what
`dcd eval` said of the same recipe, scored on the case's held-out failures (NAME.heldout.json)
and on folds of the error samples alone (NAME.folds.json), and prints Spearman's rank
correlation per case and over every set of every case (each case's values ranked within the
case first, so cases with larger gains do not dominate). Measures: `score` (the share of the
set's items that look useful) and `label_win` (the failure-side label win rate).

Usage: rank_sets.py OUT CASE [CASE ...]   (OUT as given to scripts/eval/run.sh)
"""
import json
import sys
from pathlib import Path

from scipy.stats import spearmanr

MEASURES = [("score", "heldout", lambda c: c.get("items", {}).get("useful")),
            ("label_win", "heldout", lambda c: c.get("label_win_rate")),
            ("score", "folds", lambda c: c.get("items", {}).get("useful"))]


def measure(path: Path, pick):
    if not path.exists():
        return None
    return pick(json.loads(path.read_text())["points"][0]["comparison"])


def main(out: Path, cases):
    pooled = {i: ([], []) for i in range(len(MEASURES))}
    for case in cases:
        loop = json.loads((out / f"{case}.json").read_text())
        rows = []
        for s in loop["sets"]:
            base = out / "sets" / case / s["set"]
            values = [measure(base.with_suffix(f".{split}.json"), pick) for _, split, pick in MEASURES]
            rows.append((s["set"], s["gain_vs_random"] * 100, values))
        print(case)
        print(f"{'set':<22}{'gain':>8}" + "".join(f"{n + '/' + sp:>18}" for n, sp, _ in MEASURES))
        for name, gain, values in rows:
            cells = "".join(f"{v:>18.3f}" if v is not None else f"{'-':>18}" for v in values)
            print(f"{name:<22}{gain:>+8.2f}{cells}")
        for i, (n, split, _) in enumerate(MEASURES):
            pairs = [(r[1], r[2][i]) for r in rows if r[2][i] is not None]
            if len(pairs) >= 3:
                gains, values = [p[0] for p in pairs], [p[1] for p in pairs]
                rho = spearmanr(gains, values).statistic
                print(f"  spearman(gain, {n}/{split}) = {rho:+.2f} over {len(pairs)} sets")
                pooled[i][0].extend(_rank(gains))
                pooled[i][1].extend(_rank(values))
    for i, (n, split, _) in enumerate(MEASURES):
        g, v = pooled[i]
        if len(g) >= 3:
            print(f"all cases: spearman(gain, {n}/{split}) = {spearmanr(g, v).statistic:+.2f} over {len(g)} sets")


def _rank(values):
    """Ranks scaled to 0..1 within one case (ties share their mean rank)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for o in order[i:j + 1]:
            ranks[o] = (i + j) / 2 / max(len(values) - 1, 1)
        i = j + 1
    return ranks


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
