//! Where a build's time goes: named stages timed one after another, logged at debug level
//! (`DCD_LOG=dcd=debug`) when the build ends, so a slow request can be taken apart without a
//! profiler.

use std::time::Instant;

/// Times consecutive stages of one build.
pub(super) struct StageClock {
    started: Instant,
    last: Instant,
    stages: Vec<(&'static str, f64)>,
}

impl StageClock {
    /// A clock started now.
    pub fn start() -> Self {
        let now = Instant::now();
        StageClock {
            started: now,
            last: now,
            stages: Vec::new(),
        }
    }

    /// Ends the stage called `name` (the time since the previous one ended).
    pub fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        self.stages
            .push((name, (now - self.last).as_secs_f64() * 1e3));
        self.last = now;
    }

    /// `name=ms` for every stage, in order.
    fn laps(&self) -> String {
        self.stages
            .iter()
            .map(|(n, ms)| format!("{n}={ms:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Drop for StageClock {
    fn drop(&mut self) {
        tracing::debug!(
            total_ms = self.started.elapsed().as_secs_f64() * 1e3,
            stages = %self.laps(),
            "debug set build"
        );
    }
}
