//! A blocking client for the CLI's `--server` mode: the same domain types as the local
//! service in and out, gRPC underneath.

use std::collections::BTreeMap;
use std::path::Path;

use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::Request;

use super::convert;
use super::from_pb;
use super::pb;
use super::pb::dcd_client::DcdClient;
use super::status::remote_error;
use crate::debugset::{Finding, LabelVerdict, Quantiles};
use crate::error::{Error, Result};
use crate::error_kind::ErrorKind;
use crate::service::{
    CollisionReport, DebugItem, DebugSetRequest, DebugSetResult, ErrorCoverage, EvaluationRequest,
    EvaluationResult, IngestItem, ItemContent, ModeReport, PoolDetails, ReviewRequest, RoundReport,
    SavedDebugSet, SearchOutcome, SearchRequest, SetDiff, SetOverview, StreamSummary, VetoReport,
};
use crate::store::{JobRecord, JobSource, JobState, JobTally, PoolRecord, Review, SavedSet};

/// A connection to a dcd server.
pub struct RemoteService {
    runtime: tokio::runtime::Runtime,
    client: DcdClient<Channel>,
    api_key: Option<MetadataValue<tonic::metadata::Ascii>>,
}

/// A job as the server reports it, with its first problems.
#[derive(Clone, Debug)]
pub struct RemoteJob {
    /// The record.
    pub record: JobRecord,
    /// (key, reason) of failed and duplicate entries.
    pub problems: Vec<(String, String)>,
}

impl RemoteService {
    /// Connects to `url` (http:// or https://).
    pub fn connect(url: &str, api_key: Option<&str>) -> Result<RemoteService> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?;
        let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| {
            Error::Usage(format!(
                "--server {url}: {e}; use e.g. http://127.0.0.1:50051"
            ))
        })?;
        let channel = runtime.block_on(endpoint.connect()).map_err(|e| {
            Error::Network(format!(
                "cannot connect to {url}: {e}; is `dcd serve` running there?"
            ))
        })?;
        let api_key = api_key
            .map(|k| {
                format!("Bearer {k}")
                    .parse()
                    .map_err(|_| Error::Usage("the API key must be printable ASCII".into()))
            })
            .transpose()?;
        Ok(RemoteService {
            runtime,
            client: DcdClient::new(channel)
                .max_decoding_message_size(256 << 20)
                .max_encoding_message_size(256 << 20),
            api_key,
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut r = Request::new(message);
        if let Some(k) = &self.api_key {
            r.metadata_mut().insert("authorization", k.clone());
        }
        r
    }

    /// Creates a pool (`CreatePool`); returns its record.
    pub fn create_pool(&mut self, req: &crate::service::CreatePool) -> Result<PoolRecord> {
        let create = self.request(pb::CreatePoolRequest {
            name: req.name.clone(),
            backbone: req.backbone.clone().unwrap_or_default(),
            weights: req.weights.clone().unwrap_or_default(),
            pooling: req.pooling.map(|p| p.name().to_owned()).unwrap_or_default(),
            dim: req.dim.map_or(Ok(0), u32::try_from).map_err(|_| {
                Error::Usage(format!("--dim {}: too large", req.dim.unwrap_or_default()))
            })?,
            dtype: super::convert::dtype_pb(req.dtype) as i32,
        });
        let pool = self
            .runtime
            .block_on(self.client.create_pool(create))
            .map_err(remote_error)?
            .into_inner();
        from_pb::pool_record(pool)
    }

    /// Every pool (`ListPools`).
    pub fn list_pools(&mut self) -> Result<Vec<PoolRecord>> {
        let req = self.request(pb::ListPoolsRequest {});
        let answer = self
            .runtime
            .block_on(self.client.list_pools(req))
            .map_err(remote_error)?
            .into_inner();
        answer.pools.into_iter().map(from_pb::pool_record).collect()
    }

    /// One pool with its labels and index state (`GetPool`).
    pub fn pool_details(&mut self, name: &str) -> Result<PoolDetails> {
        let req = self.request(pb::GetPoolRequest { name: name.into() });
        let answer = self
            .runtime
            .block_on(self.client.get_pool(req))
            .map_err(remote_error)?
            .into_inner();
        from_pb::pool_details(answer)
    }

    /// Deletes a pool (`DeletePool`); returns how many items it held.
    pub fn delete_pool(&mut self, name: &str) -> Result<u64> {
        let req = self.request(pb::DeletePoolRequest { name: name.into() });
        let answer = self
            .runtime
            .block_on(self.client.delete_pool(req))
            .map_err(remote_error)?
            .into_inner();
        Ok(answer.items_deleted)
    }

    /// k-NN search (`Search`): one result or per-query error per query. The engine is the
    /// server's, which the wire does not name.
    pub fn search(&mut self, req: &SearchRequest) -> Result<(SearchOutcome, String)> {
        let wire = pb::SearchRequest {
            pool: req.pool.clone(),
            queries: req.queries.iter().map(from_pb::query).collect(),
            k: u32::try_from(req.k).unwrap_or(u32::MAX),
            ef: req.ef.map_or(0, |e| u32::try_from(e).unwrap_or(u32::MAX)),
            exact: req.exact,
            labels: req.labels.clone(),
        };
        let r = self.request(wire);
        let answer = self
            .runtime
            .block_on(self.client.search(r))
            .map_err(remote_error)?
            .into_inner();
        let engine = if req.exact {
            "server (exact)"
        } else {
            "server"
        };
        Ok((
            answer
                .results
                .into_iter()
                .map(from_pb::query_result)
                .collect(),
            engine.into(),
        ))
    }

    /// Sends `items` to `pool` in one `Ingest` stream; returns its summary.
    pub fn ingest(&mut self, pool: &str, items: Vec<IngestItem>) -> Result<StreamSummary> {
        let messages: Vec<pb::IngestItem> = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| pb::IngestItem {
                pool: if i == 0 { pool.into() } else { String::new() },
                key: item.key,
                label: item.label.unwrap_or_default(),
                metadata_json: item.metadata.unwrap_or_default(),
                content: Some(match item.content {
                    ItemContent::Image(bytes) => pb::ingest_item::Content::Image(bytes),
                    ItemContent::Vector(values) => {
                        pb::ingest_item::Content::Vector(pb::Vector { values })
                    }
                }),
                content_sha256: item.content_sha256.unwrap_or_default(),
                itemize: false,
            })
            .collect();
        let r = self.request(tokio_stream::iter(messages));
        let answer = self
            .runtime
            .block_on(self.client.ingest(r))
            .map_err(remote_error)?
            .into_inner();
        Ok(from_pb::ingest_summary(answer))
    }

    /// `GetDebugSet` for `name`, with the review history and the overview when asked.
    fn get_debug_set(
        &mut self,
        name: &str,
        history: bool,
        overview: bool,
    ) -> Result<pb::SavedDebugSet> {
        let r = self.request(pb::GetDebugSetRequest {
            name: name.into(),
            history,
            overview,
        });
        Ok(self
            .runtime
            .block_on(self.client.get_debug_set(r))
            .map_err(remote_error)?
            .into_inner())
    }

    /// The saved set `name` with its manifest, summary, items and reviews (`GetDebugSet`).
    pub fn saved_debug_set(&mut self, name: &str) -> Result<SavedDebugSet> {
        from_pb::saved_debug_set(self.get_debug_set(name, false, false)?)
    }

    /// Saved sets (of `pool` when given), newest first (`ListDebugSets`).
    pub fn saved_debug_sets(&mut self, pool: Option<&str>) -> Result<Vec<SavedSet>> {
        let r = self.request(pb::ListDebugSetsRequest {
            pool: pool.unwrap_or_default().into(),
        });
        let answer = self
            .runtime
            .block_on(self.client.list_debug_sets(r))
            .map_err(remote_error)?
            .into_inner();
        Ok(answer.sets.into_iter().map(from_pb::saved_set).collect())
    }

    /// Deletes a saved set (`DeleteDebugSet`).
    pub fn delete_saved_debug_set(&mut self, name: &str) -> Result<()> {
        let r = self.request(pb::DeleteDebugSetRequest { name: name.into() });
        self.runtime
            .block_on(self.client.delete_debug_set(r))
            .map_err(remote_error)?;
        Ok(())
    }

    /// Every verdict given on the saved set's items, oldest first (`GetDebugSet` with
    /// `history`).
    pub fn review_history(&mut self, name: &str) -> Result<Vec<Review>> {
        let answer = self.get_debug_set(name, true, false)?;
        Ok(answer.history.into_iter().map(from_pb::review).collect())
    }

    /// The overview of a saved set: its map and a random sample of the pool (`GetDebugSet`
    /// with `overview`).
    pub fn set_overview(&mut self, name: &str) -> Result<SetOverview> {
        let answer = self.get_debug_set(name, false, true)?;
        serde_json::from_str(&answer.overview_json).map_err(|e| Error::Remote {
            kind: ErrorKind::Internal,
            message: format!("the server sent an overview that cannot be read: {e}"),
        })
    }

    /// Records a verdict for items of a saved set; returns how many (`ReviewDebugSet`).
    pub fn review_debug_set(&mut self, req: &ReviewRequest) -> Result<usize> {
        let r = self.request(super::saved_sets::wire_review_request(req));
        let answer = self
            .runtime
            .block_on(self.client.review_debug_set(r))
            .map_err(remote_error)?
            .into_inner();
        Ok(answer.reviewed as usize)
    }

    /// What changed from saved set `from` to `to` (`DiffDebugSets`).
    pub fn diff_saved_debug_sets(&mut self, from: &str, to: &str) -> Result<SetDiff> {
        let r = self.request(pb::DiffDebugSetsRequest {
            from: from.into(),
            to: to.into(),
        });
        let answer = self
            .runtime
            .block_on(self.client.diff_debug_sets(r))
            .map_err(remote_error)?
            .into_inner();
        Ok(from_pb::set_diff(answer))
    }

    /// Starts (or resumes) an ingestion job over a server-side path.
    pub fn start_job(&mut self, pool: &str, source: &JobSource) -> Result<RemoteJob> {
        let path = source.path().to_string_lossy().into_owned();
        let source = match source {
            JobSource::Folder(_) => pb::start_ingest_job_request::Source::Folder(path),
            JobSource::Manifest(_) => pb::start_ingest_job_request::Source::Manifest(path),
        };
        let req = self.request(pb::StartIngestJobRequest {
            pool: pool.into(),
            source: Some(source),
        });
        let job = self
            .runtime
            .block_on(self.client.start_ingest_job(req))
            .map_err(remote_error)?
            .into_inner();
        Ok(job_of(job))
    }

    /// Follows a job until it ends, calling `progress` on each update.
    pub fn watch_job(
        &mut self,
        id: &str,
        mut progress: impl FnMut(&RemoteJob),
    ) -> Result<RemoteJob> {
        let req = self.request(pb::WatchJobRequest { id: id.into() });
        let client = &mut self.client;
        self.runtime.block_on(async move {
            let mut stream = client
                .watch_job(req)
                .await
                .map_err(remote_error)?
                .into_inner();
            let mut last = None;
            while let Some(job) = stream.message().await.map_err(remote_error)? {
                let job = job_of(job);
                progress(&job);
                last = Some(job);
            }
            last.ok_or_else(|| Error::Remote {
                kind: ErrorKind::Unavailable,
                message: "the server closed the job feed without a word".into(),
            })
        })
    }

    /// Evaluates a debug-set recipe on the server.
    pub fn evaluate_debug_set(&mut self, req: &EvaluationRequest) -> Result<EvaluationResult> {
        let r = self.request(super::evaluation::wire_evaluation_request(req));
        let answer = self
            .runtime
            .block_on(self.client.evaluate_debug_set(r))
            .map_err(remote_error)?;
        Ok(super::evaluation::evaluation_of(&answer.into_inner()))
    }

    /// Builds a debug-train set on the server.
    pub fn debug_set(&mut self, req: &DebugSetRequest) -> Result<DebugSetResult> {
        let wire = convert::wire_debug_set_request(req);
        Ok(self.stream_debug_set(req, wire)?.0)
    }

    /// Builds a debug-train set on the server and saves it there as `name` (following the
    /// saved set `parent`); returns it and the name it was saved under.
    pub fn save_debug_set(
        &mut self,
        req: &DebugSetRequest,
        name: &str,
        parent: Option<&str>,
    ) -> Result<(DebugSetResult, String)> {
        let mut wire = convert::wire_debug_set_request(req);
        wire.save_as = name.into();
        wire.parent = parent.unwrap_or_default().into();
        self.stream_debug_set(req, wire)
    }

    fn stream_debug_set(
        &mut self,
        req: &DebugSetRequest,
        wire: pb::BuildDebugSetRequest,
    ) -> Result<(DebugSetResult, String)> {
        let r = self.request(wire);
        let client = &mut self.client;
        let (items, summary) = self.runtime.block_on(async move {
            let mut stream = client
                .stream_debug_set(r)
                .await
                .map_err(remote_error)?
                .into_inner();
            let mut items = Vec::new();
            let mut summary = None;
            while let Some(chunk) = stream.message().await.map_err(remote_error)? {
                match chunk.part {
                    Some(pb::debug_set_chunk::Part::Items(i)) => items.extend(i.items),
                    Some(pb::debug_set_chunk::Part::Summary(s)) => summary = Some(s),
                    None => {}
                }
            }
            Ok::<_, Error>((items, summary))
        })?;
        let summary = summary.ok_or_else(|| Error::Remote {
            kind: ErrorKind::Internal,
            message: "the server sent no summary for the set".into(),
        })?;
        let mut request = req.clone();
        if let Some(applied) = &summary.parameters {
            request.label_policy = convert::label_policy_of(applied.label_policy);
            request.merge.max_distance = applied.max_distance;
        }
        let saved_as = summary.saved_as.clone();
        let overview = match summary.overview_json.as_str() {
            "" => None,
            json => Some(serde_json::from_str(json).map_err(|e| Error::Remote {
                kind: ErrorKind::Internal,
                message: format!("the server sent an unreadable overview: {e}"),
            })?),
        };
        Ok((
            DebugSetResult {
                items: items
                    .into_iter()
                    .map(|i| DebugItem {
                        row: i.row as u32,
                        key: i.key,
                        label: Some(i.label).filter(|l| !l.is_empty()),
                        best_distance: i.best_distance,
                        support: i.support as usize,
                        found_by: i
                            .found_by
                            .iter()
                            .map(|f| Finding {
                                error: f.error_index as usize,
                                rank: f.rank as usize,
                                distance: f.distance,
                            })
                            .collect(),
                        gap: i.gap,
                        gap_percentile: i.gap_percentile,
                        distance_percentile: i.distance_percentile,
                        mode: i.mode as usize,
                        labels: LabelVerdict {
                            keep: true,
                            suggested_label: i.suggested_label,
                            label_confidence: i.label_confidence,
                            weak_label_plausible: i.weak_label_plausible,
                        },
                    })
                    .collect(),
                coverage: summary
                    .coverage
                    .iter()
                    .map(|c| ErrorCoverage {
                        mode: c.mode as usize,
                        found: c.found as usize,
                        kept: c.kept as usize,
                        nearest: (c.found > 0).then_some(c.nearest),
                        error: Some(c.error.clone()).filter(|e| !e.is_empty()),
                        funnel: c
                            .funnel
                            .as_ref()
                            .map(convert::funnel_of)
                            .unwrap_or_default(),
                    })
                    .collect(),
                label_counts: summary.label_counts.into_iter().collect::<BTreeMap<_, _>>(),
                distances: summary.distances.map(|q| Quantiles {
                    min: q.min,
                    p10: q.p10,
                    p50: q.p50,
                    p90: q.p90,
                    max: q.max,
                }),
                funnel: summary
                    .funnel
                    .as_ref()
                    .map(convert::funnel_of)
                    .unwrap_or_default(),
                vetoes: summary
                    .vetoes
                    .iter()
                    .map(|v| VetoReport {
                        row: v.row as u32,
                        key: v.key.clone(),
                        distance: v.distance,
                        negative: v.negative.clone(),
                        negative_distance: v.negative_distance,
                    })
                    .collect(),
                collisions: summary
                    .collisions
                    .iter()
                    .map(|c| CollisionReport {
                        row: c.row as u32,
                        key: c.key.clone(),
                        held_out: c.held_out.clone(),
                        distance: c.distance,
                    })
                    .collect(),
                reference: summary.reference.as_ref().map(convert::reference_of),
                modes: summary
                    .modes
                    .iter()
                    .map(|m| ModeReport {
                        mode: m.mode as usize,
                        errors: m.error_indices.iter().map(|&e| e as usize).collect(),
                        budget: m.budget.map(|b| b as usize),
                        kept: m.kept as usize,
                        funnel: m
                            .funnel
                            .as_ref()
                            .map(convert::funnel_of)
                            .unwrap_or_default(),
                    })
                    .collect(),
                mode_silhouette: summary.mode_silhouette,
                label_shortfall: summary
                    .label_shortfall
                    .iter()
                    .map(|(l, &n)| (l.clone(), n as usize))
                    .collect(),
                request,
                backbone: Some(summary.backbone).filter(|b| !b.is_empty()),
                engine: summary.engine,
                pool_items: summary.pool_items,
                excluded: summary.excluded as usize,
                round: summary.round.as_ref().map(|r| RoundReport {
                    from_set: r.from_set.clone(),
                    accepted: r.accepted as usize,
                    rejected: r.rejected as usize,
                    first_accepted_error: r.first_accepted_error as usize,
                    inherited_inputs: r.inherited_inputs,
                }),
                overview,
            },
            saved_as,
        ))
    }
}

fn job_of(j: pb::Job) -> RemoteJob {
    let state = match pb::JobState::try_from(j.state) {
        Ok(pb::JobState::Running) => JobState::Running,
        Ok(pb::JobState::Succeeded) => JobState::Succeeded,
        Ok(pb::JobState::Failed) => JobState::Failed,
        Ok(pb::JobState::Cancelled) => JobState::Cancelled,
        _ => JobState::Pending,
    };
    let source = Path::new(&j.source).to_owned();
    RemoteJob {
        record: JobRecord {
            id: j.id,
            pool: j.pool,
            source: JobSource::Folder(source),
            state,
            total: j.total,
            error: Some(j.error).filter(|e| !e.is_empty()),
            created_at: j.created_unix_ms / 1000,
            finished_at: (j.finished_unix_ms > 0).then_some(j.finished_unix_ms / 1000),
            tally: JobTally {
                stored: j.stored,
                duplicates: j.duplicates,
                failed: j.failed,
                present: j.present,
            },
        },
        problems: j.errors.into_iter().map(|e| (e.key, e.reason)).collect(),
    }
}
