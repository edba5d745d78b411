// AVX-512 activation quantizers (Q8_0, Q8_K). Bit-for-bit the reference quantizers'
// results for every input, NaN and Inf included: the same float operations in the same
// order per element, and the reference's rounding reproduced exactly (roundf's ties away
// from zero for Q8_0, the +1.5*2^23 trick for Q8_K).
#include "tensor/kernels.h"

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

// max |x| over n (a multiple of 16) elements; NaNs are skipped as the reference's
// `fabsf(x) > amax` skips them (vmaxps returns its second operand when either is NaN).
AVX512 static inline float absmax(const float *x, int n) {
    __m512 m = _mm512_setzero_ps();
    for (int j = 0; j < n; j += 16)
        m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + j)), m);
    return _mm512_reduce_max_ps(m);
}

// roundf (ties away from zero), exactly: v - trunc(v) is exact for every float.
AVX512 static inline __m512 round_away(__m512 v) {
    __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __mmask16 up =
        _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(v, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    __m512 one = _mm512_castsi512_ps(
        _mm512_or_si512(_mm512_castps_si512(_mm512_set1_ps(1.0f)),
                        _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(INT32_MIN))));
    return _mm512_mask_add_ps(t, up, t, one);
}

AVX512 void tensor_quantize_q8_0_avx512(const float *x, anneal_block_q8_0 *y, int64_t k) {
    const __m512 lo = _mm512_set1_ps(-127.f), hi = _mm512_set1_ps(127.f);
    for (int64_t i = 0; i < k / ANNEAL_QK; i++, x += ANNEAL_QK) {
        float amax = absmax(x, ANNEAL_QK);
        float d = amax / 127, id = d != 0 ? 1.0f / d : 0;
        y[i].d = anneal_f32_to_fp16(d);
        for (int h = 0; h < 2; h++) {
            __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + 16 * h), _mm512_set1_ps(id));
            // fminf(127, fmaxf(-127, r)): a NaN r becomes -127, as fmaxf makes it.
            __m512 r = _mm512_min_ps(_mm512_max_ps(round_away(v), lo), hi);
            _mm_storeu_si128((__m128i *)(y[i].qs + 16 * h),
                             _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(r)));
        }
    }
}

AVX512 void tensor_quantize_q8_K_avx512(const float *x, anneal_block_q8_K *y, int64_t k) {
    for (int64_t i = 0; i < k / ANNEAL_QK_K; i++, x += ANNEAL_QK_K) {
        float amax = absmax(x, ANNEAL_QK_K);
        if (amax == 0 || !isfinite(amax)) {
            y[i].d = amax == 0 ? 0 : amax;
            memset(y[i].qs, 0, sizeof y[i].qs);
            memset(y[i].bsums, 0, sizeof y[i].bsums);
            continue;
        }
        // The reference keeps the first element reaching amax, with its sign.
        float max = 0;
        for (int j = 0; j < ANNEAL_QK_K; j += 16) {
            __mmask16 eq = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + j)),
                                              _mm512_set1_ps(amax), _CMP_EQ_OQ);
            if (eq) {
                max = x[j + __builtin_ctz(eq)];
                break;
            }
        }
        float iscale = -127.f / max;
        const __m512i mant = _mm512_set1_epi32(0x007fffff), bias = _mm512_set1_epi32(0x00400000);
        for (int j = 0; j < ANNEAL_QK_K; j += 16) {
            __m512 v = _mm512_mul_ps(_mm512_set1_ps(iscale), _mm512_loadu_ps(x + j));
            __m512i q = _mm512_sub_epi32(
                _mm512_and_si512(_mm512_castps_si512(_mm512_add_ps(v, _mm512_set1_ps(12582912.f))),
                                 mant),
                bias);
            q = _mm512_min_epi32(_mm512_max_epi32(q, _mm512_set1_epi32(-127)),
                                 _mm512_set1_epi32(127));
            _mm_storeu_si128((__m128i *)(y[i].qs + j), _mm512_cvtepi32_epi8(q));
            y[i].bsums[j / 16] = (int16_t)_mm512_reduce_add_epi32(q);
        }
        y[i].d = 1 / iscale;
    }
}
