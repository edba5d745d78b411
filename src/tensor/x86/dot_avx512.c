// AVX-512 (F, BW, VL) + VNNI dot kernels: 512-bit loads, vpdpbusd for the byte dots.
// Per-function target attributes: the build never assumes these features.
#include "tensor/kernels.h"

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

AVX512 static inline float h2f(anneal_fp16 h) {
    return _cvtsh_ss(h);
}

AVX512 static inline int hsum_epi32_256(__m256i v) {
    __m128i r = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0x4e));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0xb1));
    return _mm_cvtsi128_si32(r);
}

// Two halves of a 512-bit vector: `lo` in lanes 0..7, `hi` in lanes 8..15.
AVX512 static inline __m512 two_scales(float lo, float hi) {
    return _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(lo), _mm512_set1_ps(hi));
}

AVX512 static inline __m512i join256(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

AVX512 void tensor_dot_f32_avx512(int64_t n, float *out, const void *w, const void *a) {
    const float *x = w, *y = a;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), s0);
    }
    *out = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

AVX512 void tensor_dot_f16_avx512(int64_t n, float *out, const void *w, const void *a) {
    const anneal_fp16 *x = w;
    const float *y = a;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 x0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i)));
        __m512 x1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i + 16)));
        s0 = _mm512_fmadd_ps(x0, _mm512_loadu_ps(y + i), s0);
        s1 = _mm512_fmadd_ps(x1, _mm512_loadu_ps(y + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 x0 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i));
        s0 = _mm512_fmadd_ps(x0, _mm512_maskz_loadu_ps(m, y + i), s0);
    }
    *out = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

// BF16 is the top half of an F32: widen 16 lanes to 32 bits and shift them up.
AVX512 void tensor_dot_bf16_avx512(int64_t n, float *out, const void *w, const void *a) {
    const anneal_bf16 *x = w;
    const float *y = a;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512i w0 = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(x + i)));
        __m512i w1 = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(x + i + 16)));
        s0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(w0, 16)), _mm512_loadu_ps(y + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(w1, 16)), _mm512_loadu_ps(y + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512i w0 = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, x + i));
        s0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(w0, 16)), _mm512_maskz_loadu_ps(m, y + i), s0);
    }
    *out = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

// Q8_0: two blocks per 512-bit step. vpdpbusd wants unsigned x signed: |x| and y*sign(x).
AVX512 void tensor_dot_q8_0_avx512(int64_t n, float *out, const void *w, const void *a) {
    const anneal_block_q8_0 *x = w, *y = a;
    const int64_t nb = n / ANNEAL_QK;
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        __m512i qx = join256(_mm256_loadu_si256((const __m256i *)x[i].qs),
                             _mm256_loadu_si256((const __m256i *)x[i + 1].qs));
        __m512i qy = join256(_mm256_loadu_si256((const __m256i *)y[i].qs),
                             _mm256_loadu_si256((const __m256i *)y[i + 1].qs));
        __m512i sy = _mm512_mask_sub_epi8(qy, _mm512_movepi8_mask(qx), zero, qy);
        __m512i dp = _mm512_dpbusd_epi32(zero, _mm512_abs_epi8(qx), sy);
        __m512 d = two_scales(h2f(x[i].d) * h2f(y[i].d), h2f(x[i + 1].d) * h2f(y[i + 1].d));
        acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(dp), acc);
    }
    float s = _mm512_reduce_add_ps(acc);
    if (i < nb) {
        __m256i qx = _mm256_loadu_si256((const __m256i *)x[i].qs);
        __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
        __m256i dp = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(qx),
                                         _mm256_sign_epi8(qy, qx));
        s += h2f(x[i].d) * h2f(y[i].d) * (float)hsum_epi32_256(dp);
    }
    *out = s;
}

// 16 packed nibbles -> 32 bytes 0..15: low nibbles first (elements 0..15), then high.
AVX512 static inline __m256i nibbles32(const uint8_t *qs) {
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(15));
}

// Q4_0: codes 0..15 times the activation bytes, minus 8 * (sum of the activation bytes);
// both sums via vpdpbusd, so no sign trick and no restriction on the activation codes.
AVX512 void tensor_dot_q4_0_avx512(int64_t n, float *out, const void *w, const void *a) {
    const anneal_block_q4_0 *x = w;
    const anneal_block_q8_0 *y = a;
    const int64_t nb = n / ANNEAL_QK;
    const __m512i zero = _mm512_setzero_si512(), ones = _mm512_set1_epi8(1);
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        __m512i qx = join256(nibbles32(x[i].qs), nibbles32(x[i + 1].qs));
        __m512i qy = join256(_mm256_loadu_si256((const __m256i *)y[i].qs),
                             _mm256_loadu_si256((const __m256i *)y[i + 1].qs));
        __m512i dp = _mm512_dpbusd_epi32(zero, qx, qy);
        __m512i sy = _mm512_dpbusd_epi32(zero, ones, qy);
        dp = _mm512_sub_epi32(dp, _mm512_slli_epi32(sy, 3));
        __m512 d = two_scales(h2f(x[i].d) * h2f(y[i].d), h2f(x[i + 1].d) * h2f(y[i + 1].d));
        acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(dp), acc);
    }
    float s = _mm512_reduce_add_ps(acc);
    if (i < nb) {
        __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
        __m256i dp = _mm256_dpbusd_epi32(_mm256_setzero_si256(), nibbles32(x[i].qs), qy);
        __m256i sy = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), qy);
        dp = _mm256_sub_epi32(dp, _mm256_slli_epi32(sy, 3));
        s += h2f(x[i].d) * h2f(y[i].d) * (float)hsum_epi32_256(dp);
    }
    *out = s;
}

// Q4_K: 64 elements (two sub-blocks) per vpdpbusd; lanes 0..7 belong to the even
// sub-block, 8..15 to the odd one, so one blended scale vector covers both.
AVX512 void tensor_dot_q4_K_avx512(int64_t n, float *out, const void *w, const void *a) {
    const anneal_block_q4_K *x = w;
    const anneal_block_q8_K *y = a;
    const __m256i m4 = _mm256_set1_epi8(15);
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc = _mm512_setzero_ps();
    float accm = 0;
    for (int64_t i = 0; i < n / ANNEAL_QK_K; i++) {
        uint8_t sc[8], m[8];
        int summ = 0;
        for (int j = 0; j < 8; j++) {
            tensor_scale_min_k4(j, x[i].scales, &sc[j], &m[j]);
            summ += m[j] * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        __m512i sumi = zero;
        for (int c = 0; c < 4; c++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * c));
            __m512i qx =
                join256(_mm256_and_si256(q, m4), _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
            __m512i dp = _mm512_dpbusd_epi32(zero, qx, _mm512_loadu_si512(y[i].qs + 64 * c));
            __m512i s = _mm512_mask_blend_epi32(0xff00, _mm512_set1_epi32(sc[2 * c]),
                                                _mm512_set1_epi32(sc[2 * c + 1]));
            sumi = _mm512_add_epi32(sumi, _mm512_mullo_epi32(dp, s));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(h2f(x[i].d) * y[i].d), _mm512_cvtepi32_ps(sumi), acc);
        accm += h2f(x[i].dmin) * y[i].d * (float)summ;
    }
    *out = _mm512_reduce_add_ps(acc) - accm;
}
