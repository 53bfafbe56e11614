//! The service: what `dcd serve` answers and what the local CLI runs, as plain Rust calls on
//! domain types. It owns the store, the open pools with their indexes, the loaded models and
//! the ingestion jobs. Every call blocks (I/O, forward passes, searches): the gRPC layer runs
//! them off its async threads.

mod debug_set;
pub mod demo;
mod error;
mod ingest;
mod models;
mod paths;
mod query;
pub mod storage;
mod thumbnails;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;

pub use crate::limits::ServiceLimits;
pub use debug_set::export;
pub use debug_set::{
    next_round_request, CollisionReport, DebugItem, DebugSetRequest, DebugSetResult, ErrorCoverage,
    ErrorSample, EstimateReport, EvaluationPoint, EvaluationRequest, EvaluationResult,
    ItemSelector, ModeReport, PoolAtSave, ReferenceReport, ReviewCarry, ReviewRequest, RoundReport,
    SampledItem, SavedDebugSet, SavedInput, SetDiff, SetManifest, SetOverview, VetoReport,
    DEFAULT_ACCEPTED_WEIGHT, DEFAULT_DRAWS, DEFAULT_MAX_MODES, MAX_MODES,
};
pub use error::{Result, ServiceError};
pub use ingest::{
    content_hash_bytes, jobs, source, IngestItem, ItemContent, StreamIngest, StreamSummary,
};
pub use models::{ModelCache, ModelKey, ModelSettings};
pub use paths::AllowedRoots;
pub use query::{Hit, QueryInput, SearchOutcome, SearchRequest};
pub use storage::{PoolStorage, StoredPool};

use crate::index::graph::HnswParams;
use crate::index::manager::IndexStatus;
use crate::store::{PoolRecord, PoolSpec, Store, StoreError};
use crate::types::Dtype;
use storage::local::{Engines, ExactDevice, LocalStorage};

/// How the service runs.
#[derive(Clone, Debug)]
pub struct ServiceSettings {
    /// Directories whose files the server may read for jobs.
    pub roots: AllowedRoots,
    /// HNSW parameters for new indexes.
    pub index: HnswParams,
    /// Model placement and batching.
    pub models: ModelSettings,
    /// Where exact searches and re-ranking run.
    pub exact_device: crate::settings::Device,
    /// The GPU copy's element type for f32 pools (a half copy is certified).
    pub exact_copy: crate::settings::ExactCopy,
    /// How a GPU copy picks its search plan by batch size.
    pub exact_plans: crate::gpu::plan_cache::PlanMode,
    /// What one request or job may ask for.
    pub limits: ServiceLimits,
    /// Build indexes on threads of their own, searches scanning what they lack meanwhile
    /// (the server), instead of in the search that needs them (local commands).
    pub background_index: bool,
    /// Serve saved HNSW graphs' links from a memory map instead of reading them in.
    pub mmap_index: bool,
}

/// A pool as reported to callers.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PoolDetails {
    /// The catalog record.
    pub record: PoolRecord,
    /// Items per weak label ("" for unlabelled).
    pub labels: BTreeMap<String, u64>,
    /// The saved index.
    pub index: IndexStatus,
}

/// What `create_pool` needs: a backbone (the dimension follows) or a raw dimension.
#[derive(Clone, Debug)]
pub struct CreatePool {
    /// Name.
    pub name: String,
    /// Registry backbone; None for a pool of raw vectors.
    pub backbone: Option<String>,
    /// Weights of the backbone (path or model id).
    pub weights: Option<String>,
    /// ViT pooling (default `cls`).
    pub pooling: Option<crate::settings::Pooling>,
    /// Dimension: required without a backbone; checked against it with one.
    pub dim: Option<usize>,
    /// Storage type.
    pub dtype: Dtype,
}

/// Pools with an open handle, and the names being deleted (which open as not found).
#[derive(Default)]
struct OpenPools {
    open: HashMap<String, Arc<dyn StoredPool>>,
    deleting: HashSet<String>,
}

/// Clears a name from `deleting` however `delete_pool` ends.
struct DeletingName<'a> {
    pools: &'a Mutex<OpenPools>,
    name: &'a str,
}

impl Drop for DeletingName<'_> {
    fn drop(&mut self) {
        self.pools.lock().deleting.remove(self.name);
    }
}

/// The service.
pub struct Service {
    /// The data directory's catalog: job records (pools go through `storage`).
    store: Arc<Store>,
    /// Where pools are kept.
    storage: Box<dyn PoolStorage>,
    settings: ServiceSettings,
    pools: Mutex<OpenPools>,
    models: ModelCache,
    jobs: jobs::Jobs,
    images_embedded: std::sync::atomic::AtomicU64,
    /// Reference-pool work shared by debug-set requests.
    references: debug_set::ReferenceCache,
    /// Pools' nearest-neighbour distance scales, for percentile distance caps.
    distance_scales: debug_set::DistanceScales,
    /// Pools' weak labels in memory, for the label vote and label caps.
    weak_labels: debug_set::WeakLabels,
}

impl Service {
    /// Opens the data directory and resumes the jobs a previous run left unfinished.
    pub fn open(data_dir: &std::path::Path, settings: ServiceSettings) -> Result<Arc<Service>> {
        Service::on_store(Store::open(data_dir)?, settings)
    }

    /// Opens the data directory for reading: read-only (every write refused, no index file
    /// written) when a running server holds it or it cannot be written, else as `open`.
    pub fn open_for_reading(
        data_dir: &std::path::Path,
        settings: ServiceSettings,
    ) -> Result<Arc<Service>> {
        Service::on_store(Store::open_for_reading(data_dir)?, settings)
    }

    fn on_store(store: Store, settings: ServiceSettings) -> Result<Arc<Service>> {
        let store = Arc::new(store);
        let engines = Engines {
            params: settings.index,
            mmap_graph: settings.mmap_index,
            device: ExactDevice::open(
                settings.exact_device,
                settings.exact_copy,
                settings.exact_plans,
            )?,
            background: settings.background_index,
        };
        let storage = Box::new(LocalStorage::new(store.clone(), engines));
        Ok(Service::with_storage(store, storage, settings))
    }

    /// A service whose pools live in `storage`, with `store` (its data directory's catalog)
    /// keeping the job records.
    pub fn with_storage(
        store: Arc<Store>,
        storage: Box<dyn PoolStorage>,
        settings: ServiceSettings,
    ) -> Arc<Service> {
        let models = ModelCache::new(settings.models.clone());
        Arc::new(Service {
            store,
            storage,
            settings,
            pools: Mutex::new(OpenPools::default()),
            models,
            jobs: jobs::Jobs::default(),
            images_embedded: std::sync::atomic::AtomicU64::new(0),
            references: Default::default(),
            distance_scales: Default::default(),
            weak_labels: Default::default(),
        })
    }

    /// The data directory's catalog, for job records; pools are reached through
    /// [`Service::pool`] and the pool calls.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Where pools are kept.
    pub fn storage(&self) -> &dyn PoolStorage {
        self.storage.as_ref()
    }

    /// The settings.
    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    /// Loaded models.
    pub fn models(&self) -> &ModelCache {
        &self.models
    }

    /// The job registry.
    pub fn jobs(&self) -> &jobs::Jobs {
        &self.jobs
    }

    /// The open pool `name`.
    pub fn pool(&self, name: &str) -> Result<Arc<dyn StoredPool>> {
        if name.is_empty() {
            return Err(ServiceError::InvalidArgument {
                field: "pool",
                reason: "name the pool (list them with ListPools / dcd pool list)".into(),
            });
        }
        let mut pools = self.pools.lock();
        if let Some(p) = pools.open.get(name) {
            return Ok(p.clone());
        }
        if pools.deleting.contains(name) {
            return Err(StoreError::PoolNotFound { name: name.into() }.into());
        }
        let handle = self.storage.open(name)?;
        pools.open.insert(name.to_owned(), handle.clone());
        Ok(handle)
    }

    /// Creates a pool; with a backbone, its dimension is the model's (which loads it).
    pub fn create_pool(&self, req: &CreatePool) -> Result<PoolRecord> {
        if let Some(w) = &req.weights {
            // A weights path is a server-side file like any other: only below the roots.
            // Model ids (org/name) resolve in the server's own hub cache.
            let path = std::path::Path::new(w);
            if path.is_absolute() || w.starts_with('.') || path.exists() {
                self.settings.roots.check(path)?;
            }
        }
        let (dim, pooling) = match &req.backbone {
            Some(backbone) => {
                let pooling = req.pooling.unwrap_or_default();
                let key = ModelKey {
                    backbone: backbone.clone(),
                    weights: req.weights.clone(),
                    pooling,
                };
                let dim = self.models.dim(&key)?;
                if let Some(d) = req.dim.filter(|&d| d != dim) {
                    return Err(ServiceError::InvalidArgument {
                        field: "dim",
                        reason: format!(
                            "{backbone} gives {dim}-d features, not {d}; leave the dimension out"
                        ),
                    });
                }
                (dim, Some(pooling.name().to_owned()))
            }
            None => {
                if req.weights.is_some() {
                    return Err(ServiceError::InvalidArgument {
                        field: "weights",
                        reason: "weights need a backbone; name one, or leave the weights out for a raw-vector pool".into(),
                    });
                }
                let dim = req.dim.ok_or(ServiceError::InvalidArgument {
                    field: "dim",
                    reason: "a pool without a backbone needs its vector dimension (e.g. 384)"
                        .into(),
                })?;
                (dim, None)
            }
        };
        self.storage.create(&PoolSpec {
            name: req.name.clone(),
            dim,
            dtype: req.dtype,
            backbone: req.backbone.clone(),
            weights: req.weights.clone(),
            pooling,
        })
    }

    /// All pools.
    pub fn list_pools(&self) -> Result<Vec<PoolRecord>> {
        self.storage.list()
    }

    /// One pool's record as stored now.
    pub fn pool_record(&self, name: &str) -> Result<PoolRecord> {
        self.storage.record(name)
    }

    /// One pool with its label histogram and index state.
    pub fn pool_details(&self, name: &str) -> Result<PoolDetails> {
        let handle = self.pool(name)?;
        // Before the read view: a second read of the pool's lock could wait behind a writer.
        let index = handle.index_status();
        let rows = handle.rows()?;
        Ok(PoolDetails {
            record: rows.record().clone(),
            labels: rows.label_histogram()?,
            index,
        })
    }

    /// Deletes a pool, cancelling its jobs first; returns how many items it held.
    ///
    /// While it runs the name opens as not found. Calls that still hold the pool (a search,
    /// an ingest stream, the index refresh after an ingest) finish first; what they try
    /// after that fails with `PoolDeleted`. Only then do the catalog row and the folder go,
    /// so nothing of the old pool is written after a new pool of the same name is created.
    pub fn delete_pool(&self, name: &str) -> Result<u64> {
        self.storage.record(name)?;
        let handle = {
            let mut pools = self.pools.lock();
            if !pools.deleting.insert(name.to_owned()) {
                return Err(StoreError::PoolNotFound { name: name.into() }.into());
            }
            pools.open.remove(name)
        };
        let _deleting = DeletingName {
            pools: &self.pools,
            name,
        };
        self.jobs.cancel_pool(name);
        // Its saved sets go first: a crash before the pool goes leaves the pool without
        // them, never sets that a new pool of the same name would seem to own.
        let sets = self.store.delete_saved_sets_of(name)?;
        if sets > 0 {
            tracing::info!(
                pool = name,
                sets,
                "deleted the pool's saved debug-train sets"
            );
        }
        if let Some(handle) = handle {
            handle.retire();
        }
        // Read after the last append through the handle.
        let rows = self.storage.record(name)?.rows;
        self.storage.delete(name)?;
        Ok(rows)
    }

    /// The embedding pipeline of a pool's backbone.
    pub fn pool_model(
        &self,
        record: &PoolRecord,
    ) -> Result<Arc<crate::features::pipeline::Embedder>> {
        let key = ModelKey::of_pool(record)?;
        self.models.get(&key)
    }

    /// Images embedded since start (requests and jobs).
    pub fn images_embedded(&self) -> u64 {
        self.images_embedded
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts embedded images.
    pub fn count_embedded(&self, n: usize) {
        self.images_embedded
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Paths the server may read.
    pub fn check_path(&self, path: &std::path::Path) -> Result<PathBuf> {
        self.settings.roots.check(path)
    }
}
