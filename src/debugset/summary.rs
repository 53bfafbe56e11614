//! Distance summaries of a debug-train set.

/// Quantiles of a set of distances (nearest-rank).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Quantiles {
    /// Smallest.
    pub min: f32,
    /// 10th percentile.
    pub p10: f32,
    /// Median.
    pub p50: f32,
    /// 90th percentile.
    pub p90: f32,
    /// Largest.
    pub max: f32,
}

/// Quantiles of `values`; None when there are none.
pub fn quantiles(values: &[f32]) -> Option<Quantiles> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f32::total_cmp);
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some(Quantiles {
        min: v[0],
        p10: at(0.1),
        p50: at(0.5),
        p90: at(0.9),
        max: v[v.len() - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f32> = (1..=10).rev().map(|i| i as f32).collect();
        let q = quantiles(&v).unwrap();
        assert_eq!(
            (q.min, q.p10, q.p50, q.p90, q.max),
            (1.0, 1.0, 5.0, 9.0, 10.0)
        );
        assert_eq!(quantiles(&[]), None);
        assert_eq!(quantiles(&[3.0]).unwrap().p90, 3.0);
    }
}
