"""The Ray ingestion (dcd_client.ray) when things go wrong, on a one-node local Ray: entries
that fail every time (missing, not an image, over dcd's size limit, bad metadata) are counted
failed with their reasons while the rest is stored; a worker's own dcd killed mid-job is
started again and loses nothing; workers that cannot load the weights stop the job once, with
the reason. The server is reached over TLS with an API key."""

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from conftest import Server, _binary, worker_dcds

ray = pytest.importorskip("ray", reason="ray[data] is not installed (pip install \"./scripts/python[ray]\")")

from dcd_client import Client  # noqa: E402
from dcd_client.ray import WorkerSetupError, ingest  # noqa: E402

GOOD = 300
KEY = "k3y"


@pytest.fixture(scope="module")
def local_ray():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield
    ray.shutdown()


@pytest.fixture
def tls_server(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    s = Server(tmp_path, "--api-key", KEY, "--tls-cert", str(cert), "--tls-key", str(key))
    s.pem = cert.read_bytes()
    yield s
    assert s.stop() == 0


def _png(path: pathlib.Path, rng, side: int = 40) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rng.random((side, side, 3)) * 255).astype(np.uint8)).save(path)


def test_bad_entries_fail_alone_and_a_killed_worker_dcd_loses_nothing(local_ray, tls_server, tiny_dino):
    root = tls_server.root / "pool"
    rng = np.random.default_rng(3)
    rows = []
    for i in range(GOOD):
        path = root / f"c{i % 3}" / f"{i:04d}.png"
        _png(path, rng)
        rows.append((path, f"c{i % 3}", ""))
    # Four images of about 22 MiB each in a row: one batch's bytes are more than one message
    # to the worker's dcd may carry.
    for i in range(4):
        path = root / "big" / f"{i}.png"
        _png(path, rng, side=2700)
        rows.append((path, "big", '{"size": "large"}'))
    bad = {
        "missing": (root / "nowhere.png", "", ""),
        "not_an_image": (root / "notes.png", "", ""),
        "too_large": (root / "huge.png", "", ""),
        "bad_metadata": (root / "meta.png", "", "{not json"),
    }
    (root / "notes.png").write_bytes(b"these are not pixels\n" * 50)
    with open(root / "huge.png", "wb") as f:
        f.truncate(65 << 20)  # sparse: no disk taken
    _png(root / "meta.png", rng)
    rows[150:150] = list(bad.values())
    manifest = tls_server.root / "manifest.csv"
    import csv
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "metadata"])
        for path, label, meta in rows:
            w.writerow([str(path), label, meta])

    c = Client(tls_server.url, api_key=KEY, tls=True, root_certificates=tls_server.pem)
    c.create_pool("ray", backbone="dino-vit", weights=tiny_dino)
    killed = {}

    def killer():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            if c.get_pool("ray").items >= 1:
                pids = worker_dcds()
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed["at_items"] = c.get_pool("ray").items
            time.sleep(0.02)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    s = ingest(str(manifest), "ray", tls_server.url, dcd_bin=_binary(), api_key=KEY, tls=True,
               root_certificates=tls_server.pem, batch_size=32, workers=2)
    t.join(timeout=5)
    print("\nray ingestion with faults:", s)
    assert killed.get("at_items", GOOD) < GOOD, f"a worker's dcd was killed mid-job: {killed}"
    assert s.entries == GOOD + 4 + len(bad)
    assert (s.stored, s.present, s.duplicates, s.failed) == (GOOD + 4, 0, 0, len(bad)), s
    reasons = dict(s.errors)
    assert "cannot read" in reasons[str(bad["missing"][0])]
    assert reasons[str(bad["not_an_image"][0])], "a decode error says why"
    assert "at most 64 MiB" in reasons[str(bad["too_large"][0])]
    assert "not valid JSON" in reasons[str(bad["bad_metadata"][0])]
    pool = c.get_pool("ray")
    assert pool.items == GOOD + 4 == s.pool_items
    assert pool.label_counts == {"c0": 100, "c1": 100, "c2": 100, "big": 4}


def test_workers_that_cannot_load_the_weights_stop_the_job_once(local_ray, server, tiny_dino):
    weights = server.root / "weights" / "dino-tiny"
    shutil.copytree(tiny_dino, weights)
    rng = np.random.default_rng(4)
    for i in range(64):
        _png(server.root / "imgs" / f"{i}.png", rng)
    c = Client(server.url)
    c.create_pool("gone", backbone="dino-vit", weights=str(weights))
    shutil.rmtree(weights)  # the server checked them at creation; the workers will not find them
    with pytest.raises(WorkerSetupError) as e:
        ingest(str(server.root / "imgs"), "gone", server.url, dcd_bin=_binary(), batch_size=8,
               workers=2)
    message = str(e.value)
    assert "cannot load the backbone of pool 'gone'" in message and str(weights) in message, message
    assert c.get_pool("gone").items == 0
    # The command says it once, on one line, and exits 2 (a request that cannot be done as is).
    run = subprocess.run(
        [sys.executable, "-m", "dcd_client.ray", str(server.root / "imgs"), "--pool", "gone",
         "--server", server.url, "--dcd-bin", _binary(), "--workers", "1"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    said = [l for l in run.stderr.splitlines() if l.startswith("error: ")]
    assert run.returncode == 2 and len(said) == 1, run.stderr[-3000:]
    assert "cannot load the backbone of pool 'gone'" in said[0], said
    with pytest.raises(ValueError, match="raw vectors"):
        c.create_pool("raw", dim=8)
        ingest(str(server.root / "imgs"), "raw", server.url, dcd_bin=_binary())
