// Per-row ops of the forward pass: RMSNorm, RoPE (NORM and NEOX pairing, llama3
// frequency scaling) and SwiGLU. Plain C over F32 rows.
#include "model_internal.h"

#include <math.h>

void ops_rmsnorm(float *y, const float *x, const float *w, int32_t n, float eps) {
    double ss = 0;
    for (int32_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int32_t i = 0; i < n; i++)
        y[i] = x[i] * scale * w[i];
}

void ops_rope_freqs(double *inv_freq, const anneal_model_config *cfg, const float *factors) {
    int32_t half = cfg->n_rot / 2;
    for (int32_t i = 0; i < half; i++) {
        double f = pow((double)cfg->rope_freq_base, -2.0 * i / cfg->n_rot);
        if (factors) {
            // The converter's precomputed per-pair divisors (llama3 files): they already
            // encode the scaling, so the keys are not applied on top.
            f /= factors[i];
        } else if (cfg->rope_scale_factor > 0) {
            // Llama 3.1 scaling: long wavelengths slow down by the factor, short ones stay,
            // and the band between is interpolated.
            double lo = cfg->rope_low_freq_factor, hi = cfg->rope_high_freq_factor;
            double orig = cfg->rope_orig_ctx, factor = cfg->rope_scale_factor;
            double wavelen = 2 * M_PI / f;
            if (wavelen > orig / lo) {
                f /= factor;
            } else if (wavelen >= orig / hi) {
                double smooth = (orig / wavelen - lo) / (hi - lo);
                f = (1 - smooth) * f / factor + smooth * f;
            }
        }
        inv_freq[i] = f;
    }
}

void ops_rope_cache(float *cs, const double *inv_freq, int32_t n_rot, int32_t pos) {
    for (int32_t i = 0; i < n_rot / 2; i++) {
        double th = (double)pos * inv_freq[i];
        cs[2 * i] = (float)cos(th);
        cs[2 * i + 1] = (float)sin(th);
    }
}

void ops_rope_apply(float *x, const float *cs, int32_t n_rot, anneal_rope_type type) {
    int32_t half = n_rot / 2;
    // NORM: pair i is (2i, 2i+1) (llama files, whose converter permuted Q/K rows so the
    // original halves became adjacent). NEOX: pair i is (i, i + n_rot/2).
    int32_t stride = type == ANNEAL_ROPE_NEOX ? 1 : 2, off = type == ANNEAL_ROPE_NEOX ? half : 1;
    for (int32_t i = 0; i < half; i++) {
        float c = cs[2 * i], s = cs[2 * i + 1];
        float *a = &x[i * stride], *b = &x[i * stride + off];
        float x0 = *a, x1 = *b;
        *a = x0 * c - x1 * s;
        *b = x0 * s + x1 * c;
    }
}

// ---- attention kernels over cached K/V rows --------------------------------------------
// A row of the cache is F16 or F32; the group of g query heads that share a kv head read
// it once (converted once into a local buffer), which is what makes GQA cheap.

#define ROW_MAX 512 // head_dim the fast paths handle; larger heads take the plain-C path

static float row_at(uint32_t type, const void *r, int32_t i) {
    return type == ANNEAL_TYPE_F16 ? anneal_fp16_to_f32(((const anneal_fp16 *)r)[i])
                                   : ((const float *)r)[i];
}

static void kdot_ref(uint32_t type, int32_t hd, int32_t g, const void *k, const float *q,
                     float *out, int32_t os) {
    for (int32_t h = 0; h < g; h++) {
        float s = 0;
        for (int32_t i = 0; i < hd; i++)
            s += q[(size_t)h * hd + i] * row_at(type, k, i);
        out[(size_t)h * os] = s;
    }
}

static void vacc_ref(uint32_t type, int32_t hd, int32_t g, const void *v, const float *w,
                     int32_t ws, float *acc) {
    for (int32_t i = 0; i < hd; i++) {
        float x = row_at(type, v, i);
        for (int32_t h = 0; h < g; h++)
            acc[(size_t)h * hd + i] += w[(size_t)h * ws] * x;
    }
}

static void kdot_f16_ref(int32_t hd, int32_t g, const void *k, const float *q, float *out,
                         int32_t os) {
    kdot_ref(ANNEAL_TYPE_F16, hd, g, k, q, out, os);
}
static void kdot_f32_ref(int32_t hd, int32_t g, const void *k, const float *q, float *out,
                         int32_t os) {
    kdot_ref(ANNEAL_TYPE_F32, hd, g, k, q, out, os);
}
static void vacc_f16_ref(int32_t hd, int32_t g, const void *v, const float *w, int32_t ws,
                         float *acc) {
    vacc_ref(ANNEAL_TYPE_F16, hd, g, v, w, ws, acc);
}
static void vacc_f32_ref(int32_t hd, int32_t g, const void *v, const float *w, int32_t ws,
                         float *acc) {
    vacc_ref(ANNEAL_TYPE_F32, hd, g, v, w, ws, acc);
}

static float exps_ref(float *x, int32_t n, float m) {
    float s = 0;
    for (int32_t i = 0; i < n; i++)
        s += (x[i] = expf(x[i] - m));
    return s;
}

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float hsum8(__m256 v) {
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

// The row as floats: F32 rows in place, F16 rows converted into buf (hd % 8 == 0).
AVX2 static inline const float *row_f32(uint32_t type, const void *r, int32_t hd, float *buf) {
    if (type != ANNEAL_TYPE_F16) return r;
    const anneal_fp16 *h = r;
    for (int32_t i = 0; i < hd; i += 8)
        _mm256_storeu_ps(buf + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    return buf;
}

AVX2 static void kdot_avx2(uint32_t type, int32_t hd, int32_t g, const void *k, const float *q,
                           float *out, int32_t os) {
    if (hd % 8 || hd > ROW_MAX) {
        kdot_ref(type, hd, g, k, q, out, os);
        return;
    }
    float buf[ROW_MAX];
    const float *kf = row_f32(type, k, hd, buf);
    // Two heads at a time with two accumulators each: four independent FMA chains.
    int32_t h = 0;
    for (; h + 2 <= g; h += 2) {
        const float *q0 = q + (size_t)h * hd, *q1 = q0 + hd;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
        int32_t i = 0;
        for (; i + 16 <= hd; i += 16) {
            __m256 k0 = _mm256_loadu_ps(kf + i), k1 = _mm256_loadu_ps(kf + i + 8);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + i), k0, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + i + 8), k1, a1);
            b0 = _mm256_fmadd_ps(_mm256_loadu_ps(q1 + i), k0, b0);
            b1 = _mm256_fmadd_ps(_mm256_loadu_ps(q1 + i + 8), k1, b1);
        }
        if (i < hd) {
            __m256 k0 = _mm256_loadu_ps(kf + i);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + i), k0, a0);
            b0 = _mm256_fmadd_ps(_mm256_loadu_ps(q1 + i), k0, b0);
        }
        out[(size_t)h * os] = hsum8(_mm256_add_ps(a0, a1));
        out[(size_t)(h + 1) * os] = hsum8(_mm256_add_ps(b0, b1));
    }
    for (; h < g; h++) {
        const float *qh = q + (size_t)h * hd;
        __m256 a = _mm256_setzero_ps();
        for (int32_t i = 0; i < hd; i += 8)
            a = _mm256_fmadd_ps(_mm256_loadu_ps(qh + i), _mm256_loadu_ps(kf + i), a);
        out[(size_t)h * os] = hsum8(a);
    }
}

AVX2 static void vacc_avx2(uint32_t type, int32_t hd, int32_t g, const void *v, const float *w,
                           int32_t ws, float *acc) {
    if (hd % 8 || hd > ROW_MAX) {
        vacc_ref(type, hd, g, v, w, ws, acc);
        return;
    }
    float buf[ROW_MAX];
    const float *vf = row_f32(type, v, hd, buf);
    for (int32_t h = 0; h < g; h++) {
        __m256 wv = _mm256_set1_ps(w[(size_t)h * ws]);
        float *a = acc + (size_t)h * hd;
        for (int32_t i = 0; i < hd; i += 8)
            _mm256_storeu_ps(a + i,
                             _mm256_fmadd_ps(wv, _mm256_loadu_ps(vf + i), _mm256_loadu_ps(a + i)));
    }
}

AVX2 static void kdot_f16_avx2(int32_t hd, int32_t g, const void *k, const float *q, float *out,
                               int32_t os) {
    kdot_avx2(ANNEAL_TYPE_F16, hd, g, k, q, out, os);
}
AVX2 static void kdot_f32_avx2(int32_t hd, int32_t g, const void *k, const float *q, float *out,
                               int32_t os) {
    kdot_avx2(ANNEAL_TYPE_F32, hd, g, k, q, out, os);
}
AVX2 static void vacc_f16_avx2(int32_t hd, int32_t g, const void *v, const float *w, int32_t ws,
                               float *acc) {
    vacc_avx2(ANNEAL_TYPE_F16, hd, g, v, w, ws, acc);
}
AVX2 static void vacc_f32_avx2(int32_t hd, int32_t g, const void *v, const float *w, int32_t ws,
                               float *acc) {
    vacc_avx2(ANNEAL_TYPE_F32, hd, g, v, w, ws, acc);
}

// exp(x) for x <= 0 (Cephes' expf: range reduction by ln 2, degree-6 polynomial; a few
// ulp), 0 below -87.3 where expf underflows anyway.
AVX2 static inline __m256 exp_neg(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33654f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

AVX2 static float exps_avx2(float *x, int32_t n, float m) {
    __m256 vm = _mm256_set1_ps(m), s = _mm256_setzero_ps();
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        s = _mm256_add_ps(s, e);
    }
    float t = hsum8(s);
    for (; i < n; i++)
        t += (x[i] = expf(x[i] - m));
    return t;
}
#endif

ops_attn_kernels ops_attn_get(uint32_t type) {
    return ops_attn_at(type, anneal_kernels_level());
}

ops_attn_kernels ops_attn_at(uint32_t type, anneal_kernel_level level) {
    bool f16 = type == ANNEAL_TYPE_F16;
#if defined(__x86_64__)
    const anneal_cpu *cpu = anneal_cpu_get();
    if (level >= ANNEAL_KERNELS_AVX2 && cpu->avx2 && cpu->fma && cpu->f16c)
        return (ops_attn_kernels){.kdot = f16 ? kdot_f16_avx2 : kdot_f32_avx2,
                                  .vacc = f16 ? vacc_f16_avx2 : vacc_f32_avx2,
                                  .exps = exps_avx2};
#endif
    return (ops_attn_kernels){.kdot = f16 ? kdot_f16_ref : kdot_f32_ref,
                              .vacc = f16 ? vacc_f16_ref : vacc_f32_ref,
                              .exps = exps_ref};
}

// ---- SwiGLU -----------------------------------------------------------------------------

static void swiglu_ref(float *y, const float *g, const float *u, int32_t n) {
    for (int32_t i = 0; i < n; i++)
        y[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

#if defined(__x86_64__)
// silu(x) = x / (1 + e^-x), written with e = exp(-|x|) <= 1 so the exponential never
// overflows: x / (1 + e) for x >= 0, x * e / (1 + e) for x < 0.
AVX2 static void swiglu_avx2(float *y, const float *g, const float *u, int32_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 e = exp_neg(_mm256_or_ps(x, sign));                // exp(-|x|)
        __m256 num = _mm256_blendv_ps(x, _mm256_mul_ps(x, e), x); // sign bit set: x * e
        __m256 r = _mm256_div_ps(num, _mm256_add_ps(one, e));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(r, _mm256_loadu_ps(u + i)));
    }
    swiglu_ref(y + i, g + i, u + i, n - i);
}
#endif

void ops_swiglu(float *y, const float *g, const float *u, int32_t n) {
#if defined(__x86_64__)
    if (anneal_kernels_level() >= ANNEAL_KERNELS_AVX2) {
        swiglu_avx2(y, g, u, n);
        return;
    }
#endif
    swiglu_ref(y, g, u, n);
}
