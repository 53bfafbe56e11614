// Emulator stand-in (see ../cuda_emulator.h): bfloat16 as its 16 bits, read as float.
#pragma once
#include <cstdint>
#include <cstring>

struct __nv_bfloat16 {
    uint16_t bits;
};

namespace emu {
inline float to_float(__nv_bfloat16 h) {
    const uint32_t bits = (uint32_t)h.bits << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}
}  // namespace emu
