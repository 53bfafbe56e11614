//! dcd: data-centric debugging. Embeds a weakly labelled image pool once, stores and indexes
//! the vectors, and finds the pool items nearest in ℓ2 to a model's failures.
//!
//! Layers, top to bottom (each imports only from those below it; docs/architecture.md says
//! more): `cli` (the commands) over `config` (the flags, clap) → `app` (composition,
//! `dcd serve`) → `api` (gRPC) → `error` (the crate-level error of those three) → `service`
//! (pools through the storage seam, searches, debug-train sets, ingestion streams and jobs) →
//! `debugset` (the set's logic, pure) → `features` (backbones) → `gpu` (the exact path on a
//! GPU) → `index` (exact, HNSW) → `store` (vectors on disk, SQLite catalog) → `formats`,
//! `files`; `types`, `settings`, `limits`, `error_kind`, `cancel`, `telemetry` and `synth` are
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
pub mod settings;
pub mod store;
pub mod synth;
pub mod telemetry;
pub mod types;

pub use error::{Error, Result};
