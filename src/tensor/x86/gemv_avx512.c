// AVX-512 VNNI matrix-vector kernels for decode (one activation row, memory-bound): four
// weight rows per pass share every activation load and the activation-side terms, so the
// work per weight byte stays below what streaming it from DRAM costs, and a far software
// prefetch keeps enough misses in flight. The activation row is first rearranged once per
// call into the order the weight unpacking produces.
#include "tensor/kernels.h"

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define KERNEL AVX512 static inline __attribute__((always_inline))

#define NR 4 // weight rows per pass
// Software prefetch distance on each weight row stream. Rows are contiguous, so this
// runs ahead through the following rows too; measured on the dev VM (2 threads, DRAM):
// 640 bytes gave q4_0 10-12 GB/s, 4096 16-18, 8192 17.5 and q8_0 20-21 (a plain read loop:
// 20), 16384 no better.
#define PF_BYTES 8192

// `lines` cache lines from p + PF_BYTES into L1 (prefetches never fault, so running past
// the end of the matrix is harmless).
KERNEL void prefetch_ahead(const void *p, const int lines) {
    for (int i = 0; i < lines; i++)
        _mm_prefetch((const char *)p + PF_BYTES + 64 * i, _MM_HINT_T0);
}

// Legacy activation (Q8_0) in pair-of-blocks units of 64 codes. `split` (nibble weights):
// codes [a_i[0:16], a_i+1[0:16], a_i[16:32], a_i+1[16:32]], matching the weight unpack
// [low nibbles i, low nibbles i+1, high nibbles i, high nibbles i+1]; else a_i, a_i+1.
// A missing block i+1 (odd count) is zeros.
typedef struct {
    const uint8_t *qa;   // 64 codes per pair
    const int32_t *corr; // 16 lanes per pair: off * (sum of that lane's 4 codes)
    const float *dy;     // 16 lanes per pair: the activation scale of that lane's block
    const float *dsy;    // 16 lanes per pair: dy * (sum of the lane's 4 codes), for Q4_1's min
} act_legacy;

AVX512 static inline float h2f(anneal_fp16 h) {
    return _cvtsh_ss(h);
}

AVX512 static void prep_legacy(const anneal_block_q8_0 *y, int64_t nb, bool split, int off,
                               uint8_t *qa, int32_t *corr, float *dy, float *dsy) {
    for (int64_t p = 0; p < (nb + 1) / 2; p++) {
        const anneal_block_q8_0 *y0 = y + 2 * p, *y1 = 2 * p + 1 < nb ? y0 + 1 : NULL;
        __m256i a0 = _mm256_loadu_si256((const __m256i *)y0->qs);
        __m256i a1 = y1 ? _mm256_loadu_si256((const __m256i *)y1->qs) : _mm256_setzero_si256();
        float d0 = h2f(y0->d), d1 = y1 ? h2f(y1->d) : 0;
        __m512i z;
        __m512 dv;
        if (split) {
            z = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_permute2x128_si256(a0, a1, 0x20)),
                                   _mm256_permute2x128_si256(a0, a1, 0x31), 1);
            __m128 q0 = _mm_set1_ps(d0), q1 = _mm_set1_ps(d1);
            dv = _mm512_insertf32x4(_mm512_insertf32x4(_mm512_castps128_ps512(q0), q1, 1), q0, 2);
            dv = _mm512_insertf32x4(dv, q1, 3);
        } else {
            z = _mm512_inserti64x4(_mm512_castsi256_si512(a0), a1, 1);
            dv = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(d0), _mm512_set1_ps(d1));
        }
        __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), z);
        _mm512_storeu_si512(qa + 64 * p, z);
        _mm512_storeu_si512(corr + 16 * p, _mm512_mullo_epi32(s, _mm512_set1_epi32(off)));
        _mm512_storeu_ps(dy + 16 * p, dv);
        _mm512_storeu_ps(dsy + 16 * p, _mm512_mul_ps(dv, _mm512_cvtepi32_ps(s)));
    }
}

// Weight scales of blocks i and i+1 (d1 = 0 for a missing block) spread to the lanes.
KERNEL __m512 pair_scales(anneal_fp16 d0, anneal_fp16 d1, __m512i idx) {
    __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)d0 | (uint32_t)d1 << 16)));
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(f));
}

// Q4_0 / Q4_1 / Q5_0 / Q8_0 rows r0..r0+nr against one prepared activation row.
KERNEL void gemv_legacy(uint32_t type, const uint8_t *w, size_t wrow, int64_t nb, const int nr,
                        const act_legacy *ac, float *y) {
    const bool q8 = type == ANNEAL_TYPE_Q8_0;
    const __m512i idx = !q8 ? _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1)
                            : _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i m4 = _mm512_set1_epi8(15), flip = _mm512_set1_epi8((char)0x80);
    // Block layouts: where d and qs sit, and the block size.
    const size_t bs = type == ANNEAL_TYPE_Q4_0   ? sizeof(anneal_block_q4_0)
                      : type == ANNEAL_TYPE_Q4_1 ? sizeof(anneal_block_q4_1)
                      : type == ANNEAL_TYPE_Q5_0 ? sizeof(anneal_block_q5_0)
                                                 : sizeof(anneal_block_q8_0);
    const size_t qoff = type == ANNEAL_TYPE_Q4_0   ? offsetof(anneal_block_q4_0, qs)
                        : type == ANNEAL_TYPE_Q4_1 ? offsetof(anneal_block_q4_1, qs)
                        : type == ANNEAL_TYPE_Q5_0 ? offsetof(anneal_block_q5_0, qs)
                                                   : offsetof(anneal_block_q8_0, qs);
    __m512 acc[NR];
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
        acc[r] = _mm512_setzero_ps();
    for (int64_t p = 0; p < (nb + 1) / 2; p++) {
        const bool two = 2 * p + 1 < nb;
        const __m512i qa = _mm512_loadu_si512(ac->qa + 64 * p);
        const __m512i corr = _mm512_loadu_si512(ac->corr + 16 * p);
        const __m512 dy = _mm512_loadu_ps(ac->dy + 16 * p);
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++) {
            const uint8_t *x0 = w + (size_t)r * wrow + 2 * bs * (size_t)p, *x1 = x0 + bs;
            __m512i z;
            if (!q8) {
                __m128i lo = _mm_loadu_si128((const __m128i *)(x0 + qoff));
                __m128i hi =
                    two ? _mm_loadu_si128((const __m128i *)(x1 + qoff)) : _mm_setzero_si128();
                __m256i t = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
                z = _mm512_and_si512(
                    _mm512_inserti64x4(_mm512_castsi256_si512(t), _mm256_srli_epi16(t, 4), 1), m4);
                if (type == ANNEAL_TYPE_Q5_0) {
                    // 5th bits in the lane order [i 0-15, i+1 0-15, i 16-31, i+1 16-31].
                    uint32_t h0, h1 = 0;
                    memcpy(&h0, x0 + offsetof(anneal_block_q5_0, qh), 4);
                    if (two) memcpy(&h1, x1 + offsetof(anneal_block_q5_0, qh), 4);
                    uint64_t bits = (uint64_t)(h0 & 0xffff) | (uint64_t)(h1 & 0xffff) << 16 |
                                    (uint64_t)(h0 >> 16) << 32 | (uint64_t)(h1 >> 16) << 48;
                    z = _mm512_mask_or_epi32(z, 0xffff, z,
                                             _mm512_maskz_mov_epi8(bits, _mm512_set1_epi8(16)));
                }
            } else {
                __m256i lo = _mm256_loadu_si256((const __m256i *)(x0 + qoff));
                __m256i hi =
                    two ? _mm256_loadu_si256((const __m256i *)(x1 + qoff)) : _mm256_setzero_si256();
                z = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1), flip);
            }
            prefetch_ahead(x0, 1);
            anneal_fp16 d0, d1 = 0;
            memcpy(&d0, x0, 2);
            if (two) memcpy(&d1, x1, 2);
            __m512i dp = _mm512_dpbusd_epi32(corr, z, qa);
            __m512 s = _mm512_mul_ps(pair_scales(d0, d1, idx), dy);
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), s, acc[r]);
            if (type == ANNEAL_TYPE_Q4_1) {
                anneal_fp16 m0, m1 = 0;
                memcpy(&m0, x0 + offsetof(anneal_block_q4_1, m), 2);
                if (two) memcpy(&m1, x1 + offsetof(anneal_block_q4_1, m), 2);
                acc[r] = _mm512_fmadd_ps(pair_scales(m0, m1, idx),
                                         _mm512_loadu_ps(ac->dsy + 16 * p), acc[r]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
        y[r] = _mm512_reduce_add_ps(acc[r]);
}

// Sub-block scales and mins of a Q4_K/Q5_K block as 8 bytes each (tensor_scale_min_k4 for
// all j at once with 32-bit masks).
KERNEL void k4_scales(const uint8_t *s, uint64_t *sc, uint64_t *m) {
    uint32_t u0, u1, u2;
    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    const uint32_t k6 = 0x3f3f3f3f, k4 = 0x0f0f0f0f, k2 = 0x03030303;
    *sc = (uint64_t)(u0 & k6) | (uint64_t)((u2 & k4) | ((u0 >> 6) & k2) << 4) << 32;
    *m = (uint64_t)(u1 & k6) | (uint64_t)(((u2 >> 4) & k4) | ((u1 >> 6) & k2) << 4) << 32;
}

// Q4_K / Q5_K rows. bp: per super-block the 8 int16 sums of activation codes per sub-block.
KERNEL void gemv_k4(uint32_t type, const uint8_t *w, size_t wrow, int64_t nsb, const int nr,
                    const anneal_block_q8_K *ya, const int16_t *bp, float *y) {
    const bool q5 = type == ANNEAL_TYPE_Q5_K;
    const __m512i m4 = _mm512_set1_epi8(15), one = _mm512_set1_epi8(1);
    __m512i idx[4];
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++)
        idx[c] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16((short)(2 * c))),
                                    _mm256_set1_epi16((short)(2 * c + 1)), 1);
    __m512 acc[NR];
    __m128 accm[NR];
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++) {
        acc[r] = _mm512_setzero_ps();
        accm[r] = _mm_setzero_ps();
    }
    for (int64_t s = 0; s < nsb; s++) {
        const __m128i bps = _mm_loadu_si128((const __m128i *)(bp + 8 * s));
        const float dy = ya[s].d;
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++) {
            const uint8_t *scales, *qs, *qh = NULL;
            anneal_fp16 dh, mh;
            if (q5) {
                const anneal_block_q5_K *x = (const anneal_block_q5_K *)(w + (size_t)r * wrow) + s;
                scales = x->scales, qs = x->qs, qh = x->qh, dh = x->d, mh = x->dmin;
                prefetch_ahead(x, 3);
            } else {
                const anneal_block_q4_K *x = (const anneal_block_q4_K *)(w + (size_t)r * wrow) + s;
                scales = x->scales, qs = x->qs, dh = x->d, mh = x->dmin;
                prefetch_ahead(x, 3);
            }
            uint64_t sc8, m8;
            k4_scales(scales, &sc8, &m8);
            const __m512i sc16 =
                _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc8)));
            __m512i hb = q5 ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qh))
                            : _mm512_setzero_si512();
            __m512i sumi = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
                __m512i z = _mm512_and_si512(
                    _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1), m4);
                if (q5) {
                    // Low half: bit 2c of qh, high half: bit 2c+1.
                    __m512i bits = _mm512_and_si512(
                        _mm512_srlv_epi16(
                            hb, _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * c)),
                                                   _mm256_set1_epi16((short)(2 * c + 1)), 1)),
                        one);
                    z = _mm512_or_si512(z, _mm512_slli_epi16(bits, 4));
                }
                __m512i p = _mm512_maddubs_epi16(z, _mm512_loadu_si512(ya[s].qs + 64 * c));
                sumi = _mm512_add_epi32(
                    sumi, _mm512_madd_epi16(p, _mm512_permutexvar_epi16(idx[c], sc16)));
            }
            __m128i mm = _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)m8)), bps);
            acc[r] =
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(h2f(dh) * dy), acc[r]);
            accm[r] = _mm_fmadd_ps(_mm_cvtepi32_ps(mm), _mm_set1_ps(h2f(mh) * dy), accm[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++) {
        __m128 t = accm[r];
        t = _mm_add_ps(t, _mm_movehl_ps(t, t));
        t = _mm_add_ss(t, _mm_movehdup_ps(t));
        y[r] = _mm512_reduce_add_ps(acc[r]) - _mm_cvtss_f32(t);
    }
}

KERNEL void gemv_q6k(const uint8_t *w, size_t wrow, int64_t nsb, const int nr,
                     const anneal_block_q8_K *ya, float *y) {
    const __m512i m4 = _mm512_set1_epi8(15), m3 = _mm512_set1_epi8(3);
    const __m512i c02 = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    const __m512i c46 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    __m512i idx[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) // int16 lane l of quarter k of a super-block: scale 4k + l/8
        idx[k] = _mm512_add_epi16(
            _mm512_set1_epi16((short)(4 * k)),
            _mm512_srli_epi16(_mm512_setr_epi32(0x00010000, 0x00030002, 0x00050004, 0x00070006,
                                                0x00090008, 0x000b000a, 0x000d000c, 0x000f000e,
                                                0x00110010, 0x00130012, 0x00150014, 0x00170016,
                                                0x00190018, 0x001b001a, 0x001d001c, 0x001f001e),
                              3));
    __m512 acc[NR];
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
        acc[r] = _mm512_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const __m256i bs = _mm256_loadu_si256((const __m256i *)ya[s].bsums);
        const float dy = ya[s].d;
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++) {
            const anneal_block_q6_K *x = (const anneal_block_q6_K *)(w + (size_t)r * wrow) + s;
            prefetch_ahead(x, 4);
            const __m256i sc16y = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
            const __m512i sc16 = _mm512_castsi256_si512(sc16y);
            __m512i sumi = _mm512_setzero_si512();
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                __m512i ql = _mm512_loadu_si512(x->ql + 64 * h);
                __m512i qh =
                    _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x->qh + 32 * h)));
                __m512i z01 = _mm512_or_si512(
                    _mm512_and_si512(ql, m4),
                    _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, c02), m3), 4));
                __m512i z23 = _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                    _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, c46), m3), 4));
                __m512i p01 = _mm512_maddubs_epi16(z01, _mm512_loadu_si512(ya[s].qs + 128 * h));
                __m512i p23 =
                    _mm512_maddubs_epi16(z23, _mm512_loadu_si512(ya[s].qs + 128 * h + 64));
                sumi = _mm512_add_epi32(
                    sumi, _mm512_madd_epi16(p01, _mm512_permutexvar_epi16(idx[2 * h], sc16)));
                sumi = _mm512_add_epi32(
                    sumi, _mm512_madd_epi16(p23, _mm512_permutexvar_epi16(idx[2 * h + 1], sc16)));
            }
            // The -32 offset: 32 * sum_g scale_g * bsum_g, folded in exactly in int32.
            __m256i summ = _mm256_madd_epi16(sc16y, bs);
            sumi = _mm512_sub_epi32(sumi, _mm512_zextsi256_si512(_mm256_slli_epi32(summ, 5)));
            acc[r] =
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(h2f(x->d) * dy), acc[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
        y[r] = _mm512_reduce_add_ps(acc[r]);
}

#define ROWS_CASES(CALL)                                                                           \
    switch (nr) {                                                                                  \
    case 1:                                                                                        \
        CALL(1);                                                                                   \
        break;                                                                                     \
    case 2:                                                                                        \
        CALL(2);                                                                                   \
        break;                                                                                     \
    case 3:                                                                                        \
        CALL(3);                                                                                   \
        break;                                                                                     \
    default:                                                                                       \
        CALL(4);                                                                                   \
        break;                                                                                     \
    }

AVX512 bool tensor_gemv_avx512(uint32_t wtype, const void *w, size_t wrow, int64_t n_in,
                               int64_t n_out, int64_t r0, int64_t r1, const void *a, size_t arow,
                               int64_t n_tok, float *y) {
    if (!tensor_has_int8_matmul(wtype) || n_in <= 0) return false;
    const uint8_t *wb = w, *ab = a;
    bool legacy = anneal_vec_dot_type(wtype) == ANNEAL_TYPE_Q8_0;
    int64_t nb = n_in / ANNEAL_QK, np = (nb + 1) / 2, nsb = n_in / ANNEAL_QK_K;
    size_t per_tok = legacy ? (size_t)np * 256 : (size_t)nsb * 16;
    // Decode calls this for every projection of every token: prepared activations of up
    // to 32 KiB (one token of n_in <= 8192 for the legacy types, 4 bytes per element; far
    // more for the K-quants) live on the stack, not the heap.
    _Alignas(64) uint8_t local[32768];
    size_t need = per_tok * (size_t)n_tok;
    uint8_t *mem = need <= sizeof local ? local : anneal_aligned_alloc(64, need);
    if (!mem) return false;
    for (int64_t t = 0; t < n_tok; t++) {
        uint8_t *m = mem + per_tok * (size_t)t;
        if (legacy) {
            int off = wtype == ANNEAL_TYPE_Q4_0   ? -8
                      : wtype == ANNEAL_TYPE_Q5_0 ? -16
                      : wtype == ANNEAL_TYPE_Q8_0 ? -128
                                                  : 0;
            prep_legacy((const anneal_block_q8_0 *)(ab + (size_t)t * arow), nb,
                        wtype != ANNEAL_TYPE_Q8_0, off, m, (int32_t *)(m + 64 * np),
                        (float *)(m + 128 * np), (float *)(m + 192 * np));
        } else {
            const anneal_block_q8_K *ya = (const anneal_block_q8_K *)(ab + (size_t)t * arow);
            int16_t *bp = (int16_t *)m;
            for (int64_t s = 0; s < nsb; s++)
                for (int j = 0; j < 8; j++)
                    bp[8 * s + j] = (int16_t)(ya[s].bsums[2 * j] + ya[s].bsums[2 * j + 1]);
        }
    }
    for (int64_t r = r0; r < r1; r += NR) {
        int nr = r1 - r < NR ? (int)(r1 - r) : NR;
        const uint8_t *wr = wb + (size_t)r * wrow;
        for (int64_t t = 0; t < n_tok; t++) {
            const uint8_t *m = mem + per_tok * (size_t)t;
            float out[NR];
            if (legacy) {
                act_legacy ac = {m, (const int32_t *)(m + 64 * np), (const float *)(m + 128 * np),
                                 (const float *)(m + 192 * np)};
                // The type is a constant in each instantiation, so its branches fold away.
#define CALL(N) gemv_legacy(T, wr, wrow, nb, N, &ac, out)
                if (wtype == ANNEAL_TYPE_Q4_0) {
#define T ANNEAL_TYPE_Q4_0
                    ROWS_CASES(CALL)
#undef T
                } else if (wtype == ANNEAL_TYPE_Q4_1) {
#define T ANNEAL_TYPE_Q4_1
                    ROWS_CASES(CALL)
#undef T
                } else if (wtype == ANNEAL_TYPE_Q5_0) {
#define T ANNEAL_TYPE_Q5_0
                    ROWS_CASES(CALL)
#undef T
                } else {
#define T ANNEAL_TYPE_Q8_0
                    ROWS_CASES(CALL)
#undef T
                }
#undef CALL
            } else if (wtype == ANNEAL_TYPE_Q6_K) {
#define CALL(N) gemv_q6k(wr, wrow, nsb, N, (const anneal_block_q8_K *)(ab + (size_t)t * arow), out)
                ROWS_CASES(CALL)
#undef CALL
            } else {
#define CALL(N)                                                                                    \
    gemv_k4(T, wr, wrow, nsb, N, (const anneal_block_q8_K *)(ab + (size_t)t * arow),               \
            (const int16_t *)m, out)
                if (wtype == ANNEAL_TYPE_Q4_K) {
#define T ANNEAL_TYPE_Q4_K
                    ROWS_CASES(CALL)
#undef T
                } else {
#define T ANNEAL_TYPE_Q5_K
                    ROWS_CASES(CALL)
#undef T
                }
#undef CALL
            }
            memcpy(y + t * n_out + r, out, sizeof(float) * (size_t)nr);
        }
    }
    if (mem != local) anneal_free(mem);
    return true;
}
