//! dcd: data-centric debugging. Embeds a weakly labelled image pool once, stores and indexes
//! the vectors, and finds the pool items nearest in ℓ2 to a model's failures.
//!
//! Layers, top to bottom: `cli` and `api` (gRPC, tonic) front ends → `app` (composition) →
//! `service` (pools, searches, debug-train sets) → `debugset` (the merge, pure) and `ingest`
//! (server-side jobs) → `features` (backbones) → `index` (exact, HNSW) → `store` (vectors on
//! disk, SQLite catalog); `formats`, `config`, `error`, `error_kind`, `types`, `telemetry` are
//! leaves.

pub mod api;
pub mod app;
pub mod cancel;
pub mod cli;
pub mod config;
pub mod debugset;
pub mod error;
pub mod error_kind;
pub mod features;
pub mod files;
pub mod formats;
pub mod gpu;
pub mod index;
pub mod limits;
pub mod service;
pub mod store;
pub mod synth;
pub mod telemetry;
pub mod types;

pub use error::{Error, Result};
