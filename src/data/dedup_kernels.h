// Internal interface of the dedup MinHash kernels: the plain-C reference and its SIMD twins.
#ifndef ANNEAL_DATA_DEDUP_KERNELS_H
#define ANNEAL_DATA_DEDUP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

// Permutation j of a 32-bit shingle hash x: murmur3's 32-bit finalizer applied to x ^ seed_j.
// The finalizer is a bijection with full avalanche, so distinct seeds give unrelated
// orderings of the shingles; 32-bit lanes let AVX-512 do 16 permutations per instruction.
static inline uint32_t dedup_perm(uint32_t x, uint32_t seed) {
    uint32_t h = x ^ seed;
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

// Permutations are computed in groups of 16: seeds and sig hold round_up(n_perm, 16) values.
#define DEDUP_LANES 16
static inline size_t dedup_perm_padded(size_t n_perm) {
    return (n_perm + DEDUP_LANES - 1) / DEDUP_LANES * DEDUP_LANES;
}

// sig[j] = min over the n shingles of dedup_perm(shingles[i], seeds[j]), for j below
// dedup_perm_padded(n_perm); UINT32_MAX everywhere when n is 0.
typedef void (*dedup_minhash_fn)(const uint32_t *shingles, size_t n, const uint32_t *seeds,
                                 size_t n_perm, uint32_t *sig);

void dedup_minhash_ref(const uint32_t *shingles, size_t n, const uint32_t *seeds, size_t n_perm,
                       uint32_t *sig);
// Only call these when anneal_cpu_get() reports avx2 / avx512f.
void dedup_minhash_avx2(const uint32_t *shingles, size_t n, const uint32_t *seeds, size_t n_perm,
                        uint32_t *sig);
void dedup_minhash_avx512(const uint32_t *shingles, size_t n, const uint32_t *seeds, size_t n_perm,
                          uint32_t *sig);

// The kernel for a level (0 ref, 1 avx2, 2 avx512; capped by what this CPU has), and the
// one in use (anneal_kernels_level(), so ANNEAL_KERNELS=ref|avx2|avx512 applies).
dedup_minhash_fn dedup_minhash_at(int level);
dedup_minhash_fn dedup_minhash_get(void);

#endif
