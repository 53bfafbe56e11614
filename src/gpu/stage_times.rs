//! Where a GPU search's time goes, as `dcd bench exact --gpu-stages` reports it: the stages one
//! search call passed through (read from CUDA events by the cuda build's stage clock), and
//! their medians over many calls. Plain arithmetic, compiled and tested on every build.

use serde::Serialize;

/// One stage of one search call (or a stage's median over calls).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageTime {
    /// What the stage did: "queries up", "scan", "merge", "download", ...
    pub name: &'static str,
    /// Device time from the end of the previous stage to the end of this one, in ms: the
    /// stage's work plus any time the device sat idle waiting for the host to issue it.
    pub gpu_ms: f64,
    /// Host time from the previous stage boundary to this one, in ms: what issuing the stage
    /// cost the host (all of it, for work the host does itself or waits for, like a download).
    pub host_ms: f64,
}

/// Per stage name, in order of first appearance, the median over `calls` of each call's total
/// for that name (a stage met once per tile or segment is summed within its call; a call that
/// never reached it counts as zero), so the medians of a call's stages add up to about a
/// median call.
pub fn median_stages(calls: &[Vec<StageTime>]) -> Vec<StageTime> {
    let mut names: Vec<&'static str> = Vec::new();
    for stage in calls.iter().flatten() {
        if !names.contains(&stage.name) {
            names.push(stage.name);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let totals = |time: fn(&StageTime) -> f64| -> Vec<f64> {
                calls
                    .iter()
                    .map(|call| call.iter().filter(|s| s.name == name).map(time).sum())
                    .collect()
            };
            StageTime {
                name,
                gpu_ms: median(totals(|s| s.gpu_ms)),
                host_ms: median(totals(|s| s.host_ms)),
            }
        })
        .collect()
}

/// The middle value (the mean of the middle two for an even count); 0 for none.
fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(name: &'static str, gpu_ms: f64, host_ms: f64) -> StageTime {
        StageTime {
            name,
            gpu_ms,
            host_ms,
        }
    }

    #[test]
    fn a_stage_met_per_tile_is_summed_within_its_call() {
        let call = vec![
            stage("cross terms", 1.0, 0.1),
            stage("select", 2.0, 0.2),
            stage("cross terms", 3.0, 0.3),
            stage("select", 4.0, 0.4),
            stage("merge", 0.5, 0.05),
        ];
        let medians = median_stages(&[call]);
        let names: Vec<_> = medians.iter().map(|s| s.name).collect();
        assert_eq!(names, ["cross terms", "select", "merge"]);
        assert_eq!(medians[0].gpu_ms, 4.0);
        assert!((medians[1].host_ms - 0.6).abs() < 1e-12);
        assert_eq!(medians[2].gpu_ms, 0.5);
    }

    #[test]
    fn medians_are_taken_over_calls_and_a_missing_stage_counts_as_zero() {
        let calls = vec![
            vec![stage("scan", 5.0, 1.0), stage("rows staged", 9.0, 9.0)],
            vec![stage("scan", 1.0, 3.0)],
            vec![stage("scan", 3.0, 2.0)],
        ];
        let medians = median_stages(&calls);
        assert_eq!(medians[0], stage("scan", 3.0, 2.0));
        // Reached by one call of three: the median call does not stage rows.
        assert_eq!(medians[1], stage("rows staged", 0.0, 0.0));
        let even = median_stages(&calls[..2]);
        assert_eq!(even[0], stage("scan", 3.0, 2.0));
    }

    #[test]
    fn no_calls_give_no_stages() {
        assert!(median_stages(&[]).is_empty());
        assert!(median_stages(&[vec![], vec![]]).is_empty());
    }
}
