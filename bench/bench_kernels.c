// Microbenchmark of the vec_dot kernels: one activation row against a 4096 x 4096 weight
// matrix, per type and per kernel level; prints GB/s of weights read and GFLOP/s.
// Usage: bench_kernels [min_seconds_per_case]   (single thread)
#include "anneal/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { N_IN = 4096, N_OUT = 4096 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    double min_s = argc > 1 ? atof(argv[1]) : 0.5;
    const uint32_t types[] = {
        ANNEAL_TYPE_F32,  ANNEAL_TYPE_F16,  ANNEAL_TYPE_BF16, ANNEAL_TYPE_Q8_0, ANNEAL_TYPE_Q4_0,
        ANNEAL_TYPE_Q4_1, ANNEAL_TYPE_Q5_0, ANNEAL_TYPE_Q4_K, ANNEAL_TYPE_Q5_K, ANNEAL_TYPE_Q6_K};
    const char *levels[] = {"ref", "avx2", "avx512"};
    char cpu[256];
    anneal_cpu_describe(cpu, sizeof cpu);
    printf("cpu: %s\n%-6s %-7s %10s %10s %12s\n", cpu, "type", "level", "GB/s", "GFLOP/s",
           "ms/matvec");
    float *x = malloc(sizeof(float) * N_IN);
    float *y = malloc(sizeof(float) * N_OUT);
    srand(1);
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        uint32_t type = types[t], at = anneal_vec_dot_type(type);
        uint64_t wr, ar;
        anneal_type_nbytes(type, N_IN, &wr);
        anneal_type_nbytes(at, N_IN, &ar);
        uint8_t *w = malloc(wr * N_OUT), *a = malloc(ar);
        for (int r = 0; r < N_OUT; r++) {
            for (int i = 0; i < N_IN; i++)
                x[i] = (float)rand() / RAND_MAX - 0.5f;
            anneal_quantize(type, x, w + r * wr, N_IN);
        }
        anneal_quantize(at, x, a, N_IN);
        for (int lv = 0; lv < 3; lv++) {
            anneal_vec_dot_fn fn = anneal_vec_dot_at(type, (anneal_kernel_level)lv);
            if (!fn) continue;
            int reps = 0;
            double t0 = now(), el;
            do {
                for (int r = 0; r < N_OUT; r++)
                    fn(N_IN, &y[r], w + r * wr, a);
                reps++;
                el = now() - t0;
            } while (el < min_s);
            double per = el / reps;
            printf("%-6s %-7s %10.2f %10.2f %12.3f\n", anneal_type_get(type)->name, levels[lv],
                   (double)wr * N_OUT / per / 1e9, 2.0 * N_IN * N_OUT / per / 1e9, per * 1e3);
            fflush(stdout);
        }
        free(w);
        free(a);
    }
    free(x);
    free(y);
    return 0;
}
