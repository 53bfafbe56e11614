//! `EvaluateDebugSet` on the wire: the request off it, the evaluation onto it and back.

use tonic::Status;

use super::convert::{
    debug_set_request, error_sample, invalid, wire_debug_set_request, wire_error_sample,
};
use super::pb;
use crate::debugset::{Comparison, ItemScore};
use crate::service::{EvaluationPoint, EvaluationRequest, EvaluationResult};

/// An evaluation request off the wire: 0 for folds or draws is the server's default.
pub fn evaluation_request(r: &pb::EvaluateDebugSetRequest) -> Result<EvaluationRequest, Status> {
    let set = r
        .set
        .as_ref()
        .ok_or_else(|| invalid("set", "give the debug-set recipe to evaluate"))?;
    Ok(EvaluationRequest {
        recipe: debug_set_request(set)?,
        held_out: r
            .held_out
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, e)| error_sample(i, e))
            .collect::<Result<_, _>>()?,
        folds: Some(r.folds as usize).filter(|&f| f > 0),
        ks: r.ks.iter().map(|&k| k as usize).collect(),
        budgets: r.budgets.iter().map(|&b| b as usize).collect(),
        draws: Some(r.random_draws as usize).filter(|&d| d > 0),
        seed: r.seed,
        build_without_labels: r.build_without_labels,
    })
}

/// An evaluation request on the wire.
pub fn wire_evaluation_request(r: &EvaluationRequest) -> pb::EvaluateDebugSetRequest {
    pb::EvaluateDebugSetRequest {
        set: Some(wire_debug_set_request(&r.recipe)),
        held_out: r.held_out.iter().map(wire_error_sample).collect(),
        folds: r.folds.unwrap_or(0) as u32,
        ks: r.ks.iter().map(|&k| k as u32).collect(),
        budgets: r.budgets.iter().map(|&b| b as u32).collect(),
        random_draws: r.draws.unwrap_or(0) as u32,
        seed: r.seed,
        build_without_labels: r.build_without_labels,
    }
}

/// The evaluation on the wire.
pub fn evaluation(r: &EvaluationResult) -> pb::DebugSetEvaluation {
    pb::DebugSetEvaluation {
        folds: r.folds as u32,
        scored: r.scored as u32,
        labelled: r.labelled as u32,
        skipped: r.skipped.clone(),
        thresholds: r
            .thresholds
            .iter()
            .map(|&(percentile, distance)| pb::CoverageThreshold {
                percentile,
                distance,
            })
            .collect(),
        points: r.points.iter().map(point).collect(),
        engine: r.engine.clone(),
        pool_items: r.pool_items,
    }
}

fn point(p: &EvaluationPoint) -> pb::EvaluationPoint {
    let c = &p.comparison;
    let firsts = |v: &[(f32, f32)]| v.iter().map(|x| x.0).collect();
    let seconds = |v: &[(f32, f32)]| v.iter().map(|x| x.1).collect();
    let labelled = c.label_covered.as_deref().unwrap_or(&[]);
    pb::EvaluationPoint {
        k: p.k as u32,
        budget: p.budget.map(|b| b as u32),
        items: p.items,
        win_rate: c.win_rate,
        label_win_rate: c.label_win_rate,
        score: c.score(),
        nearest: c.nearest,
        random_nearest: c.random_nearest,
        covered: firsts(&c.covered),
        random_covered: seconds(&c.covered),
        label_covered: firsts(labelled),
        random_label_covered: seconds(labelled),
        useful: c.items.useful,
        random_useful: c.items.random_useful,
        near: c.items.near,
        agree: c.items.agree,
        random_agree: c.items.random_agree,
    }
}

/// The evaluation off the wire.
pub fn evaluation_of(r: &pb::DebugSetEvaluation) -> EvaluationResult {
    EvaluationResult {
        folds: r.folds as usize,
        scored: r.scored as usize,
        labelled: r.labelled as usize,
        skipped: r.skipped.clone(),
        thresholds: r
            .thresholds
            .iter()
            .map(|t| (t.percentile, t.distance))
            .collect(),
        points: r
            .points
            .iter()
            .map(|p| EvaluationPoint {
                k: p.k as usize,
                budget: p.budget.map(|b| b as usize),
                items: p.items,
                comparison: Comparison {
                    win_rate: p.win_rate,
                    label_win_rate: p.label_win_rate,
                    nearest: p.nearest,
                    random_nearest: p.random_nearest,
                    covered: pairs(&p.covered, &p.random_covered),
                    label_covered: p
                        .label_win_rate
                        .map(|_| pairs(&p.label_covered, &p.random_label_covered)),
                    items: ItemScore {
                        useful: p.useful,
                        random_useful: p.random_useful,
                        near: p.near,
                        agree: p.agree,
                        random_agree: p.random_agree,
                    },
                },
            })
            .collect(),
        engine: r.engine.clone(),
        pool_items: r.pool_items,
    }
}

fn pairs(a: &[f32], b: &[f32]) -> Vec<(f32, f32)> {
    a.iter().copied().zip(b.iter().copied()).collect()
}
