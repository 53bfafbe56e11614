// Runs kernels/l2_mma.cu's l2_mma_f16, l2_mma_bf16, l2_mma_f32 and fill_tail on the CPU emulator
// (cuda_emulator.h) and checks them against distances computed here in double precision.
// Built and run by tests/kernel_emulation.rs; exits non-zero with the first failure.
//
// For each case: random pool rows and queries whose values f16/bf16 hold exactly, a bound per
// query (the k-th exact distance over the allowed rows, or +inf), and candidate lists with
// guard words past every buffer. The kernel must list each allowed row at or below the bound
// (and, where the list has room, only rows within the slack above it), with its distance, at
// its global row id, once; count every row it took; write nothing past the room, past the
// queries or for rows the filter excludes; and fill_tail must pad exactly the unused slots.

#include "../l2_mma.cu"

#include <limits>
#include <set>

#include "check.h"

alignas(128) unsigned char smem[std::max(Layout<__half>::SHARED, Layout<float>::SHARED)];

namespace {

using check::Data;
using check::Elem;
using check::expect;

constexpr uint32_t GUARD_ID = 0xeeeeeeeeu;
constexpr size_t GUARD = 64;

struct Case {
    const char* name;
    Elem elem;
    uint32_t n, dim, nq, k;
    uint32_t row_offset;
    bool filter;
    bool unbounded;  // every bound +inf: every allowed row is a candidate
    uint32_t cap;
    uint32_t parts;
};

void run(const Case& c, std::mt19937& rng) {
    const std::string tag = c.name;
    const Data data(c.elem, c.n, c.dim, c.nq, c.row_offset, c.filter, rng);
    const auto& exact = data.exact;
    const auto& qnorm = data.qnorm;
    const auto& xnorm = data.xnorm;
    const uint32_t global_rows = c.row_offset + c.n;
    auto allowed = [&](uint32_t local) { return data.allowed(local); };
    // Bounds at stride 3 (as the caller passes pair k - 1 of lists of k).
    const uint32_t stride = 3;
    std::vector<float> bound((size_t)c.nq * stride, -7.0f);
    for (uint32_t q = 0; q < c.nq; ++q) {
        std::vector<double> d;
        for (uint32_t r = 0; r < c.n; ++r) {
            if (allowed(r)) d.push_back(exact[q][r]);
        }
        std::sort(d.begin(), d.end());
        float b = std::numeric_limits<float>::infinity();
        if (!c.unbounded && d.size() >= c.k) {
            // The k-th as a float no smaller than it, so the k rows stay at or below it.
            b = (float)d[c.k - 1];
            if ((double)b < d[c.k - 1]) b = std::nextafter(b, CUDART_INF_F);
        }
        bound[(size_t)q * stride] = b;
    }

    std::vector<uint32_t> count(c.nq + GUARD, GUARD_ID);
    std::fill(count.begin(), count.begin() + c.nq, 0u);
    const size_t slots = (size_t)c.nq * c.cap;
    std::vector<float> cand_d(slots + GUARD, -3.0f);
    std::vector<uint32_t> cand_i(slots + GUARD, GUARD_ID);

    const dim3 grid{(c.nq + BQ - 1) / BQ, c.parts, 1};
    const dim3 block{THREADS, 1, 1};
    const uint32_t* filter = data.filter_or_null();
    auto launch = [&](auto kernel, const auto* pool, const auto* queries, size_t shared) {
        emu::launch(grid, block, smem, shared, kernel, pool, c.n, c.dim, c.row_offset, queries,
                    c.nq, (const float*)qnorm.data(), (const float*)xnorm.data(), filter,
                    (const float*)bound.data(), stride, c.cap, count.data(), cand_d.data(),
                    cand_i.data());
    };
    if (c.elem == Elem::F32) {
        const auto pool = data.pool_f32();
        check::Device<float> queries(data.queries.size());
        std::copy(data.queries.begin(), data.queries.end(), queries.data);
        launch(l2_mma_f32, (const float*)pool.data, (const float*)queries.data,
               Layout<float>::SHARED);
    } else {
        const auto pool = data.bits(data.pool);
        const auto queries = data.bits(data.queries);
        auto kernel = c.elem == Elem::BF16 ? l2_mma_bf16 : l2_mma_f16;
        launch(kernel, (const uint16_t*)pool.data, (const uint16_t*)queries.data,
               Layout<__half>::SHARED);
    }

    for (size_t i = c.nq; i < count.size(); ++i) {
        expect(count[i] == GUARD_ID, tag + ": count past the queries written");
    }
    for (size_t i = slots; i < cand_i.size(); ++i) {
        expect(cand_i[i] == GUARD_ID && cand_d[i] == -3.0f, tag + ": write past the lists");
    }
    uint32_t most = 0;
    for (uint32_t q = 0; q < c.nq; ++q) {
        const std::string qt = tag + " query " + std::to_string(q);
        const float b = bound[(size_t)q * stride];
        const double slack = 1e-4 * (2.0 * b + 3.0 * qnorm[q]);
        const uint32_t stored = std::min(count[q], c.cap);
        most = std::max(most, count[q]);
        std::set<uint32_t> rows;
        for (uint32_t s = 0; s < c.cap; ++s) {
            const size_t at = (size_t)q * c.cap + s;
            if (s >= stored) {
                expect(cand_i[at] == GUARD_ID, qt + ": slot past the count written");
                continue;
            }
            const uint32_t id = cand_i[at];
            const bool in_range = id >= c.row_offset && id < global_rows;
            expect(in_range, qt + ": row id out of range " + std::to_string(id));
            if (!in_range) continue;
            const uint32_t r = id - c.row_offset;
            expect(rows.insert(r).second, qt + ": row listed twice " + std::to_string(r));
            expect(allowed(r), qt + ": a row the filter excludes");
            const double want = exact[q][r];
            const double tol = 2e-6 * ((double)qnorm[q] + xnorm[r]) + 1e-6;
            const std::string row = " row " + std::to_string(r);
            expect(std::fabs(cand_d[at] - want) <= tol,
                  qt + row + ": distance " + std::to_string(cand_d[at]) + " vs " +
                      std::to_string(want));
            expect(want <= (double)b + 2 * slack, qt + row + ": above the bound");
        }
        // Rows at or below the bound (all of them when the list had room), and the count.
        uint32_t at_or_below = 0, within_slack = 0;
        for (uint32_t r = 0; r < c.n; ++r) {
            if (!allowed(r)) continue;
            if (exact[q][r] <= b) {
                ++at_or_below;
                if (count[q] <= c.cap) {
                    expect(rows.count(r) == 1, qt + ": missing row " + std::to_string(r));
                }
            }
            if (exact[q][r] <= (double)b + 2 * slack) ++within_slack;
        }
        expect(count[q] >= at_or_below && count[q] <= within_slack,
              qt + ": count " + std::to_string(count[q]) + " outside [" +
                  std::to_string(at_or_below) + ", " + std::to_string(within_slack) + "]");
        if (!c.unbounded) {
            expect(at_or_below >= std::min(c.k, c.n), qt + ": fewer than k rows at the bound");
        }
    }

    // fill_tail pads [min(count, cap), m) with (+inf, NO_ROW) and leaves the rest.
    const uint32_t m = std::min(std::max(most, c.k), c.cap);
    std::vector<float> before_d(cand_d);
    std::vector<uint32_t> before_i(cand_i);
    emu::launch(dim3{c.nq, 1, 1}, dim3{THREADS, 1, 1}, nullptr, 0, fill_tail,
                (const uint32_t*)count.data(), c.cap, m, cand_d.data(), cand_i.data());
    for (uint32_t q = 0; q < c.nq; ++q) {
        const uint32_t from = std::min(count[q], c.cap);
        for (uint32_t s = 0; s < c.cap; ++s) {
            const size_t at = (size_t)q * c.cap + s;
            if (s >= from && s < m) {
                const bool empty = std::isinf(cand_d[at]) && cand_d[at] > 0 && cand_i[at] == NO_ROW;
                expect(empty, tag + ": fill_tail left a slot");
            } else {
                expect(cand_i[at] == before_i[at] && cand_d[at] == before_d[at],
                      tag + ": fill_tail wrote outside its range");
            }
        }
    }
    std::printf("%-40s n=%u d=%u nq=%u k=%u: most %u candidates, cap %u\n", c.name, c.n, c.dim,
                c.nq, c.k, most, c.cap);
}

}  // namespace

int main() {
    std::mt19937 rng(2026);
    constexpr Elem F16 = Elem::F16, BF16 = Elem::BF16, F32 = Elem::F32;
    const Case cases[] = {
        // name, type, n, dim, nq, k, row_offset, filter, unbounded, cap, parts
        {"f16: full chunks, 2 query tiles", F16, 1000, 64, 130, 10, 5000, false, false, 999, 3},
        {"bf16: a partial chunk, filter", BF16, 700, 40, 7, 10, 64, true, false, 700, 2},
        {"f16: rows without 16-byte alignment", F16, 300, 37, 3, 5, 0, false, false, 300, 1},
        {"f16: rows 8-byte aligned only", F16, 300, 36, 3, 5, 7, false, false, 300, 2},
        {"bf16: 12 chunks, partial row tile", BF16, 260, 384, 20, 16, 12345, false, false, 260, 4},
        {"f16: unbounded, lists overflow", F16, 1000, 16, 5, 10, 0, false, true, 100, 3},
        {"bf16: one query in the second tile", BF16, 500, 64, 129, 1, 0, true, false, 500, 5},
        {"f32 (3xTF32): 2 query tiles, filter", F32, 600, 64, 130, 10, 9, true, false, 600, 3},
        {"f32: a partial chunk, odd rows", F32, 333, 37, 5, 7, 0, false, false, 333, 2},
        {"f32: rows 8-byte aligned only", F32, 200, 42, 3, 4, 3, false, false, 200, 1},
        {"f32: 12 chunks, lists overflow", F32, 150, 384, 4, 3, 0, false, true, 50, 2},
    };
    for (const Case& c : cases) run(c, rng);
    // The shapes src/gpu/mma_shape.rs mirrors (tests/kernel_emulation.rs compares them).
    std::printf("shape f16 rows=%d shared=%d\n", Layout<__half>::BN, Layout<__half>::SHARED);
    std::printf("shape bf16 rows=%d shared=%d\n", Layout<__nv_bfloat16>::BN,
                Layout<__nv_bfloat16>::SHARED);
    std::printf("shape f32 rows=%d shared=%d\n", Layout<float>::BN, Layout<float>::SHARED);
    std::printf("shape queries=%d\n", BQ);
    return check::finish("l2_mma");
}
