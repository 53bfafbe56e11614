"""A small typed wrapper over the generated gRPC stubs: plain dataclasses in and out."""

from __future__ import annotations

import inspect
import json
import os
import pathlib
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import grpc
import numpy as np

from ._pb import dcd_pb2 as pb
from ._pb import dcd_pb2_grpc as rpc

_MERGES = {"union": pb.MERGE_UNION, "round_robin": pb.MERGE_ROUND_ROBIN, "global_top": pb.MERGE_GLOBAL_TOP,
           "mean": pb.MERGE_MEAN}
_DTYPES = {"f32": pb.DTYPE_F32, "f16": pb.DTYPE_F16}
_LABEL_POLICIES = {None: pb.LABEL_POLICY_UNSPECIFIED, "keep": pb.LABEL_POLICY_KEEP,
                   "drop": pb.LABEL_POLICY_DROP, "replace": pb.LABEL_POLICY_REPLACE}
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
_JOB_STATES = {
    pb.JOB_STATE_PENDING: "pending",
    pb.JOB_STATE_RUNNING: "running",
    pb.JOB_STATE_SUCCEEDED: "succeeded",
    pb.JOB_STATE_FAILED: "failed",
    pb.JOB_STATE_CANCELLED: "cancelled",
}
_OUTCOMES = {
    pb.INGEST_OUTCOME_STORED: "stored",
    pb.INGEST_OUTCOME_DUPLICATE: "duplicate",
    pb.INGEST_OUTCOME_PRESENT: "present",
    pb.INGEST_OUTCOME_FAILED: "failed",
}


class DcdError(Exception):
    """A call the server refused: `code` is the gRPC status name (e.g. "INVALID_ARGUMENT")."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Key:
    """An error sample or query that is an item already stored, by its key."""

    key: str


@dataclass(frozen=True)
class Labelled:
    """An error sample with its true label and its weight in label votes (default 1).
    `sample` is anything `debug_set` takes as one sample: a path, image bytes, a 1-D vector
    or a `Key`."""

    sample: object
    label: str = ""
    weight: float = 1.0


def image_folder(root: Union[str, os.PathLike]) -> List[Labelled]:
    """The images of an ImageFolder tree of error samples, each labelled with the name of the
    subfolder of `root` it lies in (images directly in `root` are unlabelled)."""
    root = pathlib.Path(root)
    out = []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file():
            rel = p.relative_to(root).parts
            out.append(Labelled(p, rel[0] if len(rel) > 1 else ""))
    return out


@dataclass
class Item:
    """One item to ingest: an image (bytes or a local path) or a vector.

    `metadata` is a dict, or a string that already holds JSON (sent as is). With a vector,
    `content_sha256` (hex) names the image it came from, so that the same image stored under
    another key is reported a duplicate, as when the server embeds it."""

    key: str = ""
    label: str = ""
    metadata: Union[dict, str, None] = None
    image: Union[bytes, str, os.PathLike, None] = None
    vector: Optional[np.ndarray] = None
    content_sha256: str = ""


@dataclass
class Pool:
    name: str
    dim: int
    dtype: str
    backbone: str
    items: int
    label_counts: Dict[str, int] = field(default_factory=dict)
    weights: str = ""  # the checkpoint the backbone loads (a path on the server), if not built in
    pooling: str = ""


@dataclass
class ItemOutcome:
    """What became of one streamed item: stored, duplicate (reason: the key that holds the
    same content), present (the key was stored already) or failed (reason: why)."""

    key: str
    outcome: str
    reason: str = ""


@dataclass
class IngestSummary:
    received: int
    stored: int
    duplicates: int
    present: int
    failed: int
    errors: List[tuple]
    pool_items: int
    outcomes: List[ItemOutcome] = field(default_factory=list)  # with ingest(itemize=True)


@dataclass
class Job:
    id: str
    pool: str
    state: str
    total: int
    done: int
    stored: int
    duplicates: int
    failed: int
    present: int
    errors: List[tuple]
    error: str

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed", "cancelled")


@dataclass
class Hit:
    row: int
    key: str
    label: str
    distance: float


@dataclass
class Finding:
    error_index: int
    rank: int
    distance: float


@dataclass
class DebugItem:
    row: int
    key: str
    label: str
    best_distance: float
    found_by: List[Finding]
    support: int = 1  # how many error samples found it
    suggested_label: Optional[str] = None  # the label to train with, where the policy replaced it
    label_confidence: Optional[float] = None  # vote share of the label handed to training
    weak_label_plausible: Optional[bool] = None  # None: no labelled error sample found it
    gap: Optional[float] = None  # squared l2 to the nearest reference item (with a reference)
    gap_percentile: Optional[float] = None  # share of the pool nearer to the reference
    distance_percentile: Optional[float] = None  # of best_distance among the pool's NN distances
    mode: int = 0  # failure mode of the nearest error sample that found it

    @property
    def train_label(self) -> str:
        """The label to train with: the suggested one, else the weak one."""
        return self.suggested_label if self.suggested_label is not None else self.label


@dataclass
class Coverage:
    error_index: int
    found: int
    kept: int
    nearest: float
    error: str


@dataclass
class Veto:
    row: int
    key: str
    distance: float  # to its nearest error sample
    negative: str  # "negatives[i]", or the key of the negative pool's item
    negative_distance: float


@dataclass
class Collision:
    row: int
    key: str
    held_out: str  # "holdout[i]", or the key of the holdout pool's item
    distance: float


@dataclass
class DebugSet:
    items: List[DebugItem]
    coverage: List[Coverage]
    label_counts: Dict[str, int]
    distances: Dict[str, float]
    backbone: str
    engine: str
    pool_items: int
    funnel: Dict[str, int] = field(default_factory=dict)  # why candidates were left out
    label_policy: str = "keep"  # as applied
    vetoes: List[Veto] = field(default_factory=list)  # candidates the negatives removed
    collisions: List[Collision] = field(default_factory=list)  # candidates the holdout removed
    # With a reference pool: its name, items, gap sample, and the label estimate fitted on it
    # (classes, fitted_on, error_samples, train_accuracy) or why there is none.
    reference: Optional[Dict[str, object]] = None
    # Failure modes: error_indices, budget (its share, where split), kept, funnel.
    modes: List[Dict[str, object]] = field(default_factory=list)
    # label_targets not met: how many items each label is short.
    label_shortfall: Dict[str, int] = field(default_factory=dict)
    saved_as: str = ""  # the name it was saved under (save_as), else empty
    # With from_set: from_set, accepted (items added as error samples), rejected (as
    # negatives), first_accepted_error, inherited_inputs.
    round: Optional[Dict[str, object]] = None

    @property
    def keys(self) -> List[str]:
        return [i.key for i in self.items]


ErrorSample = Union[str, os.PathLike, bytes, np.ndarray, Key, Labelled]


@dataclass
class SavedItem:
    row: int
    key: str
    label: str  # weak label
    train_label: str  # the label handed to training ("" for none)
    distance: float  # squared l2 to the nearest error sample
    mode: int
    support: int
    found_by: List[int] = field(default_factory=list)  # error samples that found it
    review: Optional["Review"] = None  # its latest verdict; None: not reviewed


@dataclass
class Review:
    key: str
    verdict: str  # accept, reject, relabel or clear
    label: str  # with relabel: the reviewer's label
    reviewer: str
    at_unix_ms: int


@dataclass
class SavedSet:
    """A saved debug-train set: `manifest` rebuilds it exactly (the pool as it was, every
    parameter, the inputs as the vectors they resolved to, the dcd version); `summary` is what
    the build reported. A listing leaves manifest, summary and items empty."""
    name: str
    pool: str
    parent: str  # "" for a first round
    created_unix: int
    item_count: int
    manifest: Dict[str, object] = field(default_factory=dict)
    summary: Dict[str, object] = field(default_factory=dict)
    items: List[SavedItem] = field(default_factory=list)


@dataclass
class SetDiff:
    added: List[SavedItem]
    removed: List[SavedItem]
    relabelled: List[tuple]  # (item in the first set, item in the second)


@dataclass
class Evaluation:
    """What `Client.evaluate` found: the curve's points (k, budget, items, score, win_rate,
    label_win_rate, nearest and random_nearest medians, coverage shares per threshold)."""
    folds: int  # 0: scored on held_out
    scored: int
    labelled: int
    skipped: List[str]
    thresholds: List[tuple]  # (share of the pool's nearest-neighbour distances, squared l2)
    points: List[Dict[str, object]]


def _wrap(err: grpc.RpcError) -> DcdError:
    return DcdError(err.code().name, err.details() or "")


def _error_samples(samples: Iterable[ErrorSample]) -> List[pb.ErrorSample]:
    out = []
    for s in samples:
        if isinstance(s, Labelled):
            qs = _queries([s.sample])
            if len(qs) != 1:
                raise ValueError("a Labelled sample holds one image, vector or Key")
            e = pb.ErrorSample(label=s.label, weight=s.weight)
            e.MergeFromString(qs[0].SerializeToString())  # the same fields 1-3 on the wire
            out.append(e)
        else:
            out.extend(pb.ErrorSample.FromString(q.SerializeToString()) for q in _queries([s]))
    return out


def _queries(samples: Iterable[ErrorSample]) -> List[pb.Query]:
    out = []
    for s in samples:
        if isinstance(s, Labelled):
            raise ValueError("labels are for debug_set's error samples, not search queries")
        if isinstance(s, Key):
            out.append(pb.Query(item_key=s.key))
        elif isinstance(s, bytes):
            out.append(pb.Query(image=s))
        elif isinstance(s, np.ndarray):
            rows = s.reshape(1, -1) if s.ndim == 1 else s
            for row in np.asarray(rows, dtype=np.float32):
                out.append(pb.Query(vector=pb.Vector(values=row.tolist())))
        else:
            path = pathlib.Path(s)
            if path.suffix == ".npy":
                out.extend(_queries([np.load(path)]))
            elif path.is_dir():
                files = sorted(p for p in path.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
                out.extend(pb.Query(image=p.read_bytes()) for p in files)
            else:
                out.append(pb.Query(image=path.read_bytes()))
    return out


def _job(j: pb.Job) -> Job:
    return Job(
        id=j.id, pool=j.pool, state=_JOB_STATES.get(j.state, "pending"), total=j.total,
        done=j.done, stored=j.stored, duplicates=j.duplicates, failed=j.failed,
        present=j.present, errors=[(e.key, e.reason) for e in j.errors], error=j.error,
    )


class Client:
    """A connection to `dcd serve`.

    `url` is host:port (or http://host:port); `api_key` is sent as a bearer token; `tls`
    (or an https:// url) connects with TLS, trusting `root_certificates` (PEM) when given.
    `timeout` is the deadline, in seconds, of every call.
    """

    def __init__(self, url: str = "127.0.0.1:50051", api_key: Optional[str] = None,
                 tls: bool = False, root_certificates: Optional[bytes] = None,
                 timeout: Optional[float] = None, max_message_mib: int = 64):
        target = url
        for prefix in ("http://", "https://"):
            if target.startswith(prefix):
                tls = tls or prefix == "https://"
                target = target[len(prefix):]
        options = [("grpc.max_receive_message_length", max_message_mib << 20),
                   ("grpc.max_send_message_length", max_message_mib << 20)]
        if tls:
            creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(target, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stub = rpc.DcdStub(self._channel)
        self._metadata = [("authorization", f"Bearer {api_key}")] if api_key else []
        self._timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method, request, **kw):
        try:
            return method(request, metadata=self._metadata, timeout=kw.get("timeout", self._timeout))
        except grpc.RpcError as e:
            raise _wrap(e) from None

    # Pools.
    def create_pool(self, name: str, backbone: Optional[str] = None, dim: Optional[int] = None,
                    dtype: str = "f32", weights: Optional[str] = None,
                    pooling: Optional[str] = None) -> Pool:
        """A pool of images embedded by `backbone`, or of raw `dim`-d vectors."""
        if dtype not in _DTYPES:
            raise ValueError(f"dtype {dtype!r}: use f32 or f16")
        p = self._call(self._stub.CreatePool, pb.CreatePoolRequest(
            name=name, backbone=backbone or "", dim=dim or 0, dtype=_DTYPES[dtype],
            weights=weights or "", pooling=pooling or ""))
        return self._pool(p)

    def get_pool(self, name: str) -> Pool:
        d = self._call(self._stub.GetPool, pb.GetPoolRequest(name=name))
        pool = self._pool(d.pool)
        pool.label_counts = dict(d.label_counts)
        return pool

    def list_pools(self) -> List[Pool]:
        return [self._pool(p) for p in self._call(self._stub.ListPools, pb.ListPoolsRequest()).pools]

    def delete_pool(self, name: str) -> int:
        return self._call(self._stub.DeletePool, pb.DeletePoolRequest(name=name)).items_deleted

    @staticmethod
    def _pool(p: pb.Pool) -> Pool:
        dtype = "f16" if p.dtype == pb.DTYPE_F16 else "f32"
        return Pool(name=p.name, dim=p.dim, dtype=dtype, backbone=p.backbone, items=p.items,
                    weights=p.weights, pooling=p.pooling)

    # Ingestion.
    def ingest(self, pool: str, items: Iterable[Item], itemize: bool = False) -> IngestSummary:
        """Streams items (images or vectors) into `pool`; committed in batches as they arrive.
        With `itemize`, the summary lists every item's outcome, in the order sent."""

        def messages() -> Iterator[pb.IngestItem]:
            for i, it in enumerate(items):
                meta = it.metadata if isinstance(it.metadata, str) else (
                    json.dumps(it.metadata) if it.metadata else "")
                msg = pb.IngestItem(pool=pool if i == 0 else "", itemize=itemize and i == 0,
                                    key=it.key, label=it.label, metadata_json=meta,
                                    content_sha256=it.content_sha256)
                if it.vector is not None:
                    msg.vector.values.extend(np.asarray(it.vector, dtype=np.float32).ravel().tolist())
                elif isinstance(it.image, bytes):
                    msg.image = it.image
                elif it.image is not None:
                    msg.image = pathlib.Path(it.image).read_bytes()
                    if not msg.key:
                        msg.key = str(pathlib.Path(it.image).resolve())
                yield msg

        try:
            s = self._stub.Ingest(messages(), metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as e:
            raise _wrap(e) from None
        return IngestSummary(received=s.received, stored=s.stored, duplicates=s.duplicates,
                             present=s.present, failed=s.failed,
                             errors=[(e.key, e.reason) for e in s.errors], pool_items=s.pool_items,
                             outcomes=[ItemOutcome(o.key, _OUTCOMES.get(o.outcome, "failed"), o.reason)
                                       for o in s.outcomes])

    def ingest_vectors(self, pool: str, vectors: np.ndarray, keys: Sequence[str],
                       labels: Optional[Sequence[str]] = None) -> IngestSummary:
        """Streams the rows of a 2-D array with their keys (and weak labels)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(keys) != len(vectors):
            raise ValueError("give a 2-D array and one key per row")
        labels = labels if labels is not None else [""] * len(keys)
        return self.ingest(pool, (Item(key=k, label=l, vector=v)
                                  for k, l, v in zip(keys, labels, vectors)))

    def ingest_folder(self, pool: str, folder: Union[str, os.PathLike], wait: bool = True,
                      progress: Optional[Callable[[Job], None]] = None) -> Job:
        """Starts a server-side job over an ImageFolder tree (or a .csv/.jsonl manifest) at
        an absolute path on the server, below one of its --allow-root directories. With
        `wait`, follows it to the end, calling `progress` on each update."""
        path = str(folder)
        req = (pb.StartIngestJobRequest(pool=pool, manifest=path)
               if path.endswith((".csv", ".jsonl", ".ndjson"))
               else pb.StartIngestJobRequest(pool=pool, folder=path))
        job = _job(self._call(self._stub.StartIngestJob, req))
        if not wait:
            return job
        try:
            for update in self._stub.WatchJob(pb.WatchJobRequest(id=job.id), metadata=self._metadata):
                job = _job(update)
                if progress:
                    progress(job)
        except grpc.RpcError as e:
            raise _wrap(e) from None
        return job

    def get_job(self, job_id: str) -> Job:
        return _job(self._call(self._stub.GetJob, pb.GetJobRequest(id=job_id)))

    def cancel_job(self, job_id: str) -> Job:
        return _job(self._call(self._stub.CancelJob, pb.CancelJobRequest(id=job_id)))

    # Features and neighbours.
    def embed(self, images: Sequence[Union[bytes, str, os.PathLike]], pool: Optional[str] = None,
              backbone: Optional[str] = None) -> np.ndarray:
        """Feature vectors of images (rows of NaN for images that did not decode)."""
        data = [i if isinstance(i, bytes) else pathlib.Path(i).read_bytes() for i in images]
        req = pb.EmbedRequest(images=data, pool=pool) if pool else pb.EmbedRequest(images=data, backbone=backbone or "")
        r = self._call(self._stub.Embed, req)
        out = np.full((len(data), r.dim), np.nan, dtype=np.float32)
        for i, res in enumerate(r.results):
            if res.WhichOneof("outcome") == "vector":
                out[i] = res.vector.values
        return out

    def search(self, pool: str, queries: Iterable[ErrorSample], k: int = 10, exact: bool = False,
               ef: int = 0, labels: Sequence[str] = ()) -> List[List[Hit]]:
        r = self._call(self._stub.Search, pb.SearchRequest(
            pool=pool, queries=_queries(queries), k=k, exact=exact, ef=ef, labels=list(labels)))
        return [[Hit(h.row, h.key, h.label, h.distance) for h in q.hits] for q in r.results]

    def debug_set(self, pool: str, errors: Iterable[ErrorSample], k: int = 50,
                  merge: str = "union", budget: Optional[int] = None,
                  max_distance: Optional[float] = None, labels: Sequence[str] = (),
                  exclude: Sequence[str] = (), exact: bool = False, exact_rerank: bool = False,
                  ef: int = 0, errors_pool: str = "", keep_duplicates: bool = False,
                  min_support: int = 1, label_policy: Optional[str] = None,
                  negatives: Iterable[ErrorSample] = (), negative_pool: str = "",
                  negative_margin: float = 1.0, holdout: Iterable[ErrorSample] = (),
                  holdout_pool: str = "", holdout_radius: float = 0.0,
                  dedup_distance: Optional[float] = None, reference_pool: str = "",
                  min_gap_percentile: Optional[float] = None,
                  max_distance_percentile: Optional[float] = None,
                  max_modes: Optional[int] = None,
                  mmr_lambda: Optional[float] = None,
                  max_per_label: Optional[int] = None,
                  label_caps: Optional[Dict[str, int]] = None,
                  label_targets: Optional[Dict[str, int]] = None,
                  save_as: str = "", parent: str = "", from_set: str = "",
                  accepted_weight: Optional[float] = None,
                  stream: bool = False) -> DebugSet:
        """The pool items nearest to the error samples: image paths or bytes, vectors
        (1-D or rows of a 2-D array, or .npy files), or `Key(...)` of stored items, each
        optionally wrapped in `Labelled(sample, label, weight)` (`image_folder(dir)` labels
        an ImageFolder of them).
        `min_support`: keep only items found by at least that many error samples.
        `label_policy`: "keep", "drop" or "replace" weak labels the labelled error samples
        that found an item do not support; None: drop when any sample is labelled.
        `negatives` (same kinds as errors, unlabelled) or `negative_pool` (every item of that
        pool): things the model already handles; a candidate nearer to one than
        `negative_margin` x its distance to the nearest error sample is dropped.
        `holdout` / `holdout_pool`: your held-out or test images; no item of the set lies within
        `holdout_radius` (squared l2; 0: identical only) of one, checked exactly.
        `dedup_distance`: no two items within it (squared l2), the nearest to a failure kept.
        `reference_pool`: a trusted pool (the model's training set, clean labels, same
        backbone): each item gets `gap` and `gap_percentile`, and a linear probe fitted on it
        (and the labelled error samples) judges weak labels; `min_gap_percentile` (0 to 1)
        drops items nearer to the reference than that share of the pool.
        `max_distance_percentile` (0 to 1): the distance cap as a percentile of the pool's own
        nearest-neighbour distances, instead of `max_distance`.
        `max_modes`: the error samples are grouped into at most that many failure modes
        (default 8; 1: one mode); with a `budget`, each mode gets a share by weight.
        `mmr_lambda` (0 to 1): diversity by maximal marginal relevance, the weight of nearness
        to the failures against distance from the items already taken (1: none).
        `max_per_label` / `label_caps` ({label: n}): most items of any / of that label handed
        to training; `label_targets` ({label: n}): part of the `budget` held for that label
        until it has n items (the set's `label_shortfall` says which fell short).
        `save_as`: save the set on the server under this name with the manifest that
        rebuilds it (`get_debug_set`); `parent`: the saved set whose review this round follows.
        `from_set`: build the next round after that reviewed saved set (`review_debug_set`):
        its accepted items join the error samples (weight `accepted_weight`, default 1), its
        rejected ones the negatives, every reviewed item is left out; with no `errors`, its
        own error samples, negatives and held-out inputs are used."""
        req = _debug_set_request(**{n: v for n, v in locals().items() if n not in ("self", "stream")})
        if stream:
            items, summary = [], None
            try:
                for chunk in self._stub.StreamDebugSet(req, metadata=self._metadata, timeout=self._timeout):
                    if chunk.WhichOneof("part") == "items":
                        items.extend(chunk.items.items)
                    else:
                        summary = chunk.summary
            except grpc.RpcError as e:
                raise _wrap(e) from None
        else:
            r = self._call(self._stub.BuildDebugSet, req)
            items, summary = r.items, r.summary
        q = summary.distances
        return DebugSet(
            items=[DebugItem(i.row, i.key, i.label, i.best_distance,
                             [Finding(f.error_index, f.rank, f.distance) for f in i.found_by],
                             i.support,
                             i.suggested_label if i.HasField("suggested_label") else None,
                             i.label_confidence if i.HasField("label_confidence") else None,
                             i.weak_label_plausible if i.HasField("weak_label_plausible") else None,
                             i.gap if i.HasField("gap") else None,
                             i.gap_percentile if i.HasField("gap_percentile") else None,
                             i.distance_percentile if i.HasField("distance_percentile") else None,
                             i.mode)
                   for i in items],
            coverage=[Coverage(c.error_index, c.found, c.kept, c.nearest, c.error) for c in summary.coverage],
            label_counts=dict(summary.label_counts),
            distances={"min": q.min, "p10": q.p10, "p50": q.p50, "p90": q.p90, "max": q.max},
            backbone=summary.backbone, engine=summary.engine, pool_items=summary.pool_items,
            funnel={f.name: getattr(summary.funnel, f.name) for f in pb.Funnel.DESCRIPTOR.fields},
            vetoes=[Veto(v.row, v.key, v.distance, v.negative, v.negative_distance)
                    for v in summary.vetoes],
            collisions=[Collision(c.row, c.key, c.held_out, c.distance) for c in summary.collisions],
            label_policy={v: k for k, v in _LABEL_POLICIES.items()}.get(
                summary.parameters.label_policy) or "keep",
            reference=_reference(summary),
            modes=[{"mode": m.mode, "error_indices": list(m.error_indices),
                    "budget": m.budget if m.HasField("budget") else None, "kept": m.kept,
                    "funnel": {f.name: getattr(m.funnel, f.name) for f in pb.Funnel.DESCRIPTOR.fields}}
                   for m in summary.modes],
            label_shortfall=dict(summary.label_shortfall),
            saved_as=summary.saved_as,
            round={"from_set": summary.round.from_set, "accepted": summary.round.accepted,
                   "rejected": summary.round.rejected,
                   "first_accepted_error": summary.round.first_accepted_error,
                   "inherited_inputs": summary.round.inherited_inputs}
            if summary.HasField("round") else None,
        )

    def get_debug_set(self, name: str) -> SavedSet:
        """A saved set with its manifest, summary and items (each with its latest review)."""
        r = self._call(self._stub.GetDebugSet, pb.GetDebugSetRequest(name=name))
        s = _saved_set(r.info)
        s.manifest = json.loads(r.manifest_json)
        s.summary = json.loads(r.summary_json)
        s.items = [_saved_item(i) for i in r.items]
        return s

    def review_history(self, name: str) -> List[Review]:
        """Every verdict given on the saved set's items, oldest first."""
        r = self._call(self._stub.GetDebugSet, pb.GetDebugSetRequest(name=name, history=True))
        return [_review(v) for v in r.history]

    def review_debug_set(self, name: str, verdict: str, keys: Sequence[str] = (),
                         label: str = "", all: bool = False, mode: Optional[int] = None,
                         weak_label: Optional[str] = None, error_index: Optional[int] = None,
                         unreviewed_only: bool = False, reviewer: str = "") -> int:
        """Marks items of a saved set: `verdict` is accept, reject, relabel (with `label`) or
        clear. The items: `keys`, or in bulk `all` / `mode` / `weak_label` ("" for none) /
        `error_index` (those matching every one given), `unreviewed_only` skipping the
        reviewed ones. Returns how many were marked; a key the set lacks marks nothing."""
        if verdict not in _VERDICTS:
            raise ValueError(f"verdict {verdict!r}: use one of {sorted(_VERDICTS)}")
        req = pb.ReviewDebugSetRequest(name=name, keys=list(keys), all=all,
                                       unreviewed_only=unreviewed_only,
                                       verdict=_VERDICTS[verdict], label=label, reviewer=reviewer)
        if mode is not None:
            req.mode = mode
        if weak_label is not None:
            req.weak_label = weak_label
        if error_index is not None:
            req.error_index = error_index
        return self._call(self._stub.ReviewDebugSet, req).reviewed

    def list_debug_sets(self, pool: str = "") -> List[SavedSet]:
        """Saved sets (of `pool` when given), newest first."""
        r = self._call(self._stub.ListDebugSets, pb.ListDebugSetsRequest(pool=pool))
        return [_saved_set(i) for i in r.sets]

    def delete_debug_set(self, name: str) -> None:
        self._call(self._stub.DeleteDebugSet, pb.DeleteDebugSetRequest(name=name))

    def diff_debug_sets(self, first: str, second: str) -> SetDiff:
        """What changed from one saved set to another, by key."""
        r = self._call(self._stub.DiffDebugSets, pb.DiffDebugSetsRequest(**{"from": first, "to": second}))
        return SetDiff([_saved_item(i) for i in r.added], [_saved_item(i) for i in r.removed],
                       [(_saved_item(getattr(x, "from")), _saved_item(x.to)) for x in r.relabelled])



    def evaluate(self, pool: str, errors: Iterable[ErrorSample], held_out: Iterable[ErrorSample] = (),
                 folds: Optional[int] = None, ks: Sequence[int] = (), budgets: Sequence[int] = (),
                 draws: Optional[int] = None, seed: int = 0, build_without_labels: bool = False,
                 **recipe) -> "Evaluation":
        """Scores a debug-set recipe without a model: sets built from part of the failures
        are measured on the rest (`folds` of `errors`, default 5, or `held_out`) against random
        sets of the same size, at every k of `ks` and budget of `budgets` (default: the
        recipe's). `recipe`: any keyword of `debug_set`; `build_without_labels` builds the
        sets as if the failures were unlabelled but still scores with their labels. Each point's `score` is the share of
        held-out failures the set brings an item of their true label nearer to than a random
        set does (0.5: random); `win_rate` counts any item."""
        req = pb.EvaluateDebugSetRequest(
            set=_debug_set_request(**{**_RECIPE_DEFAULTS, **recipe, "pool": pool, "errors": errors}),
            held_out=_error_samples(held_out), folds=folds or 0, ks=list(ks),
            budgets=list(budgets), random_draws=draws or 0, seed=seed,
            build_without_labels=build_without_labels)
        r = self._call(self._stub.EvaluateDebugSet, req)
        return Evaluation(
            folds=r.folds, scored=r.scored, labelled=r.labelled, skipped=list(r.skipped),
            thresholds=[(t.percentile, t.distance) for t in r.thresholds],
            points=[{"k": p.k, "budget": p.budget if p.HasField("budget") else None,
                     "items": p.items, "score": p.score, "win_rate": p.win_rate,
                     "label_win_rate": p.label_win_rate if p.HasField("label_win_rate") else None,
                     "nearest": p.nearest, "random_nearest": p.random_nearest,
                     "covered": list(p.covered), "random_covered": list(p.random_covered),
                     "label_covered": list(p.label_covered),
                     "random_label_covered": list(p.random_label_covered),
                     "useful": p.useful, "random_useful": p.random_useful, "near": p.near,
                     "agree": p.agree if p.HasField("agree") else None,
                     "random_agree": p.random_agree if p.HasField("random_agree") else None}
                    for p in r.points])

def _debug_set_request(pool, errors, k, merge, budget, max_distance, labels, exclude, exact,
                       exact_rerank, ef, errors_pool, keep_duplicates, min_support, label_policy,
                       negatives, negative_pool, negative_margin, holdout, holdout_pool,
                       holdout_radius, dedup_distance, reference_pool, min_gap_percentile,
                       max_distance_percentile, max_modes, mmr_lambda, max_per_label, label_caps,
                       label_targets, save_as, parent, from_set="",
                       accepted_weight=None) -> pb.BuildDebugSetRequest:
    """The wire request `Client.debug_set` documents."""
    if merge not in _MERGES:
        raise ValueError(f"merge {merge!r}: use one of {sorted(_MERGES)}")
    if label_policy not in _LABEL_POLICIES:
        raise ValueError(f"label_policy {label_policy!r}: use keep, drop, replace or None")
    req = pb.BuildDebugSetRequest(
        pool=pool, errors=_error_samples(errors), errors_pool=errors_pool, k=k,
        merge=_MERGES[merge], labels=list(labels), exclude_keys=list(exclude),
        exact_rerank=exact_rerank, exact=exact, ef=ef, keep_duplicates=keep_duplicates,
        min_support=min_support, label_policy=_LABEL_POLICIES[label_policy],
        negatives=_queries(negatives), negative_pool=negative_pool,
        negative_margin=negative_margin, holdout=_queries(holdout),
        holdout_pool=holdout_pool, holdout_radius=holdout_radius,
        reference_pool=reference_pool, save_as=save_as, parent=parent, from_set=from_set)
    if accepted_weight is not None:
        req.accepted_weight = accepted_weight
    if max_modes is not None:
        req.max_modes = max_modes
    if mmr_lambda is not None:
        req.mmr_lambda = mmr_lambda
    if max_per_label is not None:
        req.max_per_label = max_per_label
    req.label_caps.update(label_caps or {})
    req.label_targets.update(label_targets or {})
    if max_distance_percentile is not None:
        req.max_distance_percentile = max_distance_percentile
    if min_gap_percentile is not None:
        req.min_gap_percentile = min_gap_percentile
    if budget is not None:
        req.budget = budget
    if dedup_distance is not None:
        req.dedup_distance = dedup_distance
    if max_distance is not None:
        req.max_distance = max_distance
    return req

def _saved_set(i) -> SavedSet:
    return SavedSet(i.name, i.pool, i.parent, i.created_unix, i.items)


def _saved_item(i) -> SavedItem:
    return SavedItem(i.row, i.key, i.label, i.train_label, i.distance, i.mode, i.support,
                     list(i.found_by), _review(i.review) if i.HasField("review") else None)


_VERDICTS = {"accept": pb.VERDICT_ACCEPT, "reject": pb.VERDICT_REJECT,
             "relabel": pb.VERDICT_RELABEL, "clear": pb.VERDICT_CLEAR}


def _review(r) -> Review:
    names = {v: k for k, v in _VERDICTS.items()}
    return Review(r.key, names.get(r.verdict, "clear"), r.label, r.reviewer, r.at_unix_ms)


def _reference(summary) -> Optional[Dict[str, object]]:
    """The summary's reference section as a dict, or None where no reference was named."""
    if not summary.HasField("reference"):
        return None
    r = summary.reference
    out: Dict[str, object] = {"pool": r.pool, "items": r.items, "gap_sample": r.gap_sample,
                              "label_estimate": None, "no_label_estimate": r.no_label_estimate or None}
    if r.HasField("label_estimate"):
        e = r.label_estimate
        out["label_estimate"] = {"classes": list(e.classes), "fitted_on": e.fitted_on,
                                 "error_samples": e.error_samples,
                                 "train_accuracy": e.train_accuracy}
    return out


# What `Client.evaluate` fills a recipe in with: `debug_set`'s own defaults.
_RECIPE_DEFAULTS = {n: p.default for n, p in inspect.signature(Client.debug_set).parameters.items()
                    if p.default is not inspect.Parameter.empty and n != "stream"}
