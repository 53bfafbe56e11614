#!/usr/bin/env python3
"""The append rate of one dcd server: vectors/s stored through the Ingest RPC by 1 and by N
concurrent streams, each sending the calls a Ray embedding worker sends (a batch of vectors
per call, with every item's outcome asked for and the image's SHA-256 named). This is the
ceiling of the Ray ingestion (dcd_client.ray) however many GPUs embed.

  cargo build --release
  target/py-venv/bin/python scripts/bench_append_streams.py --dcd-bin target/release/dcd \\
      [--dim 768] [--dtype f16] [--items 40000] [--batch 32] [--streams 1 4] [--json out.json]

Prints one row per stream count: vectors/s, MiB/s of vectors sent, the median and p99 call
latency, and the server's cores busy (its CPU time over the wall time) with the CPU model.
"""
import argparse
import hashlib
import json
import os
import pathlib
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from dcd_client import Client, Item  # pip install ./scripts/python (scripts/test.sh does, in target/py-venv)


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(url: str, pool: str, server_pid: int, dim: int, items: int, batch: int, streams: int,
        seed: int) -> dict:
    rng = np.random.default_rng(seed)
    per_stream = items // streams
    # Made before the clock starts: the client's own work is not what is measured.
    work = []
    for s in range(streams):
        vectors = rng.standard_normal((per_stream, dim), dtype=np.float32)
        calls = []
        for start in range(0, per_stream, batch):
            calls.append([Item(key=f"s{s}/{i}", label=f"c{i % 10}", vector=vectors[i],
                               content_sha256=hashlib.sha256(f"{seed}/{s}/{i}".encode()).hexdigest())
                          for i in range(start, min(start + batch, per_stream))])
        work.append(calls)
    latencies = [[] for _ in range(streams)]
    stored = [0] * streams
    errors = []

    def stream(s: int) -> None:
        with Client(url, max_message_mib=256) as c:
            for call in work[s]:
                t = time.perf_counter()
                try:
                    r = c.ingest(pool, call, itemize=True)
                except Exception as e:  # said in the report, not hidden
                    errors.append(str(e))
                    return
                latencies[s].append(time.perf_counter() - t)
                stored[s] += r.stored

    cpu0 = cpu_seconds(server_pid)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=stream, args=(s,)) for s in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(server_pid) - cpu0
    lat = np.array([x for l in latencies for x in l]) * 1e3
    total = sum(stored)
    return {
        "streams": streams, "vectors": total, "seconds": wall,
        "vectors_per_s": total / wall, "mib_per_s": total * dim * 4 / wall / (1 << 20),
        "call_p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
        "call_p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
        "server_cores_busy": cpu / wall, "errors": errors[:5],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dcd-bin", default="target/release/dcd")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--dtype", default="f16", choices=["f32", "f16"])
    ap.add_argument("--items", type=int, default=40000, help="vectors per run (split over the streams)")
    ap.add_argument("--batch", type=int, default=32, help="vectors per Ingest call")
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dcd-append-") as tmp:
        proc = subprocess.Popen([a.dcd_bin, "--data-dir", os.path.join(tmp, "data"), "--log", "warn",
                                 "serve", "--addr", "127.0.0.1:0", "--max-message-mib", "256"],
                                stdout=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            if not line.startswith("dcd listening on "):
                raise SystemExit(f"dcd serve did not start: {line!r}")
            url = line.split()[-1]
            rows = []
            for n, streams in enumerate(a.streams):
                pool = f"append{streams}"
                with Client(url) as c:
                    c.create_pool(pool, dim=a.dim, dtype=a.dtype)
                rows.append(run(url, pool, proc.pid, a.dim, a.items, a.batch, streams, seed=n))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    report = {"cpu": cpu_model(), "cores": os.cpu_count(), "dim": a.dim, "dtype": a.dtype,
              "batch": a.batch, "runs": rows}
    print(f"CPU: {report['cpu']} ({report['cores']} cores); dim {a.dim} {a.dtype}, {a.batch} vectors per call")
    print(f"{'streams':>7} {'vectors/s':>10} {'MiB/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'server cores':>12}")
    for r in rows:
        print(f"{r['streams']:>7} {r['vectors_per_s']:>10.0f} {r['mib_per_s']:>7.1f} "
              f"{r['call_p50_ms'] or 0:>7.1f} {r['call_p99_ms'] or 0:>7.1f} {r['server_cores_busy']:>12.2f}"
              + (f"  errors: {r['errors']}" if r["errors"] else ""))
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(report, indent=2))
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
