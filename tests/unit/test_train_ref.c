// The trainer against an independent PyTorch implementation (tests/reference/train_ref.py,
// float64): the loss and every gradient of one batch, and a 10-step trace (AdamW, warmup +
// cosine, clipping, accumulation of 2 micro-batches), all within 1e-4 relative. The
// reference's outputs are committed in tests/reference/fixtures, so torch is not needed.
#include "test.h"
#include "train/train_internal.h"

#include <jansson.h>
#include <math.h>

#define FIX "tests/reference/fixtures/train_tiny"

typedef struct ref {
    json_t *j;
    char *bin;
    size_t bin_size;
    anneal_model_config cfg;
    int32_t B, T;
    size_t n_params;
    const float *init, *grads;
    const int32_t *toks, *tgts; // [1 + n_micro][B][T]
    int64_t n_micro;
} ref;

static double num(json_t *o, const char *k) {
    return json_number_value(json_object_get(o, k));
}

static bool load_ref(ref *r) {
    memset(r, 0, sizeof *r);
    char *text;
    size_t len;
    anneal_err err = {0};
    if (anneal_read_file(FIX ".json", 1 << 20, &text, &len, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return false;
    }
    r->j = anneal_json_parse(text, len, FIX ".json", &err);
    anneal_free(text);
    if (!r->j || anneal_read_file(FIX ".bin", 1 << 24, &r->bin, &r->bin_size, &err)) {
        fprintf(stderr, "%s\n", anneal_err_msg(&err));
        return false;
    }
    json_t *c = json_object_get(r->j, "config");
    anneal_model_config *m = &r->cfg;
    strcpy(m->arch, "llama");
    m->n_vocab = (int32_t)num(c, "n_vocab");
    m->n_embd = (int32_t)num(c, "n_embd");
    m->n_layer = (int32_t)num(c, "n_layer");
    m->n_head = (int32_t)num(c, "n_head");
    m->n_head_kv = (int32_t)num(c, "n_head_kv");
    m->head_dim = m->n_embd / m->n_head;
    m->n_rot = m->head_dim;
    m->n_ff = (int32_t)num(c, "n_ff");
    m->n_ctx_train = 64;
    m->norm_eps = (float)num(c, "norm_eps");
    m->rope_freq_base = (float)num(c, "rope_base");
    r->B = (int32_t)num(c, "n_batch");
    r->T = (int32_t)num(c, "n_seq");
    r->n_params = (size_t)num(r->j, "n_params");
    r->n_micro = (int64_t)num(r->j, "n_micro");
    size_t n_tok = (size_t)(1 + r->n_micro) * (size_t)r->B * (size_t)r->T;
    size_t want = 2 * r->n_params * 4 + 2 * n_tok * 4;
    if (r->bin_size != want) {
        fprintf(stderr, "%s.bin has %zu bytes, expected %zu\n", FIX, r->bin_size, want);
        return false;
    }
    r->init = (const float *)r->bin;
    r->grads = r->init + r->n_params;
    r->toks = (const int32_t *)(r->grads + r->n_params);
    r->tgts = r->toks + n_tok;
    return true;
}

static void free_ref(ref *r) {
    json_decref(r->j);
    anneal_free(r->bin);
}

// The reference's unpadded parameter order is the model's list order.
static anneal_train_model *model_from_ref(const ref *r) {
    anneal_train_model *tm;
    anneal_err err = {0};
    if (anneal_train_model_new(&r->cfg, &tm, &err)) return NULL;
    size_t off = 0;
    for (size_t i = 0; i < tm->n_list; i++) {
        memcpy(tm->params + tm->list[i].offset, r->init + off, tm->list[i].n * sizeof(float));
        off += tm->list[i].n;
    }
    CHECK_EQ(off, r->n_params);
    return tm;
}

static void test_loss_and_grads(void) {
    ref r;
    if (!load_ref(&r)) {
        CHECK(false);
        return;
    }
    anneal_train_model *tm = model_from_ref(&r);
    anneal_train_ctx *c;
    anneal_err err = {0};
    CHECK_EQ(anneal_train_ctx_new(tm, r.B, r.T, 2, &c, &err), ANNEAL_OK);
    anneal_train_zero_grads(c);
    double loss;
    CHECK_EQ(anneal_train_step(c, r.toks, r.tgts, true, 1.0f, &loss, &err), ANNEAL_OK);
    double want = num(r.j, "loss0");
    CHECK(fabs(loss - want) <= 1e-4 * fabs(want));
    fprintf(stderr, "  loss %.9f, reference %.9f\n", loss, want);
    size_t off = 0;
    double worst = 0;
    for (size_t i = 0; i < tm->n_list; i++) {
        const anneal_train_param *p = &tm->list[i];
        const float *g = tm->grads + p->offset, *gr = r.grads + off;
        double mx = 0, err_max = 0;
        for (size_t k = 0; k < p->n; k++) {
            mx = fabs(gr[k]) > mx ? fabs(gr[k]) : mx;
            double e = fabs((double)g[k] - gr[k]);
            err_max = e > err_max ? e : err_max;
        }
        double rel = err_max / mx;
        worst = rel > worst ? rel : worst;
        if (!(rel <= 1e-4)) {
            fprintf(stderr, "  %s: gradient differs by %.3g of its max |g| %.3g\n", p->name, rel,
                    mx);
            test_failures++;
        }
        off += p->n;
    }
    fprintf(stderr, "  worst gradient difference: %.3g of the tensor's max |g|\n", worst);
    anneal_train_ctx_free(c);
    anneal_train_model_free(tm);
    free_ref(&r);
}

static void test_trace(void) {
    ref r;
    if (!load_ref(&r)) {
        CHECK(false);
        return;
    }
    json_t *hp = json_object_get(r.j, "hparams");
    anneal_train_model *tm = model_from_ref(&r);
    anneal_train_ctx *c;
    anneal_err err = {0};
    CHECK_EQ(anneal_train_ctx_new(tm, r.B, r.T, 2, &c, &err), ANNEAL_OK);
    anneal_adamw_params ap = {.beta1 = (float)num(hp, "beta1"),
                              .beta2 = (float)num(hp, "beta2"),
                              .eps = (float)num(hp, "eps"),
                              .weight_decay = (float)num(hp, "weight_decay")};
    anneal_adamw *o;
    CHECK_EQ(anneal_adamw_new(tm, &ap, &o, &err), ANNEAL_OK);
    int64_t steps = (int64_t)num(hp, "steps"), accum = (int64_t)num(hp, "accum");
    anneal_lr_schedule sc = {.lr = num(hp, "lr"),
                             .min_lr = num(hp, "min_lr"),
                             .warmup = (int64_t)num(hp, "warmup"),
                             .total = steps};
    json_t *trace = json_object_get(r.j, "trace"), *norms = json_object_get(r.j, "grad_norms");
    size_t bt = (size_t)r.B * r.T;
    double worst = 0;
    for (int64_t s = 0; s < steps; s++) {
        anneal_train_zero_grads(c);
        double total = 0;
        for (int64_t a = 0; a < accum; a++) {
            size_t i = (size_t)(1 + s * accum + a);
            double l;
            CHECK_EQ(anneal_train_step(c, r.toks + i * bt, r.tgts + i * bt, true,
                                       1.0f / (float)accum, &l, &err),
                     ANNEAL_OK);
            total += l / (double)accum;
        }
        double n = anneal_train_clip(c, num(hp, "clip"));
        anneal_adamw_update(o, c, (float)anneal_lr_at(&sc, s));
        double wl = json_number_value(json_array_get(trace, (size_t)s));
        double wn = json_number_value(json_array_get(norms, (size_t)s));
        double rel = fabs(total - wl) / fabs(wl);
        worst = rel > worst ? rel : worst;
        CHECK(rel <= 1e-4);
        CHECK(fabs(n - wn) <= 1e-4 * wn);
        fprintf(stderr, "  step %d: loss %.7f (reference %.7f), grad norm %.6f (%.6f)\n", (int)s,
                total, wl, n, wn);
    }
    fprintf(stderr, "  worst loss difference over the trace: %.3g relative\n", worst);
    anneal_adamw_free(o);
    anneal_train_ctx_free(c);
    anneal_train_model_free(tm);
    free_ref(&r);
}

int main(void) {
    RUN(test_loss_and_grads);
    RUN(test_trace);
    return TEST_EXIT();
}
