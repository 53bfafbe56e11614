//! What a trusted reference pool (e.g. the model's own training set, clean labels, same
//! backbone) tells a debug set: each candidate's **gap** (squared ℓ2 to its nearest reference
//! item) ranked among the gaps of a sample of the pool, and a **label estimate** (a linear
//! probe fitted on a sample of the reference plus the labelled error samples).
//!
//! The reference-only probe and the pool's gap sample depend only on the two pools, so they
//! are cached per pool generation (catalog id and row count): a request pays for them once.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::nearest::nearest_items;
use super::request::{EstimateReport, ReferenceReport};
use super::samples::{cached, spread, Generation};
use super::stages::StageClock;
use super::ErrorSample;
use crate::debugset::{FitParams, LabelEstimates, LabelProbe, ProbeError, TrainingSet};
use crate::service::query::Resolved;
use crate::service::storage::{PoolRows, PoolSearch};
use crate::service::Result;
use crate::types::RowId;

/// Search breadth of the one-nearest lookups that measure gaps. A gap is a soft signal
/// ranked against gaps measured the same way, and on the bench's 1M × 384 pool with a 100k
/// reference this breadth found the true nearest reference item for every item of a 1000-item
/// set, at 40% of the default breadth's time; `exact` requests measure gaps exactly.
pub const GAP_EF: usize = 16;
/// Pool rows whose gaps rank a candidate's.
pub const GAP_SAMPLE: usize = 1000;
/// Most reference items a probe is fitted on.
pub const PROBE_SAMPLE: usize = 4096;
/// Every how many of the probe's reference items a per-request fine-tune keeps.
pub const FINE_TUNE_EVERY: usize = 4;
/// A labelled error sample counts this many times its weight in the probe's fit: there are
/// few of them, and they are the only labelled images of the failing slice.
pub const ERROR_WEIGHT_IN_PROBE: f32 = 5.0;
/// Gaps of a sample of a pool's rows to a reference, sorted, per (pool, reference).
type GapSamples = HashMap<(Generation, Generation), Arc<Vec<f32>>>;

/// The reference-only fit: the items it was fitted on and the probe (or why there is none).
struct ReferenceFit {
    training: TrainingSet,
    probe: std::result::Result<LabelProbe, ProbeError>,
}

/// Cached per-pool work of reference lookups.
#[derive(Default)]
pub struct ReferenceCache {
    fits: Mutex<HashMap<Generation, Arc<ReferenceFit>>>,
    gap_samples: Mutex<GapSamples>,
}

/// Gaps of some rows, measured against a reference.
pub(super) struct Gaps {
    /// Squared ℓ2 from each row to its nearest reference item.
    pub gaps: HashMap<RowId, f32>,
    /// Share of the pool's sample with a smaller gap than each row's.
    pub percentiles: HashMap<RowId, f32>,
    /// Size of that sample.
    pub sample: usize,
}

/// Whether a request needs the reference's label estimate.
#[derive(Clone, Copy, Debug)]
pub(super) enum Estimate {
    /// Fit (or fine-tune) the probe and estimate every candidate's label.
    Wanted,
    /// Nothing the estimate says could change the set, for this reason.
    NotNeeded(&'static str),
}

/// What the reference says of the candidates.
pub(super) struct ReferenceView {
    /// Squared ℓ2 from each candidate to its nearest reference item.
    pub gaps: HashMap<RowId, f32>,
    /// Share of the pool's sample with a smaller gap than each candidate's.
    pub percentiles: HashMap<RowId, f32>,
    /// Class probabilities of each candidate, where a probe could be fitted.
    pub estimate: Option<LabelEstimates>,
    /// What was used, for the summary.
    pub report: ReferenceReport,
}

impl ReferenceCache {
    /// The gaps of `rows` (squared ℓ2 to the nearest reference item) and their percentiles
    /// among the gaps of a sample of the pool, and that sample's size.
    pub(super) fn gaps(
        &self,
        pool: &dyn PoolRows,
        reference: &dyn PoolSearch,
        rows: &[RowId],
    ) -> Result<Gaps> {
        let nearest =
            nearest_items(pool, rows, &[], Some(reference), Some(GAP_EF))?.unwrap_or_default();
        let gaps: HashMap<RowId, f32> = nearest.iter().map(|(&r, n)| (r, n.distance)).collect();
        let sample = cached(
            &self.gap_samples,
            (pool.generation(), reference.generation()),
            || {
                let rows = spread(pool.len(), GAP_SAMPLE);
                let found = nearest_items(pool, &rows, &[], Some(reference), Some(GAP_EF))?
                    .unwrap_or_default();
                let mut d: Vec<f32> = found.values().map(|n| n.distance).collect();
                d.sort_by(f32::total_cmp);
                Ok(d)
            },
        )?;
        let percentiles = gaps
            .iter()
            .map(|(&r, &g)| {
                let below = sample.partition_point(|&s| s < g);
                (r, below as f32 / sample.len().max(1) as f32)
            })
            .collect();
        Ok(Gaps {
            gaps,
            percentiles,
            sample: sample.len(),
        })
    }

    /// Looks the candidates up in the reference: the gaps of `gap_rows` (the candidates when
    /// a rule needs them; the set's items are measured after the merge otherwise), and every
    /// candidate's class probabilities under a probe fitted on the reference and the
    /// labelled error samples, where the `estimate` is wanted.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn consult(
        &self,
        pool: &dyn PoolRows,
        reference: &dyn PoolSearch,
        candidates: &[RowId],
        gap_rows: &[RowId],
        estimate: Estimate,
        errors: &[ErrorSample],
        resolved: &Resolved,
        clock: &mut StageClock,
    ) -> Result<ReferenceView> {
        let refpool: &dyn PoolRows = reference;
        let Gaps {
            gaps,
            percentiles,
            sample: gap_sample,
        } = self.gaps(pool, reference, gap_rows)?;
        clock.lap("reference gaps");
        let mut report = ReferenceReport {
            pool: refpool.record().name.clone(),
            items: refpool.len() as u64,
            gap_sample,
            label_estimate: None,
            no_label_estimate: None,
        };
        if let Estimate::NotNeeded(why) = estimate {
            report.no_label_estimate = Some(format!("not fitted: {why}"));
            return Ok(ReferenceView {
                gaps,
                percentiles,
                estimate: None,
                report,
            });
        }
        let fit = cached(&self.fits, refpool.generation(), || {
            let started = std::time::Instant::now();
            let training = probe_training_set(refpool)?;
            let read = started.elapsed().as_secs_f64();
            let probe = LabelProbe::fit(&training, None, FitParams::FRESH);
            tracing::info!(
                items = training.len(),
                read_secs = read,
                fit_secs = started.elapsed().as_secs_f64() - read,
                "label probe fitted on the reference"
            );
            Ok(ReferenceFit { training, probe })
        })?;
        let estimate = match &fit.probe {
            Err(e) => {
                report.no_label_estimate = Some(format!(
                    "the reference's sample of {} items: {e}",
                    fit.training.len()
                ));
                None
            }
            Ok(base) => {
                // The error samples fine-tune the probe against a fixed share of the reference,
                // each item standing for the ones left out, so that the balance between the
                // two is the full fit's at a quarter of the work.
                let mut training = fit.training.every(FINE_TUNE_EVERY);
                let mut used = 0;
                for (e, v) in errors.iter().zip(resolved) {
                    if let (Some(label), Ok(v)) = (&e.truth.label, v) {
                        if base.classes().contains(label) {
                            training.push(v, label.clone(), ERROR_WEIGHT_IN_PROBE * e.truth.weight);
                            used += 1;
                        }
                    }
                }
                let probe = if used > 0 {
                    LabelProbe::fit(&training, Some(base), FitParams::FINE_TUNE).map_err(|e| {
                        crate::service::ServiceError::Internal {
                            what: e.to_string(),
                        }
                    })?
                } else {
                    base.clone()
                };
                clock.lap("probe fine-tune");
                let probabilities = candidates
                    .iter()
                    .zip(pool.vectors(candidates)?.iter_rows())
                    .map(|(&r, v)| (r, probe.probabilities(v)))
                    .collect();
                report.label_estimate = Some(EstimateReport {
                    classes: probe.classes().to_vec(),
                    // The reference items the probe learnt from, fine-tuned on a share of
                    // them or not, and the error samples.
                    fitted_on: base.fitted_on + used,
                    error_samples: used,
                    train_accuracy: probe.train_accuracy,
                });
                Some(LabelEstimates {
                    classes: probe.classes().to_vec(),
                    probabilities,
                })
            }
        };
        Ok(ReferenceView {
            gaps,
            percentiles,
            estimate,
            report,
        })
    }
}

/// A sample of the reference's labelled items, spread over its rows.
fn probe_training_set(reference: &dyn PoolRows) -> Result<TrainingSet> {
    let rows = spread(reference.len(), PROBE_SAMPLE);
    let mut training = TrainingSet::new(reference.dim());
    for chunk in rows.chunks(1024) {
        let vectors = reference.vectors(chunk)?;
        for (v, item) in vectors.iter_rows().zip(reference.items(chunk)?) {
            if let Some(label) = item.label {
                training.push(v, label, 1.0);
            }
        }
    }
    Ok(training)
}
