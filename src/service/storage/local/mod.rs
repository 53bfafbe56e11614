//! The local backend: pools in the data directory (memory-mapped vectors, the SQLite catalog)
//! searched by dcd's own engines: the HNSW graph, the exact CPU scan, and, with
//! `--exact-device cuda`, an exact copy resident on a GPU.

mod exact_device;
mod handle;
mod rows;

use std::sync::Arc;

pub use exact_device::ExactDevice;
pub use handle::{Engines, PoolHandle, ReadyPool};

use super::{PoolStorage, StoredPool};
use crate::service::Result;
use crate::store::{PoolRecord, PoolSpec, Store};

/// Pools of one data directory.
pub struct LocalStorage {
    store: Arc<Store>,
    engines: Engines,
}

impl LocalStorage {
    /// Pools of `store`, searched with `engines`.
    pub fn new(store: Arc<Store>, engines: Engines) -> LocalStorage {
        LocalStorage { store, engines }
    }
}

impl PoolStorage for LocalStorage {
    fn describe(&self) -> String {
        format!("local store at {}", self.store.root().display())
    }

    fn create(&self, spec: &PoolSpec) -> Result<PoolRecord> {
        Ok(self.store.create_pool(spec)?)
    }

    fn list(&self) -> Result<Vec<PoolRecord>> {
        Ok(self.store.pools()?)
    }

    fn record(&self, name: &str) -> Result<PoolRecord> {
        Ok(self.store.pool_record(name)?)
    }

    fn open(&self, name: &str) -> Result<Arc<dyn StoredPool>> {
        let pool = self.store.open_pool(name)?;
        Ok(PoolHandle::new(pool, self.engines.clone()))
    }

    fn delete(&self, name: &str) -> Result<()> {
        Ok(self.store.delete_pool(name)?)
    }
}
