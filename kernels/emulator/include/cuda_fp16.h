// Emulator stand-in (see ../cuda_emulator.h): IEEE half as its 16 bits, read as float.
#pragma once
#include <cstdint>
#include <cstring>

struct __half {
    uint16_t bits;
};
struct __half2 {
    __half x, y;
};

namespace emu {
inline float to_float(__half h) {
    const uint32_t sign = (uint32_t)(h.bits >> 15) << 31;
    const uint32_t exp = (h.bits >> 10) & 0x1f;
    const uint32_t man = h.bits & 0x3ff;
    float f;
    if (exp == 0x1f) {
        const uint32_t bits = sign | 0x7f800000u | (man << 13);
        std::memcpy(&f, &bits, 4);
    } else if (exp == 0) {
        f = std::ldexp((float)man, -24);
        if (sign) f = -f;
    } else {
        const uint32_t bits = sign | ((exp + 112) << 23) | (man << 13);
        std::memcpy(&f, &bits, 4);
    }
    return f;
}
}  // namespace emu

inline float __half2float(__half h) { return emu::to_float(h); }
inline float2 __half22float2(__half2 h) { return {emu::to_float(h.x), emu::to_float(h.y)}; }
