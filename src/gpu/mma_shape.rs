//! The `mma` kernel's tile shapes as its launcher needs them, mirroring `Tile`/`Layout` in
//! `kernels/l2_mma.cu`: queries and pool rows per block tile, and the dynamic shared memory a
//! block takes. Compiled on every build, so that tests/kernel_emulation.rs can hold these
//! numbers against the ones the emulated kernel prints.

use super::GpuDtype;

/// Queries per block tile (`BQ`), for every element type.
pub const QUERIES_PER_TILE: usize = 128;

/// Pool rows per block tile (`Tile<T>::BN`): f32 tiles are half as wide, so 3xTF32's
/// fragments fit the registers.
pub fn rows_per_tile(dtype: GpuDtype) -> usize {
    match dtype {
        GpuDtype::F16 | GpuDtype::BF16 => 128,
        GpuDtype::F32 => 64,
    }
}

/// Dynamic shared memory of one block (`Layout<T>::SHARED`): the larger of two staging
/// buffers of (queries + rows) x (32 + pad) elements and the tile of cross terms (queries x
/// (rows + 4) floats), then a norm and a threshold per query.
pub fn shared_bytes(dtype: GpuDtype) -> usize {
    let rows = rows_per_tile(dtype);
    let (elem, pad) = match dtype {
        GpuDtype::F16 | GpuDtype::BF16 => (2, 8),
        GpuDtype::F32 => (4, 4),
    };
    let stage = 2 * (QUERIES_PER_TILE + rows) * (32 + pad) * elem;
    let tile = QUERIES_PER_TILE * (rows + 4) * 4;
    stage.max(tile) + 2 * QUERIES_PER_TILE * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_blocks_fit_an_sm_of_228_kib() {
        for dtype in [GpuDtype::F16, GpuDtype::BF16, GpuDtype::F32] {
            assert!(2 * shared_bytes(dtype) <= 228 << 10, "{dtype:?}");
        }
        assert_eq!(shared_bytes(GpuDtype::F16), 68_608);
        assert_eq!(shared_bytes(GpuDtype::F32), 56_320);
    }
}
