//! The host side of a GPU copy: a pool's rows converted to the device's element type, with the
//! squared norm of each row as stored (so the GEMM path's |x|^2 + |q|^2 - 2<x, q> is the
//! distance to the stored row). Converting is the host's share of every upload and append, so
//! it runs on all cores in chunks of rows, with the `half` crate's vectorised conversions. For
//! a half copy of an f32 pool the same pass measures what the rounding did ([`Rounding`]), which
//! certifies the copy's answers (`super::certified`).
//! Pure host code: compiled, tested and benchmarked (`benches/gpu_host.rs`) on every build.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use rayon::prelude::*;

use crate::types::VectorView;

/// Rows one task converts: large enough to amortise the task, small enough to spread a
/// segment over every core.
const CHUNK_ROWS: usize = 2048;

/// Rows a task passes over at once (its scratch: 24 KiB of f32 at d = 384, in L1/L2).
const BLOCK_ROWS: usize = 16;

/// Element type of a pool on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuDtype {
    /// binary32.
    F32,
    /// binary16.
    F16,
    /// bfloat16.
    BF16,
}

impl GpuDtype {
    /// Bytes of one element.
    pub fn bytes(self) -> usize {
        match self {
            GpuDtype::F32 => 4,
            GpuDtype::F16 | GpuDtype::BF16 => 2,
        }
    }

    /// As `--dtype` spells it.
    pub fn name(self) -> &'static str {
        match self {
            GpuDtype::F32 => "f32",
            GpuDtype::F16 => "f16",
            GpuDtype::BF16 => "bf16",
        }
    }
}

/// Rows on the host in a device element type, row after row.
#[derive(Clone, Debug, PartialEq)]
pub enum HostRows {
    /// binary32 rows.
    F32(Vec<f32>),
    /// binary16 rows.
    F16(Vec<f16>),
    /// bfloat16 rows.
    BF16(Vec<bf16>),
}

/// What rounding f32 rows to the copy's type did to them: the largest distance between a row
/// and its copy and the largest norm of a copy (both from above), and the first value the type
/// cannot hold (its copy is infinite, and no answer can be certified).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rounding {
    /// Largest |x - x~| over the rows.
    pub max_error: f64,
    /// Largest |x~| over the rows.
    pub max_norm: f64,
    /// The first row (its index in the pool) holding a value out of range, and the value.
    pub out_of_range: Option<(usize, f32)>,
}

impl Rounding {
    /// Of the rows `originals` (`dim` values each, the first of them row `first` of the pool)
    /// and `copies`, the same rows as the copy holds them, back in f32. Rows after the first
    /// one out of range are not looked at.
    pub fn of(originals: &[f32], copies: &[f32], dim: usize, first: usize) -> Rounding {
        let dim = dim.max(1);
        let mut rounding = Rounding::default();
        for (i, (x, c)) in originals
            .chunks_exact(dim)
            .zip(copies.chunks_exact(dim))
            .enumerate()
        {
            // Squares of finite f32 values are finite in f64: only a copy that is not makes
            // the sums so, and only then is the value looked for.
            let (error, norm) = error_and_norm(x, c);
            if !(error.is_finite() && norm.is_finite()) {
                let j = c.iter().position(|v| !v.is_finite()).unwrap_or(0);
                rounding.out_of_range = Some((first + i, x[j]));
                break;
            }
            rounding.max_error = rounding.max_error.max(error);
            rounding.max_norm = rounding.max_norm.max(norm);
        }
        rounding
    }

    /// Both together, `self` being of rows before `later`'s (so its row out of range, if
    /// any, is the first).
    pub fn then(self, later: Rounding) -> Rounding {
        Rounding {
            max_error: self.max_error.max(later.max_error),
            max_norm: self.max_norm.max(later.max_norm),
            out_of_range: self.out_of_range.or(later.out_of_range),
        }
    }
}

/// |x - c| and |c| of a row `x` and its copy `c`, from above: f64 sums of a few thousand
/// terms, which a relative 1e-12 covers in any order (so eight independent lanes, which the
/// compiler vectorises: a single chain of dependent f64 additions made this as slow as the
/// conversion itself).
pub fn error_and_norm(x: &[f32], c: &[f32]) -> (f64, f64) {
    const LANES: usize = 8;
    let (mut error, mut norm) = ([0.0f64; LANES], [0.0f64; LANES]);
    let mut add = |lane: usize, a: f32, b: f32| {
        let (a, b) = (a as f64, b as f64);
        error[lane] += (a - b) * (a - b);
        norm[lane] += b * b;
    };
    let (xs, cs) = (x.chunks_exact(LANES), c.chunks_exact(LANES));
    let (x_rest, c_rest) = (xs.remainder(), cs.remainder());
    for (xl, cl) in xs.zip(cs) {
        for lane in 0..LANES {
            add(lane, xl[lane], cl[lane]);
        }
    }
    for (lane, (&a, &b)) in x_rest.iter().zip(c_rest).enumerate() {
        add(lane, a, b);
    }
    let (error, norm): (f64, f64) = (error.iter().sum(), norm.iter().sum());
    (error.sqrt() * (1.0 + 1e-12), norm.sqrt() * (1.0 + 1e-12))
}

/// What rounding rows `first..end` of `vectors` to `dtype` does to them ([`Rounding`]),
/// without keeping the copy (a half copy's appended rows are measured so before any is copied):
/// on all cores, a block of rows at a time.
pub fn rounding_of(vectors: VectorView<'_>, first: usize, end: usize, dtype: GpuDtype) -> Rounding {
    let dim = vectors.dim().max(1);
    let starts: Vec<usize> = (first..end).step_by(CHUNK_ROWS).collect();
    let chunks: Vec<Rounding> = starts
        .par_iter()
        .map_init(
            || {
                (
                    vec![0.0f32; BLOCK_ROWS * dim],
                    vec![0.0f32; BLOCK_ROWS * dim],
                )
            },
            |(originals, copies), &start| {
                let stop = (start + CHUNK_ROWS).min(end);
                let mut measured = Rounding::default();
                for row in (start..stop).step_by(BLOCK_ROWS) {
                    let len = BLOCK_ROWS.min(stop - row) * dim;
                    let (x, c) = (&mut originals[..len], &mut copies[..len]);
                    vectors.copy_rows_f32(row, row + len / dim, x);
                    round_to(dtype, x, c);
                    measured = measured.then(Rounding::of(x, c, dim, row));
                }
                measured
            },
        )
        .collect();
    chunks.into_iter().fold(Rounding::default(), Rounding::then)
}

/// `values` as a copy in `dtype` holds them, back in f32, into `out` (of the same length).
pub fn round_to(dtype: GpuDtype, values: &[f32], out: &mut [f32]) {
    match dtype {
        GpuDtype::F16 => {
            let mut h = vec![f16::ZERO; values.len()];
            h.convert_from_f32_slice(values);
            h.convert_to_f32_slice(out);
        }
        GpuDtype::BF16 => {
            let mut h = vec![bf16::ZERO; values.len()];
            h.convert_from_f32_slice(values);
            h.convert_to_f32_slice(out);
        }
        GpuDtype::F32 => out.copy_from_slice(values),
    }
}

impl HostRows {
    /// Rows `first..end` of `vectors` in `dtype`, and their squared norms as stored.
    pub fn convert(
        vectors: VectorView<'_>,
        first: usize,
        end: usize,
        dtype: GpuDtype,
    ) -> (HostRows, Vec<f32>) {
        let (rows, norms, _) = Self::convert_with(vectors, first, end, dtype, false);
        (rows, norms)
    }

    /// As [`HostRows::convert`], measuring in the same pass what rounding to `dtype` did to
    /// the rows (for a half copy of an f32 pool; nothing for an f32 one).
    pub fn convert_rounding(
        vectors: VectorView<'_>,
        first: usize,
        end: usize,
        dtype: GpuDtype,
    ) -> (HostRows, Vec<f32>, Rounding) {
        Self::convert_with(vectors, first, end, dtype, true)
    }

    fn convert_with(
        vectors: VectorView<'_>,
        first: usize,
        end: usize,
        dtype: GpuDtype,
        rounding: bool,
    ) -> (HostRows, Vec<f32>, Rounding) {
        match dtype {
            GpuDtype::F32 => {
                // An f32 copy is the rows themselves: nothing to measure.
                let (rows, norms, _) = convert_rows(vectors, first, end, false, |src, dst| {
                    dst.copy_from_slice(src);
                });
                (HostRows::F32(rows), norms, Rounding::default())
            }
            GpuDtype::F16 => {
                let (rows, norms, r) =
                    convert_rows(vectors, first, end, rounding, |src, dst: &mut [f16]| {
                        dst.convert_from_f32_slice(src);
                        dst.convert_to_f32_slice(src);
                    });
                (HostRows::F16(rows), norms, r)
            }
            GpuDtype::BF16 => {
                let (rows, norms, r) =
                    convert_rows(vectors, first, end, rounding, |src, dst: &mut [bf16]| {
                        dst.convert_from_f32_slice(src);
                        dst.convert_to_f32_slice(src);
                    });
                (HostRows::BF16(rows), norms, r)
            }
        }
    }

    /// No rows, in `dtype`.
    pub fn empty(dtype: GpuDtype) -> HostRows {
        match dtype {
            GpuDtype::F32 => HostRows::F32(Vec::new()),
            GpuDtype::F16 => HostRows::F16(Vec::new()),
            GpuDtype::BF16 => HostRows::BF16(Vec::new()),
        }
    }

    /// Elements held.
    pub fn len(&self) -> usize {
        match self {
            HostRows::F32(v) => v.len(),
            HostRows::F16(v) => v.len(),
            HostRows::BF16(v) => v.len(),
        }
    }

    /// True when no element is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `more`, which must have the same element type.
    pub fn extend(&mut self, more: HostRows) {
        match (self, more) {
            (HostRows::F32(v), HostRows::F32(m)) => v.extend(m),
            (HostRows::F16(v), HostRows::F16(m)) => v.extend(m),
            (HostRows::BF16(v), HostRows::BF16(m)) => v.extend(m),
            _ => unreachable!("rows are converted to the pool's element type"),
        }
    }
}

/// Rows `first..end` converted chunk by chunk in parallel: `store(src, dst)` writes the f32
/// rows `src` into `dst` and leaves in `src` the values as stored, whose squares make the norms;
/// with `rounding`, what storing did to the rows is measured too.
fn convert_rows<T: Copy + Default + Send>(
    vectors: VectorView<'_>,
    first: usize,
    end: usize,
    rounding: bool,
    store: impl Fn(&mut [f32], &mut [T]) + Sync,
) -> (Vec<T>, Vec<f32>, Rounding) {
    let dim = vectors.dim().max(1);
    let n = end.saturating_sub(first);
    let mut rows = vec![T::default(); n * dim];
    let mut norms = vec![0.0f32; n];
    let chunks: Vec<Rounding> = rows
        .par_chunks_mut(CHUNK_ROWS * dim)
        .zip(norms.par_chunks_mut(CHUNK_ROWS))
        .enumerate()
        .map_init(
            || {
                (
                    vec![0.0f32; BLOCK_ROWS * dim],
                    vec![0.0f32; BLOCK_ROWS * dim],
                )
            },
            |(scratch, originals), (i, (dst, norms))| {
                let start = first + i * CHUNK_ROWS;
                let mut measured = Rounding::default();
                // A block at a time, so that every pass over the rows is over cache.
                for (b, (dst, norms)) in dst
                    .chunks_mut(BLOCK_ROWS * dim)
                    .zip(norms.chunks_mut(BLOCK_ROWS))
                    .enumerate()
                {
                    let row = start + b * BLOCK_ROWS;
                    let src = &mut scratch[..dst.len()];
                    vectors.copy_rows_f32(row, row + norms.len(), src);
                    let originals = &mut originals[..dst.len()];
                    if rounding {
                        originals.copy_from_slice(src);
                    }
                    store(src, dst);
                    for (norm, values) in norms.iter_mut().zip(src.chunks_exact(dim)) {
                        *norm = values.iter().map(|v| v * v).sum();
                    }
                    if rounding {
                        measured = measured.then(Rounding::of(originals, src, dim, row));
                    }
                }
                measured
            },
        )
        .collect();
    let rounding = chunks.into_iter().fold(Rounding::default(), Rounding::then);
    (rows, norms, rounding)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain per-element conversion the parallel one must equal.
    fn reference(m: &[f32], dim: usize, round: fn(f32) -> f32) -> (Vec<f32>, Vec<f32>) {
        let rows: Vec<f32> = m.iter().map(|&v| round(v)).collect();
        let norms = rows
            .chunks(dim)
            .map(|r| r.iter().map(|v| v * v).sum())
            .collect();
        (rows, norms)
    }

    #[test]
    fn parallel_conversion_equals_the_plain_one() {
        // More rows than one chunk, a range that starts and ends inside chunks.
        let dim = 13;
        let m = crate::synth::uniform(2 * CHUNK_ROWS + 77, dim, 5);
        let (first, end) = (3, 2 * CHUNK_ROWS + 70);
        let part = &m.data[first * dim..end * dim];
        let view = VectorView::f32(&m.data, dim);
        let (rows, norms) = HostRows::convert(view, first, end, GpuDtype::F32);
        assert_eq!((rows, norms), {
            let (r, n) = reference(part, dim, |v| v);
            (HostRows::F32(r), n)
        });
        let (rows, norms) = HostRows::convert(view, first, end, GpuDtype::F16);
        let (want, want_norms) = reference(part, dim, |v| f16::from_f32(v).to_f32());
        let HostRows::F16(h) = rows else {
            panic!("f16 rows")
        };
        assert!(h.iter().map(|v| v.to_f32()).eq(want.iter().copied()));
        assert_eq!(norms, want_norms);
        let (rows, norms) = HostRows::convert(view, first, end, GpuDtype::BF16);
        let (want, want_norms) = reference(part, dim, |v| bf16::from_f32(v).to_f32());
        let HostRows::BF16(b) = rows else {
            panic!("bf16 rows")
        };
        assert!(b.iter().map(|v| v.to_f32()).eq(want.iter().copied()));
        assert_eq!(norms, want_norms);
    }

    #[test]
    fn an_f16_pool_converts_from_its_stored_halves() {
        let m = crate::synth::uniform(100, 8, 6);
        let halves: Vec<f16> = m.data.iter().map(|&v| f16::from_f32(v)).collect();
        let view = VectorView::F16 {
            data: &halves,
            dim: 8,
        };
        let (rows, _) = HostRows::convert(view, 0, 100, GpuDtype::F16);
        assert_eq!(rows, HostRows::F16(halves));
    }

    #[test]
    fn the_rounding_is_measured_in_the_conversion_pass() {
        let dim = 7;
        let mut m = crate::synth::uniform(2 * CHUNK_ROWS + 9, dim, 8);
        for v in &mut m.data {
            *v *= 40.0;
        }
        let (first, end) = (5, 2 * CHUNK_ROWS + 9);
        let view = VectorView::f32(&m.data, dim);
        for (dtype, round) in [
            (
                GpuDtype::F16,
                (|v| f16::from_f32(v).to_f32()) as fn(f32) -> f32,
            ),
            (GpuDtype::BF16, |v| bf16::from_f32(v).to_f32()),
        ] {
            let part = &m.data[first * dim..end * dim];
            let copies: Vec<f32> = part.iter().map(|&v| round(v)).collect();
            let (rows, norms, rounding) = HostRows::convert_rounding(view, first, end, dtype);
            assert_eq!((rows, norms), HostRows::convert(view, first, end, dtype));
            // Row by row, the largest error and norm, exactly (a maximum has no order).
            let (mut error, mut norm) = (0.0f64, 0.0f64);
            for (x, c) in part.chunks(dim).zip(copies.chunks(dim)) {
                let (e, n) = error_and_norm(x, c);
                (error, norm) = (error.max(e), norm.max(n));
            }
            assert_eq!(
                rounding,
                Rounding {
                    max_error: error,
                    max_norm: norm,
                    out_of_range: None
                }
            );
            assert!(error > 0.0);
        }
        // An f32 copy rounds nothing; an f16 pool's f16 copy neither.
        let (_, _, none) = HostRows::convert_rounding(view, 0, 10, GpuDtype::F32);
        assert_eq!(none, Rounding::default());
        let halves: Vec<f16> = m.data.iter().map(|&v| f16::from_f32(v)).collect();
        let stored = VectorView::F16 { data: &halves, dim };
        let (_, _, exact) = HostRows::convert_rounding(stored, 0, 100, GpuDtype::F16);
        assert_eq!(exact.max_error, 0.0);
        // The first row out of range is the one named, whichever chunk it is in.
        m.data[(CHUNK_ROWS + 3) * dim + 2] = 1e6;
        m.data[(2 * CHUNK_ROWS + 1) * dim] = -7e4;
        m.data[(2 * CHUNK_ROWS + 4) * dim] = 1e30;
        let view = VectorView::f32(&m.data, dim);
        let (_, _, r) = HostRows::convert_rounding(view, CHUNK_ROWS + 4, end, GpuDtype::F16);
        assert_eq!(r.out_of_range, Some((2 * CHUNK_ROWS + 1, -7e4)));
        let (_, _, r) = HostRows::convert_rounding(view, 0, end, GpuDtype::F16);
        assert_eq!(r.out_of_range, Some((CHUNK_ROWS + 3, 1e6)));
        assert_eq!(rounding_of(view, 0, end, GpuDtype::F16), r);
        assert_eq!(rounding_of(view, 7, 7, GpuDtype::F16), Rounding::default());
        // bf16 holds all three.
        let (_, _, r) = HostRows::convert_rounding(view, 0, end, GpuDtype::BF16);
        assert_eq!(r.out_of_range, None);
    }

    #[test]
    fn error_and_norm_bound_the_plain_sums_from_above() {
        // Lengths around the lane count, and a long row with a remainder.
        for dim in [1, 7, 8, 9, 384, 1027] {
            let x = crate::synth::uniform(1, dim, dim as u64).data;
            let c: Vec<f32> = x.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
            let (error, norm) = error_and_norm(&x, &c);
            let plain_error: f64 = x
                .iter()
                .zip(&c)
                .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                .sum();
            let plain_norm: f64 = c.iter().map(|&b| (b as f64).powi(2)).sum();
            for (got, plain) in [(error, plain_error.sqrt()), (norm, plain_norm.sqrt())] {
                assert!(
                    got >= plain && got <= plain * (1.0 + 2e-12),
                    "{dim}: {got} {plain}"
                );
            }
        }
        assert_eq!(error_and_norm(&[], &[]), (0.0, 0.0));
    }

    #[test]
    fn empty_ranges_and_growth() {
        let m = crate::synth::uniform(10, 4, 7);
        let view = VectorView::f32(&m.data, 4);
        let (mut rows, norms) = HostRows::convert(view, 4, 4, GpuDtype::F16);
        assert!(rows.is_empty() && norms.is_empty());
        assert_eq!(rows, HostRows::empty(GpuDtype::F16));
        rows.extend(HostRows::convert(view, 4, 6, GpuDtype::F16).0);
        rows.extend(HostRows::convert(view, 6, 10, GpuDtype::F16).0);
        assert_eq!(rows, HostRows::convert(view, 4, 10, GpuDtype::F16).0);
        assert_eq!(rows.len(), 6 * 4);
    }
}
