//! Backbones the service has loaded, one embedding pipeline each, shared by every request
//! and job that embeds with that model. Loaded on first use; loading is slow (weights from
//! disk), so each model loads once even when many requests ask for it at the same moment.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::features::backbone::BackboneChoice;
use crate::features::pipeline::{Embedder, PipelineConfig};
use crate::features::FeatureExtractor;
use crate::service::{Result, ServiceError};
use crate::settings::{Device, Pooling, Precision};
use crate::store::PoolRecord;

/// Which model, as recorded with a pool.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModelKey {
    /// Registry name.
    pub backbone: String,
    /// Weights path or model id (None: the registry default).
    pub weights: Option<String>,
    /// ViT pooling.
    pub pooling: Pooling,
}

impl ModelKey {
    /// The model a pool's vectors come from; refused for a pool of raw vectors.
    pub fn of_pool(record: &PoolRecord) -> Result<ModelKey> {
        let backbone = record
            .backbone
            .clone()
            .ok_or_else(|| ServiceError::NoModel {
                pool: record.name.clone(),
            })?;
        let pooling = match &record.pooling {
            None => Pooling::Cls,
            Some(p) => p.parse().map_err(|e| ServiceError::Internal {
                what: format!(
                    "pool {:?} records the pooling {p:?}, which this dcd does not know ({e}); \
                     was the pool created by a newer dcd?",
                    record.name
                ),
            })?,
        };
        Ok(ModelKey {
            backbone,
            weights: record.weights.clone(),
            pooling,
        })
    }
}

/// Where and how models run.
#[derive(Clone, Debug)]
pub struct ModelSettings {
    /// Where models run.
    pub device: Device,
    /// What they compute in.
    pub precision: Precision,
    /// Batching pipeline sizes.
    pub pipeline: PipelineConfig,
}

/// A model's slot: empty until its first use has loaded it.
type Slot = Arc<Mutex<Option<Arc<Embedder>>>>;

/// Loaded models.
pub struct ModelCache {
    settings: ModelSettings,
    loaded: Mutex<HashMap<ModelKey, Slot>>,
}

impl ModelCache {
    /// An empty cache.
    pub fn new(settings: ModelSettings) -> ModelCache {
        ModelCache {
            settings,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The pipeline for `key`, loading the model on first use. A model that fails to load
    /// leaves nothing behind (unknown names cannot grow the cache).
    pub fn get(&self, key: &ModelKey) -> Result<Arc<Embedder>> {
        let slot = self.loaded.lock().entry(key.clone()).or_default().clone();
        // Holding the slot (not the map) while loading lets other models load meanwhile.
        let mut guard = slot.lock();
        if let Some(e) = guard.as_ref() {
            return Ok(e.clone());
        }
        let loaded = self.load(key);
        match &loaded {
            Ok(embedder) => *guard = Some(embedder.clone()),
            Err(_) => {
                drop(guard);
                let mut map = self.loaded.lock();
                // Only our slot, and only while empty and idle: a concurrent caller may be
                // loading it again (and the map must not wait on a load).
                if map.get(key).is_some_and(|s| {
                    Arc::ptr_eq(s, &slot) && s.try_lock().is_some_and(|g| g.is_none())
                }) {
                    map.remove(key);
                }
            }
        }
        loaded
    }

    /// Models loaded (or loading) now.
    pub fn loaded_count(&self) -> usize {
        self.loaded.lock().len()
    }

    fn load(&self, key: &ModelKey) -> Result<Arc<Embedder>> {
        let choice = BackboneChoice {
            name: key.backbone.clone(),
            weights: key.weights.clone(),
            pooling: key.pooling,
            device: self.settings.device,
            precision: self.settings.precision,
        };
        let started = std::time::Instant::now();
        let model = choice.load(false)?;
        let preprocess = *model.preprocess();
        let model: Arc<dyn FeatureExtractor> = Arc::new(model);
        let (embedder, _) =
            Embedder::start(model, preprocess, &self.settings.pipeline).map_err(|e| {
                ServiceError::Internal {
                    what: format!("cannot start the embedding threads: {e}"),
                }
            })?;
        tracing::info!(backbone = %key.backbone, weights = ?key.weights, secs = started.elapsed().as_secs_f32(), "model loaded");
        Ok(Arc::new(embedder))
    }

    /// The feature width of `key` (loads the model).
    pub fn dim(&self, key: &ModelKey) -> Result<usize> {
        Ok(self.get(key)?.dim())
    }
}
