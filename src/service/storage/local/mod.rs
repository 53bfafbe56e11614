//! The local backend: pools in the data directory (memory-mapped vectors, the SQLite catalog)
//! searched by dcd's own engines: the HNSW graph, the exact CPU scan, and, with
//! `--exact-device cuda`, an exact copy resident on a GPU.

mod exact_device;
mod handle;
mod rows;

use std::sync::Arc;

pub use exact_device::ExactDevice;
pub use handle::{PoolHandle, ReadyPool};

use super::{PoolStorage, StoredPool};
use crate::index::graph::HnswParams;
use crate::service::Result;
use crate::store::{PoolRecord, PoolSpec, Store};

/// Pools of one data directory.
pub struct LocalStorage {
    store: Arc<Store>,
    params: HnswParams,
    device: ExactDevice,
    background: bool,
}

impl LocalStorage {
    /// Pools of `store`: new graphs with `params`, exact searches on `device`; with
    /// `background`, graphs are caught up on threads of their own (the server) rather than
    /// in the search that finds them behind (local commands).
    pub fn new(
        store: Arc<Store>,
        params: HnswParams,
        device: ExactDevice,
        background: bool,
    ) -> LocalStorage {
        LocalStorage {
            store,
            params,
            device,
            background,
        }
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
        Ok(PoolHandle::new(
            pool,
            self.params,
            self.device.clone(),
            self.background,
        ))
    }

    fn delete(&self, name: &str) -> Result<()> {
        Ok(self.store.delete_pool(name)?)
    }
}
