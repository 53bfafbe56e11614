//! dcd: data-centric debugging. Embeds a weakly labelled image pool once, stores and indexes
//! the vectors, and finds the pool items nearest in ℓ2 to a model's failures.
//!
//! Layers, top to bottom: `cli` (front end) → `index` (exact, HNSW) → `store` (vectors on
//! disk, SQLite catalog); `formats`, `config`, `error`, `types`, `telemetry` are leaves.

pub mod cli;
pub mod config;
pub mod error;
pub mod features;
pub mod formats;
pub mod index;
pub mod store;
pub mod synth;
pub mod telemetry;
pub mod types;

pub use error::{Error, Result};
