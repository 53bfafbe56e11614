//! The flags of `dcd debug-set`, `dcd eval`, `dcd export` and `dcd report`.

use std::path::PathBuf;

use clap::Args;

use super::{ModelRuntimeArgs, TargetArgs};

/// `dcd eval`: the recipe (every `dcd debug-set` flag; `--out` is the report, .json) and how
/// to score it.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// How the sets are built: every `dcd debug-set` flag.
    #[command(flatten)]
    pub set: DebugSetArgs,
    /// Failures to score on (image files or folders, ImageFolder subfolders as true labels;
    /// .npy/.fvecs unlabelled); then every error sample builds the set. Without it the error
    /// samples are split into folds.
    #[arg(long, env = "DCD_HELD_OUT", num_args = 1.., value_delimiter = ',')]
    pub held_out: Option<Vec<PathBuf>>,
    /// Folds of the error samples (default 5, at most the samples there are).
    #[arg(long, env = "DCD_FOLDS")]
    pub folds: Option<usize>,
    /// The curve's k values, comma-separated (default: --k).
    #[arg(long, env = "DCD_KS", value_delimiter = ',')]
    pub ks: Vec<usize>,
    /// The curve's budgets, comma-separated, crossed with --ks (default: --budget).
    #[arg(long, env = "DCD_BUDGETS", value_delimiter = ',')]
    pub budgets: Vec<usize>,
    /// Random sets drawn per built set (default 5).
    #[arg(long, env = "DCD_DRAWS")]
    pub draws: Option<usize>,
    /// Seeds the folds and the random draws.
    #[arg(long, env = "DCD_SEED", default_value_t = 0)]
    pub seed: u64,
}

/// `dcd debug-set`: the set's flags, and where to save it.
#[derive(Debug, Args)]
pub struct BuildSetArgs {
    /// The set.
    #[command(flatten)]
    pub set: DebugSetArgs,
    /// Save the set (in the data directory, or on --server) under this name, with the
    /// manifest that rebuilds it; see `dcd sets`.
    #[arg(long, env = "DCD_SAVE")]
    pub save: Option<String>,
    /// The saved set whose review this round follows (recorded with the new one; --from-set
    /// where not given).
    #[arg(long, env = "DCD_PARENT", requires = "save")]
    pub parent: Option<String>,
    /// Build the next round after this reviewed saved set: its accepted items join the error
    /// samples, its rejected ones the negatives, every reviewed item is left out.
    #[arg(long, env = "DCD_FROM_SET")]
    pub from_set: Option<String>,
    /// With --from-set: an accepted item's weight as an error sample.
    #[arg(long, env = "DCD_ACCEPTED_WEIGHT", requires = "from_set")]
    pub accepted_weight: Option<f32>,
}

/// `dcd sets ...`: saved debug-train sets.
#[derive(Debug, clap::Subcommand)]
pub enum SetsCommand {
    /// List saved sets, newest first.
    List {
        /// Only the sets of this pool.
        #[arg(long, env = "DCD_POOL")]
        pool: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long, env = "DCD_JSON")]
        json: bool,
        /// The local data directory, or a server.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Show a saved set: how it was built, what the build reported, its items.
    Show {
        /// The set's name.
        name: String,
        /// Print the whole set (record, manifest, summary, items) as JSON.
        #[arg(long, env = "DCD_JSON")]
        json: bool,
        /// The local data directory, or a server.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// What changed from one saved set to another: items added, removed, relabelled.
    Diff {
        /// The earlier set.
        from: String,
        /// The later set.
        to: String,
        /// Print JSON instead of text.
        #[arg(long, env = "DCD_JSON")]
        json: bool,
        /// The local data directory, or a server.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Mark items of a saved set: accept, reject, relabel (with --label) or clear. Name the
    /// items by --key, or in bulk by --all / --mode / --weak-label / --error-index (items
    /// matching every one given).
    Review {
        /// The set's name.
        name: String,
        /// accept, reject, relabel or clear.
        #[arg(value_enum)]
        verdict: VerdictArg,
        /// With relabel: the label to train with.
        #[arg(long, required_if_eq("verdict", "relabel"))]
        label: Option<String>,
        /// Items by key (repeat, or comma-separated).
        #[arg(long = "key", value_delimiter = ',')]
        keys: Vec<String>,
        /// Every item (narrowed by the other selectors).
        #[arg(long)]
        all: bool,
        /// Items of this failure mode.
        #[arg(long)]
        mode: Option<usize>,
        /// Items with this weak label ("" for those without one).
        #[arg(long)]
        weak_label: Option<String>,
        /// Items this error sample (its index in the request) found.
        #[arg(long)]
        error_index: Option<usize>,
        /// Skip items that already have a verdict.
        #[arg(long)]
        unreviewed_only: bool,
        /// Who reviews (default: $USER).
        #[arg(long, env = "DCD_REVIEWER")]
        reviewer: Option<String>,
        /// The local data directory, or a server.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Build and save the next round after a reviewed set, with its parameters and error
    /// samples: accepted items join the error samples, rejected ones the negatives, every
    /// reviewed item is left out.
    Next {
        /// The reviewed set.
        parent: String,
        /// Save the round under this name.
        #[arg(long, env = "DCD_SAVE")]
        save: String,
        /// An accepted item's weight as an error sample (default 1).
        #[arg(long, env = "DCD_ACCEPTED_WEIGHT")]
        accepted_weight: Option<f32>,
        /// Another budget than the parent's.
        #[arg(long, env = "DCD_BUDGET")]
        budget: Option<usize>,
        /// Print JSON instead of text.
        #[arg(long, env = "DCD_JSON")]
        json: bool,
        /// The local data directory, or a server.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Write a saved set's accepted items (and with --unreviewed, the unreviewed ones) for
    /// training, each with the reviewer's label first: CSV, JSONL, or an ImageFolder tree.
    Export {
        /// The set's name.
        name: String,
        /// Output: a .csv or .jsonl file, or a folder for --format imagefolder.
        #[arg(long, env = "DCD_OUT")]
        out: PathBuf,
        /// csv, jsonl, or imagefolder (one subfolder per label).
        #[arg(long, env = "DCD_FORMAT", value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Also the items nobody has reviewed yet.
        #[arg(long)]
        unreviewed: bool,
        /// For imagefolder: copy the images instead of symlinking them.
        #[arg(long, env = "DCD_COPY")]
        copy: bool,
        /// The local data directory, or a server.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Delete a saved set.
    Delete {
        /// The set's name.
        name: String,
        /// The local data directory, or a server.
        #[command(flatten)]
        target: TargetArgs,
    },
}

/// The flags of a debug-train set (`dcd debug-set`, and the recipe of `dcd eval`).
#[derive(Debug, Args)]
pub struct DebugSetArgs {
    /// Pool to draw from.
    #[arg(long, env = "DCD_POOL")]
    pub pool: String,
    /// Error samples: image files or folders of images, .npy/.fvecs vector files. Images in a
    /// folder's subfolders carry the subfolder's name as their true label (ImageFolder).
    #[arg(long, env = "DCD_ERRORS", required = true, num_args = 1.., value_delimiter = ',')]
    pub errors: Vec<PathBuf>,
    /// Neighbours per error sample.
    #[arg(long, env = "DCD_K", default_value_t = 50)]
    pub k: usize,
    /// union, round_robin, global_top or mean (ranked by mean distance to all error samples).
    #[arg(long, env = "DCD_MERGE", default_value = "union")]
    pub merge: crate::debugset::Merge,
    /// Most items in the set.
    #[arg(long, env = "DCD_BUDGET")]
    pub budget: Option<usize>,
    /// Drop items farther than this squared ℓ2 distance from every error sample.
    #[arg(long, env = "DCD_MAX_DISTANCE")]
    pub max_distance: Option<f32>,
    /// Only items with one of these weak labels (repeatable).
    #[arg(long, env = "DCD_LABEL")]
    pub label: Vec<String>,
    /// A file of keys (one per line) never to return, e.g. a held-out set.
    #[arg(long, env = "DCD_EXCLUDE")]
    pub exclude: Option<PathBuf>,
    /// Exact search instead of HNSW.
    #[arg(long, env = "DCD_EXACT")]
    pub exact: bool,
    /// Fetch 4k HNSW candidates and re-rank them by exact distance.
    #[arg(long, env = "DCD_EXACT_RERANK")]
    pub exact_rerank: bool,
    /// HNSW search beam.
    #[arg(long, env = "DCD_EF")]
    pub ef: Option<usize>,
    /// List an item once per error sample that found it.
    #[arg(long, env = "DCD_KEEP_DUPLICATES")]
    pub keep_duplicates: bool,
    /// Keep only items found by at least this many error samples (within their --k).
    #[arg(long, env = "DCD_MIN_SUPPORT", default_value_t = 1)]
    pub min_support: usize,
    /// keep, drop or replace weak labels the labelled error samples that found an item do not
    /// support. Default: drop when any error sample is labelled, else keep.
    #[arg(long, env = "DCD_LABEL_POLICY")]
    pub label_policy: Option<crate::debugset::LabelPolicy>,
    /// Ignore the folder names of --errors: every error sample is unlabelled.
    #[arg(long, env = "DCD_ERRORS_UNLABELLED")]
    pub errors_unlabelled: bool,
    /// Negatives, inputs the model already handles: image files or folders, .npy/.fvecs.
    /// Candidates nearer to one than to the error samples are dropped.
    #[arg(long, env = "DCD_NEGATIVES", num_args = 1.., value_delimiter = ',')]
    pub negatives: Option<Vec<PathBuf>>,
    /// A pool (same backbone) whose every item is a negative, e.g. the model's training set.
    #[arg(long, env = "DCD_NEGATIVE_POOL")]
    pub negative_pool: Option<String>,
    /// Drop a candidate when its nearest negative is nearer than this times its distance to
    /// the nearest error sample (squared ℓ2; above 1 drops more).
    #[arg(long, env = "DCD_NEGATIVE_MARGIN", default_value_t = 1.0)]
    pub negative_margin: f32,
    /// Held-out inputs the set must stay away from (your debug-heldout or test images):
    /// image files or folders, .npy/.fvecs. Checked by exact search.
    #[arg(long, env = "DCD_HOLDOUT", num_args = 1.., value_delimiter = ',')]
    pub holdout: Option<Vec<PathBuf>>,
    /// A pool (same backbone) whose every item is held out.
    #[arg(long, env = "DCD_HOLDOUT_POOL")]
    pub holdout_pool: Option<String>,
    /// Drop candidates this near a held-out item or nearer (squared ℓ2); 0: identical only.
    #[arg(long, env = "DCD_HOLDOUT_RADIUS", default_value_t = 0.0)]
    pub holdout_radius: f32,
    /// No two items of the set within this squared ℓ2 distance (the nearest to an error
    /// sample is kept).
    #[arg(long, env = "DCD_DEDUP_DISTANCE")]
    pub dedup_distance: Option<f32>,
    /// A trusted reference pool (e.g. the model's training set, clean labels, same backbone):
    /// every item gets its gap to it, and a label estimate fitted on it judges weak labels.
    #[arg(long, env = "DCD_REFERENCE")]
    pub reference: Option<String>,
    /// Drop items whose gap percentile (share of the pool nearer to the reference) is under
    /// this, 0 to 1; needs --reference.
    #[arg(long, env = "DCD_MIN_GAP_PERCENTILE")]
    pub min_gap_percentile: Option<f32>,
    /// The distance cap as a percentile (0 to 1) of the pool's own nearest-neighbour
    /// distances, instead of --max-distance; every item then reports its percentile.
    #[arg(
        long,
        env = "DCD_MAX_DISTANCE_PERCENTILE",
        conflicts_with = "max_distance"
    )]
    pub max_distance_percentile: Option<f32>,
    /// Most failure modes the error samples are grouped into (default 8; 1: one mode); with
    /// --budget, each mode gets a share by its samples' weights.
    #[arg(long, env = "DCD_MAX_MODES")]
    pub max_modes: Option<usize>,
    /// Diversity by maximal marginal relevance, 0 to 1: the weight of nearness to the
    /// failures against distance from the items already taken (1: none; 0.5: even).
    #[arg(long, env = "DCD_MMR_LAMBDA")]
    pub mmr_lambda: Option<f32>,
    /// Most items of any one label handed to training (suggested label, else weak).
    #[arg(long, env = "DCD_MAX_PER_LABEL")]
    pub max_per_label: Option<usize>,
    /// Most items of one label, as LABEL=N (repeat for more labels; overrides
    /// --max-per-label for that label).
    #[arg(long = "label-cap", value_name = "LABEL=N", value_parser = label_count)]
    pub label_caps: Vec<(String, usize)>,
    /// Hold part of --budget for a label until it has N items, as LABEL=N (repeatable).
    #[arg(long = "label-target", value_name = "LABEL=N", value_parser = label_count)]
    pub label_targets: Vec<(String, usize)>,
    /// Output: .jsonl or .csv (a .summary.json is written beside it); for `dcd eval`, the
    /// report (.json).
    #[arg(long, env = "DCD_OUT")]
    pub out: PathBuf,
    /// The local data directory, or a server.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Where models run, how images are batched, and the service's bounds.
    #[command(flatten)]
    pub runtime: ModelRuntimeArgs,
}

/// `dcd export`
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A debug-train set written by `dcd debug-set` (.jsonl).
    #[arg(long, env = "DCD_SET")]
    pub set: PathBuf,
    /// Output: a .csv or .jsonl file, or a folder for --format imagefolder.
    #[arg(long, env = "DCD_OUT")]
    pub out: PathBuf,
    /// csv, jsonl, or imagefolder (one subfolder per weak label, for torchvision's ImageFolder).
    #[arg(long, env = "DCD_FORMAT", value_enum, default_value_t = ExportFormat::Imagefolder)]
    pub format: ExportFormat,
    /// For imagefolder: copy the images instead of symlinking them.
    #[arg(long, env = "DCD_COPY")]
    pub copy: bool,
}

/// `dcd report`
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A debug-train set written by `dcd debug-set` (.jsonl, its summary beside it).
    #[arg(
        long,
        env = "DCD_SET",
        required_unless_present = "saved",
        conflicts_with = "saved"
    )]
    pub set: Option<PathBuf>,
    /// A saved set (in the data directory, or on --server): the report adds its reviews, the
    /// map and a random sample of the pool of the same size.
    #[arg(long, env = "DCD_SAVED")]
    pub saved: Option<String>,
    /// The HTML page to write.
    #[arg(long, env = "DCD_OUT")]
    pub out: PathBuf,
    /// Pool images shown per error sample (0: every one it found in the set).
    #[arg(long, env = "DCD_REPORT_PER_ERROR", default_value_t = 0)]
    pub per_error: usize,
    /// Thumbnail side in pixels.
    #[arg(long, env = "DCD_REPORT_THUMB", default_value_t = 128)]
    pub thumb: u32,
    /// The local data directory, or a server (with --saved).
    #[command(flatten)]
    pub target: TargetArgs,
}

/// A reviewer's verdict on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum VerdictArg {
    /// Right for training, with the label it was handed.
    Accept,
    /// Wrong for training.
    Reject,
    /// Right for training under --label.
    Relabel,
    /// Withdraw the verdict.
    Clear,
}

/// What `dcd export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// A CSV of path, label, distance, weak label.
    Csv,
    /// One JSON object per item.
    Jsonl,
    /// A folder per label of links (or copies) to the images, for torchvision's ImageFolder.
    Imagefolder,
}

/// A `LABEL=N` pair of --label-cap / --label-target (the label may itself hold `=`; the
/// count is after the last one).
fn label_count(s: &str) -> Result<(String, usize), String> {
    let (label, n) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("{s:?}: write LABEL=N, e.g. cat=50"))?;
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: {n:?} is not a count; write LABEL=N, e.g. cat=50"))?;
    Ok((label.to_owned(), n))
}

#[cfg(test)]
mod tests {
    use super::label_count;

    #[test]
    fn label_counts_parse_at_the_last_equals_sign() {
        assert_eq!(label_count("cat=5"), Ok(("cat".into(), 5)));
        assert_eq!(label_count("a=b=12"), Ok(("a=b".into(), 12)));
        assert!(label_count("cat").unwrap_err().contains("LABEL=N"));
        assert!(label_count("cat=x").unwrap_err().contains("not a count"));
    }
}
