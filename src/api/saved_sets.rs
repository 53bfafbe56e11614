//! Saved debug-train sets over gRPC: saving from `BuildDebugSet` / `StreamDebugSet`
//! (`save_as`, `parent`), and `GetDebugSet`, `ListDebugSets`, `DeleteDebugSet`,
//! `DiffDebugSets`, `ReviewDebugSet`, each run like every call (admitted, on the blocking
//! pool, in its span).

use std::sync::Arc;

use tonic::{Response, Status};

use super::pb;
use super::DcdApi;
use crate::service::{
    DebugSetRequest, DebugSetResult, ItemSelector, ReviewRequest, Service, SetDiff,
};
use crate::store::{Review, SavedItem, SavedSet, Verdict};

/// Where a build is saved: its name and the round it follows.
pub(super) struct SaveAs {
    name: String,
    parent: Option<String>,
}

/// The `save_as` and `parent` of a build request (None: not saved; a parent without a name
/// is refused).
pub(super) fn save_as(wire: &pb::BuildDebugSetRequest) -> Result<Option<SaveAs>, Status> {
    match (wire.save_as.is_empty(), wire.parent.is_empty()) {
        (true, true) => Ok(None),
        (true, false) => Err(super::convert::invalid(
            "parent",
            "a parent round is recorded with a saved set: give save_as too",
        )),
        (false, _) => Ok(Some(SaveAs {
            name: wire.save_as.clone(),
            parent: Some(wire.parent.clone()).filter(|p| !p.is_empty()),
        })),
    }
}

/// Builds the set, and saves it when asked; returns it with the name it was saved under.
pub(super) fn build(
    s: &Arc<Service>,
    req: &DebugSetRequest,
    save: Option<&SaveAs>,
) -> crate::error::Result<(DebugSetResult, String)> {
    Ok(match save {
        None => (s.build_debug_set(req)?, String::new()),
        Some(to) => {
            let (result, record) =
                s.build_and_save_debug_set(req, &to.name, to.parent.as_deref())?;
            (result, record.name)
        }
    })
}

pub(super) async fn get(
    api: &DcdApi,
    req: pb::GetDebugSetRequest,
) -> Result<Response<pb::SavedDebugSet>, Status> {
    let set = api
        .blocking("GetDebugSet", String::new(), move |s| {
            let mut set = saved_message(s, &req.name)?;
            if req.overview {
                set.overview_json =
                    serde_json::to_string(&s.set_overview(&req.name)?).map_err(|e| {
                        crate::service::ServiceError::Internal {
                            what: format!("cannot write the overview: {e}"),
                        }
                    })?;
            }
            if req.history {
                set.history = s
                    .review_history(&req.name)?
                    .iter()
                    .map(wire_review)
                    .collect();
            }
            Ok(set)
        })
        .await?;
    Ok(Response::new(set))
}

pub(super) async fn list(
    api: &DcdApi,
    req: pb::ListDebugSetsRequest,
) -> Result<Response<pb::ListDebugSetsResponse>, Status> {
    let pool = req.pool.clone();
    let sets = api
        .blocking("ListDebugSets", pool, move |s| {
            let pool = Some(req.pool.as_str()).filter(|p| !p.is_empty());
            Ok(s.saved_debug_sets(pool)?.iter().map(info).collect())
        })
        .await?;
    Ok(Response::new(pb::ListDebugSetsResponse { sets }))
}

pub(super) async fn delete(
    api: &DcdApi,
    req: pb::DeleteDebugSetRequest,
) -> Result<Response<pb::DeleteDebugSetResponse>, Status> {
    api.blocking("DeleteDebugSet", String::new(), move |s| {
        Ok(s.delete_saved_debug_set(&req.name)?)
    })
    .await?;
    Ok(Response::new(pb::DeleteDebugSetResponse {}))
}

pub(super) async fn diff(
    api: &DcdApi,
    req: pb::DiffDebugSetsRequest,
) -> Result<Response<pb::DebugSetDiff>, Status> {
    let d = api
        .blocking("DiffDebugSets", String::new(), move |s| {
            Ok(diff_message(&s.diff_saved_debug_sets(&req.from, &req.to)?))
        })
        .await?;
    Ok(Response::new(d))
}

pub(super) async fn review(
    api: &DcdApi,
    req: pb::ReviewDebugSetRequest,
) -> Result<Response<pb::ReviewDebugSetResponse>, Status> {
    let review = review_request(req)?;
    let reviewed = api
        .blocking("ReviewDebugSet", String::new(), move |s| {
            Ok(s.review_debug_set(&review)?)
        })
        .await?;
    Ok(Response::new(pb::ReviewDebugSetResponse {
        reviewed: reviewed as u32,
    }))
}

/// A review request from its message.
pub(super) fn review_request(r: pb::ReviewDebugSetRequest) -> Result<ReviewRequest, Status> {
    let verdict = match pb::Verdict::try_from(r.verdict) {
        Ok(pb::Verdict::Accept) => Verdict::Accept,
        Ok(pb::Verdict::Reject) => Verdict::Reject,
        Ok(pb::Verdict::Relabel) => Verdict::Relabel(r.label),
        Ok(pb::Verdict::Clear) => Verdict::Clear,
        Ok(pb::Verdict::Unspecified) | Err(_) => {
            return Err(super::convert::invalid(
                "verdict",
                format!(
                    "{} is not a verdict: give accept, reject, relabel (with label) or clear",
                    r.verdict
                ),
            ))
        }
    };
    Ok(ReviewRequest {
        set: r.name,
        select: ItemSelector {
            keys: r.keys,
            all: r.all,
            mode: r.mode.map(|m| m as usize),
            weak_label: r.weak_label,
            error_index: r.error_index.map(|e| e as usize),
            unreviewed_only: r.unreviewed_only,
        },
        verdict,
        reviewer: r.reviewer,
    })
}

/// A review request on the wire (the client's side of [`review_request`]).
pub(super) fn wire_review_request(r: &ReviewRequest) -> pb::ReviewDebugSetRequest {
    let (verdict, label) = wire_verdict(&r.verdict);
    pb::ReviewDebugSetRequest {
        name: r.set.clone(),
        keys: r.select.keys.clone(),
        all: r.select.all,
        mode: r.select.mode.map(|m| m as u32),
        weak_label: r.select.weak_label.clone(),
        error_index: r.select.error_index.map(|e| e as u32),
        unreviewed_only: r.select.unreviewed_only,
        verdict: verdict as i32,
        label,
        reviewer: r.reviewer.clone(),
    }
}

fn wire_verdict(v: &Verdict) -> (pb::Verdict, String) {
    match v {
        Verdict::Accept => (pb::Verdict::Accept, String::new()),
        Verdict::Reject => (pb::Verdict::Reject, String::new()),
        Verdict::Relabel(l) => (pb::Verdict::Relabel, l.clone()),
        Verdict::Clear => (pb::Verdict::Clear, String::new()),
    }
}

fn wire_review(r: &Review) -> pb::Review {
    let (verdict, label) = wire_verdict(&r.verdict);
    pb::Review {
        key: r.key.clone(),
        verdict: verdict as i32,
        label,
        reviewer: r.reviewer.clone(),
        at_unix_ms: r.at_ms,
    }
}

/// The saved set `name` as its message, each item with its latest verdict.
fn saved_message(s: &Service, name: &str) -> crate::error::Result<pb::SavedDebugSet> {
    let saved = s.saved_debug_set(name)?;
    let reviews: std::collections::HashMap<&str, &Review> =
        saved.reviews.iter().map(|r| (r.key.as_str(), r)).collect();
    Ok(pb::SavedDebugSet {
        info: Some(info(&saved.record)),
        manifest_json: saved.record.manifest.clone(),
        summary_json: saved.record.summary.clone(),
        items: saved
            .items
            .iter()
            .map(|i| pb::SavedItem {
                review: reviews.get(i.key.as_str()).map(|r| wire_review(r)),
                ..item(i)
            })
            .collect(),
        history: Vec::new(),
        overview_json: String::new(),
    })
}

fn info(r: &SavedSet) -> pb::SavedSetInfo {
    pb::SavedSetInfo {
        name: r.name.clone(),
        pool: r.pool.clone(),
        parent: r.parent.clone().unwrap_or_default(),
        created_unix: r.created_at,
        items: r.items,
    }
}

fn item(i: &SavedItem) -> pb::SavedItem {
    pb::SavedItem {
        row: i.row as u64,
        key: i.key.clone(),
        label: i.label.clone().unwrap_or_default(),
        train_label: i.train_label.clone().unwrap_or_default(),
        distance: i.distance,
        mode: i.mode as u32,
        support: i.support as u32,
        found_by: i.found_by.iter().map(|&e| e as u32).collect(),
        review: None,
    }
}

fn diff_message(d: &SetDiff) -> pb::DebugSetDiff {
    pb::DebugSetDiff {
        added: d.added.iter().map(item).collect(),
        removed: d.removed.iter().map(item).collect(),
        relabelled: d
            .relabelled
            .iter()
            .map(|(a, b)| pb::Relabelled {
                from: Some(item(a)),
                to: Some(item(b)),
            })
            .collect(),
    }
}
