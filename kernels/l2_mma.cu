// The `mma` plan's kernel: squared l2 of pool rows to a query batch with the cross term on the
// tensor cores (WMMA, f32 accumulation) and the selection in the epilogue, so no tile of cross
// terms reaches global memory. f16 and bf16 pools multiply as they are; f32 pools as 3xTF32
// (each operand split into a TF32 high part and a TF32 remainder, and hi*hi + hi*lo + lo*hi
// summed), which keeps about f32's accuracy at three tensor-core products per term.
//
// A block's running top-k of 128 queries does not fit its shared memory, so the selection is a
// threshold: the caller has found each query's k-th distance over an evenly strided sample of
// the segment (an upper bound on its k-th over the whole segment, since the sample's rows are
// rows of it). Every row at or below that bound, plus a slack for the two computations'
// different rounding, is appended to the query's candidate list; the caller then selects the
// best k of the candidates (merge_k) and recomputes their distances exactly. A list that
// overflows its capacity is reported by its count, and the caller searches the segment with
// the gemm plan instead.
//
//   l2_mma_<f16|bf16|f32>: block (query tile of BQ, part). The part strides over tiles of BN
//     rows. Per tile: chunks of KC dimensions of the queries and the rows are staged in shared
//     memory (double buffered through registers), eight warps multiply them into a BQ x BN
//     tile of f32 cross terms, which is written to shared memory (over the staging buffers)
//     and read once by the selection. A launch with less dynamic shared memory than the type's
//     `Tile<T>::SHARED` traps (a launch error, not a corrupted result).
//   fill_tail: pads each candidate list past its count with (+inf, NO_ROW) up to m pairs.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math_constants.h>
#include <mma.h>
#include <stdint.h>

#define NO_ROW 0xffffffffu
#define THREADS 256
// Queries per block tile, for every type; warps as (THREADS / 32 / WARPS_N) x WARPS_N.
#define BQ 128
#define WARPS_N 2

using namespace nvcuda;

// The tile shapes of one pool type. Storage: how a value is held (16-bit pattern or float);
// BN: pool rows per tile; KC: dimensions per staged chunk; LDS: a staged row's stride in
// elements (a multiple of 16 bytes as WMMA wants, padded against bank conflicts); K: the WMMA
// depth. The Rust side (src/gpu/mma.rs) mirrors BQ, BN and SHARED.
template <typename T>
struct Tile;

template <>
struct Tile<__half> {
    using Storage = uint16_t;
    static constexpr int BN = 128, KC = 32, LDS = KC + 8, K = 16;
};

template <>
struct Tile<__nv_bfloat16> {
    using Storage = uint16_t;
    static constexpr int BN = 128, KC = 32, LDS = KC + 8, K = 16;
};

// f32: half the rows per tile, so the 3xTF32 fragments and twice the staged bytes fit the
// registers and shared memory of two blocks per SM.
template <>
struct Tile<float> {
    using Storage = float;
    static constexpr int BN = 64, KC = 32, LDS = KC + 4, K = 8;
};

// Derived sizes: 16-byte vectors per staged row and per thread, buffers in bytes.
template <typename T>
struct Layout {
    using S = typename Tile<T>::Storage;
    static constexpr int BN = Tile<T>::BN, KC = Tile<T>::KC, LDS = Tile<T>::LDS;
    static constexpr int VEC = 16 / sizeof(S);
    static constexpr int VECS_PER_ROW = KC / VEC;
    static constexpr int Q_VECS = BQ * VECS_PER_ROW / THREADS;
    static constexpr int X_VECS = BN * VECS_PER_ROW / THREADS;
    static constexpr int LDC = BN + 4;
    static constexpr int FRAG_Q = BQ / 16 / (THREADS / 32 / WARPS_N);
    static constexpr int FRAG_N = BN / 16 / WARPS_N;
    static constexpr int STAGE_ELEMS = (BQ + BN) * LDS;
    static constexpr int STAGE_BYTES = 2 * STAGE_ELEMS * (int)sizeof(S);
    static constexpr int TILE_BYTES = BQ * LDC * 4;
    static constexpr int UNION_BYTES = STAGE_BYTES > TILE_BYTES ? STAGE_BYTES : TILE_BYTES;
    // The union, then the block's query norms and thresholds.
    static constexpr int SHARED = UNION_BYTES + 2 * BQ * 4;
    static_assert(THREADS % BN == 0, "the epilogue gives each thread one column");
    static_assert(Q_VECS * THREADS == BQ * VECS_PER_ROW && X_VECS * THREADS == BN * VECS_PER_ROW,
                  "whole vectors per thread");
};

__device__ __forceinline__ bool allowed(const uint32_t* filter, uint32_t row) {
    return filter == nullptr || ((filter[row >> 5] >> (row & 31)) & 1u);
}

// 16 bytes of row `row` from column `col` (zeros past dim or past `rows`): one load when rows
// are 16-byte aligned (`vec`: dim a multiple of the vector), else element by element.
template <typename S>
__device__ __forceinline__ uint4 fetch_vec(const S* __restrict__ base, size_t row, size_t rows,
                                           uint32_t dim, uint32_t col, bool vec) {
    uint4 r = make_uint4(0u, 0u, 0u, 0u);
    if (row >= rows || col >= dim) return r;
    const S* p = base + row * dim + col;
    if (vec) return *reinterpret_cast<const uint4*>(p);
    uint32_t w[4] = {0u, 0u, 0u, 0u};
    if constexpr (sizeof(S) == 2) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            if (col + i < dim) w[i / 2] |= (uint32_t)p[i] << (16 * (i % 2));
        }
    } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            if (col + i < dim) w[i] = __float_as_uint(p[i]);
        }
    }
    r.x = w[0];
    r.y = w[1];
    r.z = w[2];
    r.w = w[3];
    return r;
}

// Thread t stages vectors t, t + THREADS, ... of a chunk: vector v is row v / VECS_PER_ROW,
// columns (v % VECS_PER_ROW) * VEC .. + VEC of the chunk; queries first, then the pool rows.
template <typename T>
__device__ __forceinline__ void fetch_chunk(const typename Tile<T>::Storage* __restrict__ pool,
                                            uint32_t n,
                                            const typename Tile<T>::Storage* __restrict__ queries,
                                            uint32_t nq, uint32_t dim, uint32_t q0, size_t row0,
                                            uint32_t chunk, bool vec, uint4* q_regs,
                                            uint4* x_regs) {
    using L = Layout<T>;
#pragma unroll
    for (int i = 0; i < L::Q_VECS; ++i) {
        const uint32_t v = threadIdx.x + i * THREADS;
        q_regs[i] = fetch_vec(queries, (size_t)q0 + v / L::VECS_PER_ROW, nq, dim,
                              chunk * L::KC + (v % L::VECS_PER_ROW) * L::VEC, vec);
    }
#pragma unroll
    for (int i = 0; i < L::X_VECS; ++i) {
        const uint32_t v = threadIdx.x + i * THREADS;
        x_regs[i] = fetch_vec(pool, row0 + v / L::VECS_PER_ROW, n, dim,
                              chunk * L::KC + (v % L::VECS_PER_ROW) * L::VEC, vec);
    }
}

// Writes the fetched chunk to one staging buffer: BQ query rows, then BN pool rows, LDS apart.
template <typename T>
__device__ __forceinline__ void store_chunk(typename Tile<T>::Storage* s, const uint4* q_regs,
                                            const uint4* x_regs) {
    using L = Layout<T>;
#pragma unroll
    for (int i = 0; i < L::Q_VECS; ++i) {
        const uint32_t v = threadIdx.x + i * THREADS;
        *reinterpret_cast<uint4*>(s + (v / L::VECS_PER_ROW) * L::LDS +
                                  (v % L::VECS_PER_ROW) * L::VEC) = q_regs[i];
    }
    typename Tile<T>::Storage* xs = s + BQ * L::LDS;
#pragma unroll
    for (int i = 0; i < L::X_VECS; ++i) {
        const uint32_t v = threadIdx.x + i * THREADS;
        *reinterpret_cast<uint4*>(xs + (v / L::VECS_PER_ROW) * L::LDS +
                                  (v % L::VECS_PER_ROW) * L::VEC) = x_regs[i];
    }
}

// A fragment from the staging buffers. wmma::load_matrix_sync reads f16 fragments from shared
// memory as such (ldmatrix), but bf16 and tf32 ones through generic addresses (one 32-bit LD.E
// per register: the ptxas-built SASS of l2_mma_bf16 had 48 LD.E where l2_mma_f16 has 12
// LDSM.x4), so those two are issued here with the .shared state space. Same registers, same
// layout: only the address space differs. The emulator has one shared memory and takes the
// plain call.
template <typename Frag, typename T>
__device__ __forceinline__ void load_shared(Frag& f, const T* p, unsigned ldm) {
    wmma::load_matrix_sync(f, p, ldm);
}

#ifndef DCD_EMULATOR
using BF16A = wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
using BF16B = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major>;
using TF32A = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using TF32B = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;

// Overloads, preferred to the template: QUALIFIERS are wmma.load's, from the matrix on. Each of
// these fragments is four 32-bit registers.
#define LOAD_SHARED(FRAG, T, QUALIFIERS)                                                     \
    __device__ __forceinline__ void load_shared(FRAG& f, const T* p, unsigned ldm) {         \
        static_assert(sizeof(f.x) == 16, "four registers");                                  \
        uint32_t* r = reinterpret_cast<uint32_t*>(&f.x[0]);                                  \
        const uint32_t at = (uint32_t)__cvta_generic_to_shared(p);                           \
        asm volatile("wmma.load." QUALIFIERS " {%0, %1, %2, %3}, [%4], %5;"                  \
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])                        \
                     : "r"(at), "r"(ldm)                                                     \
                     : "memory");                                                            \
    }
LOAD_SHARED(BF16A, __nv_bfloat16, "a.sync.aligned.row.m16n16k16.shared.bf16")
LOAD_SHARED(BF16B, __nv_bfloat16, "b.sync.aligned.col.m16n16k16.shared.bf16")
LOAD_SHARED(TF32A, float, "a.sync.aligned.row.m16n16k8.shared.tf32")
LOAD_SHARED(TF32B, float, "b.sync.aligned.col.m16n16k8.shared.tf32")
#undef LOAD_SHARED
#endif

// One staged chunk into the warp's accumulators: rows wq * FRAG_Q * 16 .. of the queries (qs)
// against rows wn * FRAG_N * 16 .. of the pool (xs), both LDS apart. Column j of B is pool
// row j: element (k, j) at xs[j * LDS + k], a column-major B.
template <typename T, typename Acc>
__device__ __forceinline__ void multiply_chunk(const T* qs, const T* xs, uint32_t wq, uint32_t wn,
                                               Acc (&acc)[Layout<T>::FRAG_Q][Layout<T>::FRAG_N]) {
    using L = Layout<T>;
    constexpr int K = Tile<T>::K;
#pragma unroll
    for (int kk = 0; kk < L::KC; kk += K) {
        wmma::fragment<wmma::matrix_a, 16, 16, K, T, wmma::row_major> a[L::FRAG_Q];
#pragma unroll
        for (int i = 0; i < L::FRAG_Q; ++i) {
            load_shared(a[i], qs + (wq * L::FRAG_Q + i) * 16 * L::LDS + kk, L::LDS);
        }
        wmma::fragment<wmma::matrix_b, 16, 16, K, T, wmma::col_major> b[L::FRAG_N];
#pragma unroll
        for (int j = 0; j < L::FRAG_N; ++j) {
            load_shared(b[j], xs + (wn * L::FRAG_N + j) * 16 * L::LDS + kk, L::LDS);
        }
#pragma unroll
        for (int i = 0; i < L::FRAG_Q; ++i) {
#pragma unroll
            for (int j = 0; j < L::FRAG_N; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
        }
    }
}

// The same for f32 rows as 3xTF32: x = hi + lo with hi = tf32(x), lo = tf32(x - hi); the
// product takes hi*hi + hi*lo + lo*hi (lo*lo is below f32's rounding).
template <typename Acc>
__device__ __forceinline__ void multiply_chunk(
    const float* qs, const float* xs, uint32_t wq, uint32_t wn,
    Acc (&acc)[Layout<float>::FRAG_Q][Layout<float>::FRAG_N]) {
    using L = Layout<float>;
    using Tf32 = wmma::precision::tf32;
    // Unrolled by two, not four: four kept more fragments live than 128 registers hold.
#pragma unroll 2
    for (int kk = 0; kk < L::KC; kk += 8) {
        wmma::fragment<wmma::matrix_a, 16, 16, 8, Tf32, wmma::row_major> a_hi[L::FRAG_Q],
            a_lo[L::FRAG_Q];
#pragma unroll
        for (int i = 0; i < L::FRAG_Q; ++i) {
            load_shared(a_hi[i], qs + (wq * L::FRAG_Q + i) * 16 * L::LDS + kk, L::LDS);
#pragma unroll
            for (int e = 0; e < a_hi[i].num_elements; ++e) {
                const float v = a_hi[i].x[e];
                a_hi[i].x[e] = wmma::__float_to_tf32(v);
                a_lo[i].x[e] = wmma::__float_to_tf32(v - a_hi[i].x[e]);
            }
        }
#pragma unroll
        for (int j = 0; j < L::FRAG_N; ++j) {
            wmma::fragment<wmma::matrix_b, 16, 16, 8, Tf32, wmma::col_major> b_hi, b_lo;
            load_shared(b_hi, xs + (wn * L::FRAG_N + j) * 16 * L::LDS + kk, L::LDS);
#pragma unroll
            for (int e = 0; e < b_hi.num_elements; ++e) {
                const float v = b_hi.x[e];
                b_hi.x[e] = wmma::__float_to_tf32(v);
                b_lo.x[e] = wmma::__float_to_tf32(v - b_hi.x[e]);
            }
#pragma unroll
            for (int i = 0; i < L::FRAG_Q; ++i) {
                // Small terms first, so they are not lost against the large one.
                wmma::mma_sync(acc[i][j], a_lo[i], b_hi, acc[i][j]);
                wmma::mma_sync(acc[i][j], a_hi[i], b_lo, acc[i][j]);
                wmma::mma_sync(acc[i][j], a_hi[i], b_hi, acc[i][j]);
            }
        }
    }
}

// The CPU emulator (kernels/emulator) has its own: PTX is not C++.
#ifndef DCD_EMULATOR
__device__ __forceinline__ uint32_t dynamic_shared_bytes() {
    uint32_t bytes;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(bytes));
    return bytes;
}
#endif

template <typename T>
__device__ void l2_mma(const typename Tile<T>::Storage* __restrict__ pool, uint32_t n,
                       uint32_t dim, uint32_t row_offset,
                       const typename Tile<T>::Storage* __restrict__ queries, uint32_t nq,
                       const float* __restrict__ qnorm, const float* __restrict__ xnorm,
                       const uint32_t* __restrict__ filter, const float* __restrict__ thr,
                       uint32_t thr_stride, uint32_t cap, uint32_t* __restrict__ count,
                       float* __restrict__ cand_d, uint32_t* __restrict__ cand_i) {
    using L = Layout<T>;
    using S = typename Tile<T>::Storage;
    constexpr int BN = L::BN;
    if (dynamic_shared_bytes() < (uint32_t)L::SHARED) __trap();
    extern __shared__ __align__(128) unsigned char smem[];
    S* stage = reinterpret_cast<S*>(smem);
    float* tile = reinterpret_cast<float*>(smem);
    float* qn_s = reinterpret_cast<float*>(smem + L::UNION_BYTES);
    float* thr_s = qn_s + BQ;

    const uint32_t q0 = blockIdx.x * BQ;
    const uint32_t warp = threadIdx.x >> 5;
    const uint32_t wq = warp / WARPS_N;
    const uint32_t wn = warp % WARPS_N;
    const bool vec = dim % L::VEC == 0;
    const uint32_t chunks = (dim + L::KC - 1) / L::KC;
    const size_t tiles = ((size_t)n + BN - 1) / BN;

    for (uint32_t g = threadIdx.x; g < BQ; g += blockDim.x) {
        const uint32_t q = q0 + g;
        if (q < nq) {
            const float qn = qnorm[q];
            const float t = thr[(size_t)q * thr_stride];
            qn_s[g] = qn;
            // The sample's k-th came from cuBLAS, these distances from WMMA: the same products
            // (3xTF32's within about f32's rounding of them) summed in another order. Near the
            // k-th place |x|^2 <= 2t + 2|q|^2, and the difference is far below 1e-4 of
            // |q|^2 + |x|^2.
            thr_s[g] = t + 1e-4f * (2.0f * t + 3.0f * qn);
        } else {
            qn_s[g] = 0.0f;
            thr_s[g] = -1.0f;  // no distance is below: the padding queries take nothing
        }
    }

    uint4 q_regs[L::Q_VECS];
    uint4 x_regs[L::X_VECS];
    for (size_t t = blockIdx.y; t < tiles; t += gridDim.y) {
        const size_t row0 = t * BN;
        wmma::fragment<wmma::accumulator, 16, 16, Tile<T>::K, float> acc[L::FRAG_Q][L::FRAG_N];
#pragma unroll
        for (int i = 0; i < L::FRAG_Q; ++i) {
#pragma unroll
            for (int j = 0; j < L::FRAG_N; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
        }
        fetch_chunk<T>(pool, n, queries, nq, dim, q0, row0, 0, vec, q_regs, x_regs);
        store_chunk<T>(stage, q_regs, x_regs);
        __syncthreads();
        for (uint32_t chunk = 0; chunk < chunks; ++chunk) {
            const int cur = chunk & 1;
            if (chunk + 1 < chunks) {
                fetch_chunk<T>(pool, n, queries, nq, dim, q0, row0, chunk + 1, vec, q_regs, x_regs);
            }
            const T* qs = reinterpret_cast<const T*>(stage + cur * L::STAGE_ELEMS);
            multiply_chunk(qs, qs + BQ * L::LDS, wq, wn, acc);
            if (chunk + 1 < chunks) {
                store_chunk<T>(stage + (cur ^ 1) * L::STAGE_ELEMS, q_regs, x_regs);
            }
            // Ends every read of `cur` before the next chunk overwrites it, and publishes the
            // next chunk; after the last chunk, frees the staging buffers for the tile.
            __syncthreads();
        }
#pragma unroll
        for (int i = 0; i < L::FRAG_Q; ++i) {
#pragma unroll
            for (int j = 0; j < L::FRAG_N; ++j) {
                wmma::store_matrix_sync(
                    tile + (wq * L::FRAG_Q + i) * 16 * L::LDC + (wn * L::FRAG_N + j) * 16,
                    acc[i][j], L::LDC, wmma::mem_row_major);
            }
        }
        // Thread t reads column t % BN of the tile for queries t / BN, t / BN + THREADS / BN,
        // ...: its row's flag and norm are read once per tile, and a warp reads 32
        // consecutive floats of one tile row.
        const uint32_t c = threadIdx.x % BN;
        const size_t row = row0 + c;
        const bool ok = row < n && allowed(filter, (uint32_t)row + row_offset);
        const float xn = ok ? xnorm[row] : 0.0f;
        __syncthreads();
        if (ok) {
            for (uint32_t g = threadIdx.x / BN; g < BQ; g += THREADS / BN) {
                // + 0.0f turns a -0.0 from fmaxf into +0.0 (the merge orders float bits).
                const float d = fmaxf(qn_s[g] + xn - 2.0f * tile[g * L::LDC + c], 0.0f) + 0.0f;
                if (d <= thr_s[g]) {
                    const uint32_t q = q0 + g;
                    const uint32_t slot = atomicAdd(&count[q], 1u);
                    if (slot < cap) {
                        cand_d[(size_t)q * cap + slot] = d;
                        cand_i[(size_t)q * cap + slot] = (uint32_t)row + row_offset;
                    }
                }
            }
        }
        // The next tile's first chunk is staged over this tile's cross terms.
        __syncthreads();
    }
}

#define MMA_KERNEL(NAME, T)                                                                    \
    extern "C" __global__ void __launch_bounds__(THREADS, 2) NAME(                            \
        const Tile<T>::Storage* pool, uint32_t n, uint32_t dim, uint32_t row_offset,          \
        const Tile<T>::Storage* queries, uint32_t nq, const float* qnorm, const float* xnorm, \
        const uint32_t* filter, const float* thr, uint32_t thr_stride, uint32_t cap,          \
        uint32_t* count, float* cand_d, uint32_t* cand_i) {                                   \
        l2_mma<T>(pool, n, dim, row_offset, queries, nq, qnorm, xnorm, filter, thr,           \
                  thr_stride, cap, count, cand_d, cand_i);                                    \
    }

MMA_KERNEL(l2_mma_f16, __half)
MMA_KERNEL(l2_mma_bf16, __nv_bfloat16)
MMA_KERNEL(l2_mma_f32, float)

// Block q: slots min(count[q], cap) .. m of query q's list (stride cap) become (+inf, NO_ROW).
extern "C" __global__ void fill_tail(const uint32_t* __restrict__ count, uint32_t cap, uint32_t m,
                                     float* __restrict__ cand_d, uint32_t* __restrict__ cand_i) {
    const size_t q = blockIdx.x;
    const uint32_t from = min(count[q], cap);
    for (uint32_t s = from + threadIdx.x; s < m; s += blockDim.x) {
        cand_d[q * cap + s] = CUDART_INF_F;
        cand_i[q * cap + s] = NO_ROW;
    }
}
