"""Embed a pool on a Ray cluster.

Ray Data reads the source; workers embed the images with dcd itself (each runs one local
`dcd serve`, which loads the pool's backbone once, and asks it for vectors through the Embed
RPC); each batch is appended to the pool through the dcd server's Ingest RPC, keyed by the
source entry, so a task Ray retries after a worker or node died finds its items present and
stores nothing twice.

    from dcd_client.ray import ingest
    summary = ingest("/data/photos", pool="photos", server="10.0.0.5:50051")

Needs `ray[data]` (not a dependency of dcd-client) and a `dcd` binary on every worker node
(`dcd_bin`, default: `dcd` on the PATH, or $DCD_BIN).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import grpc
import numpy as np

from ._pb import dcd_pb2 as pb
from ._pb import dcd_pb2_grpc as rpc
from .client import _DTYPES, Client, DcdError, Item

# The file names an ImageFolder listing takes, as `dcd ingest` (by extension, any case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
# The local pool a worker embeds with.
_WORKER_POOL = "embed"


@dataclass
class Entry:
    """One source entry: its key in the pool, where its image is, its weak label."""

    key: str
    path: str = ""
    label: str = ""
    metadata: str = ""


@dataclass
class RayIngestSummary:
    """What a Ray ingestion did, one outcome per source entry."""

    entries: int = 0
    stored: int = 0
    duplicates: int = 0
    present: int = 0
    failed: int = 0
    errors: List[Tuple[str, str]] = field(default_factory=list)  # (key, reason), the first ones
    pool_items: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else 0.0


def list_folder(root: Union[str, os.PathLike]) -> List[Entry]:
    """The entries of an ImageFolder tree as `dcd ingest` lists them: every image below
    `root` (sorted), keyed by its absolute path, labelled by its first subfolder."""
    root = pathlib.Path(os.path.realpath(root))
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder; give an ImageFolder tree or a manifest")
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.lower().endswith(IMAGE_SUFFIXES):
                continue
            path = pathlib.Path(dirpath) / name
            rel = path.relative_to(root).parts
            out.append(Entry(key=str(path), path=str(path), label=rel[0] if len(rel) > 1 else ""))
    out.sort(key=lambda e: e.key)
    return out


def list_manifest(file: Union[str, os.PathLike]) -> List[Entry]:
    """The entries of a `.jsonl` (objects with `path`, optional `label` and `metadata`) or
    `.csv` manifest (a header naming `path`, optionally `label` and `metadata`)."""
    import csv

    file = pathlib.Path(file)
    base = file.resolve().parent
    rows = []
    if file.suffix in (".jsonl", ".ndjson"):
        for n, line in enumerate(file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            obj = json.loads(line)
            if "path" not in obj:
                raise ValueError(f"{file}:{n}: no \"path\"")
            meta = obj.get("metadata")
            rows.append((obj["path"], obj.get("label") or "", json.dumps(meta) if meta else ""))
    elif file.suffix == ".csv":
        with file.open(newline="") as f:
            reader = csv.DictReader(f)
            if "path" not in (reader.fieldnames or []):
                raise ValueError(f"{file}: the header must name a \"path\" column")
            for r in reader:
                rows.append((r["path"], r.get("label") or "", r.get("metadata") or ""))
    else:
        raise ValueError(f"{file}: a manifest is .jsonl or .csv")
    out = []
    for path, label, meta in rows:
        p = pathlib.Path(path)
        p = p if p.is_absolute() else base / p
        out.append(Entry(key=str(p), path=str(p), label=label, metadata=meta))
    return out


# Starts a program that dies with the process that started it, even one killed by SIGKILL
# (PR_SET_PDEATHSIG survives exec). A tiny interpreter of its own sets it: a preexec_fn
# would run Python between fork and exec in a Ray worker, whose threads make that unsafe.
_EXEC_DYING_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n"  # 1: PR_SET_PDEATHSIG
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)\n"  # the parent is gone already
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


class WorkerSetupError(RuntimeError):
    """A Ray worker could not reach the pool, start its dcd or load the pool's backbone. Every
    worker would fail alike, so `ingest` stops the job once with this reason."""


# dcd refuses image files larger than this (its limits::MAX_FILE_BYTES): said per entry
# before the bytes travel.
MAX_IMAGE_BYTES = 64 << 20
# One Embed call to a worker's dcd carries at most this many image bytes (or one image),
# below the message limit the worker's dcd is started with.
_EMBED_CALL_BYTES = 48 << 20
_LOCAL_MESSAGE_MIB = 80


class DcdEmbedder:
    """A Ray Data worker: one local `dcd serve` holding the pool's backbone, and a client of
    the dcd server that keeps the pool. Called on batches of entries; returns each entry's
    outcome. A local dcd that dies is started again, and the images of the call it died in
    are then embedded one at a time, so that one image that brings it down every time fails
    alone."""

    def __init__(self, server: str, pool: str, dcd_bin: str = "", api_key: str = "",
                 tls: bool = False, root_certificates: Optional[bytes] = None,
                 device: str = "cpu", startup_seconds: float = 120.0):
        self._pool = pool
        self._server = Client(server, api_key=api_key or None, tls=tls,
                              root_certificates=root_certificates, max_message_mib=256)
        try:
            self._record = self._server.get_pool(pool)
        except DcdError as e:
            raise WorkerSetupError(f"this worker cannot read pool {pool!r} on {server}: {e}") from None
        if not self._record.backbone:
            raise WorkerSetupError(f"pool {pool!r} holds raw vectors: it has no backbone to embed with")
        self._binary = dcd_bin or os.environ.get("DCD_BIN") or shutil.which("dcd")
        if not self._binary or not os.access(self._binary, os.X_OK):
            raise WorkerSetupError(
                f"no dcd binary on this worker ({self._binary or 'none on the PATH'}): install "
                "one on every node, or pass dcd_bin / --dcd-bin / $DCD_BIN")
        self._device = device
        self._startup_seconds = startup_seconds
        self._dir = tempfile.mkdtemp(prefix="dcd-ray-worker-")
        self._proc: Optional[subprocess.Popen] = None
        self._channel: Optional[grpc.Channel] = None
        self._start_local()

    def _start_local(self) -> None:
        """Starts this worker's dcd and loads the pool's backbone in it."""
        record = self._record
        data = os.path.join(self._dir, "data")
        shutil.rmtree(data, ignore_errors=True)
        args = [self._binary, "--data-dir", data, "--log", "warn", "serve", "--addr",
                "127.0.0.1:0", "--device", self._device,
                "--max-message-mib", str(_LOCAL_MESSAGE_MIB)]
        if os.path.isabs(record.weights):
            # The weights are a file on this node: the local server may read that folder.
            args += ["--allow-root", os.path.dirname(record.weights)]
        out = os.path.join(self._dir, "serve.log")
        with open(out, "wb") as log:
            # Linux sends the signal when the thread that started the child ends: Ray calls an
            # actor from the thread that constructed it.
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _EXEC_DYING_WITH_PARENT, str(os.getpid()), *args],
                stdout=log, stderr=subprocess.STDOUT)
        address = None
        deadline = time.monotonic() + self._startup_seconds
        while address is None and time.monotonic() < deadline and self._proc.poll() is None:
            for line in pathlib.Path(out).read_text(errors="replace").splitlines():
                if line.startswith("dcd listening on "):
                    address = line.split()[-1]
            time.sleep(0.05)
        if address is None:
            self._proc.kill()
            raise WorkerSetupError(
                f"this worker's dcd ({self._binary}) did not start in {self._startup_seconds:.0f} s: "
                + self._log_tail())
        if self._channel is not None:
            self._channel.close()  # the dcd it spoke to is gone
        self._channel = grpc.insecure_channel(address, options=[
            ("grpc.max_receive_message_length", _LOCAL_MESSAGE_MIB << 20),
            ("grpc.max_send_message_length", _LOCAL_MESSAGE_MIB << 20)])
        self._local = rpc.DcdStub(self._channel)
        try:
            self._local.CreatePool(pb.CreatePoolRequest(
                name=_WORKER_POOL, backbone=record.backbone, dtype=_DTYPES[record.dtype],
                weights=record.weights, pooling=record.pooling))
        except grpc.RpcError as e:
            self._proc.kill()
            raise WorkerSetupError(
                f"this worker cannot load the backbone of pool {self._pool!r} ({record.backbone}, "
                f"weights {record.weights or 'built in'}): {e.details()}") from None

    def _log_tail(self) -> str:
        try:
            return pathlib.Path(self._dir, "serve.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def _local_died(self) -> bool:
        try:
            self._proc.wait(timeout=2)  # a dcd that dies under a call is gone within moments
            return True
        except subprocess.TimeoutExpired:
            return False

    def _embed_call(self, images: List[bytes]) -> List[Tuple[Optional[Sequence[float]], str]]:
        r = self._local.Embed(pb.EmbedRequest(pool=_WORKER_POOL, images=images))
        return [(res.vector.values, "") if res.WhichOneof("outcome") == "vector" else (None, res.error)
                for res in r.results]

    def _embed(self, images: List[bytes]) -> List[Tuple[Optional[Sequence[float]], str]]:
        """Each image's vector, or why it has none."""
        out: List[Tuple[Optional[Sequence[float]], str]] = []
        chunk: List[bytes] = []
        size = 0

        def flush():
            nonlocal chunk, size
            if not chunk:
                return
            try:
                out.extend(self._embed_call(chunk))
            except grpc.RpcError as e:
                if not self._local_died():
                    raise  # the local dcd is alive: a fault of this worker, Ray retries
                self._start_local()
                for image in chunk:
                    try:
                        out.extend(self._embed_call([image]))
                    except grpc.RpcError as again:
                        if not self._local_died():
                            raise
                        self._start_local()
                        out.append((None, "this image stopped the worker's dcd twice "
                                          f"({e.code().name}, then {again.code().name})"))
            chunk, size = [], 0

        for image in images:
            if chunk and size + len(image) > _EMBED_CALL_BYTES:
                flush()
            chunk.append(image)
            size += len(image)
        flush()
        return out

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        keys = [str(k) for k in batch["key"]]
        paths = [str(p) for p in batch["path"]]
        labels = [str(l) for l in batch["label"]]
        metadata = [str(m) for m in batch["metadata"]]
        outcome = ["failed"] * len(keys)
        reason = [""] * len(keys)
        images, readable = [], []
        for i, path in enumerate(paths):
            try:
                size = os.stat(path).st_size
                if size > MAX_IMAGE_BYTES:
                    reason[i] = (f"{path} is {size / (1 << 20):.1f} MiB: dcd takes image files of "
                                 f"at most {MAX_IMAGE_BYTES >> 20} MiB")
                    continue
                images.append(pathlib.Path(path).read_bytes())
                readable.append(i)
            except OSError as e:
                reason[i] = f"cannot read {path}: {e.strerror or e}"
        items, sent = [], []
        for i, image, (vector, error) in zip(readable, images, self._embed(images) if images else []):
            if vector is None:
                reason[i] = error
                continue
            sent.append(i)
            items.append(Item(key=keys[i], label=labels[i], metadata=metadata[i] or None,
                              vector=np.asarray(vector, dtype=np.float32),
                              content_sha256=hashlib.sha256(image).hexdigest()))
        if items:
            # An error here (the server gone, a deadline) fails the task: Ray runs it again,
            # and what this attempt committed is then present.
            s = self._server.ingest(self._pool, items, itemize=True)
            by_key = {o.key: o for o in s.outcomes}
            for i in sent:
                o = by_key.get(keys[i])
                if o is None:
                    reason[i] = "the server reported no outcome for it"
                    continue
                outcome[i] = o.outcome
                reason[i] = o.reason
        return {"key": np.array(keys, dtype=object), "outcome": np.array(outcome, dtype=object),
                "reason": np.array(reason, dtype=object)}

    def __del__(self):
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(getattr(self, "_dir", ""), ignore_errors=True)


def _setup_failure(error: BaseException) -> Optional[str]:
    """The reason a worker gave for not starting, if `error` (as Ray raises it in the driver)
    is a WorkerSetupError raised in a worker's constructor."""
    marker = "WorkerSetupError: "
    seen = error
    while seen is not None:
        text = str(getattr(seen, "error_msg", "") or "") + "\n" + str(seen)
        at = text.rfind(marker)
        if at >= 0:
            reason = re.sub(r"\x1b\[[0-9;]*m", "", text[at + len(marker):]).strip()
            return reason.split("\n\n")[0]
        seen = seen.__cause__
    return None


def ingest(source, pool: str, server: str, *, dcd_bin: str = "", api_key: str = "",
           tls: bool = False, root_certificates: Optional[bytes] = None,
           batch_size: int = 32, workers: Optional[int] = None, gpus_per_worker: float = 0,
           cpus_per_worker: float = 1, device: str = "cpu", max_errors: int = 100,
           ray_address: Optional[str] = None) -> RayIngestSummary:
    """Embeds `source` into `pool` (which must exist on `server`, with a backbone) on a Ray
    cluster and returns the outcome of every entry.

    `source`: an ImageFolder tree (subfolder = weak label), a `.jsonl` / `.csv` manifest, a
    list of `Entry`, or a Ray Dataset with `path` (and optionally `key`, `label`, `metadata`)
    columns. `workers`: embedding workers (default: one per GPU with `gpus_per_worker`, else
    one per `cpus_per_worker` CPUs of the cluster). `tls` (or an https:// `server`) connects
    with TLS, trusting `root_certificates` (PEM) when given.

    Raises WorkerSetupError, once, when the workers cannot embed at all (no dcd binary, the
    weights missing on a node, the pool unreadable from a worker); an entry that cannot be
    read or embedded is counted failed, with its reason, and the job goes on."""
    import ray
    import ray.data

    # The pool first, from here: a wrong name or a pool of raw vectors is said before any
    # worker starts.
    with Client(server, api_key=api_key or None, tls=tls, root_certificates=root_certificates) as c:
        record = c.get_pool(pool)
    if not record.backbone:
        raise ValueError(f"pool {pool!r} holds raw vectors: it has no backbone to embed images with; "
                         "create the pool with a backbone")
    if not ray.is_initialized():
        ray.init(address=ray_address)
    started = time.monotonic()
    if isinstance(source, ray.data.Dataset):
        if "path" not in source.columns():
            raise ValueError("a Ray Dataset source needs a \"path\" column (and may have key, label, metadata)")

        def fill(b):
            n = len(b["path"])
            if "key" not in b:
                b["key"] = np.array([os.path.realpath(str(p)) for p in b["path"]], dtype=object)
            for col in ("label", "metadata"):
                if col not in b:
                    b[col] = np.array([""] * n, dtype=object)
            return b

        ds = source.map_batches(fill, batch_format="numpy")
        total = ds.count()
    else:
        if isinstance(source, (str, os.PathLike)):
            p = pathlib.Path(source)
            entries = list_manifest(p) if p.is_file() else list_folder(p)
        else:
            entries = list(source)
        total = len(entries)
        ds = ray.data.from_items([e.__dict__ for e in entries])
    if workers is None:
        resources = ray.cluster_resources()
        workers = (int(resources.get("GPU", 0) // gpus_per_worker) if gpus_per_worker
                   else int(resources.get("CPU", 1) // max(cpus_per_worker, 1e-9)))
        workers = max(workers, 1)
    out = ds.map_batches(
        DcdEmbedder,
        fn_constructor_kwargs=dict(server=server, pool=pool, dcd_bin=dcd_bin, api_key=api_key,
                                   tls=tls, root_certificates=root_certificates, device=device),
        batch_size=batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_gpus=gpus_per_worker or None, num_cpus=cpus_per_worker)
    summary = RayIngestSummary(entries=total)
    try:
        for b in out.iter_batches(batch_format="numpy", batch_size=None):
            for key, outcome, reason in zip(b["key"], b["outcome"], b["reason"]):
                if outcome == "stored":
                    summary.stored += 1
                elif outcome == "present":
                    summary.present += 1
                elif outcome == "duplicate":
                    summary.duplicates += 1
                else:
                    summary.failed += 1
                if outcome in ("duplicate", "failed") and len(summary.errors) < max_errors:
                    summary.errors.append((str(key), str(reason)))
    except Exception as e:
        reason = _setup_failure(e)
        if reason is None:
            raise
        raise WorkerSetupError(reason) from None
    summary.seconds = time.monotonic() - started
    with Client(server, api_key=api_key or None, tls=tls, root_certificates=root_certificates) as c:
        summary.pool_items = c.get_pool(pool).items
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m dcd_client.ray SOURCE --pool P --server HOST:PORT`: the Ray ingestion from a
    shell; prints the summary as JSON and exits 1 when an entry failed."""
    import argparse

    # `dcd-ray-ingest` (the package's script) or `python -m dcd_client.ray`.
    prog = ("python -m dcd_client.ray" if sys.argv[0].endswith("ray.py")
            else os.path.basename(sys.argv[0]))
    ap = argparse.ArgumentParser(prog=prog, description=main.__doc__)
    ap.add_argument("source", help="an ImageFolder tree or a .jsonl/.csv manifest")
    ap.add_argument("--pool", required=True, help="the pool (it must exist, with a backbone)")
    ap.add_argument("--server", default=os.environ.get("DCD_SERVER", "127.0.0.1:50051"))
    ap.add_argument("--api-key", default=os.environ.get("DCD_API_KEY", ""))
    ap.add_argument("--tls", action="store_true", help="connect to the server with TLS")
    ap.add_argument("--ca-cert", default=None,
                    help="PEM certificates to trust for the server (with --tls; default: the system's)")
    ap.add_argument("--dcd-bin", default="", help="the dcd binary on the workers (default: $DCD_BIN or PATH)")
    ap.add_argument("--ray-address", default=None, help="the cluster (default: RAY_ADDRESS or a local one)")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--gpus-per-worker", type=float, default=0)
    ap.add_argument("--cpus-per-worker", type=float, default=1)
    ap.add_argument("--device", default="cpu", help="the workers' device: cpu, cuda, cuda:N")
    a = ap.parse_args(argv)
    roots = pathlib.Path(a.ca_cert).read_bytes() if a.ca_cert else None
    try:
        s = ingest(a.source, a.pool, a.server, dcd_bin=a.dcd_bin, api_key=a.api_key,
                   tls=a.tls or roots is not None, root_certificates=roots,
                   batch_size=a.batch_size, workers=a.workers, gpus_per_worker=a.gpus_per_worker,
                   cpus_per_worker=a.cpus_per_worker, device=a.device, ray_address=a.ray_address)
    except (WorkerSetupError, DcdError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({**s.__dict__, "images_per_second": s.images_per_second}, indent=2))
    return 1 if s.failed else 0


if __name__ == "__main__":
    sys.exit(main())
