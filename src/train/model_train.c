// The trainable model: F32 parameters under the engine's tensor names, loading from and
// saving to GGUF, and the forward (activations of every layer kept) and backward passes
// over a whole [batch, seq]. Each phase is one pool run; rows, columns or attention items
// are split the same way every time, so results depend only on the thread count.
#include "train_internal.h"

#include <math.h>
#include <stdio.h>

// ---- parameters ----------------------------------------------------------------------------

static void add_param(anneal_train_model *tm, const char *name, int64_t d0, int64_t d1,
                      size_t *off) {
    anneal_train_param *p = &tm->list[tm->n_list++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->n_dims = d1 ? 2 : 1;
    p->dims[0] = d0;
    p->dims[1] = d1 ? d1 : 1;
    p->n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    p->offset = *off;
    p->trainable = true;
    p->decay = d1 != 0;
    // No padding between tensors: attn_q/k/v and ffn_gate/up are then one contiguous
    // matrix each, and their products run as one GEMM.
    *off += p->n;
}

static void bind_views(anneal_train_model *tm) {
    const anneal_model_config *c = &tm->cfg;
    size_t k = 0;
#define NEXT(base) ((base) + tm->list[k++].offset)
    for (int pass = 0; pass < 2; pass++) {
        float *base = pass ? tm->grads : tm->params;
        k = 0;
        float *emb = NEXT(base);
        anneal_train_layer *L = pass ? tm->g.layers : tm->w.layers;
        for (int32_t l = 0; l < c->n_layer; l++) {
            L[l].attn_norm = NEXT(base);
            L[l].wq = NEXT(base);
            L[l].wk = NEXT(base);
            L[l].wv = NEXT(base);
            L[l].wo = NEXT(base);
            L[l].ffn_norm = NEXT(base);
            L[l].w_gate = NEXT(base);
            L[l].w_up = NEXT(base);
            L[l].w_down = NEXT(base);
        }
        float *on = NEXT(base);
        float *out = c->tied_embeddings ? emb : NEXT(base);
        if (pass) {
            tm->g.tok_embd = emb;
            tm->g.out_norm = on;
            tm->g.output = out;
        } else {
            tm->w.tok_embd = emb;
            tm->w.out_norm = on;
            tm->w.output = out;
        }
    }
#undef NEXT
}

anneal_status anneal_train_model_new(const anneal_model_config *cfg, anneal_train_model **out,
                                     anneal_err *err) {
    *out = NULL;
    if (cfg->qkv_bias)
        return anneal_err_set(err, ANNEAL_ERR_UNSUPPORTED,
                              "training models with attention biases (%s) is not supported",
                              cfg->arch);
    if (cfg->n_vocab < 1 || cfg->n_embd < 1 || cfg->n_layer < 1 || cfg->n_head < 1 ||
        cfg->n_head_kv < 1 || cfg->n_head % cfg->n_head_kv || cfg->head_dim < 2 || cfg->n_ff < 1 ||
        cfg->n_rot < 2 || cfg->n_rot > cfg->head_dim || cfg->n_rot % 2)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "invalid model shape for training");
    anneal_train_model *tm = anneal_calloc(1, sizeof *tm);
    if (!tm) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    tm->cfg = *cfg;
    tm->q_dim = cfg->n_head * cfg->head_dim;
    tm->kv_dim = cfg->n_head_kv * cfg->head_dim;
    tm->list = anneal_calloc(3 + 9 * (size_t)cfg->n_layer, sizeof *tm->list);
    tm->w.layers = anneal_calloc((size_t)cfg->n_layer, sizeof *tm->w.layers);
    tm->g.layers = anneal_calloc((size_t)cfg->n_layer, sizeof *tm->g.layers);
    tm->rope_inv_freq = anneal_calloc((size_t)cfg->n_rot / 2, sizeof *tm->rope_inv_freq);
    if (!tm->list || !tm->w.layers || !tm->g.layers || !tm->rope_inv_freq) goto nomem;
    int64_t E = cfg->n_embd, V = cfg->n_vocab, F = cfg->n_ff;
    size_t off = 0;
    add_param(tm, "token_embd.weight", E, V, &off);
    for (int32_t l = 0; l < cfg->n_layer; l++) {
        char n[64];
#define P(suffix, d0, d1)                                                                          \
    do {                                                                                           \
        snprintf(n, sizeof n, "blk.%d." suffix, (int)l);                                           \
        add_param(tm, n, d0, d1, &off);                                                            \
    } while (0)
        P("attn_norm.weight", E, 0);
        P("attn_q.weight", E, tm->q_dim);
        P("attn_k.weight", E, tm->kv_dim);
        P("attn_v.weight", E, tm->kv_dim);
        P("attn_output.weight", tm->q_dim, E);
        P("ffn_norm.weight", E, 0);
        P("ffn_gate.weight", E, F);
        P("ffn_up.weight", E, F);
        P("ffn_down.weight", F, E);
#undef P
    }
    add_param(tm, "output_norm.weight", E, 0, &off);
    if (!cfg->tied_embeddings) add_param(tm, "output.weight", E, V, &off);
    tm->n_params = off;
    size_t bytes;
    if (!anneal_mul_ok(off, sizeof(float), &bytes)) goto nomem;
    tm->params = anneal_aligned_alloc(64, bytes);
    tm->grads = anneal_aligned_alloc(64, bytes);
    if (!tm->params || !tm->grads) goto nomem;
    memset(tm->params, 0, bytes);
    memset(tm->grads, 0, bytes);
    bind_views(tm);
    ops_rope_freqs(tm->rope_inv_freq, cfg, NULL);
    *out = tm;
    return ANNEAL_OK;
nomem:
    anneal_train_model_free(tm);
    return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory for the trainable model");
}

void anneal_train_model_free(anneal_train_model *tm) {
    if (!tm) return;
    anneal_free(tm->params);
    anneal_free(tm->grads);
    anneal_free(tm->list);
    anneal_free(tm->w.layers);
    anneal_free(tm->g.layers);
    anneal_free(tm->rope_inv_freq);
    anneal_free(tm->rope_factors);
    anneal_free(tm);
}

anneal_train_param *anneal_train_model_find(anneal_train_model *tm, const char *name) {
    for (size_t i = 0; i < tm->n_list; i++)
        if (strcmp(tm->list[i].name, name) == 0) return &tm->list[i];
    return NULL;
}

anneal_status anneal_train_model_from(const anneal_model *m, anneal_train_model **out,
                                      anneal_err *err) {
    *out = NULL;
    const anneal_model_config *cfg = anneal_model_config_of(m);
    anneal_train_model *tm;
    anneal_status st = anneal_train_model_new(cfg, &tm, err);
    if (st) return st;
    const anneal_gguf *g = anneal_model_gguf(m);
    for (size_t i = 0; i < tm->n_list; i++) {
        const anneal_train_param *p = &tm->list[i];
        const anneal_gguf_tensor *t = anneal_gguf_find_tensor(g, p->name);
        uint64_t rb;
        // The engine validated names, shapes and types when it loaded the model.
        if (!t || anneal_type_nbytes(t->type, (uint64_t)p->dims[0], &rb)) {
            anneal_train_model_free(tm);
            return anneal_err_set(err, ANNEAL_ERR_FORMAT, "tensor '%s' is missing", p->name);
        }
        for (int64_t r = 0; r < p->dims[1]; r++) {
            st = anneal_dequantize(t->type, t->data + (uint64_t)r * rb,
                                   tm->params + p->offset + (size_t)r * (size_t)p->dims[0],
                                   p->dims[0]);
            if (st) {
                anneal_train_model_free(tm);
                return anneal_err_set(err, st, "tensor '%s': cannot convert its type to f32",
                                      p->name);
            }
        }
    }
    if (cfg->rope_freqs) {
        const anneal_gguf_tensor *t = anneal_gguf_find_tensor(g, "rope_freqs.weight");
        tm->rope_factors = anneal_calloc((size_t)cfg->n_rot / 2, sizeof(float));
        if (!tm->rope_factors || !t) {
            anneal_train_model_free(tm);
            return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
        }
        memcpy(tm->rope_factors, t->data, (size_t)cfg->n_rot / 2 * sizeof(float));
        ops_rope_freqs(tm->rope_inv_freq, cfg, tm->rope_factors);
    }
    *out = tm;
    return ANNEAL_OK;
}

anneal_status anneal_train_model_save(const anneal_train_model *tm, const char *path,
                                      const anneal_gguf *vocab, anneal_train_keys_fn keys,
                                      void *keys_ctx, const anneal_lineage *lin, anneal_err *err) {
    const anneal_model_config *c = &tm->cfg;
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    if (!w) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    char k[128];
#define KEY(suffix) (snprintf(k, sizeof k, "%s." suffix, c->arch), k)
    anneal_gguf_writer_set_str(w, "general.architecture", c->arch);
    anneal_gguf_writer_set_str(w, "general.name", "anneal train");
    anneal_gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)c->n_ctx_train);
    anneal_gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)c->n_embd);
    anneal_gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)c->n_layer);
    anneal_gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->n_ff);
    anneal_gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)c->n_rot);
    anneal_gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)c->n_head);
    anneal_gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_head_kv);
    if (c->head_dim != c->n_embd / c->n_head) {
        anneal_gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim);
        anneal_gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim);
    }
    anneal_gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->norm_eps);
    anneal_gguf_writer_set_f32(w, KEY("rope.freq_base"), c->rope_freq_base);
    if (c->rope_scale_factor > 0 && !tm->rope_factors) {
        anneal_gguf_writer_set_str(w, KEY("rope.scaling.type"), "llama3");
        anneal_gguf_writer_set_f32(w, KEY("rope.scaling.factor"), c->rope_scale_factor);
        anneal_gguf_writer_set_f32(w, KEY("rope.scaling.low_freq_factor"), c->rope_low_freq_factor);
        anneal_gguf_writer_set_f32(w, KEY("rope.scaling.high_freq_factor"),
                                   c->rope_high_freq_factor);
        anneal_gguf_writer_set_u32(w, KEY("rope.scaling.original_context_length"),
                                   (uint32_t)c->rope_orig_ctx);
    }
    anneal_gguf_writer_set_u32(w, KEY("vocab_size"), (uint32_t)c->n_vocab);
#undef KEY
    anneal_gguf_writer_set_u32(w, "general.file_type", 0); // all F32
    if (vocab) anneal_gguf_writer_copy_prefix(w, vocab, "tokenizer.");
    anneal_status st = ANNEAL_OK;
    if (keys) st = keys(keys_ctx, w, err);
    if (!st && lin) st = anneal_lineage_set(w, lin, err);
    if (st) {
        anneal_gguf_writer_free(w);
        return st;
    }
    for (size_t i = 0; i < tm->n_list; i++) {
        const anneal_train_param *p = &tm->list[i];
        uint64_t dims[2] = {(uint64_t)p->dims[0], (uint64_t)p->dims[1]};
        anneal_gguf_writer_add_tensor(w, p->name, ANNEAL_TYPE_F32, p->n_dims, dims,
                                      tm->params + p->offset, p->n * sizeof(float));
    }
    if (tm->rope_factors) {
        uint64_t d = (uint64_t)c->n_rot / 2;
        anneal_gguf_writer_add_tensor(w, "rope_freqs.weight", ANNEAL_TYPE_F32, 1, &d,
                                      tm->rope_factors, d * sizeof(float));
    }
    st = anneal_gguf_writer_write(w, path, err);
    anneal_gguf_writer_free(w);
    return st;
}

// ---- work memory ----------------------------------------------------------------------------

typedef struct layer_acts {
    float *xin;      // [N][E] the layer's input (residual stream)
    float *xn1, *r;  // [N][E] attn-normed rows, [N] their 1/rms
    float *qkv;      // [N][Q + 2K] q, k (after RoPE; q not scaled) and v side by side
    float *P;        // [B][n_head][T][T] attention probabilities
    float *ao;       // [N][Q] attention output
    float *xmid;     // [N][E] xin + attention
    float *xn2, *r2; // ffn-normed rows, their 1/rms
    float *gu;       // [N][2F] gate and up side by side
    float *h;        // [N][F] silu(gate) * up
} layer_acts;

struct anneal_train_ctx {
    anneal_train_model *tm;
    int32_t B, T;
    int64_t N;
    anneal_pool *pool;
    int nth;
    float *cs;         // [T][n_rot] cos/sin for positions 0..T-1
    layer_acts *acts;  // [n_layer]
    float *xout;       // [N][E] the last layer's output
    float *xnf, *rf;   // [N][E] after the output norm, [N] 1/rms
    float *logits;     // [N][V]; dlogits after the loss
    float *dx, *dxn;   // [N][E] gradient of the residual stream, of a norm's output
    float *dqkv, *dao; // [N][Q + 2K], [N][Q]
    float *dgu, *dh;   // [N][2F], [N][F]
    float *scratch;    // [nth][stride]: dS [T][T] for attention
    size_t stride;
    float *dwpart; // [nth][E] a norm weight's gradient, per thread
    double *part;  // [nth] partial sums (loss, norms)
    const int32_t *tokens, *targets;
    float loss_scale;
    bool backward;
    anneal_train_loss_fn loss_fn;
    void *loss_ctx;
    void **allocs;
    size_t n_allocs;
};

static float *buf(anneal_train_ctx *c, size_t n, bool *ok) {
    size_t bytes;
    if (!*ok || !anneal_mul_ok(n ? n : 1, sizeof(float), &bytes)) {
        *ok = false;
        return NULL;
    }
    float *p = anneal_aligned_alloc(64, bytes);
    if (!p) {
        *ok = false;
        return NULL;
    }
    c->allocs[c->n_allocs++] = p;
    return p;
}

static double xent_default(void *ctx, int64_t row0, int64_t n_rows, int32_t n_vocab,
                           const float *logits, const int32_t *targets, float scale,
                           float *dlogits) {
    return tr_xent(logits, targets, n_rows, n_vocab, scale, dlogits);
}

anneal_status anneal_train_ctx_new(anneal_train_model *tm, int32_t n_batch, int32_t n_seq,
                                   int32_t n_threads, anneal_train_ctx **out, anneal_err *err) {
    *out = NULL;
    if (n_batch < 1 || n_seq < 1 || (int64_t)n_batch * n_seq > (1 << 24))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "batch %d x sequence %d is not allowed",
                              (int)n_batch, (int)n_seq);
    if (n_threads < 0 || n_threads > 256)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "threads %d not in 0..256",
                              (int)n_threads);
    tr_blas_init();
    const anneal_model_config *cfg = &tm->cfg;
    anneal_train_ctx *c = anneal_calloc(1, sizeof *c);
    if (!c) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    c->tm = tm;
    c->B = n_batch;
    c->T = n_seq;
    c->N = (int64_t)n_batch * n_seq;
    c->nth = n_threads ? n_threads : anneal_thread_count();
    c->loss_fn = xent_default;
    c->allocs = anneal_calloc(32 + 12 * (size_t)cfg->n_layer, sizeof *c->allocs);
    c->acts = anneal_calloc((size_t)cfg->n_layer, sizeof *c->acts);
    c->part = anneal_calloc((size_t)c->nth, sizeof *c->part);
    if (!c->allocs || !c->acts || !c->part) {
        anneal_train_ctx_free(c);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    }
    anneal_status st = anneal_pool_new(c->nth, &c->pool, err);
    if (st) {
        anneal_train_ctx_free(c);
        return st;
    }
    size_t N = (size_t)c->N, E = (size_t)cfg->n_embd, F = (size_t)cfg->n_ff;
    size_t Q = (size_t)tm->q_dim, K = (size_t)tm->kv_dim, V = (size_t)cfg->n_vocab;
    size_t TT = (size_t)n_seq * (size_t)n_seq;
    bool ok = true;
    c->cs = buf(c, (size_t)n_seq * (size_t)cfg->n_rot, &ok);
    for (int32_t l = 0; l < cfg->n_layer; l++) {
        layer_acts *a = &c->acts[l];
        a->xin = buf(c, N * E, &ok);
        a->xn1 = buf(c, N * E, &ok);
        a->r = buf(c, N, &ok);
        a->qkv = buf(c, N * (Q + 2 * K), &ok);
        a->P = buf(c, (size_t)n_batch * (size_t)cfg->n_head * TT, &ok);
        a->ao = buf(c, N * Q, &ok);
        a->xmid = buf(c, N * E, &ok);
        a->xn2 = buf(c, N * E, &ok);
        a->r2 = buf(c, N, &ok);
        a->gu = buf(c, N * 2 * F, &ok);
        a->h = buf(c, N * F, &ok);
    }
    c->xout = buf(c, N * E, &ok);
    c->xnf = buf(c, N * E, &ok);
    c->rf = buf(c, N, &ok);
    c->logits = buf(c, N * V, &ok);
    c->dx = buf(c, N * E, &ok);
    c->dxn = buf(c, N * E, &ok);
    c->dqkv = buf(c, N * (Q + 2 * K), &ok);
    c->dao = buf(c, N * Q, &ok);
    c->dgu = buf(c, N * 2 * F, &ok);
    c->dh = buf(c, N * F, &ok);
    c->stride = TT + 16;
    c->scratch = buf(c, (size_t)c->nth * c->stride, &ok);
    c->dwpart = buf(c, (size_t)c->nth * E, &ok);
    if (!ok) {
        anneal_train_ctx_free(c);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM,
                              "out of memory for training activations (batch %d x seq %d)",
                              (int)n_batch, (int)n_seq);
    }
    for (int32_t t = 0; t < n_seq; t++)
        ops_rope_cache(c->cs + (size_t)t * cfg->n_rot, tm->rope_inv_freq, cfg->n_rot, t);
    *out = c;
    return ANNEAL_OK;
}

void anneal_train_ctx_free(anneal_train_ctx *c) {
    if (!c) return;
    anneal_pool_free(c->pool);
    for (size_t i = 0; i < c->n_allocs; i++)
        anneal_free(c->allocs[i]);
    anneal_free(c->allocs);
    anneal_free(c->acts);
    anneal_free(c->part);
    anneal_free(c);
}

int anneal_train_ctx_threads(const anneal_train_ctx *c) {
    return c->nth;
}

anneal_train_model *tr_ctx_model(anneal_train_ctx *c) {
    return c->tm;
}
anneal_pool *tr_ctx_pool(anneal_train_ctx *c) {
    return c->pool;
}
double *tr_ctx_part(anneal_train_ctx *c) {
    return c->part;
}

void anneal_train_ctx_set_loss(anneal_train_ctx *c, anneal_train_loss_fn fn, void *ctx) {
    c->loss_fn = fn ? fn : xent_default;
    c->loss_ctx = fn ? ctx : NULL;
}

const float *anneal_train_logits(const anneal_train_ctx *c) {
    return c->logits;
}

// ---- phases --------------------------------------------------------------------------------
// A phase is one pool run. Matrix products with the batch's rows as M are split by rows
// (each thread packs only its rows of the activations and reads the whole weight), so the
// per-row work that follows (RoPE, residual, norm, SwiGLU, loss) runs on the same thread
// without a barrier. Weight gradients (dW = dy^T x, summed over all rows) are split by
// rows of dW. Attention is split by (sequence, kv head) items.

static void split16(int64_t n, int ith, int nth, int32_t *lo, int32_t *hi) {
    int64_t blocks = (n + 15) / 16, b0, b1;
    anneal_split(blocks, ith, nth, &b0, &b1);
    *lo = (int32_t)(b0 * 16 < n ? b0 * 16 : n);
    *hi = (int32_t)(b1 * 16 < n ? b1 * 16 : n);
}

typedef enum phase_kind {
    PH_EMBED_NORM, // embedding rows, then layer 0's attention norm
    PH_QKV_ROPE,   // qkv = xn1 [Wq;Wk;Wv]^T, RoPE on q and k
    PH_ATTN,
    PH_WO_NORM,     // xmid = xin + ao Wo^T, ffn norm
    PH_GU_SWIGLU,   // gu = xn2 [Wg;Wu]^T, h = silu(g) * u
    PH_DOWN_NORM,   // next = xmid + h Wd^T, then the next layer's (or the output) norm
    PH_LOGITS_LOSS, // logits, loss (and dlogits)
    PH_B_LOGITS,    // dxn = dlogits Wout, output norm backward into dx; dWout
    PH_B_DOWN,      // dh = dx Wd, SwiGLU backward into dgu; dWd
    PH_B_GU,        // dxn = dgu [Wg;Wu], ffn norm backward into dx; dWg, dWu
    PH_B_WO,        // dao = dx Wo; dWo
    PH_B_ATTN,      // attention backward into dqkv, inverse RoPE on dq, dk
    PH_B_QKV,       // dxn = dqkv [Wq;Wk;Wv], attention norm backward into dx; dWq, dWk, dWv
    PH_B_EMBED,
} phase_kind;

typedef struct phase {
    anneal_train_ctx *c;
    phase_kind kind;
    int32_t l; // layer
} phase;

static const anneal_train_param *param_of(const anneal_train_ctx *c, const float *w) {
    const anneal_train_model *tm = c->tm;
    size_t off = (size_t)(w - tm->params);
    for (size_t i = 0; i < tm->n_list; i++)
        if (tm->list[i].offset == off) return &tm->list[i];
    return NULL;
}

static bool trainable(const anneal_train_ctx *c, const float *w) {
    const anneal_train_param *p = param_of(c, w);
    return !p || p->trainable;
}

// Gradient of n_mat matrices stored one after another (w, with n_out[k] rows each) whose
// outputs sit side by side in dy (ld columns): one GEMM when all are trainable, else one
// per trainable matrix. Thread ith takes a share of the rows of dW.
static void mm_dw(const anneal_train_ctx *c, const float *w, float *g, const float *dy, int32_t ld,
                  const float *x, int32_t n_in, const int32_t *n_out, int n_mat, int ith, int nth) {
    bool all = true;
    int32_t total = 0;
    for (int k = 0; k < n_mat; k++) {
        all = all && trainable(c, w + (size_t)total * n_in);
        total += n_out[k];
    }
    int32_t r0, r1;
    if (all && n_in > total) {
        // Split dW's columns instead: each thread then packs all of dy (the narrower side)
        // and only its columns of x.
        split16(n_in, ith, nth, &r0, &r1);
        tr_mm_bwd_w(g + r0, n_in, dy, ld, x + r0, n_in, c->N, r1 - r0, total);
        return;
    }
    if (all) {
        split16(total, ith, nth, &r0, &r1);
        tr_mm_bwd_w(g + (size_t)r0 * n_in, n_in, dy + r0, ld, x, n_in, c->N, n_in, r1 - r0);
        return;
    }
    int32_t off = 0;
    for (int k = 0; k < n_mat; off += n_out[k], k++) {
        if (!trainable(c, w + (size_t)off * n_in)) continue;
        split16(n_out[k], ith, nth, &r0, &r1);
        tr_mm_bwd_w(g + (size_t)(off + r0) * n_in, n_in, dy + off + r0, ld, x, n_in, c->N, n_in,
                    r1 - r0);
    }
}

// dx += RMSNorm backward of dxn over rows [t0, t1); the weight's gradient goes to this
// thread's partial (added up after the phase) when it is trainable.
static void norm_bwd_rows(anneal_train_ctx *c, const float *x, const float *w, const float *r,
                          int64_t t0, int64_t t1, int ith) {
    int32_t E = c->tm->cfg.n_embd;
    float *dw = trainable(c, w) ? c->dwpart + (size_t)ith * E : NULL;
    if (dw) memset(dw, 0, (size_t)E * sizeof(float));
    tr_rmsnorm_bwd(c->dx + t0 * E, dw, c->dxn + t0 * E, x + t0 * E, w, r + t0, t1 - t0, E);
}

static void run_phase(void *arg, int ith, int nth) {
    const phase *ph = arg;
    anneal_train_ctx *c = ph->c;
    anneal_train_model *tm = c->tm;
    const anneal_model_config *cfg = &tm->cfg;
    const int32_t E = cfg->n_embd, F = cfg->n_ff, Q = tm->q_dim, K = tm->kv_dim, V = cfg->n_vocab,
                  T = c->T, QKV = Q + 2 * K;
    const int64_t N = c->N;
    int64_t t0, t1;
    anneal_split(N, ith, nth, &t0, &t1);
    const int64_t R = t1 - t0;
    layer_acts *a = ph->l >= 0 ? &c->acts[ph->l] : NULL;
    const anneal_train_layer *W = a ? &tm->w.layers[ph->l] : NULL;
    anneal_train_layer *G = a ? &tm->g.layers[ph->l] : NULL;
    bool last = ph->l == cfg->n_layer - 1;
    int32_t g = cfg->n_head / cfg->n_head_kv, hd = cfg->head_dim;
    float scale = 1.0f / sqrtf((float)hd);

    switch (ph->kind) {
    case PH_EMBED_NORM:
        for (int64_t t = t0; t < t1; t++)
            memcpy(c->acts[0].xin + t * E, tm->w.tok_embd + (size_t)c->tokens[t] * E,
                   (size_t)E * sizeof(float));
        tr_rmsnorm_fwd(c->acts[0].xn1 + t0 * E, c->acts[0].r + t0, c->acts[0].xin + t0 * E,
                       tm->w.layers[0].attn_norm, R, E, cfg->norm_eps);
        break;
    case PH_QKV_ROPE:
        tr_mm_fwd(a->qkv + t0 * QKV, QKV, a->xn1 + t0 * E, E, W->wq, R, E, QKV);
        tr_rope(a->qkv, t0, R, QKV, cfg->n_head, hd, c->cs, T, cfg->n_rot, cfg->rope_type, false);
        tr_rope(a->qkv + Q, t0, R, QKV, cfg->n_head_kv, hd, c->cs, T, cfg->n_rot, cfg->rope_type,
                false);
        break;
    case PH_ATTN:
    case PH_B_ATTN: {
        int64_t i0, i1;
        anneal_split((int64_t)c->B * cfg->n_head_kv, ith, nth, &i0, &i1);
        float *scr = c->scratch + (size_t)ith * c->stride;
        for (int64_t it = i0; it < i1; it++) {
            int64_t b = it / cfg->n_head_kv;
            int32_t hk = (int32_t)(it % cfg->n_head_kv);
            size_t row = (size_t)b * T;
            size_t qo = row * QKV + (size_t)hk * g * hd, ko = row * QKV + Q + (size_t)hk * hd;
            size_t vo = ko + K;
            float *P = a->P + ((size_t)b * cfg->n_head + (size_t)hk * g) * T * T;
            if (ph->kind == PH_ATTN) {
                tr_attn_fwd(a->qkv + qo, a->qkv + ko, a->qkv + vo, P,
                            a->ao + row * Q + (size_t)hk * g * hd, T, hd, g, QKV, QKV, Q, scale);
                continue;
            }
            tr_attn_bwd(c->dqkv + qo, c->dqkv + ko, c->dqkv + vo,
                        c->dao + row * Q + (size_t)hk * g * hd, a->qkv + qo, a->qkv + ko,
                        a->qkv + vo, P, scr, T, hd, g, QKV, QKV, Q, scale);
            // This item owns these rows' dq heads and dk head: rotate them back here.
            tr_rope(c->dqkv + qo - row * QKV, (int64_t)row, T, QKV, g, hd, c->cs, T, cfg->n_rot,
                    cfg->rope_type, true);
            tr_rope(c->dqkv + ko - row * QKV, (int64_t)row, T, QKV, 1, hd, c->cs, T, cfg->n_rot,
                    cfg->rope_type, true);
        }
        break;
    }
    case PH_WO_NORM:
        tr_mm_fwd(a->xmid + t0 * E, E, a->ao + t0 * Q, Q, W->wo, R, Q, E);
        for (int64_t i = t0 * E; i < t1 * E; i++)
            a->xmid[i] += a->xin[i];
        tr_rmsnorm_fwd(a->xn2 + t0 * E, a->r2 + t0, a->xmid + t0 * E, W->ffn_norm, R, E,
                       cfg->norm_eps);
        break;
    case PH_GU_SWIGLU:
        tr_mm_fwd(a->gu + t0 * 2 * F, 2 * F, a->xn2 + t0 * E, E, W->w_gate, R, E, 2 * F);
        for (int64_t t = t0; t < t1; t++)
            tr_swiglu_fwd(a->h + t * F, a->gu + t * 2 * F, a->gu + t * 2 * F + F, F);
        break;
    case PH_DOWN_NORM: {
        float *next = last ? c->xout : c->acts[ph->l + 1].xin;
        tr_mm_fwd(next + t0 * E, E, a->h + t0 * F, F, W->w_down, R, F, E);
        for (int64_t i = t0 * E; i < t1 * E; i++)
            next[i] += a->xmid[i];
        if (last)
            tr_rmsnorm_fwd(c->xnf + t0 * E, c->rf + t0, c->xout + t0 * E, tm->w.out_norm, R, E,
                           cfg->norm_eps);
        else
            tr_rmsnorm_fwd(c->acts[ph->l + 1].xn1 + t0 * E, c->acts[ph->l + 1].r + t0,
                           next + t0 * E, tm->w.layers[ph->l + 1].attn_norm, R, E, cfg->norm_eps);
        break;
    }
    case PH_LOGITS_LOSS:
        tr_mm_fwd(c->logits + t0 * V, V, c->xnf + t0 * E, E, tm->w.output, R, E, V);
        c->part[ith] = c->loss_fn(c->loss_ctx, t0, R, V, c->logits + t0 * V, c->targets + t0,
                                  c->loss_scale, c->backward ? c->logits + t0 * V : NULL);
        break;
    case PH_B_LOGITS: {
        tr_mm_bwd_x(c->dxn + t0 * E, E, c->logits + t0 * V, V, tm->w.output, E, R, E, V, 0.0f);
        memset(c->dx + t0 * E, 0, (size_t)R * E * sizeof(float));
        norm_bwd_rows(c, c->xout, tm->w.out_norm, c->rf, t0, t1, ith);
        int32_t nv = V;
        if (trainable(c, tm->w.output))
            mm_dw(c, tm->w.output, tm->g.output, c->logits, V, c->xnf, E, &nv, 1, ith, nth);
        break;
    }
    case PH_B_DOWN: {
        tr_mm_bwd_x(c->dh + t0 * F, F, c->dx + t0 * E, E, W->w_down, F, R, F, E, 0.0f);
        for (int64_t t = t0; t < t1; t++)
            tr_swiglu_bwd(c->dgu + t * 2 * F, c->dgu + t * 2 * F + F, c->dh + t * F,
                          a->gu + t * 2 * F, a->gu + t * 2 * F + F, F);
        int32_t ne = E;
        mm_dw(c, W->w_down, G->w_down, c->dx, E, a->h, F, &ne, 1, ith, nth);
        break;
    }
    case PH_B_GU: {
        tr_mm_bwd_x(c->dxn + t0 * E, E, c->dgu + t0 * 2 * F, 2 * F, W->w_gate, E, R, E, 2 * F,
                    0.0f);
        norm_bwd_rows(c, a->xmid, W->ffn_norm, a->r2, t0, t1, ith);
        int32_t no[2] = {F, F};
        mm_dw(c, W->w_gate, G->w_gate, c->dgu, 2 * F, a->xn2, E, no, 2, ith, nth);
        break;
    }
    case PH_B_WO: {
        tr_mm_bwd_x(c->dao + t0 * Q, Q, c->dx + t0 * E, E, W->wo, Q, R, Q, E, 0.0f);
        int32_t ne = E;
        mm_dw(c, W->wo, G->wo, c->dx, E, a->ao, Q, &ne, 1, ith, nth);
        break;
    }
    case PH_B_QKV: {
        tr_mm_bwd_x(c->dxn + t0 * E, E, c->dqkv + t0 * QKV, QKV, W->wq, E, R, E, QKV, 0.0f);
        norm_bwd_rows(c, a->xin, W->attn_norm, a->r, t0, t1, ith);
        int32_t no[3] = {Q, K, K};
        mm_dw(c, W->wq, G->wq, c->dqkv, QKV, a->xn1, E, no, 3, ith, nth);
        break;
    }
    case PH_B_EMBED:
        // Rows of tokens with id % nth == ith: each embedding row has one writer, and rows are
        // added in batch order.
        if (!trainable(c, tm->w.tok_embd)) break;
        for (int64_t t = 0; t < N; t++) {
            int32_t id = c->tokens[t];
            if (id % nth != ith) continue;
            float *gr = tm->g.tok_embd + (size_t)id * E;
            const float *d = c->dx + t * E;
            for (int32_t i = 0; i < E; i++)
                gr[i] += d[i];
        }
        break;
    }
}

static void run(anneal_train_ctx *c, phase_kind kind, int32_t l) {
    phase ph = {.c = c, .kind = kind, .l = l};
    anneal_pool_run(c->pool, run_phase, &ph);
}

// Adds the threads' partial norm-weight gradients in thread order (after a phase that ran
// norm_bwd_rows).
static void reduce_norm(anneal_train_ctx *c, const float *w, float *gw) {
    if (!trainable(c, w)) return;
    int32_t E = c->tm->cfg.n_embd;
    for (int t = 0; t < c->nth; t++) {
        const float *p = c->dwpart + (size_t)t * E;
        for (int32_t i = 0; i < E; i++)
            gw[i] += p[i];
    }
}

static void zero_rows(void *arg, int ith, int nth) {
    anneal_train_model *tm = arg;
    int64_t i0, i1;
    anneal_split((int64_t)tm->n_params, ith, nth, &i0, &i1);
    memset(tm->grads + i0, 0, (size_t)(i1 - i0) * sizeof(float));
}

void anneal_train_zero_grads(anneal_train_ctx *c) {
    anneal_pool_run(c->pool, zero_rows, c->tm);
}

anneal_status anneal_train_step(anneal_train_ctx *c, const int32_t *tokens, const int32_t *targets,
                                bool backward, float grad_scale, double *loss, anneal_err *err) {
    anneal_train_model *tm = c->tm;
    const anneal_model_config *cfg = &tm->cfg;
    int64_t counted = 0;
    for (int64_t t = 0; t < c->N; t++) {
        if (tokens[t] < 0 || tokens[t] >= cfg->n_vocab)
            return anneal_err_set(err, ANNEAL_ERR_RANGE, "token %lld: id %d is not in 0..%d",
                                  (long long)t, (int)tokens[t], (int)cfg->n_vocab - 1);
        if (targets[t] >= cfg->n_vocab)
            return anneal_err_set(err, ANNEAL_ERR_RANGE, "target %lld: id %d is not in 0..%d",
                                  (long long)t, (int)targets[t], (int)cfg->n_vocab - 1);
        counted += targets[t] >= 0;
    }
    c->tokens = tokens;
    c->targets = targets;
    c->backward = backward;
    c->loss_scale = counted ? grad_scale / (float)counted : 0.0f;

    run(c, PH_EMBED_NORM, -1);
    for (int32_t l = 0; l < cfg->n_layer; l++) {
        run(c, PH_QKV_ROPE, l);
        run(c, PH_ATTN, l);
        run(c, PH_WO_NORM, l);
        run(c, PH_GU_SWIGLU, l);
        run(c, PH_DOWN_NORM, l);
    }
    run(c, PH_LOGITS_LOSS, -1);
    double sum = 0;
    for (int t = 0; t < c->nth; t++)
        sum += c->part[t];
    *loss = counted ? sum / (double)counted : 0.0;
    if (!backward) return ANNEAL_OK;

    run(c, PH_B_LOGITS, -1);
    reduce_norm(c, tm->w.out_norm, tm->g.out_norm);
    for (int32_t l = cfg->n_layer - 1; l >= 0; l--) {
        run(c, PH_B_DOWN, l);
        run(c, PH_B_GU, l);
        reduce_norm(c, tm->w.layers[l].ffn_norm, tm->g.layers[l].ffn_norm);
        run(c, PH_B_WO, l);
        run(c, PH_B_ATTN, l);
        run(c, PH_B_QKV, l);
        reduce_norm(c, tm->w.layers[l].attn_norm, tm->g.layers[l].attn_norm);
    }
    run(c, PH_B_EMBED, -1);
    return ANNEAL_OK;
}
