// Every backward op of the trainer against central finite differences (RMSNorm, RoPE in
// both pairings, SwiGLU, cross-entropy, causal GQA attention, the matrix products, and the
// whole model end to end), plus AdamW, clipping, the schedule, frozen tensors and
// determinism.
#include "test.h"
#include "train/train_internal.h"

#include <math.h>
#include <unistd.h>

static uint64_t rng = 0x1234567;

static float frand(void) { // uniform in [-1, 1)
    return (float)((double)(test_rand(&rng) >> 11) * 0x1.0p-52 - 1.0);
}
static void fill(float *x, size_t n, float s) {
    for (size_t i = 0; i < n; i++)
        x[i] = frand() * s;
}
static double dotd(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

// Compares an analytic gradient with central differences of loss() over elements of x[n]
// (every one, or about `most` spread evenly): |fd - an| <= tol * max|an|.
typedef double (*loss_fn)(void *ctx);
static double check_grad_n(const char *what, float *x, size_t n, const float *an, loss_fn f,
                           void *ctx, float h, double tol, size_t most) {
    double amax = 0, worst = 0;
    for (size_t i = 0; i < n; i++)
        amax = fabs(an[i]) > amax ? fabs(an[i]) : amax;
    size_t step = most && n > most ? n / most : 1;
    for (size_t i = 0; i < n; i += step) {
        float x0 = x[i];
        x[i] = x0 + h;
        double lp = f(ctx);
        x[i] = x0 - h;
        double lm = f(ctx);
        x[i] = x0;
        double fd = (lp - lm) / (2.0 * h);
        double e = fabs(fd - an[i]) / (amax > 1e-12 ? amax : 1.0);
        if (e > worst) worst = e;
    }
    if (!(worst <= tol)) {
        fprintf(stderr, "  %s: worst relative error %.3g > %.3g (max |grad| %.3g)\n", what, worst,
                tol, amax);
        test_failures++;
    }
    return worst;
}
static double check_grad(const char *what, float *x, size_t n, const float *an, loss_fn f,
                         void *ctx, float h, double tol) {
    return check_grad_n(what, x, n, an, f, ctx, h, tol, 0);
}

// ---- RMSNorm -------------------------------------------------------------------------------
#define NR 3
#define NN 8
typedef struct {
    float x[NR * NN], w[NN], R[NR * NN];
} norm_case;
static double norm_loss(void *p) {
    norm_case *c = p;
    float y[NR * NN], r[NR];
    tr_rmsnorm_fwd(y, r, c->x, c->w, NR, NN, 1e-5f);
    return dotd(y, c->R, NR * NN);
}
static void test_rmsnorm_grad(void) {
    norm_case c;
    fill(c.x, NR * NN, 1.0f);
    fill(c.w, NN, 1.0f);
    fill(c.R, NR * NN, 1.0f);
    float y[NR * NN], r[NR], dx[NR * NN] = {0}, dw[NN] = {0};
    tr_rmsnorm_fwd(y, r, c.x, c.w, NR, NN, 1e-5f);
    tr_rmsnorm_bwd(dx, dw, c.R, c.x, c.w, r, NR, NN);
    check_grad("rmsnorm dx", c.x, NR * NN, dx, norm_loss, &c, 1e-2f, 2e-3);
    check_grad("rmsnorm dw", c.w, NN, dw, norm_loss, &c, 1e-2f, 2e-3);
    // dx accumulates: a second call doubles it.
    float dx2[NR * NN];
    memcpy(dx2, dx, sizeof dx);
    tr_rmsnorm_bwd(dx2, NULL, c.R, c.x, c.w, r, NR, NN);
    CHECK_NEAR(dx2[5], 2 * dx[5], 1e-6);
}

// ---- RoPE ------------------------------------------------------------------------------------
#define RT 4
#define RH 2
#define RD 6
typedef struct {
    float x[RT * RH * RD], R[RT * RH * RD], cs[RT * RD];
    anneal_rope_type type;
} rope_case;
static double rope_loss(void *p) {
    rope_case *c = p;
    float y[RT * RH * RD];
    memcpy(y, c->x, sizeof y);
    tr_rope(y, 0, RT, RH * RD, RH, RD, c->cs, RT, RD, c->type, false);
    return dotd(y, c->R, RT * RH * RD);
}
static void test_rope_grad(void) {
    for (int type = 0; type < 2; type++) {
        rope_case c;
        c.type = (anneal_rope_type)type;
        fill(c.x, RT * RH * RD, 1.0f);
        fill(c.R, RT * RH * RD, 1.0f);
        double inv[RD / 2];
        for (int i = 0; i < RD / 2; i++)
            inv[i] = pow(10000.0, -2.0 * i / RD);
        for (int t = 0; t < RT; t++)
            ops_rope_cache(c.cs + t * RD, inv, RD, t);
        float d[RT * RH * RD];
        memcpy(d, c.R, sizeof d);
        tr_rope(d, 0, RT, RH * RD, RH, RD, c.cs, RT, RD, c.type, true);
        check_grad(type ? "rope neox" : "rope norm", c.x, RT * RH * RD, d, rope_loss, &c, 1e-2f,
                   1e-3);
        // Inverse undoes forward.
        float y[RT * RH * RD];
        memcpy(y, c.x, sizeof y);
        tr_rope(y, 0, RT, RH * RD, RH, RD, c.cs, RT, RD, c.type, false);
        tr_rope(y, 0, RT, RH * RD, RH, RD, c.cs, RT, RD, c.type, true);
        for (int i = 0; i < RT * RH * RD; i++)
            CHECK_NEAR(y[i], c.x[i], 1e-6);
    }
}

// ---- SwiGLU ------------------------------------------------------------------------------
#define SN 300 // more than one chunk of the element-wise scratch
typedef struct {
    float g[SN], u[SN], R[SN];
} swiglu_case;
static double swiglu_loss(void *p) {
    swiglu_case *c = p;
    float h[SN];
    tr_swiglu_fwd(h, c->g, c->u, SN);
    return dotd(h, c->R, SN);
}
static void test_swiglu_grad(void) {
    swiglu_case c;
    fill(c.g, SN, 4.0f);
    fill(c.u, SN, 1.0f);
    fill(c.R, SN, 1.0f);
    c.g[0] = -80.0f; // exp(-g) far out of range must not give NaN
    c.g[1] = 80.0f;
    float dg[SN], du[SN], h[SN];
    tr_swiglu_bwd(dg, du, c.R, c.g, c.u, SN);
    check_grad("swiglu dg", c.g, SN, dg, swiglu_loss, &c, 1e-2f, 2e-3);
    check_grad("swiglu du", c.u, SN, du, swiglu_loss, &c, 1e-2f, 2e-3);
    tr_swiglu_fwd(h, c.g, c.u, SN);
    CHECK_NEAR(h[0], 0.0, 1e-30);
    CHECK_NEAR(h[1], 80.0 * c.u[1], 1e-4);
    for (int i = 2; i < SN; i++) // silu against libm
        CHECK_NEAR(h[i], c.g[i] / (1.0 + exp(-c.g[i])) * c.u[i], 1e-5);
}

// ---- cross-entropy --------------------------------------------------------------------------
#define XR 4
#define XV 37
typedef struct {
    float l[XR * XV];
    int32_t tg[XR];
} xent_case;
static double xent_loss(void *p) {
    xent_case *c = p;
    return tr_xent(c->l, c->tg, XR, XV, 1.0f, NULL) * 0.5;
}
static void test_xent_grad(void) {
    xent_case c;
    fill(c.l, XR * XV, 3.0f);
    int32_t tg[XR] = {3, -1, 36, 0};
    memcpy(c.tg, tg, sizeof tg);
    float d[XR * XV];
    double s = tr_xent(c.l, c.tg, XR, XV, 0.5f, d);
    CHECK_NEAR(s, tr_xent(c.l, c.tg, XR, XV, 1.0f, NULL), 1e-9);
    check_grad("xent", c.l, XR * XV, d, xent_loss, &c, 1e-2f, 2e-3);
    for (int j = 0; j < XV; j++) // ignored target: zero gradient row
        CHECK(d[XV + j] == 0.0f);
    // By hand: uniform logits give log(V).
    float u[XV] = {0};
    int32_t t0 = 5;
    CHECK_NEAR(tr_xent(u, &t0, 1, XV, 1.0f, NULL), log((double)XV), 1e-6);
}

// ---- attention ------------------------------------------------------------------------------
#define AT 5
#define AD 4
#define AG 2
typedef struct {
    float q[AT * AG * AD], k[AT * AD], v[AT * AD], R[AT * AG * AD];
} attn_case;
static double attn_loss(void *p) {
    attn_case *c = p;
    float P[AG * AT * AT], o[AT * AG * AD];
    tr_attn_fwd(c->q, c->k, c->v, P, o, AT, AD, AG, AG * AD, AD, AG * AD, 0.5f);
    return dotd(o, c->R, AT * AG * AD);
}
static void attention_case(int block) {
    tr_attn_block = block;
    attn_case c;
    fill(c.q, AT * AG * AD, 1.5f);
    fill(c.k, AT * AD, 1.5f);
    fill(c.v, AT * AD, 1.0f);
    fill(c.R, AT * AG * AD, 1.0f);
    float P[AG * AT * AT], o[AT * AG * AD], dq[AT * AG * AD], dk[AT * AD], dv[AT * AD], dS[AT * AT];
    tr_attn_fwd(c.q, c.k, c.v, P, o, AT, AD, AG, AG * AD, AD, AG * AD, 0.5f);
    // Row 0 attends to itself only: its output is v[0] for both heads.
    for (int i = 0; i < AD; i++) {
        CHECK_NEAR(o[i], c.v[i], 1e-6);
        CHECK_NEAR(o[AD + i], c.v[i], 1e-6);
    }
    CHECK(P[1] == 0.0f && P[AT * AT - 2] > 0.0f); // masked above the diagonal
    tr_attn_bwd(dq, dk, dv, c.R, c.q, c.k, c.v, P, dS, AT, AD, AG, AG * AD, AD, AG * AD, 0.5f);
    check_grad("attention dq", c.q, AT * AG * AD, dq, attn_loss, &c, 1e-2f, 2e-3);
    check_grad("attention dk", c.k, AT * AD, dk, attn_loss, &c, 1e-2f, 2e-3);
    check_grad("attention dv", c.v, AT * AD, dv, attn_loss, &c, 1e-2f, 2e-3);
    tr_attn_block = 64;
}

// One block (T = 5 < 64), and blocks of 2 rows (the last one short).
static void test_attention_grad(void) {
    attention_case(64);
    attention_case(2);
}

// ---- matrix products ------------------------------------------------------------------------
#define MR 5
#define MI 7
#define MO 33
typedef struct {
    float x[MR * MI], w[MO * MI], R[MR * MO];
} mm_case;
static double mm_loss(void *p) {
    mm_case *c = p;
    float y[MR * MO];
    tr_mm_fwd(y, MO, c->x, MI, c->w, 2, MI, MO); // rows 0..1, then 2..4
    tr_mm_fwd(y + 2 * MO, MO, c->x + 2 * MI, MI, c->w, MR - 2, MI, MO);
    return dotd(y, c->R, MR * MO);
}
static void test_matmul_grad(void) {
    tr_blas_init();
    mm_case c;
    fill(c.x, MR * MI, 1.0f);
    fill(c.w, MO * MI, 1.0f);
    fill(c.R, MR * MO, 1.0f);
    float dx[MR * MI], dw[MO * MI] = {0};
    // dx in two column blocks (W's rows MI apart), dW in two row blocks.
    tr_mm_bwd_x(dx, MI, c.R, MO, c.w, MI, MR, 3, MO, 0.0f);
    tr_mm_bwd_x(dx + 3, MI, c.R, MO, c.w + 3, MI, MR, MI - 3, MO, 0.0f);
    tr_mm_bwd_w(dw, MI, c.R, MO, c.x, MI, MR, MI, 16);
    tr_mm_bwd_w(dw + 16 * MI, MI, c.R + 16, MO, c.x, MI, MR, MI, MO - 16);
    // By columns: dW[:, 0..3) and dW[:, 3..MI) agree with the rows split.
    float dwc[MO * MI] = {0};
    tr_mm_bwd_w(dwc, MI, c.R, MO, c.x, MI, MR, 3, MO);
    tr_mm_bwd_w(dwc + 3, MI, c.R, MO, c.x + 3, MI, MR, MI - 3, MO);
    for (int i = 0; i < MO * MI; i++)
        CHECK_NEAR(dwc[i], dw[i], 1e-5);
    check_grad("matmul dx", c.x, MR * MI, dx, mm_loss, &c, 1e-2f, 1e-3);
    check_grad("matmul dw", c.w, MO * MI, dw, mm_loss, &c, 1e-2f, 1e-3);
    // y by hand for one element.
    float y[MR * MO];
    tr_mm_fwd(y, MO, c.x, MI, c.w, MR, MI, MO);
    double e = 0;
    for (int i = 0; i < MI; i++)
        e += (double)c.x[2 * MI + i] * c.w[9 * MI + i];
    CHECK_NEAR(y[2 * MO + 9], e, 1e-5);
}

// ---- the whole model ----------------------------------------------------------------------
static anneal_model_config tiny_cfg(bool tied) {
    anneal_model_config cfg = {0};
    strcpy(cfg.arch, "llama");
    cfg.n_vocab = 11;
    cfg.n_embd = 8;
    cfg.n_layer = 2;
    cfg.n_head = 2;
    cfg.n_head_kv = 1;
    cfg.head_dim = 4;
    cfg.n_ff = 12;
    cfg.n_ctx_train = 16;
    cfg.norm_eps = 1e-5f;
    cfg.rope_freq_base = 10000.0f;
    cfg.n_rot = 4;
    cfg.tied_embeddings = tied;
    return cfg;
}

typedef struct {
    anneal_train_ctx *c;
    int32_t tok[8], tgt[8];
} model_case;
static double model_loss(void *p) {
    model_case *m = p;
    double loss;
    anneal_train_step(m->c, m->tok, m->tgt, false, 1.0f, &loss, NULL);
    return loss;
}

static void model_grad_case(bool tied, int threads) {
    anneal_model_config cfg = tiny_cfg(tied);
    anneal_train_model *tm;
    anneal_err err = {0};
    CHECK_EQ(anneal_train_model_new(&cfg, &tm, &err), ANNEAL_OK);
    fill(tm->params, tm->n_params, 0.5f);
    for (size_t i = 0; i < tm->n_list; i++) // norms near 1
        if (tm->list[i].n_dims == 1)
            for (size_t j = 0; j < tm->list[i].n; j++)
                tm->params[tm->list[i].offset + j] += 1.0f;
    model_case m;
    CHECK_EQ(anneal_train_ctx_new(tm, 2, 4, threads, &m.c, &err), ANNEAL_OK);
    int32_t tok[8] = {1, 5, 5, 10, 0, 3, 7, 5}, tgt[8] = {5, 5, 10, 2, 3, 7, -1, 9};
    memcpy(m.tok, tok, sizeof tok);
    memcpy(m.tgt, tgt, sizeof tgt);
    anneal_train_zero_grads(m.c);
    double loss;
    CHECK_EQ(anneal_train_step(m.c, m.tok, m.tgt, true, 1.0f, &loss, &err), ANNEAL_OK);
    CHECK(loss > 0 && isfinite(loss));
    float *an = malloc(tm->n_params * sizeof(float));
    memcpy(an, tm->grads, tm->n_params * sizeof(float));
    for (size_t i = 0; i < tm->n_list; i++) {
        const anneal_train_param *p = &tm->list[i];
        check_grad_n(p->name, tm->params + p->offset, p->n, an + p->offset, model_loss, &m, 3e-3f,
                     1e-2, 16);
    }
    free(an);
    anneal_train_ctx_free(m.c);
    anneal_train_model_free(tm);
}

static void test_model_grad(void) {
    model_grad_case(false, 1);
    tr_attn_block = 3;
    model_grad_case(true, 2);
    tr_attn_block = 64;
}

// Frozen tensors get no gradient; the others are unchanged by freezing.
static void test_frozen(void) {
    anneal_model_config cfg = tiny_cfg(false);
    anneal_train_model *tm;
    anneal_err err = {0};
    CHECK_EQ(anneal_train_model_new(&cfg, &tm, &err), ANNEAL_OK);
    fill(tm->params, tm->n_params, 0.5f);
    anneal_train_ctx *c;
    CHECK_EQ(anneal_train_ctx_new(tm, 2, 4, 2, &c, &err), ANNEAL_OK);
    int32_t tok[8] = {1, 2, 3, 4, 5, 6, 7, 8}, tgt[8] = {2, 3, 4, 5, 6, 7, 8, 9};
    double l1, l2;
    anneal_train_zero_grads(c);
    anneal_train_step(c, tok, tgt, true, 1.0f, &l1, &err);
    float *full = malloc(tm->n_params * sizeof(float));
    memcpy(full, tm->grads, tm->n_params * sizeof(float));
    const char *frozen[] = {"token_embd.weight", "blk.1.attn_q.weight", "blk.0.ffn_norm.weight",
                            "output.weight"};
    for (int i = 0; i < 4; i++)
        anneal_train_model_find(tm, frozen[i])->trainable = false;
    CHECK(anneal_train_model_find(tm, "blk.9.attn_q.weight") == NULL);
    anneal_train_zero_grads(c);
    anneal_train_step(c, tok, tgt, true, 1.0f, &l2, &err);
    CHECK(l1 == l2);
    for (size_t i = 0; i < tm->n_list; i++) {
        const anneal_train_param *p = &tm->list[i];
        bool same = memcmp(tm->grads + p->offset, full + p->offset, p->n * sizeof(float)) == 0;
        bool zero = true;
        for (size_t j = 0; j < p->n; j++)
            zero = zero && tm->grads[p->offset + j] == 0.0f;
        if (p->trainable)
            CHECK(same);
        else
            CHECK(zero);
    }
    // Out-of-range ids are errors naming the position.
    tok[3] = 11;
    CHECK_EQ(anneal_train_step(c, tok, tgt, true, 1.0f, &l2, &err), ANNEAL_ERR_RANGE);
    CHECK_CONTAINS(err.msg, "token 3: id 11");
    free(full);
    anneal_train_ctx_free(c);
    anneal_train_model_free(tm);
}

// Same seed and thread count: the same bits, run after run.
static void test_deterministic(void) {
    anneal_model_config cfg = tiny_cfg(false);
    cfg.n_vocab = 300;
    cfg.n_embd = 64;
    cfg.n_head = 4;
    cfg.n_head_kv = 2;
    cfg.head_dim = 16;
    cfg.n_rot = 16;
    cfg.n_ff = 96;
    anneal_train_model *tm;
    anneal_err err = {0};
    CHECK_EQ(anneal_train_model_new(&cfg, &tm, &err), ANNEAL_OK);
    fill(tm->params, tm->n_params, 0.1f);
    int32_t tok[4 * 32], tgt[4 * 32];
    for (int i = 0; i < 4 * 32; i++) {
        tok[i] = (int32_t)(test_rand(&rng) % 300);
        tgt[i] = (int32_t)(test_rand(&rng) % 300);
    }
    float *g[2];
    for (int run = 0; run < 2; run++) {
        anneal_train_ctx *c;
        CHECK_EQ(anneal_train_ctx_new(tm, 4, 32, 2, &c, &err), ANNEAL_OK);
        anneal_train_zero_grads(c);
        double loss;
        anneal_train_step(c, tok, tgt, true, 1.0f, &loss, &err);
        g[run] = malloc(tm->n_params * sizeof(float));
        memcpy(g[run], tm->grads, tm->n_params * sizeof(float));
        anneal_train_ctx_free(c);
    }
    CHECK(memcmp(g[0], g[1], tm->n_params * sizeof(float)) == 0);
    free(g[0]);
    free(g[1]);
    anneal_train_model_free(tm);
}

// AdamW by hand for one element over two steps, decay only on matrices, clipping, schedule.
static void test_adamw_clip_schedule(void) {
    anneal_model_config cfg = tiny_cfg(false);
    anneal_train_model *tm;
    anneal_err err = {0};
    CHECK_EQ(anneal_train_model_new(&cfg, &tm, &err), ANNEAL_OK);
    anneal_train_ctx *c;
    CHECK_EQ(anneal_train_ctx_new(tm, 1, 2, 2, &c, &err), ANNEAL_OK);
    anneal_adamw_params ap = {.beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .weight_decay = 0.1f};
    anneal_adamw *o;
    CHECK_EQ(anneal_adamw_new(tm, &ap, &o, &err), ANNEAL_OK);
    float *w = tm->w.layers[0].wq, *n = tm->w.layers[0].attn_norm;
    float *gw = tm->g.layers[0].wq, *gn = tm->g.layers[0].attn_norm;
    w[0] = 1.0f;
    n[0] = 1.0f;
    double pw = 1.0, pn = 1.0, m = 0, v = 0;
    float grads[2] = {0.5f, -2.0f};
    for (int s = 1; s <= 2; s++) {
        anneal_train_zero_grads(c);
        gw[0] = gn[0] = grads[s - 1];
        anneal_adamw_update(o, c, 0.01f);
        double gg = grads[s - 1];
        m = 0.9 * m + 0.1 * gg;
        v = 0.99 * v + 0.01 * gg * gg;
        double upd = 0.01 / (1 - pow(0.9, s)) * m / (sqrt(v) / sqrt(1 - pow(0.99, s)) + 1e-8);
        pw = pw * (1 - 0.01 * 0.1) - upd;
        pn = pn - upd;
        CHECK_NEAR(w[0], pw, 1e-6);
        CHECK_NEAR(n[0], pn, 1e-6);
    }
    CHECK_EQ(o->step, 2);
    CHECK(tm->params[tm->list[5].offset + 3] == 0.0f); // zero gradient, zero weight: unchanged

    anneal_train_zero_grads(c);
    gw[0] = 3.0f;
    gn[0] = 4.0f;
    CHECK_NEAR(anneal_train_clip(c, 1.0), 5.0, 1e-9);
    CHECK_NEAR(gw[0], 3.0 / (5.0 + 1e-6), 1e-6);
    CHECK_NEAR(anneal_train_grad_norm(c), 1.0, 1e-5);
    CHECK_NEAR(anneal_train_clip(c, 10.0), 1.0, 1e-5); // under the bound: unchanged
    CHECK_NEAR(gn[0], 4.0 / 5.0, 1e-6);

    anneal_lr_schedule sc = {.lr = 1e-3, .min_lr = 1e-4, .warmup = 10, .total = 110};
    CHECK_NEAR(anneal_lr_at(&sc, 0), 1e-4, 1e-12);
    CHECK_NEAR(anneal_lr_at(&sc, 9), 1e-3, 1e-12);
    CHECK_NEAR(anneal_lr_at(&sc, 10), 1e-3, 1e-12);
    CHECK_NEAR(anneal_lr_at(&sc, 60), 5.5e-4, 1e-12);
    CHECK_NEAR(anneal_lr_at(&sc, 110), 1e-4, 1e-12);
    CHECK_NEAR(anneal_lr_at(&sc, 500), 1e-4, 1e-12);
    anneal_adamw_free(o);
    anneal_train_ctx_free(c);
    anneal_train_model_free(tm);
}

// The loop through the library: hooks are called, a custom loss replaces cross-entropy,
// checkpoints are written and found, and a resumed run ends where a straight one does.
typedef struct hook_counts {
    int after_backward, between, loss_rows;
} hook_counts;
static hook_counts counts;
static void count_backward(void *ctx, anneal_train_model *tm) {
    (void)tm;
    ((hook_counts *)ctx)->after_backward++;
}
static void count_between(void *ctx, int64_t step) {
    (void)step;
    ((hook_counts *)ctx)->between++;
}
static double half_xent(void *ctx, int64_t row0, int64_t n_rows, int32_t n_vocab,
                        const float *logits, const int32_t *targets, float scale, float *dlogits) {
    (void)row0;
    __atomic_add_fetch(&((hook_counts *)ctx)->loss_rows, (int)n_rows, __ATOMIC_RELAXED);
    return 0.5 * tr_xent(logits, targets, n_rows, n_vocab, 0.5f * scale, dlogits);
}

static void test_trainer_loop(void) {
    anneal_model_config cfg = tiny_cfg(false);
    anneal_train_model *tm;
    anneal_err err = {0};
    CHECK_EQ(anneal_train_model_new(&cfg, &tm, &err), ANNEAL_OK);
    fill(tm->params, tm->n_params, 0.3f);
    char dir[512], model[600], out[600], out2[600];
    snprintf(dir, sizeof dir, "%s", test_tmpdir());
    snprintf(model, sizeof model, "%s/start.gguf", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(out2, sizeof out2, "%s/run2", dir);
    CHECK_EQ(anneal_train_model_save(tm, model, NULL, NULL, NULL, NULL, &err), ANNEAL_OK);
    int32_t data[400];
    for (int i = 0; i < 400; i++)
        data[i] = (i * 7 + 3) % 11;
    anneal_trainer_opts o = {.out_dir = out,
                             .init_from = model,
                             .train_tokens = data,
                             .n_train_tokens = 360,
                             .val_tokens = data + 360,
                             .n_val_tokens = 40,
                             .n_seq = 4,
                             .n_batch = 2,
                             .accum = 2,
                             .steps = 6,
                             .sched = {.lr = 1e-2, .min_lr = 1e-3, .warmup = 2, .total = 6},
                             .adamw = anneal_adamw_default(),
                             .clip = 1.0,
                             .seed = 7,
                             .threads = 2,
                             .val_every = 3,
                             .val_batches = 2,
                             .ckpt_every = 2,
                             .keep = 2,
                             .after_backward = count_backward,
                             .between_ckpt_files = count_between,
                             .hook_ctx = &counts,
                             .loss = half_xent,
                             .loss_ctx = &counts,
                             .quiet = true};
    anneal_trainer_result r;
    CHECK_EQ(anneal_trainer_run(&o, &r, &err), ANNEAL_OK);
    CHECK_EQ(r.step, 6);
    CHECK_EQ(r.steps_run, 6);
    CHECK_EQ(counts.after_backward, 6);
    CHECK_EQ(counts.between, 3); // checkpoints at 2, 4, 6
    // 6 steps x 2 micro-batches x 8 rows, and validations at steps 3 and 6 of 2 batches each
    CHECK_EQ(counts.loss_rows, 6 * 2 * 8 + 2 * 2 * 8);
    CHECK(r.last_loss > 0 && r.last_loss < 2.0); // half of a cross-entropy below log(11)
    CHECK_CONTAINS(r.last_ckpt, "ckpt-00000006/model.gguf");
    int64_t step;
    char found[1024];
    CHECK_EQ(anneal_ckpt_find(out, &step, found, sizeof found, &err), ANNEAL_OK);
    CHECK_EQ(step, 6);
    char old[700];
    snprintf(old, sizeof old, "%s/ckpt-00000002", out);
    CHECK(access(old, F_OK) != 0); // keep 2: ckpt 2 removed

    // Steps 1..4 in another directory, then resume to 6: the same weights as straight through.
    anneal_trainer_opts o2 = o;
    o2.out_dir = out2;
    o2.steps = 4;
    o2.loss = NULL;
    o2.sched.total = 6;
    anneal_trainer_opts o3 = o;
    o3.loss = NULL;
    o3.out_dir = out;
    char out3[600];
    snprintf(out3, sizeof out3, "%s/run3", dir);
    o3.out_dir = out3;
    CHECK_EQ(anneal_trainer_run(&o3, &r, &err), ANNEAL_OK); // straight, cross-entropy
    CHECK_EQ(anneal_trainer_run(&o2, &r, &err), ANNEAL_OK);
    o2.steps = 6;
    o2.resume = true;
    CHECK_EQ(anneal_trainer_run(&o2, &r, &err), ANNEAL_OK);
    CHECK_EQ(r.steps_run, 2);
    anneal_model *a, *b;
    char pa[700], pb[700];
    snprintf(pa, sizeof pa, "%s/ckpt-00000006/model.gguf", out3);
    snprintf(pb, sizeof pb, "%s/ckpt-00000006/model.gguf", out2);
    CHECK_EQ(anneal_model_load(pa, &a, &err), ANNEAL_OK);
    CHECK_EQ(anneal_model_load(pb, &b, &err), ANNEAL_OK);
    const anneal_gguf_tensor *ta =
        anneal_gguf_find_tensor(anneal_model_gguf(a), "blk.1.ffn_up.weight");
    const anneal_gguf_tensor *tb =
        anneal_gguf_find_tensor(anneal_model_gguf(b), "blk.1.ffn_up.weight");
    CHECK(ta && tb && ta->nbytes == tb->nbytes && memcmp(ta->data, tb->data, ta->nbytes) == 0);
    anneal_model_free(a);
    anneal_model_free(b);

    // Nothing to resume in an empty directory; bad options are errors, not crashes.
    anneal_err e2 = {0};
    anneal_trainer_opts o4 = o;
    char empty[600];
    snprintf(empty, sizeof empty, "%s/empty", dir);
    o4.out_dir = empty;
    o4.resume = true;
    CHECK_EQ(anneal_trainer_run(&o4, &r, &e2), ANNEAL_ERR_NOT_FOUND);
    CHECK_CONTAINS(e2.msg, "no valid checkpoint");
    anneal_err e3 = {0};
    o4.resume = false;
    o4.n_train_tokens = 5;
    CHECK_EQ(anneal_trainer_run(&o4, &r, &e3), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(e3.msg, "the training data has 5 tokens");
    anneal_train_model_free(tm);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_EQ(system(cmd), 0);
}

static void test_vexp(void) {
    float x[19], y[19];
    for (int i = 0; i < 19; i++)
        x[i] = -20.0f + 2.3f * (float)i;
    tr_vexp(y, x, 19);
    for (int i = 0; i < 19; i++)
        CHECK_NEAR(y[i] / exp(x[i]), 1.0, 1e-6);
    float big[2] = {-1000.0f, 1000.0f};
    tr_vexp(big, big, 2);
    CHECK(isfinite(big[0]) && isfinite(big[1]) && big[0] >= 0 && big[0] < 1e-37f);
}

int main(void) {
    RUN(test_vexp);
    RUN(test_rmsnorm_grad);
    RUN(test_rope_grad);
    RUN(test_swiglu_grad);
    RUN(test_xent_grad);
    RUN(test_attention_grad);
    RUN(test_matmul_grad);
    RUN(test_model_grad);
    RUN(test_frozen);
    RUN(test_deterministic);
    RUN(test_adamw_clip_schedule);
    RUN(test_trainer_loop);
    return TEST_EXIT();
}
