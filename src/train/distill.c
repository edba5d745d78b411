// Knowledge distillation: the teacher's logits from the engine's batched forward on each
// micro-batch, and the KL + cross-entropy loss (log-softmax at temperature T in double,
// max-shifted so no exponent overflows) with its exact gradient for the trainer.
#include "anneal/train.h"

#include "train_internal.h"

#include <math.h>
#include <string.h>

struct anneal_distill {
    anneal_distill_params p;
    anneal_model *teacher;
    anneal_ctx *ctx;
    anneal_kv *kv;
    int32_t n_batch, n_seq, per_call; // sequences per teacher forward
    int32_t V;
    float *logits;            // [n_batch * n_seq][V] the teacher's, of the last micro-batch
    int64_t rows;             // rows of logits that hold the last micro-batch's teacher logits
    int32_t *tok, *seq, *pos; // [per_call * n_seq] one teacher forward's batch
    bool *out;
};

anneal_status anneal_distill_params_check(const anneal_distill_params *p, anneal_err *err) {
    if (!(p->temperature > 0) || !isfinite(p->temperature))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "distillation temperature %g must be a finite number > 0",
                              p->temperature);
    if (!(p->alpha >= 0 && p->alpha <= 1))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "distillation alpha %g must be in [0, 1]", p->alpha);
    return ANNEAL_OK;
}

// Max-shifted log-sum-exp of x / T: returns max(x) and log(sum(exp((x - max) / T))).
static void lse(const float *x, int32_t n, double inv_t, double *mx, double *log_sum) {
    float m = x[0];
    for (int32_t j = 1; j < n; j++)
        m = x[j] > m ? x[j] : m;
    double s = 0;
    for (int32_t j = 0; j < n; j++)
        s += exp(((double)x[j] - m) * inv_t);
    *mx = m;
    *log_sum = log(s);
}

// One row's KL at temperature T given both log-sum-exps (z: student, u: teacher).
static double kl_row(const float *z, const float *u, int32_t n, double inv_t, double mz, double lz,
                     double mu, double lu, bool reverse) {
    double kl = 0;
    for (int32_t j = 0; j < n; j++) {
        double lq = ((double)z[j] - mz) * inv_t - lz, lp = ((double)u[j] - mu) * inv_t - lu;
        kl += reverse ? exp(lq) * (lq - lp) : exp(lp) * (lp - lq);
    }
    return kl;
}

double anneal_distill_loss_rows(const anneal_distill_params *p, const float *teacher,
                                const float *logits, const int32_t *targets, int64_t n_rows,
                                int32_t n_vocab, float scale, float *dlogits, double *kl_sum) {
    const double T = p->temperature, inv_t = 1.0 / T, a = p->alpha;
    if (a == 0 && !kl_sum) return tr_xent(logits, targets, n_rows, n_vocab, scale, dlogits);
    double total = 0, kls = 0;
    for (int64_t t = 0; t < n_rows; t++) {
        const float *z = logits + t * n_vocab, *u = teacher + t * n_vocab;
        if (targets[t] < 0) {
            if (dlogits && a > 0) memset(dlogits + t * n_vocab, 0, (size_t)n_vocab * sizeof(float));
            continue;
        }
        double mz, lz, mu, lu;
        lse(z, n_vocab, inv_t, &mz, &lz);
        lse(u, n_vocab, inv_t, &mu, &lu);
        double kl = kl_row(z, u, n_vocab, inv_t, mz, lz, mu, lu, p->reverse);
        kls += kl;
        if (a == 0) continue; // the trainer's cross-entropy below, unchanged
        // Cross-entropy at T = 1 (mz is the max whatever T is).
        double s1 = 0;
        for (int32_t j = 0; j < n_vocab; j++)
            s1 += exp((double)z[j] - mz);
        double l1 = log(s1);
        int32_t y = targets[t];
        double ce = l1 + mz - (double)z[y];
        total += a * T * T * kl + (1 - a) * ce;
        if (!dlogits) continue;
        // d(T^2 KL)/dz_j: forward T (q_j - p_j); reverse T q_j (log q_j - log p_j - KL).
        // Each element is read before it is written, so dlogits may alias logits.
        float *d = dlogits + t * n_vocab;
        for (int32_t j = 0; j < n_vocab; j++) {
            double zj = z[j];
            double lq = (zj - mz) * inv_t - lz, lp = ((double)u[j] - mu) * inv_t - lu;
            double q = exp(lq);
            double gk = p->reverse ? T * q * (lq - lp - kl) : T * (q - exp(lp));
            double gc = exp(zj - mz - l1) - (j == y ? 1.0 : 0.0);
            d[j] = (float)(scale * (a * gk + (1 - a) * gc));
        }
    }
    if (kl_sum) *kl_sum = kls;
    if (a == 0) return tr_xent(logits, targets, n_rows, n_vocab, scale, dlogits);
    return total;
}

// ---- the teacher --------------------------------------------------------------------------

// The same vocabulary: the same number of logits and, when both files list their tokens,
// the same strings in the same order.
static anneal_status check_vocab(const char *path, const anneal_model *t, const anneal_gguf *s,
                                 int32_t s_vocab, anneal_err *err) {
    int32_t tv = anneal_model_config_of(t)->n_vocab;
    if (tv != s_vocab)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "teacher %s has %d tokens in its vocabulary and the student %d: "
                              "distillation needs one shared vocabulary",
                              path, (int)tv, (int)s_vocab);
    if (!s) return ANNEAL_OK;
    const anneal_gguf_value *ta, *sa;
    if (anneal_gguf_get_arr(anneal_model_gguf(t), "tokenizer.ggml.tokens", ANNEAL_GGUF_STRING, &ta,
                            NULL) ||
        anneal_gguf_get_arr(s, "tokenizer.ggml.tokens", ANNEAL_GGUF_STRING, &sa, NULL))
        return ANNEAL_OK;
    if (ta->arr.n != sa->arr.n)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "teacher %s lists %llu tokens in tokenizer.ggml.tokens and the "
                              "student %llu: distillation needs one shared vocabulary",
                              path, (unsigned long long)ta->arr.n, (unsigned long long)sa->arr.n);
    for (uint64_t i = 0; i < ta->arr.n; i++) {
        const anneal_gguf_str *x = &ta->arr.strs[i], *y = &sa->arr.strs[i];
        if (x->len != y->len || memcmp(x->ptr, y->ptr, x->len) != 0)
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                  "teacher %s and the student differ at token %llu "
                                  "(tokenizer.ggml.tokens): distillation needs one shared "
                                  "vocabulary",
                                  path, (unsigned long long)i);
    }
    return ANNEAL_OK;
}

anneal_status anneal_distill_new(const char *teacher_path, const anneal_gguf *student,
                                 int32_t student_n_vocab, const anneal_distill_params *p,
                                 int32_t n_batch, int32_t n_seq, int32_t n_threads,
                                 anneal_distill **out, anneal_err *err) {
    *out = NULL;
    anneal_status st = anneal_distill_params_check(p, err);
    if (st) return st;
    if (n_batch < 1 || n_seq < 1 || (int64_t)n_batch * n_seq > (1 << 24))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "batch %d x sequence %d is not allowed",
                              (int)n_batch, (int)n_seq);
    anneal_distill *d = anneal_calloc(1, sizeof *d);
    if (!d) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    d->p = *p;
    d->n_batch = n_batch;
    d->n_seq = n_seq;
    // Whole sequences per teacher forward, about 2048 tokens: large enough for matrix-matrix
    // work, small enough that the engine's work memory stays modest.
    d->per_call = n_seq >= 2048 ? 1 : 2048 / n_seq;
    if (d->per_call > n_batch) d->per_call = n_batch;
    if ((st = anneal_model_load(teacher_path, &d->teacher, err))) goto fail;
    if ((st = check_vocab(teacher_path, d->teacher, student, student_n_vocab, err))) goto fail;
    d->V = student_n_vocab;
    anneal_ctx_params cp = anneal_ctx_params_default();
    cp.max_batch = d->per_call * n_seq;
    cp.n_threads = n_threads;
    cp.output = ANNEAL_OUTPUT_LOGITS;
    anneal_kv_params kp = anneal_kv_params_default(n_seq, d->per_call);
    kp.type = ANNEAL_TYPE_F32;
    if ((st = anneal_ctx_new(d->teacher, &cp, &d->ctx, err)) ||
        (st = anneal_kv_new(d->teacher, &kp, &d->kv, err)))
        goto fail;
    size_t rows = (size_t)n_batch * (size_t)n_seq, call = (size_t)cp.max_batch, bytes;
    if (!anneal_mul_ok(rows, (size_t)d->V * sizeof(float), &bytes)) {
        st =
            anneal_err_set(err, ANNEAL_ERR_LIMIT, "teacher logits of %zu rows are too large", rows);
        goto fail;
    }
    d->logits = anneal_malloc(bytes);
    d->tok = anneal_calloc(call, sizeof *d->tok);
    d->seq = anneal_calloc(call, sizeof *d->seq);
    d->pos = anneal_calloc(call, sizeof *d->pos);
    d->out = anneal_calloc(call, sizeof *d->out);
    if (!d->logits || !d->tok || !d->seq || !d->pos || !d->out) {
        st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory for the teacher's logits");
        goto fail;
    }
    *out = d;
    return ANNEAL_OK;
fail:
    anneal_distill_free(d);
    return st;
}

void anneal_distill_free(anneal_distill *d) {
    if (!d) return;
    anneal_free(d->logits);
    anneal_free(d->tok);
    anneal_free(d->seq);
    anneal_free(d->pos);
    anneal_free(d->out);
    anneal_kv_free(d->kv);
    anneal_ctx_free(d->ctx);
    anneal_model_free(d->teacher);
    anneal_free(d);
}

const anneal_model_config *anneal_distill_teacher_config(const anneal_distill *d) {
    return anneal_model_config_of(d->teacher);
}

const float *anneal_distill_teacher_logits(const anneal_distill *d) {
    return d->logits;
}

anneal_status anneal_distill_teacher(void *ctx, const int32_t *tokens, int32_t n_batch,
                                     int32_t n_seq, anneal_err *err) {
    anneal_distill *d = ctx;
    d->rows = 0;
    if (n_batch != d->n_batch || n_seq != d->n_seq)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "teacher batch %d x %d differs from the %d x %d it was made for",
                              (int)n_batch, (int)n_seq, (int)d->n_batch, (int)d->n_seq);
    for (int32_t b0 = 0; b0 < n_batch; b0 += d->per_call) {
        int32_t k = n_batch - b0 < d->per_call ? n_batch - b0 : d->per_call;
        for (int32_t s = 0; s < k; s++) {
            anneal_kv_seq_clear(d->kv, s);
            for (int32_t i = 0; i < n_seq; i++) {
                size_t at = (size_t)s * n_seq + i;
                d->tok[at] = tokens[(size_t)(b0 + s) * n_seq + i];
                d->seq[at] = s;
                d->pos[at] = i;
                d->out[at] = true;
            }
        }
        anneal_batch b = {.n_tokens = k * n_seq,
                          .tokens = d->tok,
                          .seq = d->seq,
                          .pos = d->pos,
                          .output = d->out};
        int32_t n_out = 0;
        float *dst = d->logits + (size_t)b0 * n_seq * d->V;
        anneal_status st = anneal_forward(d->ctx, d->kv, &b, dst, k * n_seq, &n_out, err);
        if (st) return st;
        if (n_out != k * n_seq)
            return anneal_err_set(err, ANNEAL_ERR_INTERNAL, "teacher gave %d rows for %d tokens",
                                  (int)n_out, (int)(k * n_seq));
    }
    d->rows = (int64_t)n_batch * n_seq;
    return ANNEAL_OK;
}

double anneal_distill_loss(void *ctx, int64_t row0, int64_t n_rows, int32_t n_vocab,
                           const float *logits, const int32_t *targets, float scale,
                           float *dlogits) {
    anneal_distill *d = ctx;
    // Rows the teacher has not seen have no target distribution: NAN makes the trainer stop
    // ("the loss is nan") instead of learning from stale logits.
    if (n_vocab != d->V || row0 < 0 || row0 + n_rows > d->rows) return NAN;
    return anneal_distill_loss_rows(&d->p, d->logits + (size_t)row0 * d->V, logits, targets, n_rows,
                                    n_vocab, scale, dlogits, NULL);
}

void anneal_distill_plug(anneal_distill *d, anneal_trainer_opts *o) {
    o->loss = anneal_distill_loss;
    o->loss_ctx = d;
    o->loss_batch = anneal_distill_teacher;
}
