// AdamW (decoupled weight decay, bias correction, as torch.optim.AdamW computes it), the
// global gradient norm and clipping, and the warmup + cosine learning-rate schedule.
#include "train_internal.h"

#include <math.h>

anneal_adamw_params anneal_adamw_default(void) {
    return (anneal_adamw_params){.beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};
}

anneal_status anneal_adamw_new(const anneal_train_model *tm, const anneal_adamw_params *p,
                               anneal_adamw **out, anneal_err *err) {
    *out = NULL;
    if (!(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1) || !(p->eps > 0) ||
        !(p->weight_decay >= 0))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "AdamW: beta1 %g and beta2 %g must be in [0, 1), eps %g > 0, "
                              "weight decay %g >= 0",
                              (double)p->beta1, (double)p->beta2, (double)p->eps,
                              (double)p->weight_decay);
    anneal_adamw *o = anneal_calloc(1, sizeof *o);
    size_t bytes = tm->n_params * sizeof(float);
    if (o) {
        o->m = anneal_aligned_alloc(64, bytes);
        o->v = anneal_aligned_alloc(64, bytes);
    }
    if (!o || !o->m || !o->v) {
        anneal_adamw_free(o);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory for optimizer state");
    }
    memset(o->m, 0, bytes);
    memset(o->v, 0, bytes);
    o->p = *p;
    *out = o;
    return ANNEAL_OK;
}

void anneal_adamw_free(anneal_adamw *o) {
    if (!o) return;
    anneal_free(o->m);
    anneal_free(o->v);
    anneal_free(o);
}

typedef struct adam_job {
    anneal_adamw *o;
    anneal_train_model *tm;
    float lr, step_size, bc2_sqrt;
} adam_job;

TR_VEC static void adam_rows(void *arg, int ith, int nth) {
    const adam_job *j = arg;
    const anneal_adamw_params *p = &j->o->p;
    float b1 = p->beta1, b2 = p->beta2;
    for (size_t k = 0; k < j->tm->n_list; k++) {
        const anneal_train_param *tp = &j->tm->list[k];
        if (!tp->trainable) continue;
        int64_t i0, i1;
        anneal_split((int64_t)tp->n, ith, nth, &i0, &i1);
        float *w = j->tm->params + tp->offset, *g = j->tm->grads + tp->offset;
        float *m = j->o->m + tp->offset, *v = j->o->v + tp->offset;
        float decay = tp->decay ? 1.0f - j->lr * p->weight_decay : 1.0f;
        for (int64_t i = i0; i < i1; i++) {
            float gi = g[i];
            w[i] *= decay;
            m[i] = m[i] * b1 + gi * (1.0f - b1);
            v[i] = v[i] * b2 + gi * gi * (1.0f - b2);
            float denom = sqrtf(v[i]) / j->bc2_sqrt + p->eps;
            w[i] -= j->step_size * (m[i] / denom);
        }
    }
}

void anneal_adamw_update(anneal_adamw *o, anneal_train_ctx *c, float lr) {
    o->step++;
    double bc1 = 1.0 - pow((double)o->p.beta1, (double)o->step);
    double bc2 = 1.0 - pow((double)o->p.beta2, (double)o->step);
    adam_job j = {.o = o,
                  .tm = tr_ctx_model(c),
                  .lr = lr,
                  .step_size = (float)(lr / bc1),
                  .bc2_sqrt = (float)sqrt(bc2)};
    anneal_pool_run(tr_ctx_pool(c), adam_rows, &j);
}

typedef struct norm_job {
    anneal_train_model *tm;
    double *part;
    float scale;
} norm_job;

static void norm_rows(void *arg, int ith, int nth) {
    norm_job *j = arg;
    int64_t i0, i1;
    anneal_split((int64_t)j->tm->n_params, ith, nth, &i0, &i1);
    const float *g = j->tm->grads;
    double s = 0;
    for (int64_t i = i0; i < i1; i++)
        s += (double)g[i] * g[i];
    j->part[ith] = s;
}

TR_VEC static void scale_rows(void *arg, int ith, int nth) {
    norm_job *j = arg;
    int64_t i0, i1;
    anneal_split((int64_t)j->tm->n_params, ith, nth, &i0, &i1);
    float *g = j->tm->grads;
    for (int64_t i = i0; i < i1; i++)
        g[i] *= j->scale;
}

double anneal_train_grad_norm(anneal_train_ctx *c) {
    // Gradients of frozen tensors are never computed (they stay 0), so the whole array can
    // be summed; partial sums are added in thread order.
    norm_job j = {.tm = tr_ctx_model(c), .part = tr_ctx_part(c)};
    anneal_pool_run(tr_ctx_pool(c), norm_rows, &j);
    double s = 0;
    for (int t = 0; t < anneal_train_ctx_threads(c); t++)
        s += j.part[t];
    return sqrt(s);
}

void anneal_train_grad_scale(anneal_train_ctx *c, float s) {
    norm_job j = {.tm = tr_ctx_model(c), .scale = s};
    anneal_pool_run(tr_ctx_pool(c), scale_rows, &j);
}

double anneal_train_clip(anneal_train_ctx *c, double max_norm) {
    double n = anneal_train_grad_norm(c);
    if (max_norm > 0) {
        double coef = max_norm / (n + 1e-6);
        if (coef < 1.0) anneal_train_grad_scale(c, (float)coef);
    }
    return n;
}

double anneal_lr_at(const anneal_lr_schedule *s, int64_t step) {
    if (step < s->warmup) return s->lr * (double)(step + 1) / (double)s->warmup;
    if (s->total <= s->warmup) return s->lr; // no room for a decay
    if (step >= s->total) return s->min_lr;
    double p = (double)(step - s->warmup) / (double)(s->total - s->warmup);
    return s->min_lr + 0.5 * (s->lr - s->min_lr) * (1.0 + cos(M_PI * p));
}
