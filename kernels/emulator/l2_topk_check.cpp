// Runs kernels/l2_topk.cu on the CPU emulator (cuda_emulator.h) the way src/gpu/ launches it,
// and checks the results against the host's exact top-k. Built and run by
// tests/kernel_emulation.rs; exits non-zero with the first failures.
//
// - fused plan: l2_scan_<type>_g<G> over parts of the pool, then merge_k of the parts' lists;
// - gemm plan and the mma plan's sample: l2_select_g<G> over tiles of host-computed cross terms
//   of every stride-th row, its lists and buffers carried from tile to tile, then merge_k;
// - wide plan: wide_tile (the carried best k and a tile's pairs) folded by merge_k, tile by tile;
// - merge_k alone on lists full of ties, several groups per query; l2_refine_<type>.

#include "../l2_topk.cu"

#include "check.h"

alignas(128) unsigned char smem[256 << 10];

namespace {

using check::Data;
using check::Device;
using check::Elem;
using check::expect;

constexpr uint32_t THREADS = 256;
constexpr uint32_t MERGE_THREADS = 1024;
constexpr uint32_t INF_BITS = 0x7f800000u;

uint32_t pow2_at_least(uint32_t v) {
    uint32_t p = 1;
    while (p < v) p <<= 1;
    return p;
}

// Pairs a running list holds (src/gpu/topk_shape.rs list_pairs), and the shared memory of a
// scan/select block and of a merge block as the kernels' own layouts lay it out; main prints
// them all for tests/kernel_emulation.rs to hold against topk_shape.rs.
uint32_t list_pairs(uint32_t k) { return std::max(pow2_at_least(k), 128u); }
size_t best_bytes(uint32_t groups, uint32_t kp) {
    return (size_t)(best_layout(smem, (int)groups, kp, kp).end() - smem);
}
size_t merge_bytes(uint32_t kp) { return (size_t)(merge_layout(smem, kp).end - smem); }

void print_shapes() {
    std::printf("shape round=%u bins=%u\n", ROUND, RADIX_BINS);
    for (uint32_t k : {1u, 100u, 128u, 129u, 1000u, 4096u}) {
        std::printf("shape list_pairs k=%u kp=%u\n", k, list_pairs(k));
    }
    for (uint32_t g : {1u, 2u, 4u, 8u}) {
        for (uint32_t kp : {128u, 1024u, 4096u}) {
            std::printf("shape best groups=%u kp=%u bytes=%zu\n", g, kp, best_bytes(g, kp));
        }
    }
    for (uint32_t kp : {128u, 1024u, 16384u}) {
        std::printf("shape merge kp=%u bytes=%zu\n", kp, merge_bytes(kp));
    }
}

// The best k of m pairs per query (query q's at in + q * stride), as kernels.rs merge_step.
void merge(const float* in_d, const uint32_t* in_i, uint64_t stride, uint32_t m, uint32_t nq,
           uint32_t k, uint32_t groups, float* out_d, uint32_t* out_i) {
    const uint32_t kp = pow2_at_least(k);
    emu::launch(dim3{groups, nq, 1}, dim3{MERGE_THREADS, 1, 1}, smem, merge_bytes(kp), merge_k,
                in_d, in_i, stride, m, k, kp, (uint64_t)groups * k, out_d, out_i);
}

using ScanKernel = void (*)(const void*, uint32_t, uint32_t, uint32_t, const float*, uint32_t,
                            const uint32_t*, uint32_t, uint32_t, uint32_t*, uint32_t, float*,
                            uint32_t*);

template <typename T, typename F>
ScanKernel erase(F f) {
    return reinterpret_cast<ScanKernel>(f);
}

ScanKernel scan_kernel(Elem e, uint32_t g) {
    const int gi = g == 1 ? 0 : g == 2 ? 1 : g == 4 ? 2 : 3;
    const ScanKernel f32[] = {erase<float>(l2_scan_f32_g1), erase<float>(l2_scan_f32_g2),
                              erase<float>(l2_scan_f32_g4), erase<float>(l2_scan_f32_g8)};
    const ScanKernel f16[] = {erase<__half>(l2_scan_f16_g1), erase<__half>(l2_scan_f16_g2),
                              erase<__half>(l2_scan_f16_g4), erase<__half>(l2_scan_f16_g8)};
    const ScanKernel bf16[] = {
        erase<__nv_bfloat16>(l2_scan_bf16_g1), erase<__nv_bfloat16>(l2_scan_bf16_g2),
        erase<__nv_bfloat16>(l2_scan_bf16_g4), erase<__nv_bfloat16>(l2_scan_bf16_g8)};
    return e == Elem::F32 ? f32[gi] : e == Elem::F16 ? f16[gi] : bf16[gi];
}

// The pool in its element type (f32 values or 16-bit patterns), as one untyped pointer.
struct Pool {
    Device<float> f32{0};
    Device<uint16_t> half{0};
    const void* data;
    explicit Pool(const Data& d) : data(nullptr) {
        if (d.elem == Elem::F32) {
            f32 = d.pool_f32();
            data = f32.data;
        } else {
            half = d.bits(d.pool);
            data = half.data;
        }
    }
};

void fused(Elem e, uint32_t dim, uint32_t g, uint32_t k, uint32_t parts, bool filtered,
           std::mt19937& rng) {
    const Data d(e, 700, dim, 5, 1000, filtered, rng);
    const Pool pool(d);
    const uint32_t kp = list_pairs(k);
    const uint32_t groups = (d.nq + g - 1) / g;
    std::vector<uint32_t> gthr(d.nq, INF_BITS);
    std::vector<float> out_d((size_t)d.nq * parts * k);
    std::vector<uint32_t> out_i(out_d.size());
    emu::launch(dim3{groups, parts, 1}, dim3{THREADS, 1, 1}, smem, best_bytes(g, kp),
                scan_kernel(e, g), pool.data, d.n, dim, d.row_offset, d.queries.data(), d.nq,
                d.filter_or_null(), k, kp, gthr.data(), parts, out_d.data(), out_i.data());
    std::vector<float> best_d((size_t)d.nq * k);
    std::vector<uint32_t> best_i(best_d.size());
    merge(out_d.data(), out_i.data(), (uint64_t)parts * k, parts * k, d.nq, k, 1, best_d.data(),
          best_i.data());
    const std::string what = std::string("fused ") + check::name(e) + " d=" +
                             std::to_string(dim) + " G=" + std::to_string(g) +
                             " k=" + std::to_string(k) + (filtered ? " filtered" : "");
    for (uint32_t q = 0; q < d.nq; ++q) {
        check::agree(d, q, &best_d[(size_t)q * k], &best_i[(size_t)q * k], k, d.top_k(q, k),
                     1e-5, what);
    }
    std::printf("%s\n", what.c_str());
}

using SelectKernel = decltype(&l2_select_g1);

// The gemm plan's select over tiles of `cols` host cross terms of every stride-th row (count
// rows from row 0), then the merge: what src/gpu/search.rs gemm_best does with cuBLAS.
void select(SelectKernel kernel, uint32_t g, uint32_t k, uint32_t stride, uint32_t count,
            uint32_t cols, bool filtered, std::mt19937& rng) {
    const Data d(Elem::F16, 900, 64, 6, 77, filtered, rng);
    const uint32_t kp = list_pairs(k);
    const uint32_t groups = (d.nq + g - 1) / g;
    const uint32_t parts = 2;
    std::vector<float> best_d((size_t)d.nq * parts * k, CUDART_INF_F);
    std::vector<uint32_t> best_i(best_d.size(), NO_ROW);
    std::vector<float> buf_d((size_t)d.nq * parts * 3 * kp, -5.0f);
    std::vector<uint32_t> buf_i(buf_d.size(), 0xdddddddd);
    std::vector<uint32_t> buf_n((size_t)d.nq * parts, 0);
    std::vector<uint32_t> gthr(d.nq, INF_BITS);
    for (uint32_t start = 0; start < count; start += cols) {
        const uint32_t width = std::min(cols, count - start);
        const uint32_t first = start * stride;
        std::vector<float> dots((size_t)d.nq * width);
        for (uint32_t q = 0; q < d.nq; ++q) {
            for (uint32_t c = 0; c < width; ++c) {
                dots[(size_t)q * width + c] = (float)d.dot(d.query(q), d.row(first + c * stride));
            }
        }
        const uint32_t last = start + width == count;
        emu::launch(dim3{groups, parts, 1}, dim3{THREADS, 1, 1}, smem, best_bytes(g, kp), kernel,
                    (const float*)dots.data(), width, width, first, stride, d.row_offset,
                    (const float*)d.xnorm.data(), (const float*)d.qnorm.data(), d.nq,
                    d.filter_or_null(), k, kp, gthr.data(), parts, best_d.data(),
                    best_i.data(), buf_d.data(), buf_i.data(), buf_n.data(), last);
    }
    std::vector<float> out_d((size_t)d.nq * k);
    std::vector<uint32_t> out_i(out_d.size());
    merge(best_d.data(), best_i.data(), (uint64_t)parts * k, parts * k, d.nq, k, 1,
          out_d.data(), out_i.data());
    const std::string what = "select G=" + std::to_string(g) + " k=" + std::to_string(k) +
                             " stride=" + std::to_string(stride) + " tiles of " +
                             std::to_string(cols) + (filtered ? " filtered" : "");
    for (uint32_t q = 0; q < d.nq; ++q) {
        check::agree(d, q, &out_d[(size_t)q * k], &out_i[(size_t)q * k], k,
                     d.top_k(q, k, 0, stride, count), 1e-4, what);
    }
    std::printf("%s\n", what.c_str());
}

// A round that leaves a buffer exactly full (count == 3kp - ROUND, no fold) and a next round
// whose last column is a candidate. The emulator resumes the last thread to reach a barrier
// first, so that thread takes its next round's candidate before the others decide whether to
// fold; a GPU's warps drift apart the same way. The fold decision must not see the next
// round's counts: every thread has to take the same branch at the same round.
void select_full_buffer() {
    const uint32_t k = 100, kp = list_pairs(k), cols = 3 * ROUND;
    // Distance = qnorm + xnorm - 2 dot with both norms 0: dot = -distance / 2, exactly.
    std::vector<float> dist(cols, 5000.0f);
    for (uint32_t c = 0; c < ROUND; ++c) dist[c] = 1000.0f + (float)c;  // all taken, folded
    // Round 1: exactly 3kp - ROUND below the threshold the fold left (1000 + k - 1).
    for (uint32_t c = 0; c < 3 * kp - ROUND; ++c) dist[ROUND + c] = 10.0f + (float)c;
    dist[cols - 1] = 1.0f;  // round 2's last column
    std::vector<float> dots(cols), xnorm(cols, 0.0f), qnorm(1, 0.0f);
    for (uint32_t c = 0; c < cols; ++c) dots[c] = -dist[c] / 2.0f;
    std::vector<float> best_d(k, CUDART_INF_F), buf_d(3 * kp, -5.0f);
    std::vector<uint32_t> best_i(k, NO_ROW), buf_i(3 * kp, 0xdddddddd), buf_n(1, 0);
    std::vector<uint32_t> gthr(1, INF_BITS);
    emu::launch(dim3{1, 1, 1}, dim3{THREADS, 1, 1}, smem, best_bytes(1, kp), l2_select_g1,
                (const float*)dots.data(), cols, cols, 0u, 1u, 0u, (const float*)xnorm.data(),
                (const float*)qnorm.data(), 1u, (const uint32_t*)nullptr, k, kp, gthr.data(), 1u,
                best_d.data(), best_i.data(), buf_d.data(), buf_i.data(), buf_n.data(), 1u);
    std::vector<std::pair<float, uint32_t>> want;
    for (uint32_t c = 0; c < cols; ++c) want.push_back({dist[c], c});
    std::sort(want.begin(), want.end());
    for (uint32_t j = 0; j < k; ++j) {
        expect(best_d[j] == want[j].first && best_i[j] == want[j].second,
               "select, buffer full at a round's end: rank " + std::to_string(j) + " got (" +
                   std::to_string(best_d[j]) + ", " + std::to_string(best_i[j]) + "), want (" +
                   std::to_string(want[j].first) + ", " + std::to_string(want[j].second) + ")");
    }
    std::printf("select, buffer full at a round's end\n");
}

// The wide plan: per tile, wide_tile lays out the carried best k and the tile's pairs, and
// the merge folds them back to k (one step: fewer than 128 lists of k).
void wide(uint32_t k, uint32_t cols, bool filtered, std::mt19937& rng) {
    const Data d(Elem::BF16, 1000, 40, 3, 5, filtered, rng);
    const uint32_t lists = 1 + (cols + k - 1) / k;
    const uint32_t per_query = lists * k;
    const uint32_t span = per_query - k;
    std::vector<float> best_d, pairs_d((size_t)d.nq * per_query);
    std::vector<uint32_t> best_i, pairs_i(pairs_d.size());
    for (uint32_t first = 0; first < d.n; first += cols) {
        const uint32_t width = std::min(cols, d.n - first);
        std::vector<float> dots((size_t)d.nq * width);
        for (uint32_t q = 0; q < d.nq; ++q) {
            for (uint32_t c = 0; c < width; ++c) {
                dots[(size_t)q * width + c] = (float)d.dot(d.query(q), d.row(first + c));
            }
        }
        const uint32_t blocks = std::clamp((per_query + THREADS - 1) / THREADS, 1u, 1024u);
        emu::launch(dim3{blocks, d.nq, 1}, dim3{THREADS, 1, 1}, nullptr, 0, wide_tile,
                    (const float*)dots.data(), width, span, first, d.row_offset,
                    (const float*)d.xnorm.data(), (const float*)d.qnorm.data(),
                    d.filter_or_null(), k, best_d.empty() ? nullptr : (const float*)best_d.data(),
                    best_i.empty() ? nullptr : (const uint32_t*)best_i.data(), pairs_d.data(),
                    pairs_i.data());
        best_d.assign((size_t)d.nq * k, 0.0f);
        best_i.assign(best_d.size(), 0);
        merge(pairs_d.data(), pairs_i.data(), per_query, per_query, d.nq, k, 1, best_d.data(),
              best_i.data());
    }
    const std::string what = "wide k=" + std::to_string(k) + " tiles of " +
                             std::to_string(cols) + (filtered ? " filtered" : "");
    for (uint32_t q = 0; q < d.nq; ++q) {
        check::agree(d, q, &best_d[(size_t)q * k], &best_i[(size_t)q * k], k, d.top_k(q, k),
                     1e-4, what);
    }
    std::printf("%s\n", what.c_str());
}

// merge_k alone: pairs drawn from 9 distances (ties everywhere), unique rows, `groups` lists
// of m per query, each folded to its best k by (distance, row).
void merge_ties(uint32_t m, uint32_t k, uint32_t groups, std::mt19937& rng) {
    const uint32_t nq = 3;
    std::uniform_int_distribution<int> level(0, 8);
    std::vector<float> in_d((size_t)nq * groups * m);
    std::vector<uint32_t> in_i(in_d.size());
    std::vector<uint32_t> rows(in_d.size());
    std::iota(rows.begin(), rows.end(), 0u);
    std::shuffle(rows.begin(), rows.end(), rng);
    for (size_t i = 0; i < in_d.size(); ++i) {
        in_d[i] = i % 97 == 5 ? CUDART_INF_F : 0.25f * (float)level(rng);
        in_i[i] = i % 97 == 5 ? NO_ROW : rows[i];
    }
    std::vector<float> out_d((size_t)nq * groups * k);
    std::vector<uint32_t> out_i(out_d.size());
    merge(in_d.data(), in_i.data(), (uint64_t)groups * m, m, nq, k, groups, out_d.data(),
          out_i.data());
    for (uint32_t q = 0; q < nq; ++q) {
        for (uint32_t g = 0; g < groups; ++g) {
            std::vector<std::pair<float, uint32_t>> want;
            for (uint32_t j = 0; j < m; ++j) {
                const size_t at = ((size_t)q * groups + g) * m + j;
                want.push_back({in_d[at], in_i[at]});
            }
            std::sort(want.begin(), want.end());
            for (uint32_t j = 0; j < k; ++j) {
                const size_t at = ((size_t)q * groups + g) * k + j;
                expect(out_d[at] == want[j].first && out_i[at] == want[j].second,
                       "merge_k m=" + std::to_string(m) + " k=" + std::to_string(k) + " query " +
                           std::to_string(q) + " group " + std::to_string(g) + " rank " +
                           std::to_string(j));
            }
        }
    }
    std::printf("merge_k m=%u k=%u groups=%u, ties\n", m, k, groups);
}

void refine(Elem e, uint32_t dim, std::mt19937& rng) {
    const Data d(e, 300, dim, 4, 50, false, rng);
    const Pool pool(d);
    const uint32_t k = 20;
    std::vector<float> dist((size_t)d.nq * k, -1.0f);
    std::vector<uint32_t> ids(dist.size());
    for (uint32_t q = 0; q < d.nq; ++q) {
        for (uint32_t j = 0; j < k; ++j) {
            ids[q * k + j] = j % 7 == 3 ? NO_ROW : d.row_offset + (q * 31 + j * 13) % d.n;
        }
    }
    using Refine = void (*)(const void*, uint32_t, uint32_t, const float*, uint32_t, float*,
                            const uint32_t*);
    const Refine kernel = e == Elem::F32   ? reinterpret_cast<Refine>(l2_refine_f32)
                          : e == Elem::F16 ? reinterpret_cast<Refine>(l2_refine_f16)
                                           : reinterpret_cast<Refine>(l2_refine_bf16);
    emu::launch(dim3{d.nq, 1, 1}, dim3{THREADS, 1, 1}, nullptr, 0, kernel, pool.data, dim,
                d.row_offset, d.queries.data(), k, dist.data(), (const uint32_t*)ids.data());
    for (uint32_t q = 0; q < d.nq; ++q) {
        for (uint32_t j = 0; j < k; ++j) {
            const uint32_t id = ids[q * k + j];
            const float got = dist[q * k + j];
            if (id == NO_ROW) {
                expect(got == -1.0f, "refine wrote an empty slot");
                continue;
            }
            const double want = d.exact[q][id - d.row_offset];
            expect(std::fabs(got - want) <= 1e-5 * want, std::string("refine ") + check::name(e) +
                                                            ": " + std::to_string(got) + " vs " +
                                                            std::to_string(want));
        }
    }
    std::printf("refine %s d=%u\n", check::name(e), dim);
}

}  // namespace

int main() {
    std::mt19937 rng(2027);
    print_shapes();

    for (Elem e : {Elem::F32, Elem::F16, Elem::BF16}) {
        // A dimension without 16-byte loads, and one with them.
        fused(e, 37, 1, 10, 3, false, rng);
        fused(e, 64, 8, 100, 2, true, rng);
        refine(e, 37, rng);
    }
    fused(Elem::F16, 64, 2, 1, 1, false, rng);
    fused(Elem::F32, 16, 4, 130, 3, true, rng);
    select(l2_select_g1, 1, 10, 1, 900, 256, false, rng);
    select(l2_select_g2, 2, 100, 7, 128, 50, true, rng);
    select(l2_select_g1, 1, 3, 3, 300, 1000, false, rng);
    select_full_buffer();
    wide(150, 400, false, rng);
    wide(40, 333, true, rng);
    merge_ties(1000, 37, 3, rng);
    merge_ties(300, 300, 1, rng);
    return check::finish("l2_topk");
}
