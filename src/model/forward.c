// The batched forward pass: one pool run per call, phases separated by a spin barrier;
// every projection is a matrix-matrix product over all the batch's tokens, and attention
// reads each token's own sequence from the paged KV cache.
#include "model_internal.h"

#include <math.h>
#include <sched.h>
#include <stdatomic.h>

#define MAX_BATCH_CAP 65536
#define ATT_CHUNK 32 // positions scored at once per (token, kv head)
#define ATT_ITEMS 2  // (token, kv head) items a thread takes at a time
#define NEED_Q8_0 1u
#define NEED_Q8_K 2u

// Sense-free generation barrier for the nth threads of one pool run (all of them run at
// once, so spinning is safe); yields after a while because cores may be shared.
typedef struct fwd_barrier {
    _Atomic int count;
    _Atomic unsigned gen;
    int n;
} fwd_barrier;

static void barrier_wait(fwd_barrier *b) {
    if (b->n <= 1) return;
    unsigned gen = atomic_load(&b->gen);
    if (atomic_fetch_add(&b->count, 1) == b->n - 1) {
        atomic_store(&b->count, 0);
        atomic_fetch_add(&b->gen, 1);
        return;
    }
    for (int spins = 0; atomic_load(&b->gen) == gen; spins++) {
        if (spins > 2000) sched_yield();
#if defined(__x86_64__) || defined(__i386__)
        else
            __builtin_ia32_pause();
#endif
    }
}

struct anneal_ctx {
    const anneal_model *m;
    anneal_ctx_params p;
    anneal_pool *pool;
    int n_threads;
    int32_t q_dim, kv_dim;
    float *x;       // [max_batch][n_embd] residual stream
    float *xn;      // [max_batch][n_embd] normed rows (then the output rows)
    float *q;       // [max_batch][q_dim] queries (scaled by 1/sqrt(head_dim) after rope)
    float *k, *v;   // [max_batch][kv_dim] this batch's keys and values
    float *att;     // [max_batch][q_dim] attention output
    float *o;       // [max_batch][n_embd] output of attn_output or ffn_down
    float *gate;    // [max_batch][n_ff] gate, then silu(gate) * up
    float *up;      // [max_batch][n_ff]
    float *rope;    // [max_batch][n_rot] cos, sin of each token's angles (all layers)
    uint8_t *a8_0;  // [max_batch] rows of Q8_0 activations (widest input)
    uint8_t *a8_k;  // [max_batch] rows of Q8_K activations
    int32_t *rows;  // [max_batch] batch index of each output row
    float *scratch; // [n_threads][scratch_stride] softmax state and scores
    size_t scratch_stride;
    fwd_barrier bar;
    _Atomic int64_t att_next; // next attention item to take
    _Atomic int status;       // first kernel failure inside a run
};

typedef struct fwd_job {
    anneal_ctx *c;
    anneal_kv *kv;
    const anneal_batch *b;
    float *out;
    int32_t n_sel;
    ops_attn_kernels attn; // for the cache's row type
} fwd_job;

anneal_ctx_params anneal_ctx_params_default(void) {
    anneal_ctx_params p = {.max_batch = 512, .n_threads = 0, .output = ANNEAL_OUTPUT_LOGITS};
    return p;
}

void anneal_ctx_free(anneal_ctx *c) {
    if (!c) return;
    anneal_pool_free(c->pool);
    float *fs[] = {c->x, c->xn,   c->q,  c->k,    c->v,      c->att,
                   c->o, c->gate, c->up, c->rope, c->scratch};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        anneal_free(fs[i]);
    anneal_free(c->a8_0);
    anneal_free(c->a8_k);
    anneal_free(c->rows);
    anneal_free(c);
}

static void *alloc_floats(size_t rows, size_t cols, bool *ok) {
    size_t n;
    if (!anneal_mul_ok(rows, cols, &n) || !anneal_mul_ok(n, sizeof(float), &n)) {
        *ok = false;
        return NULL;
    }
    void *p = anneal_aligned_alloc(64, n ? n : 64);
    if (!p) *ok = false;
    return p;
}

anneal_status anneal_ctx_new(const anneal_model *m, const anneal_ctx_params *p, anneal_ctx **out,
                             anneal_err *err) {
    *out = NULL;
    if (p->max_batch < 1 || p->max_batch > MAX_BATCH_CAP)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "max_batch %d is not in 1..%d",
                              (int)p->max_batch, MAX_BATCH_CAP);
    if (p->n_threads < 0 || p->n_threads > 1024)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "n_threads %d is not in 0..1024",
                              (int)p->n_threads);
    if (p->output != ANNEAL_OUTPUT_LOGITS && p->output != ANNEAL_OUTPUT_HIDDEN)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "unknown output kind %d",
                              (int)p->output);
    const anneal_model_config *cfg = &m->cfg;
    anneal_ctx *c = anneal_calloc(1, sizeof *c);
    if (!c) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory for a forward context");
    c->m = m;
    c->p = *p;
    c->n_threads = p->n_threads ? p->n_threads : anneal_thread_count();
    c->q_dim = cfg->n_head * cfg->head_dim;
    c->kv_dim = cfg->n_head_kv * cfg->head_dim;
    anneal_status st = anneal_pool_new(c->n_threads, &c->pool, err);
    if (st) {
        anneal_ctx_free(c);
        return st;
    }
    c->bar.n = c->n_threads;
    size_t B = (size_t)p->max_batch;
    bool ok = true;
    c->x = alloc_floats(B, (size_t)cfg->n_embd, &ok);
    c->xn = alloc_floats(B, (size_t)cfg->n_embd, &ok);
    c->q = alloc_floats(B, (size_t)c->q_dim, &ok);
    c->k = alloc_floats(B, (size_t)c->kv_dim, &ok);
    c->v = alloc_floats(B, (size_t)c->kv_dim, &ok);
    c->att = alloc_floats(B, (size_t)c->q_dim, &ok);
    c->o = alloc_floats(B, (size_t)cfg->n_embd, &ok);
    c->gate = alloc_floats(B, (size_t)cfg->n_ff, &ok);
    c->up = alloc_floats(B, (size_t)cfg->n_ff, &ok);
    c->rope = alloc_floats(B, (size_t)cfg->n_rot, &ok);
    // Quantized rows of the widest matmul input, rounded up to whole blocks.
    size_t max_in = (size_t)cfg->n_embd;
    if ((size_t)c->q_dim > max_in) max_in = (size_t)c->q_dim;
    if ((size_t)cfg->n_ff > max_in) max_in = (size_t)cfg->n_ff;
    size_t r8_0 = (max_in + ANNEAL_QK - 1) / ANNEAL_QK * sizeof(anneal_block_q8_0);
    size_t r8_k = (max_in + ANNEAL_QK_K - 1) / ANNEAL_QK_K * sizeof(anneal_block_q8_K);
    c->a8_0 = anneal_aligned_alloc(64, B * r8_0);
    c->a8_k = anneal_aligned_alloc(64, B * r8_k);
    c->rows = anneal_calloc(B, sizeof *c->rows);
    int32_t group = cfg->n_head / cfg->n_head_kv;
    c->scratch_stride = (2 * (size_t)group + (size_t)group * ATT_CHUNK + 15) & ~(size_t)15;
    c->scratch = alloc_floats((size_t)c->n_threads, c->scratch_stride, &ok);
    if (!ok || !c->a8_0 || !c->a8_k || !c->rows) {
        anneal_ctx_free(c);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM,
                              "out of memory for forward work memory (max_batch %d)",
                              (int)p->max_batch);
    }
    *out = c;
    return ANNEAL_OK;
}

// ---- helpers run inside the pool ------------------------------------------------------

static unsigned need_of(uint32_t wtype) {
    uint32_t t = anneal_vec_dot_type(wtype);
    return t == ANNEAL_TYPE_Q8_0 ? NEED_Q8_0 : t == ANNEAL_TYPE_Q8_K ? NEED_Q8_K : 0;
}

// Quantizes rows [t0, t1) of src (n floats each) into the activation types in `need`, so
// every matmul sharing that input reads one quantized copy.
static void quant_rows(anneal_ctx *c, const float *src, int64_t n, int64_t t0, int64_t t1,
                       unsigned need) {
    if (need & NEED_Q8_0) {
        size_t rb = (size_t)(n / ANNEAL_QK) * sizeof(anneal_block_q8_0);
        for (int64_t t = t0; t < t1; t++)
            anneal_quantize(ANNEAL_TYPE_Q8_0, src + t * n, c->a8_0 + (size_t)t * rb, n);
    }
    if (need & NEED_Q8_K) {
        size_t rb = (size_t)(n / ANNEAL_QK_K) * sizeof(anneal_block_q8_K);
        for (int64_t t = t0; t < t1; t++)
            anneal_quantize(ANNEAL_TYPE_Q8_K, src + t * n, c->a8_k + (size_t)t * rb, n);
    }
}

// The activation rows a weight of `wtype` reads: the quantized copy, or the floats.
static const void *acts(const anneal_ctx *c, uint32_t wtype, const float *src) {
    unsigned need = need_of(wtype);
    return need == NEED_Q8_0   ? (const void *)c->a8_0
           : need == NEED_Q8_K ? (const void *)c->a8_k
                               : (const void *)src;
}

static void matmul(anneal_ctx *c, const model_weight *w, const float *src, int64_t n_in,
                   int64_t n_out, int64_t n_tok, float *y, int ith, int nth) {
    anneal_status st =
        anneal_matmul(w->type, w->data, n_in, n_out, acts(c, w->type, src), n_tok, y, ith, nth);
    if (st) {
        int expected = 0;
        atomic_compare_exchange_strong(&c->status, &expected, (int)st);
    }
}

static void add_bias(float *y, const model_weight *b, int32_t n) {
    if (!b->t) return;
    const float *bv = b->data;
    for (int32_t i = 0; i < n; i++)
        y[i] += bv[i];
}

static void store_row(const anneal_kv *kv, void *dst, const float *src, int32_t n) {
    if (kv->type == ANNEAL_TYPE_F16) {
        anneal_fp16 *d = dst;
        for (int32_t i = 0; i < n; i++)
            d[i] = anneal_f32_to_fp16(src[i]);
    } else {
        memcpy(dst, src, (size_t)n * sizeof(float));
    }
}

// Bias, rope and the K/V store for batch tokens [t0, t1) of layer l.
static void qkv_finish(const fwd_job *j, int32_t l, int64_t t0, int64_t t1) {
    anneal_ctx *c = j->c;
    const anneal_model *m = c->m;
    const anneal_model_config *cfg = &m->cfg;
    const model_layer *ly = &m->layers[l];
    int32_t hd = cfg->head_dim;
    float scale = 1.0f / sqrtf((float)hd);
    for (int64_t t = t0; t < t1; t++) {
        float *q = c->q + t * c->q_dim, *k = c->k + t * c->kv_dim, *v = c->v + t * c->kv_dim;
        add_bias(q, &ly->bq, c->q_dim);
        add_bias(k, &ly->bk, c->kv_dim);
        add_bias(v, &ly->bv, c->kv_dim);
        int32_t pos = j->b->pos[t], seq = j->b->seq[t];
        const float *cs = c->rope + t * cfg->n_rot;
        for (int32_t h = 0; h < cfg->n_head; h++) {
            ops_rope_apply(q + h * hd, cs, cfg->n_rot, cfg->rope_type);
            for (int32_t i = 0; i < hd; i++)
                q[h * hd + i] *= scale;
        }
        for (int32_t h = 0; h < cfg->n_head_kv; h++)
            ops_rope_apply(k + h * hd, cs, cfg->n_rot, cfg->rope_type);
        int32_t blk = kv_block_of(j->kv, seq, pos), slot = pos % j->kv->block_size;
        store_row(j->kv, kv_row(j->kv, j->kv->k, l, blk, slot), k, c->kv_dim);
        store_row(j->kv, kv_row(j->kv, j->kv->v, l, blk, slot), v, c->kv_dim);
    }
}

// Attention for work items [i0, i1) of layer l; item = (token, kv head). Positions go in
// chunks of ATT_CHUNK: scores for the g query heads sharing the kv head (each K row read
// once, straight from the cache), one softmax rescale per chunk and head, then the
// weighted V rows (each read once). Online softmax in F32.
static void attention(const fwd_job *j, int32_t l, int64_t i0, int64_t i1, float *scr) {
    anneal_ctx *c = j->c;
    const anneal_model_config *cfg = &c->m->cfg;
    const anneal_kv *kv = j->kv;
    const ops_attn_kernels *kr = &j->attn;
    int32_t hd = cfg->head_dim, g = cfg->n_head / cfg->n_head_kv;
    float *mx = scr, *sum = mx + g, *S = sum + g; // S: [g][ATT_CHUNK] scores
    for (int64_t it = i0; it < i1; it++) {
        int64_t t = it / cfg->n_head_kv;
        int32_t hk = (int32_t)(it % cfg->n_head_kv);
        int32_t seq = j->b->seq[t], pos = j->b->pos[t];
        const float *q = c->q + t * c->q_dim + (size_t)hk * g * hd;
        float *acc = c->att + t * c->q_dim + (size_t)hk * g * hd;
        memset(acc, 0, (size_t)g * hd * sizeof(float));
        for (int32_t h = 0; h < g; h++) {
            mx[h] = -INFINITY;
            sum[h] = 0;
        }
        size_t off = (size_t)hk * hd * kv->elem_size;
        for (int32_t p0 = 0; p0 <= pos; p0 += ATT_CHUNK) {
            int32_t n = pos + 1 - p0 < ATT_CHUNK ? pos + 1 - p0 : ATT_CHUNK;
            for (int32_t i = 0; i < n; i++) {
                int32_t p = p0 + i;
                const uint8_t *k =
                    kv_row(kv, kv->k, l, kv_block_of(kv, seq, p), p % kv->block_size);
                kr->kdot(hd, g, k + off, q, S + i, ATT_CHUNK);
            }
            for (int32_t h = 0; h < g; h++) {
                float *sh = S + (size_t)h * ATT_CHUNK, cm = sh[0];
                for (int32_t i = 1; i < n; i++)
                    cm = sh[i] > cm ? sh[i] : cm;
                if (cm > mx[h]) {
                    if (sum[h] > 0) { // rescale what was summed under the old maximum
                        float corr = expf(mx[h] - cm);
                        float *ah = acc + (size_t)h * hd;
                        for (int32_t i = 0; i < hd; i++)
                            ah[i] *= corr;
                        sum[h] *= corr;
                    }
                    mx[h] = cm;
                }
                sum[h] += kr->exps(sh, n, mx[h]);
            }
            for (int32_t i = 0; i < n; i++) {
                int32_t p = p0 + i;
                const uint8_t *v =
                    kv_row(kv, kv->v, l, kv_block_of(kv, seq, p), p % kv->block_size);
                kr->vacc(hd, g, v + off, S + i, ATT_CHUNK, acc);
            }
        }
        for (int32_t h = 0; h < g; h++) {
            float inv = 1.0f / sum[h];
            for (int32_t i = 0; i < hd; i++)
                acc[(size_t)h * hd + i] *= inv;
        }
    }
}

static void add_rows(float *x, const float *o, int64_t n, int64_t t0, int64_t t1) {
    for (int64_t i = t0 * n; i < t1 * n; i++)
        x[i] += o[i];
}

static void worker(void *arg, int ith, int nth) {
    const fwd_job *j = arg;
    anneal_ctx *c = j->c;
    const anneal_model *m = c->m;
    const anneal_model_config *cfg = &m->cfg;
    const int64_t E = cfg->n_embd, F = cfg->n_ff;
    int64_t T = j->b->n_tokens; // rows in play: all tokens, then only the output rows
    bool compacted = false;
    float *scr = c->scratch + (size_t)ith * c->scratch_stride;
    int64_t t0, t1;
    anneal_split(T, ith, nth, &t0, &t1);

    for (int64_t t = t0; t < t1; t++) {
        const uint8_t *row =
            (const uint8_t *)m->tok_embd.data + (uint64_t)j->b->tokens[t] * m->tok_embd.row_bytes;
        anneal_dequantize(m->tok_embd.type, row, c->x + t * E, E);
        ops_rope_cache(c->rope + t * cfg->n_rot, m->rope_inv_freq, cfg->n_rot, j->b->pos[t]);
    }
    for (int32_t l = 0; l < cfg->n_layer; l++) {
        const model_layer *ly = &m->layers[l];
        // Rows are split the same way in every per-row phase, so a thread's rows need no
        // barrier between per-row phases: only around matmuls and attention.
        if (l > 0) add_rows(c->x, c->o, E, t0, t1);
        for (int64_t t = t0; t < t1; t++)
            ops_rmsnorm(c->xn + t * E, c->x + t * E, ly->attn_norm.data, (int32_t)E, cfg->norm_eps);
        quant_rows(c, c->xn, E, t0, t1,
                   need_of(ly->wq.type) | need_of(ly->wk.type) | need_of(ly->wv.type));
        barrier_wait(&c->bar);
        matmul(c, &ly->wq, c->xn, E, c->q_dim, T, c->q, ith, nth);
        matmul(c, &ly->wk, c->xn, E, c->kv_dim, T, c->k, ith, nth);
        matmul(c, &ly->wv, c->xn, E, c->kv_dim, T, c->v, ith, nth);
        barrier_wait(&c->bar);
        qkv_finish(j, l, t0, t1);
        if (ith == 0) atomic_store(&c->att_next, 0);
        barrier_wait(&c->bar);
        // Items are taken from a shared counter: later tokens of a prefill attend to more
        // positions, and a thread may lose its core to another process.
        for (int64_t n_items = T * cfg->n_head_kv;;) {
            int64_t it = atomic_fetch_add(&c->att_next, ATT_ITEMS);
            if (it >= n_items) break;
            attention(j, l, it, it + ATT_ITEMS < n_items ? it + ATT_ITEMS : n_items, scr);
        }
        barrier_wait(&c->bar);
        if (l == cfg->n_layer - 1 && j->n_sel < T) {
            // Past the last attention only the output rows matter: move them to the front
            // and run attn_output and the FFN on those alone. rows[] ascends and
            // rows[s] >= s, so one thread copying in order never overwrites a row it
            // still needs.
            if (ith == 0)
                for (int64_t s = 0; s < j->n_sel; s++) {
                    int64_t r = c->rows[s];
                    if (r == s) continue;
                    memcpy(c->x + s * E, c->x + r * E, (size_t)E * sizeof(float));
                    memcpy(c->att + s * c->q_dim, c->att + r * c->q_dim,
                           (size_t)c->q_dim * sizeof(float));
                }
            compacted = true;
            T = j->n_sel;
            anneal_split(T, ith, nth, &t0, &t1);
            barrier_wait(&c->bar);
        }
        quant_rows(c, c->att, c->q_dim, t0, t1, need_of(ly->wo.type));
        barrier_wait(&c->bar);
        matmul(c, &ly->wo, c->att, c->q_dim, E, T, c->o, ith, nth);
        barrier_wait(&c->bar);
        add_rows(c->x, c->o, E, t0, t1);
        for (int64_t t = t0; t < t1; t++)
            ops_rmsnorm(c->xn + t * E, c->x + t * E, ly->ffn_norm.data, (int32_t)E, cfg->norm_eps);
        quant_rows(c, c->xn, E, t0, t1, need_of(ly->w_gate.type) | need_of(ly->w_up.type));
        barrier_wait(&c->bar);
        matmul(c, &ly->w_gate, c->xn, E, F, T, c->gate, ith, nth);
        matmul(c, &ly->w_up, c->xn, E, F, T, c->up, ith, nth);
        barrier_wait(&c->bar);
        for (int64_t t = t0; t < t1; t++)
            ops_swiglu(c->gate + t * F, c->gate + t * F, c->up + t * F, (int32_t)F);
        quant_rows(c, c->gate, F, t0, t1, need_of(ly->w_down.type));
        barrier_wait(&c->bar);
        matmul(c, &ly->w_down, c->gate, F, E, T, c->o, ith, nth);
        barrier_wait(&c->bar);
    }
    // Output rows only: final residual, norm, then the vocabulary projection.
    int64_t s0, s1;
    anneal_split(j->n_sel, ith, nth, &s0, &s1);
    for (int64_t s = s0; s < s1; s++) {
        int64_t t = compacted ? s : c->rows[s];
        float *y = c->xn + s * E;
        for (int64_t i = 0; i < E; i++)
            y[i] = c->x[t * E + i] + c->o[t * E + i];
        ops_rmsnorm(y, y, m->out_norm.data, (int32_t)E, cfg->norm_eps);
        if (c->p.output == ANNEAL_OUTPUT_HIDDEN)
            memcpy(j->out + s * E, y, (size_t)E * sizeof(float));
    }
    if (c->p.output == ANNEAL_OUTPUT_HIDDEN) return;
    quant_rows(c, c->xn, E, s0, s1, need_of(m->output.type));
    barrier_wait(&c->bar);
    matmul(c, &m->output, c->xn, E, cfg->n_vocab, j->n_sel, j->out, ith, nth);
}

// ---- the call ---------------------------------------------------------------------------

// Checks the batch against the cache without changing anything; fills c->rows and
// *n_sel. kv->scratch holds per-sequence counts and last batch index.
static anneal_status check_batch(anneal_ctx *c, anneal_kv *kv, const anneal_batch *b,
                                 int32_t out_rows, int32_t *n_sel, anneal_err *err) {
    const anneal_model_config *cfg = &c->m->cfg;
    int32_t *cnt = kv->scratch, *last = kv->scratch + kv->max_seqs;
    for (int32_t i = 0; i < b->n_tokens; i++) {
        int32_t s = b->seq[i], tok = b->tokens[i];
        if (s < 0 || s >= kv->max_seqs)
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                  "batch index %d: sequence id %d is not in 0..%d", (int)i, (int)s,
                                  (int)kv->max_seqs - 1);
        if (tok < 0 || tok >= cfg->n_vocab)
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                  "batch index %d: token id %d is not in 0..%d", (int)i, (int)tok,
                                  (int)cfg->n_vocab - 1);
        cnt[s] = 0;
        last[s] = -1;
    }
    for (int32_t i = 0; i < b->n_tokens; i++) {
        int32_t s = b->seq[i], want = kv->len[s] + cnt[s];
        if (b->pos[i] != want)
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                  "batch index %d: position %d for sequence %d, expected %d (a "
                                  "sequence's tokens continue it in order)",
                                  (int)i, (int)b->pos[i], (int)s, (int)want);
        cnt[s]++;
        last[s] = i;
    }
    int64_t blocks = 0;
    int32_t sel = 0;
    for (int32_t i = 0; i < b->n_tokens; i++) {
        int32_t s = b->seq[i];
        bool is_last = last[s] == i;
        if (b->output ? b->output[i] : is_last) {
            if (sel < out_rows) c->rows[sel] = i;
            sel++;
        }
        if (!is_last) continue;
        int32_t new_len = kv->len[s] + cnt[s];
        if (new_len > kv->max_len)
            return anneal_err_set(err, ANNEAL_ERR_LIMIT,
                                  "batch index %d: sequence %d would hold %d positions, more than "
                                  "the cache's max_len %d",
                                  (int)i, (int)s, (int)new_len, (int)kv->max_len);
        blocks += kv_blocks_needed(kv, s, new_len);
    }
    if (blocks > kv->n_free)
        return anneal_err_set(err, ANNEAL_ERR_LIMIT,
                              "kv cache full: the batch needs %lld more blocks, %d are free",
                              (long long)blocks, (int)kv->n_free);
    if (sel > out_rows)
        return anneal_err_set(err, ANNEAL_ERR_RANGE,
                              "the batch selects %d output rows but out has room for %d", (int)sel,
                              (int)out_rows);
    *n_sel = sel;
    return ANNEAL_OK;
}

anneal_status anneal_forward(anneal_ctx *c, anneal_kv *kv, const anneal_batch *b, float *out,
                             int32_t out_rows, int32_t *n_out, anneal_err *err) {
    *n_out = 0;
    const anneal_model_config *cfg = &c->m->cfg;
    if (kv->n_layer != cfg->n_layer || kv->kv_dim != c->kv_dim)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "the kv cache was made for another model shape (%d layers x %d)",
                              (int)kv->n_layer, (int)kv->kv_dim);
    if (b->n_tokens < 0 || b->n_tokens > c->p.max_batch)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "batch of %d tokens: not in 0..max_batch %d", (int)b->n_tokens,
                              (int)c->p.max_batch);
    if (b->n_tokens == 0) return ANNEAL_OK;
    if (!b->tokens || !b->seq || !b->pos)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "batch without tokens, seq or pos");
    int32_t n_sel = 0;
    anneal_status st = check_batch(c, kv, b, out_rows < 0 ? 0 : out_rows, &n_sel, err);
    if (st) return st;
    if (n_sel > 0 && !out)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "out is NULL but %d rows are selected",
                              (int)n_sel);
    // Take the blocks; lengths grow now, so each token sees positions 0..pos of its own
    // sequence, earlier tokens of this batch included.
    int32_t *last = kv->scratch + kv->max_seqs, *cnt = kv->scratch;
    for (int32_t i = 0; i < b->n_tokens; i++) {
        int32_t s = b->seq[i];
        if (last[s] == i) kv_grow(kv, s, kv->len[s] + cnt[s]);
    }
    fwd_job job = {
        .c = c, .kv = kv, .b = b, .out = out, .n_sel = n_sel, .attn = ops_attn_get(kv->type)};
    atomic_store(&c->status, 0);
    anneal_pool_run(c->pool, worker, &job);
    int fst = atomic_load(&c->status);
    if (fst)
        return anneal_err_set(err, (anneal_status)fst, "a matmul kernel failed: %s",
                              anneal_status_str((anneal_status)fst));
    *n_out = n_sel;
    return ANNEAL_OK;
}
