// IEEE binary16 and bfloat16 <-> f32 conversion in plain C (round to nearest even).
#include "anneal/tensor.h"

#include <string.h>

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float anneal_fp16_to_f32(anneal_fp16 h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) {
        // Subnormal (or zero): mant * 2^-24 is exact in f32.
        float v = (float)mant * 0x1p-24f;
        return bits_f32(f32_bits(v) | sign);
    }
    if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

anneal_fp16 anneal_f32_to_fp16(float f) {
    uint32_t x = f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) {
        // Inf stays Inf; NaN keeps its top payload bits and is made quiet so it stays NaN.
        if (x > 0x7f800000u) return (anneal_fp16)(sign | 0x7e00 | ((x >> 13) & 0x3ff));
        return (anneal_fp16)(sign | 0x7c00);
    }
    // 65520 = halfway between 65504 (largest f16) and 65536: from there on it rounds to Inf.
    if (x >= 0x477ff000u) return (anneal_fp16)(sign | 0x7c00);
    if (x < 0x38800000u) {
        // Below 2^-14: an f16 subnormal, q = value / 2^-24 rounded to nearest even.
        uint32_t e = x >> 23;
        uint32_t shift = 126 - e;
        if (shift > 24) return (anneal_fp16)sign;
        uint32_t m = (x & 0x7fffffu) | 0x800000u; // e > 0 here: f32 subnormals returned above
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (anneal_fp16)(sign | q);
    }
    uint32_t h = ((x >> 23) - 112) << 10 | ((x >> 13) & 0x3ff);
    uint32_t rem = x & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++; // a carry into the exponent is right
    return (anneal_fp16)(sign | h);
}

float anneal_bf16_to_f32(anneal_bf16 h) {
    return bits_f32((uint32_t)h << 16);
}

anneal_bf16 anneal_f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (anneal_bf16)((x >> 16) | 0x40);
    x += 0x7fffu + ((x >> 16) & 1);
    return (anneal_bf16)(x >> 16);
}
