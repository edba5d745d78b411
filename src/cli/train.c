// `anneal train`: trains a llama-family model in F32 on the CPU, from scratch (`--init`,
// built by `anneal init`'s code) or from a GGUF (`--init-from`), on token shards or text files
// tokenized with the model's vocabulary; flags or a JSON config file; resumable checkpoints.
#include "cli/cli.h"
#include "cli/cli_train.h"

#include "anneal/data.h"
#include "anneal/gguf.h"
#include "anneal/lineage.h"
#include "anneal/tokenizer.h"
#include "anneal/train.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *HELP =
    "usage: anneal train --out DIR (--init SHAPE --vocab-from VOCAB.gguf | --init-from "
    "MODEL.gguf)\n"
    "                    (--data FILE... | --shards PATH...) [flags]\n"
    "       anneal train --out DIR --resume [same data flags]\n"
    "Trains a llama model in F32 (forward, backward, AdamW). Checkpoints are GGUF files the\n"
    "engine loads (DIR/ckpt-NNNNNNNN/model.gguf) plus optimizer state (optim.bin); DIR/latest\n"
    "names the last good one. Metrics go to DIR/metrics.jsonl, the loss curve to DIR/loss.svg.\n"
    "\n"
    "model:\n"
    "  --init SHAPE         a new random model: dim=D,layers=L,heads=H,ffn=F[,kv_heads=K]\n"
    "                       [,ctx=N][,tied=1]; written to DIR/init.gguf by `anneal init`\n"
    "  --vocab-from FILE    vocabulary for --init (tokenizer.* keys)\n"
    "  --init-from FILE     start from this model (any weight type; trained in F32)\n"
    "  --resume             continue from DIR's last good checkpoint (bit-identical to an\n"
    "                       uninterrupted run with the same flags); without one, start as\n"
    "                       --init / --init-from say\n"
    "data:\n"
    "  --data FILE          a text file, tokenized with the model's vocabulary (repeatable)\n"
    "  --shards PATH        a token shard, or a directory of *.bin shards (repeatable); in a\n"
    "                       directory, val-*.bin shards are the validation set\n"
    "  --val-shards PATH    validation shards (a file or a directory; repeatable)\n"
    "  --val-frac F         without validation shards, the last fraction F of the tokens is\n"
    "                       the validation set (0.1)\n"
    "training:\n"
    "  --steps N            optimizer steps (1000)\n"
    "  --seq T              tokens per sequence (256)\n"
    "  --batch B            sequences per micro-batch (8)\n"
    "  --accum A            micro-batches accumulated per step (1)\n"
    "  --lr X               peak learning rate (3e-4)\n"
    "  --min-lr X           learning rate at the end of the cosine (lr / 10)\n"
    "  --warmup N           linear warmup steps (min(100, steps / 10))\n"
    "  --weight-decay X     AdamW decoupled weight decay on matrices (0.1)\n"
    "  --beta1 X --beta2 X --eps X   AdamW (0.9, 0.95, 1e-8)\n"
    "  --clip X             clip the gradient's global L2 norm to X; 0 = off (1.0)\n"
    "  --seed S             data sampling (and --init weights) seed (1)\n"
    "  --threads N          worker threads (ANNEAL_THREADS or all CPUs)\n"
    "LoRA (needs --init-from; the base stays frozen, only adapters train):\n"
    "  --lora-rank R        train rank-R adapters; checkpoints add adapter.gguf (llama.cpp's\n"
    "                       layout: `anneal generate --lora`, `anneal lora merge`)\n"
    "  --lora-alpha A       adapter scale alpha / rank (alpha = rank)\n"
    "  --lora-targets LIST  matrices adapted: any of q,k,v,o,gate,up,down (q,v)\n"
    "output:\n"
    "  --val-every N        validation loss and perplexity every N steps; 0 = off (100)\n"
    "  --val-batches N      batches per validation (8)\n"
    "  --ckpt-every N       checkpoint every N steps and at the end (100)\n"
    "  --keep N             checkpoints kept (3)\n"
    "  --log-every N        a progress line every N steps when stderr is not a terminal (10)\n"
    "  --config FILE        a JSON object of these flags without the dashes\n"
    "                       ({\"lr\": 1e-3, \"data\": [\"a.txt\"], \"resume\": true}); flags win\n"
    "  --quiet              no progress output\n"
    "  --json               print a JSON summary on stdout\n"
    "\n"
    "OpenBLAS: when it picks kernels below this CPU (Debian 12's 0.3.21 calls some Xeons\n"
    "\"Prescott\"), anneal re-runs itself once with OPENBLAS_CORETYPE set (docs/training.md).\n"
    "Exit status: 0 ok, 1 failure, 2 usage error.\n";

#define MAX_FILES 256

typedef struct train_cli {
    const char *out, *init, *vocab, *init_from, *config, *lora_targets;
    const char *data[MAX_FILES], *shards[MAX_FILES], *val_shards[MAX_FILES];
    int n_data, n_shards, n_val_shards;
    bool resume, quiet, json;
    long steps, seq, batch, accum, warmup, threads, val_every, val_batches, ckpt_every, keep,
        log_every, crash_at, lora_rank;
    double lora_alpha;
    double lr, min_lr, wd, beta1, beta2, eps, clip, val_frac;
    unsigned long long seed;
    json_t *cfg_json; // keeps config-file strings alive
} train_cli;

static bool parse_double(const char *s, double lo, double hi, double *out) {
    if (!s || !*s) return false;
    char *end;
    double v = strtod(s, &end);
    if (*end || !isfinite(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

// Sets one option from its flag name (without dashes) and value; CLI_USAGE with a message.
static int set_opt(train_cli *o, const char *name, const char *v) {
    struct {
        const char *name;
        long *p;
        long lo, hi;
    } ints[] = {{"steps", &o->steps, 1, 1L << 40},
                {"seq", &o->seq, 1, 1 << 20},
                {"batch", &o->batch, 1, 1 << 16},
                {"accum", &o->accum, 1, 1 << 16},
                {"warmup", &o->warmup, 0, 1L << 40},
                {"threads", &o->threads, 1, 256},
                {"val-every", &o->val_every, 0, 1L << 40},
                {"val-batches", &o->val_batches, 1, 1 << 20},
                {"ckpt-every", &o->ckpt_every, 0, 1L << 40},
                {"keep", &o->keep, 1, 1000},
                {"log-every", &o->log_every, 0, 1L << 40},
                {"crash-at-ckpt", &o->crash_at, 0, 1L << 40},
                {"lora-rank", &o->lora_rank, 1, 65536}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (strcmp(name, ints[i].name) == 0) {
            if (!cli_parse_long(v, ints[i].lo, ints[i].hi, ints[i].p))
                return cli_usage_error("train", "--%s '%s' must be an integer in [%ld, %ld]", name,
                                       v ? v : "", ints[i].lo, ints[i].hi);
            return CLI_OK;
        }
    struct {
        const char *name;
        double *p, lo, hi;
    } dbl[] = {{"lr", &o->lr, 1e-12, 10},
               {"min-lr", &o->min_lr, 0, 10},
               {"weight-decay", &o->wd, 0, 10},
               {"beta1", &o->beta1, 0, 0.999999},
               {"beta2", &o->beta2, 0, 0.999999},
               {"eps", &o->eps, 1e-30, 1},
               {"clip", &o->clip, 0, 1e9},
               {"val-frac", &o->val_frac, 0, 0.9},
               {"lora-alpha", &o->lora_alpha, 1e-6, 1e6}};
    for (size_t i = 0; i < sizeof dbl / sizeof dbl[0]; i++)
        if (strcmp(name, dbl[i].name) == 0) {
            if (!parse_double(v, dbl[i].lo, dbl[i].hi, dbl[i].p))
                return cli_usage_error("train", "--%s '%s' must be a number in [%g, %g]", name,
                                       v ? v : "", dbl[i].lo, dbl[i].hi);
            return CLI_OK;
        }
    if (strcmp(name, "seed") == 0) {
        char *end;
        errno = 0;
        o->seed = v && *v != '-' ? strtoull(v, &end, 10) : 0;
        if (!v || !*v || *v == '-' || errno || *end)
            return cli_usage_error("train", "--seed '%s' is not an unsigned integer", v ? v : "");
        return CLI_OK;
    }
    const char **str[] = {&o->out, &o->init, &o->vocab, &o->init_from, &o->lora_targets};
    const char *str_names[] = {"out", "init", "vocab-from", "init-from", "lora-targets"};
    for (size_t i = 0; i < 5; i++)
        if (strcmp(name, str_names[i]) == 0) {
            *str[i] = v;
            return CLI_OK;
        }
    if (strcmp(name, "data") == 0 || strcmp(name, "shards") == 0 ||
        strcmp(name, "val-shards") == 0) {
        int *n = name[0] == 'd' ? &o->n_data : name[0] == 's' ? &o->n_shards : &o->n_val_shards;
        const char **list = name[0] == 'd' ? o->data : name[0] == 's' ? o->shards : o->val_shards;
        if (*n == MAX_FILES) return cli_usage_error("train", "more than %d --%s", MAX_FILES, name);
        list[(*n)++] = v;
        return CLI_OK;
    }
    return cli_usage_error("train", "unknown option '%s'", name);
}

static bool is_bool_flag(const char *name, train_cli *o, bool **p) {
    if (strcmp(name, "resume") == 0)
        *p = &o->resume;
    else if (strcmp(name, "quiet") == 0)
        *p = &o->quiet;
    else if (strcmp(name, "json") == 0)
        *p = &o->json;
    else
        return false;
    return true;
}

// The config file: a JSON object of option names to numbers, strings, booleans, or arrays
// of strings (data, shards).
static int read_config(train_cli *o, const char *path) {
    char *text;
    size_t len;
    anneal_err err = {0};
    if (anneal_read_file(path, 1 << 20, &text, &len, &err)) return cli_fail("train", &err);
    o->cfg_json = anneal_json_parse(text, len, path, &err);
    anneal_free(text);
    if (!o->cfg_json) return cli_fail("train", &err);
    if (!json_is_object(o->cfg_json))
        return cli_usage_error("train", "%s: expected a JSON object", path);
    const char *key;
    json_t *val;
    json_object_foreach(o->cfg_json, key, val) {
        bool *b;
        if (is_bool_flag(key, o, &b)) {
            if (!json_is_boolean(val))
                return cli_usage_error("train", "%s: \"%s\" must be true or false", path, key);
            *b = json_is_true(val);
            continue;
        }
        if (json_is_array(val)) {
            size_t i;
            json_t *e;
            json_array_foreach(val, i, e) {
                if (!json_is_string(e))
                    return cli_usage_error("train", "%s: \"%s\"[%zu] must be a string", path, key,
                                           i);
                int rc = set_opt(o, key, json_string_value(e));
                if (rc) return rc;
            }
            continue;
        }
        char num[64];
        const char *v;
        if (json_is_string(val)) {
            v = json_string_value(val);
        } else if (json_is_integer(val)) {
            snprintf(num, sizeof num, "%lld", (long long)json_integer_value(val));
            v = num;
        } else if (json_is_real(val)) {
            snprintf(num, sizeof num, "%.17g", json_real_value(val));
            v = num;
        } else {
            return cli_usage_error("train", "%s: \"%s\" has an unsupported value type", path, key);
        }
        int rc = set_opt(o, key, v);
        if (rc) return rc;
    }
    return CLI_OK;
}

static int parse(int argc, char **argv, train_cli *o) {
    *o = (train_cli){.steps = 1000,
                     .seq = 256,
                     .batch = 8,
                     .accum = 1,
                     .warmup = -1,
                     .val_every = 100,
                     .val_batches = 8,
                     .ckpt_every = 100,
                     .keep = 3,
                     .log_every = 10,
                     .lr = 3e-4,
                     .min_lr = -1,
                     .wd = 0.1,
                     .beta1 = 0.9,
                     .beta2 = 0.95,
                     .eps = 1e-8,
                     .clip = 1.0,
                     .val_frac = 0.1,
                     .seed = 1};
    // The config file first, so flags override it.
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--config") == 0) {
            int rc = read_config(o, argv[i + 1]);
            if (rc) return rc;
        }
    train_cli from_file = *o;
    o->n_data = o->n_shards = o->n_val_shards = 0; // flags replace the file's lists
    bool flag_data = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0)
            return cli_usage_error("train", "unexpected argument '%s'", a);
        bool *b;
        if (is_bool_flag(a + 2, o, &b)) {
            *b = true;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("train", "%s needs a value", a);
        const char *v = argv[++i];
        if (strcmp(a, "--config") == 0) continue;
        if (strcmp(a, "--data") == 0 || strcmp(a, "--shards") == 0 ||
            strcmp(a, "--val-shards") == 0)
            flag_data = true;
        int rc = set_opt(o, a + 2, v);
        if (rc) return rc;
    }
    if (!flag_data) {
        memcpy(o->data, from_file.data, sizeof o->data);
        memcpy(o->shards, from_file.shards, sizeof o->shards);
        memcpy(o->val_shards, from_file.val_shards, sizeof o->val_shards);
        o->n_data = from_file.n_data;
        o->n_shards = from_file.n_shards;
        o->n_val_shards = from_file.n_val_shards;
    }
    if (!o->out) return cli_usage_error("train", "--out DIR is required");
    if (!o->init && !o->init_from && !o->resume)
        return cli_usage_error("train", "one of --init, --init-from or --resume is required");
    if (o->init && o->init_from)
        return cli_usage_error("train", "--init and --init-from exclude each other");
    if (o->init && !o->vocab) return cli_usage_error("train", "--init needs --vocab-from");
    if (!o->n_data && !o->n_shards)
        return cli_usage_error("train", "no training data: give --data FILE or --shards PATH");
    if ((o->lora_alpha > 0 || o->lora_targets) && !o->lora_rank)
        return cli_usage_error("train", "--lora-alpha and --lora-targets need --lora-rank");
    if (o->lora_rank && !o->init_from)
        return cli_usage_error("train", "LoRA needs a base model: --lora-rank needs --init-from");
    if (o->lora_rank) {
        uint32_t mask;
        anneal_err e = {0};
        if (anneal_lora_targets_parse(o->lora_targets ? o->lora_targets : "q,v", &mask, &e))
            return cli_usage_error("train", "--lora-targets: %s", anneal_err_msg(&e));
    }
    if (o->min_lr < 0) o->min_lr = o->lr / 10;
    if (o->warmup < 0) o->warmup = o->steps / 10 < 100 ? o->steps / 10 : 100;
    return CLI_OK;
}

// ---- data ---------------------------------------------------------------------------------

typedef struct tokens {
    int32_t *v;
    size_t n, cap;
} tokens;

static bool tokens_reserve(tokens *t, size_t more) {
    if (t->n + more <= t->cap) return true;
    size_t cap = t->cap ? t->cap : 1 << 16;
    while (cap < t->n + more)
        cap *= 2;
    int32_t *nv = anneal_realloc_array(t->v, cap, sizeof *nv);
    if (!nv) return false;
    t->v = nv;
    t->cap = cap;
    return true;
}

static anneal_status add_text(tokens *t, const anneal_tokenizer *tok, const char *path,
                              anneal_err *err) {
    char *text;
    size_t len;
    anneal_status st = anneal_read_file(path, (size_t)1 << 30, &text, &len, err);
    if (st) return st;
    size_t need = len + 16;
    for (;;) {
        if (!tokens_reserve(t, need)) {
            anneal_free(text);
            return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory for tokens", path);
        }
        size_t n;
        anneal_err e = {0};
        st = anneal_tokenizer_encode(tok, text, len, ANNEAL_TOK_ADD_SPECIAL, t->v + t->n,
                                     t->cap - t->n, &n, &e);
        if (st == ANNEAL_ERR_RANGE) {
            need = n;
            continue;
        }
        if (st) {
            anneal_free(text);
            return anneal_err_set(err, st, "%s: %s", path, anneal_err_msg(&e));
        }
        t->n += n;
        break;
    }
    anneal_free(text);
    return ANNEAL_OK;
}

static anneal_status add_shard(tokens *t, const char *path, int32_t n_vocab, anneal_err *err) {
    anneal_shard s;
    anneal_status st = anneal_shard_open(path, &s, err);
    if (st) return st;
    if (s.vocab_size > (uint32_t)n_vocab) {
        uint32_t v = s.vocab_size;
        anneal_shard_close(&s);
        return anneal_err_set(err, ANNEAL_ERR_RANGE,
                              "%s: shard vocabulary of %u tokens exceeds the model's %d", path, v,
                              (int)n_vocab);
    }
    if (!tokens_reserve(t, (size_t)s.n_tokens)) {
        anneal_shard_close(&s);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory for tokens", path);
    }
    t->n += anneal_shard_read(&s, 0, (size_t)s.n_tokens, t->v + t->n);
    anneal_shard_close(&s);
    return ANNEAL_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// A shard file, or every *.bin in a directory in name order; in a directory, files named
// val-* (the data pipeline's validation shards) go to val when it is not NULL.
static anneal_status add_shards(tokens *t, tokens *val, const char *path, int32_t n_vocab,
                                anneal_err *err) {
    DIR *d = opendir(path);
    if (!d) return add_shard(t, path, n_vocab, err);
    char *names[4096];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".bin") == 0) {
            size_t pl = strlen(path) + l + 2;
            names[n] = anneal_malloc(pl);
            if (!names[n]) break;
            snprintf(names[n], pl, "%s/%s", path, e->d_name);
            n++;
        }
    }
    closedir(d);
    qsort(names, n, sizeof names[0], cmp_str);
    anneal_status st =
        n ? ANNEAL_OK : anneal_err_set(err, ANNEAL_ERR_NOT_FOUND, "%s: no *.bin shards", path);
    for (size_t i = 0; i < n; i++) {
        const char *base = names[i] + strlen(path) + 1;
        bool is_val = val && strncmp(base, "val-", 4) == 0;
        if (!st) st = add_shard(is_val ? val : t, names[i], n_vocab, err);
        anneal_free(names[i]);
    }
    return st;
}

// ---- the command -----------------------------------------------------------------------------

// Re-runs the process once with OPENBLAS_CORETYPE set when OpenBLAS picked kernels below the
// CPU (it reads the variable only when it loads). Returns only when no re-run happened.
static void fix_blas(char **argv, int argc) {
    const char *better = anneal_blas_better_core();
    if (!better) {
        ANNEAL_DEBUG("OpenBLAS core: %s", anneal_blas_core());
        return;
    }
    if (getenv("OPENBLAS_CORETYPE")) return; // the user's choice; the library warns
    ANNEAL_INFO("OpenBLAS chose '%s' for this CPU; re-running with OPENBLAS_CORETYPE=%s",
                anneal_blas_core(), better);
    setenv("OPENBLAS_CORETYPE", better, 1);
    char **nargv = anneal_calloc((size_t)argc + 2, sizeof *nargv);
    if (!nargv) return;
    nargv[0] = "anneal";
    for (int i = 0; i < argc; i++)
        nargv[i + 1] = argv[i];
    execv("/proc/self/exe", nargv);
    ANNEAL_WARN("cannot re-run anneal (%s); training continues with OpenBLAS's %s kernels",
                strerror(errno), anneal_blas_core());
    anneal_free(nargv);
}

// Runs `anneal init` for --init SHAPE into DIR/init.gguf; its output is shown only on failure.
static int run_init(const train_cli *o, const char *path) {
    char spec[512];
    snprintf(spec, sizeof spec, "%s", o->init);
    const char *dim = NULL, *layers = NULL, *heads = NULL, *ffn = NULL, *kv = NULL, *ctx = NULL;
    bool tied = false;
    for (char *save = NULL, *kvp = strtok_r(spec, ",", &save); kvp;
         kvp = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kvp, '=');
        if (!eq) return cli_usage_error("train", "--init: '%s' is not key=value", kvp);
        *eq = 0;
        const char *v = eq + 1;
        if (strcmp(kvp, "dim") == 0)
            dim = v;
        else if (strcmp(kvp, "layers") == 0)
            layers = v;
        else if (strcmp(kvp, "heads") == 0)
            heads = v;
        else if (strcmp(kvp, "ffn") == 0)
            ffn = v;
        else if (strcmp(kvp, "kv_heads") == 0)
            kv = v;
        else if (strcmp(kvp, "ctx") == 0)
            ctx = v;
        else if (strcmp(kvp, "tied") == 0)
            tied = strcmp(v, "0") != 0;
        else
            return cli_usage_error("train", "--init: unknown key '%s'", kvp);
    }
    if (!dim || !layers || !heads || !ffn)
        return cli_usage_error("train", "--init needs dim=, layers=, heads= and ffn=");
    char seed[32], ctxbuf[32];
    snprintf(seed, sizeof seed, "%llu", o->seed);
    snprintf(ctxbuf, sizeof ctxbuf, "%ld", o->seq > 2048 ? o->seq : 2048L);
    char *args[32];
    int n = 0;
    args[n++] = "init";
    args[n++] = "--arch";
    args[n++] = "llama";
    args[n++] = "--dim";
    args[n++] = (char *)dim;
    args[n++] = "--layers";
    args[n++] = (char *)layers;
    args[n++] = "--heads";
    args[n++] = (char *)heads;
    args[n++] = "--ffn";
    args[n++] = (char *)ffn;
    if (kv) {
        args[n++] = "--kv-heads";
        args[n++] = (char *)kv;
    }
    args[n++] = "--ctx";
    args[n++] = (char *)(ctx ? ctx : ctxbuf);
    args[n++] = "--seed";
    args[n++] = seed;
    args[n++] = "--vocab-from";
    args[n++] = (char *)o->vocab;
    if (tied) args[n++] = "--tied";
    args[n++] = (char *)path;
    args[n] = NULL;
    // init reports to stdout and stderr; keep both aside unless it fails.
    fflush(stdout);
    fflush(stderr);
    FILE *cap = tmpfile();
    int save_out = dup(1), save_err = dup(2);
    if (cap) {
        dup2(fileno(cap), 1);
        dup2(fileno(cap), 2);
    }
    int rc = cmd_init(n, args);
    fflush(stdout);
    fflush(stderr);
    dup2(save_out, 1);
    dup2(save_err, 2);
    close(save_out);
    close(save_err);
    if (cap) {
        if (rc) {
            rewind(cap);
            char line[1024];
            while (fgets(line, sizeof line, cap))
                fputs(line, stderr);
        }
        fclose(cap);
    }
    return rc == CLI_USAGE ? CLI_USAGE : rc ? CLI_FAIL : CLI_OK;
}

// --crash-at-ckpt N (for tests): the process ends, status 3, after the model file of step
// N's checkpoint and before its optimizer state.
static void crash_between(void *ctx, int64_t step) {
    if (step == *(const long *)ctx) {
        fflush(stdout);
        _exit(3);
    }
}

static char *config_json(const train_cli *o) {
    json_t *j = json_object();
    json_object_set_new(j, "steps", json_integer(o->steps));
    json_object_set_new(j, "seq", json_integer(o->seq));
    json_object_set_new(j, "batch", json_integer(o->batch));
    json_object_set_new(j, "accum", json_integer(o->accum));
    json_object_set_new(j, "lr", json_real(o->lr));
    json_object_set_new(j, "min_lr", json_real(o->min_lr));
    json_object_set_new(j, "warmup", json_integer(o->warmup));
    json_object_set_new(j, "weight_decay", json_real(o->wd));
    json_object_set_new(j, "beta1", json_real(o->beta1));
    json_object_set_new(j, "beta2", json_real(o->beta2));
    json_object_set_new(j, "eps", json_real(o->eps));
    json_object_set_new(j, "clip", json_real(o->clip));
    json_object_set_new(j, "val_frac", json_real(o->val_frac));
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", o->seed);
    json_object_set_new(j, "seed", json_string(seed));
    if (o->init) json_object_set_new(j, "init", json_string(o->init));
    if (o->lora_rank) {
        json_object_set_new(j, "lora_rank", json_integer(o->lora_rank));
        json_object_set_new(j, "lora_alpha",
                            json_real(o->lora_alpha > 0 ? o->lora_alpha : (double)o->lora_rank));
        json_object_set_new(j, "lora_targets",
                            json_string(o->lora_targets ? o->lora_targets : "q,v"));
    }
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    return s;
}

int cli_train_run(int argc, char **argv, const cli_train_plugin *plug) {
    for (int i = 1; i < argc; i++)
        if (cli_is_help(argv[i])) {
            fputs(HELP, stdout);
            return CLI_OK;
        }
    train_cli o;
    int rc = parse(argc, argv, &o);
    if (rc) {
        json_decref(o.cfg_json);
        return rc;
    }
    fix_blas(plug ? plug->argv : argv, plug ? plug->argc : argc);
    anneal_err err = {0};
    anneal_gguf *g = NULL;
    anneal_tokenizer *tok = NULL;
    tokens data = {0}, val = {0};
    char *config = NULL, *command = NULL;
    anneal_lineage_parent parents[1 + 2 * MAX_FILES];
    size_t n_parents = 0;
    char init_path[4200], model_path[4200];
    rc = CLI_FAIL;

    anneal_status st = ANNEAL_OK;
    // Under mpirun this process is one rank of a data-parallel run; rank 0 alone reports.
    if (anneal_mpi_init(&err)) goto out;
    if (anneal_mpi_rank() > 0) o.quiet = true;
    if (mkdir(o.out, 0755) != 0 && errno != EEXIST) {
        anneal_err_set(&err, ANNEAL_ERR_IO, "cannot create %s: %s", o.out, strerror(errno));
        goto out;
    }
    // Which model the data is tokenized for: the checkpoint's when resuming, else the start.
    bool resuming = false;
    if (o.resume) {
        int64_t step;
        char cdir[4096];
        anneal_err e = {0};
        if (anneal_ckpt_find(o.out, &step, cdir, sizeof cdir, &e) == ANNEAL_OK) {
            resuming = true;
            snprintf(model_path, sizeof model_path, "%s/model.gguf", cdir);
        } else if (!o.init && !o.init_from) {
            cli_fail("train", &e);
            goto out;
        } else if (!o.quiet) {
            fprintf(stderr, "anneal train: %s; starting from the beginning\n", anneal_err_msg(&e));
        }
    }
    if (!resuming) {
        if (o.init) {
            snprintf(init_path, sizeof init_path, "%s/init.gguf", o.out);
            if (anneal_mpi_rank() == 0 && (rc = run_init(&o, init_path))) goto out;
            rc = CLI_FAIL;
            if (anneal_mpi_barrier(&err)) goto out; // the other ranks read rank 0's init.gguf
            snprintf(model_path, sizeof model_path, "%s", init_path);
        } else {
            snprintf(model_path, sizeof model_path, "%s", o.init_from);
        }
    }
    if (anneal_gguf_open(model_path, &g, &err)) goto out;
    uint64_t n_vocab = 0;
    const anneal_gguf_tensor *emb = anneal_gguf_find_tensor(g, "token_embd.weight");
    if (emb && emb->n_dims >= 2) n_vocab = emb->dims[1];
    if (o.n_data && anneal_tokenizer_load(g, &tok, &err)) goto out;
    for (int i = 0; i < o.n_data; i++)
        if ((st = add_text(&data, tok, o.data[i], &err))) goto out;
    for (int i = 0; i < o.n_shards; i++)
        if ((st = add_shards(&data, &val, o.shards[i], (int32_t)n_vocab, &err))) goto out;
    for (int i = 0; i < o.n_val_shards; i++)
        if ((st = add_shards(&val, NULL, o.val_shards[i], (int32_t)n_vocab, &err))) goto out;
    // Validation: its own shards when there are any, else the last --val-frac of the tokens.
    size_t n_val = val.n ? 0 : (size_t)((double)data.n * o.val_frac);
    size_t n_train = data.n - n_val;
    const int32_t *val_tokens = val.n ? val.v : data.v + n_train;
    if (val.n) n_val = val.n;
    if (!o.quiet)
        fprintf(stderr, "data: %zu tokens (%zu train, %zu validation)\n", n_train + n_val, n_train,
                n_val);

    // Lineage: the starting model (or vocabulary) and the data files, by SHA-256.
    const char *base = o.init ? o.vocab : o.init_from;
    if (base) {
        if (anneal_lineage_parent_file(&parents[n_parents], o.init ? "vocab" : "base", base, &err))
            goto out;
        n_parents++;
    }
    for (int i = 0; i < o.n_data; i++, n_parents++)
        if (anneal_lineage_parent_file(&parents[n_parents], "data", o.data[i], &err)) goto out;
    for (int i = 0; i < o.n_shards; i++) {
        DIR *d = opendir(o.shards[i]);
        if (d) { // a directory: recorded by path only through the config
            closedir(d);
            continue;
        }
        if (anneal_lineage_parent_file(&parents[n_parents], "data", o.shards[i], &err)) goto out;
        n_parents++;
    }
    config = config_json(&o);
    command = anneal_lineage_command(plug ? plug->argc : argc, plug ? plug->argv : argv);
    if (!config || !command) {
        anneal_err_set(&err, ANNEAL_ERR_NOMEM, "out of memory");
        goto out;
    }
    anneal_trainer_opts to = {
        .out_dir = o.out,
        .init_from = model_path,
        .resume = resuming,
        .train_tokens = data.v,
        .n_train_tokens = n_train,
        .val_tokens = val_tokens,
        .n_val_tokens = n_val,
        .n_seq = (int32_t)o.seq,
        .n_batch = (int32_t)o.batch,
        .accum = (int32_t)o.accum,
        .steps = o.steps,
        .sched = {.lr = o.lr, .min_lr = o.min_lr, .warmup = o.warmup, .total = o.steps},
        .adamw = {.beta1 = (float)o.beta1,
                  .beta2 = (float)o.beta2,
                  .eps = (float)o.eps,
                  .weight_decay = (float)o.wd},
        .clip = o.clip,
        .seed = o.seed,
        .threads = (int32_t)o.threads,
        .val_every = o.val_every,
        .val_batches = o.val_batches,
        .ckpt_every = o.ckpt_every,
        .log_every = o.log_every,
        .keep = (int32_t)o.keep,
        .command = command,
        .config_json = config,
        .parents = parents,
        .n_parents = n_parents,
        .between_ckpt_files = o.crash_at ? crash_between : NULL,
        .hook_ctx = &o.crash_at,
        .quiet = o.quiet,
    };
    anneal_lora_params lora = {.rank = (int32_t)o.lora_rank,
                               .alpha = (float)(o.lora_alpha > 0 ? o.lora_alpha : o.lora_rank),
                               .seed = o.seed};
    if (o.lora_rank) {
        if (anneal_lora_targets_parse(o.lora_targets ? o.lora_targets : "q,v", &lora.targets, &err))
            goto out;
        to.lora = &lora;
    }
    anneal_trainer_result res;
    if (plug && plug->setup(plug->ctx, model_path, &to, &err)) goto out;
    if (anneal_trainer_run(&to, &res, &err)) goto out;
    if (anneal_mpi_rank() > 0) {
        // another rank of a data-parallel run: rank 0 prints the summary
    } else if (res.steps_run == 0) {
        printf("already at step %lld: nothing to do; checkpoint %s\n", (long long)res.step,
               res.last_ckpt);
    } else if (o.json) {
        printf("{\"steps\":%lld,\"loss\":%.6f,\"val_loss\":%.6f,\"tokens_per_s\":%.1f,"
               "\"checkpoint\":",
               (long long)res.step, res.last_loss, res.last_val_loss, res.tokens_per_s);
        anneal_json_write_str(stdout, res.last_ckpt, strlen(res.last_ckpt));
        printf("}\n");
    } else {
        printf("trained to step %lld: loss %.4f", (long long)res.step, res.last_loss);
        if (res.last_val_loss > 0)
            printf(", validation loss %.4f (perplexity %.2f)", res.last_val_loss,
                   exp(res.last_val_loss));
        printf(", %.0f tokens/s; checkpoint %s\n", res.tokens_per_s, res.last_ckpt);
    }
    rc = CLI_OK;
out:
    if (rc == CLI_FAIL && err.status) cli_fail(plug ? plug->name : "train", &err);
    anneal_free(data.v);
    anneal_free(val.v);
    anneal_tokenizer_free(tok);
    anneal_gguf_close(g);
    free(config); // jansson's json_dumps
    anneal_free(command);
    json_decref(o.cfg_json);
    anneal_mpi_finish(rc);
    return rc;
}

int cmd_train(int argc, char **argv) {
    return cli_train_run(argc, argv, NULL);
}
