//! `dcd eval`: score a debug-set recipe without a model and print the curve; the full
//! evaluation goes to `--out` as JSON.

use std::path::Path;

use super::target::{Access, Target};
use crate::config::EvalArgs;
use crate::error::{Error, Result};
use crate::service::{AllowedRoots, EvaluationRequest, EvaluationResult};

/// `dcd eval`.
pub(super) fn run(data_dir: &Path, args: EvalArgs) -> Result<()> {
    if args.set.out.extension().and_then(|e| e.to_str()) != Some("json") {
        return Err(Error::Usage(format!(
            "--out {}: name a .json file for the report",
            args.set.out.display()
        )));
    }
    // The failures' labels always score the sets; --errors-unlabelled only keeps them out of
    // the building, so recipes with and without labels are scored on the same terms.
    let unlabelled = args.set.errors_unlabelled;
    let (recipe, _) = super::debug_set::request_of(&args.set, false)?;
    let held_out = match &args.held_out {
        // The held-out failures are the yardstick, not part of the recipe: their labels stay.
        Some(paths) => super::debug_set::error_samples(paths, false)?.0,
        None => Vec::new(),
    };
    let req = EvaluationRequest {
        recipe,
        held_out,
        folds: args.folds,
        ks: args.ks.clone(),
        budgets: args.budgets.clone(),
        draws: args.draws,
        seed: args.seed,
        build_without_labels: unlabelled,
    };
    let started = std::time::Instant::now();
    let result = Target::open(data_dir, &args.set.target, Access::Read, || {
        crate::app::settings(AllowedRoots::Any, &args.set.runtime, None)
    })?
    .evaluate_debug_set(&req)?;
    let secs = started.elapsed().as_secs_f64();
    let out = &args.set.out;
    std::fs::write(
        out,
        serde_json::to_string_pretty(&result).expect("plain data serialises"),
    )
    .map_err(Error::io(format!("cannot write {}", out.display())))?;
    for s in &result.skipped {
        eprintln!("skipped: {s}");
    }
    print!("{}", table(&result));
    println!(
        "{} held-out failures ({} labelled, {}), {} random draws per set, in {secs:.1} s -> {}",
        result.scored,
        result.labelled,
        match result.folds {
            0 => "the --held-out set".to_owned(),
            f => format!("{f} folds of the error samples"),
        },
        req.draws.unwrap_or(crate::service::DEFAULT_DRAWS),
        out.display()
    );
    Ok(())
}

/// The curve as a text table: one row per point; score beside random sets' (rnd).
fn table(r: &EvaluationResult) -> String {
    let pct = |p: f32| format!("p{:.0}", p * 100.0);
    let mut head = vec![
        "k".to_owned(),
        "budget".into(),
        "items".into(),
        "score".into(),
        "rnd".into(),
        "near".into(),
        "agree".into(),
        "win".into(),
        "label_win".into(),
    ];
    for &(p, _) in &r.thresholds {
        head.push(format!("cov@{} set/rnd", pct(p)));
    }
    let mut rows = vec![head];
    for p in &r.points {
        let c = &p.comparison;
        let mut row = vec![
            p.k.to_string(),
            p.budget.map_or("-".into(), |b| b.to_string()),
            format!("{:.1}", p.items),
            format!("{:.3}", c.score()),
            format!("{:.3}", c.items.random_useful),
            format!("{:.3}", c.items.near),
            c.items.agree.map_or("-".into(), |a| format!("{a:.3}")),
            format!("{:.3}", c.win_rate),
            c.label_win_rate.map_or("-".into(), |w| format!("{w:.3}")),
        ];
        let shares = c.label_covered.as_ref().unwrap_or(&c.covered);
        for &(set, random) in shares {
            row.push(format!("{set:.2}/{random:.2}"));
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, &w)| format!("{c:>w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
