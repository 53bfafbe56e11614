//! A label estimate fitted on a trusted reference: multinomial logistic regression (a linear
//! probe) on standardised features, trained by full-batch AdamW on its closed-form gradient.
//! A model this small is a few thousand dot products a step; written out, a fit costs a
//! fraction of what a tensor library's per-operation overhead adds to it.
//!
//! Why a probe and not neighbours: the features group images by how they look (a corruption,
//! a backdrop) more than by class, so a candidate's nearest reference items often carry the
//! wrong class, while a linear read-out of the whole space transfers better. Measured on the
//! public cases (docs/debug-sets.md): a probe on the reference alone keeps weak labels 0.79–0.88
//! right; fitted on the reference plus the labelled error samples (weight 5 each) 0.85–0.95
//! (scikit-learn on the same features, before this was written).

use std::collections::BTreeSet;

use crate::features::cpu::math::gemm_strided;
use crate::index::distance::dot;

/// Why a probe could not be fitted.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ProbeError {
    /// The training set has too few labelled items or classes to say anything.
    #[error("{items} labelled items in {classes} classes: a label estimate needs at least {MIN_CLASSES} classes with {MIN_PER_CLASS} items each")]
    TooFewLabels {
        /// Labelled items offered.
        items: usize,
        /// Classes with at least `MIN_PER_CLASS` items.
        classes: usize,
    },
}

/// Fewest classes a probe is fitted on.
pub const MIN_CLASSES: usize = 2;
/// Fewest items per class for it to count.
pub const MIN_PER_CLASS: usize = 2;

/// Labelled vectors to fit a probe on.
#[derive(Clone, Debug, Default)]
pub struct TrainingSet {
    /// Row-major vectors, `dim` each.
    pub vectors: Vec<f32>,
    /// Dimension of each vector.
    pub dim: usize,
    /// Label of each vector.
    pub labels: Vec<String>,
    /// Weight of each vector (positive).
    pub weights: Vec<f32>,
}

impl TrainingSet {
    /// An empty set of `dim`-dimensional vectors.
    pub fn new(dim: usize) -> Self {
        TrainingSet {
            dim,
            ..Default::default()
        }
    }

    /// Adds one labelled vector.
    pub fn push(&mut self, vector: &[f32], label: String, weight: f32) {
        debug_assert_eq!(vector.len(), self.dim);
        self.vectors.extend_from_slice(vector);
        self.labels.push(label);
        self.weights.push(weight);
    }

    /// Every `step`-th item, each weighing `step` times as much, so that the sample weighs
    /// what the whole did.
    pub fn every(&self, step: usize) -> TrainingSet {
        let step = step.max(1);
        let mut sample = TrainingSet::new(self.dim);
        for i in (0..self.len()).step_by(step) {
            sample.push(
                &self.vectors[i * self.dim..(i + 1) * self.dim],
                self.labels[i].clone(),
                self.weights[i] * step as f32,
            );
        }
        sample
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// How a probe is trained.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FitParams {
    /// Full-batch AdamW steps.
    pub steps: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// L2 penalty on the weights, relative to the mean loss (1 / (C · n) in scikit-learn's terms).
    pub l2: f64,
}

impl FitParams {
    /// A fit from scratch.
    pub const FRESH: FitParams = FitParams {
        steps: 300,
        learning_rate: 0.05,
        l2: 1e-3,
    };
    /// Fine-tuning a fitted probe with a few more items (the error samples).
    pub const FINE_TUNE: FitParams = FitParams {
        steps: 100,
        learning_rate: 0.02,
        l2: 1e-3,
    };
}

/// A fitted probe: class probabilities for any vector of its space.
#[derive(Clone, Debug)]
pub struct LabelProbe {
    classes: Vec<String>,
    mean: Vec<f32>,
    inv_scale: Vec<f32>,
    /// classes × dim, on standardised features.
    weights: Vec<f32>,
    bias: Vec<f32>,
    /// The same model on raw features (standardisation folded in): classes × dim, and bias.
    raw_weights: Vec<f32>,
    raw_bias: Vec<f32>,
    /// Items it was fitted on.
    pub fitted_on: usize,
    /// Share of those it classifies right (weighted).
    pub train_accuracy: f32,
}

/// AdamW's moment decay rates and denominator guard (the usual defaults).
const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPSILON: f32 = 1e-8;

/// First and second moment estimates of one parameter block.
struct Moments {
    first: Vec<f32>,
    second: Vec<f32>,
}

impl Moments {
    fn new(len: usize) -> Self {
        Moments {
            first: vec![0.0; len],
            second: vec![0.0; len],
        }
    }

    /// One Adam step of `params` along `grad` (step `t`, from 1).
    fn step(&mut self, params: &mut [f32], grad: &[f32], t: i32, learning_rate: f32) {
        let (c1, c2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        for (((p, g), m), v) in params
            .iter_mut()
            .zip(grad)
            .zip(&mut self.first)
            .zip(&mut self.second)
        {
            *m = BETA1 * *m + (1.0 - BETA1) * g;
            *v = BETA2 * *v + (1.0 - BETA2) * g * g;
            *p -= learning_rate * (*m / c1) / ((*v / c2).sqrt() + EPSILON);
        }
    }
}

/// Softmax of `logits` in place.
fn softmax(logits: &mut [f32]) {
    let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for l in logits.iter_mut() {
        *l = (*l - top).exp();
        sum += *l;
    }
    logits.iter_mut().for_each(|l| *l /= sum);
}

impl LabelProbe {
    /// Fits a probe on `data`. With `start`, begins from that probe's weights and keeps its
    /// classes and standardisation (items of other classes are left out).
    pub fn fit(
        data: &TrainingSet,
        start: Option<&LabelProbe>,
        params: FitParams,
    ) -> Result<LabelProbe, ProbeError> {
        let dim = data.dim;
        let classes = match start {
            Some(p) => p.classes.clone(),
            None => usable_classes(&data.labels)?,
        };
        let index = |l: &str| classes.binary_search_by(|c| c.as_str().cmp(l)).ok();
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        let mut weights = Vec::new();
        for (i, label) in data.labels.iter().enumerate() {
            if let Some(c) = index(label) {
                rows.push(i);
                targets.push(c);
                weights.push(data.weights[i]);
            }
        }
        let (mean, inv_scale) = match start {
            Some(p) => (p.mean.clone(), p.inv_scale.clone()),
            None => standardisation(&data.vectors, dim, &rows),
        };
        let n = rows.len();
        let mut x = Vec::with_capacity(n * dim);
        for &r in &rows {
            let v = &data.vectors[r * dim..(r + 1) * dim];
            x.extend(
                v.iter()
                    .zip(&mean)
                    .zip(&inv_scale)
                    .map(|((v, m), s)| (v - m) * s),
            );
        }
        let c = classes.len();
        let total: f32 = weights.iter().sum();
        let share: Vec<f32> = weights.iter().map(|w| w / total).collect();
        let (mut w, mut b) = match start {
            Some(p) => (p.weights.clone(), p.bias.clone()),
            None => (vec![0.0; c * dim], vec![0.0; c]),
        };
        let (mut w_moments, mut b_moments) = (Moments::new(c * dim), Moments::new(c));
        let mut w_grad = vec![0f32; c * dim];
        let mut b_grad = vec![0f32; c];
        let mut logits = vec![0f32; n * c];
        let lr = params.learning_rate as f32;
        let l2 = params.l2 as f32;
        // Loss: Σ share_i · −log p(y_i | x_i) + l2/2 · ‖W‖²; its gradient in the logits of
        // item i is share_i · (p_i − onehot(y_i)).
        for t in 1..=params.steps {
            // logits (n × c) = X (n × dim) · Wᵀ.
            gemm_strided(n, c, dim, &x, (dim, 1), &w, (1, dim), &mut logits, c);
            b_grad.iter_mut().for_each(|g| *g = 0.0);
            for ((row, &y), &s) in logits.chunks_exact_mut(c).zip(&targets).zip(&share) {
                for (l, bias) in row.iter_mut().zip(&b) {
                    *l += bias;
                }
                softmax(row);
                row[y] -= 1.0;
                for (l, g) in row.iter_mut().zip(&mut b_grad) {
                    *l *= s;
                    *g += *l;
                }
            }
            // ∂/∂W (c × dim) = Gᵀ (c × n) · X (n × dim), plus the penalty's l2 · W.
            gemm_strided(c, dim, n, &logits, (1, c), &x, (dim, 1), &mut w_grad, dim);
            for (g, wv) in w_grad.iter_mut().zip(&w) {
                *g += l2 * wv;
            }
            w_moments.step(&mut w, &w_grad, t as i32, lr);
            b_moments.step(&mut b, &b_grad, t as i32, lr);
        }
        let mut right = 0.0;
        for ((xi, &y), &wt) in x.chunks_exact(dim.max(1)).zip(&targets).zip(&weights) {
            let logits: Vec<f32> = (0..c)
                .map(|j| dot(xi, &w[j * dim..(j + 1) * dim]) + b[j])
                .collect();
            let best = (0..c).fold(0, |best, j| if logits[j] > logits[best] { j } else { best });
            if best == y {
                right += wt;
            }
        }
        let mut probe = LabelProbe {
            classes,
            mean,
            inv_scale,
            weights: w,
            bias: b,
            raw_weights: Vec::new(),
            raw_bias: Vec::new(),
            fitted_on: n,
            train_accuracy: right / total,
        };
        probe.fold_standardisation();
        Ok(probe)
    }

    /// Folds the standardisation into a copy of the weights: logit_j(v) = Σ_d w_jd s_d
    /// (v_d − m_d) + b_j = Σ_d (w_jd s_d) v_d + (b_j − Σ_d w_jd s_d m_d).
    fn fold_standardisation(&mut self) {
        let dim = self.mean.len();
        self.raw_weights = Vec::with_capacity(self.weights.len());
        self.raw_bias = Vec::with_capacity(self.bias.len());
        for (row, &b) in self.weights.chunks_exact(dim.max(1)).zip(&self.bias) {
            let scaled: Vec<f32> = row
                .iter()
                .zip(&self.inv_scale)
                .map(|(w, s)| w * s)
                .collect();
            self.raw_bias.push(b - dot(&scaled, &self.mean));
            self.raw_weights.extend(scaled);
        }
    }

    /// The classes, sorted; probabilities come in this order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Class probabilities of one vector.
    pub fn probabilities(&self, vector: &[f32]) -> Vec<f32> {
        let dim = self.mean.len();
        let mut p: Vec<f32> = self
            .raw_weights
            .chunks_exact(dim.max(1))
            .zip(&self.raw_bias)
            .map(|(w, b)| dot(vector, w) + b)
            .collect();
        softmax(&mut p);
        p
    }
}

/// The classes with enough items, sorted; an error when there are too few.
fn usable_classes(labels: &[String]) -> Result<Vec<String>, ProbeError> {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for l in labels {
        *counts.entry(l.as_str()).or_default() += 1;
    }
    let classes: BTreeSet<String> = counts
        .iter()
        .filter(|(_, &n)| n >= MIN_PER_CLASS)
        .map(|(l, _)| (*l).to_owned())
        .collect();
    if classes.len() < MIN_CLASSES {
        return Err(ProbeError::TooFewLabels {
            items: labels.len(),
            classes: classes.len(),
        });
    }
    Ok(classes.into_iter().collect())
}

/// Per-dimension mean and 1 / standard deviation of `rows` (1 where a dimension is constant).
fn standardisation(vectors: &[f32], dim: usize, rows: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let n = rows.len().max(1) as f64;
    let mut sum = vec![0f64; dim];
    let mut sq = vec![0f64; dim];
    for &r in rows {
        for (d, &v) in vectors[r * dim..(r + 1) * dim].iter().enumerate() {
            sum[d] += v as f64;
            sq[d] += (v as f64) * (v as f64);
        }
    }
    let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
    let inv: Vec<f32> = sum
        .iter()
        .zip(&sq)
        .map(|(s, q)| {
            let var = (q / n - (s / n).powi(2)).max(0.0);
            if var > 1e-12 {
                (1.0 / var.sqrt()) as f32
            } else {
                1.0
            }
        })
        .collect();
    (mean, inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two classes on either side of x = 0 in 2-D, with a constant third dimension.
    fn two_blobs() -> TrainingSet {
        let mut t = TrainingSet::new(3);
        for i in 0..20 {
            let y = i as f32 / 10.0;
            t.push(&[-1.0 - y / 4.0, y, 7.0], "left".into(), 1.0);
            t.push(&[1.0 + y / 4.0, y, 7.0], "right".into(), 1.0);
        }
        t
    }

    #[test]
    fn separates_two_classes() {
        let p = LabelProbe::fit(&two_blobs(), None, FitParams::FRESH).unwrap();
        assert_eq!(p.classes(), ["left", "right"]);
        assert_eq!(p.train_accuracy, 1.0);
        let left = p.probabilities(&[-2.0, 0.5, 7.0]);
        assert!(left[0] > 0.9, "{left:?}");
        let right = p.probabilities(&[2.0, 0.5, 7.0]);
        assert!(right[1] > 0.9, "{right:?}");
        assert!((right.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn fine_tuning_follows_weighted_new_items() {
        let p = LabelProbe::fit(&two_blobs(), None, FitParams::FRESH).unwrap();
        // Items far to the right now say "left", with a heavy weight.
        let mut t = two_blobs();
        for i in 0..5 {
            t.push(&[4.0, i as f32 / 5.0, 7.0], "left".into(), 20.0);
        }
        t.push(&[0.0, 0.0, 7.0], "unknown".into(), 1.0);
        let tuned = LabelProbe::fit(&t, Some(&p), FitParams::FRESH).unwrap();
        assert_eq!(tuned.classes(), p.classes());
        assert!(tuned.probabilities(&[4.0, 0.5, 7.0])[0] > p.probabilities(&[4.0, 0.5, 7.0])[0]);
    }

    #[test]
    fn refuses_too_few_labels() {
        let mut t = TrainingSet::new(2);
        t.push(&[0.0, 1.0], "a".into(), 1.0);
        t.push(&[0.0, 2.0], "a".into(), 1.0);
        t.push(&[1.0, 2.0], "b".into(), 1.0);
        assert_eq!(
            LabelProbe::fit(&t, None, FitParams::FRESH).unwrap_err(),
            ProbeError::TooFewLabels {
                items: 3,
                classes: 1
            }
        );
    }
}
