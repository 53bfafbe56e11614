//! The `dcd.v1.Dcd` service: each handler validates and converts the request, runs the
//! service call as every call runs (`calls`: admitted, on the blocking pool, in its span), and
//! converts the answer back.

use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::calls::rpc_span;
use super::convert::{self, invalid};
use super::pb;
use super::saved_sets;
use super::DcdApi;
use crate::error::Result;
use crate::service::jobs;
use crate::service::{CreatePool, ModelKey, SearchRequest, Service};
use crate::store::JobSource;

/// Items per message of a streamed debug-train set.
const DEBUG_SET_CHUNK: usize = 1000;
/// Failed and duplicate entries listed in a job.
const JOB_ERRORS: usize = 100;
/// Jobs listed in a pool's details (the newest).
const POOL_JOBS: usize = 20;

type RpcStream<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send>>;

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
            pooling: convert::pooling(&r.pooling)?,
            dim: Some(r.dim as usize).filter(|&d| d > 0),
            dtype: convert::dtype(r.dtype)?,
        };
        let record = self
            .blocking("CreatePool", req.name.clone(), move |s| {
                Ok(s.create_pool(&req)?)
            })
            .await?;
        Ok(Response::new(convert::pool(&record)))
    }

    async fn list_pools(
        &self,
        _request: Request<pb::ListPoolsRequest>,
    ) -> std::result::Result<Response<pb::ListPoolsResponse>, Status> {
        let pools = self
            .blocking("ListPools", String::new(), |s| Ok(s.list_pools()?))
            .await?;
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
            .blocking("GetPool", name.clone(), move |s| {
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
            .blocking("DeletePool", name.clone(), move |s| {
                Ok(s.delete_pool(&name)?)
            })
            .await?;
        Ok(Response::new(pb::DeletePoolResponse {
            items_deleted: items,
        }))
    }

    async fn ingest(
        &self,
        request: Request<Streaming<pb::IngestItem>>,
    ) -> std::result::Result<Response<pb::IngestSummary>, Status> {
        self.ingest_stream(request).await
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
            .blocking("StartIngestJob", pool.clone(), move |s| {
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
            self.blocking("WatchJob", String::new(), move |s| Ok(jobs::watch(s, &id)?))
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
            .blocking("GetJob", String::new(), move |s| job_message(s, &id))
            .await?;
        Ok(Response::new(job))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> std::result::Result<Response<pb::Job>, Status> {
        let id = request.into_inner().id;
        let job = self
            .blocking("CancelJob", String::new(), move |s| {
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
            .blocking("Embed", String::new(), move |s| {
                s.check_images(images.len())?;
                let embedder = match model {
                    pb::embed_request::Model::Backbone(b) => s.models().get(&ModelKey {
                        backbone: b,
                        weights: None,
                        pooling: crate::settings::Pooling::Cls,
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
        let (results, _engine) = self
            .blocking("Search", req.pool.clone(), move |s| Ok(s.search(&req)?))
            .await?;
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
        let save = saved_sets::save_as(&wire)?;
        // The conversion runs on the blocking thread too: thousands of items are not free.
        let set = self
            .blocking("BuildDebugSet", req.pool.clone(), move |s| {
                let (result, saved_as) = saved_sets::build(s, &req, save.as_ref())?;
                let mut summary = convert::debug_set_summary(&result, &wire);
                summary.saved_as = saved_as;
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
            .blocking("EvaluateDebugSet", req.recipe.pool.clone(), move |s| {
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
        let save = saved_sets::save_as(&wire)?;
        let pool = req.pool.clone();
        let (result, saved_as) = self
            .blocking("StreamDebugSet", pool.clone(), move |s| {
                saved_sets::build(s, &req, save.as_ref())
            })
            .await?;
        // Messages are converted on a blocking thread of their own (no compute slot: it
        // waits on the client), a chunk at a time as the stream takes them, so the set is held
        // once (as service items), never a second time as every message at once.
        let (tx, rx) = mpsc::channel(2);
        let span = rpc_span("StreamDebugSet", &pool);
        tokio::task::spawn_blocking(move || {
            let _span = span.enter();
            let mut summary = convert::debug_set_summary(&result, &wire);
            summary.saved_as = saved_as;
            let mut items = result.items.into_iter();
            // False once the client is gone, and with it the need for the rest.
            let send = |part| {
                tx.blocking_send(Ok(pb::DebugSetChunk { part: Some(part) }))
                    .is_ok()
            };
            loop {
                let part: Vec<pb::DebugItem> = items
                    .by_ref()
                    .take(DEBUG_SET_CHUNK)
                    .map(convert::debug_item)
                    .collect();
                if part.is_empty() {
                    break;
                }
                if !send(pb::debug_set_chunk::Part::Items(pb::DebugItems {
                    items: part,
                })) {
                    return;
                }
            }
            send(pb::debug_set_chunk::Part::Summary(summary));
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_debug_set(
        &self,
        request: Request<pb::GetDebugSetRequest>,
    ) -> std::result::Result<Response<pb::SavedDebugSet>, Status> {
        saved_sets::get(self, request.into_inner()).await
    }

    async fn list_debug_sets(
        &self,
        request: Request<pb::ListDebugSetsRequest>,
    ) -> std::result::Result<Response<pb::ListDebugSetsResponse>, Status> {
        saved_sets::list(self, request.into_inner()).await
    }

    async fn delete_debug_set(
        &self,
        request: Request<pb::DeleteDebugSetRequest>,
    ) -> std::result::Result<Response<pb::DeleteDebugSetResponse>, Status> {
        saved_sets::delete(self, request.into_inner()).await
    }

    async fn diff_debug_sets(
        &self,
        request: Request<pb::DiffDebugSetsRequest>,
    ) -> std::result::Result<Response<pb::DebugSetDiff>, Status> {
        saved_sets::diff(self, request.into_inner()).await
    }

    async fn review_debug_set(
        &self,
        request: Request<pb::ReviewDebugSetRequest>,
    ) -> std::result::Result<Response<pb::ReviewDebugSetResponse>, Status> {
        saved_sets::review(self, request.into_inner()).await
    }
}
