//! The Qdrant backend of the storage seam (feature `qdrant`): pools kept as collections of a
//! Qdrant cluster, reached through Qdrant's official client. [`requests`] builds what is sent,
//! [`answers`] reads what comes back in dcd's terms (rows, squared ℓ2, items, kinds of error).
//!
//! Unfinished: the backend that sends them (`dcd serve --pools qdrant`) is not written yet.

pub mod answers;
pub mod requests;

#[cfg(test)]
mod tests;
