//! `dcd bench gen`: a clustered data set with its exact ground truth.

use crate::config::BenchGenArgs;
use crate::error::{Error, Result};
use crate::formats::{write_fvecs, write_ivecs};
use crate::index::exact::ExactIndex;
use crate::index::{AnnIndex, SearchParams};
use crate::synth::ClusterSpec;
use crate::types::VectorView;

pub(super) fn generate(args: BenchGenArgs) -> Result<()> {
    if args.n == 0 || args.nq == 0 || args.dim == 0 || args.gt_k == 0 || args.gt_k > args.n {
        return Err(Error::Usage(
            "--n, --queries, --dim and --gt-k must be positive, and --gt-k at most --n".into(),
        ));
    }
    std::fs::create_dir_all(&args.out).map_err(|source| {
        Error::Format(crate::formats::FormatError::Io {
            path: args.out.clone(),
            source,
        })
    })?;
    let spec = ClusterSpec {
        dim: args.dim,
        clusters: args.clusters.unwrap_or((args.n / 1000).max(10)),
        seed: args.seed,
    };
    let base = spec.sample(args.n, 0);
    let queries = spec.sample(args.nq, 1);
    let view = VectorView::f32(&base.data, base.dim);
    let gt = ExactIndex::build(view).search_batch(view, &queries, &SearchParams::k(args.gt_k))?;
    let ids: Vec<i32> = gt
        .iter()
        .flat_map(|h| h.iter().map(|n| n.id as i32))
        .collect();
    write_fvecs(&args.out.join("base.fvecs"), &base)?;
    write_fvecs(&args.out.join("queries.fvecs"), &queries)?;
    write_ivecs(&args.out.join("gt.ivecs"), args.gt_k, &ids)?;
    println!(
        "wrote {} base and {} query vectors ({}-d, {} clusters) and exact top-{} to {}",
        args.n,
        args.nq,
        args.dim,
        spec.clusters,
        args.gt_k,
        args.out.display()
    );
    Ok(())
}
