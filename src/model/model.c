// Model loading: reads the llama/qwen2 config from GGUF metadata, binds every weight to
// the mapping (no copies) and checks names, shapes and types before anything runs.
#include "model_internal.h"

#include <math.h>
#include <stdio.h>

// Caps that keep sizes far inside int32 and size_t arithmetic.
#define MAX_DIM (1 << 20)
#define MAX_LAYERS 4096

typedef struct loader {
    const char *path;
    const anneal_gguf *g;
    const char *arch;
    anneal_err *err;
} loader;

// Records "PATH: message" (first failure wins).
static anneal_status fail(const loader *L, anneal_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static anneal_status fail(const loader *L, anneal_status s, const char *fmt, ...) {
    char msg[ANNEAL_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return anneal_err_set(L->err, s, "%s: %s", L->path, msg);
}

static void arch_key(const loader *L, char *key, size_t cap, const char *suffix) {
    snprintf(key, cap, "%s.%s", L->arch, suffix);
}

// An integer key "<arch>.suffix" in [lo, hi]; def when absent and not required.
static anneal_status get_int(const loader *L, const char *suffix, bool required, int64_t def,
                             int64_t lo, int64_t hi, int32_t *out) {
    char key[128];
    arch_key(L, key, sizeof key, suffix);
    if (!anneal_gguf_find(L->g, key)) {
        if (required) return fail(L, ANNEAL_ERR_NOT_FOUND, "missing key '%s'", key);
        *out = (int32_t)def;
        return ANNEAL_OK;
    }
    int64_t v;
    anneal_err e = {0};
    anneal_status st = anneal_gguf_get_i64(L->g, key, &v, &e);
    if (st) return fail(L, st, "%s", anneal_err_msg(&e));
    if (v < lo || v > hi)
        return fail(L, ANNEAL_ERR_RANGE, "key '%s' is %lld, not in %lld..%lld", key, (long long)v,
                    (long long)lo, (long long)hi);
    *out = (int32_t)v;
    return ANNEAL_OK;
}

// A positive, finite float key "<arch>.suffix"; def when absent.
static anneal_status get_float(const loader *L, const char *suffix, bool required, float def,
                               float *out) {
    char key[128];
    arch_key(L, key, sizeof key, suffix);
    if (!anneal_gguf_find(L->g, key)) {
        if (required) return fail(L, ANNEAL_ERR_NOT_FOUND, "missing key '%s'", key);
        *out = def;
        return ANNEAL_OK;
    }
    double v;
    anneal_err e = {0};
    anneal_status st = anneal_gguf_get_f64(L->g, key, &v, &e);
    if (st) return fail(L, st, "%s", anneal_err_msg(&e));
    if (!(v > 0) || !isfinite(v) || v > 3.0e38)
        return fail(L, ANNEAL_ERR_RANGE, "key '%s' is %g, expected a positive finite number", key,
                    v);
    *out = (float)v;
    return ANNEAL_OK;
}

static anneal_status read_config(const loader *L, anneal_model_config *c) {
    anneal_status st;
    if ((st = get_int(L, "embedding_length", true, 0, 1, MAX_DIM, &c->n_embd)) ||
        (st = get_int(L, "block_count", true, 0, 1, MAX_LAYERS, &c->n_layer)) ||
        (st = get_int(L, "attention.head_count", true, 0, 1, MAX_DIM, &c->n_head)) ||
        (st = get_int(L, "attention.head_count_kv", false, c->n_head, 1, MAX_DIM, &c->n_head_kv)) ||
        (st = get_int(L, "feed_forward_length", true, 0, 1, MAX_DIM, &c->n_ff)) ||
        (st = get_int(L, "context_length", true, 0, 1, INT32_MAX, &c->n_ctx_train)) ||
        (st = get_float(L, "attention.layer_norm_rms_epsilon", true, 0, &c->norm_eps)) ||
        (st = get_float(L, "rope.freq_base", false, 10000.0f, &c->rope_freq_base)))
        return st;
    char key[128];
    if (c->n_embd % c->n_head)
        return fail(L, ANNEAL_ERR_FORMAT,
                    "%s.attention.head_count = %d does not divide %s.embedding_length = %d",
                    L->arch, c->n_head, L->arch, c->n_embd);
    if (c->n_head % c->n_head_kv)
        return fail(L, ANNEAL_ERR_FORMAT,
                    "%s.attention.head_count_kv = %d does not divide %s.attention.head_count = %d",
                    L->arch, c->n_head_kv, L->arch, c->n_head);
    if ((st = get_int(L, "attention.key_length", false, c->n_embd / c->n_head, 2, MAX_DIM,
                      &c->head_dim)))
        return st;
    int32_t v_len;
    if ((st = get_int(L, "attention.value_length", false, c->head_dim, 1, MAX_DIM, &v_len)))
        return st;
    if (v_len != c->head_dim)
        return fail(L, ANNEAL_ERR_UNSUPPORTED,
                    "%s.attention.value_length = %d differs from key_length = %d", L->arch, v_len,
                    c->head_dim);
    if ((int64_t)c->n_head * c->head_dim > MAX_DIM)
        return fail(L, ANNEAL_ERR_RANGE, "n_head * head_dim = %lld is too large",
                    (long long)c->n_head * c->head_dim);
    if ((st = get_int(L, "rope.dimension_count", false, c->head_dim, 2, c->head_dim, &c->n_rot)))
        return st;
    if (c->n_rot % 2)
        return fail(L, ANNEAL_ERR_FORMAT, "%s.rope.dimension_count = %d is odd", L->arch, c->n_rot);
    c->rope_type = strcmp(L->arch, "qwen2") == 0 ? ANNEAL_ROPE_NEOX : ANNEAL_ROPE_NORM;

    // Rope scaling: none, or llama3 (Llama 3.1+ style frequency smoothing).
    arch_key(L, key, sizeof key, "rope.scaling.type");
    if (anneal_gguf_find(L->g, key)) {
        anneal_gguf_str s;
        anneal_err e = {0};
        if ((st = anneal_gguf_get_str(L->g, key, &s, &e)))
            return fail(L, st, "%s", anneal_err_msg(&e));
        bool none = s.len == 4 && memcmp(s.ptr, "none", 4) == 0;
        bool llama3 = s.len == 6 && memcmp(s.ptr, "llama3", 6) == 0;
        if (!none && !llama3)
            return fail(L, ANNEAL_ERR_UNSUPPORTED, "key '%s' is '%.*s'; supported: none, llama3",
                        key, (int)(s.len > 32 ? 32 : s.len), s.ptr);
        if (llama3) {
            if ((st = get_float(L, "rope.scaling.factor", true, 0, &c->rope_scale_factor)) ||
                (st = get_float(L, "rope.scaling.low_freq_factor", false, 1.0f,
                                &c->rope_low_freq_factor)) ||
                (st = get_float(L, "rope.scaling.high_freq_factor", false, 4.0f,
                                &c->rope_high_freq_factor)) ||
                (st = get_int(L, "rope.scaling.original_context_length", true, 0, 1, INT32_MAX,
                              &c->rope_orig_ctx)))
                return st;
            if (!(c->rope_high_freq_factor > c->rope_low_freq_factor))
                return fail(
                    L, ANNEAL_ERR_RANGE,
                    "%s.rope.scaling.high_freq_factor = %g must exceed low_freq_factor = %g",
                    L->arch, c->rope_high_freq_factor, c->rope_low_freq_factor);
        }
    }
    return ANNEAL_OK;
}

// Binds tensor `name` with dims [d0] (d1 == 0) or [d0, d1]. Absent optional tensors leave
// w->t NULL. Matrices need a dot kernel; vectors (norms, biases) must be F32.
static anneal_status bind(const loader *L, const char *name, int64_t d0, int64_t d1,
                          const char *d0_what, const char *d1_what, bool required,
                          model_weight *w) {
    memset(w, 0, sizeof *w);
    const anneal_gguf_tensor *t = anneal_gguf_find_tensor(L->g, name);
    if (!t)
        return required ? fail(L, ANNEAL_ERR_NOT_FOUND, "missing tensor '%s'", name) : ANNEAL_OK;
    uint32_t want_dims = d1 ? 2 : 1;
    uint32_t nd = t->n_dims;
    while (nd > want_dims && t->dims[nd - 1] == 1)
        nd--;
    if (nd != want_dims)
        return fail(L, ANNEAL_ERR_FORMAT, "tensor '%s' has %u dims, expected %u", name, t->n_dims,
                    want_dims);
    if ((int64_t)t->dims[0] != d0)
        return fail(L, ANNEAL_ERR_FORMAT, "tensor '%s' has rows of %llu, expected %s = %lld", name,
                    (unsigned long long)t->dims[0], d0_what, (long long)d0);
    if (d1 > 0 && (int64_t)t->dims[1] != d1)
        return fail(L, ANNEAL_ERR_FORMAT, "tensor '%s' has %llu rows, expected %s = %lld", name,
                    (unsigned long long)t->dims[1], d1_what, (long long)d1);
    const anneal_type_info *ti = anneal_type_get(t->type);
    if (!t->data || !ti)
        return fail(L, ANNEAL_ERR_UNSUPPORTED, "tensor '%s' has unknown type %u", name, t->type);
    if (d1 == 0 && t->type != ANNEAL_TYPE_F32)
        return fail(L, ANNEAL_ERR_UNSUPPORTED, "tensor '%s' is %s; norms and biases must be f32",
                    name, ti->name);
    if (d1 != 0 && !anneal_vec_dot_get(t->type))
        return fail(L, ANNEAL_ERR_UNSUPPORTED, "tensor '%s' has type %s, which has no kernel", name,
                    ti->name);
    uint64_t rb;
    if (anneal_type_nbytes(t->type, t->dims[0], &rb) != ANNEAL_OK)
        return fail(L, ANNEAL_ERR_FORMAT, "tensor '%s': rows of %llu are not whole %s blocks", name,
                    (unsigned long long)t->dims[0], ti->name);
    w->t = t;
    w->data = t->data;
    w->type = t->type;
    w->row_bytes = rb;
    return ANNEAL_OK;
}

static anneal_status bind_layer(const loader *L, const anneal_model_config *c, int32_t i,
                                model_layer *ly) {
    int64_t q_dim = (int64_t)c->n_head * c->head_dim, kv_dim = (int64_t)c->n_head_kv * c->head_dim;
    char n[96];
    anneal_status st;
#define BIND(field, nm, d0, d1, w0, w1, req)                                                       \
    do {                                                                                           \
        snprintf(n, sizeof n, "blk.%d." nm, (int)i);                                               \
        if ((st = bind(L, n, d0, d1, w0, w1, req, &ly->field))) return st;                         \
    } while (0)
    BIND(attn_norm, "attn_norm.weight", c->n_embd, 0, "n_embd", "", true);
    BIND(wq, "attn_q.weight", c->n_embd, q_dim, "n_embd", "n_head * head_dim", true);
    BIND(wk, "attn_k.weight", c->n_embd, kv_dim, "n_embd", "n_head_kv * head_dim", true);
    BIND(wv, "attn_v.weight", c->n_embd, kv_dim, "n_embd", "n_head_kv * head_dim", true);
    BIND(wo, "attn_output.weight", q_dim, c->n_embd, "n_head * head_dim", "n_embd", true);
    bool need_bias = strcmp(L->arch, "qwen2") == 0;
    BIND(bq, "attn_q.bias", q_dim, 0, "n_head * head_dim", "", need_bias);
    BIND(bk, "attn_k.bias", kv_dim, 0, "n_head_kv * head_dim", "", need_bias);
    BIND(bv, "attn_v.bias", kv_dim, 0, "n_head_kv * head_dim", "", need_bias);
    BIND(ffn_norm, "ffn_norm.weight", c->n_embd, 0, "n_embd", "", true);
    BIND(w_gate, "ffn_gate.weight", c->n_embd, c->n_ff, "n_embd", "n_ff", true);
    BIND(w_up, "ffn_up.weight", c->n_embd, c->n_ff, "n_embd", "n_ff", true);
    BIND(w_down, "ffn_down.weight", c->n_ff, c->n_embd, "n_ff", "n_embd", true);
#undef BIND
    return ANNEAL_OK;
}

static uint64_t weight_bytes(const model_weight *w) {
    return w->t ? w->t->nbytes : 0;
}

static anneal_status load(const char *path, anneal_model *m, anneal_err *err) {
    anneal_status st = anneal_gguf_open(path, &m->g, err);
    if (st) return st;
    loader L = {.path = path, .g = m->g, .err = err};
    anneal_model_config *c = &m->cfg;

    anneal_gguf_str arch;
    anneal_err e = {0};
    if ((st = anneal_gguf_get_str(m->g, "general.architecture", &arch, &e)))
        return fail(&L, st, "%s", anneal_err_msg(&e));
    if (!((arch.len == 5 && memcmp(arch.ptr, "llama", 5) == 0) ||
          (arch.len == 5 && memcmp(arch.ptr, "qwen2", 5) == 0)))
        return fail(&L, ANNEAL_ERR_UNSUPPORTED,
                    "key 'general.architecture' is '%.*s'; supported: llama, qwen2",
                    (int)(arch.len > 32 ? 32 : arch.len), arch.ptr);
    memcpy(c->arch, arch.ptr, arch.len);
    c->arch[arch.len] = 0;
    L.arch = c->arch;
    if ((st = read_config(&L, c))) return st;

    const anneal_gguf_tensor *te = anneal_gguf_find_tensor(m->g, "token_embd.weight");
    if (!te) return fail(&L, ANNEAL_ERR_NOT_FOUND, "missing tensor 'token_embd.weight'");
    if (te->n_dims < 2 || te->dims[1] < 1 || te->dims[1] > INT32_MAX)
        return fail(&L, ANNEAL_ERR_FORMAT, "tensor 'token_embd.weight' has no vocabulary rows");
    c->n_vocab = (int32_t)te->dims[1];
    if ((st = bind(&L, "token_embd.weight", c->n_embd, c->n_vocab, "n_embd", "n_vocab", true,
                   &m->tok_embd)) ||
        (st = bind(&L, "output_norm.weight", c->n_embd, 0, "n_embd", "", true, &m->out_norm)) ||
        (st = bind(&L, "output.weight", c->n_embd, c->n_vocab, "n_embd",
                   "n_vocab (rows of token_embd.weight)", false, &m->output)))
        return st;
    c->tied_embeddings = m->output.t == NULL;
    if (c->tied_embeddings) m->output = m->tok_embd;

    m->layers = anneal_calloc((size_t)c->n_layer, sizeof *m->layers);
    m->rope_inv_freq = anneal_calloc((size_t)c->n_rot / 2, sizeof *m->rope_inv_freq);
    if (!m->layers || !m->rope_inv_freq) return fail(&L, ANNEAL_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; i < c->n_layer; i++)
        if ((st = bind_layer(&L, c, i, &m->layers[i]))) return st;
    // Biases come as a set: a file with some but not all is malformed.
    for (int32_t i = 0; i < c->n_layer; i++) {
        const model_layer *ly = &m->layers[i];
        int nb = !!ly->bq.t + !!ly->bk.t + !!ly->bv.t;
        if (nb != 0 && nb != 3)
            return fail(&L, ANNEAL_ERR_FORMAT,
                        "layer %d has %d of the attn_q/attn_k/attn_v biases; expected all or none",
                        (int)i, nb);
        bool has = nb == 3, first = m->layers[0].bq.t != NULL;
        if (has != first)
            return fail(&L, ANNEAL_ERR_FORMAT, "layer %d %s attention biases but layer 0 %s",
                        (int)i, has ? "has" : "lacks", first ? "has them" : "does not");
    }
    c->qkv_bias = m->layers[0].bq.t != NULL;

    model_weight rf;
    if ((st = bind(&L, "rope_freqs.weight", c->n_rot / 2, 0, "n_rot / 2", "", false, &rf)))
        return st;
    c->rope_freqs = rf.t != NULL;
    if (rf.t) {
        const float *f = rf.data;
        for (int32_t i = 0; i < c->n_rot / 2; i++)
            if (!(f[i] > 0) || !isfinite(f[i]))
                return fail(&L, ANNEAL_ERR_RANGE, "tensor 'rope_freqs.weight' element %d is %g",
                            (int)i, (double)f[i]);
    }
    ops_rope_freqs(m->rope_inv_freq, c, rf.t ? (const float *)rf.data : NULL);

    // The tokenizer is loaded by whoever needs text (anneal_tokenizer_load on the same
    // file); here only its size is checked against the embedding rows.
    const anneal_gguf_kv *tokens = anneal_gguf_find(m->g, "tokenizer.ggml.tokens");
    if (tokens && tokens->value.type == ANNEAL_GGUF_ARRAY && tokens->value.arr.n > (uint64_t)c->n_vocab)
        return fail(&L, ANNEAL_ERR_FORMAT,
                    "tokenizer.ggml.tokens has %llu tokens but token_embd.weight only %d rows",
                    (unsigned long long)tokens->value.arr.n, (int)c->n_vocab);

    uint64_t b = m->tok_embd.row_bytes + weight_bytes(&m->out_norm) + weight_bytes(&m->output);
    for (int32_t i = 0; i < c->n_layer; i++) {
        const model_layer *ly = &m->layers[i];
        const model_weight *ws[] = {&ly->attn_norm, &ly->wq,     &ly->wk,   &ly->wv,
                                    &ly->bq,        &ly->bk,     &ly->bv,   &ly->wo,
                                    &ly->ffn_norm,  &ly->w_gate, &ly->w_up, &ly->w_down};
        for (size_t j = 0; j < sizeof ws / sizeof ws[0]; j++)
            b += weight_bytes(ws[j]);
    }
    m->bytes_per_token = b;
    return ANNEAL_OK;
}

anneal_status anneal_model_load(const char *path, anneal_model **out, anneal_err *err) {
    *out = NULL;
    anneal_model *m = anneal_calloc(1, sizeof *m);
    if (!m) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", path);
    anneal_status st = load(path, m, err);
    if (st) {
        anneal_model_free(m);
        return st;
    }
    *out = m;
    return ANNEAL_OK;
}

void anneal_model_free(anneal_model *m) {
    if (!m) return;
    model_lora_free(m);
    anneal_free(m->layers);
    anneal_free(m->rope_inv_freq);
    anneal_gguf_close(m->g);
    anneal_free(m);
}

const anneal_model_config *anneal_model_config_of(const anneal_model *m) {
    return &m->cfg;
}
const anneal_gguf *anneal_model_gguf(const anneal_model *m) {
    return m->g;
}
uint64_t anneal_model_bytes_per_token(const anneal_model *m) {
    return m->bytes_per_token;
}
