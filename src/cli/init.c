// `anneal init`: writes a randomly initialised llama-family model of a given shape, with the
// vocabulary of an existing GGUF file, streamed tensor by tensor so any size fits in memory.
#include "cli/cli.h"

#include "anneal/gguf.h"
#include "anneal/lineage.h"
#include "anneal/optimize.h"
#include "anneal/tensor.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *HELP =
    "usage: anneal init --arch llama --dim D --layers L --heads H [--kv-heads K] --ffn F\n"
    "                   --vocab-from VOCAB.gguf OUT.gguf [flags]\n"
    "Writes a randomly initialised model of that shape: weights ~ normal(0, 0.02), the\n"
    "projections into the residual stream (attn_output, ffn_down) scaled by 1/sqrt(2*L),\n"
    "norm weights 1. The same flags and seed give the same file (set ANNEAL_LINEAGE_TIME\n"
    "for identical bytes: the creation time is recorded). The vocabulary (tokenizer.* keys)\n"
    "is copied from VOCAB.gguf and fixes the vocabulary size.\n"
    "\n"
    "  --arch NAME        llama (the only architecture so far)\n"
    "  --dim D            embedding width; a multiple of --heads, head size D/H even\n"
    "  --layers L         transformer blocks\n"
    "  --heads H          attention heads\n"
    "  --kv-heads K       key/value heads (grouped-query attention); H a multiple of K;\n"
    "                     default H\n"
    "  --ffn F            feed-forward width\n"
    "  --vocab-from FILE  GGUF file whose tokenizer.* keys are copied\n"
    "  --type T           weight type (default f32): f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q4_K\n"
    "                     q5_K q6_K q4_K_M q5_K_M; quantized types need --dim and --ffn\n"
    "                     multiples of 32 (256 for the K types); 1-D weights stay f32\n"
    "  --seed S           random seed (default 1)\n"
    "  --ctx N            llama.context_length (default 2048)\n"
    "  --rope-base B      llama.rope.freq_base (default 10000)\n"
    "  --norm-eps E       llama.attention.layer_norm_rms_epsilon (default 1e-5)\n"
    "  --tied             no output.weight: the output projection reuses token_embd\n"
    "  --threads N        worker threads (default: ANNEAL_THREADS or all CPUs)\n"
    "  --json             print a JSON summary on stdout\n"
    "\n"
    "Progress goes to stderr (a bar on a terminal, a line per tensor otherwise).\n"
    "Exit status: 0 ok, 1 unreadable vocabulary or failed write, 2 usage error.\n";

#define INIT_STD 0.02
#define CHUNK_BYTES (16u << 20)

typedef struct init_opts {
    long dim, layers, heads, kv_heads, ffn, ctx, threads;
    unsigned long long seed;
    double rope_base, norm_eps;
    bool tied, json;
    const char *vocab, *out;
    const anneal_quant_target *type;
} init_opts;

// Tensor i: its shape and type, and how it is filled.
typedef struct init_tensor {
    char name[64];
    double std; // 0: every element 1 (norm weights)
    uint32_t type, n_dims;
    uint64_t dims[ANNEAL_GGUF_MAX_DIMS]; // innermost first
    uint64_t nbytes;
} init_tensor;

typedef struct init_ctx {
    const init_tensor *it;
    uint64_t seed;
    anneal_pool *pool;
    float *scratch; // max_cols floats per thread
    int64_t max_cols;
    const uint64_t *starts; // starts[i]: tensor data bytes before tensor i; starts[n]: all
    size_t n;
    cli_progress progress;
} init_ctx;

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Row r of tensor i: its own random stream, so the values do not depend on the thread split.
static void gen_row(float *x, int64_t n, double std, uint64_t seed, uint64_t i, uint64_t r) {
    if (std == 0) {
        for (int64_t k = 0; k < n; k++)
            x[k] = 1.0f;
        return;
    }
    uint64_t s = seed;
    s ^= splitmix64(&s) + i * 0xD1B54A32D192ED03ull;
    s ^= splitmix64(&s) + r * 0x8CB92BA72F3D8DD7ull;
    for (int64_t k = 0; k < n; k += 2) {
        // Box-Muller: two normals from two uniforms in (0, 1].
        double u1 = ((double)(splitmix64(&s) >> 11) + 1.0) * 0x1.0p-53;
        double u2 = (double)(splitmix64(&s) >> 11) * 0x1.0p-53;
        double m = std * sqrt(-2.0 * log(u1));
        x[k] = (float)(m * cos(2 * M_PI * u2));
        if (k + 1 < n) x[k + 1] = (float)(m * sin(2 * M_PI * u2));
    }
}

typedef struct gen_job {
    const init_ctx *c;
    size_t i;
    uint64_t r0, r1;
    uint8_t *dst;
    uint64_t row_bytes;
    anneal_status *status;
} gen_job;

static void gen_rows(void *arg, int ith, int nth) {
    gen_job *j = arg;
    const init_tensor *t = &j->c->it[j->i];
    int64_t ncols = (int64_t)t->dims[0], lo, hi;
    anneal_split((int64_t)(j->r1 - j->r0), ith, nth, &lo, &hi);
    float *x = j->c->scratch + ith * j->c->max_cols;
    for (int64_t r = lo; r < hi; r++) {
        gen_row(x, ncols, t->std, j->c->seed, j->i, j->r0 + (uint64_t)r);
        anneal_status st = anneal_quantize(t->type, x, j->dst + (uint64_t)r * j->row_bytes, ncols);
        if (st) {
            j->status[ith] = st;
            return;
        }
    }
}

// The GGUF writer's fill callback: bytes [off, off + n) of tensor i, whole rows.
static anneal_status fill(void *ctx, uint64_t i, uint64_t off, void *dst, uint64_t n,
                          anneal_err *err) {
    init_ctx *c = ctx;
    const init_tensor *t = &c->it[i];
    uint64_t row_bytes;
    anneal_type_nbytes(t->type, t->dims[0], &row_bytes);
    anneal_status status[256] = {0};
    gen_job j = {c, (size_t)i, off / row_bytes, (off + n) / row_bytes, dst, row_bytes, status};
    anneal_pool_run(c->pool, gen_rows, &j);
    for (int k = 0; k < anneal_pool_size(c->pool); k++)
        if (status[k])
            return anneal_err_set(err, status[k], "tensor '%s': generating failed", t->name);
    cli_progress_update(&c->progress, (size_t)i, off + n == t->nbytes, c->starts[i] + off + n,
                        c->starts[c->n]);
    return ANNEAL_OK;
}

static void label(void *ctx, size_t i, FILE *f) {
    const init_tensor *t = &((const init_ctx *)ctx)->it[i];
    fprintf(f, "%s %s", t->name, anneal_type_get(t->type)->name);
}

static bool parse_double(const char *s, double lo, double hi, double *out) {
    if (!s || !*s) return false;
    char *end;
    double v = strtod(s, &end);
    if (*end || !isfinite(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_seed(const char *s, unsigned long long *out) {
    if (!s || !*s || *s == '-') return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

// Parses and checks every flag; returns CLI_OK or prints the problem and returns CLI_USAGE.
static int parse(int argc, char **argv, init_opts *o) {
    *o = (init_opts){.kv_heads = -1,
                     .ctx = 2048,
                     .seed = 1,
                     .rope_base = 10000,
                     .norm_eps = 1e-5,
                     .type = anneal_quant_target_find("f32")};
    const char *arch = NULL;
    long *need[] = {&o->dim, &o->layers, &o->heads, &o->ffn};
    const char *need_names[] = {"--dim", "--layers", "--heads", "--ffn"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long *num = NULL;
        long hi = 1L << 20;
        if (strcmp(a, "--tied") == 0) {
            o->tied = true;
            continue;
        } else if (strcmp(a, "--json") == 0) {
            o->json = true;
            continue;
        } else if (a[0] != '-' || strcmp(a, "-") == 0) {
            if (o->out) return cli_usage_error("init", "more than one output file ('%s')", a);
            o->out = a;
            continue;
        }
        if (!v) return cli_usage_error("init", "%s needs a value", a);
        i++;
        if (strcmp(a, "--arch") == 0) {
            arch = v;
        } else if (strcmp(a, "--vocab-from") == 0) {
            o->vocab = v;
        } else if (strcmp(a, "--type") == 0) {
            o->type = anneal_quant_target_find(v);
            if (!o->type) {
                char list[256];
                anneal_quant_target_list(list, sizeof list);
                return cli_usage_error("init", "--type '%s' is not one of: %s", v, list);
            }
        } else if (strcmp(a, "--seed") == 0) {
            if (!parse_seed(v, &o->seed))
                return cli_usage_error("init", "--seed '%s' is not an unsigned integer", v);
        } else if (strcmp(a, "--rope-base") == 0) {
            if (!parse_double(v, 1, 1e12, &o->rope_base))
                return cli_usage_error("init", "--rope-base '%s' must be a number >= 1", v);
        } else if (strcmp(a, "--norm-eps") == 0) {
            if (!parse_double(v, 1e-12, 1, &o->norm_eps) || o->norm_eps <= 0)
                return cli_usage_error("init", "--norm-eps '%s' must be in (0, 1]", v);
        } else if (strcmp(a, "--dim") == 0) {
            num = &o->dim;
        } else if (strcmp(a, "--layers") == 0) {
            num = &o->layers;
            hi = 4096;
        } else if (strcmp(a, "--heads") == 0) {
            num = &o->heads;
            hi = 4096;
        } else if (strcmp(a, "--kv-heads") == 0) {
            num = &o->kv_heads;
            hi = 4096;
        } else if (strcmp(a, "--ffn") == 0) {
            num = &o->ffn;
        } else if (strcmp(a, "--ctx") == 0) {
            num = &o->ctx;
            hi = 1L << 24;
        } else if (strcmp(a, "--threads") == 0) {
            num = &o->threads;
            hi = 256;
        } else {
            return cli_usage_error("init", "unknown flag '%s'", a);
        }
        if (num && !cli_parse_long(v, 1, hi, num))
            return cli_usage_error("init", "%s '%s' must be an integer in [1, %ld]", a, v, hi);
    }
    if (!arch) return cli_usage_error("init", "--arch is required (llama)");
    if (strcmp(arch, "llama") != 0)
        return cli_usage_error("init", "--arch '%s' is not supported (supported: llama)", arch);
    for (int k = 0; k < 4; k++)
        if (*need[k] == 0) return cli_usage_error("init", "%s is required", need_names[k]);
    if (o->kv_heads < 0) o->kv_heads = o->heads;
    if (!o->vocab) return cli_usage_error("init", "--vocab-from is required");
    if (!o->out) return cli_usage_error("init", "the output file OUT.gguf is required");
    if (o->dim % o->heads != 0)
        return cli_usage_error("init", "--dim %ld is not a multiple of --heads %ld", o->dim,
                               o->heads);
    if ((o->dim / o->heads) % 2 != 0)
        return cli_usage_error("init",
                               "--dim %ld / --heads %ld = head size %ld: must be even (RoPE "
                               "rotates pairs)",
                               o->dim, o->heads, o->dim / o->heads);
    if (o->heads % o->kv_heads != 0)
        return cli_usage_error("init", "--heads %ld is not a multiple of --kv-heads %ld", o->heads,
                               o->kv_heads);
    const anneal_type_info *ti = anneal_type_get(o->type->base_type);
    long block = (long)ti->block_size;
    if (o->dim % block != 0)
        return cli_usage_error("init",
                               "--dim %ld must be a multiple of %ld for --type %s (%s blocks)",
                               o->dim, block, o->type->name, ti->name);
    if (o->ffn % block != 0)
        return cli_usage_error("init",
                               "--ffn %ld must be a multiple of %ld for --type %s (%s blocks)",
                               o->ffn, block, o->type->name, ti->name);
    return CLI_OK;
}

// The effective options as a JSON object (anneal.lineage.config). Caller frees.
static char *config_json(const init_opts *o, uint64_t n_vocab) {
    json_t *j = json_object();
    json_object_set_new(j, "arch", json_string("llama"));
    json_object_set_new(j, "dim", json_integer(o->dim));
    json_object_set_new(j, "layers", json_integer(o->layers));
    json_object_set_new(j, "heads", json_integer(o->heads));
    json_object_set_new(j, "kv_heads", json_integer(o->kv_heads));
    json_object_set_new(j, "ffn", json_integer(o->ffn));
    json_object_set_new(j, "vocab_size", json_integer((json_int_t)n_vocab));
    json_object_set_new(j, "type", json_string(o->type->name));
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", o->seed); // u64 does not fit a JSON integer safely
    json_object_set_new(j, "seed", json_string(seed));
    json_object_set_new(j, "ctx", json_integer(o->ctx));
    json_object_set_new(j, "rope_base", json_real(o->rope_base));
    json_object_set_new(j, "norm_eps", json_real(o->norm_eps));
    json_object_set_new(j, "tied", json_boolean(o->tied));
    json_object_set_new(j, "init",
                        json_string("normal(0,0.02); attn_output,ffn_down "
                                    "/sqrt(2*layers); norms 1"));
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    return s;
}

static void add(init_tensor *it, size_t *n, const char *name, double std, uint64_t d0,
                uint64_t d1) {
    init_tensor *t = &it[(*n)++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->std = std;
    t->type = ANNEAL_TYPE_F32;
    t->n_dims = d1 ? 2 : 1;
    t->dims[0] = d0;
    t->dims[1] = d1 ? d1 : 1;
    t->dims[2] = t->dims[3] = 1;
}

int cmd_init(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (cli_is_help(argv[i])) {
            fputs(HELP, stdout);
            return CLI_OK;
        }
    init_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    uint64_t t0 = anneal_time_ns();
    anneal_err err = {0};
    anneal_gguf *vocab = NULL;
    anneal_gguf_writer *w = NULL;
    anneal_pool *pool = NULL;
    init_tensor *it = NULL;
    float *scratch = NULL;
    uint64_t *starts = NULL;
    init_ctx c = {0};
    char *config = NULL, *command = NULL;
    rc = CLI_FAIL;

    if (anneal_gguf_open(o.vocab, &vocab, &err)) goto fail;
    const anneal_gguf_value *tokens;
    if (anneal_gguf_get_arr(vocab, "tokenizer.ggml.tokens", ANNEAL_GGUF_STRING, &tokens, &err)) {
        anneal_err_set(&err, ANNEAL_ERR_FORMAT, "%s: no tokenizer.ggml.tokens: not a vocabulary",
                       o.vocab);
        goto fail;
    }
    uint64_t n_vocab = tokens->arr.n;
    if (n_vocab == 0 || n_vocab > (1u << 24)) {
        anneal_err_set(&err, ANNEAL_ERR_FORMAT, "%s: %" PRIu64 " tokens", o.vocab, n_vocab);
        goto fail;
    }
    uint64_t head_dim = (uint64_t)(o.dim / o.heads), dim = (uint64_t)o.dim;
    uint64_t kv_dim = head_dim * (uint64_t)o.kv_heads, ffn = (uint64_t)o.ffn;

    w = anneal_gguf_writer_new();
    if (!w) {
        anneal_err_set(&err, ANNEAL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    anneal_gguf_writer_set_str(w, "general.architecture", "llama");
    anneal_gguf_writer_set_str(w, "general.name", "anneal init");
    anneal_gguf_writer_set_u32(w, "llama.context_length", (uint32_t)o.ctx);
    anneal_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)o.dim);
    anneal_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)o.layers);
    anneal_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)o.ffn);
    anneal_gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)head_dim);
    anneal_gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)o.heads);
    anneal_gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)o.kv_heads);
    anneal_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", (float)o.norm_eps);
    anneal_gguf_writer_set_f32(w, "llama.rope.freq_base", (float)o.rope_base);
    anneal_gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)n_vocab);
    anneal_gguf_writer_set_u32(w, "general.file_type", o.type->file_type);
    anneal_gguf_writer_set_u32(w, "general.quantization_version", 2);
    anneal_gguf_writer_copy_prefix(w, vocab, "tokenizer.");

    config = config_json(&o, n_vocab);
    command = anneal_lineage_command(argc, argv);
    if (!config || !command) {
        anneal_err_set(&err, ANNEAL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    anneal_lineage_parent parent;
    if (anneal_lineage_parent_file(&parent, "vocab", o.vocab, &err)) goto fail;
    anneal_lineage lin = {.parents = &parent, .n_parents = 1, .command = command, .config = config};
    if (anneal_lineage_set(w, &lin, &err)) goto fail;

    // The tensor list, in the order converters write llama models.
    size_t cap = 3 + 9 * (size_t)o.layers, n = 0;
    it = anneal_calloc(cap, sizeof *it);
    if (!it) {
        anneal_err_set(&err, ANNEAL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    double resid = INIT_STD / sqrt(2.0 * (double)o.layers);
    add(it, &n, "token_embd.weight", INIT_STD, dim, n_vocab);
    for (long l = 0; l < o.layers; l++) {
        char name[64];
#define BLK(suffix) (snprintf(name, sizeof name, "blk.%ld.%s", l, suffix), name)
        add(it, &n, BLK("attn_norm.weight"), 0, dim, 0);
        add(it, &n, BLK("attn_q.weight"), INIT_STD, dim, dim);
        add(it, &n, BLK("attn_k.weight"), INIT_STD, dim, kv_dim);
        add(it, &n, BLK("attn_v.weight"), INIT_STD, dim, kv_dim);
        add(it, &n, BLK("attn_output.weight"), resid, dim, dim);
        add(it, &n, BLK("ffn_norm.weight"), 0, dim, 0);
        add(it, &n, BLK("ffn_gate.weight"), INIT_STD, dim, ffn);
        add(it, &n, BLK("ffn_up.weight"), INIT_STD, dim, ffn);
        add(it, &n, BLK("ffn_down.weight"), resid, ffn, dim);
#undef BLK
    }
    add(it, &n, "output_norm.weight", 0, dim, 0);
    if (!o.tied) add(it, &n, "output.weight", INIT_STD, dim, n_vocab);

    // Types by the same rules as `anneal quantize` (a mix places Q6_K where llama.cpp does).
    anneal_quant_tensor *qt = anneal_calloc(n, sizeof *qt);
    uint32_t *types = anneal_calloc(n, sizeof *types);
    if (!qt || !types) {
        anneal_free(qt);
        anneal_free(types);
        anneal_err_set(&err, ANNEAL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++)
        qt[i] = (anneal_quant_tensor){
            it[i].name, it[i].n_dims, {it[i].dims[0], it[i].dims[1], 1, 1}, ANNEAL_TYPE_F32};
    anneal_quant_model facts = {.n_layer = (uint32_t)o.layers,
                                .is_70b = o.layers == 80 && o.kv_heads != o.heads};
    anneal_quant_plan(o.type, &facts, qt, n, types, NULL);
    uint64_t n_params = 0;
    for (size_t i = 0; i < n; i++) {
        it[i].type = types[i];
        n_params += it[i].dims[0] * it[i].dims[1];
    }
    anneal_free(qt);
    anneal_free(types);

    int nth = o.threads > 0 ? (int)o.threads : anneal_thread_count();
    if (nth > 256) nth = 256;
    if (anneal_pool_new(nth, &pool, &err)) goto fail;
    int64_t max_cols = (int64_t)(ffn > dim ? ffn : dim);
    scratch = anneal_calloc((size_t)nth * (size_t)max_cols, sizeof *scratch);
    if (!scratch) {
        anneal_err_set(&err, ANNEAL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    starts = anneal_calloc(n + 1, sizeof *starts);
    if (!starts) {
        anneal_err_set(&err, ANNEAL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    c = (init_ctx){it, o.seed, pool, scratch, max_cols, starts, n, {0}};
    cli_progress_start(&c.progress, n, label, &c);
    anneal_gguf_writer_set_fill_chunk(w, CHUNK_BYTES);
    for (size_t i = 0; i < n; i++) {
        anneal_type_nbytes(it[i].type, it[i].dims[0] * it[i].dims[1], &it[i].nbytes);
        starts[i + 1] = starts[i] + it[i].nbytes;
        anneal_gguf_writer_add_tensor_fill(w, it[i].name, it[i].type, it[i].n_dims, it[i].dims,
                                           it[i].nbytes, fill, &c);
    }
    if (anneal_gguf_writer_write(w, o.out, &err)) goto fail; // reports a failed add too

    anneal_gguf *out = NULL;
    uint64_t bytes = 0;
    if (anneal_gguf_open(o.out, &out, NULL) == ANNEAL_OK) bytes = anneal_gguf_file_size(out);
    anneal_gguf_close(out);
    double secs = (double)(anneal_time_ns() - t0) / 1e9;
    if (o.json) {
        printf("{\"path\":");
        anneal_json_write_str(stdout, o.out, strlen(o.out));
        printf(",\"type\":\"%s\",\"tensors\":%zu,\"params\":%" PRIu64 ",\"bytes\":%" PRIu64
               ",\"seconds\":%.3f}\n",
               o.type->name, n, n_params, bytes, secs);
    } else {
        printf("wrote %s: %zu tensors, %" PRIu64 " parameters, %s, %.1f MB in %.1f s\n", o.out, n,
               n_params, o.type->name, (double)bytes / 1e6, secs);
    }
    rc = CLI_OK;
fail:
    cli_progress_end(&c.progress);
    if (rc) cli_fail("init", &err);
    anneal_free(starts);
    anneal_free(scratch);
    anneal_pool_free(pool);
    anneal_free(it);
    free(config); // from jansson's json_dumps
    anneal_free(command);
    anneal_gguf_writer_free(w);
    anneal_gguf_close(vocab);
    return rc;
}
