// `anneal quantize`: converts an F32/F16/BF16 model file to a quantized type or a llama.cpp
// mix (Q4_K_M, Q5_K_M), streaming tensor by tensor, and records the input as its parent.
#include "cli/cli.h"

#include "anneal/gguf.h"
#include "anneal/lineage.h"
#include "anneal/optimize.h"
#include "anneal/tensor.h"

#include <inttypes.h>
#include <string.h>

static const char *HELP =
    "usage: anneal quantize IN.gguf OUT.gguf TYPE [--threads N] [--json]\n"
    "Converts the weights of an f32, f16 or bf16 model file to TYPE, following llama.cpp's\n"
    "conventions (docs/quantize.md): 1-D tensors and norms are copied unchanged; in the mixes\n"
    "output.weight is q6_K and some attn_v / ffn_down layers get q6_K; rows whose length\n"
    "does not fit the type's blocks fall back (q4_K/q5_K -> q5_0, q6_K -> q8_0, then f16).\n"
    "Every key/value is copied; general.file_type is set and anneal.lineage.* records the\n"
    "input's SHA-256, the command and the time.\n"
    "\n"
    "TYPE (case-insensitive):\n"
    "  q8_0 q4_0 q4_1 q5_0      one type for the weights (output.weight q6_K except for q8_0)\n"
    "  q4_K q5_K q6_K           one K-quant type for every weight\n"
    "  q4_K_M q5_K_M            llama.cpp's medium mixes\n"
    "  f32 f16 bf16             float conversion\n"
    "\n"
    "  --threads N   worker threads (default: ANNEAL_THREADS or all CPUs)\n"
    "  --json        print a JSON summary on stdout (sizes, tensors per type, seconds)\n"
    "\n"
    "Progress goes to stderr (a bar on a terminal, a line per tensor otherwise).\n"
    "Exit status: 0 ok, 1 unreadable or already quantized input, unknown TYPE or failed\n"
    "write, 2 usage error.\n";

typedef struct qprog {
    const anneal_gguf *in;
    const uint32_t *types;
    cli_progress bar;
} qprog;

// "NAME FROM -> TO"; the name comes from the file, so it is escaped.
static void label(void *ctx, size_t i, FILE *f) {
    const qprog *p = ctx;
    const anneal_gguf_tensor *t = anneal_gguf_tensor_at(p->in, i);
    cli_put_escaped(f, t->name.ptr, (size_t)t->name.len, 96, CLI_ESC_C1);
    fprintf(f, " %s -> %s", anneal_type_get(t->type)->name, anneal_type_get(p->types[i])->name);
}

static void progress(void *ctx, size_t i, bool tensor_done, uint64_t done, uint64_t total) {
    qprog *p = ctx;
    cli_progress_update(&p->bar, i, tensor_done, done, total);
}

static void print_json(const char *in, const char *out, const anneal_quant_target *t,
                       const anneal_quantize_stats *s) {
    printf("{\"input\":");
    anneal_json_write_str(stdout, in, strlen(in));
    printf(",\"output\":");
    anneal_json_write_str(stdout, out, strlen(out));
    printf(",\"type\":\"%s\",\"file_type\":%" PRIu32 ",\"in_bytes\":%" PRIu64
           ",\"out_bytes\":%" PRIu64 ",\"tensors\":%" PRIu64 ",\"quantized\":%" PRIu64
           ",\"fallback\":%" PRIu64 ",\"types\":{",
           t->name, s->file_type, s->in_bytes, s->out_bytes, s->n_tensors, s->n_quantized,
           s->n_fallback);
    bool first = true;
    for (uint32_t ty = 0; ty < ANNEAL_TYPE_COUNT; ty++) {
        if (!s->count_by_type[ty]) continue;
        printf("%s\"%s\":%" PRIu64, first ? "" : ",", anneal_type_get(ty)->name,
               s->count_by_type[ty]);
        first = false;
    }
    printf("},\"seconds\":%.3f}\n", s->seconds);
}

static void print_text(const char *in, const char *out, const anneal_quant_target *t,
                       const anneal_quantize_stats *s) {
    printf("%s -> %s (%s): %.1f MB -> %.1f MB, %" PRIu64 " tensors (", in, out, t->name,
           (double)s->in_bytes / 1e6, (double)s->out_bytes / 1e6, s->n_tensors);
    bool first = true;
    for (uint32_t ty = 0; ty < ANNEAL_TYPE_COUNT; ty++) {
        if (!s->count_by_type[ty]) continue;
        printf("%s%s %" PRIu64, first ? "" : ", ", anneal_type_get(ty)->name, s->count_by_type[ty]);
        first = false;
    }
    printf(")");
    if (s->n_fallback) printf(", %" PRIu64 " fallback", s->n_fallback);
    printf(", %.1f s\n", s->seconds);
}

int cmd_quantize(int argc, char **argv) {
    const char *pos[3];
    int n_pos = 0;
    long threads = 0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            fputs(HELP, stdout);
            return CLI_OK;
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--threads") == 0) {
            if (i + 1 >= argc) return cli_usage_error("quantize", "--threads needs a value");
            if (!cli_parse_long(argv[++i], 1, 256, &threads))
                return cli_usage_error("quantize", "--threads '%s' must be an integer in [1, 256]",
                                       argv[i]);
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_usage_error("quantize", "unknown flag '%s'", a);
        } else {
            if (n_pos == 3) return cli_usage_error("quantize", "unexpected argument '%s'", a);
            pos[n_pos++] = a;
        }
    }
    if (n_pos < 3) return cli_usage_error("quantize", "expected IN.gguf OUT.gguf TYPE");
    const char *in = pos[0], *out = pos[1], *type = pos[2];
    anneal_err err = {0};
    const anneal_quant_target *target = anneal_quant_target_find(type);
    if (!target) {
        char list[256];
        anneal_quant_target_list(list, sizeof list);
        fprintf(stderr, "anneal quantize: unknown type '%s' (valid: %s)\n", type, list);
        return CLI_FAIL;
    }
    if (strcmp(in, out) == 0) {
        fprintf(stderr, "anneal quantize: OUT is the same file as IN (%s)\n", in);
        return CLI_FAIL;
    }
    // The input is opened here too, to name tensors and their new types in the progress.
    anneal_gguf *g = NULL;
    if (anneal_gguf_open(in, &g, &err)) return cli_fail("quantize", &err);
    size_t n = (size_t)anneal_gguf_n_tensors(g);
    uint32_t *types = anneal_calloc(n ? n : 1, sizeof *types);
    char *command = anneal_lineage_command(argc, argv);
    int rc = CLI_FAIL;
    anneal_status st;
    if (!types || !command) {
        anneal_err_set(&err, ANNEAL_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (anneal_quant_plan_file(g, target, types, NULL, &err)) goto done;
    qprog p = {g, types, {0}};
    cli_progress_start(&p.bar, n, label, &p);
    anneal_quantize_opts opts = {.target = target->name,
                                 .n_threads = (int)threads,
                                 .command = command,
                                 .progress = progress,
                                 .progress_ctx = &p};
    anneal_quantize_stats stats;
    st = anneal_quantize_file(in, out, &opts, &stats, &err);
    cli_progress_end(&p.bar);
    if (st) goto done;
    if (json)
        print_json(in, out, target, &stats);
    else
        print_text(in, out, target, &stats);
    rc = CLI_OK;
done:
    if (rc) cli_fail("quantize", &err);
    anneal_free(command);
    anneal_free(types);
    anneal_gguf_close(g);
    return rc;
}
