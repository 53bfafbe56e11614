// Exact k-NN under squared l2, fused with top-k selection: the Q x N distance matrix never
// reaches global memory. Two kernels, instantiated for f32, f16 and bf16 pools (distances are
// accumulated in f32):
//
//   l2_topk_chunk_*: block (chunk c, query q). One warp per pool row at a time computes
//     sum((x - q)^2) with the lanes striding over the dimensions, into shared memory; the
//     block then bitonic-sorts its ROWS (distance, row) pairs and writes the best k of its
//     chunk: partial[q][c][0..k].
//   merge_topk: block q. Folds the chunks' lists into one best-k list, ROWS pairs at a time:
//     the running best k plus ROWS - k new candidates are sorted together, the first k kept.
//
// Rows past the pool end, and rows the caller's filter excludes, carry +inf and id 0xffffffff
// (the host drops them). Ties are broken by row id, as on the CPU path.

#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <math_constants.h>
#include <stdint.h>

#define NO_ROW 0xffffffffu

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

__device__ __forceinline__ bool before(float da, uint32_t ia, float db, uint32_t ib) {
    return da < db || (da == db && ia < ib);
}

// Ascending bitonic sort of n (a power of two) pairs in shared memory by the whole block.
__device__ void bitonic_sort(float* dist, uint32_t* ids, int n) {
    for (int size = 2; size <= n; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            __syncthreads();
            for (int i = threadIdx.x; i < n; i += blockDim.x) {
                int j = i ^ stride;
                if (j > i) {
                    bool ascending = (i & size) == 0;
                    bool swap = ascending ? before(dist[j], ids[j], dist[i], ids[i])
                                          : before(dist[i], ids[i], dist[j], ids[j]);
                    if (swap) {
                        float td = dist[i]; dist[i] = dist[j]; dist[j] = td;
                        uint32_t ti = ids[i]; ids[i] = ids[j]; ids[j] = ti;
                    }
                }
            }
        }
    }
    __syncthreads();
}

// filter: a bitmap over the pool (1 = allowed) or null.
template <typename T>
__device__ void l2_topk_chunk(const T* __restrict__ pool, uint32_t n, uint32_t dim,
                              uint32_t row_offset, const float* __restrict__ queries,
                              const uint32_t* __restrict__ filter, uint32_t rows, uint32_t k,
                              float* __restrict__ out_dist, uint32_t* __restrict__ out_ids) {
    extern __shared__ unsigned char chunk_smem[];
    float* dist = reinterpret_cast<float*>(chunk_smem);
    uint32_t* ids = reinterpret_cast<uint32_t*>(dist + rows);
    const uint32_t chunk = blockIdx.x;
    const uint32_t q = blockIdx.y;
    const float* query = queries + (size_t)q * dim;
    const uint32_t lane = threadIdx.x & 31;
    const uint32_t warp = threadIdx.x >> 5;
    const uint32_t warps = blockDim.x >> 5;
    const uint32_t first = chunk * rows;
    for (uint32_t r = warp; r < rows; r += warps) {
        uint32_t row = first + r;
        float acc = 0.0f;
        bool live = row < n;
        if (live && filter != nullptr) {
            uint32_t global = row + row_offset;
            live = (filter[global >> 5] >> (global & 31)) & 1u;
        }
        if (live) {
            const T* x = pool + (size_t)row * dim;
            for (uint32_t c = lane; c < dim; c += 32) {
                float d = to_f32(x[c]) - __ldg(query + c);
                acc = fmaf(d, d, acc);
            }
        }
        for (int off = 16; off > 0; off >>= 1) {
            acc += __shfl_xor_sync(0xffffffffu, acc, off);
        }
        if (lane == 0) {
            dist[r] = live ? acc : CUDART_INF_F;
            ids[r] = live ? row + row_offset : NO_ROW;
        }
    }
    bitonic_sort(dist, ids, (int)rows);
    size_t base = ((size_t)q * gridDim.x + chunk) * k;
    for (uint32_t i = threadIdx.x; i < k; i += blockDim.x) {
        out_dist[base + i] = dist[i];
        out_ids[base + i] = ids[i];
    }
}

#define CHUNK_KERNEL(NAME, T)                                                                  \
    extern "C" __global__ void NAME(const T* pool, uint32_t n, uint32_t dim,                  \
                                    uint32_t row_offset, const float* queries,                \
                                    const uint32_t* filter, uint32_t rows, uint32_t k,        \
                                    float* out_dist, uint32_t* out_ids) {                     \
        l2_topk_chunk<T>(pool, n, dim, row_offset, queries, filter, rows, k, out_dist,        \
                         out_ids);                                                            \
    }

CHUNK_KERNEL(l2_topk_chunk_f32, float)
CHUNK_KERNEL(l2_topk_chunk_f16, __half)
CHUNK_KERNEL(l2_topk_chunk_bf16, __nv_bfloat16)

// in: per query, `lists` lists of k pairs; out: per query, the best k.
extern "C" __global__ void merge_topk(const float* __restrict__ in_dist,
                                      const uint32_t* __restrict__ in_ids, uint32_t lists,
                                      uint32_t k, uint32_t rows, float* __restrict__ out_dist,
                                      uint32_t* __restrict__ out_ids) {
    extern __shared__ unsigned char smem[];
    float* dist = reinterpret_cast<float*>(smem);
    uint32_t* ids = reinterpret_cast<uint32_t*>(dist + rows);
    const uint32_t q = blockIdx.x;
    const size_t total = (size_t)lists * k;
    const float* src_d = in_dist + (size_t)q * total;
    const uint32_t* src_i = in_ids + (size_t)q * total;
    for (uint32_t i = threadIdx.x; i < k; i += blockDim.x) {
        dist[i] = CUDART_INF_F;
        ids[i] = NO_ROW;
    }
    const uint32_t step = rows - k;
    for (size_t start = 0; start < total; start += step) {
        for (uint32_t i = threadIdx.x; i < step; i += blockDim.x) {
            size_t at = start + i;
            dist[k + i] = at < total ? src_d[at] : CUDART_INF_F;
            ids[k + i] = at < total ? src_i[at] : NO_ROW;
        }
        bitonic_sort(dist, ids, (int)rows);
    }
    for (uint32_t i = threadIdx.x; i < k; i += blockDim.x) {
        out_dist[(size_t)q * k + i] = dist[i];
        out_ids[(size_t)q * k + i] = ids[i];
    }
}
