// Emulator stand-in (see ../cuda_emulator.h) for the m16n16k16 WMMA calls l2_mma.cu makes:
// every lane of the warp does the whole warp-wide operation on a full 16 x 16 fragment.
#pragma once
#include <cstdint>

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

// Element (r, c) of the 16 x 16 fragment at v[r * 16 + c] (a: query x depth, b: depth x row).
template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
    float v[16 * 16];
};

inline void require_tile(const void* p, unsigned ldm, unsigned multiple) {
    EMU_REQUIRE(reinterpret_cast<uintptr_t>(p) % 32 == 0);  // 256-bit aligned, as WMMA wants
    EMU_REQUIRE(ldm % multiple == 0);
}

template <typename Use, typename T, typename Layout>
void fill_fragment(fragment<Use, 16, 16, 16, T, Layout>& f, float x) {
    for (float& e : f.v) e = x;
}

template <typename T>
void load_matrix_sync(fragment<matrix_a, 16, 16, 16, T, row_major>& f, const T* p,
                      unsigned ldm) {
    require_tile(p, ldm, 8);
    for (int r = 0; r < 16; ++r)
        for (int c = 0; c < 16; ++c) f.v[r * 16 + c] = emu::to_float(p[r * ldm + c]);
}

template <typename T>
void load_matrix_sync(fragment<matrix_b, 16, 16, 16, T, col_major>& f, const T* p,
                      unsigned ldm) {
    require_tile(p, ldm, 8);
    // Column-major: element (k, n) at p[n * ldm + k].
    for (int k = 0; k < 16; ++k)
        for (int n = 0; n < 16; ++n) f.v[k * 16 + n] = emu::to_float(p[n * ldm + k]);
}

template <typename T>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d,
              const fragment<matrix_a, 16, 16, 16, T, row_major>& a,
              const fragment<matrix_b, 16, 16, 16, T, col_major>& b,
              const fragment<accumulator, 16, 16, 16, float>& c) {
    float out[16 * 16];
    for (int m = 0; m < 16; ++m) {
        for (int n = 0; n < 16; ++n) {
            float s = c.v[m * 16 + n];
            for (int k = 0; k < 16; ++k) s += a.v[m * 16 + k] * b.v[k * 16 + n];
            out[m * 16 + n] = s;
        }
    }
    for (int i = 0; i < 256; ++i) d.v[i] = out[i];
}

inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f,
                              unsigned ldm, layout_t layout) {
    require_tile(p, ldm, 4);
    EMU_REQUIRE(layout == mem_row_major);
    if (threadIdx.x % 32 != 0) return;
    for (int m = 0; m < 16; ++m)
        for (int n = 0; n < 16; ++n) p[m * ldm + n] = f.v[m * 16 + n];
}
}  // namespace wmma
}  // namespace nvcuda
