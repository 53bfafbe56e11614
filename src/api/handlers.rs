//! The `dcd.v1.Dcd` service: each handler validates and converts the request, runs the
//! service call on the blocking pool (never on tonic's async threads) under the in-flight
//! limit, and converts the answer back.

use std::pin::Pin;
use std::sync::Arc;

use prost::Message;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::convert::{self, invalid};
use super::metrics::Metrics;
use super::pb;
use crate::error::Result;
use crate::service::jobs;
use crate::service::{CreatePool, ModelKey, SearchRequest, Service, StreamIngest};
use crate::store::JobSource;

/// Items per message of a streamed debug-train set.
const DEBUG_SET_CHUNK: usize = 1000;
/// Failed and duplicate entries listed in a job.
const JOB_ERRORS: usize = 100;
/// Jobs listed in a pool's details (the newest).
const POOL_JOBS: usize = 20;

type RpcStream<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send>>;

/// The gRPC front of a [`Service`].
#[derive(Clone)]
pub struct DcdApi {
    service: Arc<Service>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    /// Requests computing at once; the others admitted wait for a slot. A few per core keep
    /// every core busy without a thread (and an allocator heap) per request.
    compute: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    streams: super::StreamLimits,
    /// One permit per open Ingest stream.
    open_streams: Arc<Semaphore>,
    /// KiB of streamed items held uncommitted, over the server.
    stream_kib: Arc<Semaphore>,
}

/// How a call is admitted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// Under an in-flight permit (`--max-in-flight`) and a compute slot.
    Call,
    /// A client stream: it mostly waits on its client, so it takes neither (streams have a
    /// cap of their own, `--max-ingest-streams`); an idle stream must not keep a slot from
    /// the calls that compute.
    Stream,
}

/// What a stream's feed hands its worker: an item with its share of the byte budgets, or
/// a request to commit now (the feed is short of budget: committing frees it).
enum Feed {
    Item(pb::IngestItem, [OwnedSemaphorePermit; 2]),
    Commit,
}

/// Whole KiB covering `bytes` (at least 1: every item costs something).
fn kib(bytes: usize) -> u32 {
    bytes.div_ceil(1024).clamp(1, u32::MAX as usize) as u32
}

impl DcdApi {
    /// Serves `service`, refusing requests beyond `max_in_flight` at once.
    pub fn new(service: Arc<Service>, max_in_flight: usize, metrics: Arc<Metrics>) -> DcdApi {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        DcdApi {
            service,
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
            max_in_flight: max_in_flight.max(1),
            compute: Arc::new(Semaphore::new(2 * cores)),
            metrics,
            streams: super::StreamLimits::default(),
            open_streams: Arc::new(Semaphore::new(super::StreamLimits::default().max_streams)),
            stream_kib: Arc::new(Semaphore::new(
                kib(super::StreamLimits::default().max_total_bytes) as usize,
            )),
        }
    }

    /// With these bounds on Ingest streams.
    pub fn with_stream_limits(mut self, limits: super::StreamLimits) -> DcdApi {
        self.streams = limits;
        self.open_streams = Arc::new(Semaphore::new(limits.max_streams.max(1)));
        self.stream_kib = Arc::new(Semaphore::new(kib(limits.max_total_bytes) as usize));
        self
    }

    fn permit(&self) -> std::result::Result<OwnedSemaphorePermit, Status> {
        let permit = self.in_flight.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "the server is at its limit of {} requests in flight; retry with backoff, or start it with a higher --max-in-flight",
                self.max_in_flight
            ))
        })?;
        self.metrics
            .in_flight
            .set((self.max_in_flight - self.in_flight.available_permits()) as i64);
        Ok(permit)
    }

    /// Runs `f` on the blocking pool under an in-flight permit and a compute slot, with the
    /// caller's tracing span.
    async fn blocking<T, F>(&self, method: &'static str, f: F) -> std::result::Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Arc<Service>) -> Result<T> + Send + 'static,
    {
        self.run_blocking(method, Admission::Call, f).await
    }

    /// As [`DcdApi::blocking`], admitted as `admission` says.
    async fn run_blocking<T, F>(
        &self,
        method: &'static str,
        admission: Admission,
        f: F,
    ) -> std::result::Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Arc<Service>) -> Result<T> + Send + 'static,
    {
        let permit = match admission {
            Admission::Stream => None,
            Admission::Call => match self.permit() {
                Ok(p) => Some(p),
                Err(s) => {
                    self.metrics.observe(method, s.code(), 0.0);
                    return Err(s);
                }
            },
        };
        let started = std::time::Instant::now();
        let slot = if admission == Admission::Call {
            Some(
                self.compute
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| Status::unavailable("the server is shutting down"))?,
            )
        } else {
            None
        };
        let service = self.service.clone();
        let span = tracing::Span::current();
        // Dropped with this future (client gone, deadline passed): the work sees it and stops
        // at its next step.
        let (cancel_guard, cancelled) = crate::cancel::CancelOnDrop::new();
        let joined = tokio::task::spawn_blocking(move || {
            let _span = span.enter();
            let _permit = permit;
            let _slot = slot;
            crate::cancel::within(cancelled, || f(&service))
        })
        .await;
        cancel_guard.disarm();
        let result = match joined {
            Ok(r) => r.map_err(Status::from),
            Err(e) => Err(Status::internal(format!(
                "the request's worker failed: {e}"
            ))),
        };
        let code = result
            .as_ref()
            .map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        self.metrics
            .observe(method, code, started.elapsed().as_secs_f64());
        self.metrics
            .in_flight
            .set((self.max_in_flight - self.in_flight.available_permits()) as i64);
        result
    }
}

fn job_message(service: &Service, id: &str) -> Result<pb::Job> {
    let record = service.store().job(id)?;
    let problems = service.store().job_problems(id, JOB_ERRORS)?;
    Ok(convert::job(&record, problems))
}

#[tonic::async_trait]
impl pb::dcd_server::Dcd for DcdApi {
    async fn create_pool(
        &self,
        request: Request<pb::CreatePoolRequest>,
    ) -> std::result::Result<Response<pb::Pool>, Status> {
        let r = request.into_inner();
        let req = CreatePool {
            name: r.name,
            backbone: Some(r.backbone).filter(|b| !b.is_empty()),
            weights: Some(r.weights).filter(|w| !w.is_empty()),
            pooling: Some(r.pooling).filter(|p| !p.is_empty()),
            dim: Some(r.dim as usize).filter(|&d| d > 0),
            dtype: convert::dtype(r.dtype)?,
        };
        let record = self
            .blocking("CreatePool", move |s| s.create_pool(&req))
            .await?;
        Ok(Response::new(convert::pool(&record)))
    }

    async fn list_pools(
        &self,
        _request: Request<pb::ListPoolsRequest>,
    ) -> std::result::Result<Response<pb::ListPoolsResponse>, Status> {
        let pools = self.blocking("ListPools", |s| s.list_pools()).await?;
        Ok(Response::new(pb::ListPoolsResponse {
            pools: pools.iter().map(convert::pool).collect(),
        }))
    }

    async fn get_pool(
        &self,
        request: Request<pb::GetPoolRequest>,
    ) -> std::result::Result<Response<pb::PoolDetails>, Status> {
        let name = request.into_inner().name;
        let details = self
            .blocking("GetPool", move |s| {
                let d = s.pool_details(&name)?;
                let jobs = s
                    .store()
                    .jobs_of_pool(&name, POOL_JOBS)?
                    .iter()
                    .map(|j| job_message(s, &j.id))
                    .collect::<Result<Vec<_>>>()?;
                let mut details = convert::pool_details(&d, jobs);
                details.jobs_total = s.store().job_count(&name)?;
                Ok(details)
            })
            .await?;
        Ok(Response::new(details))
    }

    async fn delete_pool(
        &self,
        request: Request<pb::DeletePoolRequest>,
    ) -> std::result::Result<Response<pb::DeletePoolResponse>, Status> {
        let name = request.into_inner().name;
        let items = self
            .blocking("DeletePool", move |s| s.delete_pool(&name))
            .await?;
        Ok(Response::new(pb::DeletePoolResponse {
            items_deleted: items,
        }))
    }

    async fn ingest(
        &self,
        request: Request<Streaming<pb::IngestItem>>,
    ) -> std::result::Result<Response<pb::IngestSummary>, Status> {
        let limits = self.streams;
        // Streams wait on their clients: capped apart from the in-flight limit, so that idle
        // streams can never take every slot.
        let _stream = self.open_streams.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "the server has {} Ingest streams open, its limit; retry with backoff, or start it with a higher --max-ingest-streams",
                limits.max_streams
            ))
        })?;
        let mut stream = request.into_inner();
        let idle = |what: &str| {
            Status::deadline_exceeded(format!(
                "no {what} for {} s (--stream-idle-timeout-s); the stream is closed, items committed before stay stored",
                limits.idle_timeout.as_secs()
            ))
        };
        let first = match tokio::time::timeout(limits.idle_timeout, stream.next()).await {
            Err(_) => return Err(idle("first item")),
            Ok(Some(item)) => item.map_err(super::decode_errors::reclassify_status)?,
            Ok(None) => {
                return Err(invalid(
                    "items",
                    "the stream is empty: send at least one item",
                ))
            }
        };
        if first.pool.is_empty() {
            return Err(invalid(
                "pool",
                "set the pool on the first item of the stream",
            ));
        }
        // The blocking side commits batches while this side keeps reading the stream. Each
        // item carries its share of two byte budgets (the stream's, the server's) until its
        // batch is committed; a feed short of budget asks for a commit, which frees it.
        let (tx, mut rx) = mpsc::channel::<Feed>(1024);
        let pool = first.pool.clone();
        let worker = self.run_blocking("Ingest", Admission::Stream, move |s| {
            let mut ingest = StreamIngest::start(s.clone(), &pool)?;
            let mut held: Vec<[OwnedSemaphorePermit; 2]> = Vec::new();
            while let Some(feed) = rx.blocking_recv() {
                let (item, permits) = match feed {
                    Feed::Item(item, permits) => (item, permits),
                    Feed::Commit => {
                        ingest.commit()?;
                        held.clear();
                        continue;
                    }
                };
                if !item.pool.is_empty() && item.pool != pool {
                    return Err(crate::service::ServiceError::InvalidArgument {
                        field: "pool",
                        reason: format!(
                            "one stream fills one pool: it started with {pool:?} and an item names {:?}",
                            crate::types::clip_for_message(&item.pool, 100)
                        ),
                    }
                    .into());
                }
                let item = convert::ingest_item(item).map_err(|st| {
                    crate::service::ServiceError::InvalidArgument {
                        field: "items",
                        reason: st.message().to_owned(),
                    }
                })?;
                ingest.push(item)?;
                held.push(permits);
                if ingest.pending() == 0 {
                    held.clear();
                }
            }
            ingest.finish()
        });
        let own_kib = Arc::new(Semaphore::new(kib(limits.max_stream_bytes) as usize));
        let shared_kib = self.stream_kib.clone();
        let feed = async move {
            let mut next = Some(first);
            loop {
                let item = match next.take() {
                    Some(item) => item,
                    None => match tokio::time::timeout(limits.idle_timeout, stream.next()).await {
                        Err(_) => return Err(idle("item")),
                        Ok(None) => break,
                        Ok(Some(item)) => item.map_err(super::decode_errors::reclassify_status)?,
                    },
                };
                let cost = kib(item.encoded_len());
                let mut permits = Vec::with_capacity(2);
                let budgets = [
                    (&own_kib, kib(limits.max_stream_bytes)),
                    (&shared_kib, kib(limits.max_total_bytes)),
                ];
                for (budget, size) in budgets {
                    // An item larger than a whole budget takes all of it.
                    let cost = cost.min(size);
                    let permit = match budget.clone().try_acquire_many_owned(cost) {
                        Ok(p) => p,
                        Err(_) => {
                            if tx.send(Feed::Commit).await.is_err() {
                                return Ok(());
                            }
                            match tokio::time::timeout(
                                limits.idle_timeout,
                                budget.clone().acquire_many_owned(cost),
                            )
                            .await
                            {
                                Ok(Ok(p)) => p,
                                _ => {
                                    return Err(Status::resource_exhausted(format!(
                                        "the server holds {} MiB of streamed items not yet stored (--max-ingest-mib) and none was freed for {} s; retry with backoff",
                                        limits.max_total_bytes >> 20,
                                        limits.idle_timeout.as_secs()
                                    )))
                                }
                            }
                        }
                    };
                    permits.push(permit);
                }
                let permits: [OwnedSemaphorePermit; 2] = permits.try_into().expect("two budgets");
                if tx.send(Feed::Item(item, permits)).await.is_err() {
                    // The worker stopped (its error is the answer).
                    break;
                }
            }
            Ok::<(), Status>(())
        };
        let (summary, fed) = tokio::join!(worker, feed);
        let summary = summary?;
        fed?;
        self.metrics.vectors_stored.inc_by(summary.stored);
        Ok(Response::new(convert::ingest_summary(summary)))
    }

    async fn start_ingest_job(
        &self,
        request: Request<pb::StartIngestJobRequest>,
    ) -> std::result::Result<Response<pb::Job>, Status> {
        let r = request.into_inner();
        let source = match r.source {
            Some(pb::start_ingest_job_request::Source::Folder(f)) => JobSource::Folder(f.into()),
            Some(pb::start_ingest_job_request::Source::Manifest(m)) => {
                JobSource::Manifest(m.into())
            }
            None => return Err(invalid("source", "set folder or manifest")),
        };
        let pool = r.pool;
        let job = self
            .blocking("StartIngestJob", move |s| {
                let job = jobs::start(s, &pool, source)?;
                job_message(s, &job.id)
            })
            .await?;
        Ok(Response::new(job))
    }

    type WatchJobStream = RpcStream<pb::Job>;

    async fn watch_job(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> std::result::Result<Response<Self::WatchJobStream>, Status> {
        let id = request.into_inner().id;
        let rx = {
            let id = id.clone();
            self.blocking("WatchJob", move |s| jobs::watch(s, &id))
                .await?
        };
        let (tx, out) = mpsc::channel(4);
        let service = self.service.clone();
        tokio::spawn(async move {
            let mut rx = rx;
            // Progress comes from the job's own record (no catalog reads per update); the
            // final update is read from the catalog, with the job's failed and duplicate entries.
            loop {
                let record = rx.borrow_and_update().clone();
                if record.state.is_final() {
                    break;
                }
                if tx
                    .send(Ok(convert::job(&record, Vec::new())))
                    .await
                    .is_err()
                {
                    return;
                }
                if rx.changed().await.is_err() {
                    break;
                }
            }
            let (s, id2) = (service.clone(), id.clone());
            let last = match tokio::task::spawn_blocking(move || job_message(&s, &id2)).await {
                Ok(Ok(m)) => Ok(m),
                Ok(Err(e)) => Err(Status::from(e)),
                Err(e) => Err(Status::internal(e.to_string())),
            };
            let _ = tx.send(last).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> std::result::Result<Response<pb::Job>, Status> {
        let id = request.into_inner().id;
        let job = self
            .blocking("GetJob", move |s| job_message(s, &id))
            .await?;
        Ok(Response::new(job))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> std::result::Result<Response<pb::Job>, Status> {
        let id = request.into_inner().id;
        let job = self
            .blocking("CancelJob", move |s| {
                jobs::cancel(s, &id)?;
                job_message(s, &id)
            })
            .await?;
        Ok(Response::new(job))
    }

    async fn embed(
        &self,
        request: Request<pb::EmbedRequest>,
    ) -> std::result::Result<Response<pb::EmbedResponse>, Status> {
        let r = request.into_inner();
        if r.images.is_empty() {
            return Err(invalid("images", "send at least one image"));
        }
        let model = r
            .model
            .ok_or_else(|| invalid("model", "set backbone or pool"))?;
        let images = r.images;
        let response = self
            .blocking("Embed", move |s| {
                s.check_images(images.len())?;
                let embedder = match model {
                    pb::embed_request::Model::Backbone(b) => s.models().get(&ModelKey {
                        backbone: b,
                        weights: None,
                        pooling: "cls".into(),
                    })?,
                    pb::embed_request::Model::Pool(p) => {
                        let record = s.pool(&p)?.record();
                        s.pool_model(&record)?
                    }
                };
                let inputs = images
                    .into_iter()
                    .enumerate()
                    .map(|(i, bytes)| crate::features::pipeline::ImageInput::Bytes {
                        name: format!("image {i}"),
                        bytes,
                    })
                    .collect();
                let results = embedder.embed(inputs);
                Ok(pb::EmbedResponse {
                    dim: embedder.dim() as u32,
                    results: results
                        .into_iter()
                        .map(|r| pb::EmbedResult {
                            outcome: Some(match r {
                                Ok(values) => {
                                    pb::embed_result::Outcome::Vector(pb::Vector { values })
                                }
                                Err(e) => pb::embed_result::Outcome::Error(e.to_string()),
                            }),
                        })
                        .collect(),
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn search(
        &self,
        request: Request<pb::SearchRequest>,
    ) -> std::result::Result<Response<pb::SearchResponse>, Status> {
        let r = request.into_inner();
        let queries = r
            .queries
            .into_iter()
            .enumerate()
            .map(|(i, q)| convert::query(i, q))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let req = SearchRequest {
            pool: r.pool,
            queries,
            k: r.k as usize,
            ef: Some(r.ef as usize).filter(|&e| e > 0),
            exact: r.exact,
            labels: r.labels,
        };
        let (results, _engine) = self.blocking("Search", move |s| s.search(&req)).await?;
        Ok(Response::new(pb::SearchResponse {
            results: results
                .into_iter()
                .map(|r| match r {
                    Ok(hits) => pb::QueryResult {
                        hits: hits.into_iter().map(convert::hit).collect(),
                        error: String::new(),
                    },
                    Err(error) => pb::QueryResult {
                        hits: Vec::new(),
                        error,
                    },
                })
                .collect(),
        }))
    }

    async fn build_debug_set(
        &self,
        request: Request<pb::BuildDebugSetRequest>,
    ) -> std::result::Result<Response<pb::DebugSet>, Status> {
        let wire = request.into_inner();
        let req = convert::debug_set_request(&wire)?;
        // The conversion runs on the blocking thread too: thousands of items are not free.
        let set = self
            .blocking("BuildDebugSet", move |s| {
                let result = s.build_debug_set(&req)?;
                let summary = convert::debug_set_summary(&result, &wire);
                Ok(pb::DebugSet {
                    items: result.items.into_iter().map(convert::debug_item).collect(),
                    summary: Some(summary),
                })
            })
            .await?;
        Ok(Response::new(set))
    }

    async fn evaluate_debug_set(
        &self,
        request: Request<pb::EvaluateDebugSetRequest>,
    ) -> std::result::Result<Response<pb::DebugSetEvaluation>, Status> {
        let req = super::evaluation::evaluation_request(&request.into_inner())?;
        let evaluation = self
            .blocking("EvaluateDebugSet", move |s| {
                Ok(super::evaluation::evaluation(&s.evaluate_debug_set(&req)?))
            })
            .await?;
        Ok(Response::new(evaluation))
    }

    type StreamDebugSetStream = RpcStream<pb::DebugSetChunk>;

    async fn stream_debug_set(
        &self,
        request: Request<pb::BuildDebugSetRequest>,
    ) -> std::result::Result<Response<Self::StreamDebugSetStream>, Status> {
        let wire = request.into_inner();
        let req = convert::debug_set_request(&wire)?;
        let result = self
            .blocking("StreamDebugSet", move |s| s.build_debug_set(&req))
            .await?;
        let summary = convert::debug_set_summary(&result, &wire);
        // Each message is converted when the stream is ready for it: the set is held once
        // (as service items), not a second time as every message at once.
        let mut items = result.items.into_iter().peekable();
        let mut summary = Some(summary);
        let chunks = std::iter::from_fn(move || {
            if items.peek().is_some() {
                let part: Vec<pb::DebugItem> = items
                    .by_ref()
                    .take(DEBUG_SET_CHUNK)
                    .map(convert::debug_item)
                    .collect();
                return Some(Ok(pb::DebugSetChunk {
                    part: Some(pb::debug_set_chunk::Part::Items(pb::DebugItems {
                        items: part,
                    })),
                }));
            }
            summary.take().map(|s| {
                Ok(pb::DebugSetChunk {
                    part: Some(pb::debug_set_chunk::Part::Summary(s)),
                })
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }
}
