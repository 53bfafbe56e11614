//! The host side of a GPU copy: a pool's rows converted to the device's element type, with the
//! squared norm of each row as stored (so the GEMM path's |x|^2 + |q|^2 - 2<x, q> is the
//! distance to the stored row). Converting is the host's share of every upload and append, so
//! it runs on all cores in chunks of rows, with the `half` crate's vectorised conversions.
//! Pure host code: compiled, tested and benchmarked (`benches/gpu_host.rs`) on every build.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use rayon::prelude::*;

use crate::types::VectorView;

/// Rows one task converts: large enough to amortise the task, small enough to spread a
/// segment over every core.
const CHUNK_ROWS: usize = 2048;

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

impl HostRows {
    /// Rows `first..end` of `vectors` in `dtype`, and their squared norms as stored.
    pub fn convert(
        vectors: VectorView<'_>,
        first: usize,
        end: usize,
        dtype: GpuDtype,
    ) -> (HostRows, Vec<f32>) {
        match dtype {
            GpuDtype::F32 => {
                let (rows, norms) = convert_rows(vectors, first, end, |src, dst| {
                    dst.copy_from_slice(src);
                });
                (HostRows::F32(rows), norms)
            }
            GpuDtype::F16 => {
                let (rows, norms) = convert_rows(vectors, first, end, |src, dst: &mut [f16]| {
                    dst.convert_from_f32_slice(src);
                    dst.convert_to_f32_slice(src);
                });
                (HostRows::F16(rows), norms)
            }
            GpuDtype::BF16 => {
                let (rows, norms) = convert_rows(vectors, first, end, |src, dst: &mut [bf16]| {
                    dst.convert_from_f32_slice(src);
                    dst.convert_to_f32_slice(src);
                });
                (HostRows::BF16(rows), norms)
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
/// rows `src` into `dst` and leaves in `src` the values as stored, whose squares make the norms.
fn convert_rows<T: Copy + Default + Send>(
    vectors: VectorView<'_>,
    first: usize,
    end: usize,
    store: impl Fn(&mut [f32], &mut [T]) + Sync,
) -> (Vec<T>, Vec<f32>) {
    let dim = vectors.dim().max(1);
    let n = end.saturating_sub(first);
    let mut rows = vec![T::default(); n * dim];
    let mut norms = vec![0.0f32; n];
    rows.par_chunks_mut(CHUNK_ROWS * dim)
        .zip(norms.par_chunks_mut(CHUNK_ROWS))
        .enumerate()
        .for_each_init(Vec::new, |scratch, (i, (dst, norms))| {
            let start = first + i * CHUNK_ROWS;
            scratch.resize(dst.len(), 0.0f32);
            vectors.copy_rows_f32(start, start + norms.len(), scratch);
            store(scratch, dst);
            for (norm, row) in norms.iter_mut().zip(scratch.chunks_exact(dim)) {
                *norm = row.iter().map(|v| v * v).sum();
            }
        });
    (rows, norms)
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
