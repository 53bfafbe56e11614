// Exact k-NN under squared l2 with the top-k selection fused in: the Q x N distance matrix never
// reaches global memory whole. Pools are f32, f16 or bf16; distances are accumulated in f32.
//
// Every block keeps, in shared memory, the running best k of each of its G queries (a sorted
// list of kp >= k pairs) and a buffer of 3kp candidates. A candidate enters the buffer only
// when it is no worse than the query's threshold: the block's own k-th best, or the best k-th
// any block has published for that query (`gthr`, float bits, lowered with atomicMin: a block
// that holds k real rows at distance <= t proves the final k-th distance is <= t). A round
// offers at most ROUND candidates per query; the buffer is folded in (best + buffer, 4kp pairs,
// bitonic) only when another round might not fit, so sorts are rare once the thresholds are
// tight.
//
//   l2_scan_<dtype>_g<G>: block (query group, part). The part strides over the pool in rounds of
//     ROUND rows; one warp per row computes the G distances with 16-byte loads. Writes its best
//     k per query: out[q][part][0..k] (`lists` >= parts lists per query; the rest padding).
//     Query groups are blockIdx.x, so blocks resident together read the same rows and the pool
//     comes from HBM about once per pass.
//   l2_select_g<G>: the tensor-core path's epilogue. Reads one tile of cross terms
//     dots[q][col] = <x_col, q> computed by cuBLAS, forms |q|^2 + |x|^2 - 2<x,q> and continues
//     the running best k kept in state[q][part] from the previous tile.
//   merge_k: per query, the best k of m candidate pairs by radix selection on the 64-bit key
//     (distance bits, row id): six histogram passes find the k-th key exactly, then everything
//     below it is gathered and sorted. Robust to any number of ties and padding entries.
//   l2_refine_<dtype>: recomputes sum((x - q)^2) for the chosen rows (the GEMM path's distances
//     lose precision to cancellation; the reported ones are exact).
//   fill_empty: sets candidate lists to (+inf, NO_ROW).
//   wide_tile: the `wide` plan, for k beyond what a block's shared memory holds: per query, the
//     best k so far followed by a whole tile of (distance, row) pairs in global memory, which
//     merge_k's tree then folds back to k (one more merge pass per tile instead of lists kept in
//     shared memory).
//
// Rows past the pool end, and rows the caller's filter excludes, never become candidates;
// unfilled slots carry +inf and id NO_ROW (the host drops them). Ties are broken by row id, as
// on the CPU path.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math_constants.h>
#include <stdint.h>

#define NO_ROW 0xffffffffu

// Every kernel's dynamic shared memory, declared once: a declaration inside the extern "C"
// kernels and another inside the C++ templates would name one variable with two linkages.
extern __shared__ __align__(16) unsigned char smem[];

// Rows (or tile columns) per round; the buffer (3kp, kp >= 128) always has room for one.
#define ROUND 256u

__device__ __forceinline__ bool before(float da, uint32_t ia, float db, uint32_t ib) {
    return da < db || (da == db && ia < ib);
}

// Ascending bitonic sort, by the whole block, of `lists` independent lists of n (a power of
// two) pairs stored back to back.
__device__ void sort_lists(float* d, uint32_t* id, int n, int lists) {
    const int total = n * lists;
    for (int size = 2; size <= n; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            __syncthreads();
            for (int t = threadIdx.x; t < total; t += blockDim.x) {
                const int e = t & (n - 1);
                const int f = e ^ stride;
                if (f > e) {
                    const int i = t;
                    const int j = t - e + f;
                    const bool ascending = (e & size) == 0;
                    const bool swap = ascending ? before(d[j], id[j], d[i], id[i])
                                                : before(d[i], id[i], d[j], id[j]);
                    if (swap) {
                        const float td = d[i];
                        d[i] = d[j];
                        d[j] = td;
                        const uint32_t ti = id[i];
                        id[i] = id[j];
                        id[j] = ti;
                    }
                }
            }
        }
    }
    __syncthreads();
}

// The running best k of G queries in shared memory: per query 4kp pairs (best, then the
// buffer), a buffer count and the round's threshold.
struct Best {
    float* d;
    uint32_t* id;
    uint32_t* count;
    float* thr;
    uint32_t kp;
    uint32_t k;
    int groups;
    // One past the last byte (the launcher's best_bytes).
    __device__ unsigned char* end() { return reinterpret_cast<unsigned char*>(thr + groups); }

    __device__ float* dist(int g) { return d + (size_t)g * 4 * kp; }
    __device__ uint32_t* ids(int g) { return id + (size_t)g * 4 * kp; }
};

__device__ Best best_layout(unsigned char* smem, int groups, uint32_t k, uint32_t kp) {
    Best b;
    b.d = reinterpret_cast<float*>(smem);
    b.id = reinterpret_cast<uint32_t*>(b.d + (size_t)groups * 4 * kp);
    b.count = b.id + (size_t)groups * 4 * kp;
    b.thr = reinterpret_cast<float*>(b.count + groups);
    b.kp = kp;
    b.k = k;
    b.groups = groups;
    return b;
}

__device__ void best_clear(Best& b) {
    for (uint32_t t = threadIdx.x; t < (uint32_t)b.groups * 4 * b.kp; t += blockDim.x) {
        b.d[t] = CUDART_INF_F;
        b.id[t] = NO_ROW;
    }
    for (int g = threadIdx.x; g < b.groups; g += blockDim.x) b.count[g] = 0;
    __syncthreads();
}

// Thresholds for the next rounds: the block's k-th best, or a better one another block
// published (re-read every 8th round and after each fold: a global read per round would put an
// L2 round trip on every round's critical path).
__device__ void refresh_thresholds(Best& b, const uint32_t* gthr, uint32_t q0, int live) {
    for (int g = threadIdx.x; g < live; g += blockDim.x) {
        const float shared_kth = __uint_as_float(((volatile const uint32_t*)gthr)[q0 + g]);
        b.thr[g] = fminf(b.dist(g)[b.k - 1], shared_kth);
    }
    __syncthreads();
}

__device__ __forceinline__ void round_begin(Best& b, const uint32_t* gthr, uint32_t q0, int live,
                                            uint32_t round) {
    if ((round & 7) == 0) refresh_thresholds(b, gthr, q0, live);
}

// Buffers a candidate below the threshold. True when it took the slot past the fold limit
// (3kp - ROUND: room for one more round), so that a fold is due at the round's end.
__device__ __forceinline__ bool offer(Best& b, int g, float dist, uint32_t row) {
    if (dist <= b.thr[g]) {
        const uint32_t slot = atomicAdd(&b.count[g], 1u);
        b.dist(g)[b.kp + slot] = dist;
        b.ids(g)[b.kp + slot] = row;
        return slot >= 3 * b.kp - ROUND;
    }
    return false;
}

// Folds the buffers into the best lists when another round might not fit (`over`: some
// thread's offer of this round passed the limit; counts start every round at or below it), or,
// `last`, when anything is buffered; then publishes the new k-th distances. The decision is the
// barrier's own OR: counts read after a plain barrier could already hold the next round's
// offers of threads that went on, and threads that disagree on a fold meet at the wrong
// barriers.
__device__ void round_end(Best& b, uint32_t* gthr, uint32_t q0, int live, bool last, bool over) {
    bool fold = __syncthreads_or(over) != 0;
    // No offer follows the last round: its counts hold still.
    for (int g = 0; last && g < live; ++g) fold |= b.count[g] > 0;
    if (!fold) return;
    sort_lists(b.d, b.id, 4 * b.kp, b.groups);
    for (uint32_t t = threadIdx.x; t < (uint32_t)b.groups * 3 * b.kp; t += blockDim.x) {
        const uint32_t g = t / (3 * b.kp);
        const uint32_t j = b.kp + t % (3 * b.kp);
        b.dist(g)[j] = CUDART_INF_F;
        b.ids(g)[j] = NO_ROW;
    }
    for (int g = threadIdx.x; g < live; g += blockDim.x) {
        b.count[g] = 0;
        const float kth = b.dist(g)[b.k - 1];
        if (kth < CUDART_INF_F) atomicMin(&gthr[q0 + g], __float_as_uint(kth));
    }
    __syncthreads();
    refresh_thresholds(b, gthr, q0, live);
}

// 16-byte loads of pool rows, widened to f32.
__device__ __forceinline__ void load16(const float* p, float* v) {
    const float4 a = *reinterpret_cast<const float4*>(p);
    v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
}
__device__ __forceinline__ void load16(const __half* p, float* v) {
    const uint4 a = *reinterpret_cast<const uint4*>(p);
    const uint32_t w[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&w[i]));
        v[2 * i] = f.x;
        v[2 * i + 1] = f.y;
    }
}
__device__ __forceinline__ void load16(const __nv_bfloat16* p, float* v) {
    const uint4 a = *reinterpret_cast<const uint4*>(p);
    const uint32_t w[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&w[i]));
        v[2 * i] = f.x;
        v[2 * i + 1] = f.y;
    }
}

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

// This lane's share of sum((x - q_g)^2) for the G queries starting at q (rows of dim floats).
template <typename T, int G>
__device__ __forceinline__ void row_partial(const T* __restrict__ x, const float* __restrict__ q,
                                            uint32_t dim, int live, uint32_t lane, bool vec,
                                            float* acc) {
    constexpr int V = 16 / sizeof(T);
    if (vec) {
        const uint32_t nv = dim / V;
        for (uint32_t v = lane; v < nv; v += 32) {
            float xv[V];
            load16(x + (size_t)v * V, xv);
#pragma unroll
            for (int g = 0; g < G; ++g) {
                if (g < live) {
                    const float4* qv =
                        reinterpret_cast<const float4*>(q + (size_t)g * dim + (size_t)v * V);
#pragma unroll
                    for (int h = 0; h < V / 4; ++h) {
                        const float4 qq = __ldg(qv + h);
                        float e = xv[4 * h] - qq.x;
                        acc[g] = fmaf(e, e, acc[g]);
                        e = xv[4 * h + 1] - qq.y;
                        acc[g] = fmaf(e, e, acc[g]);
                        e = xv[4 * h + 2] - qq.z;
                        acc[g] = fmaf(e, e, acc[g]);
                        e = xv[4 * h + 3] - qq.w;
                        acc[g] = fmaf(e, e, acc[g]);
                    }
                }
            }
        }
    } else {
        for (uint32_t c = lane; c < dim; c += 32) {
            const float xv = to_f32(x[c]);
#pragma unroll
            for (int g = 0; g < G; ++g) {
                if (g < live) {
                    const float e = xv - __ldg(q + (size_t)g * dim + c);
                    acc[g] = fmaf(e, e, acc[g]);
                }
            }
        }
    }
}

__device__ __forceinline__ bool allowed(const uint32_t* filter, uint32_t row) {
    return filter == nullptr || ((filter[row >> 5] >> (row & 31)) & 1u);
}

// Writes the block's best k per query to out[q][part] (lists of k, `lists` per query).
__device__ void best_store(Best& b, uint32_t q0, int live, uint32_t lists, float* out_d,
                           uint32_t* out_i) {
    for (uint32_t t = threadIdx.x; t < (uint32_t)live * b.k; t += blockDim.x) {
        const uint32_t g = t / b.k;
        const uint32_t j = t % b.k;
        const size_t at = ((size_t)(q0 + g) * lists + blockIdx.y) * b.k + j;
        out_d[at] = b.dist(g)[j];
        out_i[at] = b.ids(g)[j];
    }
}

template <typename T, int G>
__device__ void l2_scan(const T* __restrict__ pool, uint32_t n, uint32_t dim, uint32_t row_offset,
                        const float* __restrict__ queries, uint32_t nq,
                        const uint32_t* __restrict__ filter, uint32_t k, uint32_t kp,
                        uint32_t* gthr, uint32_t lists, float* __restrict__ out_d,
                        uint32_t* __restrict__ out_i) {
    Best b = best_layout(smem, G, k, kp);
    const uint32_t q0 = blockIdx.x * G;
    const int live = min((uint32_t)G, nq - q0);
    const uint32_t lane = threadIdx.x & 31;
    const uint32_t warp = threadIdx.x >> 5;
    const uint32_t warps = blockDim.x >> 5;
    const bool vec = dim % (16 / sizeof(T)) == 0;
    const float* q = queries + (size_t)q0 * dim;
    best_clear(b);
    uint32_t round = 0;
    for (size_t start = (size_t)blockIdx.y * ROUND; start < n;
         start += (size_t)gridDim.y * ROUND, ++round) {
        round_begin(b, gthr, q0, live, round);
        bool over = false;
        for (uint32_t r = warp; r < ROUND; r += warps) {
            const size_t row = start + r;
            if (row >= n || !allowed(filter, (uint32_t)row + row_offset)) continue;
            float acc[G];
#pragma unroll
            for (int g = 0; g < G; ++g) acc[g] = 0.0f;
            row_partial<T, G>(pool + row * dim, q, dim, live, lane, vec, acc);
#pragma unroll
            for (int g = 0; g < G; ++g) {
#pragma unroll
                for (int off = 16; off > 0; off >>= 1) {
                    acc[g] += __shfl_xor_sync(0xffffffffu, acc[g], off);
                }
            }
            if (lane == 0) {
#pragma unroll
                for (int g = 0; g < G; ++g) {
                    if (g < live) over |= offer(b, g, acc[g], (uint32_t)row + row_offset);
                }
            }
        }
        round_end(b, gthr, q0, live, false, over);
    }
    round_end(b, gthr, q0, live, true, false);
    best_store(b, q0, live, lists, out_d, out_i);
}

#define SCAN_KERNEL(NAME, T, G)                                                                \
    extern "C" __global__ void NAME(const T* pool, uint32_t n, uint32_t dim,                  \
                                    uint32_t row_offset, const float* queries, uint32_t nq,   \
                                    const uint32_t* filter, uint32_t k, uint32_t kp,          \
                                    uint32_t* gthr, uint32_t lists, float* out_d,             \
                                    uint32_t* out_i) {                                        \
        l2_scan<T, G>(pool, n, dim, row_offset, queries, nq, filter, k, kp, gthr, lists,      \
                      out_d, out_i);                                                          \
    }

SCAN_KERNEL(l2_scan_f32_g1, float, 1)
SCAN_KERNEL(l2_scan_f32_g2, float, 2)
SCAN_KERNEL(l2_scan_f32_g4, float, 4)
SCAN_KERNEL(l2_scan_f32_g8, float, 8)
SCAN_KERNEL(l2_scan_f16_g1, __half, 1)
SCAN_KERNEL(l2_scan_f16_g2, __half, 2)
SCAN_KERNEL(l2_scan_f16_g4, __half, 4)
SCAN_KERNEL(l2_scan_f16_g8, __half, 8)
SCAN_KERNEL(l2_scan_bf16_g1, __nv_bfloat16, 1)
SCAN_KERNEL(l2_scan_bf16_g2, __nv_bfloat16, 2)
SCAN_KERNEL(l2_scan_bf16_g4, __nv_bfloat16, 4)
SCAN_KERNEL(l2_scan_bf16_g8, __nv_bfloat16, 8)

// dots: row-major nq x ld, dots[q * ld + c] = <pool row (first + c * stride), q> for c < cols
// (stride 1 but for the mma plan's strided sample of a segment).
// xnorm: squared norms of the segment's rows; qnorm: of the queries as the GEMM saw them.
// state: per (query, part) the best k so far, `lists` per query (fill_empty before the first
// tile), and the part's unfolded buffer (buf: 3kp pairs, buf_n: how many; zero at first), so a
// tile does not pay for a fold it does not need. The `last` tile folds and leaves the best k.
template <int G>
__device__ void l2_select(const float* __restrict__ dots, uint32_t cols, uint32_t ld,
                          uint32_t first, uint32_t stride, uint32_t row_offset,
                          const float* __restrict__ xnorm, const float* __restrict__ qnorm,
                          uint32_t nq,
                          const uint32_t* __restrict__ filter, uint32_t k, uint32_t kp,
                          uint32_t* gthr, uint32_t lists, float* state_d, uint32_t* state_i,
                          float* buf_d, uint32_t* buf_i, uint32_t* buf_n, uint32_t last) {
    Best b = best_layout(smem, G, k, kp);
    const uint32_t q0 = blockIdx.x * G;
    const int live = min((uint32_t)G, nq - q0);
    const uint32_t parts = gridDim.y;
    const uint32_t room = 3 * kp;
    best_clear(b);
    for (uint32_t t = threadIdx.x; t < (uint32_t)live * k; t += blockDim.x) {
        const uint32_t g = t / k;
        const uint32_t j = t % k;
        const size_t at = ((size_t)(q0 + g) * lists + blockIdx.y) * k + j;
        b.dist(g)[j] = state_d[at];
        b.ids(g)[j] = state_i[at];
    }
    for (int g = threadIdx.x; g < live; g += blockDim.x) {
        b.count[g] = buf_n[(size_t)(q0 + g) * lists + blockIdx.y];
    }
    __syncthreads();
    for (int g = 0; g < live; ++g) {
        const size_t base = ((size_t)(q0 + g) * lists + blockIdx.y) * room;
        for (uint32_t j = threadIdx.x; j < b.count[g]; j += blockDim.x) {
            b.dist(g)[kp + j] = buf_d[base + j];
            b.ids(g)[kp + j] = buf_i[base + j];
        }
    }
    __syncthreads();
    float qn[G];
#pragma unroll
    for (int g = 0; g < G; ++g) qn[g] = g < live ? qnorm[q0 + g] : 0.0f;
    uint32_t round = 0;
    for (size_t start = (size_t)blockIdx.y * ROUND; start < cols;
         start += (size_t)parts * ROUND, ++round) {
        round_begin(b, gthr, q0, live, round);
        bool over = false;
        for (uint32_t c = threadIdx.x; c < ROUND; c += blockDim.x) {
            const size_t col = start + c;
            if (col >= cols) continue;
            const uint32_t seg_row = first + (uint32_t)col * stride;
            const uint32_t row = seg_row + row_offset;
            if (!allowed(filter, row)) continue;
            const float xn = xnorm[seg_row];
#pragma unroll
            for (int g = 0; g < G; ++g) {
                if (g < live) {
                    const float dot = dots[(size_t)(q0 + g) * ld + col];
                    // + 0.0f turns a -0.0 from fmaxf into +0.0 (the keys order float bits).
                    over |= offer(b, g, fmaxf(qn[g] + xn - 2.0f * dot, 0.0f) + 0.0f, row);
                }
            }
        }
        round_end(b, gthr, q0, live, false, over);
    }
    if (last) round_end(b, gthr, q0, live, true, false);
    best_store(b, q0, live, lists, state_d, state_i);
    if (last) return;
    for (int g = 0; g < live; ++g) {
        const size_t base = ((size_t)(q0 + g) * lists + blockIdx.y) * room;
        for (uint32_t j = threadIdx.x; j < b.count[g]; j += blockDim.x) {
            buf_d[base + j] = b.dist(g)[kp + j];
            buf_i[base + j] = b.ids(g)[kp + j];
        }
    }
    for (int g = threadIdx.x; g < live; g += blockDim.x) {
        buf_n[(size_t)(q0 + g) * lists + blockIdx.y] = b.count[g];
    }
}

#define SELECT_KERNEL(NAME, G)                                                                 \
    extern "C" __global__ void NAME(const float* dots, uint32_t cols, uint32_t ld,            \
                                    uint32_t first, uint32_t stride, uint32_t row_offset,     \
                                    const float* xnorm, const float* qnorm, uint32_t nq,      \
                                    const uint32_t* filter,                                   \
                                    uint32_t k, uint32_t kp, uint32_t* gthr, uint32_t lists,  \
                                    float* state_d, uint32_t* state_i, float* buf_d,          \
                                    uint32_t* buf_i, uint32_t* buf_n, uint32_t last) {        \
        l2_select<G>(dots, cols, ld, first, stride, row_offset, xnorm, qnorm, nq, filter, k,  \
                     kp, gthr, lists, state_d, state_i, buf_d, buf_i, buf_n, last);           \
    }

SELECT_KERNEL(l2_select_g1, 1)
SELECT_KERNEL(l2_select_g2, 2)
SELECT_KERNEL(l2_select_g4, 4)
SELECT_KERNEL(l2_select_g8, 8)

extern "C" __global__ void fill_empty(float* d, uint32_t* id, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        d[i] = CUDART_INF_F;
        id[i] = NO_ROW;
    }
}

// Query blockIdx.y's candidates for the wide plan, `k + span` pairs at out + q * (k + span):
// slots below k copy the carried best k (carried_d null: the first tile, empties), slot k + c
// holds tile column c (as l2_select forms it; filtered rows empty), slots past the tile empty.
extern "C" __global__ void wide_tile(const float* __restrict__ dots, uint32_t cols, uint32_t span,
                                     uint32_t first, uint32_t row_offset,
                                     const float* __restrict__ xnorm,
                                     const float* __restrict__ qnorm,
                                     const uint32_t* __restrict__ filter, uint32_t k,
                                     const float* __restrict__ carried_d,
                                     const uint32_t* __restrict__ carried_i,
                                     float* __restrict__ out_d, uint32_t* __restrict__ out_i) {
    const size_t q = blockIdx.y;
    const size_t width = (size_t)k + span;
    const float qn = qnorm[q];
    for (size_t s = (size_t)blockIdx.x * blockDim.x + threadIdx.x; s < width;
         s += (size_t)gridDim.x * blockDim.x) {
        float d = CUDART_INF_F;
        uint32_t id = NO_ROW;
        if (s < k) {
            if (carried_d != nullptr) {
                d = carried_d[q * k + s];
                id = carried_i[q * k + s];
            }
        } else if (s - k < cols) {
            const size_t col = s - k;
            const uint32_t seg_row = first + (uint32_t)col;
            const uint32_t row = seg_row + row_offset;
            if (allowed(filter, row)) {
                d = fmaxf(qn + xnorm[seg_row] - 2.0f * dots[q * cols + col], 0.0f) + 0.0f;
                id = row;
            }
        }
        out_d[q * width + s] = d;
        out_i[q * width + s] = id;
    }
}

// Inclusive prefix sum of one value per thread over the block (blockDim.x <= 1024).
__device__ uint32_t block_scan(uint32_t v, uint32_t* warp_sums) {
    const uint32_t lane = threadIdx.x & 31;
    const uint32_t warp = threadIdx.x >> 5;
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
        const uint32_t up = __shfl_up_sync(0xffffffffu, v, off);
        if (lane >= (uint32_t)off) v += up;
    }
    if (lane == 31) warp_sums[warp] = v;
    __syncthreads();
    if (warp == 0) {
        const uint32_t warps = blockDim.x >> 5;
        uint32_t s = lane < warps ? warp_sums[lane] : 0;
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
            const uint32_t up = __shfl_up_sync(0xffffffffu, s, off);
            if (lane >= (uint32_t)off) s += up;
        }
        if (lane < warps) warp_sums[lane] = s;
    }
    __syncthreads();
    const uint32_t before = warp == 0 ? 0 : warp_sums[warp - 1];
    __syncthreads();
    return v + before;
}

__device__ __forceinline__ uint64_t pair_key(float d, uint32_t id) {
    return ((uint64_t)__float_as_uint(d) << 32) | id;
}

#define RADIX_BINS 2048

// A merge block's shared memory: the histogram, a sum per warp, four words (the k-th key's
// bin, the keys before it, the count gathered below it), then the kp selected pairs. `end` is
// one past the last byte (the launcher's merge_bytes).
struct MergeShared {
    uint32_t* hist;
    uint32_t* warp_sums;
    uint32_t* found;
    float* sel_d;
    uint32_t* sel_i;
    unsigned char* end;
};

__device__ MergeShared merge_layout(unsigned char* base, uint32_t kp) {
    MergeShared s;
    s.hist = reinterpret_cast<uint32_t*>(base);
    s.warp_sums = s.hist + RADIX_BINS;
    s.found = s.warp_sums + 32;
    s.sel_d = reinterpret_cast<float*>(s.found + 4);
    s.sel_i = reinterpret_cast<uint32_t*>(s.sel_d + kp);
    s.end = reinterpret_cast<unsigned char*>(s.sel_i + kp);
    return s;
}

// Block (g, q): the best k of the m pairs at in + q * in_stride + g * m, sorted, to
// out + q * out_stride + g * k. Thread t owns histogram bins 2t and 2t + 1: launch with
// RADIX_BINS / 2 threads and merge_layout's shared memory, kp a power of two >= k.
extern "C" __global__ void merge_k(const float* __restrict__ in_d,
                                   const uint32_t* __restrict__ in_i, uint64_t in_stride,
                                   uint32_t m, uint32_t k, uint32_t kp, uint64_t out_stride,
                                   float* __restrict__ out_d, uint32_t* __restrict__ out_i) {
    const MergeShared layout = merge_layout(smem, kp);
    uint32_t* hist = layout.hist;
    uint32_t* warp_sums = layout.warp_sums;
    uint32_t* found = layout.found;  // [bin, before, gathered]
    float* sel_d = layout.sel_d;
    uint32_t* sel_i = layout.sel_i;
    const size_t src = (size_t)blockIdx.y * in_stride + (size_t)blockIdx.x * m;
    const size_t dst = (size_t)blockIdx.y * out_stride + (size_t)blockIdx.x * k;
    const float* src_d = in_d + src;
    const uint32_t* src_i = in_i + src;

    // The k-th smallest key, 11 bits at a time from the top (64 = 5 * 11 + 9).
    uint64_t prefix = 0;
    uint64_t mask = 0;
    uint32_t need = k;
    int shift = 64;
    for (int pass = 0; pass < 6; ++pass) {
        const int width = pass < 5 ? 11 : 9;
        shift -= width;
        const uint32_t bins = 1u << width;
        for (uint32_t t = threadIdx.x; t < RADIX_BINS; t += blockDim.x) hist[t] = 0;
        __syncthreads();
        for (uint32_t i = threadIdx.x; i < m; i += blockDim.x) {
            const uint64_t key = pair_key(src_d[i], src_i[i]);
            if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & (bins - 1)], 1u);
        }
        __syncthreads();
        // Thread t owns bins 2t and 2t + 1.
        const uint32_t a = 2 * threadIdx.x < RADIX_BINS ? hist[2 * threadIdx.x] : 0;
        const uint32_t c = 2 * threadIdx.x + 1 < RADIX_BINS ? hist[2 * threadIdx.x + 1] : 0;
        const uint32_t upto = block_scan(a + c, warp_sums);
        const uint32_t below = upto - a - c;
        if (a + c > 0 && below < need && need <= upto) {
            if (need <= below + a) {
                found[0] = 2 * threadIdx.x;
                found[1] = below;
            } else {
                found[0] = 2 * threadIdx.x + 1;
                found[1] = below + a;
            }
        }
        __syncthreads();
        need -= found[1];
        prefix |= (uint64_t)found[0] << shift;
        mask |= (uint64_t)(bins - 1) << shift;
        __syncthreads();
    }
    // prefix is the k-th key; k - need keys lie strictly below it (distinct, since a row is
    // scanned by one block only), the rest of the k are copies of it.
    if (threadIdx.x == 0) found[2] = 0;
    for (uint32_t t = threadIdx.x; t < kp; t += blockDim.x) {
        sel_d[t] = CUDART_INF_F;
        sel_i[t] = NO_ROW;
    }
    __syncthreads();
    for (uint32_t i = threadIdx.x; i < m; i += blockDim.x) {
        const float d = src_d[i];
        const uint32_t id = src_i[i];
        if (pair_key(d, id) < prefix) {
            const uint32_t slot = atomicAdd(&found[2], 1u);
            sel_d[slot] = d;
            sel_i[slot] = id;
        }
    }
    __syncthreads();
    const uint32_t strict = found[2];
    for (uint32_t t = strict + threadIdx.x; t < k; t += blockDim.x) {
        sel_d[t] = __uint_as_float((uint32_t)(prefix >> 32));
        sel_i[t] = (uint32_t)prefix;
    }
    sort_lists(sel_d, sel_i, (int)kp, 1);
    for (uint32_t t = threadIdx.x; t < k; t += blockDim.x) {
        out_d[dst + t] = sel_d[t];
        out_i[dst + t] = sel_i[t];
    }
}

// Block q: exact distances of the listed rows (ids relative to row_offset + the segment).
template <typename T>
__device__ void l2_refine(const T* __restrict__ pool, uint32_t dim, uint32_t row_offset,
                          const float* __restrict__ queries, uint32_t k, float* dist,
                          const uint32_t* __restrict__ ids) {
    const uint32_t lane = threadIdx.x & 31;
    const uint32_t warp = threadIdx.x >> 5;
    const float* q = queries + (size_t)blockIdx.x * dim;
    for (uint32_t j = warp; j < k; j += blockDim.x >> 5) {
        const size_t at = (size_t)blockIdx.x * k + j;
        const uint32_t id = ids[at];
        if (id == NO_ROW) continue;
        const T* x = pool + (size_t)(id - row_offset) * dim;
        float acc = 0.0f;
        for (uint32_t c = lane; c < dim; c += 32) {
            const float e = to_f32(x[c]) - q[c];
            acc = fmaf(e, e, acc);
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
        if (lane == 0) dist[at] = acc;
    }
}

#define REFINE_KERNEL(NAME, T)                                                                 \
    extern "C" __global__ void NAME(const T* pool, uint32_t dim, uint32_t row_offset,         \
                                    const float* queries, uint32_t k, float* dist,            \
                                    const uint32_t* ids) {                                    \
        l2_refine<T>(pool, dim, row_offset, queries, k, dist, ids);                           \
    }

REFINE_KERNEL(l2_refine_f32, float)
REFINE_KERNEL(l2_refine_f16, __half)
REFINE_KERNEL(l2_refine_bf16, __nv_bfloat16)
