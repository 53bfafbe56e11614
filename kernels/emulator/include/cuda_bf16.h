// Emulator stand-in (see ../cuda_emulator.h): bfloat16 as its 16 bits, read as float.
#pragma once
#include <cstdint>
#include <cstring>

struct __nv_bfloat16 {
    uint16_t bits;
};
struct __nv_bfloat162 {
    __nv_bfloat16 x, y;
};

namespace emu {
inline float to_float(__nv_bfloat16 h) {
    const uint32_t bits = (uint32_t)h.bits << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}
}  // namespace emu

inline float __bfloat162float(__nv_bfloat16 h) { return emu::to_float(h); }
inline float2 __bfloat1622float2(__nv_bfloat162 h) {
    return {emu::to_float(h.x), emu::to_float(h.y)};
}
