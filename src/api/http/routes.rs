//! The review page's JSON API: pools, saved sets with their items and reviews, the map and
//! random sample beside a set, review verdicts, the next round, exports, diffs, building a
//! set from uploaded images or keys, and thumbnails. Each handler runs as a gRPC call does.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{HttpError, Page};
use crate::debugset::{ErrorLabel, LabelPolicy, Merge};
use crate::service::export::{csv_text, export_rows, imagefolder_manifest, jsonl_text};
use crate::service::{
    next_round_request, DebugSetRequest, ErrorSample, ItemSelector, QueryInput, ReviewRequest,
    SavedDebugSet,
};
use crate::store::Verdict;
use crate::types::RowId;

type Answer = Result<Json<Value>, HttpError>;

pub(super) fn api() -> Router<Page> {
    Router::new()
        .route("/pools", get(pools))
        .route("/sets", get(sets))
        .route("/sets/{name}", get(set).delete(delete_set))
        .route("/sets/{name}/overview", get(overview))
        .route("/sets/{name}/review", post(review))
        .route("/sets/{name}/next", post(next_round))
        .route("/sets/{name}/export", get(export))
        .route("/diff", get(diff))
        .route("/build", post(build))
        .route("/thumb/{pool}/{row}", get(thumb))
        .route("/demo", get(demo_state).post(start_demo))
}

async fn demo_state(State(page): State<Page>) -> Answer {
    to_json(page.demo.state(&page.api.service))
}

/// Starts building the demo (it takes about a minute); the page polls `GET /demo`.
async fn start_demo(State(page): State<Page>) -> Answer {
    if !page.demo.start(page.api.service.clone()) {
        return Err(HttpError::bad_request(
            "this server has no demo data: start it with --demo-data DIR (scripts/serve.sh fetches it into target/demo)",
        ));
    }
    to_json(page.demo.state(&page.api.service))
}

fn to_json(v: impl serde::Serialize) -> Answer {
    serde_json::to_value(v)
        .map(Json)
        .map_err(|e| HttpError::bad_request(format!("cannot write the answer: {e}")))
}

async fn pools(State(page): State<Page>) -> Answer {
    let pools = page
        .api
        .blocking("http:pools", String::new(), |s| {
            let mut out = Vec::new();
            for r in s.list_pools()? {
                let d = s.pool_details(&r.name)?;
                out.push(json!({
                    "name": d.record.name, "rows": d.record.rows, "dim": d.record.dim,
                    "backbone": d.record.backbone, "weights": d.record.weights,
                    "labels": d.labels,
                }));
            }
            Ok(out)
        })
        .await?;
    to_json(pools)
}

#[derive(Deserialize)]
struct PoolFilter {
    pool: Option<String>,
}

async fn sets(State(page): State<Page>, Query(f): Query<PoolFilter>) -> Answer {
    let sets = page
        .api
        .blocking("http:sets", String::new(), move |s| {
            Ok(s.saved_debug_sets(f.pool.as_deref().filter(|p| !p.is_empty()))?)
        })
        .await?;
    to_json(
        sets.iter()
            .map(|s| {
                json!({"name": s.name, "pool": s.pool, "parent": s.parent,
                       "created_at": s.created_at, "items": s.items})
            })
            .collect::<Vec<_>>(),
    )
}

/// A saved set for the page: its record, how it was built (inputs without their vectors),
/// the summary, and its items each with its latest verdict.
fn set_view(saved: &SavedDebugSet) -> Value {
    let reviews: BTreeMap<&str, &crate::store::Review> =
        saved.reviews.iter().map(|r| (r.key.as_str(), r)).collect();
    let m = &saved.manifest;
    let inputs = |v: &[crate::service::SavedInput]| -> Vec<Value> {
        v.iter()
            .map(|i| {
                json!({"sent": i.sent, "digest": i.digest, "failed": i.failed,
                       "label": i.label, "weight": i.weight})
            })
            .collect()
    };
    json!({
        "name": saved.record.name,
        "pool": m.pool,
        "parent": saved.record.parent,
        "created_at": saved.record.created_at,
        "request": m.request,
        "errors": inputs(&m.errors),
        "negatives": m.negatives.len(),
        "holdout": m.holdout.len(),
        "carried": {"accepted": m.carry.accepted.len(), "rejected": m.carry.rejected.len()},
        "summary": saved.summary,
        "items": saved.items.iter().map(|i| json!({
            "row": i.row, "key": i.key, "label": i.label, "train_label": i.train_label,
            "distance": i.distance, "mode": i.mode, "support": i.support,
            "found_by": i.found_by, "review": reviews.get(i.key.as_str()),
        })).collect::<Vec<_>>(),
    })
}

async fn set(State(page): State<Page>, Path(name): Path<String>) -> Answer {
    let view = page
        .api
        .blocking("http:set", String::new(), move |s| {
            Ok(set_view(&s.saved_debug_set(&name)?))
        })
        .await?;
    Ok(Json(view))
}

async fn delete_set(State(page): State<Page>, Path(name): Path<String>) -> Answer {
    page.api
        .blocking("http:delete_set", String::new(), move |s| {
            Ok(s.delete_saved_debug_set(&name)?)
        })
        .await?;
    Ok(Json(json!({})))
}

async fn overview(State(page): State<Page>, Path(name): Path<String>) -> Answer {
    let o = page
        .api
        .blocking("http:overview", String::new(), move |s| {
            Ok(s.set_overview(&name)?)
        })
        .await?;
    to_json(o)
}

#[derive(Deserialize)]
struct ReviewForm {
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    all: bool,
    mode: Option<usize>,
    weak_label: Option<String>,
    error_index: Option<usize>,
    #[serde(default)]
    unreviewed_only: bool,
    verdict: String,
    label: Option<String>,
    #[serde(default)]
    reviewer: String,
}

async fn review(
    State(page): State<Page>,
    Path(name): Path<String>,
    Json(f): Json<ReviewForm>,
) -> Answer {
    let verdict = match (f.verdict.as_str(), f.label) {
        ("accept", _) => Verdict::Accept,
        ("reject", _) => Verdict::Reject,
        ("clear", _) => Verdict::Clear,
        ("relabel", Some(l)) => Verdict::Relabel(l),
        ("relabel", None) => return Err(HttpError::bad_request("relabel needs a label")),
        (other, _) => {
            return Err(HttpError::bad_request(format!(
                "verdict {other:?}: use accept, reject, relabel or clear"
            )))
        }
    };
    let req = ReviewRequest {
        set: name,
        select: ItemSelector {
            keys: f.keys,
            all: f.all,
            mode: f.mode,
            weak_label: f.weak_label,
            error_index: f.error_index,
            unreviewed_only: f.unreviewed_only,
        },
        verdict,
        reviewer: f.reviewer,
    };
    let n = page
        .api
        .blocking("http:review", String::new(), move |s| {
            Ok(s.review_debug_set(&req)?)
        })
        .await?;
    Ok(Json(json!({ "reviewed": n })))
}

#[derive(Deserialize)]
struct NextForm {
    save_as: String,
    accepted_weight: Option<f32>,
    budget: Option<usize>,
}

async fn next_round(
    State(page): State<Page>,
    Path(name): Path<String>,
    Json(f): Json<NextForm>,
) -> Answer {
    let answer = page
        .api
        .blocking("http:next", String::new(), move |s| {
            let parent = s.saved_debug_set(&name)?;
            let mut req = next_round_request(&name, &parent.manifest);
            req.accepted_weight = f.accepted_weight;
            if f.budget.is_some() {
                req.merge.budget = f.budget;
            }
            let (result, record) = s.build_and_save_debug_set(&req, &f.save_as, Some(&name))?;
            Ok(json!({"name": record.name, "items": result.items.len(), "round": result.round}))
        })
        .await?;
    Ok(Json(answer))
}

#[derive(Deserialize)]
struct ExportForm {
    format: Option<String>,
    #[serde(default)]
    unreviewed: bool,
}

async fn export(
    State(page): State<Page>,
    Path(name): Path<String>,
    Query(f): Query<ExportForm>,
) -> Result<Response, HttpError> {
    let format = f.format.unwrap_or_else(|| "csv".into());
    let (ext, mime) = match format.as_str() {
        "csv" => ("csv", "text/csv; charset=utf-8"),
        "jsonl" => ("jsonl", "application/x-ndjson"),
        "imagefolder" => ("tsv", "text/tab-separated-values; charset=utf-8"),
        other => {
            return Err(HttpError::bad_request(format!(
                "format {other:?}: use csv, jsonl or imagefolder"
            )))
        }
    };
    let file = format!(
        "{name}.{}",
        if format == "imagefolder" {
            "imagefolder.tsv"
        } else {
            ext
        }
    );
    let body = page
        .api
        .blocking("http:export", String::new(), move |s| {
            let rows = export_rows(&s.saved_debug_set(&name)?, f.unreviewed);
            Ok(match format.as_str() {
                "csv" => csv_text(&rows),
                "jsonl" => jsonl_text(&rows),
                _ => imagefolder_manifest(&rows),
            })
        })
        .await?;
    let disposition = format!("attachment; filename=\"{}\"", file.replace('"', "_"));
    Ok((
        [
            (header::CONTENT_TYPE, mime.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

#[derive(Deserialize)]
struct DiffForm {
    from: String,
    to: String,
}

async fn diff(State(page): State<Page>, Query(f): Query<DiffForm>) -> Answer {
    let d = page
        .api
        .blocking("http:diff", String::new(), move |s| {
            Ok(s.diff_saved_debug_sets(&f.from, &f.to)?)
        })
        .await?;
    to_json(d)
}

/// An error sample from the page: an uploaded image (base64) or a stored item's key.
#[derive(Deserialize)]
struct UploadedSample {
    image: Option<String>,
    name: Option<String>,
    key: Option<String>,
    label: Option<String>,
}

#[derive(Deserialize)]
struct BuildForm {
    pool: String,
    save_as: String,
    errors: Vec<UploadedSample>,
    errors_pool: Option<String>,
    k: Option<usize>,
    budget: Option<usize>,
    merge: Option<Merge>,
    label_policy: Option<LabelPolicy>,
    max_modes: Option<usize>,
    dedup_distance: Option<f32>,
    #[serde(default)]
    exact: bool,
}

async fn build(State(page): State<Page>, Json(f): Json<BuildForm>) -> Answer {
    let mut errors = Vec::with_capacity(f.errors.len());
    for (i, e) in f.errors.into_iter().enumerate() {
        let name = e.name.unwrap_or_else(|| format!("error sample {i}"));
        let input = match (e.image, e.key) {
            (Some(b64), None) => QueryInput::Image {
                bytes: base64::engine::general_purpose::STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|err| HttpError::bad_request(format!("{name}: not base64 ({err})")))?,
                name,
            },
            (None, Some(key)) => QueryInput::Key(key),
            _ => {
                return Err(HttpError::bad_request(format!(
                    "{name}: send an image or a key, one of them"
                )))
            }
        };
        errors.push(ErrorSample {
            input,
            truth: ErrorLabel {
                label: e.label.filter(|l| !l.is_empty()),
                weight: 1.0,
            },
        });
    }
    if errors.is_empty() {
        return Err(HttpError::bad_request(
            "no error samples: upload images the model gets wrong, or give keys",
        ));
    }
    let mut req = DebugSetRequest::new(f.pool.clone(), errors, f.k.unwrap_or(50));
    req.errors_pool = f.errors_pool.filter(|p| !p.is_empty());
    req.merge.budget = f.budget;
    if let Some(m) = f.merge {
        req.merge.merge = m;
    }
    req.label_policy = f.label_policy;
    req.max_modes = f.max_modes;
    req.dedup_distance = f.dedup_distance;
    req.exact = f.exact;
    let save_as = f.save_as;
    let answer = page
        .api
        .blocking("http:build", f.pool, move |s| {
            // An upload that is not an image is refused before anything is built or stored.
            let limits = &s.settings().models.pipeline.limits;
            for e in &req.errors {
                if let QueryInput::Image { name, bytes } = &e.input {
                    crate::features::preprocess::decode_within(bytes, limits).map_err(|err| {
                        crate::service::ServiceError::InvalidArgument {
                            field: "errors",
                            reason: format!("{name} is not a usable image: {err}"),
                        }
                    })?;
                }
            }
            let (result, record) = s.build_and_save_debug_set(&req, &save_as, None)?;
            Ok(json!({"name": record.name, "items": result.items.len()}))
        })
        .await?;
    Ok(Json(answer))
}

async fn thumb(
    State(page): State<Page>,
    Path((pool, row)): Path<(String, RowId)>,
) -> Result<Response, HttpError> {
    let jpeg = page
        .api
        .blocking("http:thumb", pool.clone(), move |s| {
            Ok(s.thumbnail(&pool, row)?)
        })
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "private, max-age=86400"),
        ],
        jpeg,
    )
        .into_response())
}
