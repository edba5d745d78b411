// Training throughput: forward + backward + AdamW in F32 on a llama of a given shape with
// random weights and tokens (default: dim 288, 6 layers, 6 heads, ffn 768, vocab 4096,
// sequence 256, batch 8, 2 threads), in tokens/s and GFLOP/s. bench/train_torch.py is the
// PyTorch side of the same measurement.
//   bench_train [--dim 288] [--layers 6] [--heads 6] [--kv-heads 6] [--ffn 768]
//               [--vocab 4096] [--seq 256] [--batch 8] [--threads 2] [--steps 5] [--warmup 1]
#include "anneal/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

// CPU seconds this process has used (all threads): on a shared machine, tokens per CPU
// second shows the code's efficiency when wall time is stretched by other load.
static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int main(int argc, char **argv) {
    // OpenBLAS reads OPENBLAS_CORETYPE when it loads: re-run once with the right core type
    // when it picked one below the CPU (see docs/training.md).
    const char *better = anneal_blas_better_core();
    if (better && !getenv("OPENBLAS_CORETYPE")) {
        setenv("OPENBLAS_CORETYPE", better, 1);
        execv("/proc/self/exe", argv);
    }
    long dim = 288, layers = 6, heads = 6, kv_heads = -1, ffn = 768, vocab = 4096, seq = 256,
         batch = 8, threads = 2, steps = 5, warm = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        long v = atol(argv[i + 1]);
        if (!strcmp(argv[i], "--dim"))
            dim = v;
        else if (!strcmp(argv[i], "--layers"))
            layers = v;
        else if (!strcmp(argv[i], "--heads"))
            heads = v;
        else if (!strcmp(argv[i], "--kv-heads"))
            kv_heads = v;
        else if (!strcmp(argv[i], "--ffn"))
            ffn = v;
        else if (!strcmp(argv[i], "--vocab"))
            vocab = v;
        else if (!strcmp(argv[i], "--seq"))
            seq = v;
        else if (!strcmp(argv[i], "--batch"))
            batch = v;
        else if (!strcmp(argv[i], "--threads"))
            threads = v;
        else if (!strcmp(argv[i], "--steps"))
            steps = v;
        else if (!strcmp(argv[i], "--warmup"))
            warm = v;
        else {
            fprintf(stderr, "unknown flag %s\n", argv[i]);
            return 2;
        }
    }
    if (kv_heads < 0) kv_heads = heads;
    anneal_model_config cfg = {0};
    strcpy(cfg.arch, "llama");
    cfg.n_vocab = (int32_t)vocab;
    cfg.n_embd = (int32_t)dim;
    cfg.n_layer = (int32_t)layers;
    cfg.n_head = (int32_t)heads;
    cfg.n_head_kv = (int32_t)kv_heads;
    cfg.head_dim = (int32_t)(dim / heads);
    cfg.n_rot = cfg.head_dim;
    cfg.n_ff = (int32_t)ffn;
    cfg.n_ctx_train = (int32_t)seq;
    cfg.norm_eps = 1e-5f;
    cfg.rope_freq_base = 10000.0f;
    anneal_err err = {0};
    anneal_train_model *tm;
    anneal_train_ctx *c;
    anneal_adamw *o;
    anneal_adamw_params ap = anneal_adamw_default();
    if (anneal_train_model_new(&cfg, &tm, &err) ||
        anneal_train_ctx_new(tm, (int32_t)batch, (int32_t)seq, (int32_t)threads, &c, &err) ||
        anneal_adamw_new(tm, &ap, &o, &err)) {
        fprintf(stderr, "bench_train: %s\n", anneal_err_msg(&err));
        return 1;
    }
    uint64_t s = 42;
    for (size_t i = 0; i < tm->n_params; i++)
        tm->params[i] = (float)((double)(splitmix(&s) >> 11) * 0x1.0p-53 - 0.5) * 0.04f;
    for (size_t i = 0; i < tm->n_list; i++)
        if (tm->list[i].n_dims == 1)
            for (size_t j = 0; j < tm->list[i].n; j++)
                tm->params[tm->list[i].offset + j] = 1.0f;
    size_t n = (size_t)(batch * seq);
    int32_t *tok = malloc(n * sizeof *tok), *tgt = malloc(n * sizeof *tgt);
    for (size_t i = 0; i < n; i++) {
        tok[i] = (int32_t)(splitmix(&s) % (uint64_t)vocab);
        tgt[i] = (int32_t)(splitmix(&s) % (uint64_t)vocab);
    }
    // Matrix parameters (the output projection included, the embedding lookup not).
    double mat = (double)layers *
                     (2.0 * dim * dim + 2.0 * dim * kv_heads * (dim / heads) + 3.0 * dim * ffn) +
                 (double)vocab * dim;
    double flop_tok = 6.0 * mat + 12.0 * layers * seq * dim; // attention over all T positions
    double best = 0, total_s = 0, total_cpu = 0;
    double loss = 0;
    printf("shape: dim %ld layers %ld heads %ld kv %ld ffn %ld vocab %ld seq %ld batch %ld, "
           "%ld threads, OpenBLAS core %s, %.2f MFLOP/token\n",
           dim, layers, heads, kv_heads, ffn, vocab, seq, batch, threads, anneal_blas_core(),
           flop_tok / 1e6);
    for (long it = 0; it < warm + steps; it++) {
        uint64_t t0 = anneal_time_ns();
        double c0 = cpu_s();
        anneal_train_zero_grads(c);
        anneal_train_step(c, tok, tgt, true, 1.0f, &loss, &err);
        anneal_train_clip(c, 1.0);
        anneal_adamw_update(o, c, 1e-4f);
        double dt = (double)(anneal_time_ns() - t0) / 1e9, dc = cpu_s() - c0;
        if (it >= warm) {
            total_s += dt;
            total_cpu += dc;
            double tps = (double)n / dt;
            if (tps > best) best = tps;
            printf("step %ld: %.3f s (%.3f CPU s), %.0f tokens/s, %.1f GFLOP/s, loss %.4f\n",
                   it - warm, dt, dc, tps, tps * flop_tok / 1e9, loss);
        }
    }
    double tps = (double)n * (double)steps / total_s;
    printf("anneal: %.0f tokens/s (mean of %ld steps; best %.0f), %.1f GFLOP/s, "
           "%.0f tokens per CPU second\n",
           tps, steps, best, tps * flop_tok / 1e9, (double)n * (double)steps / total_cpu);
    free(tok);
    free(tgt);
    anneal_adamw_free(o);
    anneal_train_ctx_free(c);
    anneal_train_model_free(tm);
    return 0;
}
