// Unpacking helpers shared by the AVX2 dots and the AVX-512 GEMM repack (AVX2 subset, so
// they inline into either).
#ifndef ANNEAL_TENSOR_UNPACK_AVX2_H
#define ANNEAL_TENSOR_UNPACK_AVX2_H

#include "anneal/tensor.h"

#include <immintrin.h>

// The 128 six-bit codes of half h (0 or 1) of a Q6_K block as unsigned bytes 0..63:
// q[k] holds elements 128*h + 32*k .. +32.
__attribute__((target("avx2"))) static inline void unpack_q6_K_half(const anneal_block_q6_K *x,
                                                                     int h, __m256i q[4]) {
    const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3);
    __m256i ql0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h));
    __m256i ql1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32));
    __m256i qh = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
    q[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4));
    q[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4));
}

#endif
