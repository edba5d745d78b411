// LoRA adapters at load: checks a GGUF LoRA adapter against the model and merges
// W' = W + s * B.A into private copies of the targeted weights; writes a model back to GGUF.
#include "model_internal.h"

#include "anneal/lineage.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define LORA_NAME_MAX 64 // llama.cpp's tensor name limit, suffix included

// One adapter pair and the weight it changes.
typedef struct lora_pair {
    const anneal_gguf_tensor *a, *b;
    model_weight *w;
    int64_t n_in, n_out, rank;
    float s;      // scale * alpha / rank
    void *merged; // staged result (nbytes of the weight)
} lora_pair;

static bool str_is(anneal_gguf_str s, const char *lit) {
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.ptr, lit, n) == 0;
}

// A string key equal to want, or a message naming the key and what it holds.
static anneal_status need_str(const anneal_gguf *g, const char *path, const char *key,
                              const char *want, const char *why, anneal_err *err) {
    anneal_gguf_str s;
    anneal_err e = {0};
    if (anneal_gguf_get_str(g, key, &s, &e))
        return anneal_err_set(err, ANNEAL_ERR_FORMAT, "%s: %s (%s)", path, why, anneal_err_msg(&e));
    if (!str_is(s, want))
        return anneal_err_set(err, ANNEAL_ERR_FORMAT, "%s: %s: key '%s' is '%.*s', expected '%s'",
                              path, why, key, (int)(s.len > 32 ? 32 : s.len), s.ptr, want);
    return ANNEAL_OK;
}

// The model weight a base tensor name refers to; NULL when it is no supported target.
static model_weight *find_target(anneal_model *m, const char *name) {
    for (int32_t l = 0; l < m->cfg.n_layer; l++) {
        model_layer *ly = &m->layers[l];
        model_weight *ws[] = {&ly->wq,     &ly->wk,   &ly->wv,    &ly->wo,
                              &ly->w_gate, &ly->w_up, &ly->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            if (ws[i]->t && str_is(ws[i]->t->name, name)) return ws[i];
    }
    if (!m->cfg.tied_embeddings && m->output.t && str_is(m->output.t->name, name))
        return &m->output;
    return NULL;
}

// Effective 2-D dims of t (trailing 1s dropped); false when t is not a matrix.
static bool matrix_dims(const anneal_gguf_tensor *t, int64_t *d0, int64_t *d1) {
    uint32_t nd = t->n_dims;
    while (nd > 2 && t->dims[nd - 1] == 1)
        nd--;
    if (nd != 2) return false;
    *d0 = (int64_t)t->dims[0];
    *d1 = (int64_t)t->dims[1];
    return true;
}

// Checks the adapter tensor's type can be read as rows of d0 values.
static anneal_status check_readable(const anneal_gguf_tensor *t, const char *path, int64_t d0,
                                    anneal_err *err) {
    uint64_t rb;
    const anneal_type_info *ti = anneal_type_get(t->type);
    if (!t->data || !ti)
        return anneal_err_set(err, ANNEAL_ERR_UNSUPPORTED, "%s: tensor '%.*s' has unknown type %u",
                              path, (int)t->name.len, t->name.ptr, t->type);
    if (anneal_type_nbytes(t->type, (uint64_t)d0, &rb))
        return anneal_err_set(err, ANNEAL_ERR_FORMAT,
                              "%s: tensor '%.*s': rows of %lld are not whole %s blocks", path,
                              (int)t->name.len, t->name.ptr, (long long)d0, ti->name);
    return ANNEAL_OK;
}

// Dequantizes all rows of a [d0, d1] tensor into a new float array.
static float *read_rows(const anneal_gguf_tensor *t, int64_t d0, int64_t d1) {
    float *x = anneal_malloc((size_t)d0 * (size_t)d1 * sizeof *x);
    if (!x) return NULL;
    uint64_t rb = 0;
    anneal_type_nbytes(t->type, (uint64_t)d0, &rb);
    for (int64_t r = 0; r < d1; r++)
        if (anneal_dequantize(t->type, t->data + (uint64_t)r * rb, x + r * d0, d0)) {
            anneal_free(x);
            return NULL;
        }
    return x;
}

typedef struct merge_job {
    const lora_pair *p;
    const float *A, *B; // [rank][n_in], [n_out][rank]
    float *tmp;         // [nth][n_in]
    atomic_int failed;
} merge_job;

// Rows [share of ith] of W' = W + s * B.A, each dequantized, summed in float and
// requantized to the weight's type.
static void merge_rows(void *arg, int ith, int nth) {
    merge_job *j = arg;
    const lora_pair *p = j->p;
    int64_t n_in = p->n_in, r = p->rank;
    float *x = j->tmp + (size_t)ith * (size_t)n_in;
    const uint8_t *src = p->w->data;
    uint8_t *dst = p->merged;
    uint64_t rb = p->w->row_bytes;
    for (int64_t row = ith; row < p->n_out; row += nth) {
        if (anneal_dequantize(p->w->type, src + (uint64_t)row * rb, x, n_in)) {
            atomic_store(&j->failed, 1);
            return;
        }
        const float *brow = j->B + row * r;
        for (int64_t k = 0; k < r; k++) {
            float c = p->s * brow[k];
            const float *arow = j->A + k * n_in;
            for (int64_t i = 0; i < n_in; i++)
                x[i] += c * arow[i];
        }
        if (anneal_quantize(p->w->type, x, dst + (uint64_t)row * rb, n_in)) {
            atomic_store(&j->failed, 1);
            return;
        }
    }
}

// Computes p->merged from the weight's current data.
static anneal_status merge_pair(lora_pair *p, anneal_pool *pool, const char *path,
                                anneal_err *err) {
    int nth = anneal_pool_size(pool);
    merge_job j = {.p = p};
    float *A = read_rows(p->a, p->n_in, p->rank), *B = read_rows(p->b, p->rank, p->n_out);
    j.A = A;
    j.B = B;
    j.tmp = anneal_malloc((size_t)nth * (size_t)p->n_in * sizeof *j.tmp);
    p->merged = anneal_aligned_alloc(64, p->w->t->nbytes);
    anneal_status st = ANNEAL_OK;
    if (!A || !B || !j.tmp || !p->merged) {
        st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory merging '%.*s'", path,
                            (int)p->a->name.len, p->a->name.ptr);
    } else {
        anneal_pool_run(pool, merge_rows, &j);
        if (atomic_load(&j.failed))
            st = anneal_err_set(
                err, ANNEAL_ERR_UNSUPPORTED, "%s: cannot merge into '%.*s' (type %s)", path,
                (int)p->w->t->name.len, p->w->t->name.ptr, anneal_type_get(p->w->type)->name);
    }
    anneal_free(A);
    anneal_free(B);
    anneal_free(j.tmp);
    return st;
}

// Checks one "<base>.lora_a" tensor and its partner; fills p.
static anneal_status check_pair(anneal_model *m, const anneal_gguf *g, const char *path,
                                const anneal_gguf_tensor *a, double alpha, float scale,
                                lora_pair *p, anneal_err *err) {
    char base[LORA_NAME_MAX + 8], bname[LORA_NAME_MAX + 16];
    int n = (int)a->name.len - 7;
    snprintf(base, sizeof base, "%.*s", n, a->name.ptr);
    snprintf(bname, sizeof bname, "%s.lora_b", base);
    const anneal_gguf_tensor *b = anneal_gguf_find_tensor(g, bname);
    if (!b)
        return anneal_err_set(err, ANNEAL_ERR_FORMAT,
                              "%s: LoRA tensor pair for '%s' is missing '%s'", path, base, bname);
    model_weight *w = find_target(m, base);
    if (!w) {
        bool exists = anneal_gguf_find_tensor(m->g, base) != NULL;
        return anneal_err_set(err, exists ? ANNEAL_ERR_UNSUPPORTED : ANNEAL_ERR_NOT_FOUND,
                              exists ? "%s: tensor '%s' is not a supported LoRA target "
                                       "(attn_q/k/v/output, ffn_gate/up/down, untied output)"
                                     : "%s: LoRA tensor '%s' does not exist in the base model",
                              path, base);
    }
    int64_t a0, a1, b0, b1, w0 = (int64_t)w->t->dims[0], w1 = (int64_t)w->t->dims[1];
    if (!matrix_dims(a, &a0, &a1) || !matrix_dims(b, &b0, &b1))
        return anneal_err_set(err, ANNEAL_ERR_FORMAT, "%s: tensor '%s' pair is not 2-D", path,
                              base);
    if (a0 != w0 || b1 != w1)
        return anneal_err_set(err, ANNEAL_ERR_FORMAT,
                              "%s: tensor '%s' has incorrect shape: lora_a [%lld, %lld], lora_b "
                              "[%lld, %lld] for a base of [%lld, %lld] (expected lora_a [%lld, r], "
                              "lora_b [r, %lld])",
                              path, base, (long long)a0, (long long)a1, (long long)b0,
                              (long long)b1, (long long)w0, (long long)w1, (long long)w0,
                              (long long)w1);
    if (a1 != b0 || a1 < 1)
        return anneal_err_set(err, ANNEAL_ERR_FORMAT,
                              "%s: tensor '%s': lora_a has rank %lld but lora_b %lld (lora_a not "
                              "transposed?)",
                              path, base, (long long)a1, (long long)b0);
    anneal_status st;
    if ((st = check_readable(a, path, a0, err)) || (st = check_readable(b, path, b0, err)))
        return st;
    p->a = a;
    p->b = b;
    p->w = w;
    p->n_in = w0;
    p->n_out = w1;
    p->rank = a1;
    p->s = alpha != 0 ? (float)(scale * alpha / (double)a1) : scale;
    return ANNEAL_OK;
}

static anneal_status check_adapter(anneal_model *m, const anneal_gguf *g, const char *path,
                                   float scale, lora_pair **out, int64_t *n_out, anneal_err *err) {
    anneal_status st;
    if ((st = need_str(g, path, "general.type", "adapter", "not a LoRA adapter", err)) ||
        (st = need_str(g, path, "adapter.type", "lora", "not a LoRA adapter", err)) ||
        (st = need_str(g, path, "general.architecture", m->cfg.arch,
                       "adapter and model architectures differ", err)))
        return st;
    double alpha;
    anneal_err e = {0};
    if (anneal_gguf_get_f64(g, "adapter.lora.alpha", &alpha, &e))
        return anneal_err_set(err, ANNEAL_ERR_FORMAT, "%s: %s", path, anneal_err_msg(&e));
    if (!isfinite(alpha) || alpha < 0)
        return anneal_err_set(err, ANNEAL_ERR_RANGE, "%s: adapter.lora.alpha is %g", path, alpha);
    uint64_t nt = anneal_gguf_n_tensors(g);
    int64_t np = 0;
    for (uint64_t i = 0; i < nt; i++) {
        const anneal_gguf_tensor *t = anneal_gguf_tensor_at(g, i);
        bool is_a = t->name.len > 7 && memcmp(t->name.ptr + t->name.len - 7, ".lora_a", 7) == 0;
        bool is_b = t->name.len > 7 && memcmp(t->name.ptr + t->name.len - 7, ".lora_b", 7) == 0;
        if (!is_a && !is_b)
            return anneal_err_set(err, ANNEAL_ERR_FORMAT,
                                  "%s: tensor '%.*s' is not a LoRA tensor (.lora_a or .lora_b)",
                                  path, (int)(t->name.len > 80 ? 80 : t->name.len), t->name.ptr);
        if (t->name.len > LORA_NAME_MAX)
            return anneal_err_set(err, ANNEAL_ERR_FORMAT, "%s: tensor name '%.*s...' is too long",
                                  path, 40, t->name.ptr);
        if (is_b) {
            char aname[LORA_NAME_MAX + 1];
            snprintf(aname, sizeof aname, "%.*s.lora_a", (int)t->name.len - 7, t->name.ptr);
            if (!anneal_gguf_find_tensor(g, aname))
                return anneal_err_set(err, ANNEAL_ERR_FORMAT,
                                      "%s: LoRA tensor pair for '%.*s' is missing '%s'", path,
                                      (int)t->name.len - 7, t->name.ptr, aname);
        }
        np += is_a;
    }
    if (np == 0)
        return anneal_err_set(err, ANNEAL_ERR_FORMAT, "%s: the adapter has no LoRA tensors", path);
    lora_pair *ps = anneal_calloc((size_t)np, sizeof *ps);
    if (!ps) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", path);
    int64_t k = 0;
    for (uint64_t i = 0; i < nt; i++) {
        const anneal_gguf_tensor *t = anneal_gguf_tensor_at(g, i);
        if (memcmp(t->name.ptr + t->name.len - 7, ".lora_a", 7) != 0) continue;
        if ((st = check_pair(m, g, path, t, alpha, scale, &ps[k++], err))) {
            anneal_free(ps);
            return st;
        }
    }
    *out = ps;
    *n_out = np;
    return ANNEAL_OK;
}

// The private buffer already holding t's data, or NULL.
static model_lora_buf *buf_of(anneal_model *m, const anneal_gguf_tensor *t) {
    for (int32_t i = 0; i < m->n_lora_bufs; i++)
        if (m->lora_bufs[i].t == t) return &m->lora_bufs[i];
    return NULL;
}

anneal_status anneal_model_apply_lora(anneal_model *m, const char *path, float scale,
                                      anneal_err *err) {
    if (!isfinite(scale))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s: LoRA scale is not finite", path);
    anneal_gguf *g = NULL;
    anneal_status st = anneal_gguf_open(path, &g, err);
    if (st) return st;
    lora_pair *ps = NULL;
    int64_t np = 0;
    anneal_pool *pool = NULL;
    if ((st = check_adapter(m, g, path, scale, &ps, &np, err))) goto done;
    model_lora_buf *bufs =
        anneal_realloc(m->lora_bufs, ((size_t)m->n_lora_bufs + (size_t)np) * sizeof *bufs);
    if (!bufs) {
        st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    m->lora_bufs = bufs;
    if ((st = anneal_pool_new(anneal_thread_count(), &pool, err))) goto done;
    // Stage every merge first so that a failure leaves the model as it was.
    for (int64_t i = 0; i < np; i++)
        if ((st = merge_pair(&ps[i], pool, path, err))) goto done;
    for (int64_t i = 0; i < np; i++) {
        model_lora_buf *b = buf_of(m, ps[i].w->t);
        if (b) {
            anneal_free(b->data);
        } else {
            b = &m->lora_bufs[m->n_lora_bufs++];
            b->t = ps[i].w->t;
        }
        b->data = ps[i].merged;
        ps[i].merged = NULL;
        ps[i].w->data = b->data;
    }
    m->n_lora++;
done:
    for (int64_t i = 0; i < np; i++)
        anneal_free(ps[i].merged);
    anneal_free(ps);
    anneal_pool_free(pool);
    anneal_gguf_close(g);
    return st;
}

anneal_status anneal_model_apply_lora_list(anneal_model *m, const char *list, anneal_err *err) {
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char *item = anneal_strndup(p, len);
        if (!item) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
        float scale = 1.0f;
        char *colon = strrchr(item, ':');
        if (colon && colon[1]) {
            char *e;
            float v = strtof(colon + 1, &e);
            if (!*e && isfinite(v)) {
                scale = v;
                *colon = 0;
            }
        }
        anneal_status st = *item ? anneal_model_apply_lora(m, item, scale, err)
                                 : anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                                  "LoRA list '%s' has an empty entry", list);
        anneal_free(item);
        if (st) return st;
        if (!end) break;
        p = end + 1;
        if (!*p)
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "LoRA list '%s' has an empty entry",
                                  list);
    }
    return ANNEAL_OK;
}

int32_t anneal_model_lora_count(const anneal_model *m) {
    return m->n_lora;
}

void model_lora_free(anneal_model *m) {
    for (int32_t i = 0; i < m->n_lora_bufs; i++)
        anneal_free(m->lora_bufs[i].data);
    anneal_free(m->lora_bufs);
    m->lora_bufs = NULL;
    m->n_lora_bufs = 0;
}

static anneal_status nomem(anneal_gguf_writer *w, const char *path, anneal_err *err) {
    anneal_gguf_writer_free(w);
    return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", path);
}

anneal_status anneal_model_write(const anneal_model *m, const char *path,
                                 const struct anneal_lineage *lin, anneal_err *err) {
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    if (!w) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", path);
    const anneal_gguf *g = m->g;
    // Every call's failure is recorded in the writer and reported by write.
    for (uint64_t i = 0; i < anneal_gguf_n_kv(g); i++) {
        const anneal_gguf_kv *kv = anneal_gguf_kv_at(g, i);
        char *key = anneal_strndup(kv->key.ptr, (size_t)kv->key.len);
        if (!key) return nomem(w, path, err);
        anneal_gguf_writer_set_value(w, key, &kv->value);
        anneal_free(key);
    }
    for (uint64_t i = 0; i < anneal_gguf_n_tensors(g); i++) {
        const anneal_gguf_tensor *t = anneal_gguf_tensor_at(g, i);
        const void *data = t->data;
        for (int32_t k = 0; k < m->n_lora_bufs; k++)
            if (m->lora_bufs[k].t == t) data = m->lora_bufs[k].data;
        char *name = anneal_strndup(t->name.ptr, (size_t)t->name.len);
        if (!name) return nomem(w, path, err);
        anneal_gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->dims, data, t->nbytes);
        anneal_free(name);
    }
    anneal_status st = lin ? anneal_lineage_set(w, lin, err) : ANNEAL_OK;
    if (!st) st = anneal_gguf_writer_write(w, path, err);
    anneal_gguf_writer_free(w);
    return st;
}
