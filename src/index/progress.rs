//! Progress of a long index build, as a log line every few seconds (`index build: 120000 of
//! 1000000 rows (12.0%), 7012/s, eta 2m05s`): a build of minutes, in a command's log file or
//! a server's, is never silent for long. Counting costs one atomic add per row; the clock is
//! read once every [`CHECK_EVERY`] rows.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How often a line is logged.
pub const LOG_EVERY: Duration = Duration::from_secs(5);
/// Rows between two looks at the clock.
const CHECK_EVERY: usize = 256;

/// Rows done of a build of `total`, logged now and then.
pub struct BuildProgress {
    total: usize,
    done: AtomicUsize,
    started: Instant,
    last: Mutex<Instant>,
}

impl BuildProgress {
    /// A build of `total` rows starting now.
    pub fn new(total: usize) -> BuildProgress {
        let now = Instant::now();
        BuildProgress {
            total,
            done: AtomicUsize::new(0),
            started: now,
            last: Mutex::new(now),
        }
    }

    /// One more row done; logs a line when [`LOG_EVERY`] has passed since the last.
    pub fn row_done(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if !done.is_multiple_of(CHECK_EVERY) {
            return;
        }
        // Whoever holds the clock logs; the others go on inserting.
        let Some(mut last) = self.last.try_lock() else {
            return;
        };
        let now = Instant::now();
        if now.duration_since(*last) < LOG_EVERY {
            return;
        }
        *last = now;
        tracing::info!(
            "{}",
            line(done, self.total, now.duration_since(self.started))
        );
    }
}

/// `index build: DONE of TOTAL rows (P%), R/s, eta T`.
fn line(done: usize, total: usize, elapsed: Duration) -> String {
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
    let left = total.saturating_sub(done) as f64 / rate.max(1e-9);
    let eta = left.round() as u64;
    format!(
        "index build: {done} of {total} rows ({:.1}%), {rate:.0}/s, eta {}m{:02}s",
        100.0 * done as f64 / total.max(1) as f64,
        eta / 60,
        eta % 60
    )
}

#[cfg(test)]
mod tests {
    use super::line;
    use std::time::Duration;

    #[test]
    fn a_line_says_done_rate_and_eta() {
        assert_eq!(
            line(120_000, 1_000_000, Duration::from_secs(20)),
            "index build: 120000 of 1000000 rows (12.0%), 6000/s, eta 2m27s"
        );
        // At the very start no division by zero, and an empty build is not NaN.
        assert!(line(0, 0, Duration::ZERO).starts_with("index build: 0 of 0 rows (0.0%)"));
    }
}
