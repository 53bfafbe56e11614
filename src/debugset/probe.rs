//! A label estimate fitted on a trusted reference: multinomial logistic regression (a linear
//! probe) on standardised features, trained with candle's autograd and AdamW.
//!
//! Why a probe and not neighbours: the features group images by how they look (a corruption,
//! a backdrop) more than by class, so a candidate's nearest reference items often carry the
//! wrong class, while a linear read-out of the whole space transfers better. Measured on the
//! public cases (docs/debug-sets.md): a probe on the reference alone keeps weak labels 0.79–0.88
//! right; fitted on the reference plus the labelled error samples (weight 5 each) 0.85–0.95
//! (scikit-learn on the same features, before this was written).

use std::collections::BTreeSet;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};

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
    /// The numeric work failed (a candle error, out of memory, ...).
    #[error("fitting the label estimate failed: {0}")]
    Fit(String),
}

impl From<candle_core::Error> for ProbeError {
    fn from(e: candle_core::Error) -> Self {
        ProbeError::Fit(e.to_string())
    }
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
    /// dim × classes.
    weights: Vec<f32>,
    bias: Vec<f32>,
    /// Items it was fitted on.
    pub fitted_on: usize,
    /// Share of those it classifies right (weighted).
    pub train_accuracy: f32,
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
                targets.push(c as u32);
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
        let device = Device::Cpu;
        let c = classes.len();
        let x = Tensor::from_vec(x, (n, dim), &device)?;
        let y = Tensor::from_vec(targets.clone(), (n, 1), &device)?;
        let total: f32 = weights.iter().sum();
        let w = Tensor::from_vec(
            weights.iter().map(|w| w / total).collect::<Vec<f32>>(),
            (n, 1),
            &device,
        )?;
        let (w0, b0) = match start {
            Some(p) => (p.weights.clone(), p.bias.clone()),
            None => (vec![0.0; dim * c], vec![0.0; c]),
        };
        let weight = candle_core::Var::from_tensor(&Tensor::from_vec(w0, (dim, c), &device)?)?;
        let bias = candle_core::Var::from_tensor(&Tensor::from_vec(b0, (1, c), &device)?)?;
        let mut opt = AdamW::new(
            vec![weight.clone(), bias.clone()],
            ParamsAdamW {
                lr: params.learning_rate,
                weight_decay: 0.0,
                ..Default::default()
            },
        )?;
        for _ in 0..params.steps {
            let logits = x
                .matmul(weight.as_tensor())?
                .broadcast_add(bias.as_tensor())?;
            let log_p = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let nll = log_p.gather(&y, 1)?.neg()?;
            let loss = (nll * &w)?.sum_all()?;
            let penalty = (weight.as_tensor().sqr()?.sum_all()? * (params.l2 / 2.0))?;
            opt.backward_step(&(loss + penalty)?)?;
        }
        let logits = x
            .matmul(weight.as_tensor())?
            .broadcast_add(bias.as_tensor())?;
        let predicted: Vec<u32> = logits.argmax(D::Minus1)?.to_dtype(DType::U32)?.to_vec1()?;
        let right: f32 = predicted
            .iter()
            .zip(&targets)
            .zip(&weights)
            .filter(|((p, t), _)| p == t)
            .map(|(_, w)| w)
            .sum();
        Ok(LabelProbe {
            classes,
            mean,
            inv_scale,
            weights: weight.as_tensor().flatten_all()?.to_vec1()?,
            bias: bias.as_tensor().flatten_all()?.to_vec1()?,
            fitted_on: n,
            train_accuracy: right / total,
        })
    }

    /// The classes, sorted; probabilities come in this order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Class probabilities of one vector.
    pub fn probabilities(&self, vector: &[f32]) -> Vec<f32> {
        let c = self.classes.len();
        let mut logits = self.bias.clone();
        for (d, ((v, m), s)) in vector
            .iter()
            .zip(&self.mean)
            .zip(&self.inv_scale)
            .enumerate()
        {
            let x = (v - m) * s;
            for (l, w) in logits.iter_mut().zip(&self.weights[d * c..(d + 1) * c]) {
                *l += x * w;
            }
        }
        let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = logits.iter().map(|l| (l - top).exp()).collect();
        let sum: f32 = exp.iter().sum();
        exp.into_iter().map(|e| e / sum).collect()
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
