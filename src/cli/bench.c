// `anneal bench`: prefill and decode speed of a model, measured as llama-bench does.
#include "cli/cli.h"

#include "anneal/model.h"
#include "anneal/tensor.h"

#include <stdlib.h>
#include <string.h>

static const char *HELP =
    "usage: anneal bench -m MODEL [-p N] [-n N] [-r N] [-t N] [--kv-f32] [--json]\n"
    "Measures prompt processing (prefill of N tokens in one batch) and text generation\n"
    "(N tokens decoded one at a time), each from an empty cache, as llama-bench does. The\n"
    "tokens are random ids from a fixed seed. One warm-up run precedes the timed ones.\n"
    "\n"
    "  -m, --model FILE   GGUF model (required)\n"
    "  -p, --n-prompt N   prefill length (default 128; 0 skips the test)\n"
    "  -n, --n-gen N      tokens to decode (default 32; 0 skips the test)\n"
    "  -r, --reps N       timed repetitions (default 5)\n"
    "  -t, --threads N    worker threads (default: ANNEAL_THREADS or all CPUs)\n"
    "  --kv-f32           F32 KV cache (default F16)\n"
    "  --json             one JSON object instead of the table\n"
    "\n"
    "Prints tokens/s as median, min and max over the repetitions, and for decode the weight\n"
    "bytes streamed per second (bytes read per token x tokens/s).\n";

typedef struct bench_run {
    anneal_model *model;
    anneal_ctx *ctx;
    anneal_kv *kv;
    int32_t *tokens, *pos, *seq;
    float *logits;
    double *rates;
} bench_run;

static void bench_free(bench_run *r) {
    anneal_free(r->rates);
    anneal_free(r->logits);
    anneal_free(r->seq);
    anneal_free(r->pos);
    anneal_free(r->tokens);
    anneal_kv_free(r->kv);
    anneal_ctx_free(r->ctx);
    anneal_model_free(r->model);
}

// Peak resident memory of this process in bytes (VmHWM), 0 when unknown.
static uint64_t peak_rss(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %llu kB", &kb) == 1) break;
    fclose(f);
    return (uint64_t)kb * 1024;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Prefill of n tokens in one batch (gen = false) or n single-token steps (gen = true),
// from an empty cache; returns tokens/s or a negative value on failure.
static double timed(bench_run *r, int32_t n, bool gen, anneal_err *e) {
    anneal_kv_seq_clear(r->kv, 0);
    int32_t n_out = 0;
    uint64_t t0 = anneal_time_ns();
    if (!gen) {
        anneal_batch b = {.n_tokens = n, .tokens = r->tokens, .seq = r->seq, .pos = r->pos};
        if (anneal_forward(r->ctx, r->kv, &b, r->logits, 1, &n_out, e)) return -1;
    } else {
        for (int32_t i = 0; i < n; i++) {
            anneal_batch b = {.n_tokens = 1, .tokens = r->tokens + i, .seq = r->seq, .pos = r->pos + i};
            if (anneal_forward(r->ctx, r->kv, &b, r->logits, 1, &n_out, e)) return -1;
        }
    }
    return (double)n / ((double)(anneal_time_ns() - t0) / 1e9);
}

typedef struct bench_stat {
    double median, min, max;
} bench_stat;

static int measure(bench_run *r, int32_t n, bool gen, long reps, bench_stat *out, anneal_err *e) {
    if (timed(r, n, gen, e) < 0) return -1; // warm-up
    for (long i = 0; i < reps; i++)
        if ((r->rates[i] = timed(r, n, gen, e)) < 0) return -1;
    qsort(r->rates, (size_t)reps, sizeof *r->rates, cmp_double);
    out->min = r->rates[0];
    out->max = r->rates[reps - 1];
    out->median = reps % 2 ? r->rates[reps / 2] : (r->rates[reps / 2 - 1] + r->rates[reps / 2]) / 2;
    return 0;
}

int cmd_bench(int argc, char **argv) {
    const char *model = NULL;
    long n_prompt = 128, n_gen = 32, reps = 5, threads = 0;
    bool json = false, kv_f32 = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (cli_is_help(a)) {
            fputs(HELP, stdout);
            return CLI_OK;
        }
        if (!strcmp(a, "--json")) {
            json = true;
            continue;
        }
        if (!strcmp(a, "--kv-f32")) {
            kv_f32 = true;
            continue;
        }
        bool ok;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) ok = (model = v) != NULL;
        else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) ok = cli_parse_long(v, 0, 1 << 16, &n_prompt);
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) ok = cli_parse_long(v, 0, 1 << 16, &n_gen);
        else if (!strcmp(a, "-r") || !strcmp(a, "--reps")) ok = cli_parse_long(v, 1, 1000, &reps);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = cli_parse_long(v, 1, 1024, &threads);
        else return cli_usage_error("bench", "unknown flag '%s'", a);
        if (!v) return cli_usage_error("bench", "%s needs a value", a);
        if (!ok) return cli_usage_error("bench", "bad value '%s' for %s", v, a);
        i++;
    }
    if (!model) return cli_usage_error("bench", "missing -m MODEL");
    if (!n_prompt && !n_gen) return cli_usage_error("bench", "-p 0 and -n 0 leave nothing to measure");

    bench_run r = {0};
    anneal_err e = {0};
    int rc = CLI_FAIL;
    if (anneal_model_load(model, &r.model, &e)) goto fail;
    const anneal_model_config *cfg = anneal_model_config_of(r.model);
    long n_max = n_prompt > n_gen ? n_prompt : n_gen;
    anneal_ctx_params cp = anneal_ctx_params_default();
    cp.n_threads = (int32_t)threads;
    cp.max_batch = n_prompt > 0 ? (int32_t)n_prompt : 1;
    anneal_kv_params kp = anneal_kv_params_default((int32_t)n_max, 1);
    if (kv_f32) kp.type = ANNEAL_TYPE_F32;
    if (anneal_ctx_new(r.model, &cp, &r.ctx, &e) || anneal_kv_new(r.model, &kp, &r.kv, &e)) goto fail;
    r.tokens = anneal_calloc((size_t)n_max, sizeof *r.tokens);
    r.pos = anneal_calloc((size_t)n_max, sizeof *r.pos);
    r.seq = anneal_calloc((size_t)n_max, sizeof *r.seq);
    r.logits = anneal_calloc((size_t)cfg->n_vocab, sizeof *r.logits);
    r.rates = anneal_calloc((size_t)reps, sizeof *r.rates);
    if (!r.tokens || !r.pos || !r.seq || !r.logits || !r.rates) {
        anneal_err_set(&e, ANNEAL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (long i = 0; i < n_max; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        r.tokens[i] = (int32_t)(s % (uint64_t)cfg->n_vocab);
        r.pos[i] = (int32_t)i;
    }
    bench_stat pp = {0}, tg = {0};
    if (n_prompt && measure(&r, (int32_t)n_prompt, false, reps, &pp, &e)) goto fail;
    if (n_gen && measure(&r, (int32_t)n_gen, true, reps, &tg, &e)) goto fail;
    double bpt = (double)anneal_model_bytes_per_token(r.model);
    int nt = threads ? (int)threads : anneal_thread_count();
    if (json) {
        printf("{\"model\":");
        anneal_json_write_str(stdout, model, strlen(model));
        printf(",\"threads\":%d,\"reps\":%ld,\"bytes_per_token\":%.0f,\"kv_bytes\":%llu,\"peak_rss\":%llu",
               nt, reps, bpt, (unsigned long long)anneal_kv_bytes(r.kv), (unsigned long long)peak_rss());
        if (n_prompt)
            printf(",\"prefill\":{\"tokens\":%ld,\"median\":%.3f,\"min\":%.3f,\"max\":%.3f}", n_prompt,
                   pp.median, pp.min, pp.max);
        if (n_gen)
            printf(",\"decode\":{\"tokens\":%ld,\"median\":%.3f,\"min\":%.3f,\"max\":%.3f,\"gb_per_s\":%.3f}",
                   n_gen, tg.median, tg.min, tg.max, tg.median * bpt / 1e9);
        printf("}\n");
    } else {
        printf("%s: %d threads, %ld reps, %.1f MiB read per decoded token\n", model, nt, reps,
               bpt / (1024.0 * 1024.0));
        printf("| test    | tokens/s median |     min |     max |\n");
        printf("|---------|----------------:|--------:|--------:|\n");
        if (n_prompt) printf("| pp%-5ld | %15.2f | %7.2f | %7.2f |\n", n_prompt, pp.median, pp.min, pp.max);
        if (n_gen) printf("| tg%-5ld | %15.2f | %7.2f | %7.2f |\n", n_gen, tg.median, tg.min, tg.max);
        if (n_gen) printf("decode streams %.2f GB/s of weights\n", tg.median * bpt / 1e9);
        printf("KV cache %.1f MiB, peak RSS %.1f MiB\n", (double)anneal_kv_bytes(r.kv) / 1048576.0,
               (double)peak_rss() / 1048576.0);
    }
    rc = CLI_OK;
fail:
    if (rc != CLI_OK) cli_fail("bench", &e);
    bench_free(&r);
    return rc;
}
