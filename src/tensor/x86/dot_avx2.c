// AVX2 + FMA + F16C dot kernels. Compiled with per-function target attributes, so the
// build never assumes the features; dispatch calls these only on CPUs that have them.
#include "tensor/kernels.h"

#include "tensor/x86/unpack_avx2.h"

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float hsum_ps(__m256 v) {
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

AVX2 static inline float h2f(anneal_fp16 h) {
    return _cvtsh_ss(h);
}

// Signed x signed bytes, summed in groups of 4 into 8 int32 lanes. maddubs wants one
// unsigned operand: |x| and y*sign(x). Exact for any x; y must not be -128.
AVX2 static inline __m256i mul_sum_i8(__m256i x, __m256i y) {
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

// Unsigned bytes (<= 63) x signed bytes, summed in groups of 4 into int32 lanes.
AVX2 static inline __m256i mul_sum_u8i8(__m256i u, __m256i y) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), _mm256_set1_epi16(1));
}

// 16 packed nibbles -> 32 bytes 0..15: low nibbles first (elements 0..15), then high.
AVX2 static inline __m256i nibbles32(const uint8_t *qs) {
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(v, _mm256_set1_epi8(15));
}

AVX2 void tensor_dot_f32_avx2(int64_t n, float *out, const void *w, const void *a) {
    const float *x = w, *y = a;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
    }
    float s = hsum_ps(_mm256_add_ps(s0, s1));
    for (; i < n; i++)
        s += x[i] * y[i];
    *out = s;
}

AVX2 void tensor_dot_f16_avx2(int64_t n, float *out, const void *w, const void *a) {
    const anneal_fp16 *x = w;
    const float *y = a;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 x0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        __m256 x1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i + 8)));
        s0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(y + i), s0);
        s1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(y + i + 8), s1);
    }
    float s = hsum_ps(_mm256_add_ps(s0, s1));
    for (; i < n; i++)
        s += h2f(x[i]) * y[i];
    *out = s;
}

AVX2 void tensor_dot_bf16_avx2(int64_t n, float *out, const void *w, const void *a) {
    const anneal_bf16 *x = w;
    const float *y = a;
    __m256 s0 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(x + i)));
        __m256 xf = _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
        s0 = _mm256_fmadd_ps(xf, _mm256_loadu_ps(y + i), s0);
    }
    float s = hsum_ps(s0);
    for (; i < n; i++)
        s += anneal_bf16_to_f32(x[i]) * y[i];
    *out = s;
}

AVX2 void tensor_dot_q8_0_avx2(int64_t n, float *out, const void *w, const void *a) {
    const anneal_block_q8_0 *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / ANNEAL_QK; i++) {
        __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));
        __m256i qx = _mm256_loadu_si256((const __m256i *)x[i].qs);
        __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(mul_sum_i8(qx, qy)), acc);
    }
    *out = hsum_ps(acc);
}

AVX2 void tensor_dot_q4_0_avx2(int64_t n, float *out, const void *w, const void *a) {
    const anneal_block_q4_0 *x = w;
    const anneal_block_q8_0 *y = a;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / ANNEAL_QK; i++) {
        __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));
        __m256i qx = _mm256_sub_epi8(nibbles32(x[i].qs), _mm256_set1_epi8(8));
        __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(mul_sum_i8(qx, qy)), acc);
    }
    *out = hsum_ps(acc);
}

AVX2 void tensor_dot_q4_1_avx2(int64_t n, float *out, const void *w, const void *a) {
    const anneal_block_q4_1 *x = w;
    const anneal_block_q8_0 *y = a;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / ANNEAL_QK; i++) {
        float dy = h2f(y[i].d);
        __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
        __m256i p = mul_sum_u8i8(nibbles32(x[i].qs), qy);
        __m256i sa = mul_sum_u8i8(_mm256_set1_epi8(1), qy);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * dy), _mm256_cvtepi32_ps(p), acc);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].m) * dy), _mm256_cvtepi32_ps(sa), acc);
    }
    *out = hsum_ps(acc);
}

// 32 bits -> 32 bytes, byte i = 0xff when bit i is set.
AVX2 static inline __m256i bytes_from_bits(uint32_t bits) {
    const __m256i spread =
        _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
    const __m256i mask = _mm256_set1_epi64x((int64_t)0x8040201008040201);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), spread);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, mask), mask);
}

AVX2 void tensor_dot_q5_0_avx2(int64_t n, float *out, const void *w, const void *a) {
    const anneal_block_q5_0 *x = w;
    const anneal_block_q8_0 *y = a;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / ANNEAL_QK; i++) {
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        __m256i hb = _mm256_and_si256(bytes_from_bits(qh), _mm256_set1_epi8(16));
        __m256i qx = _mm256_sub_epi8(_mm256_or_si256(nibbles32(x[i].qs), hb), _mm256_set1_epi8(16));
        __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
        __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(mul_sum_i8(qx, qy)), acc);
    }
    *out = hsum_ps(acc);
}

// Q4_K and Q5_K share this: nibbles (plus the 5th bit when qh != NULL) x Q8_K bytes, each
// 32-element sub-block scaled by its 6-bit scale in int32; mins come from bsums.
AVX2 static inline float dot_k4_k5(int64_t n, const anneal_block_q4_K *x4,
                                   const anneal_block_q5_K *x5, const anneal_block_q8_K *y) {
    const __m256i m4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    float accm = 0;
    for (int64_t i = 0; i < n / ANNEAL_QK_K; i++) {
        const uint8_t *scales = x4 ? x4[i].scales : x5[i].scales;
        const uint8_t *qs = x4 ? x4[i].qs : x5[i].qs;
        uint8_t sc[8], m[8];
        int summ = 0;
        for (int j = 0; j < 8; j++) {
            tensor_scale_min_k4(j, scales, &sc[j], &m[j]);
            summ += m[j] * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        __m256i hb = x5 ? _mm256_loadu_si256((const __m256i *)x5[i].qh) : _mm256_setzero_si256();
        __m256i sumi = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            __m256i lo = _mm256_and_si256(q, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if (x5) {
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(hb, one), 4));
                hi = _mm256_or_si256(
                    hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 1), one), 4));
                hb = _mm256_srli_epi16(hb, 2);
            }
            __m256i plo =
                _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(y[i].qs + 64 * c)));
            __m256i phi = _mm256_maddubs_epi16(
                hi, _mm256_loadu_si256((const __m256i *)(y[i].qs + 64 * c + 32)));
            plo = _mm256_madd_epi16(plo, _mm256_set1_epi16(sc[2 * c]));
            phi = _mm256_madd_epi16(phi, _mm256_set1_epi16(sc[2 * c + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(plo, phi));
        }
        const anneal_fp16 dh = x4 ? x4[i].d : x5[i].d, mh = x4 ? x4[i].dmin : x5[i].dmin;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(dh) * y[i].d), _mm256_cvtepi32_ps(sumi), acc);
        accm += h2f(mh) * y[i].d * (float)summ;
    }
    return hsum_ps(acc) - accm;
}

AVX2 void tensor_dot_q4_K_avx2(int64_t n, float *out, const void *w, const void *a) {
    *out = dot_k4_k5(n, w, NULL, a);
}

AVX2 void tensor_dot_q5_K_avx2(int64_t n, float *out, const void *w, const void *a) {
    *out = dot_k4_k5(n, NULL, w, a);
}

// Q6_K: codes 0..63 as unsigned bytes x Q8_K bytes, scaled per 16 elements (one 128-bit
// lane of maddubs output); the -32 offset is folded in once per block via bsums.
AVX2 void tensor_dot_q6_K_avx2(int64_t n, float *out, const void *w, const void *a) {
    const anneal_block_q6_K *x = w;
    const anneal_block_q8_K *y = a;
    __m256 acc = _mm256_setzero_ps();
    float accm = 0;
    for (int64_t i = 0; i < n / ANNEAL_QK_K; i++) {
        int summ = 0;
        for (int j = 0; j < 16; j++)
            summ += x[i].scales[j] * y[i].bsums[j];
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i q[4];
            unpack_q6_K_half(&x[i], h, q);
            const int8_t *sc = x[i].scales + 8 * h;
            for (int k = 0; k < 4; k++) {
                __m256i qy = _mm256_loadu_si256((const __m256i *)(y[i].qs + 128 * h + 32 * k));
                __m256i p = _mm256_maddubs_epi16(q[k], qy);
                __m256i s =
                    _mm256_set_m128i(_mm_set1_epi16(sc[2 * k + 1]), _mm_set1_epi16(sc[2 * k]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, s));
            }
        }
        float d = h2f(x[i].d) * y[i].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        accm += d * (float)(32 * summ);
    }
    *out = hsum_ps(acc) - accm;
}
