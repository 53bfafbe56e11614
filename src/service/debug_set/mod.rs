//! Debug-train sets: the error samples' searches, the merge with its rules (consensus,
//! negatives, the label vote, dedup, the holdout), and the set with its summary.

mod checks;
mod evaluation;
pub mod export;
mod manifest;
mod nearest;
mod overview;
mod reference;
mod reports;
mod request;
mod review;
mod rounds;
mod samples;
mod saved;
mod scale;
mod stages;
mod weak_labels;

pub use evaluation::{EvaluationPoint, EvaluationRequest, EvaluationResult, DEFAULT_DRAWS};
pub use manifest::{PoolAtSave, ReviewCarry, SavedInput, SetManifest};
pub use overview::{SampledItem, SetOverview};
pub use reference::ReferenceCache;
pub use request::{
    CollisionReport, DebugItem, DebugSetRequest, DebugSetResult, ErrorCoverage, ErrorSample,
    EstimateReport, ModeReport, ReferenceReport, VetoReport, DEFAULT_MAX_MODES, MAX_MODES,
};
pub use review::{ItemSelector, ReviewRequest};
pub use rounds::{next_round_request, RoundReport, DEFAULT_ACCEPTED_WEIGHT};
pub use saved::{SavedDebugSet, SetDiff};
pub use scale::DistanceScales;
pub use weak_labels::WeakLabels;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use self::reference::Estimate;
use self::reports::items_by_row;
use self::stages::StageClock;
use super::query::{check_same_space, run_queries};
use super::storage::{Lookup, PoolSearch, StoredPool};
use super::{QueryInput, Service, ServiceError};
use crate::debugset::{
    self, Dedup, Diversity, ErrorLabel, Gap, Holdout, LabelPolicy, LabelQuotas, LabelTrust, Merge,
    ModeSplit, Negatives, Rules,
};
use crate::index::manager::Engine;
use crate::service::Result;
use crate::types::{Neighbor, RowId};

impl Service {
    /// Builds a debug-train set; with `from_set`, the next round after that set's review.
    pub fn build_debug_set(&self, req: &DebugSetRequest) -> Result<DebugSetResult> {
        let Some(parent) = &req.from_set else {
            return self.build_set(req);
        };
        let (base, carry, inherited) = self.round_of(req, parent)?;
        let mut round = self.with_carry(&base, &carry)?;
        // Inherited inputs come with the parent's request, which never asks for a map.
        round.overview = req.overview;
        let mut result = self.build_set(&round)?;
        result.request.from_set = Some(parent.clone());
        result.round = Some(rounds::round_report(parent, &base, &carry, inherited));
        Ok(result)
    }

    /// Builds the set `req` names, its inputs as given (`from_set` already applied).
    fn build_set(&self, req: &DebugSetRequest) -> Result<DebugSetResult> {
        let mut clock = StageClock::start();
        let (policy, depth) = checks::check_request(req)?;
        self.check_hits(req.errors.len(), depth, "error samples")?;
        let handle = self.pool(&req.pool)?;
        let key_pool = match &req.errors_pool {
            Some(name) if name != &req.pool => {
                let other = self.pool(name)?;
                check_same_space(&handle, &other)?;
                other
            }
            _ => handle.clone(),
        };
        let inputs: Vec<&QueryInput> = req.errors.iter().map(|e| &e.input).collect();
        let resolved = self.resolve(&handle, &key_pool, &inputs, "error samples")?;
        let listed_negatives =
            self.resolve_listed(&handle, &key_pool, &req.negatives, "negatives")?;
        nearest::check_negatives_differ(&listed_negatives, &resolved)?;
        let negative_pool = self.other_pool(&handle, req, &req.negative_pool, "negative_pool")?;
        let listed_holdout = self.resolve_listed(&handle, &key_pool, &req.holdout, "holdout")?;
        let holdout_pool = self.other_pool(&handle, req, &req.holdout_pool, "holdout_pool")?;
        let reference_pool =
            self.other_pool(&handle, req, &req.reference_pool, "reference_pool")?;
        let engine = if req.exact {
            Engine::Exact
        } else {
            Engine::Native
        };
        let rerank = req.exact_rerank && !req.exact;
        clock.lap("resolve");
        let ready = handle.ready(engine, rerank)?;
        let pool: &dyn PoolSearch = ready.as_ref();
        let selection = pool.select(&req.labels, &req.exclude_keys)?;
        let excluded = selection.as_ref().map_or(0, |s| s.excluded);
        let lookup = Lookup {
            k: depth,
            ef: req.ef,
            within: selection.as_ref(),
        };
        let scale = match req.max_distance_percentile {
            Some(_) => Some(self.distance_scales.of(pool, req.ef)?),
            None => None,
        };
        let mut merge = req.merge;
        if let (Some(s), Some(p)) = (&scale, req.max_distance_percentile) {
            merge.max_distance = Some(s.at(p));
        }
        clock.lap("scale");
        let lists = run_queries(pool, &resolved, &lookup, rerank)?;
        clock.lap("search");
        let usable: Vec<Vec<Neighbor>> = lists
            .iter()
            .map(|r| r.clone().unwrap_or_default())
            .collect();
        let truths: Vec<ErrorLabel> = req.errors.iter().map(|e| e.truth.clone()).collect();
        let mut candidates: Vec<RowId> = usable.iter().flatten().map(|n| n.id).collect();
        candidates.sort_unstable();
        candidates.dedup();
        // Without a gap rule only the set's items need their gaps: measured after the merge.
        let gap_rows: &[RowId] = match req.min_gap_percentile {
            Some(_) => &candidates,
            None => &[],
        };
        // Where every error sample is labelled and every weak label is kept, no label
        // estimate could change the set: the probe is not fitted.
        let all_labelled = truths.iter().all(|t| t.label.is_some());
        let estimate = if all_labelled && policy == LabelPolicy::Keep {
            Estimate::NotNeeded(
                "every error sample is labelled and the policy keeps every weak label",
            )
        } else {
            Estimate::Wanted
        };
        let mut reference = match &reference_pool {
            Some(h) => Some(self.references.consult(
                pool,
                h.ready(engine, false)?.as_ref(),
                &candidates,
                gap_rows,
                estimate,
                &req.errors,
                &resolved,
                &mut clock,
            )?),
            None => None,
        };
        clock.lap("reference");
        let estimate = reference.as_ref().and_then(|r| r.estimate.as_ref());
        let judged = truths.iter().any(|t| t.label.is_some()) || estimate.is_some();
        if !judged && policy != LabelPolicy::Keep {
            let why = reference
                .as_ref()
                .and_then(|r| r.report.no_label_estimate.clone())
                .unwrap_or_default();
            return Err(ServiceError::InvalidArgument {
                field: "label_policy",
                reason: format!(
                    "{policy} needs labelled error samples or a label estimate from the reference, and there is neither ({why}); label the error samples, ingest the reference with labels, or use keep"
                ),
            });
        }
        let negatives_ready = match &negative_pool {
            Some(h) => Some(h.ready(engine, false)?),
            None => None,
        };
        let nearest = nearest::nearest_items(
            pool,
            &candidates,
            &listed_negatives,
            negatives_ready.as_deref(),
            req.ef,
        )?;
        // Leakage is checked by exact search, never by an approximate index.
        let holdout_ready = match &holdout_pool {
            Some(h) => Some(h.ready(Engine::Exact, false)?),
            None => None,
        };
        let held_out = nearest::nearest_items(
            pool,
            &candidates,
            &listed_holdout,
            holdout_ready.as_deref(),
            None,
        )?;
        clock.lap("negatives+holdout");
        let diverse = req.mmr_lambda.is_some_and(|l| l < 1.0);
        // Near-duplicates, diversity and the mean merge are judged on the candidates' stored
        // vectors, read once.
        let vectors = if req.dedup_distance.is_some() || diverse || req.merge.merge == Merge::Mean {
            nearest::vectors_of(pool, &candidates)?
        } else {
            HashMap::new()
        };
        let mean_distance =
            (req.merge.merge == Merge::Mean).then(|| nearest::mean_distances(&vectors, &resolved));
        let quotas = req.max_per_label.is_some()
            || !req.label_caps.is_empty()
            || !req.label_targets.is_empty();
        // The vote and the label caps need the weak label of every candidate, not only of
        // the rows kept: from the pool's label column where it is held in memory, else with
        // the candidates' items from the catalog.
        let need_weak = judged || quotas;
        let column = match need_weak {
            true => self.weak_labels.of(pool)?,
            false => None,
        };
        let mut items = match (need_weak, &column) {
            (true, None) => items_by_row(pool, &candidates)?,
            _ => HashMap::new(),
        };
        let weak: HashMap<RowId, Option<String>> = match &column {
            Some(c) => candidates
                .iter()
                .map(|&row| (row, c.get(row).map(str::to_owned)))
                .collect(),
            None => items
                .iter()
                .map(|(&row, item)| (row, item.label.clone()))
                .collect(),
        };
        let trust = LabelTrust {
            policy,
            errors: &truths,
            weak: &weak,
            estimate,
        };
        let vectors_of_errors: Vec<Option<&[f32]>> = resolved
            .iter()
            .map(|r| r.as_ref().ok().map(|v| v.as_slice()))
            .collect();
        let modes = debugset::find_modes(
            &vectors_of_errors,
            req.max_modes.unwrap_or(DEFAULT_MAX_MODES),
        );
        let quota = merge.budget.filter(|_| modes.count > 1).map(|b| {
            let mut weights = vec![0f64; modes.count];
            for (e, &m) in req.errors.iter().zip(&modes.of_error) {
                weights[m] += e.truth.weight as f64;
            }
            debugset::split_budget(b, &weights)
        });
        let rules = Rules {
            modes: Some(ModeSplit {
                of_error: &modes.of_error,
                count: modes.count,
                quota: quota.as_deref(),
            }),
            negatives: nearest.as_ref().map(|nearest| Negatives {
                nearest,
                margin: req.negative_margin,
            }),
            gap: match (&reference, req.min_gap_percentile) {
                (Some(r), Some(min)) => Some(Gap {
                    percentile: &r.percentiles,
                    min,
                }),
                _ => None,
            },
            labels: judged.then_some(trust),
            holdout: held_out.as_ref().map(|nearest| Holdout {
                nearest,
                radius: req.holdout_radius,
            }),
            dedup: req.dedup_distance.map(|radius| Dedup {
                radius,
                vectors: &vectors,
            }),
            mean_distance: mean_distance.as_ref(),
            label_quotas: quotas.then_some(LabelQuotas {
                weak: &weak,
                max_per_label: req.max_per_label,
                caps: &req.label_caps,
                targets: &req.label_targets,
            }),
            diversity: req.mmr_lambda.filter(|_| diverse).map(|lambda| Diversity {
                lambda,
                vectors: &vectors,
            }),
        };
        clock.lap("prepare");
        let assembled = debugset::assemble(&usable, &merge, &rules);
        clock.lap("merge");
        let rows: Vec<RowId> = assembled.entries.iter().map(|e| e.row).collect();
        let (vetoes, collisions) = reports::removed(
            pool,
            &assembled,
            &mut items,
            negatives_ready.as_deref(),
            holdout_ready.as_deref(),
        )?;
        // The read guards of other pools are let go before the reference's is taken again:
        // a second read of a pool already read waits behind any writer queued in between.
        drop(negatives_ready);
        drop(holdout_ready);
        if let (Some(view), Some(h), None) =
            (&mut reference, &reference_pool, req.min_gap_percentile)
        {
            let measured = self
                .references
                .gaps(pool, h.ready(engine, false)?.as_ref(), &rows)?;
            view.gaps = measured.gaps;
            view.percentiles = measured.percentiles;
            clock.lap("reference gaps of the set");
        }
        let missing: Vec<RowId> = rows
            .into_iter()
            .filter(|r| !items.contains_key(r))
            .collect();
        items.extend(items_by_row(pool, &missing)?);
        clock.lap("reports");
        let mut label_counts = BTreeMap::new();
        let mut out = Vec::with_capacity(assembled.entries.len());
        for entry in assembled.entries {
            let item = items
                .get(&entry.row)
                .cloned()
                .expect("every entry's row was fetched");
            let item = DebugItem {
                row: entry.row,
                key: item.key,
                label: item.label,
                best_distance: entry.best_distance,
                support: entry.support,
                found_by: entry.found_by,
                gap: reference
                    .as_ref()
                    .and_then(|r| r.gaps.get(&entry.row).copied()),
                gap_percentile: reference
                    .as_ref()
                    .and_then(|r| r.percentiles.get(&entry.row).copied()),
                distance_percentile: scale.as_ref().map(|s| s.percentile(entry.best_distance)),
                mode: entry.mode,
                labels: entry.labels,
            };
            *label_counts
                .entry(item.train_label().unwrap_or_default().to_owned())
                .or_insert(0) += 1;
            out.push(item);
        }
        let label_shortfall = req
            .label_targets
            .iter()
            .filter_map(|(label, &target)| {
                let have = label_counts.get(label).copied().unwrap_or(0) as usize;
                (have < target).then(|| (label.clone(), target - have))
            })
            .collect();
        let best: Vec<f32> = out.iter().map(|i| i.best_distance).collect();
        let coverage = assembled
            .coverage
            .into_iter()
            .zip(&lists)
            .zip(&modes.of_error)
            .map(|((c, r), &mode)| ErrorCoverage {
                mode,
                found: c.found,
                kept: c.kept,
                nearest: c.nearest,
                error: r.as_ref().err().cloned(),
                funnel: c.funnel,
            })
            .collect();
        let overview = match req.overview {
            true => {
                let errors: Vec<&[f32]> = vectors_of_errors.iter().flatten().copied().collect();
                let rows: Vec<RowId> = out.iter().map(|i| i.row).collect();
                let seed = overview::seed_of_set(&req.pool, &rows);
                Some(overview::overview_of(pool, &errors, &rows, seed)?)
            }
            false => None,
        };
        clock.lap("overview");
        let mut request = req.clone();
        request.label_policy = Some(policy);
        request.merge = merge;
        Ok(DebugSetResult {
            items: out,
            coverage,
            label_counts,
            funnel: assembled.funnel,
            vetoes,
            collisions,
            reference: reference.map(|r| r.report),
            modes: assembled
                .modes
                .into_iter()
                .enumerate()
                .map(|(mode, m)| ModeReport {
                    mode,
                    errors: m.errors,
                    budget: m.budget,
                    kept: m.kept,
                    funnel: m.funnel,
                })
                .collect(),
            mode_silhouette: modes.silhouette,
            label_shortfall,
            distances: debugset::quantiles(&best),
            request,
            backbone: pool.record().backbone.clone(),
            engine: ready.engine_name(),
            pool_items: pool.len() as u64,
            excluded,
            round: None,
            overview,
        })
    }
}

impl Service {
    /// The pool named by `field` (negative_pool, holdout_pool), in the same space as the
    /// pool the set is drawn from and not that pool itself.
    fn other_pool(
        &self,
        handle: &Arc<dyn StoredPool>,
        req: &DebugSetRequest,
        name: &Option<String>,
        field: &'static str,
    ) -> Result<Option<Arc<dyn StoredPool>>> {
        match name {
            Some(name) if name == &req.pool => Err(ServiceError::InvalidArgument {
                field,
                reason: format!(
                    "{name} is the pool the set is drawn from: every candidate would match itself; name another pool"
                ),
            }),
            Some(name) => {
                let other = self.pool(name)?;
                check_same_space(handle, &other)?;
                Ok(Some(other))
            }
            None => Ok(None),
        }
    }
}
