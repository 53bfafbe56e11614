// What the emulated kernel checks share: failure reporting, pools and queries whose values the
// element type holds exactly (so the host's double-precision distances are the reference the
// kernels' f32 sums must match), device-like buffers, and the reference top-k.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace check {

inline int failures = 0;

inline void expect(bool ok, const std::string& what) {
    if (!ok && failures++ < 20) std::fprintf(stderr, "FAIL: %s\n", what.c_str());
}

inline int finish(const char* what) {
    if (failures > 0) {
        std::fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    std::printf("all %s emulator checks passed\n", what);
    return 0;
}

enum class Elem { F32, F16, BF16 };

inline const char* name(Elem e) {
    return e == Elem::F32 ? "f32" : e == Elem::F16 ? "f16" : "bf16";
}

// Bits of a value f16 holds exactly as a normal number (the generator only makes such values).
inline uint16_t f16_bits(float v) {
    if (v == 0.0f) return 0;
    const uint16_t sign = v < 0 ? 0x8000 : 0;
    int e;
    const float m = std::frexp(std::fabs(v), &e);  // |v| = m * 2^e, m in [0.5, 1)
    const int exp = e - 1 + 15;
    if (exp <= 0 || exp >= 31) {
        std::fprintf(stderr, "value %g is not a normal half\n", v);
        std::exit(2);
    }
    return sign | (uint16_t)(exp << 10) | (uint16_t)std::lround((m * 2.0f - 1.0f) * 1024.0f);
}

inline uint16_t bf16_bits(float v) {
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    return (uint16_t)(bits >> 16);
}

// A buffer whose data starts 256-byte aligned, as cudaMalloc's do.
template <typename T>
struct Device {
    std::vector<T> store;
    T* data = nullptr;
    explicit Device(size_t n, T fill = T{}) : store(n + 256 / sizeof(T) + 1, fill) {
        auto u = reinterpret_cast<uintptr_t>(store.data());
        data = reinterpret_cast<T*>((u + 255) / 256 * 256);
    }
};

// Pool rows and queries of values m / 1024 (f16) or m / 128 (bf16), 0 < |m| <= 1024 or 128,
// or any float in [-1, 1] (f32): held exactly by the element type, so the kernels read exactly
// the host's values (and f32 ones use all 24 bits, as 3xTF32 must).
struct Data {
    Elem elem;
    uint32_t n, dim, nq, row_offset;
    bool filtered;
    std::vector<float> pool, queries;
    std::vector<float> xnorm, qnorm;
    std::vector<uint32_t> filter;  // over global rows (row_offset + local)
    std::vector<std::vector<double>> exact;

    Data(Elem e, uint32_t n_, uint32_t dim_, uint32_t nq_, uint32_t offset, bool filtered_,
         std::mt19937& rng)
        : elem(e), n(n_), dim(dim_), nq(nq_), row_offset(offset), filtered(filtered_) {
        std::uniform_int_distribution<int> mag(1, e == Elem::BF16 ? 128 : 1024);
        std::bernoulli_distribution negative(0.5);
        const float scale = e == Elem::BF16 ? 1.0f / 128 : 1.0f / 1024;
        std::uniform_real_distribution<float> real(-1.0f, 1.0f);
        auto value = [&] {
            if (e == Elem::F32) return real(rng);
            return (negative(rng) ? -1.0f : 1.0f) * (float)mag(rng) * scale;
        };
        pool.resize((size_t)n * dim);
        queries.resize((size_t)nq * dim);
        for (float& v : pool) v = value();
        for (float& v : queries) v = value();
        xnorm.resize(n);
        qnorm.resize(nq);
        for (uint32_t r = 0; r < n; ++r) xnorm[r] = (float)dot(row(r), row(r));
        for (uint32_t q = 0; q < nq; ++q) qnorm[q] = (float)dot(query(q), query(q));
        filter.assign((row_offset + n + 31) / 32, 0);
        for (uint32_t r = 0; r < n; ++r) {
            if (allowed(r)) filter[(r + row_offset) / 32] |= 1u << ((r + row_offset) % 32);
        }
        exact.assign(nq, std::vector<double>(n));
        for (uint32_t q = 0; q < nq; ++q) {
            for (uint32_t r = 0; r < n; ++r) {
                double s = 0;
                for (uint32_t j = 0; j < dim; ++j) {
                    const double d = (double)query(q)[j] - pool[(size_t)r * dim + j];
                    s += d * d;
                }
                exact[q][r] = s;
            }
        }
    }

    double dot(const float* a, const float* b) const {
        double s = 0;
        for (uint32_t j = 0; j < dim; ++j) s += (double)a[j] * b[j];
        return s;
    }
    const float* query(uint32_t q) const { return &queries[(size_t)q * dim]; }
    const float* row(uint32_t r) const { return &pool[(size_t)r * dim]; }
    bool allowed(uint32_t local) const { return !filtered || (local + row_offset) % 3 == 1; }
    const uint32_t* filter_or_null() const { return filtered ? filter.data() : nullptr; }

    // The pool as the device stores it: f32 values, or 16-bit patterns.
    Device<float> pool_f32() const {
        Device<float> d(pool.size());
        std::copy(pool.begin(), pool.end(), d.data);
        return d;
    }
    Device<uint16_t> bits(const std::vector<float>& values) const {
        Device<uint16_t> d(values.size());
        for (size_t i = 0; i < values.size(); ++i) {
            d.data[i] = elem == Elem::BF16 ? bf16_bits(values[i]) : f16_bits(values[i]);
        }
        return d;
    }

    // The reference: the best k allowed rows among local rows first, first + stride, ... (count
    // of them) by exact distance, ties by row, as (distance, global row) pairs.
    std::vector<std::pair<double, uint32_t>> top_k(uint32_t q, uint32_t k, uint32_t first = 0,
                                                   uint32_t stride = 1,
                                                   uint32_t count = UINT32_MAX) const {
        std::vector<std::pair<double, uint32_t>> all;
        for (uint32_t i = 0, r = first; i < count && r < n; ++i, r += stride) {
            if (allowed(r)) all.push_back({exact[q][r], r + row_offset});
        }
        std::sort(all.begin(), all.end());
        if (all.size() > k) all.resize(k);
        return all;
    }
};

// Query q's list from a kernel (k pairs, best first; empties are (+inf, NO_ROW)) against the
// reference: same distances rank by rank within `rel`, and ids equal or swapped only between
// rows whose exact distances are that close.
inline void agree(const Data& d, uint32_t q, const float* dist, const uint32_t* ids, uint32_t k,
                  const std::vector<std::pair<double, uint32_t>>& want, double rel,
                  const std::string& what) {
    const std::string qt = what + " query " + std::to_string(q);
    for (uint32_t i = 0; i < k; ++i) {
        const std::string at = qt + " rank " + std::to_string(i);
        if (i >= want.size()) {
            expect(ids[i] == 0xffffffffu && std::isinf(dist[i]), at + ": expected an empty slot");
            continue;
        }
        const double w = want[i].first;
        const double tol = rel * std::max(w, 1e-6);
        expect(std::fabs(dist[i] - w) <= tol,
               at + ": distance " + std::to_string(dist[i]) + " vs " + std::to_string(w));
        if (ids[i] != want[i].second) {
            const bool ok = ids[i] >= d.row_offset && ids[i] < d.row_offset + d.n &&
                            std::fabs(d.exact[q][ids[i] - d.row_offset] - w) <= tol;
            expect(ok, at + ": row " + std::to_string(ids[i]) + " vs " +
                           std::to_string(want[i].second));
        }
    }
}

}  // namespace check
