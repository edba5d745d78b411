// Quantizing model files: the targets, llama.cpp's per-tensor type rules (Q4_K_M, Q5_K_M,
// output.weight in Q6_K, fallbacks for short rows), and the file-to-file quantizer, which
// hands the GGUF writer a fill callback per tensor so output is produced chunk by chunk.
#include "anneal/optimize.h"

#include "anneal/lineage.h"

#include <inttypes.h>
#include <stdio.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

// ---- targets ------------------------------------------------------------------------

// llama_ftype numbers (llama.h); the file_type of a pure K-quant is the smallest mix of it.
static const anneal_quant_target TARGETS[] = {
    {"f32", 0, ANNEAL_TYPE_F32, false, false},    {"f16", 1, ANNEAL_TYPE_F16, false, false},
    {"bf16", 32, ANNEAL_TYPE_BF16, false, false}, {"q8_0", 7, ANNEAL_TYPE_Q8_0, true, true},
    {"q4_0", 2, ANNEAL_TYPE_Q4_0, true, true},    {"q4_1", 3, ANNEAL_TYPE_Q4_1, true, true},
    {"q5_0", 8, ANNEAL_TYPE_Q5_0, true, true},    {"q4_K", 14, ANNEAL_TYPE_Q4_K, false, true},
    {"q5_K", 16, ANNEAL_TYPE_Q5_K, false, true},  {"q6_K", 18, ANNEAL_TYPE_Q6_K, true, true},
    {"q4_K_M", 15, ANNEAL_TYPE_Q4_K, true, true}, {"q5_K_M", 17, ANNEAL_TYPE_Q5_K, true, true},
};
#define N_TARGETS (sizeof TARGETS / sizeof TARGETS[0])

// llama_ftype values the rules below compare against.
enum { FTYPE_Q4_K_M = 15, FTYPE_Q5_K_M = 17 };

const anneal_quant_target *anneal_quant_targets(size_t *n) {
    *n = N_TARGETS;
    return TARGETS;
}

const anneal_quant_target *anneal_quant_target_find(const char *name) {
    for (size_t i = 0; name && i < N_TARGETS; i++)
        if (strcasecmp(TARGETS[i].name, name) == 0) return &TARGETS[i];
    return NULL;
}

void anneal_quant_target_list(char *buf, size_t cap) {
    size_t used = 0;
    if (cap) buf[0] = '\0';
    for (size_t i = 0; i < N_TARGETS && used < cap; i++) {
        int n = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", TARGETS[i].name);
        if (n < 0) break;
        used += (size_t)n;
    }
}

// ---- per-tensor rules ---------------------------------------------------------------

typedef enum category {
    CAT_OTHER,
    CAT_TOKEN_EMBD,
    CAT_OUTPUT,
    CAT_ATTN_V, // attn_v, attn_qkv and attn_kv_b: the value-carrying projections
    CAT_FFN_DOWN,
} category;

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

static category categorize(const char *name) {
    if (strcmp(name, "output.weight") == 0) return CAT_OUTPUT;
    if (strcmp(name, "token_embd.weight") == 0) return CAT_TOKEN_EMBD;
    if (strstr(name, "attn_qkv.weight") || strstr(name, "attn_kv_b.weight") ||
        strstr(name, "attn_v.weight"))
        return CAT_ATTN_V;
    if (strstr(name, "ffn_down")) return CAT_FFN_DOWN;
    return CAT_OTHER;
}

// Dimensions as ggml counts them: trailing dims of 1 do not count.
static uint32_t real_dims(const anneal_quant_tensor *t) {
    uint32_t n = 1;
    for (uint32_t d = 1; d < t->n_dims && d < ANNEAL_GGUF_MAX_DIMS; d++)
        if (t->dims[d] > 1) n = d + 1;
    return n;
}

// Weights that are quantized at all: matrices named *weight, except norms, MoE routers,
// positional and token-type embeddings and a few tiny special tensors (llama.cpp's list,
// restricted to the architectures anneal reads).
static bool quantizable(const anneal_quant_tensor *t) {
    if (real_dims(t) < 2 || !ends_with(t->name, "weight")) return false;
    static const char *const never[] = {"_norm.weight", "ffn_gate_inp.weight", "ssm_conv1d",
                                        "attn_rel_b.weight"};
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        if (strstr(t->name, never[i])) return false;
    return strcmp(t->name, "position_embd.weight") != 0 &&
           strcmp(t->name, "token_types.weight") != 0;
}

static uint32_t block_of(uint32_t type) {
    const anneal_type_info *ti = anneal_type_get(type);
    return ti ? ti->block_size : 1;
}

// llama.cpp's "use more bits" layers: the first and last eighth, and every third between.
static bool more_bits(int64_t i, int64_t n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

void anneal_quant_plan(const anneal_quant_target *t, const anneal_quant_model *m,
                       const anneal_quant_tensor *ts, size_t n, uint32_t *types, bool *fallback) {
    // llama.cpp counts attn_v tensors but takes the ffn_down count from the layer count;
    // without a layer count the ffn_down tensors are counted too.
    int64_t n_attn_v = 0, i_attn_v = 0, i_ffn_down = 0, n_ffn_down = 0;
    bool tied = true;
    for (size_t i = 0; i < n; i++) {
        category c = categorize(ts[i].name);
        if (c == CAT_ATTN_V) n_attn_v++;
        if (c == CAT_FFN_DOWN) n_ffn_down++;
        if (c == CAT_OUTPUT) tied = false;
    }
    if (m && m->n_layer) n_ffn_down = m->n_layer;
    for (size_t i = 0; i < n; i++) {
        const anneal_quant_tensor *x = &ts[i];
        if (fallback) fallback[i] = false;
        types[i] = x->type;
        if (!quantizable(x)) continue;
        uint32_t ty = t->base_type;
        if (!t->quantized) {
            types[i] = ty;
            continue;
        }
        uint64_t ncols = x->dims[0];
        if (t->mix) {
            category c = categorize(x->name);
            if (c == CAT_OUTPUT || (tied && c == CAT_TOKEN_EMBD)) {
                // The output projection (or the embedding standing in for it) is the most
                // sensitive matrix: Q6_K unless the target is Q8_0 already.
                if (ncols % block_of(ty) != 0)
                    ty = ANNEAL_TYPE_Q8_0;
                else if (ty != ANNEAL_TYPE_Q8_0)
                    ty = ANNEAL_TYPE_Q6_K;
            } else if (c == CAT_ATTN_V) {
                if ((t->file_type == FTYPE_Q4_K_M || t->file_type == FTYPE_Q5_K_M) &&
                    more_bits(i_attn_v, n_attn_v))
                    ty = ANNEAL_TYPE_Q6_K;
                if (m && m->is_70b && ty == ANNEAL_TYPE_Q4_K) ty = ANNEAL_TYPE_Q5_K;
                i_attn_v++;
            } else if (c == CAT_FFN_DOWN) {
                if ((t->file_type == FTYPE_Q4_K_M || t->file_type == FTYPE_Q5_K_M) &&
                    more_bits(i_ffn_down, n_ffn_down))
                    ty = ANNEAL_TYPE_Q6_K;
                i_ffn_down++;
            }
        }
        if (ncols % block_of(ty) != 0) {
            // Row length not a multiple of the block: llama.cpp's fallbacks (Q5_K goes to
            // Q5_0 here: anneal has no Q5_1 kernels), then F16 when even those do not fit.
            if (fallback) fallback[i] = true;
            switch (ty) {
            case ANNEAL_TYPE_Q4_K:
            case ANNEAL_TYPE_Q5_K:
                ty = ANNEAL_TYPE_Q5_0;
                break;
            case ANNEAL_TYPE_Q6_K:
                ty = ANNEAL_TYPE_Q8_0;
                break;
            default:
                ty = ANNEAL_TYPE_F16;
                break;
            }
            if (ncols % block_of(ty) != 0) ty = ANNEAL_TYPE_F16;
        }
        types[i] = ty;
    }
}

// ---- quantizing a file --------------------------------------------------------------

#define CHUNK_BYTES (32u << 20)

typedef struct qjob {
    const anneal_gguf_tensor *src;
    uint32_t out_type;
    int64_t ncols;
    uint64_t in_row, out_row; // bytes per row
    uint64_t r0, r1;
    uint8_t *dst;
    float *scratch; // ncols_max floats per thread
    int64_t scratch_stride;
    anneal_status *status; // per thread
} qjob;

static void quantize_rows(void *arg, int ith, int nth) {
    qjob *j = arg;
    int64_t lo, hi;
    anneal_split((int64_t)(j->r1 - j->r0), ith, nth, &lo, &hi);
    float *x = j->scratch + (int64_t)ith * j->scratch_stride;
    for (int64_t r = lo; r < hi; r++) {
        uint64_t row = j->r0 + (uint64_t)r;
        anneal_status st =
            anneal_dequantize(j->src->type, j->src->data + row * j->in_row, x, j->ncols);
        if (!st) st = anneal_quantize(j->out_type, x, j->dst + (uint64_t)r * j->out_row, j->ncols);
        if (st) {
            j->status[ith] = st;
            return;
        }
    }
}

typedef struct qctx {
    const anneal_gguf *in;
    const uint32_t *types;
    anneal_pool *pool;
    float *scratch;
    int64_t scratch_stride;
    anneal_status *status;
    size_t n;
    uint64_t *starts; // starts[i]: output tensor data bytes before tensor i; starts[n]: all
    anneal_quantize_progress_fn progress;
    void *progress_ctx;
} qctx;

static anneal_status convert(qctx *q, const anneal_gguf_tensor *t, size_t i, uint64_t r0,
                             uint64_t r1, uint64_t in_row, void *dst, anneal_err *err);

// Drops the pages of an input tensor that is done from this process (they stay in the page
// cache): without it the mapped input counts whole in the resident size of a run. The input
// is opened by path, a read-only file mapping, so a page touched again is read back.
static void release(const uint8_t *data, uint64_t n) {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)data + page - 1) & ~(page - 1);
    uintptr_t hi = ((uintptr_t)data + n) & ~(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

// The writer's fill callback: bytes [off, off + n) of output tensor i, whole rows.
static anneal_status quant_fill(void *ctx, uint64_t i, uint64_t off, void *dst, uint64_t n,
                                anneal_err *err) {
    qctx *q = ctx;
    const anneal_gguf_tensor *t = anneal_gguf_tensor_at(q->in, i);
    uint64_t rows = 1;
    for (uint32_t d = 1; d < t->n_dims; d++)
        rows *= t->dims[d];
    uint64_t in_row = rows ? t->nbytes / rows : 0;
    uint64_t out_bytes = q->starts[i + 1] - q->starts[i], out_row = out_bytes / rows;
    uint64_t r0 = off / out_row, r1 = (off + n) / out_row;
    if (q->types[i] == t->type) {
        memcpy(dst, t->data + r0 * in_row, (size_t)n);
    } else {
        anneal_status st = convert(q, t, (size_t)i, r0, r1, in_row, dst, err);
        if (st) return st;
    }
    bool last = off + n == out_bytes;
    if (last) release(t->data, t->nbytes);
    if (q->progress)
        q->progress(q->progress_ctx, (size_t)i, last, q->starts[i] + off + n, q->starts[q->n]);
    return ANNEAL_OK;
}

// Converts rows [r0, r1) of t to q->types[i] on the pool.
static anneal_status convert(qctx *q, const anneal_gguf_tensor *t, size_t i, uint64_t r0,
                             uint64_t r1, uint64_t in_row, void *dst, anneal_err *err) {
    int64_t ncols = t->n_dims ? (int64_t)t->dims[0] : 1;
    uint64_t out_row;
    anneal_type_nbytes(q->types[i], (uint64_t)ncols, &out_row);
    qjob j = {t,          q->types[i],       ncols,    in_row, out_row, r0, r1, dst,
              q->scratch, q->scratch_stride, q->status};
    int nth = anneal_pool_size(q->pool);
    for (int k = 0; k < nth; k++)
        q->status[k] = ANNEAL_OK;
    anneal_pool_run(q->pool, quantize_rows, &j);
    for (int k = 0; k < nth; k++)
        if (q->status[k])
            return anneal_err_set(err, q->status[k], "tensor '%.*s': converting %s to %s failed",
                                  (int)t->name.len, t->name.ptr, anneal_type_get(t->type)->name,
                                  anneal_type_get(q->types[i])->name);
    return ANNEAL_OK;
}

static bool key_is_lineage(anneal_gguf_str k) {
    return k.len >= 15 && memcmp(k.ptr, "anneal.lineage.", 15) == 0;
}

// Layer count and the 70B test from "<arch>.block_count" and the head counts.
static anneal_quant_model model_facts(const anneal_gguf *g) {
    anneal_quant_model m = {0};
    anneal_gguf_str arch;
    if (anneal_gguf_get_str(g, "general.architecture", &arch, NULL) || arch.len > 64) return m;
    char key[128];
    uint64_t v = 0, heads = 0, kv_heads = 0;
    snprintf(key, sizeof key, "%.*s.block_count", (int)arch.len, arch.ptr);
    if (!anneal_gguf_get_u64(g, key, &v, NULL) && v <= UINT32_MAX) m.n_layer = (uint32_t)v;
    snprintf(key, sizeof key, "%.*s.attention.head_count", (int)arch.len, arch.ptr);
    anneal_gguf_get_u64(g, key, &heads, NULL);
    snprintf(key, sizeof key, "%.*s.attention.head_count_kv", (int)arch.len, arch.ptr);
    anneal_gguf_get_u64(g, key, &kv_heads, NULL);
    m.is_70b = arch.len == 5 && memcmp(arch.ptr, "llama", 5) == 0 && m.n_layer == 80 && kv_heads &&
               heads != kv_heads;
    return m;
}

// The file's tensors as the rules see them; names become C strings in *names (one block).
// Both arrays are freed by the caller with anneal_free.
static anneal_status file_tensors(const anneal_gguf *g, anneal_quant_tensor **out, char **names,
                                  anneal_err *err) {
    size_t n = (size_t)anneal_gguf_n_tensors(g), len = 1;
    for (size_t i = 0; i < n; i++)
        len += (size_t)anneal_gguf_tensor_at(g, i)->name.len + 1;
    anneal_quant_tensor *qt = anneal_calloc(n ? n : 1, sizeof *qt);
    char *np = anneal_malloc(len);
    if (!qt || !np) {
        anneal_free(qt);
        anneal_free(np);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    }
    *out = qt;
    *names = np;
    for (size_t i = 0; i < n; i++) {
        const anneal_gguf_tensor *t = anneal_gguf_tensor_at(g, i);
        if (memchr(t->name.ptr, '\0', (size_t)t->name.len))
            return anneal_err_set(err, ANNEAL_ERR_FORMAT, "tensor %zu: NUL byte in its name", i);
        memcpy(np, t->name.ptr, (size_t)t->name.len);
        np[t->name.len] = '\0';
        qt[i].name = np;
        np += t->name.len + 1;
        qt[i].n_dims = t->n_dims;
        memcpy(qt[i].dims, t->dims, sizeof qt[i].dims);
        qt[i].type = t->type;
    }
    return ANNEAL_OK;
}

anneal_status anneal_quant_plan_file(const anneal_gguf *g, const anneal_quant_target *t,
                                     uint32_t *types, bool *fallback, anneal_err *err) {
    anneal_quant_tensor *qt = NULL;
    char *names = NULL;
    anneal_status st = file_tensors(g, &qt, &names, err);
    if (!st) {
        anneal_quant_model facts = model_facts(g);
        anneal_quant_plan(t, &facts, qt, (size_t)anneal_gguf_n_tensors(g), types, fallback);
    }
    anneal_free(qt);
    anneal_free(names);
    return st;
}

anneal_status anneal_quantize_file(const char *in_path, const char *out_path,
                                   const anneal_quantize_opts *opts, anneal_quantize_stats *stats,
                                   anneal_err *err) {
    uint64_t t0 = anneal_time_ns();
    const anneal_quant_target *target = anneal_quant_target_find(opts->target);
    if (!target) {
        char list[256];
        anneal_quant_target_list(list, sizeof list);
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "unknown type '%s' (valid: %s)",
                              opts->target ? opts->target : "", list);
    }
    anneal_gguf *in = NULL;
    anneal_status st = anneal_gguf_open(in_path, &in, err);
    if (st) return st;
    size_t n = (size_t)anneal_gguf_n_tensors(in);
    anneal_quant_tensor *qt = NULL;
    uint64_t *starts = anneal_calloc(n + 1, sizeof *starts);
    uint32_t *types = anneal_calloc(n ? n : 1, sizeof *types);
    bool *fb = anneal_calloc(n ? n : 1, sizeof *fb);
    char *names = NULL;
    anneal_gguf_writer *w = NULL;
    anneal_pool *pool = NULL;
    float *scratch = NULL;
    anneal_status *tstatus = NULL;
    if (!starts || !types || !fb) {
        st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", in_path);
        goto done;
    }
    int64_t max_cols = 1;
    for (size_t i = 0; i < n; i++) {
        const anneal_gguf_tensor *t = anneal_gguf_tensor_at(in, i);
        const anneal_type_info *ti = anneal_type_get(t->type);
        if (!ti || !t->data) {
            st = anneal_err_set(err, ANNEAL_ERR_UNSUPPORTED, "%s: tensor '%.*s': unknown type %u",
                                in_path, (int)t->name.len, t->name.ptr, t->type);
            goto done;
        }
        if (t->type != ANNEAL_TYPE_F32 && t->type != ANNEAL_TYPE_F16 &&
            t->type != ANNEAL_TYPE_BF16) {
            st = anneal_err_set(err, ANNEAL_ERR_UNSUPPORTED,
                                "%s: already quantized (tensor '%.*s' is %s); quantize from an "
                                "f32, f16 or bf16 file",
                                in_path, (int)t->name.len, t->name.ptr, ti->name);
            goto done;
        }
        if (t->n_dims && (int64_t)t->dims[0] > max_cols) max_cols = (int64_t)t->dims[0];
    }
    st = file_tensors(in, &qt, &names, err);
    if (st) {
        st = anneal_err_set(err, st, "%s: reading the tensor table", in_path);
        goto done;
    }
    anneal_quant_model facts = model_facts(in);
    anneal_quant_plan(target, &facts, qt, n, types, fb);
    for (size_t i = 0; i < n; i++) {
        uint64_t n_elems = qt[i].dims[0] * qt[i].dims[1] * qt[i].dims[2] * qt[i].dims[3], b = 0;
        anneal_type_nbytes(types[i], n_elems, &b); // the plan keeps rows whole blocks
        starts[i + 1] = starts[i] + b;
    }

    // Metadata: everything but the old lineage, then the file type and this step's lineage.
    w = anneal_gguf_writer_new();
    if (!w) {
        st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (uint64_t i = 0; i < anneal_gguf_n_kv(in); i++) {
        const anneal_gguf_kv *kv = anneal_gguf_kv_at(in, i);
        if (key_is_lineage(kv->key)) continue;
        if (memchr(kv->key.ptr, '\0', (size_t)kv->key.len)) {
            st = anneal_err_set(err, ANNEAL_ERR_FORMAT, "%s: key %" PRIu64 " has a NUL byte",
                                in_path, i);
            goto done;
        }
        char key[256];
        if (kv->key.len >= sizeof key) {
            st = anneal_err_set(err, ANNEAL_ERR_LIMIT, "%s: key %" PRIu64 " longer than 255 bytes",
                                in_path, i);
            goto done;
        }
        memcpy(key, kv->key.ptr, (size_t)kv->key.len);
        key[kv->key.len] = '\0';
        st = anneal_gguf_writer_set_value(w, key, &kv->value);
        if (st) {
            st = anneal_err_set(err, st, "%s: copying key '%s' failed", in_path, key);
            goto done;
        }
    }
    anneal_gguf_writer_set_u32(w, "general.quantization_version", 2);
    anneal_gguf_writer_set_u32(w, "general.file_type", target->file_type);

    anneal_lineage_parent parent;
    st = anneal_lineage_parent_file(&parent, "input", in_path, err);
    if (st) goto done;
    char config[256];
    snprintf(config, sizeof config, "{\"type\":\"%s\",\"file_type\":%" PRIu32 "}", target->name,
             target->file_type);
    anneal_lineage lin = {
        .parents = &parent, .n_parents = 1, .command = opts->command, .config = config};
    st = anneal_lineage_set(w, &lin, err);
    if (st) goto done;

    int nth = opts->n_threads > 0 ? opts->n_threads : anneal_thread_count();
    st = anneal_pool_new(nth, &pool, err);
    if (st) goto done;
    scratch = anneal_calloc((size_t)nth * (size_t)max_cols, sizeof *scratch);
    tstatus = anneal_calloc((size_t)nth, sizeof *tstatus);
    if (!scratch || !tstatus) {
        st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
        goto done;
    }
    qctx q = {in,      types, pool,   scratch,        max_cols,
              tstatus, n,     starts, opts->progress, opts->progress_ctx};
    anneal_gguf_writer_set_fill_chunk(w, CHUNK_BYTES);
    for (size_t i = 0; i < n; i++)
        anneal_gguf_writer_add_tensor_fill(w, qt[i].name, types[i], qt[i].n_dims, qt[i].dims,
                                           starts[i + 1] - starts[i], quant_fill, &q);
    st = anneal_gguf_writer_write(w, out_path, err); // reports a failed add too
    if (st) goto done;
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->in_bytes = anneal_gguf_file_size(in);
        stats->n_tensors = n;
        stats->file_type = target->file_type;
        for (size_t i = 0; i < n; i++) {
            stats->count_by_type[types[i]]++;
            stats->n_quantized += types[i] != qt[i].type;
            stats->n_fallback += fb[i];
        }
        anneal_gguf *out = NULL;
        if (anneal_gguf_open(out_path, &out, NULL) == ANNEAL_OK)
            stats->out_bytes = anneal_gguf_file_size(out);
        anneal_gguf_close(out);
        stats->seconds = (double)(anneal_time_ns() - t0) / 1e9;
    }
done:
    anneal_free(tstatus);
    anneal_free(scratch);
    anneal_pool_free(pool);
    anneal_gguf_writer_free(w);
    anneal_free(names);
    anneal_free(fb);
    anneal_free(types);
    anneal_free(starts);
    anneal_free(qt);
    anneal_gguf_close(in);
    return st;
}
