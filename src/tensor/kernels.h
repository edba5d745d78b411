// Internal interface of the tensor kernels: per-type reference and SIMD entry points.
#ifndef ANNEAL_TENSOR_KERNELS_H
#define ANNEAL_TENSOR_KERNELS_H

#include "anneal/tensor.h"

#include <math.h>
#include <string.h>

// Round to nearest, ties to even, for |v| < 2^22 (larger or NaN inputs give garbage, never
// undefined behaviour): adding 1.5 * 2^23 leaves the rounded integer in the low mantissa bits.
static inline int tensor_nearest_int(float v) {
    float t = v + 12582912.f;
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

// 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block.
static inline void tensor_scale_min_k4(int j, const uint8_t *s, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

// Reference quantizers (x -> k/block_size blocks) and dequantizers, ref/quant.c.
void tensor_quantize_q4_0_ref(const float *x, anneal_block_q4_0 *y, int64_t k);
void tensor_quantize_q4_1_ref(const float *x, anneal_block_q4_1 *y, int64_t k);
void tensor_quantize_q5_0_ref(const float *x, anneal_block_q5_0 *y, int64_t k);
void tensor_quantize_q8_0_ref(const float *x, anneal_block_q8_0 *y, int64_t k);
void tensor_quantize_q4_K_ref(const float *x, anneal_block_q4_K *y, int64_t k);
void tensor_quantize_q5_K_ref(const float *x, anneal_block_q5_K *y, int64_t k);
void tensor_quantize_q6_K_ref(const float *x, anneal_block_q6_K *y, int64_t k);
void tensor_quantize_q8_K_ref(const float *x, anneal_block_q8_K *y, int64_t k);

void tensor_dequantize_q4_0_ref(const anneal_block_q4_0 *x, float *y, int64_t k);
void tensor_dequantize_q4_1_ref(const anneal_block_q4_1 *x, float *y, int64_t k);
void tensor_dequantize_q5_0_ref(const anneal_block_q5_0 *x, float *y, int64_t k);
void tensor_dequantize_q8_0_ref(const anneal_block_q8_0 *x, float *y, int64_t k);
void tensor_dequantize_q4_K_ref(const anneal_block_q4_K *x, float *y, int64_t k);
void tensor_dequantize_q5_K_ref(const anneal_block_q5_K *x, float *y, int64_t k);
void tensor_dequantize_q6_K_ref(const anneal_block_q6_K *x, float *y, int64_t k);
void tensor_dequantize_q8_K_ref(const anneal_block_q8_K *x, float *y, int64_t k);

// Reference dots, ref/dot.c: accumulate in double, so they are the yardstick for SIMD.
void tensor_dot_f32_ref(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_f16_ref(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_bf16_ref(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_q4_0_ref(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_q4_1_ref(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_q5_0_ref(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_q8_0_ref(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_q4_K_ref(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_q5_K_ref(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_q6_K_ref(int64_t n, float *out, const void *w, const void *a);

// SIMD dots, x86/*.c; only called when anneal_cpu_get() reports the features.
void tensor_dot_f32_avx2(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_f16_avx2(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_bf16_avx2(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_q4_0_avx2(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_q4_1_avx2(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_q5_0_avx2(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_q8_0_avx2(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_q4_K_avx2(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_q5_K_avx2(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_q6_K_avx2(int64_t n, float *out, const void *w, const void *a);

void tensor_dot_f32_avx512(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_f16_avx512(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_bf16_avx512(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_q4_0_avx512(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_q8_0_avx512(int64_t n, float *out, const void *w, const void *a);
void tensor_dot_q4_K_avx512(int64_t n, float *out, const void *w, const void *a);

// SIMD activation quantizers, x86/quant_avx512.c: bit-identical to the reference ones.
void tensor_quantize_q8_0_avx512(const float *x, anneal_block_q8_0 *y, int64_t k);
void tensor_quantize_q8_K_avx512(const float *x, anneal_block_q8_K *y, int64_t k);

// The weight types the int8 GEMM and GEMV kernels handle (every quantized dot type).
static inline bool tensor_has_int8_matmul(uint32_t wtype) {
    switch (wtype) {
    case ANNEAL_TYPE_Q4_0:
    case ANNEAL_TYPE_Q4_1:
    case ANNEAL_TYPE_Q5_0:
    case ANNEAL_TYPE_Q8_0:
    case ANNEAL_TYPE_Q4_K:
    case ANNEAL_TYPE_Q5_K:
    case ANNEAL_TYPE_Q6_K:
        return true;
    default:
        return false;
    }
}

// Tiled GEMM, x86/gemm_avx512.c: Y rows [r0, r1) for all n_tok tokens (Y as in
// anneal_matmul). Returns false, having written nothing, for types it lacks or when its
// scratch cannot be allocated; the caller then uses the dots.
bool tensor_gemm_avx512(uint32_t wtype, const void *w, size_t wrow, int64_t n_in, int64_t n_out,
                        int64_t r0, int64_t r1, const void *a, size_t arow, int64_t n_tok,
                        float *y);
// Float weights (F32/F16/BF16) x F32 activations, any batch, x86/gemm_avx512.c.
bool tensor_matmul_float_avx512(uint32_t wtype, const void *w, size_t wrow, int64_t n_in,
                                int64_t n_out, int64_t r0, int64_t r1, const float *a,
                                int64_t n_tok, float *y);

// Matrix-vector kernels for small batches, x86/gemv_avx512.c; same contract as the GEMM.
bool tensor_gemv_avx512(uint32_t wtype, const void *w, size_t wrow, int64_t n_in, int64_t n_out,
                        int64_t r0, int64_t r1, const void *a, size_t arow, int64_t n_tok,
                        float *y);

#endif
