//! The shared memory the top-k kernels of `kernels/l2_topk.cu` take, as their launcher needs it:
//! a scan or select block's running lists (`best_layout` there) and a merge block's histogram
//! and selection (`merge_layout`). Compiled on every build, so that tests/kernel_emulation.rs
//! can hold these numbers against the extents the kernels' own layouts print.

/// Radix bins of one merge pass (`RADIX_BINS`).
pub const RADIX_BINS: usize = 2048;

/// Rows (or tile columns) a scan/select block takes per round (`ROUND`).
pub const ROUND: usize = 256;

/// Pairs a running list holds for `k`: a power of two, at least 128 (the buffer of 3x that
/// always has room for one more round of `ROUND` candidates).
pub fn list_pairs(k: usize) -> usize {
    k.next_power_of_two().max(128)
}

/// Dynamic shared memory of a scan/select block serving `groups` queries with lists of `kp`
/// pairs: per query the best kp and a buffer of 3kp (distance and id each), then a count and
/// a threshold per query.
pub fn best_bytes(groups: usize, kp: usize) -> usize {
    groups * 4 * kp * 8 + groups * 8
}

/// Dynamic shared memory of a merge block whose lists are `kp` pairs (a power of two >= k):
/// the histogram, a sum per warp, the found bin (4 words), then the selected pairs.
pub fn merge_bytes(kp: usize) -> usize {
    RADIX_BINS * 4 + 32 * 4 + 16 + kp * 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_pairs_leave_room_for_a_round() {
        for k in [1, 100, 128, 129, 1000, 4096] {
            let kp = list_pairs(k);
            assert!(
                kp >= k && kp.is_power_of_two() && 3 * kp >= ROUND + kp,
                "k = {k}"
            );
        }
        assert_eq!(best_bytes(8, 128), 32_832);
        assert_eq!(merge_bytes(1024), 16_528);
    }
}
