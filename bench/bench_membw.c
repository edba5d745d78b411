// Read bandwidth of this machine: threads summing a buffer far larger than the caches,
// the ceiling for memory-bound decode. Usage: bench_membw [THREADS] [MiB] [REPS]
#include "anneal/base.h"
#include "anneal/tensor.h"

#include <immintrin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct job {
    const uint64_t *buf;
    size_t n;
    uint64_t sums[1024];
} job;

// 16 u64 per step in four independent 256-bit accumulators, so loads, not adds, limit it.
__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint64_t *p, int64_t lo, int64_t hi) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (int64_t i = lo; i < hi; i += 16) {
        a = _mm256_add_epi64(a, _mm256_load_si256((const __m256i *)(p + i)));
        b = _mm256_add_epi64(b, _mm256_load_si256((const __m256i *)(p + i + 4)));
        c = _mm256_add_epi64(c, _mm256_load_si256((const __m256i *)(p + i + 8)));
        d = _mm256_add_epi64(d, _mm256_load_si256((const __m256i *)(p + i + 12)));
    }
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d)));
    return out[0] ^ out[1] ^ out[2] ^ out[3];
}

static uint64_t sum_plain(const uint64_t *p, int64_t lo, int64_t hi) {
    uint64_t s[8] = {0};
    for (int64_t i = lo; i < hi; i += 8)
        for (int k = 0; k < 8; k++) s[k] += p[i + k];
    return s[0] ^ s[1] ^ s[2] ^ s[3] ^ s[4] ^ s[5] ^ s[6] ^ s[7];
}

static void sum_share(void *arg, int ith, int nth) {
    job *j = arg;
    int64_t lo, hi;
    anneal_split((int64_t)j->n / 16, ith, nth, &lo, &hi);
    j->sums[ith] = anneal_cpu_get()->avx2 ? sum_avx2(j->buf, lo * 16, hi * 16) : sum_plain(j->buf, lo * 16, hi * 16);
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : anneal_thread_count();
    size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 1024;
    int reps = argc > 3 ? atoi(argv[3]) : 9;
    if (threads < 1 || threads > 1024 || mib < 64 || reps < 1 || reps > 1000) {
        fprintf(stderr, "usage: bench_membw [THREADS 1..1024] [MiB >= 64] [REPS]\n");
        return 2;
    }
    job j = {.n = mib * 1024 * 1024 / sizeof(uint64_t)};
    uint64_t *buf = anneal_aligned_alloc(64, j.n * sizeof *buf);
    anneal_pool *pool = NULL;
    if (!buf || anneal_pool_new(threads, &pool, NULL) != ANNEAL_OK) {
        fprintf(stderr, "bench_membw: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < j.n; i++) buf[i] = i * 0x9E3779B97F4A7C15ull;
    j.buf = buf;
    double *gbs = calloc((size_t)reps, sizeof *gbs);
    anneal_pool_run(pool, sum_share, &j); // warm-up
    uint64_t check = 0;
    for (int r = 0; r < reps; r++) {
        uint64_t t0 = anneal_time_ns();
        anneal_pool_run(pool, sum_share, &j);
        gbs[r] = (double)(j.n * sizeof *buf) / (double)(anneal_time_ns() - t0);
        for (int t = 0; t < threads; t++) check ^= j.sums[t];
    }
    qsort(gbs, (size_t)reps, sizeof *gbs, cmp);
    printf("read bandwidth: %d threads, %zu MiB, %d reps: median %.2f GB/s (min %.2f, max %.2f) [%llx]\n",
           threads, mib, reps, gbs[reps / 2], gbs[0], gbs[reps - 1], (unsigned long long)(check & 0xff));
    free(gbs);
    anneal_pool_free(pool);
    anneal_free(buf);
    return 0;
}
