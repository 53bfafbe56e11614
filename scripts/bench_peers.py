#!/usr/bin/env python3
"""Peer benchmarks for dcd: the same measurements as `dcd bench ann|exact`, with the same
arguments and JSON fields, for faiss-cpu (IndexFlatL2, IndexHNSWFlat) and hnswlib; a generator
for clustered, embedding-like datasets; a driver that runs dcd and the peers in one run and
prints ratios; and a recall-vs-queries/s plot.

    bench_peers.py gen     --out DIR --n 100000 --dim 384 --queries 1000
    bench_peers.py ann     --library hnswlib|faiss --base B --queries Q --gt GT --k 10 --m 16 \
                           --ef-construction 200 --ef 10,20,40,80,160 --threads N --json
    bench_peers.py exact   --library faiss --base B --queries Q --k 10 --threads N --json
    bench_peers.py compare --data DIR --dcd target/release/dcd --threads 1,2 --out results.jsonl
    bench_peers.py plot    --results results.jsonl --out recall_qps.png

Run it through scripts/bench.sh, which makes the virtual environment.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

MIN_TIMED = 1.0  # seconds per setting; passes over the queries repeat until reached


# ---------------------------------------------------------------- vector files

def read_fvecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    if raw.size == 0:
        return np.zeros((0, 0), dtype=np.float32)
    dim = int(raw[0])
    rows = raw.reshape(-1, dim + 1)
    if not (rows[:, 0] == dim).all():
        raise SystemExit(f"{path}: rows of different dimensions")
    return rows[:, 1:].copy().view(np.float32)


def read_ivecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    dim = int(raw[0])
    return raw.reshape(-1, dim + 1)[:, 1:].copy()


def write_vecs(path, arr):
    arr = np.ascontiguousarray(arr)
    n, d = arr.shape
    out = np.empty((n, d + 1), dtype=np.int32)
    out[:, 0] = d
    out[:, 1:] = arr.view(np.int32)
    out.tofile(path)


def read_vectors(path):
    if path.endswith(".npy"):
        return np.ascontiguousarray(np.load(path), dtype=np.float32)
    return read_fvecs(path)


# ---------------------------------------------------------------- dataset generator

def cmd_gen(a):
    """Unit vectors around random cluster centres with per-cluster spread (as dcd's synth)."""
    import faiss

    rng = np.random.default_rng(a.seed)
    clusters = a.clusters or max(10, a.n // 1000)
    centres = rng.standard_normal((clusters, a.dim), dtype=np.float32)
    spreads = rng.uniform(0.25, 0.75, clusters).astype(np.float32)

    def sample(n, stream):
        r = np.random.default_rng([a.seed, stream])
        out = np.empty((n, a.dim), dtype=np.float32)
        for s in range(0, n, 65536):
            e = min(n, s + 65536)
            c = r.integers(0, clusters, e - s)
            x = centres[c] + spreads[c, None] * r.standard_normal((e - s, a.dim), dtype=np.float32)
            out[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    base, queries = sample(a.n, 1), sample(a.queries, 2)
    index = faiss.IndexFlatL2(a.dim)
    index.add(base)
    _, gt = index.search(queries, a.gt_k)
    os.makedirs(a.out, exist_ok=True)
    write_vecs(os.path.join(a.out, "base.fvecs"), base)
    write_vecs(os.path.join(a.out, "queries.fvecs"), queries)
    write_vecs(os.path.join(a.out, "gt.ivecs"), gt.astype(np.int32))
    print(f"wrote {a.n} base and {a.queries} query vectors ({a.dim}-d, {clusters} clusters) "
          f"and exact top-{a.gt_k} to {a.out}")


# ---------------------------------------------------------------- measurements

def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def timed_passes(nq, fn):
    start = time.perf_counter()
    passes = 0
    while True:
        out = fn()
        passes += 1
        elapsed = time.perf_counter() - start
        if elapsed >= MIN_TIMED:
            return out, passes * nq / elapsed


def recall(ids, gt, k):
    hit = sum(len(set(row[:k].tolist()) & set(g[:k].tolist())) for row, g in zip(ids, gt))
    return hit / (k * len(ids))


def set_threads(n):
    try:
        import faiss
        faiss.omp_set_num_threads(n)
    except ImportError:
        pass


def cmd_ann(a):
    base, queries = read_vectors(a.base), read_vectors(a.queries)
    gt = read_ivecs(a.gt)
    efs = [int(x) for x in a.ef.split(",")]
    threads = a.threads or os.cpu_count()
    set_threads(threads)
    n, dim = base.shape
    t = time.perf_counter()
    if a.library == "hnswlib":
        import hnswlib
        index = hnswlib.Index(space="l2", dim=dim)
        index.init_index(max_elements=n, ef_construction=a.ef_construction, M=a.m, random_seed=100)
        index.set_num_threads(threads)
        index.add_items(base, np.arange(n), num_threads=threads)
        engine = "hnsw"

        def search(ef):
            index.set_ef(ef)
            return lambda: index.knn_query(queries, k=a.k, num_threads=threads)[0]
    elif a.library == "faiss":
        import faiss
        index = faiss.IndexHNSWFlat(dim, a.m)
        index.hnsw.efConstruction = a.ef_construction
        index.add(base)
        engine = "IndexHNSWFlat"

        def search(ef):
            index.hnsw.efSearch = ef
            return lambda: index.search(queries, a.k)[1]
    else:
        raise SystemExit(f"unknown library {a.library}")
    build = time.perf_counter() - t
    results = []
    for ef in efs:
        ids, qps = timed_passes(len(queries), search(ef))
        results.append({"ef": ef, "recall": recall(ids, gt, a.k), "qps": qps})
    report = {
        "library": a.library, "engine": engine, "n": n, "dim": dim, "queries": len(queries),
        "k": a.k, "m": a.m, "ef_construction": a.ef_construction, "threads": threads,
        "build_seconds": build, "peak_rss_mb": peak_rss_mb(), "vector_mb": base.nbytes / 1e6,
        "results": results,
    }
    print(json.dumps(report))


def cmd_exact(a):
    import faiss
    base, queries = read_vectors(a.base), read_vectors(a.queries)
    threads = a.threads or os.cpu_count()
    set_threads(threads)
    n, dim = base.shape
    index = faiss.IndexFlatL2(dim)
    index.add(base)
    batch = max(1, min(a.batch or len(queries), len(queries)))
    best = float("inf")
    for _ in range(max(1, a.repeat)):
        t = time.perf_counter()
        for s in range(0, len(queries), batch):
            index.search(queries[s:s + batch], a.k)
        best = min(best, time.perf_counter() - t)
    print(json.dumps({
        "library": "faiss", "engine": "IndexFlatL2", "dtype": "f32", "n": n, "dim": dim,
        "queries": len(queries), "batch": batch, "k": a.k, "threads": threads, "seconds": best,
        "qps": len(queries) / best, "gflops": 2.0 * len(queries) * n * dim / best / 1e9,
    }))


# ---------------------------------------------------------------- driver

def run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def qps_at_recall(report, target):
    """Queries/s at `target` recall, interpolated between the sweep's points (None if never)."""
    pts = sorted((p["recall"], p["qps"]) for p in report["results"])
    for (r0, q0), (r1, q1) in zip(pts, pts[1:]):
        if r0 <= target <= r1:
            return q0 if r1 == r0 else q0 + (q1 - q0) * (target - r0) / (r1 - r0)
    return pts[0][1] if pts and pts[0][0] >= target else None


def cmd_compare(a):
    me = [sys.executable, os.path.abspath(__file__)]
    d = a.data
    files = dict(base=os.path.join(d, "base.fvecs"), queries=os.path.join(d, "queries.fvecs"),
                 gt=os.path.join(d, "gt.ivecs"))
    reports = []
    env = dict(os.environ, DCD_LOG="warn")
    for threads in [int(t) for t in a.threads.split(",")]:
        common = ["--base", files["base"], "--queries", files["queries"], "--k", str(a.k)]
        if not a.skip_exact:
            exact_q = files["queries"]
            if a.exact_queries:
                exact_q = a.exact_queries
            ex = ["--base", files["base"], "--queries", exact_q, "--k", str(a.k)]
            for batch in a.exact_batches.split(","):
                b = ["--batch", batch] if batch != "all" else []
                reports.append(run_json([a.dcd, "--threads", str(threads), "bench", "exact", *ex, *b, "--json"], env))
                reports.append(run_json([*me, "exact", "--library", "faiss", *ex, *b, "--threads", str(threads)]))
        ann = [*common, "--gt", files["gt"], "--m", str(a.m), "--ef-construction", str(a.ef_construction),
               "--ef", a.ef]
        for engine in a.engines.split(","):
            reports.append(run_json([a.dcd, "--threads", str(threads), "bench", "ann", *ann,
                                     "--engine", engine, "--json"], env))
        for lib in a.peers.split(","):
            reports.append(run_json([*me, "ann", "--library", lib, *ann, "--threads", str(threads)]))
        for r in reports[-(len(a.engines.split(",")) + len(a.peers.split(","))):]:
            print(f"  {r['library']:<8} {r['engine']:<14} threads={r['threads']} done", file=sys.stderr)
    with open(a.out, "w") as f:
        for r in reports:
            f.write(json.dumps(r) + "\n")
    print_table(reports, a.target_recall)


def print_table(reports, target):
    print(f"\n## exact (queries/s, GFLOP/s)")
    for r in [r for r in reports if r["engine"] in ("exact", "IndexFlatL2")]:
        print(f"{r['library']:<8} n={r['n']} d={r['dim']} q={r['queries']} batch={r['batch']} "
              f"threads={r['threads']}: {r['qps']:.1f} q/s  {r['gflops']:.1f} GFLOP/s")
    print(f"\n## ANN: queries/s at recall@k = {target}, build seconds, peak RSS MB")
    ann = [r for r in reports if "results" in r]
    for threads in sorted({r["threads"] for r in ann}):
        rows = [r for r in ann if r["threads"] == threads]
        ref = next((r for r in rows if r["library"] == "hnswlib"), None)
        ref_q = qps_at_recall(ref, target) if ref else None
        for r in rows:
            q = qps_at_recall(r, target)
            ratio = f"{q / ref_q:.2f}x hnswlib" if q and ref_q else ""
            build = f"{r['build_seconds'] / ref['build_seconds']:.2f}x" if ref else ""
            qs = f"{q:9.0f}" if q else "   (n/a) "
            print(f"threads={threads} {r['library']:<8} {r['engine']:<14} {qs} q/s {ratio:<16} "
                  f"build {r['build_seconds']:7.1f}s ({build})  RSS {r['peak_rss_mb']:7.0f} MB "
                  f"(vectors {r['vector_mb']:.0f} MB)")
    # And the pairwise exact ratios.
    for r in [r for r in reports if r["engine"] == "exact"]:
        faiss = next((f for f in reports if f["engine"] == "IndexFlatL2" and f["threads"] == r["threads"]
                      and f["batch"] == r["batch"]), None)
        if faiss:
            print(f"exact batch={r['batch']} threads={r['threads']}: dcd / faiss = {r['qps'] / faiss['qps']:.2f}")


def cmd_plot(a):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    reports = [json.loads(l) for l in open(a.results) if l.strip()]
    ann = [r for r in reports if "results" in r]
    fig, ax = plt.subplots(figsize=(7, 5))
    for r in ann:
        pts = sorted((p["recall"], p["qps"]) for p in r["results"])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                label=f"{r['library']} {r['engine']} ({r['threads']} thr)")
    if ann:
        r = ann[0]
        ax.set_title(f"n={r['n']} d={r['dim']} k={r['k']} M={r['m']} efC={r['ef_construction']}")
    ax.set_xlabel("recall@k")
    ax.set_ylabel("queries/s")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out)
    print(f"wrote {a.out}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    g = sub.add_parser("gen", help="write a clustered dataset with exact ground truth")
    g.add_argument("--out", required=True)
    g.add_argument("--n", type=int, default=100_000)
    g.add_argument("--dim", type=int, default=384)
    g.add_argument("--queries", type=int, default=1000)
    g.add_argument("--clusters", type=int)
    g.add_argument("--gt-k", type=int, default=100)
    g.add_argument("--seed", type=int, default=1)

    for name in ("ann", "exact"):
        s = sub.add_parser(name)
        s.add_argument("--library", default="faiss")
        s.add_argument("--base", required=True)
        s.add_argument("--queries", required=True)
        s.add_argument("--k", type=int, default=10)
        s.add_argument("--threads", type=int, default=0)
        s.add_argument("--json", action="store_true", help="accepted for parity; output is JSON")
        if name == "ann":
            s.add_argument("--gt", required=True)
            s.add_argument("--m", type=int, default=16)
            s.add_argument("--ef-construction", type=int, default=200)
            s.add_argument("--ef", default="10,20,40,80,160")
        else:
            s.add_argument("--repeat", type=int, default=3)
            s.add_argument("--batch", type=int, help="queries per search call (default: all)")

    c = sub.add_parser("compare", help="run dcd and the peers in one run; print ratios")
    c.add_argument("--data", required=True, help="folder with base.fvecs, queries.fvecs, gt.ivecs")
    c.add_argument("--dcd", default="target/release/dcd")
    c.add_argument("--threads", default="1,2")
    c.add_argument("--k", type=int, default=10)
    c.add_argument("--m", type=int, default=16)
    c.add_argument("--ef-construction", type=int, default=200)
    c.add_argument("--ef", default="10,16,20,30,40,60,80,120,160")
    c.add_argument("--engines", default="native")
    c.add_argument("--peers", default="hnswlib,faiss")
    c.add_argument("--exact-queries", help="query file for the exact runs (default: the ANN queries)")
    c.add_argument("--skip-exact", action="store_true")
    c.add_argument("--exact-batches", default="all,1", help="queries per exact search call")
    c.add_argument("--target-recall", type=float, default=0.95)
    c.add_argument("--out", default="results.jsonl")

    pl = sub.add_parser("plot", help="recall vs queries/s from compare's results")
    pl.add_argument("--results", required=True)
    pl.add_argument("--out", default="recall_qps.png")

    a = p.parse_args()
    {"gen": cmd_gen, "ann": cmd_ann, "exact": cmd_exact, "compare": cmd_compare, "plot": cmd_plot}[a.cmd](a)


if __name__ == "__main__":
    main()
