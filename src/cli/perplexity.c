// `anneal perplexity`: perplexity and bits per byte of a text (src/eval/perplexity.c).
#include "cli/cli.h"

#include "anneal/eval.h"

#include <string.h>

static const char *HELP =
    "usage: anneal perplexity -m MODEL -f TEXT [--ctx N] [-t N] [--chunks N] [--lora F[:S]] [--json]\n"
    "Perplexity of MODEL on the text in TEXT, computed as llama.cpp's perplexity tool does:\n"
    "the text is tokenized once with BOS; it is cut into chunks of N tokens, each chunk's\n"
    "first token replaced by BOS; each chunk is evaluated on its own and only the second\n"
    "half of each chunk is scored (every scored token sees at least N/2 tokens of context).\n"
    "Needs at least 2*N tokens. Bits per byte = scored bits / bytes of the scored tokens.\n"
    "\n"
    "  -m, --model FILE   GGUF model (required)\n"
    "  -f, --file FILE    the text (required)\n"
    "  --lora FILE[:S]    merge a GGUF LoRA adapter at load, scale S (default 1); repeatable\n"
    "  -c, --ctx N        chunk length in tokens (default 512)\n"
    "  --chunks N         score only the first N chunks (default: all)\n"
    "  -t, --threads N    worker threads (default: ANNEAL_THREADS or all CPUs)\n"
    "  --json             one JSON object at the end instead of the running figures\n"
    "\n"
    "Exit status: 0 ok, 1 model, file or run failure, 2 usage error.\n";

static void print_progress(void *user, int32_t chunk, int32_t n_chunks, double ppl) {
    (void)user;
    (void)n_chunks;
    printf("[%d]%.4f,", chunk, ppl);
    fflush(stdout);
}

int cmd_perplexity(int argc, char **argv) {
    const char *model = NULL, *file = NULL;
    long n_ctx = 512, chunks = 0, threads = 0;
    bool json = false;
    static cli_lora_list lora;
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
        bool ok;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) ok = (model = v) != NULL;
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) ok = (file = v) != NULL;
        else if (!strcmp(a, "--lora")) ok = cli_lora_add(&lora, v);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) ok = cli_parse_long(v, 4, 1 << 20, &n_ctx);
        else if (!strcmp(a, "--chunks")) ok = cli_parse_long(v, 1, 1L << 30, &chunks);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = cli_parse_long(v, 1, 1024, &threads);
        else return cli_usage_error("perplexity", "unknown flag '%s'", a);
        if (!v) return cli_usage_error("perplexity", "%s needs a value", a);
        if (!ok) return cli_usage_error("perplexity", "bad value '%s' for %s", v, a);
        i++;
    }
    if (!model) return cli_usage_error("perplexity", "missing -m MODEL");
    if (!file) return cli_usage_error("perplexity", "missing -f TEXT");

    anneal_err e = {0};
    char *text = NULL;
    size_t len = 0;
    anneal_model *m = NULL;
    anneal_tokenizer *tok = NULL;
    if (anneal_read_file(file, (size_t)1 << 31, &text, &len, &e) || anneal_model_load(model, &m, &e) ||
        cli_lora_apply(m, &lora, &e) ||
        anneal_tokenizer_load(anneal_model_gguf(m), &tok, &e)) {
        anneal_free(text);
        anneal_model_free(m);
        return cli_fail("perplexity", &e);
    }
    anneal_ppl_params p = anneal_ppl_params_default();
    p.n_ctx = (int32_t)n_ctx;
    p.max_chunks = (int32_t)chunks;
    p.n_threads = (int32_t)threads;
    if (!json) p.progress = print_progress;
    anneal_ppl_result r;
    anneal_status st = anneal_perplexity(m, tok, text, len, &p, &r, &e);
    anneal_free(text);
    anneal_tokenizer_free(tok);
    anneal_model_free(m);
    if (st) {
        if (!json) putchar('\n');
        return cli_fail("perplexity", &e);
    }
    if (json) {
        printf("{\"ppl\":%.6f,\"ppl_stderr\":%.6f,\"bits_per_byte\":%.6f,\"n_ctx\":%d,\"chunks\":%d,"
               "\"text_tokens\":%lld,\"scored_tokens\":%lld,\"scored_bytes\":%lld,\"seconds\":%.3f}\n",
               r.ppl, r.ppl_stderr, r.bits_per_byte, r.n_ctx, r.n_chunks, (long long)r.n_text_tokens,
               (long long)r.scored_tokens, (long long)r.scored_bytes, r.seconds);
    } else {
        printf("\nFinal estimate: PPL = %.4f +/- %.5f, bits per byte = %.4f\n", r.ppl, r.ppl_stderr,
               r.bits_per_byte);
        fprintf(stderr, "%d chunks of %d tokens, %lld tokens scored, %.2f s (%.1f tokens/s)\n", r.n_chunks,
                r.n_ctx, (long long)r.scored_tokens, r.seconds,
                (double)r.n_chunks * r.n_ctx / (r.seconds > 0 ? r.seconds : 1));
    }
    return CLI_OK;
}
