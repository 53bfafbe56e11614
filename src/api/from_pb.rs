//! What a server answers, back in the service's types, so a command reads a remote answer as
//! it reads a local one. Fields the wire does not carry take the value that says so: a
//! pool's catalog id is 0, its identity unknown.

use crate::api::pb;
use crate::error::Result;
use crate::index::graph::HnswParams;
use crate::index::manager::IndexStatus;
use crate::service::{Hit, PoolDetails, QueryInput, SavedDebugSet, SetDiff, StreamSummary};
use crate::store::{EntryOutcome, PoolRecord, Review, SavedItem, SavedSet, Verdict};
use crate::types::{Metric, RowId};

use super::status::remote_error;

/// A pool's record from its message.
pub fn pool_record(p: pb::Pool) -> Result<PoolRecord> {
    let non_empty = |s: String| Some(s).filter(|s| !s.is_empty());
    Ok(PoolRecord {
        id: 0,
        dtype: super::convert::dtype(p.dtype).map_err(remote_error)?,
        name: p.name,
        dim: p.dim as usize,
        metric: Metric::L2,
        backbone: non_empty(p.backbone),
        weights: non_empty(p.weights),
        pooling: non_empty(p.pooling),
        created_at: p.created_unix_ms / 1000,
        rows: p.items,
        uid: None,
    })
}

/// A pool's details from `GetPool`'s answer.
pub fn pool_details(d: pb::PoolDetails) -> Result<PoolDetails> {
    let record = pool_record(d.pool.unwrap_or_default())?;
    let mut labels: std::collections::BTreeMap<String, u64> = d.label_counts.into_iter().collect();
    if d.unlabelled > 0 {
        labels.insert(String::new(), d.unlabelled);
    }
    let index = d.index.unwrap_or_default();
    let saved = index.problem.is_empty();
    Ok(PoolDetails {
        record,
        labels,
        index: IndexStatus {
            indexed_rows: saved.then_some(index.indexed_items as usize),
            params: saved.then(|| HnswParams {
                m: index.m as usize,
                ef_construction: index.ef_construction as usize,
                ..HnswParams::default()
            }),
            problem: Some(index.problem).filter(|p| !p.is_empty()),
        },
    })
}

/// A query as sent.
pub fn query(q: &QueryInput) -> pb::Query {
    pb::Query {
        source: Some(match q {
            QueryInput::Image { bytes, .. } => pb::query::Source::Image(bytes.clone()),
            QueryInput::Vector(v) => pb::query::Source::Vector(pb::Vector { values: v.clone() }),
            QueryInput::Key(k) => pb::query::Source::ItemKey(k.clone()),
        }),
    }
}

/// One query's hits, or why it has none.
pub fn query_result(r: pb::QueryResult) -> std::result::Result<Vec<Hit>, String> {
    if !r.error.is_empty() {
        return Err(r.error);
    }
    Ok(r.hits
        .into_iter()
        .map(|h| Hit {
            row: h.row as RowId,
            key: h.key,
            label: Some(h.label).filter(|l| !l.is_empty()),
            distance: h.distance,
        })
        .collect())
}

/// An `Ingest` stream's summary.
pub fn ingest_summary(s: pb::IngestSummary) -> StreamSummary {
    StreamSummary {
        received: s.received,
        stored: s.stored,
        duplicates: s.duplicates,
        present: s.present,
        failed: s.failed,
        errors: s.errors.into_iter().map(|e| (e.key, e.reason)).collect(),
        pool_items: s.pool_items,
        outcomes: s
            .outcomes
            .into_iter()
            .map(|o| {
                let outcome = match o.outcome() {
                    pb::IngestOutcome::Stored => EntryOutcome::Stored,
                    pb::IngestOutcome::Present => EntryOutcome::Present,
                    pb::IngestOutcome::Duplicate => EntryOutcome::Duplicate(o.reason),
                    pb::IngestOutcome::Failed | pb::IngestOutcome::Unspecified => {
                        EntryOutcome::Failed(o.reason)
                    }
                };
                (o.key, outcome)
            })
            .collect(),
    }
}

/// A saved set's record from its info (a listing carries no manifest or summary).
pub fn saved_set(i: pb::SavedSetInfo) -> SavedSet {
    SavedSet {
        name: i.name,
        pool: i.pool,
        parent: Some(i.parent).filter(|p| !p.is_empty()),
        created_at: i.created_unix,
        items: i.items,
        manifest: String::new(),
        summary: String::new(),
    }
}

/// A saved set's item.
pub fn saved_item(i: pb::SavedItem) -> SavedItem {
    let non_empty = |s: String| Some(s).filter(|s| !s.is_empty());
    SavedItem {
        row: i.row as RowId,
        key: i.key,
        label: non_empty(i.label),
        train_label: non_empty(i.train_label),
        distance: i.distance,
        mode: i.mode as usize,
        support: i.support as usize,
        found_by: i.found_by.iter().map(|&e| e as usize).collect(),
    }
}

/// A verdict as recorded (an unknown verdict number reads as a clear: it counts for nothing).
pub fn review(r: pb::Review) -> Review {
    let verdict = match pb::Verdict::try_from(r.verdict) {
        Ok(pb::Verdict::Accept) => Verdict::Accept,
        Ok(pb::Verdict::Reject) => Verdict::Reject,
        Ok(pb::Verdict::Relabel) => Verdict::Relabel(r.label),
        Ok(pb::Verdict::Clear | pb::Verdict::Unspecified) | Err(_) => Verdict::Clear,
    };
    Review {
        key: r.key,
        verdict,
        reviewer: r.reviewer,
        at_ms: r.at_unix_ms,
    }
}

/// A saved set read back from `GetDebugSet`.
pub fn saved_debug_set(s: pb::SavedDebugSet) -> Result<SavedDebugSet> {
    let unreadable = |what: &str, e: serde_json::Error| crate::error::Error::Remote {
        kind: crate::error_kind::ErrorKind::Internal,
        message: format!("the server sent a {what} that cannot be read: {e}"),
    };
    let mut record = saved_set(s.info.unwrap_or_default());
    record.manifest = s.manifest_json;
    record.summary = s.summary_json;
    Ok(SavedDebugSet {
        manifest: serde_json::from_str(&record.manifest).map_err(|e| unreadable("manifest", e))?,
        summary: serde_json::from_str(&record.summary).map_err(|e| unreadable("summary", e))?,
        reviews: s
            .items
            .iter()
            .filter_map(|i| i.review.clone())
            .map(review)
            .collect(),
        items: s.items.into_iter().map(saved_item).collect(),
        record,
    })
}

/// What changed between two saved sets.
pub fn set_diff(d: pb::DebugSetDiff) -> SetDiff {
    SetDiff {
        added: d.added.into_iter().map(saved_item).collect(),
        removed: d.removed.into_iter().map(saved_item).collect(),
        relabelled: d
            .relabelled
            .into_iter()
            .map(|r| {
                (
                    saved_item(r.from.unwrap_or_default()),
                    saved_item(r.to.unwrap_or_default()),
                )
            })
            .collect(),
    }
}
