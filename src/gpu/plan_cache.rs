//! Plan timings kept beside a pool (`<pool dir>/gpu-plans.json`), so that a service restarted
//! on the same card takes its plan choice from the last measurement instead of timing the
//! plans again (up to 30 s per pool, `dcd serve --exact-plans measure`). Like a TensorRT
//! timing cache, a saved measurement serves only where it was made: the same card, compute
//! capability, driver, dcd binary, copy type and dimension ([`MeasuredOn`]), and a pool within
//! [`ROWS_FACTOR`] of the rows it was timed on. Anything else, or a file that cannot be read,
//! is measured again and its entry replaced; `--exact-plans remeasure` always measures. The
//! file is a cache: losing it costs a measurement, never an answer, and it is replaced by
//! write-to-temp, fsync and rename, so a crash leaves the old file or the new one. Pure (no
//! CUDA): compiled and tested on every build.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::plan::{PlanChoice, PlanTiming, Timings};
use crate::index::IndexError;

/// The file's name in a pool's folder.
pub const FILE_NAME: &str = "gpu-plans.json";

/// The file layout this build reads and writes.
const FORMAT: u32 = 1;

/// A saved measurement serves pools from 1/ROWS_FACTOR to ROWS_FACTOR times the rows it was
/// timed on: where the plans cross over moves with the pool's size (fixed costs weigh less
/// on a larger pool), slowly enough that a pool growing by appends keeps its timings until
/// it has doubled.
pub const ROWS_FACTOR: f64 = 2.0;

/// How a GPU copy's plan choice is made (`--exact-plans`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlanMode {
    #[default]
    /// dcd's built-in thresholds.
    Builtin,
    /// Timings saved beside the pool when they hold here, else measured and saved.
    Measure,
    /// Measured now whatever was saved, and saved.
    Remeasure,
}

impl std::fmt::Display for PlanMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PlanMode::Builtin => "builtin",
            PlanMode::Measure => "measure",
            PlanMode::Remeasure => "remeasure",
        })
    }
}

impl std::str::FromStr for PlanMode {
    type Err = String;
    fn from_str(s: &str) -> Result<PlanMode, String> {
        match s {
            "builtin" => Ok(PlanMode::Builtin),
            "measure" => Ok(PlanMode::Measure),
            "remeasure" => Ok(PlanMode::Remeasure),
            other => Err(format!(
                "{other:?} is not a plan mode: use builtin, measure, remeasure"
            )),
        }
    }
}

/// Where plans were timed: what must match for saved timings to serve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasuredOn {
    /// The card's name as the driver reports it (`NVIDIA H200`).
    pub card: String,
    /// Its compute capability, 10 * major + minor.
    pub compute_capability: u32,
    /// The driver's CUDA version, 1000 * major + 10 * minor (a new driver compiles the PTX
    /// anew and may bring another cuBLAS).
    pub driver: i32,
    /// The dcd binary that timed them ([`build_identity`]): kernels and launch code change
    /// between builds.
    pub build: String,
    /// The copy's element type (`f32`, `f16` or `bf16`).
    pub copy: String,
    /// Row dimension.
    pub dim: usize,
}

/// Saved timings for a pool of this shape on this card.
#[derive(Clone, Debug, PartialEq)]
pub struct Saved {
    /// Rows of the pool they were timed on.
    pub rows: usize,
    /// When, in seconds since the Unix epoch.
    pub measured_unix: u64,
    /// The timings, per k.
    pub timings: Timings,
}

/// What a pool's file holds for a card and pool.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    /// Timings that serve this pool.
    Found(Saved),
    /// Nothing saved where this was measured (no file, or another card, build, copy type or
    /// dimension).
    Missing,
    /// Timings from a pool of `rows` rows: too far from this one's size.
    OtherSize {
        /// Rows they were timed on.
        rows: usize,
    },
}

/// Why saved timings could not be read or written. Never fatal: the plans are measured
/// instead, or the measurement is kept for this process only.
#[derive(Debug, thiserror::Error)]
pub enum PlanCacheError {
    /// The file exists and could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not one this build understands.
    #[error(
        "{path} is not a plan timing file this dcd reads ({reason}); the plans are measured \
         again and the file replaced"
    )]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The file could not be replaced.
    #[error("saving the GPU plan timings: {0}")]
    Write(#[from] IndexError),
    /// This process could not tell which binary it runs, so timings it measured cannot be
    /// told apart from another build's.
    #[error("the timings are not saved: {0}")]
    UnknownBuild(String),
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    entries: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    on: MeasuredOn,
    rows: usize,
    measured_unix: u64,
    timings: Vec<KTimings>,
}

#[derive(Serialize, Deserialize)]
struct KTimings {
    k: usize,
    times: Vec<PlanTiming>,
}

/// The file in `dir`.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The entries of `dir`'s file; none when there is no file.
fn read(dir: &Path) -> Result<Vec<Entry>, PlanCacheError> {
    let path = path_in(dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(PlanCacheError::Read { path, source }),
    };
    let unreadable = |reason: String| PlanCacheError::Unreadable {
        path: path.clone(),
        reason,
    };
    let file: CacheFile = serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
    if file.format != FORMAT {
        return Err(unreadable(format!(
            "format {}, this build reads {FORMAT}",
            file.format
        )));
    }
    Ok(file.entries)
}

/// The timings saved in `dir` for plans timed `on` this card, if they serve a pool of `rows`
/// rows.
pub fn load(dir: &Path, on: &MeasuredOn, rows: usize) -> Result<Lookup, PlanCacheError> {
    let Some(entry) = read(dir)?.into_iter().find(|e| &e.on == on) else {
        return Ok(Lookup::Missing);
    };
    let ratio = rows.max(1) as f64 / entry.rows.max(1) as f64;
    if !(1.0 / ROWS_FACTOR..=ROWS_FACTOR).contains(&ratio) {
        return Ok(Lookup::OtherSize { rows: entry.rows });
    }
    Ok(Lookup::Found(Saved {
        rows: entry.rows,
        measured_unix: entry.measured_unix,
        timings: entry.timings.into_iter().map(|t| (t.k, t.times)).collect(),
    }))
}

/// Saves `timings`, measured `on` this card for a pool of `rows` rows, in `dir`'s file,
/// replacing what was saved for the same card, build, copy type and dimension and keeping
/// the rest (other cards, other copy types). An unreadable file is replaced whole. Timings
/// that are not finite are left out (JSON has no NaN, and the choice ignores them).
pub fn save(
    dir: &Path,
    on: &MeasuredOn,
    rows: usize,
    timings: &Timings,
) -> Result<(), PlanCacheError> {
    let mut entries = read(dir).unwrap_or_default();
    entries.retain(|e| &e.on != on);
    let measured_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    entries.push(Entry {
        on: on.clone(),
        rows,
        measured_unix,
        timings: timings
            .iter()
            .map(|(k, times)| KTimings {
                k: *k,
                times: times
                    .iter()
                    .filter(|t| t.seconds.is_finite())
                    .copied()
                    .collect(),
            })
            .collect(),
    });
    let file = CacheFile {
        format: FORMAT,
        entries,
    };
    let json = serde_json::to_vec_pretty(&file).expect("plan timings serialise");
    crate::index::write_atomically(&path_in(dir), &json)?;
    Ok(())
}

/// Where a copy's plan choice came from ([`choose`]).
#[derive(Debug)]
pub enum Source {
    /// Loaded from the pool's file.
    Saved {
        /// Rows the timings were taken on.
        rows: usize,
        /// When, in seconds since the Unix epoch.
        measured_unix: u64,
    },
    /// Measured now.
    Measured {
        /// Why nothing saved served.
        why: String,
        /// Whether the timings were saved for the next start.
        saved: Result<(), PlanCacheError>,
    },
}

/// A copy's plan choice and where it came from.
#[derive(Debug)]
pub struct Chosen {
    /// The choice; None when the measurement timed nothing (the choice in force stays).
    pub choice: Option<PlanChoice>,
    /// The timings it was made from.
    pub timings: Timings,
    /// Where they came from.
    pub source: Source,
}

/// The plan choice for a pool of `rows` rows in `dir`, timed `on` this card (None when this
/// process cannot say where it runs: the plans are then measured and not saved): the saved
/// timings when `reuse` and they serve this pool, else `measure()`'s, saved for the next
/// start. An unreadable file is measured over, not an error; only `measure`'s error is.
pub fn choose<E>(
    dir: &Path,
    on: Option<&MeasuredOn>,
    rows: usize,
    reuse: bool,
    measure: impl FnOnce() -> Result<Timings, E>,
) -> Result<Chosen, E> {
    let why = match (on, reuse) {
        (None, _) => "this process cannot tell which card and build it runs".to_string(),
        (Some(_), false) => "--exact-plans remeasure".to_string(),
        (Some(on), true) => match load(dir, on, rows) {
            Ok(Lookup::Found(saved)) => {
                return Ok(Chosen {
                    choice: PlanChoice::measured(saved.rows, &saved.timings),
                    timings: saved.timings,
                    source: Source::Saved {
                        rows: saved.rows,
                        measured_unix: saved.measured_unix,
                    },
                })
            }
            Ok(Lookup::Missing) => "no timings saved for this card, build and copy".to_string(),
            Ok(Lookup::OtherSize { rows: then }) => {
                format!("the saved timings are for {then} rows, the pool has {rows}")
            }
            Err(e) => e.to_string(),
        },
    };
    let timings = measure()?;
    let choice = PlanChoice::measured(rows, &timings);
    let saved = match (on, &choice) {
        (None, _) => Err(PlanCacheError::UnknownBuild(why.clone())),
        // Nothing was timed (a spent budget): nothing worth keeping.
        (Some(_), None) => Ok(()),
        (Some(on), Some(_)) => save(dir, on, rows, &timings),
    };
    Ok(Chosen {
        choice,
        timings,
        source: Source::Measured { why, saved },
    })
}

/// A digest of the running binary (sha256 of its file, the first 16 hex digits, after dcd's
/// version): timings saved by one build are not used by another. None when the file cannot
/// be read. Computed once per process.
pub fn build_identity() -> Option<String> {
    static IDENTITY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    IDENTITY
        .get_or_init(|| {
            // /proc/self/exe is the running image even if its path was replaced since.
            let path = Path::new("/proc/self/exe");
            let digest = file_digest(path).or_else(|_| file_digest(&std::env::current_exe()?));
            let digest = digest.ok()?;
            Some(format!(
                "dcd {} {}",
                env!("CARGO_PKG_VERSION"),
                &digest[..16]
            ))
        })
        .clone()
}

/// sha256 of a file, in hex.
fn file_digest(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
#[path = "plan_cache_tests.rs"]
mod tests;
