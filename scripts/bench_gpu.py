#!/usr/bin/env python3
"""GPU exact search: dcd's kernels against the roofline and PyTorch, on one card, in one run.

For every pool (N rows x d dims, f16 or f32) and query batch Q, with k neighbours:
  * dcd:      `dcd bench exact --device cuda --random NxD --batch ...` (its own process; the
              pool is uploaded once, each timed call uploads the queries and copies the
              results back to the host);
  * roofline: max(2*Q*N*d / P, N*d*bytes / B), with P the GEMM rate of the pool's type (f16
              tensor cores for f16 pools, f32 SGEMM without TF32 for f32 pools) and B the
              copy bandwidth (bytes read + written), both measured here, first;
  * PyTorch:  torch.cdist + topk, and a bf16 matmul + topk (|x|^2 - 2<q, x>, norms kept), over
              pool slices of at most 2 GiB of distances, results copied to the host;
  * faiss-gpu when `import faiss` finds GPU support.

    python3 bench_gpu.py --dcd ./dcd --n 1000000,10000000 --dim 384,768 --q 1,64,1024 --k 100

Prints one JSON line per measurement and a table at the end (also written to --out).
"""
import argparse
import json
import subprocess
import sys
import time

import torch


def timed(fn, budget=1.0, max_calls=20, repeat=3):
    """Best mean seconds per call: a warm call, then `repeat` rounds of up to max_calls calls
    (as many as fit in about `budget` seconds)."""
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    once = time.perf_counter() - t
    calls = int(max(1, min(max_calls, budget / max(once, 1e-6))))
    best = float("inf")
    for _ in range(repeat):
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t) / calls)
    return best


def gemm_rate(dtype, n=8192):
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    s = timed(lambda: a @ b, budget=0.5)
    return 2 * n ** 3 / s


def copy_bandwidth(nbytes=4 << 30):
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    s = timed(lambda: dst.copy_(src), budget=0.5)
    return 2 * nbytes / s


def sliced_topk(n, nq, k, distances):
    """The k smallest of `distances(start, end)` (nq x rows) over slices of at most 2 GiB of
    distances, merged; results copied to the host."""
    rows = max(1, (2 << 30) // (4 * nq))
    ds, ids = [], []
    for start in range(0, n, rows):
        d = distances(start, min(n, start + rows))
        v, i = d.topk(min(k, d.shape[1]), dim=1, largest=False)
        ds.append(v)
        ids.append(i + start)
    d, i = torch.cat(ds, 1), torch.cat(ids, 1)
    v, j = d.topk(k, dim=1, largest=False)
    return v.cpu(), i.gather(1, j).cpu()


def torch_cdist(pool, queries, k):
    return sliced_topk(len(pool), len(queries), k, lambda s, e: torch.cdist(queries, pool[s:e]))


def torch_mm(pool_bf16, norms, queries_bf16, k):
    return sliced_topk(len(pool_bf16), len(queries_bf16), k,
                       lambda s, e: norms[s:e] - 2 * (queries_bf16 @ pool_bf16[s:e].T).float())


def run_dcd(a, n, dim, dtype, plans):
    cmd = [a.dcd, "bench", "exact", "--device", "cuda", "--random", f"{n}x{dim}",
           "--random-queries", str(max(a.q)), "--batch", ",".join(map(str, a.q)),
           "--k", str(a.k), "--dtype", dtype, "--gpu-plan", plans, "--json"]
    if a.tile_mib:
        cmd += ["--gpu-tile-mib", str(a.tile_mib)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        print(f"dcd failed: {' '.join(cmd)}\n{out.stderr}", file=sys.stderr)
        return []
    for line in out.stderr.splitlines():
        if line.startswith("gpu copy:"):
            print(f"{n}x{dim} {dtype}: {line}", flush=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dcd", default="target/release/dcd")
    p.add_argument("--n", default="1000000,10000000")
    p.add_argument("--dim", default="384,768")
    p.add_argument("--q", default="1,64,1024")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--dtypes", default="f16,f32")
    p.add_argument("--plans", default="auto", help="dcd plans: auto, or a list of fused,gemm,wide,mma,auto")
    p.add_argument("--skip-torch", action="store_true")
    p.add_argument("--tile-mib", type=int, help="dcd's GEMM tile size (default: its own)")
    p.add_argument("--out", default="bench_gpu.jsonl")
    a = p.parse_args()
    a.q = [int(x) for x in a.q.split(",")]
    rows = []

    def emit(r):
        rows.append(r)
        print(json.dumps(r), flush=True)

    torch.backends.cuda.matmul.allow_tf32 = False
    card = torch.cuda.get_device_name()
    rates = {"f16": gemm_rate(torch.float16), "f32": gemm_rate(torch.float32),
             "bf16": gemm_rate(torch.bfloat16)}
    bw = copy_bandwidth()
    emit({"card": card, "gemm_tflops": {t: r / 1e12 for t, r in rates.items()}, "copy_gbps": bw / 1e9})
    try:
        import faiss  # noqa: F401
        has_faiss = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    except ImportError:
        has_faiss = False
    if not has_faiss:
        emit({"faiss": "not run: no faiss with GPU support importable on this machine"})

    for n in map(int, a.n.split(",")):
        for dim in map(int, a.dim.split(",")):
            for dtype in a.dtypes.split(","):
                for r in run_dcd(a, n, dim, dtype, a.plans):
                    q = r["batch"]
                    bytes_ = 2 if dtype in ("f16", "bf16") else 4
                    bound = max(2 * q * n * dim / rates[dtype], n * dim * bytes_ / bw)
                    r.update(bound_seconds=bound, of_bound=bound / r["per_call_seconds"])
                    emit(r)
                if a.skip_torch:
                    continue
                torch.manual_seed(0)
                tdt = torch.float16 if dtype == "f16" else torch.float32
                try:
                    pool = torch.empty(n, dim, device="cuda", dtype=tdt).uniform_(-1, 1)
                    pool_bf16 = pool.to(torch.bfloat16)
                    norms = torch.cat([c.float().pow(2).sum(1) for c in pool_bf16.split(1 << 20)])
                except torch.OutOfMemoryError as e:
                    emit({"library": "torch", "dtype": dtype, "n": n, "dim": dim, "error": str(e).splitlines()[0]})
                    torch.cuda.empty_cache()
                    continue
                for q in a.q:
                    queries = torch.empty(q, dim, device="cuda", dtype=tdt).uniform_(-1, 1)
                    for name, fn in [
                        ("torch.cdist+topk", lambda: torch_cdist(pool, queries, a.k)),
                        ("torch bf16 mm+topk", lambda: torch_mm(pool_bf16, norms, queries.to(torch.bfloat16), a.k)),
                    ]:
                        try:
                            s = timed(fn)
                            emit({"library": "torch", "engine": name, "dtype": dtype, "n": n, "dim": dim,
                                  "batch": q, "k": a.k, "per_call_seconds": s})
                        except Exception as e:  # noqa: BLE001 - reported, not hidden
                            emit({"library": "torch", "engine": name, "dtype": dtype, "n": n, "dim": dim,
                                  "batch": q, "k": a.k, "error": str(e).splitlines()[0]})
                    if has_faiss:
                        emit(run_faiss(pool, queries, a.k, dtype, n, dim, q))
                del pool, pool_bf16, norms
                torch.cuda.empty_cache()

    with open(a.out, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    table(rows, card)


def run_faiss(pool, queries, k, dtype, n, dim, q):
    import faiss
    res = faiss.StandardGpuResources()
    index = faiss.GpuIndexFlatL2(res, dim)
    index.add(pool.float().cpu().numpy())
    qs = queries.float().cpu().numpy()
    s = timed(lambda: index.search(qs, k))
    return {"library": "faiss", "engine": "GpuIndexFlatL2", "dtype": dtype, "n": n, "dim": dim,
            "batch": q, "k": k, "per_call_seconds": s}


def table(rows, card):
    head = rows[0]
    print(f"\n## {card}: P = {head['gemm_tflops']['f16']:.0f} TFLOP/s f16, "
          f"{head['gemm_tflops']['f32']:.1f} f32 (no TF32); B = {head['copy_gbps']:.0f} GB/s copy")
    print("| N | d | pool | Q | dcd ms (plan) | bound ms | of bound | torch cdist ms | torch bf16 mm ms | dcd vs mm |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r.get("library") != "dcd":
            continue

        def peer(engine):
            for o in rows:
                if (o.get("engine") == engine and o["n"] == r["n"] and o["dim"] == r["dim"]
                        and o["dtype"] == r["dtype"] and o["batch"] == r["batch"] and "per_call_seconds" in o):
                    return o["per_call_seconds"]
            return None

        cd, mm = peer("torch.cdist+topk"), peer("torch bf16 mm+topk")
        ms = r["per_call_seconds"] * 1e3
        fmt = lambda s: f"{s * 1e3:.3f}" if s else "n/a"  # noqa: E731
        ratio = f"{mm / r['per_call_seconds']:.2f}x" if mm else "n/a"
        print(f"| {r['n']:,} | {r['dim']} | {r['dtype']} | {r['batch']} | {ms:.3f} ({r['kernel']}) | "
              f"{r['bound_seconds'] * 1e3:.3f} | {r['of_bound']:.2f} | {fmt(cd)} | {fmt(mm)} | {ratio} |")


if __name__ == "__main__":
    main()
