// Emulator stand-in (see ../cuda_emulator.h) for the WMMA calls dcd's kernels make (f16/bf16
// m16n16k16, TF32 m16n16k8, f32 accumulators): every lane of the warp does the whole
// warp-wide operation on a full fragment.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
namespace precision {
struct tf32 {};
}  // namespace precision

// Rows and columns of a fragment: a is M x K, b is K x N, the accumulator M x N.
template <typename Use, int M, int N, int K>
struct shape;
template <int M, int N, int K>
struct shape<matrix_a, M, N, K> {
    static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct shape<matrix_b, M, N, K> {
    static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct shape<accumulator, M, N, K> {
    static constexpr int rows = M, cols = N;
};

// The whole fragment in every lane, element (r, c) at x[r * cols + c]; elementwise code over
// x[0 .. num_elements) touches every element, as it does across a real warp's lanes.
template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
    static constexpr int rows = shape<Use, M, N, K>::rows;
    static constexpr int cols = shape<Use, M, N, K>::cols;
    static constexpr int num_elements = rows * cols;
    float x[num_elements];
};

// TF32 as the tensor cores take it: 10 explicit mantissa bits.
inline float truncate_tf32(float v) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    u &= 0xffffe000u;
    std::memcpy(&v, &u, 4);
    return v;
}

// cvt.rna.tf32.f32: to nearest, ties away from zero.
inline float __float_to_tf32(float v) {
    if (!std::isfinite(v)) return v;
    uint32_t u;
    std::memcpy(&u, &v, 4);
    u = (u + 0x1000u) & 0xffffe000u;
    std::memcpy(&v, &u, 4);
    return v;
}

template <typename T>
inline float element(float v) {
    if constexpr (std::is_same_v<T, precision::tf32>) return truncate_tf32(v);
    return v;
}

template <typename P>
void require_tile(const P* p, unsigned ldm) {
    EMU_REQUIRE(reinterpret_cast<uintptr_t>(p) % 32 == 0);  // 256-bit aligned, as WMMA wants
    EMU_REQUIRE(ldm * sizeof(P) % 16 == 0);                  // 16-byte multiple strides
}

template <typename Use, int M, int N, int K, typename T, typename Layout>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, float v) {
    for (float& e : f.x) e = v;
}

template <int M, int N, int K, typename T, typename P>
void load_matrix_sync(fragment<matrix_a, M, N, K, T, row_major>& f, const P* p, unsigned ldm) {
    require_tile(p, ldm);
    for (int r = 0; r < M; ++r)
        for (int c = 0; c < K; ++c) f.x[r * K + c] = emu::to_float(p[r * ldm + c]);
}

template <int M, int N, int K, typename T, typename P>
void load_matrix_sync(fragment<matrix_b, M, N, K, T, col_major>& f, const P* p, unsigned ldm) {
    require_tile(p, ldm);
    // Column-major: element (k, n) at p[n * ldm + k].
    for (int k = 0; k < K; ++k)
        for (int n = 0; n < N; ++n) f.x[k * N + n] = emu::to_float(p[n * ldm + k]);
}

template <int M, int N, int K, typename T>
void mma_sync(fragment<accumulator, M, N, K, float>& d,
              const fragment<matrix_a, M, N, K, T, row_major>& a,
              const fragment<matrix_b, M, N, K, T, col_major>& b,
              const fragment<accumulator, M, N, K, float>& c) {
    float out[M * N];
    for (int m = 0; m < M; ++m) {
        for (int n = 0; n < N; ++n) {
            float s = c.x[m * N + n];
            for (int k = 0; k < K; ++k) {
                s += element<T>(a.x[m * K + k]) * element<T>(b.x[k * N + n]);
            }
            out[m * N + n] = s;
        }
    }
    for (int i = 0; i < M * N; ++i) d.x[i] = out[i];
}

template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm,
                       layout_t layout) {
    require_tile(p, ldm);
    EMU_REQUIRE(layout == mem_row_major);
    if (threadIdx.x % 32 != 0) return;
    for (int m = 0; m < M; ++m)
        for (int n = 0; n < N; ++n) p[m * ldm + n] = f.x[m * N + n];
}
}  // namespace wmma
}  // namespace nvcuda
