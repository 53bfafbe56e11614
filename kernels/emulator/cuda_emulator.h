// A CPU stand-in for the parts of CUDA that kernels/l2_mma.cu uses, so that its index
// arithmetic, synchronisation and selection run (and are checked) on machines without a GPU:
// tests/kernel_emulation.rs compiles l2_mma_check.cpp with this file force-included and the
// headers in include/ in place of the CUDA toolkit's.
//
// A block runs as blockDim.x OS threads sharing one shared-memory array, __syncthreads() is a
// barrier over them, and a warp-wide WMMA operation is done whole by every lane of the warp
// (each lane holds the full 16 x 16 fragment), which gives the collective's result; only lane
// 0 writes a stored fragment. Pointer and stride requirements of the real WMMA calls are
// asserted, so a misaligned tile fails here as it would fault on the device.
#pragma once

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#define __device__
#define __global__
#define __host__
#define __forceinline__ inline
#define __shared__
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

namespace emu {
inline thread_local dim3 thread_idx;
inline thread_local dim3 block_idx;
inline dim3 block_dim;
inline dim3 grid_dim;
inline std::barrier<>* block_barrier = nullptr;

[[noreturn]] inline void fail(const char* what, const char* file, int line) {
    std::fprintf(stderr, "%s:%d: %s\n", file, line, what);
    std::abort();
}
}  // namespace emu

#define EMU_REQUIRE(cond) \
    do {                  \
        if (!(cond)) emu::fail("requirement failed: " #cond, __FILE__, __LINE__); \
    } while (0)

#define threadIdx (emu::thread_idx)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)

inline void __syncthreads() { emu::block_barrier->arrive_and_wait(); }

struct uint4 {
    uint32_t x, y, z, w;
};
inline uint4 make_uint4(uint32_t x, uint32_t y, uint32_t z, uint32_t w) { return {x, y, z, w}; }

inline uint32_t atomicAdd(uint32_t* p, uint32_t v) {
    return std::atomic_ref<uint32_t>(*p).fetch_add(v);
}

using std::max;
using std::min;

namespace emu {
// Runs kernel(args...) over grid x block threads, one block at a time; `shared` is the
// block's shared memory, filled with 0xff bytes (NaN as halves and floats) before each block
// so that a read of anything the block did not write shows up in the results.
template <typename Kernel, typename... Args>
void launch(dim3 grid, dim3 block, unsigned char* shared, size_t shared_bytes, Kernel kernel,
            Args... args) {
    grid_dim = grid;
    block_dim = block;
    for (unsigned by = 0; by < grid.y; ++by) {
        for (unsigned bx = 0; bx < grid.x; ++bx) {
            if (shared != nullptr) std::memset(shared, 0xff, shared_bytes);
            std::barrier<> barrier(block.x);
            block_barrier = &barrier;
            std::vector<std::thread> threads;
            for (unsigned t = 0; t < block.x; ++t) {
                threads.emplace_back([=] {
                    block_idx = dim3{bx, by, 1};
                    thread_idx = dim3{t, 0, 0};
                    kernel(args...);
                });
            }
            for (auto& th : threads) th.join();
            block_barrier = nullptr;
        }
    }
}
}  // namespace emu
