//! Ingestion: items a client streams in (the `Ingest` RPC) and server-side jobs over a folder
//! or manifest. Both hand their batches to one admit step ([`admit`]): skip keys already
//! stored, check fields, skip images whose content is stored, embed, append in one commit.

mod admit;
mod job_run;
pub mod jobs;
pub mod source;
mod stream;

pub use admit::content_hash_bytes;
pub use stream::{IngestItem, ItemContent, StreamIngest, StreamSummary};
