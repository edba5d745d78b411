// Server configuration: one table of options, each settable as a flag, a config-file line
// `name = value`, or an environment variable ANNEAL_SERVE_<NAME>.
#include "serve_internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef enum opt_kind { OPT_STR, OPT_INT, OPT_I64, OPT_DBL, OPT_BOOL } opt_kind;

typedef struct opt {
    const char *name;
    opt_kind kind;
    size_t off;
    double lo, hi;
    const char *value; // value placeholder for help
    const char *help;
} opt;

#define O(f) offsetof(anneal_serve_config, f)
static const opt OPTS[] = {
    {"model", OPT_STR, O(model), 0, 0, "FILE", "GGUF model to serve (required; -m)"},
    {"alias", OPT_STR, O(alias), 0, 0, "NAME", "model name in the API (default: file name without .gguf)"},
    {"host", OPT_STR, O(host), 0, 0, "ADDR", "listen address: IPv4, IPv6 or a name (default 127.0.0.1)"},
    {"port", OPT_INT, O(port), 0, 65535, "N", "listen port, 0 = any free port (default 8080)"},
    {"threads", OPT_INT, O(threads), 0, 1024, "N", "forward threads (default: ANNEAL_THREADS or all CPUs; -t)"},
    {"ctx", OPT_INT, O(ctx), 0, 1 << 24, "N", "positions per sequence, prompt + answer (default min(model's, 4096); -c)"},
    {"parallel", OPT_INT, O(parallel), 1, 1024, "N", "sequences decoded together (default 8)"},
    {"kv-tokens", OPT_INT, O(kv_tokens), 0, INT32_MAX, "N", "KV pool size in positions for all sequences (default ctx * parallel)"},
    {"block-size", OPT_INT, O(block_size), 1, 4096, "N", "KV positions per block (default 16)"},
    {"batch", OPT_INT, O(batch), 1, 65536, "N", "tokens per forward step at most (default 512)"},
    {"prefill-chunk", OPT_INT, O(prefill_chunk), 1, 65536, "N", "prompt tokens per step at most (default 256)"},
    {"kv-f32", OPT_BOOL, O(kv_f32), 0, 0, NULL, "keep the KV cache in F32 (default F16)"},
    {"max-queue", OPT_INT, O(max_queue), 1, 1 << 20, "N", "requests waiting at most; more get 429 (default 64)"},
    {"max-body", OPT_I64, O(max_body), 1024, (double)(1ll << 32), "BYTES", "request body size at most; more get 413 (default 4194304)"},
    {"max-tokens", OPT_INT, O(max_tokens), 1, 1 << 24, "N", "max_tokens allowed per request (default 4096)"},
    {"timeout", OPT_DBL, O(timeout), 0, 1e7, "SECONDS", "deadline of a request, end to end, 0 = none (default 600)"},
    {"read-timeout", OPT_DBL, O(read_timeout), 0.001, 1e6, "SECONDS", "time to receive a request body; slower gets 408 (default 30)"},
    {"idle-timeout", OPT_INT, O(idle_timeout), 1, 1 << 20, "SECONDS", "idle connections are closed after this (default 60)"},
    {"max-connections", OPT_INT, O(max_connections), 1, 1 << 16, "N", "open connections at most (default 256)"},
    {"api-keys", OPT_STR, O(api_keys), 0, 0, "FILE", "keys file, lines \"ID KEY [rpm=N] [tpm=N]\" (default: no auth)"},
    {"rpm", OPT_INT, O(rpm), 0, INT32_MAX, "N", "requests per minute per key, 0 = unlimited (default 0)"},
    {"tpm", OPT_INT, O(tpm), 0, INT32_MAX, "N", "tokens per minute per key, 0 = unlimited (default 0)"},
    {"drain-timeout", OPT_DBL, O(drain_timeout), 0, 1e6, "SECONDS", "SIGTERM waits this long for in-flight work (default 30)"},
    {"chat-template", OPT_STR, O(chat_template), 0, 0, "NAME", "chat template (default: from the model, else chatml)"},
    {"access-log", OPT_STR, O(access_log), 0, 0, "PATH", "JSON access log: - = stderr (default), off, or a file"},
    {"lora", OPT_STR, O(lora), 0, 0, "FILE[:S],...", "GGUF LoRA adapters merged at load, scale S (default 1); repeatable flag"},
};
#define N_OPTS (sizeof OPTS / sizeof OPTS[0])

void anneal_serve_config_default(anneal_serve_config *c) {
    memset(c, 0, sizeof *c);
    c->port = 8080;
    c->parallel = 8;
    c->block_size = 16;
    c->batch = 512;
    c->prefill_chunk = 256;
    c->max_queue = 64;
    c->max_body = 4 << 20;
    c->max_tokens = 4096;
    c->timeout = 600;
    c->read_timeout = 30;
    c->idle_timeout = 60;
    c->max_connections = 256;
    c->drain_timeout = 30;
}

void anneal_serve_config_free(anneal_serve_config *c) {
    for (size_t i = 0; i < N_OPTS; i++)
        if (OPTS[i].kind == OPT_STR) {
            char **p = (char **)((char *)c + OPTS[i].off);
            anneal_free(*p);
            *p = NULL;
        }
}

static const opt *find(const char *name) {
    for (size_t i = 0; i < N_OPTS; i++)
        if (!strcmp(OPTS[i].name, name)) return &OPTS[i];
    return NULL;
}

bool anneal_serve_config_is_switch(const char *name) {
    const opt *o = find(name);
    return o && o->kind == OPT_BOOL;
}

anneal_status anneal_serve_config_set(anneal_serve_config *c, const char *name, const char *value,
                                      const char *where, anneal_err *err) {
    const char *w = where ? where : "", *sep = where ? ": " : "";
    const opt *o = find(name);
    if (!o) return anneal_err_set(err, ANNEAL_ERR_NOT_FOUND, "%s%sunknown option '%s'", w, sep, name);
    void *p = (char *)c + o->off;
    char *end = NULL;
    errno = 0;
    switch (o->kind) {
    case OPT_STR: {
        char *s = anneal_strndup(value, strlen(value));
        if (!s) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
        anneal_free(*(char **)p);
        *(char **)p = s;
        return ANNEAL_OK;
    }
    case OPT_BOOL:
        if (!strcmp(value, "1") || !strcmp(value, "true") || !strcmp(value, "yes") || !strcmp(value, "on"))
            *(bool *)p = true;
        else if (!strcmp(value, "0") || !strcmp(value, "false") || !strcmp(value, "no") || !strcmp(value, "off"))
            *(bool *)p = false;
        else
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s%s%s: '%s' is not true or false", w, sep, name,
                                  value);
        return ANNEAL_OK;
    case OPT_INT:
    case OPT_I64: {
        long long v = strtoll(value, &end, 10);
        if (!*value || *end || errno || v < (long long)o->lo || v > (long long)o->hi)
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s%s%s: '%s' is not an integer in %.0f..%.0f", w,
                                  sep, name, value, o->lo, o->hi);
        if (o->kind == OPT_INT) *(int32_t *)p = (int32_t)v;
        else *(int64_t *)p = v;
        return ANNEAL_OK;
    }
    case OPT_DBL: {
        double v = strtod(value, &end);
        if (!*value || *end || errno || !(v >= o->lo && v <= o->hi))
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s%s%s: '%s' is not a number in %g..%g", w, sep,
                                  name, value, o->lo, o->hi);
        *(double *)p = v;
        return ANNEAL_OK;
    }
    }
    return ANNEAL_ERR_INTERNAL;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

anneal_status anneal_serve_config_load(anneal_serve_config *c, const char *path, anneal_err *err) {
    char *text = NULL;
    size_t size = 0;
    anneal_status st = anneal_read_file(path, 1 << 20, &text, &size, err);
    if (st) return st;
    int line = 0;
    for (char *p = text, *next; p && *p; p = next) {
        next = strchr(p, '\n');
        if (next) *next++ = '\0';
        line++;
        char *hash = strchr(p, '#');
        if (hash) *hash = '\0';
        char *s = trim(p);
        if (!*s) continue;
        char where[600];
        snprintf(where, sizeof where, "%s:%d", path, line);
        char *eq = strchr(s, '=');
        if (!eq) {
            st = anneal_err_set(err, ANNEAL_ERR_FORMAT, "%s: expected 'name = value'", where);
            break;
        }
        *eq = '\0';
        st = anneal_serve_config_set(c, trim(s), trim(eq + 1), where, err);
        if (st) break;
    }
    anneal_free(text);
    return st;
}

anneal_status anneal_serve_config_env(anneal_serve_config *c, anneal_err *err) {
    for (size_t i = 0; i < N_OPTS; i++) {
        char var[64] = "ANNEAL_SERVE_";
        size_t j = strlen(var);
        for (const char *n = OPTS[i].name; *n && j + 1 < sizeof var; n++)
            var[j++] = *n == '-' ? '_' : (char)toupper((unsigned char)*n);
        var[j] = '\0';
        const char *v = getenv(var);
        if (!v) continue;
        anneal_status st = anneal_serve_config_set(c, OPTS[i].name, v, var, err);
        if (st) return st;
    }
    return ANNEAL_OK;
}

void anneal_serve_config_help(FILE *f) {
    for (size_t i = 0; i < N_OPTS; i++) {
        char flag[64], var[64] = "ANNEAL_SERVE_";
        snprintf(flag, sizeof flag, "--%s%s%s", OPTS[i].name, OPTS[i].value ? " " : "",
                 OPTS[i].value ? OPTS[i].value : "");
        size_t j = strlen(var);
        for (const char *n = OPTS[i].name; *n && j + 1 < sizeof var; n++)
            var[j++] = *n == '-' ? '_' : (char)toupper((unsigned char)*n);
        var[j] = '\0';
        fprintf(f, "  %-26s %s\n  %-26s   env %s\n", flag, OPTS[i].help, "", var);
    }
}
