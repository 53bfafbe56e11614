// The `mma` plan's kernel: squared l2 of f16/bf16 pool rows to a query batch with the cross
// term on the tensor cores (WMMA, f32 accumulation) and the selection in the epilogue, so no
// tile of cross terms reaches global memory.
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
//   l2_mma_<f16|bf16>: block (query tile of BQ, part). The part strides over tiles of BN rows.
//     Per tile: chunks of KC dimensions of the queries and the rows are staged in shared memory
//     (double buffered through registers), eight warps multiply them into a BQ x BN tile of f32
//     cross terms, which is written to shared memory (over the staging buffers) and read once
//     by the selection.
//   fill_tail: pads each candidate list past its count with (+inf, NO_ROW) up to m pairs.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math_constants.h>
#include <mma.h>
#include <stdint.h>

#define NO_ROW 0xffffffffu
// Queries and pool rows of one block tile, dimensions per staged chunk. The Rust side
// (src/gpu/mma.rs) mirrors BQ, BN and the shared memory size.
#define BQ 128
#define BN 128
#define KC 32
// Row strides in shared memory: staged chunks (elements; a multiple of 8 as WMMA wants, padded
// against bank conflicts) and the cross-term tile (floats, a multiple of 4).
#define LDS (KC + 8)
#define LDC (BN + 4)
#define THREADS 256  // a multiple of BN: the epilogue gives each thread one column
// Warps as WARPS_Q x WARPS_N, each owning FRAG_Q x FRAG_N 16 x 16 accumulator fragments.
#define WARPS_N 2
#define FRAG_Q (BQ / 16 / (THREADS / 32 / WARPS_N))
#define FRAG_N (BN / 16 / WARPS_N)
// 16-byte vectors per staged chunk row, and per thread for the queries and the rows.
#define VECS_PER_ROW (KC / 8)
#define Q_VECS (BQ * VECS_PER_ROW / THREADS)
#define X_VECS (BN * VECS_PER_ROW / THREADS)

#define STAGE_ELEMS ((BQ + BN) * LDS)
#define STAGE_BYTES (2 * STAGE_ELEMS * 2)
#define TILE_BYTES (BQ * LDC * 4)
#define UNION_BYTES (STAGE_BYTES > TILE_BYTES ? STAGE_BYTES : TILE_BYTES)
// Dynamic shared memory of l2_mma_*: the union, then the block's query norms and thresholds.
#define MMA_SHARED (UNION_BYTES + 2 * BQ * 4)

using namespace nvcuda;

__device__ __forceinline__ bool allowed(const uint32_t* filter, uint32_t row) {
    return filter == nullptr || ((filter[row >> 5] >> (row & 31)) & 1u);
}

// Eight 16-bit elements of row `row` from column `col` (zeros past dim or past `rows`): one
// 16-byte load when rows are 16-byte aligned (dim % 8 == 0), else element by element.
__device__ __forceinline__ uint4 fetch8(const uint16_t* __restrict__ base, size_t row,
                                        size_t rows, uint32_t dim, uint32_t col, bool vec) {
    uint4 r = make_uint4(0u, 0u, 0u, 0u);
    if (row >= rows || col >= dim) return r;
    const uint16_t* p = base + row * dim + col;
    if (vec) return *reinterpret_cast<const uint4*>(p);
    uint32_t w[4] = {0u, 0u, 0u, 0u};
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        if (col + i < dim) w[i / 2] |= (uint32_t)p[i] << (16 * (i % 2));
    }
    r.x = w[0];
    r.y = w[1];
    r.z = w[2];
    r.w = w[3];
    return r;
}

// Thread t stages vectors t, t + THREADS, ... of a chunk: vector v is row v / VECS_PER_ROW,
// columns (v % VECS_PER_ROW) * 8 .. + 8 of the chunk; queries first, then the pool rows.
__device__ __forceinline__ void fetch_chunk(const uint16_t* __restrict__ pool, uint32_t n,
                                            const uint16_t* __restrict__ queries, uint32_t nq,
                                            uint32_t dim, uint32_t q0, size_t row0,
                                            uint32_t chunk, bool vec, uint4* q_regs,
                                            uint4* x_regs) {
#pragma unroll
    for (int i = 0; i < Q_VECS; ++i) {
        const uint32_t v = threadIdx.x + i * THREADS;
        q_regs[i] = fetch8(queries, (size_t)q0 + v / VECS_PER_ROW, nq, dim,
                           chunk * KC + (v % VECS_PER_ROW) * 8, vec);
    }
#pragma unroll
    for (int i = 0; i < X_VECS; ++i) {
        const uint32_t v = threadIdx.x + i * THREADS;
        x_regs[i] = fetch8(pool, row0 + v / VECS_PER_ROW, n, dim,
                           chunk * KC + (v % VECS_PER_ROW) * 8, vec);
    }
}

// Writes the fetched chunk to one staging buffer: BQ query rows, then BN pool rows, LDS apart.
__device__ __forceinline__ void store_chunk(uint16_t* s, const uint4* q_regs,
                                            const uint4* x_regs) {
#pragma unroll
    for (int i = 0; i < Q_VECS; ++i) {
        const uint32_t v = threadIdx.x + i * THREADS;
        *reinterpret_cast<uint4*>(s + (v / VECS_PER_ROW) * LDS + (v % VECS_PER_ROW) * 8) =
            q_regs[i];
    }
    uint16_t* xs = s + BQ * LDS;
#pragma unroll
    for (int i = 0; i < X_VECS; ++i) {
        const uint32_t v = threadIdx.x + i * THREADS;
        *reinterpret_cast<uint4*>(xs + (v / VECS_PER_ROW) * LDS + (v % VECS_PER_ROW) * 8) =
            x_regs[i];
    }
}

template <typename T>
__device__ void l2_mma(const uint16_t* __restrict__ pool, uint32_t n, uint32_t dim,
                       uint32_t row_offset, const uint16_t* __restrict__ queries, uint32_t nq,
                       const float* __restrict__ qnorm, const float* __restrict__ xnorm,
                       const uint32_t* __restrict__ filter, const float* __restrict__ thr,
                       uint32_t thr_stride, uint32_t cap, uint32_t* __restrict__ count,
                       float* __restrict__ cand_d, uint32_t* __restrict__ cand_i) {
    extern __shared__ __align__(128) unsigned char smem[];
    uint16_t* stage = reinterpret_cast<uint16_t*>(smem);
    float* tile = reinterpret_cast<float*>(smem);
    float* qn_s = reinterpret_cast<float*>(smem + UNION_BYTES);
    float* thr_s = qn_s + BQ;

    const uint32_t q0 = blockIdx.x * BQ;
    const uint32_t warp = threadIdx.x >> 5;
    const uint32_t wq = warp / WARPS_N;
    const uint32_t wn = warp % WARPS_N;
    const bool vec = dim % 8 == 0;
    const uint32_t chunks = (dim + KC - 1) / KC;
    const size_t tiles = ((size_t)n + BN - 1) / BN;

    for (uint32_t g = threadIdx.x; g < BQ; g += blockDim.x) {
        const uint32_t q = q0 + g;
        if (q < nq) {
            const float qn = qnorm[q];
            const float t = thr[(size_t)q * thr_stride];
            qn_s[g] = qn;
            // The sample's k-th came from cuBLAS, these distances from WMMA: the same products
            // summed in another order. Near the k-th place |x|^2 <= 2t + 2|q|^2, and the
            // difference is far below 1e-4 of |q|^2 + |x|^2.
            thr_s[g] = t + 1e-4f * (2.0f * t + 3.0f * qn);
        } else {
            qn_s[g] = 0.0f;
            thr_s[g] = -1.0f;  // no distance is below: the padding queries take nothing
        }
    }

    uint4 q_regs[Q_VECS];
    uint4 x_regs[X_VECS];

    for (size_t t = blockIdx.y; t < tiles; t += gridDim.y) {
        const size_t row0 = t * BN;
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[FRAG_Q][FRAG_N];
#pragma unroll
        for (int i = 0; i < FRAG_Q; ++i) {
#pragma unroll
            for (int j = 0; j < FRAG_N; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
        }
        fetch_chunk(pool, n, queries, nq, dim, q0, row0, 0, vec, q_regs, x_regs);
        store_chunk(stage, q_regs, x_regs);
        __syncthreads();
        for (uint32_t chunk = 0; chunk < chunks; ++chunk) {
            const int cur = chunk & 1;
            if (chunk + 1 < chunks) {
                fetch_chunk(pool, n, queries, nq, dim, q0, row0, chunk + 1, vec, q_regs, x_regs);
            }
            const T* qs = reinterpret_cast<const T*>(stage + cur * STAGE_ELEMS);
            const T* xs = qs + BQ * LDS;
#pragma unroll
            for (int kk = 0; kk < KC; kk += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a[FRAG_Q];
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b[FRAG_N];
#pragma unroll
                for (int i = 0; i < FRAG_Q; ++i) {
                    wmma::load_matrix_sync(a[i], qs + (wq * FRAG_Q + i) * 16 * LDS + kk, LDS);
                }
#pragma unroll
                for (int j = 0; j < FRAG_N; ++j) {
                    // Column j of B is pool row j: element (k, j) at xs[j * LDS + k].
                    wmma::load_matrix_sync(b[j], xs + (wn * FRAG_N + j) * 16 * LDS + kk, LDS);
                }
#pragma unroll
                for (int i = 0; i < FRAG_Q; ++i) {
#pragma unroll
                    for (int j = 0; j < FRAG_N; ++j) {
                        wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
                    }
                }
            }
            if (chunk + 1 < chunks) store_chunk(stage + (cur ^ 1) * STAGE_ELEMS, q_regs, x_regs);
            // Ends every read of `cur` before the next chunk overwrites it, and publishes the
            // next chunk; after the last chunk, frees the staging buffers for the tile.
            __syncthreads();
        }
#pragma unroll
        for (int i = 0; i < FRAG_Q; ++i) {
#pragma unroll
            for (int j = 0; j < FRAG_N; ++j) {
                wmma::store_matrix_sync(
                    tile + (wq * FRAG_Q * 16 + i * 16) * LDC + wn * FRAG_N * 16 + j * 16,
                    acc[i][j], LDC, wmma::mem_row_major);
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
                const float d = fmaxf(qn_s[g] + xn - 2.0f * tile[g * LDC + c], 0.0f) + 0.0f;
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
        const uint16_t* pool, uint32_t n, uint32_t dim, uint32_t row_offset,                  \
        const uint16_t* queries, uint32_t nq, const float* qnorm, const float* xnorm,         \
        const uint32_t* filter, const float* thr, uint32_t thr_stride, uint32_t cap,          \
        uint32_t* count, float* cand_d, uint32_t* cand_i) {                                   \
        l2_mma<T>(pool, n, dim, row_offset, queries, nq, qnorm, xnorm, filter, thr,           \
                  thr_stride, cap, count, cand_d, cand_i);                                    \
    }

MMA_KERNEL(l2_mma_f16, __half)
MMA_KERNEL(l2_mma_bf16, __nv_bfloat16)

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
