// LoRA training: adapters A, B over a trainer model's frozen matrices. The model's forward
// and backward run unchanged on W = W0 + s * B.A; the adapters' gradients come from dW.
#include "anneal/train.h"

#include "anneal/tensor.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>

typedef struct lora_target {
    char name[64];       // base tensor name, e.g. "blk.0.attn_q.weight"
    int32_t n_in, n_out; // W is [n_out][n_in]
    float *w, *dw;       // into tm->params / tm->grads
    float *w0;           // base weights [n_out][n_in]
    size_t a, b;         // offsets of A [r][n_in] and B [n_out][r] in params / grads
} lora_target;

struct anneal_lora_train {
    anneal_train_model *tm;
    anneal_lora_params p;
    float s;
    lora_target *t;
    int32_t n_t;
    float *params, *grads, *m, *v; // [n_params] each
    size_t n_params;
    int64_t step;
};

static const struct {
    const char *flag, *tensor;
    uint32_t bit;
} TARGETS[] = {
    {"q", "attn_q", ANNEAL_LORA_Q},         {"k", "attn_k", ANNEAL_LORA_K},
    {"v", "attn_v", ANNEAL_LORA_V},         {"o", "attn_output", ANNEAL_LORA_O},
    {"gate", "ffn_gate", ANNEAL_LORA_GATE}, {"up", "ffn_up", ANNEAL_LORA_UP},
    {"down", "ffn_down", ANNEAL_LORA_DOWN},
};
#define N_TARGETS (sizeof TARGETS / sizeof TARGETS[0])

anneal_status anneal_lora_targets_parse(const char *list, uint32_t *mask, anneal_err *err) {
    *mask = 0;
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        uint32_t bit = 0;
        for (size_t i = 0; i < N_TARGETS; i++)
            if (strlen(TARGETS[i].flag) == n && memcmp(TARGETS[i].flag, p, n) == 0)
                bit = TARGETS[i].bit;
        if (!bit)
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                  "LoRA target '%.*s' is not one of q,k,v,o,gate,up,down",
                                  (int)(n > 32 ? 32 : n), p);
        *mask |= bit;
        if (!end) return ANNEAL_OK;
        p = end + 1;
    }
}

static uint64_t next_rand(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

anneal_status anneal_lora_train_new(anneal_train_model *tm, const anneal_lora_params *p,
                                    anneal_lora_train **out, anneal_err *err) {
    *out = NULL;
    if (p->rank < 1 || p->rank > 65536)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "LoRA rank %d is not in 1..65536",
                              (int)p->rank);
    if (!(p->alpha > 0) || !isfinite(p->alpha))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "LoRA alpha %g is not positive",
                              (double)p->alpha);
    if (!(p->targets & ((1u << N_TARGETS) - 1)))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "no LoRA targets");
    anneal_lora_train *lt = anneal_calloc(1, sizeof *lt);
    int32_t L = tm->cfg.n_layer;
    if (!lt || !(lt->t = anneal_calloc((size_t)L * N_TARGETS, sizeof *lt->t))) {
        anneal_free(lt);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    }
    lt->tm = tm;
    lt->p = *p;
    lt->s = p->alpha / (float)p->rank;
    size_t r = (size_t)p->rank;
    for (int32_t l = 0; l < L; l++)
        for (size_t i = 0; i < N_TARGETS; i++) {
            if (!(p->targets & TARGETS[i].bit)) continue;
            lora_target *t = &lt->t[lt->n_t];
            snprintf(t->name, sizeof t->name, "blk.%d.%s.weight", (int)l, TARGETS[i].tensor);
            const anneal_train_param *tp = anneal_train_model_find(tm, t->name);
            if (!tp || tp->n_dims != 2) {
                anneal_lora_train_free(lt);
                return anneal_err_set(err, ANNEAL_ERR_NOT_FOUND, "no matrix '%s' to adapt",
                                      t->name);
            }
            t->n_in = (int32_t)tp->dims[0];
            t->n_out = (int32_t)tp->dims[1];
            t->w = tm->params + tp->offset;
            t->dw = tm->grads + tp->offset;
            t->a = lt->n_params;
            t->b = t->a + r * (size_t)t->n_in;
            lt->n_params = t->b + (size_t)t->n_out * r;
            lt->n_t++;
        }
    size_t bytes = lt->n_params * sizeof(float);
    lt->params = anneal_aligned_alloc(64, bytes);
    lt->grads = anneal_aligned_alloc(64, bytes);
    lt->m = anneal_aligned_alloc(64, bytes);
    lt->v = anneal_aligned_alloc(64, bytes);
    bool ok = lt->params && lt->grads && lt->m && lt->v;
    for (int32_t k = 0; ok && k < lt->n_t; k++)
        ok = (lt->t[k].w0 = anneal_malloc((size_t)lt->t[k].n_in * lt->t[k].n_out * sizeof(float)));
    if (!ok) {
        anneal_lora_train_free(lt);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory for LoRA adapters");
    }
    memset(lt->params, 0, bytes);
    memset(lt->grads, 0, bytes);
    memset(lt->m, 0, bytes);
    memset(lt->v, 0, bytes);
    uint64_t rng = p->seed;
    for (int32_t k = 0; k < lt->n_t; k++) {
        lora_target *t = &lt->t[k];
        memcpy(t->w0, t->w, (size_t)t->n_in * t->n_out * sizeof(float));
        double bound = 1.0 / sqrt((double)t->n_in);
        for (size_t i = 0; i < r * (size_t)t->n_in; i++)
            lt->params[t->a + i] =
                (float)(bound * ((double)(next_rand(&rng) >> 11) / 9007199254740992.0 * 2 - 1));
    }
    // Only the targets need dW; everything else is frozen.
    for (size_t i = 0; i < tm->n_list; i++)
        tm->list[i].trainable = false;
    for (int32_t k = 0; k < lt->n_t; k++) {
        anneal_train_param *tp = anneal_train_model_find(tm, lt->t[k].name);
        tp->trainable = true;
        tp->decay = false;
    }
    *out = lt;
    return ANNEAL_OK;
}

void anneal_lora_train_free(anneal_lora_train *lt) {
    if (!lt) return;
    for (int32_t k = 0; k < lt->n_t; k++)
        anneal_free(lt->t[k].w0);
    anneal_free(lt->t);
    anneal_free(lt->params);
    anneal_free(lt->grads);
    anneal_free(lt->m);
    anneal_free(lt->v);
    anneal_free(lt);
}

void anneal_lora_train_compose(anneal_lora_train *lt) {
    int r = lt->p.rank;
    for (int32_t k = 0; k < lt->n_t; k++) {
        lora_target *t = &lt->t[k];
        memcpy(t->w, t->w0, (size_t)t->n_in * t->n_out * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t->n_out, t->n_in, r, lt->s,
                    lt->params + t->b, r, lt->params + t->a, t->n_in, 1.0f, t->w, t->n_in);
    }
}

void anneal_lora_train_grads(anneal_lora_train *lt) {
    int r = lt->p.rank;
    for (int32_t k = 0; k < lt->n_t; k++) {
        lora_target *t = &lt->t[k];
        // dA [r][n_in] += s * B^T [r][n_out] . dW [n_out][n_in]
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, t->n_in, t->n_out, lt->s,
                    lt->params + t->b, r, t->dw, t->n_in, 1.0f, lt->grads + t->a, t->n_in);
        // dB [n_out][r] += s * dW [n_out][n_in] . A^T [n_in][r]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t->n_out, r, t->n_in, lt->s, t->dw,
                    t->n_in, lt->params + t->a, t->n_in, 1.0f, lt->grads + t->b, r);
    }
}

void anneal_lora_train_zero_grads(anneal_lora_train *lt) {
    memset(lt->grads, 0, lt->n_params * sizeof(float));
}

void anneal_lora_train_adamw(anneal_lora_train *lt, const anneal_adamw_params *p, float lr) {
    lt->step++;
    double bc1 = 1.0 - pow(p->beta1, (double)lt->step), bc2 = 1.0 - pow(p->beta2, (double)lt->step);
    for (size_t i = 0; i < lt->n_params; i++) {
        float g = lt->grads[i];
        lt->m[i] = p->beta1 * lt->m[i] + (1 - p->beta1) * g;
        lt->v[i] = p->beta2 * lt->v[i] + (1 - p->beta2) * g * g;
        float x = lt->params[i] * (1 - lr * p->weight_decay);
        double mh = lt->m[i] / bc1, vh = lt->v[i] / bc2;
        lt->params[i] = (float)(x - lr * mh / (sqrt(vh) + p->eps));
    }
}

size_t anneal_lora_train_n_params(const anneal_lora_train *lt) {
    return lt->n_params;
}

anneal_lora_state anneal_lora_train_state(anneal_lora_train *lt) {
    return (anneal_lora_state){lt->params, lt->grads, lt->m, lt->v, &lt->step, lt->n_params};
}

void anneal_lora_train_base(anneal_lora_train *lt) {
    for (int32_t k = 0; k < lt->n_t; k++)
        memcpy(lt->t[k].w, lt->t[k].w0, (size_t)lt->t[k].n_in * lt->t[k].n_out * sizeof(float));
}

float *anneal_lora_train_params(anneal_lora_train *lt) {
    return lt->params;
}

const float *anneal_lora_train_grad(const anneal_lora_train *lt) {
    return lt->grads;
}

anneal_status anneal_lora_train_save(const anneal_lora_train *lt, const char *path,
                                     const anneal_lineage *lin, anneal_err *err) {
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    if (!w) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", path);
    anneal_gguf_writer_set_str(w, "general.architecture", lt->tm->cfg.arch);
    anneal_gguf_writer_set_str(w, "general.type", "adapter");
    anneal_gguf_writer_set_str(w, "adapter.type", "lora");
    anneal_gguf_writer_set_f32(w, "adapter.lora.alpha", lt->p.alpha);
    uint64_t r = (uint64_t)lt->p.rank;
    char name[96];
    for (int32_t k = 0; k < lt->n_t; k++) {
        const lora_target *t = &lt->t[k];
        uint64_t da[2] = {(uint64_t)t->n_in, r}, db[2] = {r, (uint64_t)t->n_out};
        snprintf(name, sizeof name, "%s.lora_a", t->name);
        anneal_gguf_writer_add_tensor(w, name, ANNEAL_TYPE_F32, 2, da, lt->params + t->a,
                                      da[0] * da[1] * sizeof(float));
        snprintf(name, sizeof name, "%s.lora_b", t->name);
        anneal_gguf_writer_add_tensor(w, name, ANNEAL_TYPE_F32, 2, db, lt->params + t->b,
                                      db[0] * db[1] * sizeof(float));
    }
    anneal_status st = lin ? anneal_lineage_set(w, lin, err) : ANNEAL_OK;
    if (!st) st = anneal_gguf_writer_write(w, path, err);
    anneal_gguf_writer_free(w);
    return st;
}
