// AVX-512 VNNI tiled matrix multiply for batches of activation rows (prefill). Weights are
// repacked 32 rows at a time so that one 64-byte vector holds 4 consecutive codes of each
// of 16 rows: one vpdpbusd against a broadcast 4-byte group of one activation row then
// does 64 multiply-adds for 16 outputs (two of them share each broadcast), the block's sum
// ends up in one int32 lane per row (no horizontal sums), and scales are applied once per
// block per 16 rows.
#include "tensor/kernels.h"

#include "tensor/x86/unpack_avx2.h"

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define KERNEL AVX512 static inline __attribute__((always_inline))

#define TILE_R 32 // weight rows per tile: two 16-lane vectors
#define TILE_T 6  // activation rows per pass over a tile: accumulators stay in registers

// How a weight type maps onto the tile: unsigned codes c with w = scale * (c + off), or
// (Q4_1) w = scale * c + min, or K-quant sub-block scales/mins.
typedef enum { FAM_LEGACY, FAM_LEGACY_MIN, FAM_K4, FAM_Q6K } family;

typedef struct {
    family fam;
    int off;        // legacy: code offset (-8, -16, -128); Q6_K: -32
    int64_t n;      // elements per row
    int64_t nb;     // 32-element blocks per row
    size_t astride; // bytes per activation block (34 for Q8_0, 292 for Q8_K)
    size_t aoff;    // offset of the codes inside an activation block
    // Weight tile.
    uint8_t *rows;  // 32 x 256 unpacked codes, row-major: the repacking's staging area
    uint8_t *codes; // n/4 groups x 32 rows x 4 codes
    float *sc;      // per scale group (32 elements; 16 for Q6_K) x 32 rows
    float *mn;      // per 32-element block x 32 rows: Q4_1 min, K4 dmin*m
    // Activation side, per token.
    float *ady;     // legacy: d per block; K: d per super-block
    int32_t *acorr; // legacy: off * (sum of codes) per block; Q6_K: -32 * bsum per 16
    float *aaux;    // Q4_1: d * (sum of codes) per block; K4: -d * (bsum of 32) per block
} gemm;

AVX512 static inline float h2f(anneal_fp16 h) {
    return _cvtsh_ss(h);
}

AVX512 static inline __m512i bcast4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
}

// 16 packed nibbles -> 32 bytes 0..15 in element order (low nibbles, then high).
AVX512 static inline __m256i nibbles32(const uint8_t *qs) {
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(15));
}

// 32 bits -> 32 bytes, byte i = 16 when bit i is set.
AVX512 static inline __m256i bit4_from_bits(uint32_t bits) {
    __mmask32 k = bits;
    return _mm256_maskz_mov_epi8(k, _mm256_set1_epi8(16));
}

AVX512 static inline int sum_i8_32(const int8_t *q) {
    __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1),
                                    _mm256_loadu_si256((const __m256i *)q));
    __m128i r = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0x4e));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0xb1));
    return _mm_cvtsi128_si32(r);
}

// 32-element blocks [b0, b0 + nbk) of one weight row -> codes in element order (dst[0..
// 32*nbk)) and the row's scales, written with a stride of 16 floats (one tile lane). For
// the K-quants b0 is a multiple of 8 and nbk is 8: one super-block.
AVX512 static void unpack_row(uint32_t type, const uint8_t *w, const gemm *g, int64_t b0,
                              int64_t nbk, uint8_t *dst, int r) {
    float *sc = g->sc + r, *mn = g->mn + r;
    switch (type) {
    case ANNEAL_TYPE_Q4_0:
    case ANNEAL_TYPE_Q4_1:
    case ANNEAL_TYPE_Q5_0:
    case ANNEAL_TYPE_Q8_0:
        for (int64_t b = b0; b < b0 + nbk; b++) {
            __m256i c;
            if (type == ANNEAL_TYPE_Q4_0) {
                const anneal_block_q4_0 *x = (const anneal_block_q4_0 *)w + b;
                c = nibbles32(x->qs);
                sc[TILE_R * b] = h2f(x->d);
            } else if (type == ANNEAL_TYPE_Q4_1) {
                const anneal_block_q4_1 *x = (const anneal_block_q4_1 *)w + b;
                c = nibbles32(x->qs);
                sc[TILE_R * b] = h2f(x->d);
                mn[TILE_R * b] = h2f(x->m);
            } else if (type == ANNEAL_TYPE_Q5_0) {
                const anneal_block_q5_0 *x = (const anneal_block_q5_0 *)w + b;
                uint32_t qh;
                memcpy(&qh, x->qh, sizeof qh);
                c = _mm256_or_si256(nibbles32(x->qs), bit4_from_bits(qh));
                sc[TILE_R * b] = h2f(x->d);
            } else {
                const anneal_block_q8_0 *x = (const anneal_block_q8_0 *)w + b;
                c = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)x->qs),
                                     _mm256_set1_epi8((char)0x80));
                sc[TILE_R * b] = h2f(x->d);
            }
            _mm256_storeu_si256((__m256i *)(dst + 32 * (b - b0)), c);
        }
        break;
    case ANNEAL_TYPE_Q4_K:
    case ANNEAL_TYPE_Q5_K:
        for (int64_t s = b0 / 8; s < (b0 + nbk) / 8; s++) {
            const uint8_t *scales, *qs, *qhp = NULL;
            float d, dmin;
            if (type == ANNEAL_TYPE_Q4_K) {
                const anneal_block_q4_K *x = (const anneal_block_q4_K *)w + s;
                scales = x->scales, qs = x->qs, d = h2f(x->d), dmin = h2f(x->dmin);
            } else {
                const anneal_block_q5_K *x = (const anneal_block_q5_K *)w + s;
                scales = x->scales, qs = x->qs, qhp = x->qh, d = h2f(x->d), dmin = h2f(x->dmin);
            }
            for (int j = 0; j < 8; j++) {
                uint8_t s6, m6;
                tensor_scale_min_k4(j, scales, &s6, &m6);
                sc[TILE_R * (8 * s + j)] = d * s6;
                mn[TILE_R * (8 * s + j)] = dmin * m6;
            }
            const __m256i m4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
            __m256i hb = qhp ? _mm256_loadu_si256((const __m256i *)qhp) : _mm256_setzero_si256();
            uint8_t *o = dst + ANNEAL_QK_K * (s - b0 / 8);
            for (int c = 0; c < 4; c++) {
                __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
                __m256i lo = _mm256_and_si256(q, m4);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                if (qhp) {
                    lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(hb, one), 4));
                    hi = _mm256_or_si256(
                        hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 1), one), 4));
                    hb = _mm256_srli_epi16(hb, 2);
                }
                _mm256_storeu_si256((__m256i *)(o + 64 * c), lo);
                _mm256_storeu_si256((__m256i *)(o + 64 * c + 32), hi);
            }
        }
        break;
    default: // Q6_K
        for (int64_t s = b0 / 8; s < (b0 + nbk) / 8; s++) {
            const anneal_block_q6_K *x = (const anneal_block_q6_K *)w + s;
            float d = h2f(x->d);
            for (int j = 0; j < 16; j++)
                sc[TILE_R * (16 * s + j)] = d * x->scales[j];
            for (int h = 0; h < 2; h++) {
                __m256i q[4];
                unpack_q6_K_half(x, h, q);
                for (int k = 0; k < 4; k++)
                    _mm256_storeu_si256(
                        (__m256i *)(dst + ANNEAL_QK_K * (s - b0 / 8) + 128 * h + 32 * k), q[k]);
            }
        }
        break;
    }
}

// Block j of 16 unpacked rows (buf: 16 rows of 256 codes) -> the tile layout: out + 128*k
// holds codes 4k..4k+3 of the block for rows 0..15 (the other half's rows sit at +64). Rows r and
// r+8 share a vector (halves), then an 8x8 transpose of 4-byte groups runs in both halves at once.
AVX512 static void transpose_block(const uint8_t *buf, int j, uint8_t *out) {
    __m512i z[8], t[8], u[8];
    for (int r = 0; r < 8; r++)
        z[r] = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(buf + 256 * r + 32 * j))),
            _mm256_loadu_si256((const __m256i *)(buf + 256 * (r + 8) + 32 * j)), 1);
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(z[2 * i], z[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(z[2 * i], z[2 * i + 1]);
    }
    // u[k] (u[4 + k]): per 128-bit chunk, group k / k+4 of rows 0-3 / 8-11 (4-7 / 12-15).
    for (int h = 0; h < 2; h++) {
        u[4 * h + 0] = _mm512_unpacklo_epi64(t[4 * h + 0], t[4 * h + 2]);
        u[4 * h + 1] = _mm512_unpackhi_epi64(t[4 * h + 0], t[4 * h + 2]);
        u[4 * h + 2] = _mm512_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
        u[4 * h + 3] = _mm512_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
    }
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13),
                  hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    for (int k = 0; k < 4; k++) {
        _mm512_store_si512(out + 128 * k, _mm512_permutex2var_epi64(u[k], lo, u[4 + k]));
        _mm512_store_si512(out + 128 * (k + 4), _mm512_permutex2var_epi64(u[k], hi, u[4 + k]));
    }
}

// Rows [r0, r0 + nr) of W into the tile, 256 elements at a time through `rows` (32 x 256
// codes, L1/L2-resident). Lanes nr..31 get zero codes and scales, so they compute zeros
// that are never stored.
AVX512 static void repack(uint32_t type, const uint8_t *w, size_t wrow, int nr, const gemm *g) {
    int64_t nsc = g->fam == FAM_Q6K ? g->n / 16 : g->nb;
    for (int r = nr; r < TILE_R; r++) {
        memset(g->rows + 256 * r, 0, 256);
        for (int64_t j = 0; j < nsc; j++)
            g->sc[TILE_R * j + r] = 0;
        for (int64_t j = 0; j < g->nb; j++)
            g->mn[TILE_R * j + r] = 0;
    }
    for (int64_t b0 = 0; b0 < g->nb; b0 += 8) {
        int64_t nbk = g->nb - b0 < 8 ? g->nb - b0 : 8;
        for (int r = 0; r < nr; r++)
            unpack_row(type, w + (size_t)r * wrow, g, b0, nbk, g->rows + 256 * r, r);
        for (int j = 0; j < nbk; j++)
            for (int h = 0; h < 2; h++)
                transpose_block(g->rows + 16 * 256 * h, j, g->codes + 1024 * (b0 + j) + 64 * h);
    }
}

// Per-token activation terms, computed once per call for all tokens.
AVX512 static void prep_acts(const gemm *g, const uint8_t *a, size_t arow, int64_t n_tok) {
    for (int64_t t = 0; t < n_tok; t++) {
        const uint8_t *at = a + (size_t)t * arow;
        if (g->fam == FAM_LEGACY || g->fam == FAM_LEGACY_MIN) {
            for (int64_t b = 0; b < g->nb; b++) {
                const anneal_block_q8_0 *y = (const anneal_block_q8_0 *)at + b;
                float d = h2f(y->d);
                int sy = sum_i8_32(y->qs);
                g->ady[t * g->nb + b] = d;
                g->acorr[t * g->nb + b] = g->off * sy;
                g->aaux[t * g->nb + b] = d * (float)sy;
            }
            continue;
        }
        for (int64_t s = 0; s < g->n / ANNEAL_QK_K; s++) {
            const anneal_block_q8_K *y = (const anneal_block_q8_K *)at + s;
            g->ady[t * (g->n / ANNEAL_QK_K) + s] = y->d;
            if (g->fam == FAM_K4) {
                for (int j = 0; j < 8; j++)
                    g->aaux[t * g->nb + 8 * s + j] =
                        -y->d * (float)(y->bsums[2 * j] + y->bsums[2 * j + 1]);
            } else {
                for (int j = 0; j < 16; j++)
                    g->acorr[t * (g->n / 16) + 16 * s + j] = g->off * y->bsums[j];
            }
        }
    }
}

// The tile kernels: NT activation rows (t0..) x 32 weight rows (two halves h of 16 lanes).
// Every output lane runs the same sequence of operations whatever NT and the tile
// position are, so a result does not depend on how rows and tokens were grouped or split
// among threads. Per block the int32 sums of both halves and all NT rows stay in
// registers (2 x 6 + 2 x 6 accumulators), and each broadcast activation group feeds two
// vpdpbusd.
#define FOR_T _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++)

KERNEL void tile_legacy(const gemm *g, const uint8_t *a, size_t arow, int64_t t0, const int NT,
                        const bool has_min, float *y, int64_t n_out, __mmask16 m0, __mmask16 m1) {
    __m512 acc[2][TILE_T];
    const uint8_t *at[TILE_T];
    FOR_T {
        acc[0][t] = acc[1][t] = _mm512_setzero_ps();
        at[t] = a + (size_t)(t0 + t) * arow + g->aoff;
    }
    for (int64_t b = 0; b < g->nb; b++) {
        const uint8_t *cw = g->codes + 1024 * b;
        __m512i ia[2][TILE_T];
        FOR_T ia[0][t] = ia[1][t] = _mm512_set1_epi32(g->acorr[(t0 + t) * g->nb + b]);
        _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) {
            const __m512i w0 = _mm512_load_si512(cw + 128 * k),
                          w1 = _mm512_load_si512(cw + 128 * k + 64);
            FOR_T {
                const __m512i q = bcast4(at[t] + g->astride * (size_t)b + 4 * k);
                ia[0][t] = _mm512_dpbusd_epi32(ia[0][t], w0, q);
                ia[1][t] = _mm512_dpbusd_epi32(ia[1][t], w1, q);
            }
        }
        const __m512 dw0 = _mm512_load_ps(g->sc + TILE_R * b),
                     dw1 = _mm512_load_ps(g->sc + TILE_R * b + 16);
        FOR_T {
            const int64_t ix = (t0 + t) * g->nb + b;
            const __m512 dy = _mm512_set1_ps(g->ady[ix]);
            acc[0][t] =
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[0][t]), _mm512_mul_ps(dw0, dy), acc[0][t]);
            acc[1][t] =
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[1][t]), _mm512_mul_ps(dw1, dy), acc[1][t]);
            if (has_min) {
                const __m512 sy = _mm512_set1_ps(g->aaux[ix]);
                acc[0][t] = _mm512_fmadd_ps(_mm512_load_ps(g->mn + TILE_R * b), sy, acc[0][t]);
                acc[1][t] = _mm512_fmadd_ps(_mm512_load_ps(g->mn + TILE_R * b + 16), sy, acc[1][t]);
            }
        }
    }
    FOR_T {
        _mm512_mask_storeu_ps(y + (t0 + t) * n_out, m0, acc[0][t]);
        _mm512_mask_storeu_ps(y + (t0 + t) * n_out + 16, m1, acc[1][t]);
    }
}

// Q4_K/Q5_K: per 32-element sub-block d*sc_j (per row) times the activation's d, and the
// min term as (dmin*m_j) * (-d_a * bsum_j), both folded into the accumulators.
KERNEL void tile_k4(const gemm *g, const uint8_t *a, size_t arow, int64_t t0, const int NT,
                    float *y, int64_t n_out, __mmask16 m0, __mmask16 m1) {
    __m512 acc[2][TILE_T];
    const uint8_t *at[TILE_T];
    const int64_t nsb = g->n / ANNEAL_QK_K;
    FOR_T {
        acc[0][t] = acc[1][t] = _mm512_setzero_ps();
        at[t] = a + (size_t)(t0 + t) * arow + g->aoff;
    }
    for (int64_t b = 0; b < g->nb; b++) {
        const int64_t s = b / 8, j = b % 8;
        const uint8_t *cw = g->codes + 1024 * b;
        __m512i ia[2][TILE_T];
        FOR_T ia[0][t] = ia[1][t] = _mm512_setzero_si512();
        _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) {
            const __m512i w0 = _mm512_load_si512(cw + 128 * k),
                          w1 = _mm512_load_si512(cw + 128 * k + 64);
            FOR_T {
                const __m512i q = bcast4(at[t] + g->astride * (size_t)s + 32 * j + 4 * k);
                ia[0][t] = _mm512_dpbusd_epi32(ia[0][t], w0, q);
                ia[1][t] = _mm512_dpbusd_epi32(ia[1][t], w1, q);
            }
        }
        const __m512 d0 = _mm512_load_ps(g->sc + TILE_R * b),
                     d1 = _mm512_load_ps(g->sc + TILE_R * b + 16);
        const __m512 m0v = _mm512_load_ps(g->mn + TILE_R * b),
                     m1v = _mm512_load_ps(g->mn + TILE_R * b + 16);
        FOR_T {
            const __m512 dy = _mm512_set1_ps(g->ady[(t0 + t) * nsb + s]);
            const __m512 bm = _mm512_set1_ps(g->aaux[(t0 + t) * g->nb + b]);
            acc[0][t] =
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[0][t]), _mm512_mul_ps(d0, dy), acc[0][t]);
            acc[1][t] =
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[1][t]), _mm512_mul_ps(d1, dy), acc[1][t]);
            acc[0][t] = _mm512_fmadd_ps(m0v, bm, acc[0][t]);
            acc[1][t] = _mm512_fmadd_ps(m1v, bm, acc[1][t]);
        }
    }
    FOR_T {
        _mm512_mask_storeu_ps(y + (t0 + t) * n_out, m0, acc[0][t]);
        _mm512_mask_storeu_ps(y + (t0 + t) * n_out + 16, m1, acc[1][t]);
    }
}

// Q6_K: 16-element scale groups; the -32 offset starts each group's int32 sum. With
// scale products per 16 elements, the group sums go into a per-super-block float sum with
// the rows' d*scale only, and the activation's d is applied once per super-block; that
// needs a third set of accumulators, so this kernel takes at most 4 activation rows.
#define TILE_T_Q6K 4

KERNEL void tile_q6k(const gemm *g, const uint8_t *a, size_t arow, int64_t t0, const int NT,
                     float *y, int64_t n_out, __mmask16 m0, __mmask16 m1) {
    __m512 acc[2][TILE_T_Q6K];
    const uint8_t *at[TILE_T_Q6K];
    const int64_t nsb = g->n / ANNEAL_QK_K, ng = g->n / 16;
    FOR_T {
        acc[0][t] = acc[1][t] = _mm512_setzero_ps();
        at[t] = a + (size_t)(t0 + t) * arow + g->aoff;
    }
    for (int64_t s = 0; s < nsb; s++) {
        __m512 f[2][TILE_T_Q6K];
        FOR_T f[0][t] = f[1][t] = _mm512_setzero_ps();
        for (int64_t gi = 16 * s; gi < 16 * s + 16; gi++) {
            const uint8_t *cw = g->codes + 512 * gi;
            __m512i ia[2][TILE_T_Q6K];
            FOR_T ia[0][t] = ia[1][t] = _mm512_set1_epi32(g->acorr[(t0 + t) * ng + gi]);
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
                const __m512i w0 = _mm512_load_si512(cw + 128 * k),
                              w1 = _mm512_load_si512(cw + 128 * k + 64);
                FOR_T {
                    const __m512i q =
                        bcast4(at[t] + g->astride * (size_t)s + 16 * (gi - 16 * s) + 4 * k);
                    ia[0][t] = _mm512_dpbusd_epi32(ia[0][t], w0, q);
                    ia[1][t] = _mm512_dpbusd_epi32(ia[1][t], w1, q);
                }
            }
            const __m512 d0 = _mm512_load_ps(g->sc + TILE_R * gi),
                         d1 = _mm512_load_ps(g->sc + TILE_R * gi + 16);
            FOR_T {
                f[0][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[0][t]), d0, f[0][t]);
                f[1][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[1][t]), d1, f[1][t]);
            }
        }
        FOR_T {
            const __m512 dy = _mm512_set1_ps(g->ady[(t0 + t) * nsb + s]);
            acc[0][t] = _mm512_fmadd_ps(f[0][t], dy, acc[0][t]);
            acc[1][t] = _mm512_fmadd_ps(f[1][t], dy, acc[1][t]);
        }
    }
    FOR_T {
        _mm512_mask_storeu_ps(y + (t0 + t) * n_out, m0, acc[0][t]);
        _mm512_mask_storeu_ps(y + (t0 + t) * n_out + 16, m1, acc[1][t]);
    }
}

// One tile against NT tokens, NT a compile-time constant in every instantiation.
#define TILE_CASES(CALL)                                                                           \
    switch (nt) {                                                                                  \
    case 1:                                                                                        \
        CALL(1);                                                                                   \
        break;                                                                                     \
    case 2:                                                                                        \
        CALL(2);                                                                                   \
        break;                                                                                     \
    case 3:                                                                                        \
        CALL(3);                                                                                   \
        break;                                                                                     \
    case 4:                                                                                        \
        CALL(4);                                                                                   \
        break;                                                                                     \
    case 5:                                                                                        \
        CALL(5);                                                                                   \
        break;                                                                                     \
    default:                                                                                       \
        CALL(6);                                                                                   \
        break;                                                                                     \
    }

AVX512 static void run_tile(const gemm *g, const uint8_t *a, size_t arow, int64_t t0, int nt,
                            float *y, int64_t n_out, __mmask16 m0, __mmask16 m1) {
    switch (g->fam) {
    case FAM_LEGACY:
#define CALL(N) tile_legacy(g, a, arow, t0, N, false, y, n_out, m0, m1)
        TILE_CASES(CALL)
#undef CALL
        break;
    case FAM_LEGACY_MIN:
#define CALL(N) tile_legacy(g, a, arow, t0, N, true, y, n_out, m0, m1)
        TILE_CASES(CALL)
#undef CALL
        break;
    case FAM_K4:
#define CALL(N) tile_k4(g, a, arow, t0, N, y, n_out, m0, m1)
        TILE_CASES(CALL)
#undef CALL
        break;
    case FAM_Q6K:
#define CALL(N) tile_q6k(g, a, arow, t0, N, y, n_out, m0, m1)
        switch (nt) {
        case 1:
            CALL(1);
            break;
        case 2:
            CALL(2);
            break;
        case 3:
            CALL(3);
            break;
        default:
            CALL(4);
            break;
        }
#undef CALL
        break;
    }
}

AVX512 bool tensor_gemm_avx512(uint32_t wtype, const void *w, size_t wrow, int64_t n_in,
                               int64_t n_out, int64_t r0, int64_t r1, const void *a, size_t arow,
                               int64_t n_tok, float *y) {
    if (!tensor_has_int8_matmul(wtype) || n_in <= 0) return false;
    gemm g = {.n = n_in, .nb = n_in / 32};
    switch (wtype) {
    case ANNEAL_TYPE_Q4_0:
        g.fam = FAM_LEGACY, g.off = -8;
        break;
    case ANNEAL_TYPE_Q5_0:
        g.fam = FAM_LEGACY, g.off = -16;
        break;
    case ANNEAL_TYPE_Q8_0:
        g.fam = FAM_LEGACY, g.off = -128;
        break;
    case ANNEAL_TYPE_Q4_1:
        g.fam = FAM_LEGACY_MIN, g.off = 0;
        break;
    case ANNEAL_TYPE_Q6_K:
        g.fam = FAM_Q6K, g.off = -32;
        break;
    default:
        g.fam = FAM_K4;
        break;
    }
    bool legacy = g.fam == FAM_LEGACY || g.fam == FAM_LEGACY_MIN;
    g.astride = legacy ? sizeof(anneal_block_q8_0) : sizeof(anneal_block_q8_K);
    g.aoff = legacy ? offsetof(anneal_block_q8_0, qs) : offsetof(anneal_block_q8_K, qs);
    // One allocation: tile codes (64-byte aligned), unpacked rows, scales, activation terms.
    size_t n = (size_t)n_in, nt = (size_t)n_tok;
    size_t sz_codes = TILE_R * n, sz_rows = TILE_R * 256, sz_sc = (n / 16) * TILE_R * 4,
           sz_mn = (n / 32) * TILE_R * 4, sz_ady = nt * (n / 32) * 4, sz_corr = nt * (n / 16) * 4,
           sz_aux = nt * (n / 32) * 4;
    size_t total = sz_codes + sz_rows + sz_sc + sz_mn + sz_ady + sz_corr + sz_aux + 64 * 7;
    uint8_t *mem = anneal_aligned_alloc(64, total);
    if (!mem) return false;
    uint8_t *p = mem;
#define TAKE(ptr, type, size)                                                                      \
    do {                                                                                           \
        ptr = (type *)p;                                                                           \
        p += ((size) + 63) & ~(size_t)63;                                                          \
    } while (0)
    TAKE(g.codes, uint8_t, sz_codes);
    TAKE(g.rows, uint8_t, sz_rows);
    TAKE(g.sc, float, sz_sc);
    TAKE(g.mn, float, sz_mn);
    TAKE(g.ady, float, sz_ady);
    TAKE(g.acorr, int32_t, sz_corr);
    TAKE(g.aaux, float, sz_aux);
#undef TAKE
    prep_acts(&g, a, arow, n_tok);
    for (int64_t r = r0; r < r1; r += TILE_R) {
        int nr = r1 - r < TILE_R ? (int)(r1 - r) : TILE_R;
        repack(wtype, (const uint8_t *)w + (size_t)r * wrow, wrow, nr, &g);
        uint32_t m = nr == 32 ? 0xffffffffu : (1u << nr) - 1;
        const int step = g.fam == FAM_Q6K ? TILE_T_Q6K : TILE_T;
        for (int64_t t0 = 0; t0 < n_tok; t0 += step) {
            int ntk = n_tok - t0 < step ? (int)(n_tok - t0) : step;
            run_tile(&g, a, arow, t0, ntk, y + r, n_out, (__mmask16)m, (__mmask16)(m >> 16));
        }
    }
    anneal_free(mem);
    return true;
}

// ---- float weights (F32, F16, BF16) against F32 activations -------------------------
// A register tile of FR weight rows x FT activation rows, one 16-lane accumulator per
// pair, summed across lanes at the end. Rows are taken in blocks that fit in L2 and every
// group of FT activation rows runs over the whole block, so weights come from memory once
// and activations from cache.
#define FR 4
#define FT 4

KERNEL __m512 load_w16(uint32_t type, const uint8_t *row, int64_t i, __mmask16 m) {
    if (type == ANNEAL_TYPE_F32) return _mm512_maskz_loadu_ps(m, (const float *)row + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)row + i);
    if (type == ANNEAL_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

KERNEL void tile_float(uint32_t type, const uint8_t *w, size_t wrow, const float *a, int64_t n,
                       const int nr, const int nt, float *y, int64_t n_out) {
    __m512 acc[FR][FT];
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++)
            acc[r][t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 av[FT];
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++)
            av[t] = _mm512_maskz_loadu_ps(m, a + (size_t)t * (size_t)n + i);
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++) {
            __m512 wv = load_w16(type, w + (size_t)r * wrow, i, m);
#pragma GCC unroll 4
            for (int t = 0; t < nt; t++)
                acc[r][t] = _mm512_fmadd_ps(wv, av[t], acc[r][t]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++)
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++)
            y[(size_t)t * (size_t)n_out + (size_t)r] = _mm512_reduce_add_ps(acc[r][t]);
}

#define FLOAT_CASES(T)                                                                             \
    switch (nr * 8 + nt) {                                                                         \
    case 1 * 8 + 1:                                                                                \
        tile_float(T, w, wrow, a, n, 1, 1, y, n_out);                                              \
        break;                                                                                     \
    case 1 * 8 + 2:                                                                                \
        tile_float(T, w, wrow, a, n, 1, 2, y, n_out);                                              \
        break;                                                                                     \
    case 1 * 8 + 3:                                                                                \
        tile_float(T, w, wrow, a, n, 1, 3, y, n_out);                                              \
        break;                                                                                     \
    case 1 * 8 + 4:                                                                                \
        tile_float(T, w, wrow, a, n, 1, 4, y, n_out);                                              \
        break;                                                                                     \
    case 2 * 8 + 1:                                                                                \
        tile_float(T, w, wrow, a, n, 2, 1, y, n_out);                                              \
        break;                                                                                     \
    case 2 * 8 + 2:                                                                                \
        tile_float(T, w, wrow, a, n, 2, 2, y, n_out);                                              \
        break;                                                                                     \
    case 2 * 8 + 3:                                                                                \
        tile_float(T, w, wrow, a, n, 2, 3, y, n_out);                                              \
        break;                                                                                     \
    case 2 * 8 + 4:                                                                                \
        tile_float(T, w, wrow, a, n, 2, 4, y, n_out);                                              \
        break;                                                                                     \
    case 3 * 8 + 1:                                                                                \
        tile_float(T, w, wrow, a, n, 3, 1, y, n_out);                                              \
        break;                                                                                     \
    case 3 * 8 + 2:                                                                                \
        tile_float(T, w, wrow, a, n, 3, 2, y, n_out);                                              \
        break;                                                                                     \
    case 3 * 8 + 3:                                                                                \
        tile_float(T, w, wrow, a, n, 3, 3, y, n_out);                                              \
        break;                                                                                     \
    case 3 * 8 + 4:                                                                                \
        tile_float(T, w, wrow, a, n, 3, 4, y, n_out);                                              \
        break;                                                                                     \
    case 4 * 8 + 1:                                                                                \
        tile_float(T, w, wrow, a, n, 4, 1, y, n_out);                                              \
        break;                                                                                     \
    case 4 * 8 + 2:                                                                                \
        tile_float(T, w, wrow, a, n, 4, 2, y, n_out);                                              \
        break;                                                                                     \
    case 4 * 8 + 3:                                                                                \
        tile_float(T, w, wrow, a, n, 4, 3, y, n_out);                                              \
        break;                                                                                     \
    default:                                                                                       \
        tile_float(T, w, wrow, a, n, 4, 4, y, n_out);                                              \
        break;                                                                                     \
    }

AVX512 static void run_float(uint32_t type, const uint8_t *w, size_t wrow, const float *a,
                             int64_t n, int nr, int nt, float *y, int64_t n_out) {
    if (type == ANNEAL_TYPE_F32) {
        FLOAT_CASES(ANNEAL_TYPE_F32)
    } else if (type == ANNEAL_TYPE_F16) {
        FLOAT_CASES(ANNEAL_TYPE_F16)
    } else {
        FLOAT_CASES(ANNEAL_TYPE_BF16)
    }
}

AVX512 bool tensor_matmul_float_avx512(uint32_t wtype, const void *w, size_t wrow, int64_t n_in,
                                       int64_t n_out, int64_t r0, int64_t r1, const float *a,
                                       int64_t n_tok, float *y) {
    if (wtype != ANNEAL_TYPE_F32 && wtype != ANNEAL_TYPE_F16 && wtype != ANNEAL_TYPE_BF16)
        return false;
    // Rows per block: about 512 KiB of weights, a multiple of FR.
    int64_t rb = (int64_t)((512u << 10) / (wrow ? wrow : 1));
    rb = rb < FR ? FR : rb / FR * FR;
    for (int64_t b0 = r0; b0 < r1; b0 += rb) {
        int64_t b1 = b0 + rb < r1 ? b0 + rb : r1;
        for (int64_t t = 0; t < n_tok; t += FT) {
            int nt = n_tok - t < FT ? (int)(n_tok - t) : FT;
            for (int64_t r = b0; r < b1; r += FR) {
                int nr = b1 - r < FR ? (int)(b1 - r) : FR;
                run_float(wtype, (const uint8_t *)w + (size_t)r * wrow, wrow,
                          a + (size_t)t * (size_t)n_in, n_in, nr, nt, y + t * n_out + r, n_out);
            }
        }
    }
    return true;
}
