"""The Ray ingestion (dcd_client.ray) on a real Ray cluster of a head and two worker nodes on
this machine, in a loopback-only network namespace (Ray advertises the machine's own address
otherwise): 2,000 generated images, one worker node killed with SIGKILL midway; every image
must be in the pool exactly once with the vector dcd's own ingestion gives. Needs root (for
`ip netns`) and the MobileNetV2 weights scripts/test.sh fetches (DCD_MOBILENET_WEIGHTS)."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import _binary

HERE = pathlib.Path(__file__).resolve().parent
IMAGES = 2000


def _images(root: pathlib.Path) -> None:
    rng = np.random.default_rng(7)
    for i in range(IMAGES):
        folder = root / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        a = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
        a[:, : i % 64] //= 2
        Image.fromarray(a).save(folder / f"img_{i:05d}.png")


def test_a_worker_node_killed_midway_loses_and_repeats_nothing(tmp_path):
    pytest.importorskip("ray", reason="ray[data] is not installed (pip install \"./scripts/python[ray]\")")
    weights = os.environ.get("DCD_MOBILENET_WEIGHTS")
    if os.geteuid() != 0 or not shutil.which("ip") or not weights:
        pytest.skip("needs root and `ip` (a network namespace) and DCD_MOBILENET_WEIGHTS; "
                    "scripts/test.sh as root has all three")
    images = tmp_path / "images"
    _images(images)
    ns = f"dcd-ray-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        env = {**os.environ, "DCD_BIN": _binary(), "RAY_USAGE_STATS_ENABLED": "0",
               "PYTHONPATH": str(HERE)}
        out, err = tmp_path / "run.out", tmp_path / "run.err"
        with open(out, "w") as o, open(err, "w") as e:
            run = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, str(HERE / "ray_cluster_run.py"),
                 str(images), str(tmp_path / "data"), weights, "--kill"],
                env=env, stdout=o, stderr=e, start_new_session=True)
            try:
                code = run.wait(timeout=600)
            finally:
                # Whatever the run left behind (it stops the cluster and the server itself).
                try:
                    os.killpg(run.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    finally:
        subprocess.run(["ip", "netns", "del", ns])
    lines = [l for l in out.read_text().splitlines() if l.startswith("{")]
    assert code == 0 and lines, err.read_text()[-4000:]
    out = json.loads(lines[-1])
    print("\nray ingestion:", json.dumps(out, indent=1))
    r = out["ray"]
    assert out["killed"].get("at_items", 0) >= 300, "a worker node was killed midway"
    assert r["entries"] == IMAGES and r["failed"] == 0 and r["duplicates"] == 0, r
    assert r["stored"] + r["present"] == IMAGES, r
    assert out["pool_items"] == IMAGES, "every image once: keys are unique per pool"
    assert out["ref"]["state"] == "succeeded" and out["ref"]["stored"] == IMAGES
    assert out["mismatched"] == [], "each sampled image's nearest row is its own"
    # |a - b|^2 <= 2e-4 |a|^2 bounds the cosine of a and b from below by 0.9999.
    assert out["worst_relative_distance"] <= 2e-4, out["worst_relative_distance"]
    assert out["leftover_worker_dcds"] == 0, "no worker's dcd outlives its Ray worker"
    assert out["server_exit"] == 0
