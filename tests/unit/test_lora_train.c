// LoRA training: adapter gradients against finite differences, loss going down on a fixed
// batch with the base weights frozen, and the saved adapter applied by the engine giving the
// trainer's logits.
#include "model_fixture.h"

#include "anneal/train.h"

#define NB 2
#define NS 16

typedef struct rig {
    char base[128];
    anneal_model *m;
    anneal_train_model *tm;
    anneal_train_ctx *c;
    anneal_lora_train *lt;
    int32_t tok[NB * NS], tgt[NB * NS];
} rig;

static void rig_new(rig *r) {
    memset(r, 0, sizeof *r);
    fx_spec s = fx_default();
    fx_write(&s, fx_path(r->base, sizeof r->base, "lorat_base", 0));
    anneal_err err = {0};
    CHECK_EQ(anneal_model_load(r->base, &r->m, &err), ANNEAL_OK);
    CHECK_EQ(anneal_train_model_from(r->m, &r->tm, &err), ANNEAL_OK);
    uint32_t mask = 0;
    CHECK_EQ(anneal_lora_targets_parse("q,v,down", &mask, &err), ANNEAL_OK);
    CHECK_EQ(mask, (uint32_t)(ANNEAL_LORA_Q | ANNEAL_LORA_V | ANNEAL_LORA_DOWN));
    anneal_lora_params p = {.rank = 4, .alpha = 8, .targets = mask, .seed = 5};
    CHECK_EQ(anneal_lora_train_new(r->tm, &p, &r->lt, &err), ANNEAL_OK);
    CHECK_EQ(anneal_train_ctx_new(r->tm, NB, NS, 2, &r->c, &err), ANNEAL_OK);
    uint64_t rng = 17;
    for (int i = 0; i < NB * NS; i++)
        r->tok[i] = (int32_t)(fx_next(&rng) % 2000);
    for (int i = 0; i < NB * NS; i++)
        r->tgt[i] = i % NS == NS - 1 ? -1 : r->tok[i + 1];
}

static void rig_free(rig *r) {
    anneal_train_ctx_free(r->c);
    anneal_lora_train_free(r->lt);
    anneal_train_model_free(r->tm);
    anneal_model_free(r->m);
    unlink(r->base);
}

static double loss_at(rig *r, bool backward) {
    anneal_err err = {0};
    double loss = 0;
    anneal_lora_train_compose(r->lt);
    if (backward) {
        anneal_train_zero_grads(r->c);
        anneal_lora_train_zero_grads(r->lt);
    }
    CHECK_EQ(anneal_train_step(r->c, r->tok, r->tgt, backward, 1.0f, &loss, &err), ANNEAL_OK);
    if (backward) anneal_lora_train_grads(r->lt);
    return loss;
}

static void test_targets_parse(void) {
    anneal_err err = {0};
    uint32_t mask;
    CHECK_EQ(anneal_lora_targets_parse("q,k,v,o,gate,up,down", &mask, &err), ANNEAL_OK);
    CHECK_EQ(mask, 127u);
    CHECK_EQ(anneal_lora_targets_parse("q,lm_head", &mask, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(anneal_err_msg(&err), "'lm_head'");
    CHECK_EQ(anneal_lora_targets_parse("q,", &mask, &err), ANNEAL_ERR_INVALID_ARG);
}

static void test_train_and_apply(void) {
    rig r;
    rig_new(&r);
    // 2 layers x (q: 4*64 + 64*4, v: 4*64 + 32*4, down: 4*128 + 64*4)
    CHECK_EQ(anneal_lora_train_n_params(r.lt), (size_t)2 * (512 + 384 + 768));
    // B = 0: the model starts as the base.
    const anneal_train_param *emb = anneal_train_model_find(r.tm, "token_embd.weight");
    CHECK(emb && !emb->trainable);
    CHECK(anneal_train_model_find(r.tm, "blk.0.attn_q.weight")->trainable);
    CHECK(!anneal_train_model_find(r.tm, "blk.0.attn_k.weight")->trainable);

    anneal_adamw_params ap = anneal_adamw_default();
    ap.weight_decay = 0;
    double first = 0, last = 0;
    for (int step = 0; step < 12; step++) {
        last = loss_at(&r, true);
        if (step == 0) first = last;
        anneal_lora_train_adamw(r.lt, &ap, 1e-2f);
    }
    fprintf(stderr, "loss %.4f -> %.4f\n", first, last);
    CHECK(last < first - 0.5);
    // Base weights outside the targets did not move: attn_k equals the engine's file.
    const anneal_gguf_tensor *wk =
        anneal_gguf_find_tensor(anneal_model_gguf(r.m), "blk.0.attn_k.weight");
    CHECK(memcmp(wk->data, r.tm->w.layers[0].wk, wk->nbytes) == 0);

    // Finite differences on the largest gradients of an A and a B entry.
    loss_at(&r, true);
    float *p = anneal_lora_train_params(r.lt);
    const float *g = anneal_lora_train_grad(r.lt);
    size_t ia = 0, ib = 256; // blk.0.attn_q: A is [0, 256), B is [256, 512)
    for (size_t i = 0; i < 256; i++) {
        if (fabsf(g[i]) > fabsf(g[ia])) ia = i;
        if (fabsf(g[256 + i]) > fabsf(g[ib])) ib = 256 + i;
    }
    size_t idx[2] = {ia, ib};
    for (int k = 0; k < 2; k++) {
        float keep = p[idx[k]], eps = 1e-2f;
        double gk = g[idx[k]];
        p[idx[k]] = keep + eps;
        double lp = loss_at(&r, false);
        p[idx[k]] = keep - eps;
        double lm = loss_at(&r, false);
        p[idx[k]] = keep;
        double num = (lp - lm) / (2.0 * eps);
        fprintf(stderr, "grad[%zu] %.6g numeric %.6g\n", idx[k], gk, num);
        CHECK(fabs(gk) > 1e-4);
        CHECK_NEAR(num, gk, 0.03 * fabs(gk) + 1e-4);
    }

    // Save; the engine with the adapter gives the trainer's logits.
    char ad[128];
    anneal_err err = {0};
    CHECK_EQ(anneal_lora_train_save(r.lt, fx_path(ad, sizeof ad, "lorat_ad", 0), NULL, &err),
             ANNEAL_OK);
    loss_at(&r, false);
    const float *tl = anneal_train_logits(r.c);
    anneal_model *em = NULL;
    CHECK_EQ(anneal_model_load(r.base, &em, &err), ANNEAL_OK);
    CHECK_EQ(anneal_model_apply_lora(em, ad, 1.0f, &err), ANNEAL_OK);
    anneal_kv_params kp = anneal_kv_params_default(NS, 1);
    kp.type = ANNEAL_TYPE_F32; // an F16 cache would round K and V
    anneal_kv *kv = NULL;
    anneal_ctx *ec = NULL;
    anneal_ctx_params cp = anneal_ctx_params_default();
    cp.n_threads = 2;
    CHECK_EQ(anneal_kv_new(em, &kp, &kv, &err), ANNEAL_OK);
    CHECK_EQ(anneal_ctx_new(em, &cp, &ec, &err), ANNEAL_OK);
    int32_t seq[NS] = {0}, pos[NS];
    bool outp[NS];
    for (int i = 0; i < NS; i++)
        pos[i] = i, outp[i] = true;
    anneal_batch b = {.n_tokens = NS, .tokens = r.tok, .seq = seq, .pos = pos, .output = outp};
    float *el = malloc((size_t)NS * FX_VOCAB * sizeof *el);
    int32_t n_out = 0;
    CHECK_EQ(anneal_forward(ec, kv, &b, el, NS, &n_out, &err), ANNEAL_OK);
    CHECK_EQ(n_out, NS);
    double worst = 0;
    for (size_t i = 0; i < (size_t)NS * FX_VOCAB; i++)
        worst = fmax(worst, fabs((double)el[i] - tl[i]));
    fprintf(stderr, "engine vs trainer logits: max |diff| %.3g\n", worst);
    CHECK(worst < 1e-4);
    free(el);
    anneal_ctx_free(ec);
    anneal_kv_free(kv);
    anneal_model_free(em);
    unlink(ad);
    rig_free(&r);
}

int main(void) {
    RUN(test_targets_parse);
    RUN(test_train_and_apply);
    return TEST_EXIT();
}
