//! How the `mma` plan sizes its work on one segment: the evenly strided sample whose k-th
//! distance per query bounds the segment's k-th (the sample's rows are rows of the segment),
//! and the room each query's list has for the rows at or below that bound. Pure, so it is
//! compiled and tested on every build.

/// Candidates per query a sample is sized for at k <= 512 (see [`expected`]): the sample is
/// then about k / 8192 of the segment, and the lists the merge reads stay short.
pub const EXPECTED_CANDIDATES: usize = 8192;

/// Room per query, as a multiple of the expected candidates: the count of rows at or below a
/// sample's k-th spreads around its mean, and a list that overflows sends the segment back to
/// the gemm plan.
pub const ROOM_FACTOR: usize = 4;

/// Every `stride`-th row of a segment from its first, `rows` of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Rows between two sampled rows.
    pub stride: usize,
    /// Rows sampled.
    pub rows: usize,
}

/// Candidates per query to size the sample for, given the base (normally
/// [`EXPECTED_CANDIDATES`]): at least 16k, so that a large k does not need a sample of most
/// of the segment.
pub fn expected(k: usize, base: usize) -> usize {
    base.max(16 * k).max(1)
}

/// The sample of a segment of `len` rows for `k` and `expected` candidates per query: about
/// `len * k / expected` rows (on data without structure that many rows fall at or below the
/// sample's k-th), at least 4k so the k-th is not the sample's largest. `None` when that is
/// half the segment or more: the sample would cost about what it saves, and the gemm plan
/// searches the segment.
pub fn sample(len: usize, k: usize, expected: usize) -> Option<Sample> {
    let k = k.max(1);
    let want = len.saturating_mul(k).div_ceil(expected.max(1)).max(4 * k);
    if want.saturating_mul(2) > len {
        return None;
    }
    let stride = len / want;
    Some(Sample {
        stride,
        rows: len / stride,
    })
}

/// Room per query for candidates: [`ROOM_FACTOR`] times the expected count, and never less
/// than k (the merge selects k of them).
pub fn room(k: usize, expected: usize) -> usize {
    (ROOM_FACTOR * expected).max(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_million_rows_at_k_100_sample_about_one_in_eighty() {
        let e = expected(100, EXPECTED_CANDIDATES);
        assert_eq!(e, 8192);
        let s = sample(1_000_000, 100, e).unwrap();
        assert_eq!(s.stride, 81);
        assert_eq!(s.rows, 1_000_000 / 81);
        assert_eq!(room(100, e), 32_768);
    }

    #[test]
    fn samples_stay_inside_the_segment_and_near_the_expected_count() {
        for len in [200, 999, 2000, 40_000, 1_000_003, 10_000_000, 123_456_789] {
            for k in [1, 10, 100, 1000, 4096] {
                let e = expected(k, EXPECTED_CANDIDATES);
                let Some(s) = sample(len, k, e) else {
                    continue;
                };
                assert!(s.stride >= 2, "len {len} k {k}: {s:?}");
                assert!((s.rows - 1) * s.stride < len, "len {len} k {k}: {s:?}");
                assert!(s.rows >= 4 * k, "len {len} k {k}: {s:?}");
                // Rows expected at or below the sample's k-th: within the sizing, and well
                // inside the room.
                let mean = len as f64 * k as f64 / s.rows as f64;
                assert!(mean <= 2.0 * e as f64, "len {len} k {k}: {mean}");
                assert!(mean * 2.0 <= room(k, e) as f64, "len {len} k {k}: {mean}");
            }
        }
    }

    #[test]
    fn small_segments_are_left_to_the_gemm_plan() {
        assert_eq!(sample(799, 100, 8192), None);
        assert!(sample(800, 100, 8192).is_some());
        assert_eq!(sample(0, 10, 8192), None);
        assert_eq!(sample(5, 1, 8192), None);
    }

    #[test]
    fn a_smaller_base_samples_more_rows() {
        let few = sample(100_000, 10, expected(10, 8192)).unwrap();
        let many = sample(100_000, 10, expected(10, 200)).unwrap();
        assert!(many.rows > few.rows, "{few:?} {many:?}");
        assert_eq!(room(10, expected(10, 200)), 800);
        assert_eq!(room(5000, 1), 5000, "never less than k");
        assert_eq!(room(5000, expected(5000, 1)), 5000 * 16 * ROOM_FACTOR);
    }

    #[test]
    fn large_k_grows_the_expected_count() {
        assert_eq!(expected(4096, EXPECTED_CANDIDATES), 65_536);
        assert_eq!(expected(0, 0), 1);
    }
}
