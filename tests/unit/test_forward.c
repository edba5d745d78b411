// Numerics of the forward pass: the engine's logits against a naive reference forward
// written here (unpaged, F32 weights dequantized from the file, double accumulation), for
// llama and qwen2, every weight type, rope variants, and the batching invariants.
#include "model_fixture.h"
#include "model/model_internal.h"

// ---- the reference ----------------------------------------------------------------------

typedef struct ref_layer {
    float *attn_norm, *wq, *wk, *wv, *bq, *bk, *bv, *wo, *ffn_norm, *wg, *wu, *wd;
} ref_layer;

typedef struct ref_model {
    int E, L, H, KVH, hd, F, V;
    bool neox;
    float *embd, *onorm, *out;
    ref_layer ly[4];
    double inv_freq[256];
} ref_model;

// The whole tensor dequantized to F32; NULL when absent.
static float *deq(const anneal_gguf *g, const char *name) {
    const anneal_gguf_tensor *t = anneal_gguf_find_tensor(g, name);
    if (!t) return NULL;
    uint64_t n = 1;
    for (uint32_t i = 0; i < t->n_dims; i++)
        n *= t->dims[i];
    float *y = malloc(n * sizeof *y);
    CHECK_EQ(anneal_dequantize(t->type, t->data, y, (int64_t)n), ANNEAL_OK);
    return y;
}

static void ref_load(ref_model *r, const fx_spec *s, const char *path) {
    memset(r, 0, sizeof *r);
    anneal_gguf *g = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_gguf_open(path, &g, &err), ANNEAL_OK);
    r->E = s->n_embd;
    r->L = s->n_layer;
    r->H = s->n_head;
    r->KVH = s->n_head_kv;
    r->hd = s->n_embd / s->n_head;
    r->F = s->n_ff;
    r->V = FX_VOCAB;
    r->neox = strcmp(s->arch, "qwen2") == 0;
    r->embd = deq(g, "token_embd.weight");
    r->onorm = deq(g, "output_norm.weight");
    r->out = s->tied ? NULL : deq(g, "output.weight");
    char n[96];
    for (int l = 0; l < r->L; l++) {
        ref_layer *y = &r->ly[l];
#define D(f, nm) (snprintf(n, sizeof n, "blk.%d." nm, l), y->f = deq(g, n))
        D(attn_norm, "attn_norm.weight");
        D(wq, "attn_q.weight");
        D(wk, "attn_k.weight");
        D(wv, "attn_v.weight");
        D(bq, "attn_q.bias");
        D(bk, "attn_k.bias");
        D(bv, "attn_v.bias");
        D(wo, "attn_output.weight");
        D(ffn_norm, "ffn_norm.weight");
        D(wg, "ffn_gate.weight");
        D(wu, "ffn_up.weight");
        D(wd, "ffn_down.weight");
#undef D
    }
    double base = s->rope_base > 0 ? s->rope_base : 10000.0;
    for (int i = 0; i < r->hd / 2; i++) {
        r->inv_freq[i] = pow(base, -2.0 * i / r->hd);
        if (s->llama3_keys || s->rope_freqs) r->inv_freq[i] /= fx_llama3_factor(s, i, r->hd);
    }
    anneal_gguf_close(g);
}

static void ref_free(ref_model *r) {
    free(r->embd);
    free(r->onorm);
    free(r->out);
    for (int l = 0; l < r->L; l++) {
        float **fs[] = {&r->ly[l].attn_norm, &r->ly[l].wq, &r->ly[l].wk, &r->ly[l].wv,
                        &r->ly[l].bq,        &r->ly[l].bk, &r->ly[l].bv, &r->ly[l].wo,
                        &r->ly[l].ffn_norm,  &r->ly[l].wg, &r->ly[l].wu, &r->ly[l].wd};
        for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
            free(*fs[i]);
    }
}

static void r_norm(float *y, const float *x, const float *w, int n) {
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    double sc = 1.0 / sqrt(ss / n + 1e-5);
    for (int i = 0; i < n; i++)
        y[i] = (float)(x[i] * sc * w[i]);
}

// y[o] = sum_i W[o][i] x[i] (+ b[o]), W rows of n_in.
static void r_mv(float *y, const float *W, const float *b, const float *x, int n_in, int n_out) {
    for (int o = 0; o < n_out; o++) {
        double acc = b ? b[o] : 0;
        for (int i = 0; i < n_in; i++)
            acc += (double)W[(size_t)o * n_in + i] * x[i];
        y[o] = (float)acc;
    }
}

// Rotates a head at position pos: llama pairs (2i, 2i+1), qwen2 pairs (i, i + hd/2).
static void r_rope(const ref_model *r, float *v, int pos) {
    int half = r->hd / 2;
    for (int i = 0; i < half; i++) {
        double th = pos * r->inv_freq[i], c = cos(th), s = sin(th);
        int a = r->neox ? i : 2 * i, b = r->neox ? i + half : 2 * i + 1;
        double x0 = v[a], x1 = v[b];
        v[a] = (float)(x0 * c - x1 * s);
        v[b] = (float)(x0 * s + x1 * c);
    }
}

// Logits ((n - first) x V) and final hidden states ((n - first) x E) of the tokens at
// positions first..n-1 of tokens at positions 0..n-1.
static void ref_forward_from(const ref_model *r, const int32_t *tok, int n, int first,
                             float *logits, float *hidden) {
    int E = r->E, hd = r->hd, qd = r->H * hd, kvd = r->KVH * hd, g = r->H / r->KVH;
    float *x = calloc((size_t)n * E, sizeof *x), *xn = malloc((size_t)E * sizeof *xn);
    float *Q = malloc((size_t)n * qd * sizeof *Q), *K = malloc((size_t)n * kvd * sizeof *K);
    float *Vv = malloc((size_t)n * kvd * sizeof *Vv), *att = malloc((size_t)qd * sizeof *att);
    float *tmp = malloc((size_t)E * sizeof *tmp), *gt = malloc((size_t)r->F * sizeof *gt);
    float *up = malloc((size_t)r->F * sizeof *up);
    double *sc = malloc((size_t)n * sizeof *sc);
    for (int t = 0; t < n; t++)
        memcpy(x + (size_t)t * E, r->embd + (size_t)tok[t] * E, (size_t)E * 4);
    for (int l = 0; l < r->L; l++) {
        const ref_layer *y = &r->ly[l];
        for (int t = 0; t < n; t++) {
            r_norm(xn, x + (size_t)t * E, y->attn_norm, E);
            r_mv(Q + (size_t)t * qd, y->wq, y->bq, xn, E, qd);
            r_mv(K + (size_t)t * kvd, y->wk, y->bk, xn, E, kvd);
            r_mv(Vv + (size_t)t * kvd, y->wv, y->bv, xn, E, kvd);
            for (int h = 0; h < r->H; h++)
                r_rope(r, Q + (size_t)t * qd + h * hd, t);
            for (int h = 0; h < r->KVH; h++)
                r_rope(r, K + (size_t)t * kvd + h * hd, t);
        }
        for (int t = 0; t < n; t++) {
            for (int h = 0; h < r->H; h++) {
                const float *q = Q + (size_t)t * qd + h * hd;
                int hk = h / g;
                double mx = -1e300, sum = 0;
                for (int p = 0; p <= t; p++) {
                    double d = 0;
                    for (int i = 0; i < hd; i++)
                        d += (double)q[i] * K[(size_t)p * kvd + hk * hd + i];
                    sc[p] = d / sqrt((double)hd);
                    if (sc[p] > mx) mx = sc[p];
                }
                for (int p = 0; p <= t; p++)
                    sum += (sc[p] = exp(sc[p] - mx));
                for (int i = 0; i < hd; i++) {
                    double a = 0;
                    for (int p = 0; p <= t; p++)
                        a += sc[p] * Vv[(size_t)p * kvd + hk * hd + i];
                    att[h * hd + i] = (float)(a / sum);
                }
            }
            r_mv(tmp, y->wo, NULL, att, qd, E);
            for (int i = 0; i < E; i++)
                x[(size_t)t * E + i] += tmp[i];
            r_norm(xn, x + (size_t)t * E, y->ffn_norm, E);
            r_mv(gt, y->wg, NULL, xn, E, r->F);
            r_mv(up, y->wu, NULL, xn, E, r->F);
            for (int i = 0; i < r->F; i++)
                gt[i] = (float)(gt[i] / (1.0 + exp(-(double)gt[i])) * up[i]);
            r_mv(tmp, y->wd, NULL, gt, r->F, E);
            for (int i = 0; i < E; i++)
                x[(size_t)t * E + i] += tmp[i];
        }
    }
    for (int t = first; t < n; t++) {
        r_norm(xn, x + (size_t)t * E, r->onorm, E);
        if (hidden) memcpy(hidden + (size_t)(t - first) * E, xn, (size_t)E * 4);
        if (logits)
            r_mv(logits + (size_t)(t - first) * r->V, r->out ? r->out : r->embd, NULL, xn, E, r->V);
    }
    free(x), free(xn), free(Q), free(K), free(Vv), free(att), free(tmp), free(gt), free(up),
        free(sc);
}

static void ref_forward(const ref_model *r, const int32_t *tok, int n, float *logits,
                        float *hidden) {
    ref_forward_from(r, tok, n, 0, logits, hidden);
}

// ---- engine helpers -------------------------------------------------------------------

// ||a - b|| / ||b|| over n values.
static double rms_err(const float *a, const float *b, size_t n) {
    double se = 0, ss = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        se += d * d;
        ss += (double)b[i] * b[i];
    }
    return sqrt(se / (ss + 1e-30));
}

// max |a - b| over n values, relative to the rms of b.
static double rel_err(const float *a, const float *b, size_t n) {
    double mx = 0, ss = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= mx)) mx = d; // NaN propagates
        ss += (double)b[i] * b[i];
    }
    return mx / sqrt(ss / (double)n + 1e-30);
}

static anneal_model *load(const char *path) {
    anneal_model *m = NULL;
    anneal_err err = {0};
    anneal_status st = anneal_model_load(path, &m, &err);
    if (st) fprintf(stderr, "load %s: %s\n", path, anneal_err_msg(&err));
    CHECK_EQ(st, ANNEAL_OK);
    return m;
}

typedef struct eng {
    anneal_model *m;
    anneal_kv *kv;
    anneal_ctx *c;
} eng;

static eng eng_new(anneal_model *m, uint32_t kv_type, int32_t block_size, int32_t n_threads,
                   anneal_output_kind kind) {
    eng e = {.m = m};
    anneal_err err = {0};
    anneal_kv_params kp = anneal_kv_params_default(128, 4);
    kp.type = kv_type;
    kp.block_size = block_size;
    kp.n_blocks = 4 * ((128 + block_size - 1) / block_size);
    CHECK_EQ(anneal_kv_new(m, &kp, &e.kv, &err), ANNEAL_OK);
    anneal_ctx_params cp = anneal_ctx_params_default();
    cp.max_batch = 32;
    cp.n_threads = n_threads;
    cp.output = kind;
    CHECK_EQ(anneal_ctx_new(m, &cp, &e.c, &err), ANNEAL_OK);
    return e;
}

static void eng_free(eng *e) {
    anneal_ctx_free(e->c);
    anneal_kv_free(e->kv);
}

// Runs tokens[0..n) of one sequence at its current end as one batch, all rows out.
static void eng_run(eng *e, int32_t seq, const int32_t *tok, int n, float *out, int32_t row) {
    int32_t sq[32], pos[32];
    bool outp[32];
    int32_t start = anneal_kv_seq_len(e->kv, seq);
    for (int i = 0; i < n; i++) {
        sq[i] = seq;
        pos[i] = start + i;
        outp[i] = true;
    }
    anneal_batch b = {.n_tokens = n, .tokens = tok, .seq = sq, .pos = pos, .output = outp};
    int32_t n_out = -1;
    anneal_err err = {0};
    anneal_status st = anneal_forward(e->c, e->kv, &b, out, n, &n_out, &err);
    if (st) fprintf(stderr, "forward: %s\n", anneal_err_msg(&err));
    CHECK_EQ(st, ANNEAL_OK);
    CHECK_EQ(n_out, n);
    (void)row;
}

static void rand_tokens(int32_t *tok, int n, uint64_t seed) {
    for (int i = 0; i < n; i++)
        tok[i] = (int32_t)(fx_next(&seed) % FX_VOCAB);
}

#define NTOK 9

// Engine (all rows, one batch) vs reference on the model of spec s; returns the largest
// error relative to the logits' rms, and in *rms (when not NULL) the rms error relative to
// the logits' rms.
// Only the last n_last tokens ask for output rows (the rest still fill the cache).
static double compare_spec(const fx_spec *s, uint32_t kv_type, int tag, int n_last, double *rms) {
    char path[128];
    fx_path(path, sizeof path, "fwd", tag);
    fx_write(s, path);
    ref_model r;
    ref_load(&r, s, path);
    anneal_model *m = load(path);
    double e = 1e9;
    if (m) {
        int32_t tok[NTOK];
        rand_tokens(tok, NTOK, s->seed + 7);
        size_t nv = (size_t)n_last * FX_VOCAB;
        float *want = malloc(nv * 4), *got = malloc(nv * 4);
        ref_forward_from(&r, tok, NTOK, NTOK - n_last, want, NULL);
        eng en = eng_new(m, kv_type, 4, 2, ANNEAL_OUTPUT_LOGITS);
        int32_t sq[NTOK], pos[NTOK];
        bool outp[NTOK];
        for (int i = 0; i < NTOK; i++)
            sq[i] = 0, pos[i] = i, outp[i] = i >= NTOK - n_last;
        anneal_batch b = {.n_tokens = NTOK, .tokens = tok, .seq = sq, .pos = pos, .output = outp};
        int32_t n_out = 0;
        anneal_err err = {0};
        CHECK_EQ(anneal_forward(en.c, en.kv, &b, got, n_last, &n_out, &err), ANNEAL_OK);
        CHECK_EQ(n_out, n_last);
        e = rel_err(got, want, nv);
        if (rms) *rms = rms_err(got, want, nv);
        eng_free(&en);
        free(want);
        free(got);
    }
    anneal_model_free(m);
    ref_free(&r);
    unlink(path);
    return e;
}

// ---- tests -------------------------------------------------------------------------------

// One vector rotated at position 3 (base 10000, 8 dims), values computed by hand:
// pair i turns by 3 * 10000^(-2i/8) = 3, 0.3, 0.03, 0.003 radians.
static void test_rope_hand(void) {
    anneal_model_config cfg = {.n_rot = 8, .rope_freq_base = 10000.0f};
    double inv[4];
    ops_rope_freqs(inv, &cfg, NULL);
    float cs[8];
    ops_rope_cache(cs, inv, 8, 3);
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ops_rope_apply(x, cs, 8, ANNEAL_ROPE_NORM);
    const double norm[8] = {-1.272232513, -1.838864985, 1.683928641, 4.707906576,
                            4.817777168,  6.147277704,  6.975968536, 8.020963969};
    for (int i = 0; i < 8; i++)
        CHECK_NEAR(x[i], norm[i], 2e-6);
    float y[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ops_rope_apply(y, cs, 8, ANNEAL_ROPE_NEOX);
    const double neox[8] = {-1.695592537, 0.137551738, 2.788681600, 3.975982036,
                            -4.808842475, 6.323059348, 7.086836737, 8.011963982};
    for (int i = 0; i < 8; i++)
        CHECK_NEAR(y[i], neox[i], 2e-6);
    // Dimensions past n_rot stay put.
    float z[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    ops_rope_apply(z, cs, 8, ANNEAL_ROPE_NORM);
    CHECK(z[8] == 9 && z[9] == 10);
}

// Llama 3.1 scaling (factor 8, low 1, high 4, original context 8192, base 500000, 128 dims):
// pair 0 (wavelength 2 pi) keeps its frequency, pair 63 (wavelength ~2.6e6) is divided by
// 8, pair 32 (frequency 500000^-0.5 = 1.41421e-3, wavelength 4442.88) is interpolated with
// smooth = (8192/4442.88 - 1)/3 = 0.281283: (1 - smooth)/8 + smooth = 0.371118 of it.
static void test_rope_llama3_freqs(void) {
    anneal_model_config cfg = {.n_rot = 128,
                               .rope_freq_base = 500000.0f,
                               .rope_scale_factor = 8,
                               .rope_low_freq_factor = 1,
                               .rope_high_freq_factor = 4,
                               .rope_orig_ctx = 8192};
    double inv[64];
    ops_rope_freqs(inv, &cfg, NULL);
    CHECK_NEAR(inv[0], 1.0, 1e-12);
    CHECK_NEAR(inv[63] / 3.068925988914511e-07, 1.0, 1e-6);
    CHECK_NEAR(inv[32] / 0.0005248461609929547, 1.0, 1e-6);
    // A rope_freqs tensor replaces the formula: frequencies divided by its factors.
    float factors[64];
    for (int i = 0; i < 64; i++)
        factors[i] = 2.0f;
    ops_rope_freqs(inv, &cfg, factors);
    CHECK_NEAR(inv[0], 0.5, 1e-12);
    CHECK_NEAR(inv[32] / (0.001414213562373095 / 2), 1.0, 1e-9);
}

// F32 weights, F32 cache: only float rounding differs from the double reference, which
// over two layers stays near 1e-6 of the logits' rms; 1e-4 leaves margin.
static void test_llama_f32(void) {
    fx_spec s = fx_default();
    double e = compare_spec(&s, ANNEAL_TYPE_F32, 1, NTOK, NULL);
    fprintf(stderr, "  llama f32: rel err %.3g\n", e);
    CHECK(e < 1e-4);
}

static void test_qwen2_tied_f32(void) {
    fx_spec s = fx_default();
    s.arch = "qwen2";
    s.bias = true;
    s.tied = true;
    s.seed = 2;
    double e = compare_spec(&s, ANNEAL_TYPE_F32, 2, NTOK, NULL);
    fprintf(stderr, "  qwen2 tied f32: rel err %.3g\n", e);
    CHECK(e < 1e-4);
}

// The reference must notice a pairing mistake: the same qwen2 model run by a reference
// that pairs llama-style differs by far more than the tolerance.
static void test_rope_pairing_matters(void) {
    fx_spec s = fx_default();
    s.arch = "qwen2";
    s.bias = true;
    s.seed = 3;
    char path[128];
    fx_path(path, sizeof path, "fwd", 3);
    fx_write(&s, path);
    ref_model r;
    ref_load(&r, &s, path);
    int32_t tok[NTOK];
    rand_tokens(tok, NTOK, 11);
    float *a = malloc((size_t)NTOK * FX_VOCAB * 4), *b = malloc((size_t)NTOK * FX_VOCAB * 4);
    ref_forward(&r, tok, NTOK, a, NULL);
    r.neox = false;
    ref_forward(&r, tok, NTOK, b, NULL);
    double e = rel_err(b, a, (size_t)NTOK * FX_VOCAB);
    fprintf(stderr, "  neox vs norm pairing: rel diff %.3g\n", e);
    CHECK(e > 1e-2);
    free(a);
    free(b);
    ref_free(&r);
    unlink(path);
}

// Llama 3 scaling from keys and from a rope_freqs tensor. With head_dim 32 (base 10000) and
// an original context of 64, pairs 0-1 keep their frequency, 2-4 are interpolated and the
// rest are divided by 8, so every branch of the formula shows in the logits.
static void test_llama3_scaling(void) {
    fx_spec s = fx_default();
    s.n_head = 2;
    s.n_head_kv = 1; // head_dim 32: 16 rope pairs
    s.l3_factor = 8;
    s.l3_low = 1;
    s.l3_high = 4;
    s.l3_orig = 64;
    s.seed = 4;
    s.llama3_keys = true;
    double e1 = compare_spec(&s, ANNEAL_TYPE_F32, 4, NTOK, NULL);
    s.llama3_keys = false;
    s.rope_freqs = true;
    double e2 = compare_spec(&s, ANNEAL_TYPE_F32, 5, NTOK, NULL);
    fprintf(stderr, "  llama3 keys: %.3g, rope_freqs tensor: %.3g\n", e1, e2);
    CHECK(e1 < 1e-4);
    CHECK(e2 < 1e-4);
    // And scaling changes the logits well beyond the tolerance.
    char path[128];
    fx_path(path, sizeof path, "fwd", 6);
    s.rope_freqs = false;
    s.llama3_keys = true;
    fx_write(&s, path);
    ref_model r;
    ref_load(&r, &s, path);
    int32_t tok[NTOK];
    rand_tokens(tok, NTOK, 5);
    float *a = malloc((size_t)NTOK * FX_VOCAB * 4), *b = malloc((size_t)NTOK * FX_VOCAB * 4);
    ref_forward(&r, tok, NTOK, a, NULL);
    for (int i = 0; i < r.hd / 2; i++)
        r.inv_freq[i] = pow(10000.0, -2.0 * i / r.hd);
    ref_forward(&r, tok, NTOK, b, NULL);
    double d = rel_err(b, a, (size_t)NTOK * FX_VOCAB);
    fprintf(stderr, "  scaled vs unscaled: rel diff %.3g\n", d);
    CHECK(d > 1e-2);
    free(a);
    free(b);
    ref_free(&r);
    unlink(path);
}

// Every weight type against the reference on the same file's dequantized weights. n_embd
// 256 and n_ff 512 so K-quant rows are whole super-blocks.
static void test_quant_types(void) {
    // Tolerances. F16/BF16 weights take F32 activations, so only float rounding remains,
    // as for F32: 1e-4. The other types quantize each activation row to 8 bits before
    // every matmul (Q8_0: step max|x|/127 per 32 values; Q8_K: the same per 256 values, so
    // a larger max and a coarser step). That is about 0.6% (Q8_0) to 0.9% (Q8_K) rms
    // noise per input, which passes through each dot at the same relative size and adds
    // up over the 7 matmuls of 2 layers plus the output projection: expect 1-3% rms error
    // in the logits, and at the worst of 96,000 logits about 4-5 times that (measured: 1.3%
    // rms / 5.5-7% max with Q8_0 activations, 2.0% / 8-9% with Q8_K). Bounds:
    // 5% rms and 25% max. A wrong block layout, scale or pairing gives errors the size of
    // the logits themselves (rms error near 100%; see test_rope_pairing_matters).
    struct {
        uint32_t type;
        double rms_tol, max_tol;
    } cases[] = {
        {ANNEAL_TYPE_F16, 1e-5, 1e-4},  {ANNEAL_TYPE_BF16, 1e-5, 1e-4},
        {ANNEAL_TYPE_Q8_0, 5e-2, 0.25}, {ANNEAL_TYPE_Q4_0, 5e-2, 0.25},
        {ANNEAL_TYPE_Q4_1, 5e-2, 0.25}, {ANNEAL_TYPE_Q5_0, 5e-2, 0.25},
        {ANNEAL_TYPE_Q4_K, 5e-2, 0.25}, {ANNEAL_TYPE_Q5_K, 5e-2, 0.25},
        {ANNEAL_TYPE_Q6_K, 5e-2, 0.25},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fx_spec s = fx_default();
        s.n_embd = 256;
        s.n_ff = 512;
        s.wtype = cases[i].type;
        // Tied embeddings, Q8_0 for the quantized types: the vocabulary matrix is the slow
        // part to quantize, and its matmul is the code the layer matrices exercise in the
        // tested type. Float types keep their own type so the tight bound holds.
        s.tied = true;
        bool is_float = cases[i].type == ANNEAL_TYPE_F16 || cases[i].type == ANNEAL_TYPE_BF16;
        s.embd_type = is_float ? cases[i].type : ANNEAL_TYPE_Q8_0;
        s.seed = 100 + i;
        double rms = 0, e = compare_spec(&s, ANNEAL_TYPE_F32, 10 + (int)i, 3, &rms);
        fprintf(stderr, "  %s: rms err %.3g, max err %.3g\n", anneal_type_get(cases[i].type)->name,
                rms, e);
        CHECK(rms < cases[i].rms_tol);
        CHECK(e < cases[i].max_tol);
    }
}

// The SIMD attention kernels against the plain-C ones on random rows: head sizes on and
// off the vector path (64, 20), F16 and F32 rows, exp tails.
static void test_attn_kernels(void) {
    const anneal_cpu *cpu = anneal_cpu_get();
    if (!(cpu->avx2 && cpu->fma && cpu->f16c)) return;
    uint64_t rng = 77;
    float q[4 * 64], krow[64], acc_a[4 * 64], acc_b[4 * 64], w[4 * 3];
    anneal_fp16 k16[64];
    for (int i = 0; i < 4 * 64; i++)
        q[i] = fx_uniform(&rng);
    for (int i = 0; i < 64; i++)
        krow[i] = fx_uniform(&rng), k16[i] = anneal_f32_to_fp16(krow[i]);
    for (int i = 0; i < 12; i++)
        w[i] = fx_uniform(&rng);
    uint32_t types[2] = {ANNEAL_TYPE_F16, ANNEAL_TYPE_F32};
    int hds[2] = {64, 20};
    for (int ti = 0; ti < 2; ti++) {
        ops_attn_kernels r = ops_attn_at(types[ti], ANNEAL_KERNELS_REF);
        ops_attn_kernels f = ops_attn_at(types[ti], ANNEAL_KERNELS_AVX2);
        const void *row = types[ti] == ANNEAL_TYPE_F16 ? (const void *)k16 : (const void *)krow;
        for (int hi = 0; hi < 2; hi++) {
            int hd = hds[hi];
            float oa[4 * 3], ob[4 * 3];
            for (int g = 3; g <= 4; g++) { // an odd group takes the one-head tail
                r.kdot(hd, g, row, q, oa, 3);
                f.kdot(hd, g, row, q, ob, 3);
                for (int h = 0; h < g; h++)
                    CHECK_NEAR(oa[h * 3], ob[h * 3], 1e-5);
            }
            for (int i = 0; i < 4 * 64; i++)
                acc_a[i] = acc_b[i] = q[i];
            r.vacc(hd, 4, row, w, 3, acc_a);
            f.vacc(hd, 4, row, w, 3, acc_b);
            for (int i = 0; i < 4 * hd; i++)
                CHECK_NEAR(acc_a[i], acc_b[i], 1e-6);
        }
        float xa[13], xb[13];
        for (int i = 0; i < 13; i++)
            xa[i] = xb[i] = -20.0f * (float)i / 12 - (i == 5 ? 100 : 0);
        float sa = r.exps(xa, 13, 0.5f), sb = f.exps(xb, 13, 0.5f);
        CHECK_NEAR(sa, sb, 1e-6 * sa);
        for (int i = 0; i < 13; i++)
            CHECK_NEAR(xa[i], xb[i], 4e-7 * xa[i] + 1e-38);
        CHECK(xb[5] == 0.0f); // exp(-100.5) underflows to 0 like expf
    }
}

// SwiGLU (vectorized exp on capable CPUs) against the formula, over a wide range of gates
// including ones where e^-x overflows a float.
static void test_swiglu(void) {
    enum { N = 203 };
    float g[N], u[N], y[N];
    uint64_t rng = 5;
    for (int i = 0; i < N; i++)
        g[i] = 12.0f * fx_uniform(&rng), u[i] = fx_uniform(&rng);
    g[0] = -100, g[1] = 100, g[2] = 0, g[3] = -90, g[4] = 1e-8f;
    ops_swiglu(y, g, u, N);
    for (int i = 0; i < N; i++) {
        double want = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        CHECK_NEAR(y[i], want, 1e-6 * fabs(want) + 1e-30);
    }
}

// A sequence longer than the attention chunk (32): 70 positions, so scores run over
// three chunks and the softmax rescales between them; checked against the reference
// in one prefill and in a prefill + decode split across the chunk boundary.
static void test_long_sequence(void) {
    fx_spec s = fx_default();
    s.seed = 70;
    char path[128];
    fx_path(path, sizeof path, "fwd", 70);
    fx_write(&s, path);
    ref_model r;
    ref_load(&r, &s, path);
    anneal_model *m = load(path);
    enum { N = 70 };
    if (m) {
        int32_t tok[N];
        rand_tokens(tok, N, 71);
        size_t V = FX_VOCAB;
        float *want = malloc(2 * V * 4), *got = malloc(2 * V * 4);
        ref_forward_from(&r, tok, N, N - 2, want, NULL);
        for (int kvt = 0; kvt < 2; kvt++) {
            eng e = eng_new(m, kvt ? ANNEAL_TYPE_F16 : ANNEAL_TYPE_F32, 5, 2, ANNEAL_OUTPUT_LOGITS);
            float *tmp = malloc(32 * V * 4);
            eng_run(&e, 0, tok, 32, tmp, 0);
            eng_run(&e, 0, tok + 32, 32, tmp, 0);
            eng_run(&e, 0, tok + 64, 4, tmp, 0);
            eng_run(&e, 0, tok + 68, 2, got, 0);
            double d = rel_err(got, want, 2 * V);
            fprintf(stderr, "  70 positions (%s kv): %.3g\n", kvt ? "f16" : "f32", d);
            CHECK(d < (kvt ? 5e-3 : 1e-4));
            free(tmp);
            eng_free(&e);
        }
        free(want);
        free(got);
    }
    anneal_model_free(m);
    ref_free(&r);
    unlink(path);
}

// ---- batching invariants ----------------------------------------------------------------

typedef struct inv_fixture {
    char path[128];
    anneal_model *m;
} inv_fixture;

// A small model with `wtype` matrices for the batching tests (Q8_0 by default, so the
// quantized-activation path is covered too).
static inv_fixture inv_open(int tag, uint32_t wtype) {
    inv_fixture f;
    fx_spec s = fx_default();
    s.wtype = wtype;
    s.seed = 50;
    fx_path(f.path, sizeof f.path, "inv", tag);
    fx_write(&s, f.path);
    f.m = load(f.path);
    return f;
}

static void inv_close(inv_fixture *f) {
    anneal_model_free(f->m);
    unlink(f->path);
}

// Prefill of N tokens in one batch == N single-token steps (block size 3 divides neither
// length).
static void test_prefill_equals_decode(void) {
    inv_fixture f = inv_open(1, ANNEAL_TYPE_Q8_0);
    if (!f.m) return;
    int32_t tok[NTOK + 2];
    rand_tokens(tok, NTOK + 2, 21);
    size_t V = FX_VOCAB;
    float *a = malloc((NTOK + 2) * V * 4), *b = malloc((NTOK + 2) * V * 4);
    eng e1 = eng_new(f.m, ANNEAL_TYPE_F16, 3, 2, ANNEAL_OUTPUT_LOGITS);
    eng_run(&e1, 0, tok, NTOK + 2, a, 0);
    eng e2 = eng_new(f.m, ANNEAL_TYPE_F16, 3, 1, ANNEAL_OUTPUT_LOGITS);
    for (int i = 0; i < NTOK + 2; i++)
        eng_run(&e2, 0, tok + i, 1, b + i * V, 0);
    CHECK_EQ(anneal_kv_seq_len(e2.kv, 0), NTOK + 2);
    double d = rel_err(a, b, (NTOK + 2) * V);
    fprintf(stderr, "  prefill vs decode: %.3g\n", d);
    CHECK(d < 1e-5);
    // A prefill that asks for no rows (the last layer then skips its FFN entirely) leaves
    // the same cache: the next step's logits match.
    eng e3 = eng_new(f.m, ANNEAL_TYPE_F16, 3, 2, ANNEAL_OUTPUT_LOGITS);
    int32_t sq[NTOK + 1], pos[NTOK + 1];
    bool none[NTOK + 1];
    for (int i = 0; i < NTOK + 1; i++)
        sq[i] = 0, pos[i] = i, none[i] = false;
    anneal_batch pb = {.n_tokens = NTOK + 1, .tokens = tok, .seq = sq, .pos = pos, .output = none};
    int32_t n_out = -1;
    anneal_err err = {0};
    CHECK_EQ(anneal_forward(e3.c, e3.kv, &pb, NULL, 0, &n_out, &err), ANNEAL_OK);
    CHECK_EQ(n_out, 0);
    eng_run(&e3, 0, tok + NTOK + 1, 1, b, 0);
    CHECK(rel_err(b, a + (NTOK + 1) * V, V) < 1e-5);
    eng_free(&e3);
    eng_free(&e1);
    eng_free(&e2);
    free(a);
    free(b);
    inv_close(&f);
}

// Two sequences interleaved in one batch == each alone; default output rows (NULL = the
// last token of each sequence) come in batch order.
static void test_two_sequences(void) {
    inv_fixture f = inv_open(2, ANNEAL_TYPE_Q8_0);
    if (!f.m) return;
    size_t V = FX_VOCAB;
    int32_t ta[7], tb[5];
    rand_tokens(ta, 7, 31);
    rand_tokens(tb, 5, 32);
    float *alone_a = malloc(7 * V * 4), *alone_b = malloc(5 * V * 4);
    eng e = eng_new(f.m, ANNEAL_TYPE_F16, 3, 2, ANNEAL_OUTPUT_LOGITS);
    eng_run(&e, 0, ta, 7, alone_a, 0);
    eng_run(&e, 1, tb, 5, alone_b, 0);
    eng_free(&e);

    // Sequence 0 gets its first 2 tokens alone, then both share a batch: a's tokens 2..6
    // and b's 0..4 interleaved, sequence ids 3 and 1 to show ids are free.
    eng e2 = eng_new(f.m, ANNEAL_TYPE_F16, 3, 2, ANNEAL_OUTPUT_LOGITS);
    float *pre = malloc(2 * V * 4);
    eng_run(&e2, 3, ta, 2, pre, 0);
    CHECK(rel_err(pre, alone_a, 2 * V) < 1e-5);
    int32_t tok[10], sq[10], pos[10];
    int n = 0, ia = 2, ib = 0;
    while (ia < 7 || ib < 5) {
        if (ia < 7) tok[n] = ta[ia], sq[n] = 3, pos[n] = ia++, n++;
        if (ib < 5) tok[n] = tb[ib], sq[n] = 1, pos[n] = ib++, n++;
    }
    anneal_batch b = {.n_tokens = n, .tokens = tok, .seq = sq, .pos = pos, .output = NULL};
    float *out = malloc(2 * V * 4);
    int32_t n_out = 0;
    anneal_err err = {0};
    CHECK_EQ(anneal_forward(e2.c, e2.kv, &b, out, 2, &n_out, &err), ANNEAL_OK);
    CHECK_EQ(n_out, 2);
    // Batch order: a's last token (index 8) comes before b's last (index 9).
    CHECK(rel_err(out, alone_a + 6 * V, V) < 1e-5);
    CHECK(rel_err(out + V, alone_b + 4 * V, V) < 1e-5);
    CHECK_EQ(anneal_kv_seq_len(e2.kv, 3), 7);
    CHECK_EQ(anneal_kv_seq_len(e2.kv, 1), 5);
    eng_free(&e2);
    free(pre);
    free(out);
    free(alone_a);
    free(alone_b);
    inv_close(&f);
}

// Truncate then re-run: the logits of the replayed suffix equal a fresh run's.
static void test_truncate_rerun(void) {
    inv_fixture f = inv_open(3, ANNEAL_TYPE_Q8_0);
    if (!f.m) return;
    size_t V = FX_VOCAB;
    int32_t tok[NTOK], alt[NTOK];
    rand_tokens(tok, NTOK, 41);
    memcpy(alt, tok, sizeof tok);
    alt[5] = (alt[5] + 1) % FX_VOCAB;
    alt[7] = (alt[7] + 9) % FX_VOCAB;
    float *fresh = malloc(NTOK * V * 4), *got = malloc(NTOK * V * 4);
    eng e1 = eng_new(f.m, ANNEAL_TYPE_F16, 4, 2, ANNEAL_OUTPUT_LOGITS);
    eng_run(&e1, 0, alt, NTOK, fresh, 0);
    eng e2 = eng_new(f.m, ANNEAL_TYPE_F16, 4, 2, ANNEAL_OUTPUT_LOGITS);
    eng_run(&e2, 0, tok, NTOK, got, 0);
    int32_t free_before = anneal_kv_free_blocks(e2.kv);
    anneal_err err = {0};
    CHECK_EQ(anneal_kv_seq_truncate(e2.kv, 0, 5, &err), ANNEAL_OK);
    CHECK_EQ(anneal_kv_free_blocks(e2.kv), free_before + 1); // 9 -> 5 positions: 3 -> 2 blocks
    eng_run(&e2, 0, alt + 5, NTOK - 5, got, 0);
    CHECK(rel_err(got, fresh + 5 * V, (NTOK - 5) * V) < 1e-5);
    eng_free(&e1);
    eng_free(&e2);
    free(fresh);
    free(got);
    inv_close(&f);
}

// F16 cache vs F32 cache: K/V rounded to 11 significant bits (2^-12 relative), which
// moves the logits by about 1e-3 of their rms at most. F32 weights, so that no activation
// quantization turns those small differences into whole 8-bit steps.
static void test_kv_f16_vs_f32(void) {
    inv_fixture f = inv_open(4, ANNEAL_TYPE_F32);
    if (!f.m) return;
    size_t V = FX_VOCAB;
    int32_t tok[NTOK];
    rand_tokens(tok, NTOK, 51);
    float *a = malloc(NTOK * V * 4), *b = malloc(NTOK * V * 4);
    eng e1 = eng_new(f.m, ANNEAL_TYPE_F16, 16, 2, ANNEAL_OUTPUT_LOGITS);
    eng e2 = eng_new(f.m, ANNEAL_TYPE_F32, 16, 2, ANNEAL_OUTPUT_LOGITS);
    eng_run(&e1, 0, tok, NTOK, a, 0);
    eng_run(&e2, 0, tok, NTOK, b, 0);
    double d = rel_err(a, b, NTOK * V);
    fprintf(stderr, "  f16 vs f32 kv: %.3g\n", d);
    CHECK(d < 5e-3);
    CHECK(d > 0); // the F16 path really rounds
    CHECK_EQ(anneal_kv_bytes(e1.kv) * 2, anneal_kv_bytes(e2.kv));
    eng_free(&e1);
    eng_free(&e2);
    free(a);
    free(b);
    inv_close(&f);
}

// Hidden-state output: the final normed rows, equal to the reference's.
static void test_hidden_output(void) {
    fx_spec s = fx_default();
    s.seed = 60;
    char path[128];
    fx_path(path, sizeof path, "fwd", 60);
    fx_write(&s, path);
    ref_model r;
    ref_load(&r, &s, path);
    anneal_model *m = load(path);
    if (m) {
        int32_t tok[NTOK];
        rand_tokens(tok, NTOK, 61);
        float *want = malloc((size_t)NTOK * s.n_embd * 4),
              *got = malloc((size_t)NTOK * s.n_embd * 4);
        ref_forward(&r, tok, NTOK, NULL, want);
        eng e = eng_new(m, ANNEAL_TYPE_F32, 4, 2, ANNEAL_OUTPUT_HIDDEN);
        eng_run(&e, 0, tok, NTOK, got, 0);
        double d = rel_err(got, want, (size_t)NTOK * s.n_embd);
        fprintf(stderr, "  hidden: %.3g\n", d);
        CHECK(d < 1e-4);
        eng_free(&e);
        free(want);
        free(got);
    }
    anneal_model_free(m);
    ref_free(&r);
    unlink(path);
}

int main(void) {
    RUN(test_rope_hand);
    RUN(test_rope_llama3_freqs);
    RUN(test_llama_f32);
    RUN(test_qwen2_tied_f32);
    RUN(test_rope_pairing_matters);
    RUN(test_llama3_scaling);
    RUN(test_hidden_output);
    RUN(test_attn_kernels);
    RUN(test_swiglu);
    RUN(test_long_sequence);
    RUN(test_prefill_equals_decode);
    RUN(test_two_sequences);
    RUN(test_truncate_rerun);
    RUN(test_kv_f16_vs_f32);
    RUN(test_quant_types);
    return TEST_EXIT();
}
