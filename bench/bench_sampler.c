// Sampler cost per token for llama-sized vocabularies (32000, 128256) under several
// parameter sets, on synthetic logits shaped like a model's (a few likely tokens, a long tail).
#include "anneal/generate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t rnd(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

// Gaussian-ish tail (sum of uniforms) plus a handful of strong candidates.
static void fill(float *l, int32_t n, uint64_t *s) {
    for (int32_t i = 0; i < n; i++) {
        double u = 0;
        for (int k = 0; k < 4; k++) u += (double)(rnd(s) >> 11) * 0x1.0p-53;
        l[i] = (float)((u - 2.0) * 3.0);
    }
    for (int k = 0; k < 8; k++) l[rnd(s) % (uint64_t)n] = 12.0f - (float)k;
}

static void run(const char *name, anneal_sampler_params p, int32_t n_vocab, int iters) {
    float *logits = malloc((size_t)n_vocab * 4 * sizeof *logits);
    uint64_t seed = 12345;
    for (int v = 0; v < 4; v++) fill(logits + (size_t)v * n_vocab, n_vocab, &seed);
    anneal_sampler *s = NULL;
    anneal_err err = {0};
    if (anneal_sampler_new(&p, n_vocab, &s, &err)) {
        fprintf(stderr, "%s\n", anneal_err_msg(&err));
        exit(1);
    }
    anneal_sample out;
    uint64_t t0 = anneal_time_ns();
    for (int i = 0; i < iters; i++) {
        anneal_sampler_sample(s, logits + (size_t)(i & 3) * n_vocab, &out, NULL);
        anneal_sampler_accept(s, out.token, NULL);
    }
    double us = (double)(anneal_time_ns() - t0) / 1e3 / iters;
    printf("n_vocab %6d  %-34s %8.1f us/token\n", (int)n_vocab, name, us);
    anneal_sampler_free(s);
    free(logits);
}

int main(int argc, char **argv) {
    int iters = argc > 1 ? atoi(argv[1]) : 300;
    int32_t vocabs[] = {32000, 128256};
    for (int v = 0; v < 2; v++) {
        int32_t n = vocabs[v];
        anneal_sampler_params p = anneal_sampler_params_neutral();
        p.temperature = 0;
        run("greedy", p, n, iters);
        run("defaults (k40 p.95 minp.05 T.8)", anneal_sampler_params_default(), n, iters);
        p = anneal_sampler_params_default();
        p.repetition_penalty = 1.1f;
        p.frequency_penalty = 0.5f;
        p.logprobs = true;
        p.n_logprobs = 20;
        run("defaults + penalties + 20 logprobs", p, n, iters);
        p = anneal_sampler_params_neutral();
        p.top_p = 0.9f;
        run("top_p 0.9 only (no top_k)", p, n, iters);
        run("neutral (full distribution)", anneal_sampler_params_neutral(), n, iters);
    }
    return 0;
}
