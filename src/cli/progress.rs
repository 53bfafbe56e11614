//! Progress of a long command. On a terminal, an indicatif bar; without one (nohup, systemd,
//! a container's log) a plain line every few seconds, so a batch job in a log file is never
//! silent for long: `ingest: 1200/30000 images (4.0%), 38.2/s, eta 12m34s; 3 failed`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a line is printed without a terminal.
pub const LINE_EVERY: Duration = Duration::from_secs(5);

/// A progress display for `total` units of work.
pub struct Progress {
    show: Show,
}

enum Show {
    Bar(ProgressBar),
    Lines(Lines),
}

impl Progress {
    /// A bar when stderr is a terminal, else a line every [`LINE_EVERY`]. `task` names the
    /// command and `unit` what is counted, e.g. ("ingest", "images").
    pub fn new(total: u64, task: &'static str, unit: &'static str) -> Progress {
        let show = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            let template = format!(
                "{{spinner}} [{{elapsed_precise}}] {{bar:40}} {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}}) {{msg}}"
            );
            bar.set_style(ProgressStyle::with_template(&template).expect("valid template"));
            Show::Bar(bar)
        } else {
            Show::Lines(Lines::new(task, unit, Instant::now(), LINE_EVERY))
        };
        Progress { show }
    }

    /// Reports `done` of `total` units, with a note (failures, say) after the figures.
    pub fn update(&mut self, total: u64, done: u64, note: &str) {
        match &mut self.show {
            Show::Bar(bar) => {
                bar.set_length(total);
                bar.set_position(done);
                bar.set_message(note.to_owned());
            }
            Show::Lines(lines) => {
                if let Some(line) = lines.line_at(Instant::now(), total, done, note) {
                    eprintln!("{line}");
                }
            }
        }
    }

    /// Removes the bar; the command prints its own summary.
    pub fn finish(self) {
        if let Show::Bar(bar) = self.show {
            bar.finish_and_clear();
        }
    }
}

/// The plain-line display: when a line is due, and what it says.
struct Lines {
    task: &'static str,
    unit: &'static str,
    every: Duration,
    started: Instant,
    /// Units done when the display started (a resumed job), so the rate counts this run only.
    done_at_start: Option<u64>,
    last: Instant,
}

impl Lines {
    fn new(task: &'static str, unit: &'static str, now: Instant, every: Duration) -> Lines {
        Lines {
            task,
            unit,
            every,
            started: now,
            done_at_start: None,
            last: now,
        }
    }

    /// The line to print at `now`, if one is due.
    fn line_at(&mut self, now: Instant, total: u64, done: u64, note: &str) -> Option<String> {
        let first = *self.done_at_start.get_or_insert(done);
        if now.duration_since(self.last) < self.every {
            return None;
        }
        self.last = now;
        let secs = now.duration_since(self.started).as_secs_f64().max(1e-9);
        let rate = done.saturating_sub(first) as f64 / secs;
        let share = if total > 0 {
            format!(" ({:.1}%)", 100.0 * done as f64 / total as f64)
        } else {
            String::new()
        };
        let eta = if rate > 0.0 && total > done {
            format!(", eta {}", clock((total - done) as f64 / rate))
        } else {
            String::new()
        };
        let note = if note.is_empty() {
            String::new()
        } else {
            format!("; {note}")
        };
        Some(format!(
            "{}: {done}/{total} {}{share}, {rate:.1}/s{eta}{note}",
            self.task, self.unit
        ))
    }
}

/// Seconds as `1h02m03s`, `2m03s` or `3s`.
fn clock(secs: f64) -> String {
    let s = secs.round() as u64;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_every_period_with_rate_and_eta() {
        let t0 = Instant::now();
        let every = Duration::from_secs(5);
        let mut lines = Lines::new("ingest", "images", t0, every);
        // A resumed job: 100 were done before this run; nothing is due before the period.
        assert_eq!(lines.line_at(t0, 1000, 100, ""), None);
        assert_eq!(
            lines.line_at(t0 + Duration::from_secs(4), 1000, 140, ""),
            None
        );
        let line = lines
            .line_at(t0 + Duration::from_secs(5), 1000, 150, "2 failed")
            .unwrap();
        // 50 in 5 s: 10/s; 850 left: 85 s.
        assert_eq!(
            line,
            "ingest: 150/1000 images (15.0%), 10.0/s, eta 1m25s; 2 failed"
        );
        // The next line waits for the next period.
        assert_eq!(
            lines.line_at(t0 + Duration::from_secs(9), 1000, 190, ""),
            None
        );
        let line = lines
            .line_at(t0 + Duration::from_secs(10), 1000, 1000, "")
            .unwrap();
        assert_eq!(line, "ingest: 1000/1000 images (100.0%), 90.0/s");
    }

    #[test]
    fn nothing_done_yet_has_no_eta() {
        let t0 = Instant::now();
        let mut lines = Lines::new("import", "rows", t0, Duration::from_secs(1));
        assert_eq!(lines.line_at(t0, 0, 0, ""), None);
        let line = lines
            .line_at(t0 + Duration::from_secs(2), 0, 0, "")
            .unwrap();
        assert_eq!(line, "import: 0/0 rows, 0.0/s");
    }

    #[test]
    fn clock_reads_like_a_clock() {
        assert_eq!(clock(3.2), "3s");
        assert_eq!(clock(125.0), "2m05s");
        assert_eq!(clock(3723.0), "1h02m03s");
    }
}
