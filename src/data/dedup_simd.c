// MinHash kernels for dedup: the plain-C reference and AVX2 / AVX-512 versions (per-function
// target attributes, chosen at run time), all giving bit-identical signatures.
#include "data/dedup_kernels.h"

#include "anneal/tensor.h"

#include <immintrin.h>

void dedup_minhash_ref(const uint32_t *shingles, size_t n, const uint32_t *seeds, size_t n_perm,
                       uint32_t *sig) {
    size_t np = dedup_perm_padded(n_perm);
    for (size_t j = 0; j < np; j++) {
        uint32_t m = UINT32_MAX;
        for (size_t i = 0; i < n; i++) {
            uint32_t h = dedup_perm(shingles[i], seeds[j]);
            if (h < m) m = h;
        }
        sig[j] = m;
    }
}

#define AVX2 __attribute__((target("avx2")))
#define AVX512 __attribute__((target("avx512f,avx2")))

// Up to this many vectors of permutations stay in registers while the shingles stream by.
#define BLOCK_VECS 8

AVX2 static inline __m256i perm8(__m256i x, __m256i seed) {
    __m256i h = _mm256_xor_si256(x, seed);
    h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
    h = _mm256_mullo_epi32(h, _mm256_set1_epi32((int)0x85EBCA6Bu));
    h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 13));
    h = _mm256_mullo_epi32(h, _mm256_set1_epi32((int)0xC2B2AE35u));
    return _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
}

// One block of bv vectors (a compile-time constant after inlining, so the minima live in
// registers while every shingle goes by once).
#define BLOCK_BODY(VEC, SET1, LOADU, STOREU, MIN, PERM, LANES)                                     \
    VEC s[BLOCK_VECS], m[BLOCK_VECS];                                                              \
    for (int k = 0; k < bv; k++) {                                                                 \
        s[k] = LOADU(seeds + k * LANES);                                                           \
        m[k] = SET1(-1);                                                                           \
    }                                                                                              \
    for (size_t i = 0; i < n; i++) {                                                               \
        VEC x = SET1((int)shingles[i]);                                                            \
        for (int k = 0; k < bv; k++)                                                               \
            m[k] = MIN(m[k], PERM(x, s[k]));                                                       \
    }                                                                                              \
    for (int k = 0; k < bv; k++)                                                                   \
        STOREU(sig + k * LANES, m[k]);

#define LOADU256(p) _mm256_loadu_si256((const __m256i *)(p))
#define STOREU256(p, v) _mm256_storeu_si256((__m256i *)(p), v)

AVX2 static inline __attribute__((always_inline)) void
block8(const uint32_t *shingles, size_t n, const uint32_t *seeds, uint32_t *sig, const int bv){
    BLOCK_BODY(__m256i, _mm256_set1_epi32, LOADU256, STOREU256, _mm256_min_epu32, perm8, 8)}

// Calls a block function with a literal vector count so each case is fully unrolled.
#define DISPATCH_BLOCKS(FN, LANES)                                                                 \
    size_t nv = dedup_perm_padded(n_perm) / LANES;                                                 \
    for (size_t v0 = 0; v0 < nv; v0 += BLOCK_VECS) {                                               \
        size_t bv = nv - v0 < BLOCK_VECS ? nv - v0 : BLOCK_VECS;                                   \
        const uint32_t *sd = seeds + v0 * LANES;                                                   \
        uint32_t *sg = sig + v0 * LANES;                                                           \
        switch (bv) {                                                                              \
        case 1:                                                                                    \
            FN(shingles, n, sd, sg, 1);                                                            \
            break;                                                                                 \
        case 2:                                                                                    \
            FN(shingles, n, sd, sg, 2);                                                            \
            break;                                                                                 \
        case 3:                                                                                    \
            FN(shingles, n, sd, sg, 3);                                                            \
            break;                                                                                 \
        case 4:                                                                                    \
            FN(shingles, n, sd, sg, 4);                                                            \
            break;                                                                                 \
        case 5:                                                                                    \
            FN(shingles, n, sd, sg, 5);                                                            \
            break;                                                                                 \
        case 6:                                                                                    \
            FN(shingles, n, sd, sg, 6);                                                            \
            break;                                                                                 \
        case 7:                                                                                    \
            FN(shingles, n, sd, sg, 7);                                                            \
            break;                                                                                 \
        default:                                                                                   \
            FN(shingles, n, sd, sg, 8);                                                            \
            break;                                                                                 \
        }                                                                                          \
    }

AVX2 void dedup_minhash_avx2(const uint32_t *shingles, size_t n, const uint32_t *seeds,
                             size_t n_perm, uint32_t *sig){DISPATCH_BLOCKS(block8, 8)}

AVX512 static inline __m512i perm16(__m512i x, __m512i seed) {
    __m512i h = _mm512_xor_si512(x, seed);
    h = _mm512_xor_si512(h, _mm512_srli_epi32(h, 16));
    h = _mm512_mullo_epi32(h, _mm512_set1_epi32((int)0x85EBCA6Bu));
    h = _mm512_xor_si512(h, _mm512_srli_epi32(h, 13));
    h = _mm512_mullo_epi32(h, _mm512_set1_epi32((int)0xC2B2AE35u));
    return _mm512_xor_si512(h, _mm512_srli_epi32(h, 16));
}

#define LOADU512(p) _mm512_loadu_si512(p)
#define STOREU512(p, v) _mm512_storeu_si512(p, v)

AVX512 static inline __attribute__((always_inline)) void
block16(const uint32_t *shingles, size_t n, const uint32_t *seeds, uint32_t *sig, const int bv){
    BLOCK_BODY(__m512i, _mm512_set1_epi32, LOADU512, STOREU512, _mm512_min_epu32, perm16, 16)}

AVX512 void dedup_minhash_avx512(const uint32_t *shingles, size_t n, const uint32_t *seeds,
                                 size_t n_perm, uint32_t *sig){DISPATCH_BLOCKS(block16, 16)}

dedup_minhash_fn dedup_minhash_at(int level) {
    const anneal_cpu *c = anneal_cpu_get();
    if (level >= 2 && c->avx512f && c->avx2) return dedup_minhash_avx512;
    if (level >= 1 && c->avx2) return dedup_minhash_avx2;
    return dedup_minhash_ref;
}

dedup_minhash_fn dedup_minhash_get(void) {
    return dedup_minhash_at((int)anneal_kernels_level());
}
