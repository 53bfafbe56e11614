"""Starts a real `dcd serve` (the binary named by DCD_BIN, else target/debug/dcd) on a free
loopback port over a temporary data dir, for each test that asks for it."""

import os
import pathlib
import signal
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]


def worker_dcds() -> list:
    """Pids of the Ray embedding workers' own dcd processes (dcd_client.ray names their data
    directories dcd-ray-worker-*)."""
    pids = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if b"dcd-ray-worker-" in open(f"/proc/{p}/cmdline", "rb").read():
                    pids.append(int(p))
            except OSError:
                pass
    return pids


def _binary() -> str:
    path = os.environ.get("DCD_BIN") or str(REPO / "target" / "debug" / "dcd")
    if not pathlib.Path(path).exists():
        pytest.fail(f"{path} not found: build dcd first (cargo build) or set DCD_BIN")
    return path


class Server:
    def __init__(self, tmp: pathlib.Path, *extra: str):
        self.root = tmp
        self.proc = subprocess.Popen(
            [_binary(), "--data-dir", str(tmp / "data"), "--log", "warn", "serve",
             "--addr", "127.0.0.1:0", "--allow-root", str(tmp),
             "--allow-root", str(REPO / "tests" / "fixtures"), *extra],
            stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("dcd listening on "):
            self.proc.kill()
            raise RuntimeError(f"dcd serve did not start: {line!r}")
        self.url = line.split()[-1]
        self.page = None
        if "--http-addr" in extra:
            for _ in range(5):
                line = self.proc.stdout.readline()
                if line.startswith("dcd review page on "):
                    self.page = line.split()[-1]
                    break
            if self.page is None:
                self.proc.kill()
                raise RuntimeError("dcd serve did not print the review page's address")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    yield s
    assert s.stop() == 0, "graceful shutdown exits 0"


@pytest.fixture
def server_with_key(tmp_path):
    s = Server(tmp_path, "--api-key", "k3y")
    yield s
    s.stop()


@pytest.fixture
def tiny_dino() -> str:
    return str(REPO / "tests" / "fixtures" / "backbones" / "dino-tiny")
