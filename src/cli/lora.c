// `anneal lora merge`: bakes a GGUF LoRA adapter into a model; and the --lora FILE[:scale]
// flag that generate and perplexity share.
#include "cli/cli.h"

#include "anneal/lineage.h"
#include "anneal/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *HELP =
    "usage: anneal lora merge BASE ADAPTER OUT [--scale S] [--lora FILE[:scale]]...\n"
    "Writes OUT: the model BASE with the GGUF LoRA adapter ADAPTER merged into its weights,\n"
    "W' = W + S * alpha / rank * B.A (llama.cpp's adapter layout; S defaults to 1). Further\n"
    "adapters given with --lora are merged after it, in order. Quantized weights are\n"
    "dequantized, summed and requantized to their own type (approximate). OUT keeps every\n"
    "key and tensor of BASE and gets anneal.lineage.* keys naming BASE and the adapters.\n"
    "docs/training.md \"LoRA\" has the details.\n"
    "\n"
    "Exit status: 0 ok, 1 file or adapter failure, 2 usage error.\n";

bool cli_lora_add(cli_lora_list *l, const char *arg) {
    if (!arg || !*arg || l->n == CLI_LORA_MAX) return false;
    size_t len = strlen(arg);
    float scale = 1.0f;
    // FILE:scale when the text after the last ':' is a number; else all of it is the path.
    const char *colon = strrchr(arg, ':');
    if (colon && colon[1]) {
        char *end;
        float v = strtof(colon + 1, &end);
        if (!*end && isfinite(v)) {
            scale = v;
            len = (size_t)(colon - arg);
        }
    }
    if (len == 0 || len >= sizeof l->path[0]) return false;
    memcpy(l->path[l->n], arg, len);
    l->path[l->n][len] = 0;
    l->scale[l->n++] = scale;
    return true;
}

anneal_status cli_lora_apply(anneal_model *m, const cli_lora_list *l, anneal_err *err) {
    for (int i = 0; i < l->n; i++) {
        anneal_status st = anneal_model_apply_lora(m, l->path[i], l->scale[i], err);
        if (st) return st;
    }
    return ANNEAL_OK;
}

static int merge(int argc, char **argv, int first) {
    const char *pos[3];
    int n_pos = 0;
    float scale = 1.0f;
    static cli_lora_list extra;
    extra.n = 0;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--scale")) {
            char *end;
            if (i + 1 >= argc) return cli_usage_error("lora", "--scale needs a value");
            scale = strtof(argv[++i], &end);
            if (!*argv[i] || *end || !isfinite(scale))
                return cli_usage_error("lora", "bad value '%s' for --scale", argv[i]);
        } else if (!strcmp(a, "--lora")) {
            if (i + 1 >= argc) return cli_usage_error("lora", "--lora needs a value");
            if (!cli_lora_add(&extra, argv[++i]))
                return cli_usage_error("lora",
                                       "bad value '%s' for --lora (FILE[:scale], at most %d)",
                                       argv[i], CLI_LORA_MAX);
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("lora", "unknown flag '%s'", a);
        } else {
            if (n_pos == 3) return cli_usage_error("lora", "unexpected argument '%s'", a);
            pos[n_pos++] = a;
        }
    }
    if (n_pos < 3) return cli_usage_error("lora", "expected: merge BASE ADAPTER OUT");
    const char *base = pos[0], *adapter = pos[1], *out = pos[2];
    if (!strcmp(base, out) || !strcmp(adapter, out)) {
        fprintf(stderr, "anneal lora: OUT must differ from BASE and ADAPTER (%s)\n", out);
        return CLI_FAIL;
    }
    anneal_err e = {0};
    anneal_model *m = NULL;
    anneal_lineage_parent parents[2 + CLI_LORA_MAX];
    size_t n_par = 0;
    char *command = anneal_lineage_command(argc, argv);
    char config[512];
    int rc = CLI_FAIL;
    if (!command) {
        anneal_err_set(&e, ANNEAL_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (anneal_model_load(base, &m, &e) || anneal_model_apply_lora(m, adapter, scale, &e) ||
        cli_lora_apply(m, &extra, &e))
        goto done;
    if (anneal_lineage_parent_file(&parents[n_par++], "base", base, &e) ||
        anneal_lineage_parent_file(&parents[n_par++], "adapter", adapter, &e))
        goto done;
    for (int i = 0; i < extra.n; i++)
        if (anneal_lineage_parent_file(&parents[n_par++], "adapter", extra.path[i], &e)) goto done;
    int k = snprintf(config, sizeof config, "{\"lora_scales\":[%.9g", (double)scale);
    for (int i = 0; i < extra.n && k > 0 && (size_t)k < sizeof config; i++)
        k += snprintf(config + k, sizeof config - (size_t)k, ",%.9g", (double)extra.scale[i]);
    if (k > 0 && (size_t)k < sizeof config) snprintf(config + k, sizeof config - (size_t)k, "]}");
    anneal_lineage lin = {
        .parents = parents, .n_parents = n_par, .command = command, .config = config};
    if (anneal_model_write(m, out, &lin, &e)) goto done;
    fprintf(stderr, "anneal lora: merged %d adapter(s) into %s -> %s\n", anneal_model_lora_count(m),
            base, out);
    rc = CLI_OK;
done:
    if (rc) cli_fail("lora", &e);
    anneal_free(command);
    anneal_model_free(m);
    return rc;
}

int cmd_lora(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) {
        fputs(HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    for (int i = 2; i < argc; i++)
        if (cli_is_help(argv[i])) {
            fputs(HELP, stdout);
            return CLI_OK;
        }
    if (!strcmp(argv[1], "merge")) return merge(argc, argv, 2);
    return cli_usage_error("lora", "unknown subcommand '%s' (expected: merge)", argv[1]);
}
