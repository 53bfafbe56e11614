//! Evaluating a debug-set recipe without a model: build the set from some failures, score
//! how near it comes to the others (held-out folds, or a held-out set the caller sends)
//! against random sets of the same size, at every point of a k / budget curve.

use rand::seq::index::sample;
use rand::SeedableRng;

use super::nearest::vectors_of;
use super::reports::items_by_row;
use super::{DebugSetRequest, ErrorSample};
use crate::debugset::{
    compare, reach, score_items, view_items, Comparison, ErrorLabel, ItemView, Point, Reach,
};
use crate::index::manager::Engine;
use crate::service::storage::PoolRows;
use crate::service::Result;
use crate::service::{QueryInput, Service, ServiceError};
use crate::types::RowId;

/// Folds when the request names none.
pub const DEFAULT_FOLDS: usize = 5;
/// Most folds a request may ask for.
pub const MAX_FOLDS: usize = 20;
/// Random sets drawn per set when the request names no number.
pub const DEFAULT_DRAWS: usize = 5;
/// Most random draws a request may ask for.
pub const MAX_DRAWS: usize = 100;
/// Most points on one curve (each is a set built per fold).
pub const MAX_POINTS: usize = 32;
/// Shares of the pool's nearest-neighbour distances at which coverage is reported.
pub const COVERAGE_PERCENTILES: [f32; 3] = [0.5, 0.9, 0.99];

/// An evaluation: a recipe, and what to score it on.
#[derive(Clone, Debug)]
pub struct EvaluationRequest {
    /// How the sets are built; its error samples are split into folds unless `held_out`
    /// is given.
    pub recipe: DebugSetRequest,
    /// Failures to score the sets on (then every error sample of the recipe builds them).
    pub held_out: Vec<ErrorSample>,
    /// Folds of the error samples (None: `DEFAULT_FOLDS`, at most the samples there are).
    pub folds: Option<usize>,
    /// The curve's k values (empty: the recipe's k).
    pub ks: Vec<usize>,
    /// The curve's budgets (empty: the recipe's budget).
    pub budgets: Vec<usize>,
    /// Random sets per built set (None: `DEFAULT_DRAWS`).
    pub draws: Option<usize>,
    /// Seeds the folds and the random draws.
    pub seed: u64,
    /// Build the sets as if the error samples had no labels, and score with their labels.
    pub build_without_labels: bool,
}

/// One point of the curve.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EvaluationPoint {
    /// Neighbours per error sample.
    pub k: usize,
    /// Budget (None: no limit).
    pub budget: Option<usize>,
    /// Items per set, the mean over the folds.
    pub items: f32,
    /// The sets against random sets of the same sizes.
    pub comparison: Comparison,
}

/// What an evaluation found.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EvaluationResult {
    /// Folds the error samples were split into (0: scored on the held-out failures).
    pub folds: usize,
    /// Held-out failures each point was scored on.
    pub scored: usize,
    /// Of them, those with a true label.
    pub labelled: usize,
    /// Error samples or held-out failures that could not be used, with why.
    pub skipped: Vec<String>,
    /// Coverage thresholds: (share of the pool's nearest-neighbour distances, squared ℓ2).
    pub thresholds: Vec<(f32, f32)>,
    /// The curve, k-major.
    pub points: Vec<EvaluationPoint>,
    /// Search engine used.
    pub engine: String,
    /// Items in the pool.
    pub pool_items: u64,
}

/// A failure resolved to the pool's space, with its true label and weight.
struct Resolved {
    vector: Vec<f32>,
    truth: ErrorLabel,
}

/// Which failures build a set and which score it, one pair per fold.
struct Split {
    build: Vec<usize>,
    score: Vec<usize>,
}

impl Service {
    /// Evaluates a debug-set recipe: see the module header.
    pub fn evaluate_debug_set(&self, req: &EvaluationRequest) -> Result<EvaluationResult> {
        let draws = check(req)?;
        let recipe = &req.recipe;
        let handle = self.pool(&recipe.pool)?;
        let key_pool = match &recipe.errors_pool {
            Some(name) if name != &recipe.pool => {
                let other = self.pool(name)?;
                crate::service::query::check_same_space(&handle, &other)?;
                other
            }
            _ => handle.clone(),
        };
        let mut skipped = Vec::new();
        let mut resolve = |samples: &[ErrorSample], what: &'static str| -> Result<Vec<Resolved>> {
            let inputs: Vec<&QueryInput> = samples.iter().map(|s| &s.input).collect();
            let vectors = self.resolve(&handle, &key_pool, &inputs, what)?;
            let mut out = Vec::new();
            for (i, (v, s)) in vectors.into_iter().zip(samples).enumerate() {
                match v {
                    Ok(vector) => out.push(Resolved {
                        vector,
                        truth: s.truth.clone(),
                    }),
                    Err(e) => skipped.push(format!("{what} {i}: {e}")),
                }
            }
            Ok(out)
        };
        let errors = resolve(&recipe.errors, "error samples")?;
        let held_out = if req.held_out.is_empty() {
            Vec::new()
        } else {
            resolve(&req.held_out, "held_out")?
        };
        let (failures, splits, folds) = split(errors, held_out, req)?;
        let engine = if recipe.exact {
            Engine::Exact
        } else {
            Engine::Native
        };
        // A pool's read guard is never held across a build: the build takes its own, and a
        // second read on one thread waits behind any writer queued in between (an ingest, the
        // index swapping in its catch-up), which would wait on the first: a deadlock.
        let scale = self
            .distance_scales
            .of(handle.ready(engine, false)?.as_ref(), recipe.ef)?;
        let thresholds: Vec<(f32, f32)> = COVERAGE_PERCENTILES
            .iter()
            .map(|&p| (p, scale.at(p)))
            .collect();
        let ks = if req.ks.is_empty() {
            vec![recipe.k]
        } else {
            req.ks.clone()
        };
        let budgets: Vec<Option<usize>> = if req.budgets.is_empty() {
            vec![recipe.merge.budget]
        } else {
            req.budgets.iter().map(|&b| Some(b)).collect()
        };
        let scored: Vec<usize> = splits.iter().flat_map(|s| s.score.clone()).collect();
        let held: Vec<Point<'_>> = scored
            .iter()
            .map(|&i| Point {
                vector: &failures[i].vector,
                label: failures[i].truth.label.as_deref(),
            })
            .collect();
        let mut points = Vec::new();
        for (p, (&k, &budget)) in ks
            .iter()
            .flat_map(|k| budgets.iter().map(move |b| (k, b)))
            .enumerate()
        {
            let mut set_reach: Vec<Reach> = Vec::with_capacity(held.len());
            let mut random_reach: Vec<Vec<Reach>> = vec![Vec::with_capacity(held.len()); draws];
            let (mut set_views, mut random_views) = (Vec::new(), Vec::new());
            let mut items = 0usize;
            let mut offset = 0;
            for (f, s) in splits.iter().enumerate() {
                let mut built = recipe.clone();
                built.k = k;
                built.merge.budget = budget;
                built.errors_pool = None;
                built.errors = s
                    .build
                    .iter()
                    .map(|&i| ErrorSample {
                        input: QueryInput::Vector(failures[i].vector.clone()),
                        truth: ErrorLabel {
                            label: failures[i]
                                .truth
                                .label
                                .clone()
                                .filter(|_| !req.build_without_labels),
                            weight: failures[i].truth.weight,
                        },
                    })
                    .collect();
                let set = self.build_debug_set(&built)?;
                let ready = handle.ready(engine, false)?;
                let pool: &dyn PoolRows = ready.as_ref();
                let fold_held = &held[offset..offset + s.score.len()];
                offset += s.score.len();
                let rows: Vec<RowId> = set.items.iter().map(|i| i.row).collect();
                let labels: Vec<Option<&str>> = set.items.iter().map(|i| i.train_label()).collect();
                let (r, v) = measure(pool, fold_held, &rows, &labels)?;
                set_reach.extend(r);
                set_views.extend(v);
                let mut distinct = rows.clone();
                distinct.sort_unstable();
                distinct.dedup();
                items += distinct.len();
                let mut rng = rand::rngs::StdRng::seed_from_u64(
                    req.seed ^ ((p as u64) << 40) ^ ((f as u64) << 20),
                );
                for draw in random_reach.iter_mut() {
                    let n = distinct.len().min(pool.len());
                    let rows: Vec<RowId> = sample(&mut rng, pool.len(), n)
                        .into_iter()
                        .map(|r| r as RowId)
                        .collect();
                    let stored = items_by_row(pool, &rows)?;
                    let labels: Vec<Option<&str>> =
                        rows.iter().map(|r| stored[r].label.as_deref()).collect();
                    let (r, v) = measure(pool, fold_held, &rows, &labels)?;
                    draw.extend(r);
                    random_views.extend(v);
                }
            }
            let limits: Vec<f32> = thresholds.iter().map(|t| t.1).collect();
            points.push(EvaluationPoint {
                k,
                budget,
                items: items as f32 / splits.len() as f32,
                comparison: Comparison {
                    items: score_items(&set_views, &random_views),
                    ..compare(&set_reach, &random_reach, &limits)
                },
            });
        }
        let ready = handle.ready(engine, false)?;
        Ok(EvaluationResult {
            folds,
            scored: held.len(),
            labelled: held.iter().filter(|h| h.label.is_some()).count(),
            skipped,
            thresholds,
            points,
            engine: ready.engine_name(),
            pool_items: ready.len() as u64,
        })
    }
}

/// How near the items `rows` (with `labels`) come to each of `held`, and how each item
/// looks from them.
fn measure(
    pool: &dyn PoolRows,
    held: &[Point<'_>],
    rows: &[RowId],
    labels: &[Option<&str>],
) -> Result<(Vec<Reach>, Vec<ItemView>)> {
    let vectors = vectors_of(pool, rows)?;
    let points: Vec<Point<'_>> = rows
        .iter()
        .zip(labels)
        .map(|(r, &label)| Point {
            vector: &vectors[r],
            label,
        })
        .collect();
    Ok((reach(held, &points), view_items(&points, held)))
}

/// Splits the failures into folds (or builds from all errors and scores on `held_out`).
/// Returns every failure, the splits over them, and the number of folds (0: held out).
fn split(
    errors: Vec<Resolved>,
    held_out: Vec<Resolved>,
    req: &EvaluationRequest,
) -> Result<(Vec<Resolved>, Vec<Split>, usize)> {
    let invalid =
        |field: &'static str, reason: String| ServiceError::InvalidArgument { field, reason };
    if !req.held_out.is_empty() {
        if held_out.is_empty() || errors.is_empty() {
            return Err(invalid(
                "held_out",
                "no held-out failure or no error sample could be used (see the skipped list in the server log): send inputs that decode".into(),
            ));
        }
        let n = errors.len();
        let m = held_out.len();
        let mut all = errors;
        all.extend(held_out);
        let splits = vec![Split {
            build: (0..n).collect(),
            score: (n..n + m).collect(),
        }];
        return Ok((all, splits, 0));
    }
    let n = errors.len();
    if n < 2 {
        return Err(invalid(
            "errors",
            format!("{n} usable error samples: holding some out needs at least 2; send more, or send held_out failures to score on"),
        ));
    }
    let folds = req.folds.unwrap_or(DEFAULT_FOLDS).min(n);
    let mut rng = rand::rngs::StdRng::seed_from_u64(req.seed);
    let order = sample(&mut rng, n, n).into_vec();
    let splits = (0..folds)
        .map(|f| {
            let mut split = Split {
                build: Vec::new(),
                score: Vec::new(),
            };
            for (pos, &i) in order.iter().enumerate() {
                if pos % folds == f {
                    split.score.push(i);
                } else {
                    split.build.push(i);
                }
            }
            split
        })
        .collect();
    Ok((errors, splits, folds))
}

/// Checks what needs no pool; returns the number of random draws.
fn check(req: &EvaluationRequest) -> Result<usize> {
    let invalid = |field: &'static str, reason: String| -> Result<usize> {
        Err(ServiceError::InvalidArgument { field, reason })
    };
    if let Some(f) = req.folds {
        if !(2..=MAX_FOLDS).contains(&f) {
            return invalid(
                "folds",
                format!("{f} folds: give 2 to {MAX_FOLDS} (or none for {DEFAULT_FOLDS})"),
            );
        }
        if !req.held_out.is_empty() {
            return invalid(
                "folds",
                "with held_out failures every error sample builds the set: leave folds out".into(),
            );
        }
    }
    let draws = req.draws.unwrap_or(DEFAULT_DRAWS);
    if !(1..=MAX_DRAWS).contains(&draws) {
        return invalid(
            "random_draws",
            format!("{draws} draws: give 1 to {MAX_DRAWS}"),
        );
    }
    if req.budgets.contains(&0) {
        return invalid("budgets", "a budget must be at least 1".into());
    }
    if req.ks.contains(&0) {
        return invalid("ks", "k must be at least 1".into());
    }
    let points = req.ks.len().max(1) * req.budgets.len().max(1);
    if points > MAX_POINTS {
        return invalid("ks", format!("{points} points (ks x budgets): give at most {MAX_POINTS}; each builds a set per fold"));
    }
    Ok(draws)
}
