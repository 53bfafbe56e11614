// A CPU stand-in for the parts of CUDA that dcd's kernels (kernels/*.cu) use, so that their
// index arithmetic, synchronisation and selection run (and are checked) on machines without a
// GPU: tests/kernel_emulation.rs compiles the checks in this folder with this file
// force-included and the headers in include/ in place of the CUDA toolkit's.
//
// A block runs as blockDim.x fibers (ucontext) on one OS thread, sharing one shared-memory
// array; a fiber runs until it waits at a barrier: __syncthreads() over the block, or, for a
// warp shuffle, over its warp (a store to the warp's exchange slots, the barrier, a load, the
// barrier again; dcd's kernels only shuffle with whole warps). A round in which every live
// fiber waits and none can go on is a barrier that never fills (a __syncthreads() some
// threads skip, say) and stops the program, where a GPU would hang or misbehave. The fiber
// that fills a barrier runs on first, through the code after it, before the others wake: as a
// warp that drifts ahead of its block's other warps on a GPU, so that a read after a barrier
// which races with writes after the same barrier gives wrong results here too.
// __syncthreads_or is the block barrier with its OR of the threads' predicates. A warp-wide
// WMMA operation is done whole by every lane of the warp (each lane holds the full 16 x 16
// fragment), which gives the collective's result; only lane 0 writes a stored fragment.
// Pointer and stride requirements of the real WMMA calls are asserted, so a misaligned tile
// fails here as it would fault on the device.
#pragma once

// Kernels keep their few lines of PTX out of the emulated build with this.
#define DCD_EMULATOR 1

#include <ucontext.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
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
inline dim3 thread_idx;
inline dim3 block_idx;
inline dim3 block_dim;
inline dim3 grid_dim;

// A barrier among a block's fibers (the whole block's, or one warp's).
struct Barrier {
    unsigned expected = 0;
    unsigned arrived = 0;
    uint64_t generation = 0;
};

struct Fiber {
    ucontext_t context;
    unsigned index = 0;
    bool done = false;
    const Barrier* waiting = nullptr;  // the barrier it waits at, and that barrier's
    uint64_t generation = 0;           // generation when it arrived
};

inline size_t shared_size = 0;
inline ucontext_t scheduler;
inline Fiber* current = nullptr;
inline const std::function<void()>* body = nullptr;
inline Barrier block_barrier;
// __syncthreads_or's OR of the predicates, by the block barrier's generation: a fiber reads
// generation g's after waking while the one that completed g may already be at g + 1, and
// g - 1's has been read by every fiber before g can complete.
inline std::array<int, 2> block_or;
inline std::vector<Barrier> warp_barriers;
// One warp's shuffle exchange slots per warp.
inline std::vector<std::array<uint64_t, 32>> warp_slots;

// Arrives at b; unless the fiber is the last to, it sleeps until b's generation moves on.
// True for the last, which goes on at once, before any fiber it woke.
inline bool wait(Barrier& b) {
    if (++b.arrived == b.expected) {
        b.arrived = 0;
        ++b.generation;
        return true;
    }
    current->waiting = &b;
    current->generation = b.generation;
    swapcontext(&current->context, &scheduler);
    return false;
}

inline void fiber_main() {
    (*body)();
    current->done = true;
}

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

// Completing the block barrier clears the OR of the generation it opens (the completing
// fiber runs on before any other), so a plain barrier keeps the slots in step too.
inline void __syncthreads() {
    if (emu::wait(emu::block_barrier)) emu::block_or[emu::block_barrier.generation & 1] = 0;
}

inline int __syncthreads_or(int predicate) {
    const uint64_t g = emu::block_barrier.generation;
    emu::block_or[g & 1] |= predicate != 0;
    if (emu::wait(emu::block_barrier)) emu::block_or[(g + 1) & 1] = 0;
    return emu::block_or[g & 1];
}

// A kernel's own check of its launch (PTX's %dynamic_smem_size), and its way out.
inline uint32_t dynamic_shared_bytes() { return (uint32_t)emu::shared_size; }
[[noreturn]] inline void __trap() { emu::fail("the kernel trapped", __FILE__, __LINE__); }

struct uint4 {
    uint32_t x, y, z, w;
};
inline uint4 make_uint4(uint32_t x, uint32_t y, uint32_t z, uint32_t w) { return {x, y, z, w}; }

inline uint32_t atomicAdd(uint32_t* p, uint32_t v) {
    return std::atomic_ref<uint32_t>(*p).fetch_add(v);
}

inline uint32_t atomicMin(uint32_t* p, uint32_t v) {
    std::atomic_ref<uint32_t> a(*p);
    uint32_t old = a.load();
    while (v < old && !a.compare_exchange_weak(old, v)) {
    }
    return old;
}

struct float2 {
    float x, y;
};
struct float4 {
    float x, y, z, w;
};

inline uint32_t __float_as_uint(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline float __uint_as_float(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

template <typename T>
inline T __ldg(const T* p) {
    return *p;
}

namespace emu {
inline float to_float(float v) { return v; }
}  // namespace emu

namespace emu {
// Lane `source(lane)`'s value of v, for every lane of the warp at once.
template <typename T, typename Source>
T shuffle(T v, Source source) {
    static_assert(sizeof(T) <= sizeof(uint64_t));
    const unsigned warp = thread_idx.x / 32;
    const unsigned lane = thread_idx.x % 32;
    auto& slots = warp_slots[warp];
    std::memcpy(&slots[lane], &v, sizeof(T));
    wait(warp_barriers[warp]);
    T r;
    std::memcpy(&r, &slots[source(lane) % 32], sizeof(T));
    wait(warp_barriers[warp]);
    return r;
}
}  // namespace emu

template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    EMU_REQUIRE(mask == 0xffffffffu);
    return emu::shuffle(v, [=](unsigned lane) { return lane ^ (unsigned)lane_mask; });
}

template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta) {
    EMU_REQUIRE(mask == 0xffffffffu);
    return emu::shuffle(v, [=](unsigned lane) { return lane >= delta ? lane - delta : lane; });
}

using std::max;
using std::min;

namespace emu {
constexpr size_t STACK_BYTES = 64 << 10;

// The order fibers run in between barriers, from DCD_EMU_SCHEDULE. `threads` (the default):
// every fiber in turn up to its next barrier, so the warps of a block move almost together.
// `warps`: one warp at a time, in an order drawn afresh at every pass, runs until each of its
// fibers waits at a block barrier, as if the others had not been scheduled at all: the most
// a warp can drift ahead of the rest of its block, which brings out races that `threads`
// leaves hidden behind a warp's shuffles.
enum class Schedule { Threads, Warps };

inline Schedule schedule() {
    const char* v = std::getenv("DCD_EMU_SCHEDULE");
    if (v == nullptr || std::strcmp(v, "threads") == 0) return Schedule::Threads;
    if (std::strcmp(v, "warps") == 0) return Schedule::Warps;
    std::fprintf(stderr, "DCD_EMU_SCHEDULE=%s: use threads or warps\n", v);
    std::exit(2);
}

// The warp order's seed: DCD_EMU_SEED, else a fixed one, so that a failure repeats.
inline std::mt19937 warp_rng([] {
    const char* v = std::getenv("DCD_EMU_SEED");
    return v == nullptr ? 2027u : (unsigned)std::strtoul(v, nullptr, 10);
}());

// Runs kernel(args...) over grid x block threads, one block at a time; `shared` is the
// block's shared memory, filled with 0xff bytes (NaN as halves and floats) before each block
// so that a read of anything the block did not write shows up in the results.
template <typename Kernel, typename... Args>
void launch(dim3 grid, dim3 block, unsigned char* shared, size_t shared_bytes, Kernel kernel,
            Args... args) {
    EMU_REQUIRE(block.x % 32 == 0 && block.y == 1 && block.z == 1);
    static std::vector<std::unique_ptr<char[]>> stacks;
    while (stacks.size() < block.x) stacks.emplace_back(new char[STACK_BYTES]);
    grid_dim = grid;
    block_dim = block;
    shared_size = shared_bytes;
    const Schedule order = schedule();
    const std::function<void()> run = [&] { kernel(args...); };
    body = &run;
    for (unsigned by = 0; by < grid.y; ++by) {
        for (unsigned bx = 0; bx < grid.x; ++bx) {
            if (shared != nullptr) std::memset(shared, 0xff, shared_bytes);
            block_idx = dim3{bx, by, 1};
            block_barrier = Barrier{block.x};
            block_or = {0, 0};
            warp_barriers.assign(block.x / 32, Barrier{32});
            warp_slots.assign(block.x / 32, {});
            std::vector<Fiber> fibers(block.x);
            for (unsigned t = 0; t < block.x; ++t) {
                Fiber& f = fibers[t];
                f.index = t;
                getcontext(&f.context);
                f.context.uc_stack.ss_sp = stacks[t].get();
                f.context.uc_stack.ss_size = STACK_BYTES;
                f.context.uc_link = &scheduler;
                makecontext(&f.context, fiber_main, 0);
            }
            bool live = false;
            // Runs f up to its next barrier if it may go on; false if done or still waiting.
            auto step = [&](Fiber& f) {
                if (f.done) return false;
                live = true;
                if (f.waiting != nullptr && f.waiting->generation == f.generation) return false;
                f.waiting = nullptr;
                thread_idx = dim3{f.index, 0, 0};
                current = &f;
                swapcontext(&scheduler, &f.context);
                return true;
            };
            std::vector<unsigned> warps(block.x / 32);
            std::iota(warps.begin(), warps.end(), 0u);
            for (;;) {
                live = false;
                bool moved = false;
                if (order == Schedule::Warps) {
                    std::shuffle(warps.begin(), warps.end(), warp_rng);
                    for (unsigned w : warps) {
                        for (bool again = true; again;) {
                            again = false;
                            for (unsigned lane = 0; lane < 32; ++lane) {
                                again |= step(fibers[w * 32 + lane]);
                            }
                            moved |= again;
                        }
                    }
                } else {
                    for (Fiber& f : fibers) moved |= step(f);
                }
                if (!live) break;
                if (!moved) {
                    fail("every thread waits at a barrier that never fills", __FILE__, __LINE__);
                }
            }
        }
    }
    body = nullptr;
    current = nullptr;
}
}  // namespace emu
