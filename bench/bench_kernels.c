// Microbenchmark of anneal_matmul: decode GEMV (one activation row) over enough weight
// matrices that they stream from DRAM, in GB/s of weights read, and prefill GEMM (128
// activation rows) on TinyLlama's shapes, in GFLOP/s; per type, kernel level and thread
// count (1 and 2, through the thread pool); then the Q8_0/Q8_K activation quantizers.
// Usage: bench_kernels [min_seconds_per_case | quick] [type ...]
// `quick` measures only the active kernel level, GEMV from DRAM and the 2048 x 2048 GEMM,
// best of 3 short runs each: enough to catch a quiet moment on a shared machine.
#include "anneal/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double now(void) {
    return (double)anneal_time_ns() * 1e-9;
}

typedef struct {
    anneal_kernel_level level;
    uint32_t type;
    const uint8_t *w;
    int64_t n_in, n_out, n_tok;
    const uint8_t *a;
    float *y;
} job;

static void run_job(void *arg, int ith, int nth) {
    job *j = arg;
    anneal_matmul_at(j->level, j->type, j->w, j->n_in, j->n_out, j->a, j->n_tok, j->y, ith, nth);
}

static uint64_t nbytes(uint32_t type, int64_t n) {
    uint64_t b = 0;
    anneal_type_nbytes(type, (uint64_t)n, &b);
    return b;
}

// Weights from rows of uniform noise; quantizing every row is slow, so one set of rows is
// quantized and copied.
static uint8_t *make_weights(uint32_t type, int64_t n_in, int64_t n_rows) {
    enum { DISTINCT = 64 };
    uint64_t wr = nbytes(type, n_in);
    uint8_t *w = malloc(wr * (uint64_t)n_rows), *src = malloc(wr * DISTINCT);
    float *x = malloc(sizeof(float) * (size_t)n_in);
    for (int r = 0; r < DISTINCT; r++) {
        for (int64_t i = 0; i < n_in; i++)
            x[i] = (float)rand() / RAND_MAX - 0.5f;
        anneal_quantize(type, x, src + r * wr, n_in);
    }
    for (int64_t r = 0; r < n_rows; r++)
        memcpy(w + (uint64_t)r * wr, src + (uint64_t)(r % DISTINCT) * wr, wr);
    free(src);
    free(x);
    return w;
}

static uint8_t *make_acts(uint32_t type, int64_t n_in, int64_t n_tok) {
    uint32_t at = anneal_vec_dot_type(type);
    uint64_t ar = nbytes(at, n_in);
    uint8_t *a = malloc(ar * (uint64_t)n_tok);
    float *x = malloc(sizeof(float) * (size_t)n_in);
    for (int64_t t = 0; t < n_tok; t++) {
        for (int64_t i = 0; i < n_in; i++)
            x[i] = (float)rand() / RAND_MAX - 0.5f;
        anneal_quantize(at, x, a + (uint64_t)t * ar, n_in);
    }
    free(x);
    return a;
}

// Seconds per call of jobs[0..n) run back to back (cycling), at least min_s in total.
static double time_jobs(anneal_pool *pool, job *jobs, int n, double min_s) {
    anneal_pool_run(pool, run_job, &jobs[0]);
    int reps = 0;
    double t0 = now(), el;
    do {
        anneal_pool_run(pool, run_job, &jobs[reps % n]);
        reps++;
        el = now() - t0;
    } while (el < min_s || reps < n);
    return el / reps;
}

// The fastest of `reps` timings.
static double best_of(int reps, anneal_pool *pool, job *jobs, int n, double min_s) {
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double s = time_jobs(pool, jobs, n, min_s);
        if (r == 0 || s < best) best = s;
    }
    return best;
}

int main(int argc, char **argv) {
    bool quick = argc > 1 && strcmp(argv[1], "quick") == 0;
    double min_s = quick ? 0.15 : argc > 1 ? atof(argv[1]) : 0.5;
    int tries = quick ? 3 : 1;
    anneal_kernel_level active = anneal_kernels_level();
    const uint32_t all[] = {ANNEAL_TYPE_F32,  ANNEAL_TYPE_F16,  ANNEAL_TYPE_BF16, ANNEAL_TYPE_Q8_0,
                            ANNEAL_TYPE_Q4_0, ANNEAL_TYPE_Q4_1, ANNEAL_TYPE_Q5_0, ANNEAL_TYPE_Q4_K,
                            ANNEAL_TYPE_Q5_K, ANNEAL_TYPE_Q6_K};
    uint32_t types[16];
    int ntypes = 0;
    for (int i = 2; i < argc && ntypes < 16; i++)
        if (anneal_type_from_name(argv[i], &types[ntypes]) == ANNEAL_OK) ntypes++;
    if (ntypes == 0) {
        memcpy(types, all, sizeof all);
        ntypes = (int)(sizeof all / sizeof all[0]);
    }
    const char *levels[] = {"ref", "avx2", "avx512"};
    char cpu[256];
    anneal_cpu_describe(cpu, sizeof cpu);
    printf("cpu: %s\n", cpu);
    anneal_pool *pools[2];
    for (int p = 0; p < 2; p++)
        if (anneal_pool_new(p + 1, &pools[p], NULL) != ANNEAL_OK) return 1;
    srand(1);

    // Decode: n_tok = 1 over 2048 x 5632 matrices, enough of them to exceed ~200 MB of
    // f32 (so even q4_0 weights are well past the last-level cache).
    enum { GV_IN = 2048, GV_OUT = 5632 };
    printf("\nGEMV (n_tok 1, %d x %d per matrix, cycling through matrices past the LLC)\n", GV_OUT,
           GV_IN);
    printf("%-6s %-7s %8s %8s %8s %9s\n", "type", "level", "threads", "GB/s", "ms/call",
           "LLC GB/s");
    for (int ti = 0; ti < ntypes; ti++) {
        uint32_t type = types[ti];
        uint64_t wr = nbytes(type, GV_IN), per = wr * GV_OUT;
        int nmat = (int)(160000000 / per) + 1;
        uint8_t *w = make_weights(type, GV_IN, (int64_t)GV_OUT * nmat);
        uint8_t *a = make_acts(type, GV_IN, 1);
        float *y = malloc(sizeof(float) * GV_OUT);
        job *jobs = malloc(sizeof(job) * (size_t)nmat);
        for (int lv = 0; lv < 3; lv++) {
            if (!anneal_vec_dot_at(type, (anneal_kernel_level)lv)) continue;
            if (lv == 0) continue; // the reference is far too slow to matter here
            if (quick && lv != (int)active) continue;
            for (int m = 0; m < nmat; m++)
                jobs[m] = (job){
                    (anneal_kernel_level)lv, type, w + (uint64_t)m * per, GV_IN, GV_OUT, 1, a, y};
            for (int p = 0; p < 2; p++) {
                double s = best_of(tries, pools[p], jobs, nmat, min_s);
                // The same with one matrix, which stays in the last-level cache: the
                // kernel's own speed, without DRAM as the limit.
                double sc = quick ? 0 : time_jobs(pools[p], jobs, 1, min_s / 2);
                printf("%-6s %-7s %8d %8.2f %8.3f ", anneal_type_get(type)->name, levels[lv], p + 1,
                       (double)per / s / 1e9, s * 1e3);
                if (quick)
                    printf("%9s\n", "-");
                else
                    printf("%9.2f\n", (double)per / sc / 1e9);
                fflush(stdout);
            }
        }
        free(jobs);
        free(w);
        free(a);
        free(y);
    }

    // Prefill: n_tok = 128 on TinyLlama's attention (2048 x 2048), ffn up/gate
    // (5632 x 2048) and ffn down (2048 x 5632) shapes.
    enum { NTOK = 128 };
    const int64_t shapes[3][2] = {{2048, 2048}, {5632, 2048}, {2048, 5632}}; // n_out, n_in
    printf("\nGEMM (n_tok %d)\n%-6s %-7s %-11s %8s %8s %8s\n", NTOK, "type", "level",
           "n_out x n_in", "threads", "GFLOP/s", "ms/call");
    for (int ti = 0; ti < ntypes; ti++) {
        uint32_t type = types[ti];
        for (int si = 0; si < (quick ? 1 : 3); si++) {
            int64_t n_out = shapes[si][0], n_in = shapes[si][1];
            uint8_t *w = make_weights(type, n_in, n_out), *a = make_acts(type, n_in, NTOK);
            float *y = malloc(sizeof(float) * (size_t)(n_out * NTOK));
            for (int lv = 1; lv < 3; lv++) {
                if (!anneal_vec_dot_at(type, (anneal_kernel_level)lv)) continue;
                if (quick && lv != (int)active) continue;
                job j = {(anneal_kernel_level)lv, type, w, n_in, n_out, NTOK, a, y};
                for (int p = 0; p < 2; p++) {
                    double s = best_of(tries, pools[p], &j, 1, min_s);
                    char shp[32];
                    snprintf(shp, sizeof shp, "%lldx%lld", (long long)n_out, (long long)n_in);
                    printf("%-6s %-7s %-11s %8d %8.1f %8.2f\n", anneal_type_get(type)->name,
                           levels[lv], shp, p + 1, 2.0 * n_out * n_in * NTOK / s / 1e9, s * 1e3);
                    fflush(stdout);
                }
            }
            free(w);
            free(a);
            free(y);
        }
    }
    if (quick) {
        for (int p = 0; p < 2; p++)
            anneal_pool_free(pools[p]);
        return 0;
    }

    // Activation quantization (one thread): 128 rows of 5632, as the ffn down input.
    printf("\nActivation quantize (128 x 5632)\n%-6s %-7s %10s\n", "type", "level", "ns/elem");
    enum { QROWS = 128, QN = 5632 };
    float *qx = malloc(sizeof(float) * QROWS * QN);
    uint8_t *qo =
        malloc(nbytes(ANNEAL_TYPE_Q8_0, QN) * QROWS + nbytes(ANNEAL_TYPE_Q8_K, QN) * QROWS);
    for (int i = 0; i < QROWS * QN; i++)
        qx[i] = (float)rand() / RAND_MAX - 0.5f;
    const uint32_t qtypes[] = {ANNEAL_TYPE_Q8_0, ANNEAL_TYPE_Q8_K};
    for (int qi = 0; qi < 2; qi++)
        for (int lv = 0; lv < 3; lv++) {
            if (anneal_quantize_rows_at((anneal_kernel_level)lv, qtypes[qi], qx, qo, QN, QROWS, 0,
                                        1) != ANNEAL_OK)
                continue;
            int reps = 0;
            double t0 = now(), el;
            do {
                anneal_quantize_rows_at((anneal_kernel_level)lv, qtypes[qi], qx, qo, QN, QROWS, 0,
                                        1);
                reps++;
                el = now() - t0;
            } while (el < min_s / 4);
            printf("%-6s %-7s %10.3f\n", anneal_type_get(qtypes[qi])->name, levels[lv],
                   el / reps / (QROWS * QN) * 1e9);
        }
    free(qx);
    free(qo);
    for (int p = 0; p < 2; p++)
        anneal_pool_free(pools[p]);
    return 0;
}
