// The trainer's ops, forward and backward, on F32 rows: RMSNorm, RoPE, SwiGLU, causal GQA
// attention, cross-entropy and the matrix products (OpenBLAS sgemm). Every backward here is
// checked against finite differences in tests/unit/test_train_ops.c.
#include "train_internal.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <strings.h>

#define CHUNK 256 // floats of stack scratch for element-wise exps

// ---- vectorized exp --------------------------------------------------------------------

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))

// exp(x) for x in [-87.3, 88]: n = round(x / ln 2), r = x - n ln 2 (in two parts), a
// degree-6 polynomial for e^r (Cephes' expf coefficients), times 2^n built in the exponent.
AVX2 static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.0f));
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
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

AVX2 static void vexp_avx2(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, exp8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float buf[8] = {0};
        memcpy(buf, x + i, (size_t)(n - i) * sizeof(float));
        _mm256_storeu_ps(buf, exp8(_mm256_loadu_ps(buf)));
        memcpy(y + i, buf, (size_t)(n - i) * sizeof(float));
    }
}
#endif

void tr_vexp(float *y, const float *x, int64_t n) {
#if defined(__x86_64__)
    static int have = -1;
    if (have < 0) {
        const anneal_cpu *cpu = anneal_cpu_get();
        have = cpu->avx2 && cpu->fma && anneal_kernels_level() >= ANNEAL_KERNELS_AVX2;
    }
    if (have) {
        vexp_avx2(y, x, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] < -87.3f ? -87.3f : x[i] > 88.0f ? 88.0f : x[i];
        y[i] = expf(v);
    }
}

// ---- RMSNorm ---------------------------------------------------------------------------

TR_VEC void tr_rmsnorm_fwd(float *y, float *r, const float *x, const float *w, int64_t rows,
                           int32_t n, float eps) {
    for (int64_t t = 0; t < rows; t++) {
        const float *xr = x + t * n;
        float *yr = y + t * n;
        // As the engine's ops_rmsnorm: the mean square in double.
        double ss = 0;
        for (int32_t i = 0; i < n; i++)
            ss += (double)xr[i] * xr[i];
        float s = (float)(1.0 / sqrt(ss / n + eps));
        r[t] = s;
        for (int32_t i = 0; i < n; i++)
            yr[i] = xr[i] * s * w[i];
    }
}

TR_VEC void tr_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w,
                           const float *r, int64_t rows, int32_t n) {
    for (int64_t t = 0; t < rows; t++) {
        const float *xr = x + t * n, *dyr = dy + t * n;
        float *dxr = dx + t * n;
        float s = r[t];
        // dx_j = s w_j dy_j - x_j s^3 / n * sum_i dy_i w_i x_i
        double dot = 0;
        for (int32_t i = 0; i < n; i++)
            dot += (double)dyr[i] * w[i] * xr[i];
        float c = (float)(dot * s * s * s / n);
        for (int32_t i = 0; i < n; i++)
            dxr[i] += s * w[i] * dyr[i] - xr[i] * c;
        if (dw)
            for (int32_t i = 0; i < n; i++)
                dw[i] += dyr[i] * xr[i] * s;
    }
}

// ---- RoPE --------------------------------------------------------------------------------

TR_VEC void tr_rope(float *x, int64_t row0, int64_t rows, int32_t stride, int32_t n_heads,
                    int32_t hd, const float *cs, int32_t n_seq, int32_t n_rot,
                    anneal_rope_type type, bool inverse) {
    int32_t half = n_rot / 2;
    int32_t step = type == ANNEAL_ROPE_NEOX ? 1 : 2, off = type == ANNEAL_ROPE_NEOX ? half : 1;
    for (int64_t t = row0; t < row0 + rows; t++) {
        const float *c = cs + (size_t)(t % n_seq) * n_rot;
        float *xr = x + t * stride;
        for (int32_t h = 0; h < n_heads; h++) {
            if (!inverse) {
                ops_rope_apply(xr + (size_t)h * hd, c, n_rot, type); // the engine's rotation
                continue;
            }
            float *xh = xr + (size_t)h * hd;
            for (int32_t i = 0; i < half; i++) {
                float co = c[2 * i], si = c[2 * i + 1];
                float *a = &xh[i * step], *b = &xh[i * step + off];
                float x0 = *a, x1 = *b;
                *a = x0 * co + x1 * si;
                *b = -x0 * si + x1 * co;
            }
        }
    }
}

// ---- SwiGLU --------------------------------------------------------------------------------

// sig[i] = 1 / (1 + exp(-g[i])) for a chunk.
TR_VEC static void sigmoid_chunk(float *sig, const float *g, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        sig[i] = -g[i];
    tr_vexp(sig, sig, n);
    for (int64_t i = 0; i < n; i++)
        sig[i] = 1.0f / (1.0f + sig[i]);
}

TR_VEC void tr_swiglu_fwd(float *h, const float *g, const float *u, int64_t n) {
    float sig[CHUNK];
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) {
        int64_t m = n - i0 < CHUNK ? n - i0 : CHUNK;
        sigmoid_chunk(sig, g + i0, m);
        for (int64_t i = 0; i < m; i++)
            h[i0 + i] = g[i0 + i] * sig[i] * u[i0 + i];
    }
}

TR_VEC void tr_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u,
                          int64_t n) {
    float sig[CHUNK];
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) {
        int64_t m = n - i0 < CHUNK ? n - i0 : CHUNK;
        sigmoid_chunk(sig, g + i0, m);
        for (int64_t i = 0; i < m; i++) {
            float gi = g[i0 + i], s = sig[i], d = dh[i0 + i];
            // silu'(g) = s (1 + g (1 - s))
            float dgi = d * u[i0 + i] * s * (1.0f + gi * (1.0f - s));
            du[i0 + i] = d * gi * s;
            dg[i0 + i] = dgi;
        }
    }
}

// ---- cross-entropy -------------------------------------------------------------------

TR_VEC double tr_xent(const float *logits, const int32_t *targets, int64_t rows, int32_t n_vocab,
                      float scale, float *dlogits) {
    double total = 0;
    float buf[CHUNK];
    for (int64_t t = 0; t < rows; t++) {
        const float *l = logits + t * n_vocab;
        int32_t tg = targets[t];
        if (tg < 0) {
            if (dlogits) memset(dlogits + t * n_vocab, 0, (size_t)n_vocab * sizeof(float));
            continue;
        }
        float mx = l[0];
        for (int32_t j = 1; j < n_vocab; j++)
            mx = l[j] > mx ? l[j] : mx;
        float lt = l[tg];
        double sum = 0;
        if (dlogits) {
            float *d = dlogits + t * n_vocab;
            for (int32_t j = 0; j < n_vocab; j++)
                d[j] = l[j] - mx;
            tr_vexp(d, d, n_vocab);
            for (int32_t j = 0; j < n_vocab; j++)
                sum += d[j];
            float k = (float)(scale / sum);
            for (int32_t j = 0; j < n_vocab; j++)
                d[j] *= k;
            d[tg] -= scale;
        } else {
            for (int32_t j0 = 0; j0 < n_vocab; j0 += CHUNK) {
                int32_t m = n_vocab - j0 < CHUNK ? n_vocab - j0 : CHUNK;
                for (int32_t j = 0; j < m; j++)
                    buf[j] = l[j0 + j] - mx;
                tr_vexp(buf, buf, m);
                for (int32_t j = 0; j < m; j++)
                    sum += buf[j];
            }
        }
        total += log(sum) + mx - lt;
    }
    return total;
}

// ---- attention ---------------------------------------------------------------------------

int tr_attn_block = 64;

// Softmax of row r of a block: scores [0, n_valid) are kept, [n_valid, n) set to 0.
TR_VEC static void softmax_causal(float *row, int32_t n_valid, int32_t n) {
    float mx = row[0];
    for (int32_t j = 1; j < n_valid; j++)
        mx = row[j] > mx ? row[j] : mx;
    for (int32_t j = 0; j < n_valid; j++)
        row[j] -= mx;
    tr_vexp(row, row, n_valid);
    double sum = 0;
    for (int32_t j = 0; j < n_valid; j++)
        sum += row[j];
    float inv = (float)(1.0 / sum);
    for (int32_t j = 0; j < n_valid; j++)
        row[j] *= inv;
    memset(row + n_valid, 0, (size_t)(n - n_valid) * sizeof(float));
}

// Query rows go in blocks of tr_attn_block: block [i0, i0 + m) only needs keys [0, i0 + m),
// so the products skip most of the masked upper triangle.
TR_VEC void tr_attn_fwd(const float *q, const float *k, const float *v, float *P, float *o,
                        int32_t T, int32_t hd, int32_t g, int32_t q_stride, int32_t kv_stride,
                        int32_t o_stride, float scale) {
    const int32_t blk = tr_attn_block > 0 ? tr_attn_block : T;
    for (int32_t h = 0; h < g; h++) {
        float *Ph = P + (size_t)h * T * T;
        for (int32_t i0 = 0; i0 < T; i0 += blk) {
            int32_t m = T - i0 < blk ? T - i0 : blk, n = i0 + m;
            float *S = Ph + (size_t)i0 * T;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, hd, scale,
                        q + (size_t)h * hd + (size_t)i0 * q_stride, q_stride, k, kv_stride, 0.0f, S,
                        T);
            for (int32_t r = 0; r < m; r++)
                softmax_causal(S + (size_t)r * T, i0 + r + 1, T);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, n, 1.0f, S, T, v,
                        kv_stride, 0.0f, o + (size_t)h * hd + (size_t)i0 * o_stride, o_stride);
        }
    }
}

TR_VEC void tr_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, const float *P, float *dS, int32_t T,
                        int32_t hd, int32_t g, int32_t q_stride, int32_t kv_stride,
                        int32_t o_stride, float scale) {
    const int32_t blk = tr_attn_block > 0 ? tr_attn_block : T;
    // Every block of every head of the group adds into dk and dv.
    for (int32_t t = 0; t < T; t++) {
        memset(dk + (size_t)t * kv_stride, 0, (size_t)hd * sizeof(float));
        memset(dv + (size_t)t * kv_stride, 0, (size_t)hd * sizeof(float));
    }
    for (int32_t h = 0; h < g; h++) {
        const float *Ph = P + (size_t)h * T * T;
        for (int32_t i0 = 0; i0 < T; i0 += blk) {
            int32_t m = T - i0 < blk ? T - i0 : blk, n = i0 + m;
            const float *Pb = Ph + (size_t)i0 * T;
            const float *dob = dout + (size_t)h * hd + (size_t)i0 * o_stride;
            const float *qb = q + (size_t)h * hd + (size_t)i0 * q_stride;
            float *d = dS + (size_t)i0 * T;
            // dP = dO V^T; dV += P^T dO
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, hd, 1.0f, dob, o_stride, v,
                        kv_stride, 0.0f, d, T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, hd, m, 1.0f, Pb, T, dob,
                        o_stride, 1.0f, dv, kv_stride);
            // Softmax backward: dS = P * (dP - rowsum(P * dP)), zero above the diagonal.
            for (int32_t r = 0; r < m; r++) {
                const float *p = Pb + (size_t)r * T;
                float *dr = d + (size_t)r * T;
                int32_t nv = i0 + r + 1;
                double dot = 0;
                for (int32_t j = 0; j < nv; j++)
                    dot += (double)p[j] * dr[j];
                float fd = (float)dot;
                for (int32_t j = 0; j < nv; j++)
                    dr[j] = p[j] * (dr[j] - fd);
                memset(dr + nv, 0, (size_t)(n - nv) * sizeof(float));
            }
            // dQ = scale dS K; dK += scale dS^T Q
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, n, scale, d, T, k,
                        kv_stride, 0.0f, dq + (size_t)h * hd + (size_t)i0 * q_stride, q_stride);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, hd, m, scale, d, T, qb,
                        q_stride, 1.0f, dk, kv_stride);
        }
    }
}

// ---- matrix products -------------------------------------------------------------------

void tr_mm_fwd(float *y, int32_t ldy, const float *x, int32_t ldx, const float *w, int64_t rows,
               int32_t n_in, int32_t n_out) {
    if (rows <= 0 || n_out <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, n_out, n_in, 1.0f, x, ldx, w,
                n_in, 0.0f, y, ldy);
}

void tr_mm_bwd_x(float *dx, int32_t lddx, const float *dy, int32_t lddy, const float *w,
                 int32_t ldw, int64_t rows, int32_t n_in, int32_t n_out, float beta) {
    if (rows <= 0 || n_in <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, n_in, n_out, 1.0f, dy, lddy,
                w, ldw, beta, dx, lddx);
}

void tr_mm_bwd_w(float *dw, int32_t lddw, const float *dy, int32_t lddy, const float *x,
                 int32_t ldx, int64_t rows, int32_t n_in, int32_t n_out) {
    if (rows <= 0 || n_out <= 0 || n_in <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_out, n_in, (int)rows, 1.0f, dy, lddy, x,
                ldx, 1.0f, dw, lddw);
}

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_one_thread(void) {
    openblas_set_num_threads(1);
    // Library users that did not re-run with OPENBLAS_CORETYPE (the CLI does) are told.
    const char *better = anneal_blas_better_core();
    if (better)
        ANNEAL_WARN("OpenBLAS runs its %s kernels on a CPU that supports %s: training is several "
                    "times slower; set OPENBLAS_CORETYPE=%s before the program starts",
                    anneal_blas_core(), better, better);
}
void tr_blas_init(void) {
    pthread_once(&blas_once, blas_one_thread);
}

// ---- which OpenBLAS core ----------------------------------------------------------------

const char *anneal_blas_core(void) {
    return openblas_get_corename();
}

const char *anneal_blas_better_core(void) {
    const char *core = openblas_get_corename();
    if (!core) return NULL;
    const anneal_cpu *cpu = anneal_cpu_get();
    // OpenBLAS core names with AVX-512 and with AVX2 kernels.
    static const char *const k512[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    static const char *const k256[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake",
                                       "SapphireRapids"};
    bool has512 = false, has256 = false;
    for (size_t i = 0; i < sizeof k512 / sizeof k512[0]; i++)
        if (strcasecmp(core, k512[i]) == 0) has512 = true;
    for (size_t i = 0; i < sizeof k256 / sizeof k256[0]; i++)
        if (strcasecmp(core, k256[i]) == 0) has256 = true;
    if (cpu->avx512f && cpu->avx512bw && cpu->avx512vl && !has512) return "SkylakeX";
    if (cpu->avx2 && cpu->fma && !has256) return "Haswell";
    return NULL;
}
