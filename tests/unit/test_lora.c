// LoRA adapters at load: merged weights against a naive W + s*B.A in double, forward of a
// model with an adapter against the written merged model, quantized bases, stacking, and
// the errors (not an adapter, missing or misshapen tensors, missing alpha, wrong arch).
#include "model_fixture.h"

#include "anneal/lineage.h"

// One adapter pair: base tensor name, dims and the values (after rounding to `type`).
typedef struct ad_pair {
    const char *base;
    int64_t n_in, n_out, rank;
    uint32_t type;
    float *a, *b; // [rank][n_in], [n_out][rank]
} ad_pair;

typedef struct ad_opts {
    const char *gtype, *atype, *arch; // NULL key when NULL
    bool no_alpha, drop_b;
    int64_t b_rank; // lora_b's rank when not 0 (a mismatched pair)
    float alpha;
} ad_opts;

static ad_opts ad_default(void) {
    ad_opts o = {.gtype = "adapter", .atype = "lora", .arch = "llama", .alpha = 8.0f};
    return o;
}

// Random values of n elements rounded to `type`.
static float *rounded(uint64_t *rng, uint32_t type, int64_t n, float scale, void **raw,
                      uint64_t *nb) {
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++)
        x[i] = scale * fx_uniform(rng);
    anneal_type_nbytes(type, (uint64_t)n, nb);
    *raw = malloc(*nb);
    CHECK_EQ(anneal_quantize(type, x, *raw, n), ANNEAL_OK);
    CHECK_EQ(anneal_dequantize(type, *raw, x, n), ANNEAL_OK);
    return x;
}

static void write_adapter(const char *path, ad_pair *ps, int n, const ad_opts *o, uint64_t seed) {
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    fx_bufs bufs = {0};
    uint64_t rng = seed;
    if (o->arch) anneal_gguf_writer_set_str(w, "general.architecture", o->arch);
    if (o->gtype) anneal_gguf_writer_set_str(w, "general.type", o->gtype);
    if (o->atype) anneal_gguf_writer_set_str(w, "adapter.type", o->atype);
    if (!o->no_alpha) anneal_gguf_writer_set_f32(w, "adapter.lora.alpha", o->alpha);
    char name[96];
    for (int i = 0; i < n; i++) {
        ad_pair *p = &ps[i];
        void *ra, *rb;
        uint64_t na, nb;
        p->a = rounded(&rng, p->type, p->rank * p->n_in, 0.5f, &ra, &na);
        int64_t br = o->b_rank ? o->b_rank : p->rank;
        p->b = rounded(&rng, p->type, p->n_out * br, 0.5f, &rb, &nb);
        fx_keep(&bufs, ra);
        fx_keep(&bufs, rb);
        uint64_t da[2] = {(uint64_t)p->n_in, (uint64_t)p->rank};
        uint64_t db[2] = {(uint64_t)br, (uint64_t)p->n_out};
        snprintf(name, sizeof name, "%s.lora_a", p->base);
        CHECK_EQ(anneal_gguf_writer_add_tensor(w, name, p->type, 2, da, ra, na), ANNEAL_OK);
        if (o->drop_b) continue;
        snprintf(name, sizeof name, "%s.lora_b", p->base);
        CHECK_EQ(anneal_gguf_writer_add_tensor(w, name, p->type, 2, db, rb, nb), ANNEAL_OK);
    }
    anneal_err err = {0};
    CHECK_EQ(anneal_gguf_writer_write(w, path, &err), ANNEAL_OK);
    anneal_gguf_writer_free(w);
    fx_free_bufs(&bufs);
}

static void free_pairs(ad_pair *ps, int n) {
    for (int i = 0; i < n; i++) {
        free(ps[i].a);
        free(ps[i].b);
        ps[i].a = ps[i].b = NULL;
    }
}

static float *deq_tensor(const anneal_gguf *g, const char *name, int64_t *n_out) {
    const anneal_gguf_tensor *t = anneal_gguf_find_tensor(g, name);
    CHECK(t != NULL);
    int64_t n = (int64_t)(t->dims[0] * t->dims[1]);
    float *y = malloc((size_t)n * sizeof *y);
    CHECK_EQ(anneal_dequantize(t->type, t->data, y, n), ANNEAL_OK);
    *n_out = n;
    return y;
}

// max |merged - (W + s * B.A)| over the pair's weight, the reference in double.
static double merge_error(const anneal_gguf *base, const anneal_gguf *merged, const ad_pair *p,
                          double s) {
    int64_t n, n2;
    float *w = deq_tensor(base, p->base, &n), *got = deq_tensor(merged, p->base, &n2);
    CHECK_EQ(n, n2);
    double worst = 0;
    for (int64_t j = 0; j < p->n_out; j++)
        for (int64_t i = 0; i < p->n_in; i++) {
            double d = 0;
            for (int64_t k = 0; k < p->rank; k++)
                d += (double)p->b[j * p->rank + k] * (double)p->a[k * p->n_in + i];
            double want = (double)w[j * p->n_in + i] + s * d;
            double e = fabs(want - got[j * p->n_in + i]);
            if (e > worst) worst = e;
        }
    free(w);
    free(got);
    return worst;
}

// Logits of the last of a few prompt tokens.
static void logits(const anneal_model *m, float *out) {
    anneal_err err = {0};
    anneal_kv_params kp = anneal_kv_params_default(32, 1);
    anneal_kv *kv = NULL;
    anneal_ctx *c = NULL;
    anneal_ctx_params cp = anneal_ctx_params_default();
    cp.n_threads = 2;
    CHECK_EQ(anneal_kv_new(m, &kp, &kv, &err), ANNEAL_OK);
    CHECK_EQ(anneal_ctx_new(m, &cp, &c, &err), ANNEAL_OK);
    int32_t toks[5] = {1, 450, 4996, 17354, 1701}, seq[5] = {0}, pos[5] = {0, 1, 2, 3, 4};
    anneal_batch b = {.n_tokens = 5, .tokens = toks, .seq = seq, .pos = pos};
    int32_t n_out = 0;
    CHECK_EQ(anneal_forward(c, kv, &b, out, 1, &n_out, &err), ANNEAL_OK);
    CHECK_EQ(n_out, 1);
    anneal_ctx_free(c);
    anneal_kv_free(kv);
}

static void test_merge_f32(void) {
    char bp[128], ap[128], mp[128];
    fx_spec s = fx_default();
    fx_write(&s, fx_path(bp, sizeof bp, "lora_base", 0));
    ad_pair ps[3] = {
        {.base = "blk.0.attn_q.weight",
         .n_in = 64,
         .n_out = 64,
         .rank = 4,
         .type = ANNEAL_TYPE_F32},
        {.base = "blk.1.ffn_down.weight",
         .n_in = 128,
         .n_out = 64,
         .rank = 4,
         .type = ANNEAL_TYPE_F16},
        {.base = "blk.1.attn_k.weight",
         .n_in = 64,
         .n_out = 32,
         .rank = 4,
         .type = ANNEAL_TYPE_BF16},
    };
    ad_opts o = ad_default();
    write_adapter(fx_path(ap, sizeof ap, "lora_ad", 0), ps, 3, &o, 7);
    anneal_err err = {0};
    anneal_model *m = NULL, *base = NULL, *mm = NULL;
    CHECK_EQ(anneal_model_load(bp, &m, &err), ANNEAL_OK);
    CHECK_EQ(anneal_model_load(bp, &base, &err), ANNEAL_OK);
    CHECK_EQ(anneal_model_lora_count(m), 0);
    CHECK_EQ(anneal_model_apply_lora(m, ap, 0.5f, &err), ANNEAL_OK);
    CHECK_EQ(anneal_model_lora_count(m), 1);
    // The base file's mapping is untouched: the merged model writes new bytes, the file not.
    CHECK_EQ(anneal_model_write(m, fx_path(mp, sizeof mp, "lora_merged", 0), NULL, &err),
             ANNEAL_OK);
    anneal_gguf *gb = NULL, *gm = NULL;
    CHECK_EQ(anneal_gguf_open(bp, &gb, &err), ANNEAL_OK);
    CHECK_EQ(anneal_gguf_open(mp, &gm, &err), ANNEAL_OK);
    double sc = 0.5 * 8.0 / 4.0; // scale * alpha / rank
    for (int i = 0; i < 3; i++) {
        double e = merge_error(gb, gm, &ps[i], sc);
        CHECK(e < 1e-5);
        if (e >= 1e-5) fprintf(stderr, "pair %d error %g\n", i, e);
    }
    // Without adapters the written file is the base file, byte for byte.
    char cp[128];
    CHECK_EQ(anneal_model_write(base, fx_path(cp, sizeof cp, "lora_copy", 0), NULL, &err),
             ANNEAL_OK);
    char *b0 = NULL, *b1 = NULL;
    size_t n0 = 0, n1 = 0;
    CHECK_EQ(anneal_read_file(bp, (size_t)1 << 30, &b0, &n0, &err), ANNEAL_OK);
    CHECK_EQ(anneal_read_file(cp, (size_t)1 << 30, &b1, &n1, &err), ANNEAL_OK);
    CHECK(n0 == n1 && memcmp(b0, b1, n0) == 0);
    anneal_free(b0);
    anneal_free(b1);
    unlink(cp);
    // Untargeted tensors are copied exactly.
    const anneal_gguf_tensor *t0 = anneal_gguf_find_tensor(gb, "blk.0.attn_v.weight"),
                             *t1 = anneal_gguf_find_tensor(gm, "blk.0.attn_v.weight");
    CHECK(t0 && t1 && memcmp(t0->data, t1->data, t0->nbytes) == 0);
    CHECK_EQ(anneal_gguf_n_kv(gb), anneal_gguf_n_kv(gm));

    // Forward with the adapter equals forward of the merged file, and differs from the base.
    CHECK_EQ(anneal_model_load(mp, &mm, &err), ANNEAL_OK);
    float *l1 = malloc(FX_VOCAB * sizeof *l1), *l2 = malloc(FX_VOCAB * sizeof *l2),
          *l0 = malloc(FX_VOCAB * sizeof *l0);
    logits(m, l1);
    logits(mm, l2);
    logits(base, l0);
    CHECK(memcmp(l1, l2, FX_VOCAB * sizeof *l1) == 0);
    double diff = 0;
    for (int i = 0; i < FX_VOCAB; i++)
        diff = fmax(diff, fabs((double)l1[i] - l0[i]));
    CHECK(diff > 1e-3);

    // Two applications of scale 0.5 equal one of scale 1.0 (up to float rounding).
    anneal_model *m2 = NULL;
    CHECK_EQ(anneal_model_load(bp, &m2, &err), ANNEAL_OK);
    CHECK_EQ(anneal_model_apply_lora(m2, ap, 1.0f, &err), ANNEAL_OK);
    CHECK_EQ(anneal_model_apply_lora(m, ap, 0.5f, &err), ANNEAL_OK);
    CHECK_EQ(anneal_model_lora_count(m), 2);
    logits(m, l1);
    logits(m2, l2);
    double d2 = 0;
    for (int i = 0; i < FX_VOCAB; i++)
        d2 = fmax(d2, fabs((double)l1[i] - l2[i]));
    CHECK(d2 < 1e-3);
    // Scale 0 leaves the weights as they were.
    anneal_model *m3 = NULL;
    CHECK_EQ(anneal_model_load(bp, &m3, &err), ANNEAL_OK);
    CHECK_EQ(anneal_model_apply_lora(m3, ap, 0.0f, &err), ANNEAL_OK);
    logits(m3, l1);
    CHECK(memcmp(l1, l0, FX_VOCAB * sizeof *l1) == 0);

    free(l0);
    free(l1);
    free(l2);
    anneal_gguf_close(gb);
    anneal_gguf_close(gm);
    anneal_model_free(m);
    anneal_model_free(m2);
    anneal_model_free(m3);
    anneal_model_free(mm);
    anneal_model_free(base);
    free_pairs(ps, 3);
    unlink(bp);
    unlink(ap);
    unlink(mp);
}

// Q8_0 and Q4_K bases: rows are dequantized, summed and requantized to their own type, so
// the result is within that type's rounding of the exact sum. alpha = 0 means scale alone.
static void test_merge_quantized(void) {
    uint32_t types[2] = {ANNEAL_TYPE_Q8_0, ANNEAL_TYPE_Q4_K};
    double tol[2] = {0.02, 0.2};
    for (int ti = 0; ti < 2; ti++) {
        char bp[128], ap[128], mp[128];
        fx_spec s = fx_default();
        s.n_embd = 256;
        s.n_head = 4;
        s.n_head_kv = 4;
        s.n_ff = 256;
        s.n_layer = 1;
        s.wtype = types[ti];
        fx_write(&s, fx_path(bp, sizeof bp, "lora_qbase", ti));
        ad_pair p = {.base = "blk.0.ffn_up.weight",
                     .n_in = 256,
                     .n_out = 256,
                     .rank = 2,
                     .type = ANNEAL_TYPE_F32};
        ad_opts o = ad_default();
        o.alpha = 0;
        write_adapter(fx_path(ap, sizeof ap, "lora_qad", ti), &p, 1, &o, 3);
        anneal_err err = {0};
        anneal_model *m = NULL;
        CHECK_EQ(anneal_model_load(bp, &m, &err), ANNEAL_OK);
        CHECK_EQ(anneal_model_apply_lora(m, ap, 0.25f, &err), ANNEAL_OK);
        CHECK_EQ(anneal_model_write(m, fx_path(mp, sizeof mp, "lora_qmerged", ti), NULL, &err),
                 ANNEAL_OK);
        anneal_gguf *gb = NULL, *gm = NULL;
        CHECK_EQ(anneal_gguf_open(bp, &gb, &err), ANNEAL_OK);
        CHECK_EQ(anneal_gguf_open(mp, &gm, &err), ANNEAL_OK);
        CHECK_EQ(anneal_gguf_find_tensor(gm, p.base)->type, types[ti]);
        double e = merge_error(gb, gm, &p, 0.25);
        CHECK(e < tol[ti]);
        CHECK(e > 0); // requantized: not exact
        anneal_gguf_close(gb);
        anneal_gguf_close(gm);
        anneal_model_free(m);
        free_pairs(&p, 1);
        unlink(bp);
        unlink(ap);
        unlink(mp);
    }
}

// Applies an adapter written with o (and pair p) and checks the failure.
static void expect_fail(const char *bp, ad_pair p, ad_opts o, anneal_status want, const char *msg) {
    char ap[128];
    write_adapter(fx_path(ap, sizeof ap, "lora_bad", 0), &p, 1, &o, 5);
    anneal_err err = {0};
    anneal_model *m = NULL;
    CHECK_EQ(anneal_model_load(bp, &m, &err), ANNEAL_OK);
    CHECK_EQ(anneal_model_apply_lora(m, ap, 1.0f, &err), want);
    CHECK_CONTAINS(anneal_err_msg(&err), msg);
    CHECK_CONTAINS(anneal_err_msg(&err), ap);
    CHECK_EQ(anneal_model_lora_count(m), 0);
    anneal_model_free(m);
    free_pairs(&p, 1);
    unlink(ap);
}

static void test_errors(void) {
    char bp[128];
    fx_spec s = fx_default();
    s.n_layer = 1;
    fx_write(&s, fx_path(bp, sizeof bp, "lora_ebase", 0));
    ad_pair q = {
        .base = "blk.0.attn_q.weight", .n_in = 64, .n_out = 64, .rank = 2, .type = ANNEAL_TYPE_F32};
    ad_opts o = ad_default();
    o.gtype = "model";
    expect_fail(bp, q, o, ANNEAL_ERR_FORMAT, "not a LoRA adapter");
    o = ad_default();
    o.gtype = NULL;
    expect_fail(bp, q, o, ANNEAL_ERR_FORMAT, "general.type");
    o = ad_default();
    o.atype = "control_vector";
    expect_fail(bp, q, o, ANNEAL_ERR_FORMAT, "adapter.type");
    o = ad_default();
    o.arch = "qwen2";
    expect_fail(bp, q, o, ANNEAL_ERR_FORMAT, "architectures differ");
    o = ad_default();
    o.no_alpha = true;
    expect_fail(bp, q, o, ANNEAL_ERR_FORMAT, "adapter.lora.alpha");
    o = ad_default();
    o.drop_b = true;
    expect_fail(bp, q, o, ANNEAL_ERR_FORMAT, "missing 'blk.0.attn_q.weight.lora_b'");
    ad_pair missing = q;
    missing.base = "blk.3.attn_q.weight";
    expect_fail(bp, missing, ad_default(), ANNEAL_ERR_NOT_FOUND,
                "'blk.3.attn_q.weight' does not exist");
    ad_pair norm = q;
    norm.base = "token_embd.weight";
    norm.n_out = FX_VOCAB;
    expect_fail(bp, norm, ad_default(), ANNEAL_ERR_UNSUPPORTED, "not a supported LoRA target");
    ad_pair wide = q;
    wide.base = "blk.0.attn_k.weight"; // 64 -> 32, the pair says 64 -> 64
    expect_fail(bp, wide, ad_default(), ANNEAL_ERR_FORMAT,
                "tensor 'blk.0.attn_k.weight' has incorrect shape");
    o = ad_default();
    o.b_rank = 3; // lora_a [64, 2], lora_b [3, 64]
    expect_fail(bp, q, o, ANNEAL_ERR_FORMAT, "lora_a has rank 2 but lora_b 3");
    // Not a GGUF at all.
    anneal_err err = {0};
    anneal_model *m = NULL;
    CHECK_EQ(anneal_model_load(bp, &m, &err), ANNEAL_OK);
    CHECK(anneal_model_apply_lora(m, "/nonexistent/adapter.gguf", 1.0f, &err) != ANNEAL_OK);
    CHECK_CONTAINS(anneal_err_msg(&err), "/nonexistent/adapter.gguf");
    anneal_model_free(m);
    unlink(bp);
}

// "FILE:S,FILE:S" applies in order, exactly as the separate calls do.
static void test_list(void) {
    char bp[128], ap[128], list[300];
    fx_spec s = fx_default();
    s.n_layer = 1;
    fx_write(&s, fx_path(bp, sizeof bp, "lora_lbase", 0));
    ad_pair p = {.base = "blk.0.ffn_gate.weight",
                 .n_in = 64,
                 .n_out = 128,
                 .rank = 3,
                 .type = ANNEAL_TYPE_F32};
    ad_opts o = ad_default();
    write_adapter(fx_path(ap, sizeof ap, "lora_lad", 0), &p, 1, &o, 9);
    anneal_err err = {0};
    anneal_model *m1 = NULL, *m2 = NULL;
    CHECK_EQ(anneal_model_load(bp, &m1, &err), ANNEAL_OK);
    CHECK_EQ(anneal_model_load(bp, &m2, &err), ANNEAL_OK);
    snprintf(list, sizeof list, "%s:0.25,%s", ap, ap);
    CHECK_EQ(anneal_model_apply_lora_list(m1, list, &err), ANNEAL_OK);
    CHECK_EQ(anneal_model_lora_count(m1), 2);
    CHECK_EQ(anneal_model_apply_lora(m2, ap, 0.25f, &err), ANNEAL_OK);
    CHECK_EQ(anneal_model_apply_lora(m2, ap, 1.0f, &err), ANNEAL_OK);
    float *l1 = malloc(FX_VOCAB * sizeof *l1), *l2 = malloc(FX_VOCAB * sizeof *l2);
    logits(m1, l1);
    logits(m2, l2);
    CHECK(memcmp(l1, l2, FX_VOCAB * sizeof *l1) == 0);
    snprintf(list, sizeof list, "%s,", ap);
    CHECK_EQ(anneal_model_apply_lora_list(m1, list, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(anneal_err_msg(&err), "empty entry");
    free(l1);
    free(l2);
    anneal_model_free(m1);
    anneal_model_free(m2);
    free_pairs(&p, 1);
    unlink(bp);
    unlink(ap);
}

int main(void) {
    RUN(test_merge_f32);
    RUN(test_list);
    RUN(test_merge_quantized);
    RUN(test_errors);
    return TEST_EXIT();
}
