// Perplexity in llama.cpp's chunked way: BOS-led chunks of n_ctx tokens, second half scored.
#include "anneal/eval.h"

#include <math.h>
#include <string.h>

anneal_ppl_params anneal_ppl_params_default(void) {
    return (anneal_ppl_params){.n_ctx = 512};
}

// -log p(target) under the softmax of row[0..n), in double.
static double nll_of(const float *row, int32_t n, int32_t target) {
    float mx = row[0];
    for (int32_t i = 1; i < n; i++) mx = row[i] > mx ? row[i] : mx;
    double sum = 0;
    for (int32_t i = 0; i < n; i++) sum += exp((double)row[i] - mx);
    return log(sum) - ((double)row[target] - mx);
}

typedef struct ppl_work {
    anneal_ctx *ctx;
    anneal_kv *kv;
    int32_t *ids, *chunk, *pos, *seq;
    bool *out_mask;
    float *logits;
} ppl_work;

static void work_free(ppl_work *w) {
    anneal_free(w->logits);
    anneal_free(w->out_mask);
    anneal_free(w->seq);
    anneal_free(w->pos);
    anneal_free(w->chunk);
    anneal_free(w->ids);
    anneal_kv_free(w->kv);
    anneal_ctx_free(w->ctx);
}

static anneal_status run(const anneal_model *m, const anneal_tokenizer *tok, const char *text, size_t len,
                         const anneal_ppl_params *p, anneal_ppl_result *out, ppl_work *w,
                         anneal_err *err) {
    const anneal_model_config *cfg = anneal_model_config_of(m);
    const int32_t n_ctx = p->n_ctx;
    if (n_ctx < 4) return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "perplexity: n_ctx %d is below 4", n_ctx);
    if (p->max_chunks < 0)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "perplexity: max_chunks %d is negative", p->max_chunks);

    size_t n_tok = 0;
    anneal_status st = anneal_tokenizer_encode(tok, text, len, ANNEAL_TOK_ADD_SPECIAL, NULL, 0, &n_tok, err);
    if (st != ANNEAL_OK && st != ANNEAL_ERR_RANGE) return st;
    anneal_err_clear(err);
    if (n_tok < 2 * (size_t)n_ctx)
        return anneal_err_set(err, ANNEAL_ERR_RANGE,
                              "perplexity: the text has %zu tokens; a context of %d needs at least %d",
                              n_tok, n_ctx, 2 * n_ctx);
    w->ids = anneal_calloc(n_tok, sizeof *w->ids);
    if (!w->ids) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "perplexity: out of memory for %zu tokens", n_tok);
    st = anneal_tokenizer_encode(tok, text, len, ANNEAL_TOK_ADD_SPECIAL, w->ids, n_tok, &n_tok, err);
    if (st) return st;

    int64_t n_chunks = (int64_t)n_tok / n_ctx;
    if (p->max_chunks > 0 && p->max_chunks < n_chunks) n_chunks = p->max_chunks;
    anneal_ctx_params cp = anneal_ctx_params_default();
    cp.n_threads = p->n_threads;
    if (cp.max_batch > n_ctx) cp.max_batch = n_ctx;
    anneal_kv_params kp = anneal_kv_params_default(n_ctx, 1);
    if ((st = anneal_ctx_new(m, &cp, &w->ctx, err)) || (st = anneal_kv_new(m, &kp, &w->kv, err))) return st;
    w->chunk = anneal_calloc((size_t)n_ctx, sizeof *w->chunk);
    w->pos = anneal_calloc((size_t)n_ctx, sizeof *w->pos);
    w->seq = anneal_calloc((size_t)n_ctx, sizeof *w->seq);
    w->out_mask = anneal_calloc((size_t)n_ctx, sizeof *w->out_mask);
    w->logits = anneal_calloc((size_t)cp.max_batch * (size_t)cfg->n_vocab, sizeof *w->logits);
    if (!w->chunk || !w->pos || !w->seq || !w->out_mask || !w->logits)
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "perplexity: out of memory for the work buffers");

    // Row j predicts token j + 1; rows first .. n_ctx - 2 are scored.
    const int32_t first = n_ctx / 2;
    for (int32_t j = 0; j < n_ctx; j++) {
        w->pos[j] = j;
        w->out_mask[j] = j >= first && j < n_ctx - 1;
    }
    const bool add_bos = anneal_tokenizer_add_bos(tok) && anneal_tokenizer_bos(tok) >= 0;
    double nll = 0, nll2 = 0;
    int64_t count = 0, bytes = 0;
    uint64_t t0 = anneal_time_ns();
    for (int64_t c = 0; c < n_chunks; c++) {
        memcpy(w->chunk, w->ids + c * n_ctx, (size_t)n_ctx * sizeof *w->chunk);
        if (add_bos) w->chunk[0] = anneal_tokenizer_bos(tok);
        anneal_kv_seq_clear(w->kv, 0);
        for (int32_t at = 0; at < n_ctx;) {
            int32_t n = n_ctx - at < cp.max_batch ? n_ctx - at : cp.max_batch;
            anneal_batch b = {.n_tokens = n, .tokens = w->chunk + at, .seq = w->seq, .pos = w->pos + at,
                              .output = w->out_mask + at};
            int32_t n_out = 0;
            if ((st = anneal_forward(w->ctx, w->kv, &b, w->logits, cp.max_batch, &n_out, err))) return st;
            int32_t row = 0;
            for (int32_t j = at; j < at + n; j++) {
                if (!w->out_mask[j]) continue;
                int32_t target = w->chunk[j + 1];
                double v = nll_of(w->logits + (size_t)row++ * (size_t)cfg->n_vocab, cfg->n_vocab, target);
                nll += v;
                nll2 += v * v;
                count++;
                int64_t l = anneal_tokenizer_piece(tok, target, false, NULL, 0);
                bytes += l > 0 ? l : 0;
            }
            at += n;
        }
        if (p->progress) p->progress(p->user, (int32_t)c + 1, (int32_t)n_chunks, exp(nll / (double)count));
    }
    double mean = nll / (double)count;
    double var = count > 1 ? (nll2 / (double)count - mean * mean) / (double)(count - 1) : 0;
    *out = (anneal_ppl_result){
        .ppl = exp(mean),
        .ppl_stderr = exp(mean) * sqrt(var > 0 ? var : 0),
        .nll_sum = nll,
        .bits_per_byte = bytes > 0 ? nll / log(2.0) / (double)bytes : 0,
        .scored_tokens = count,
        .scored_bytes = bytes,
        .n_chunks = (int32_t)n_chunks,
        .n_ctx = n_ctx,
        .n_text_tokens = (int64_t)n_tok,
        .seconds = (double)(anneal_time_ns() - t0) / 1e9,
    };
    return ANNEAL_OK;
}

anneal_status anneal_perplexity(const anneal_model *m, const anneal_tokenizer *tok,
                                const char *text, size_t len,
                                const anneal_ppl_params *p, anneal_ppl_result *out,
                                anneal_err *err) {
    memset(out, 0, sizeof *out);
    ppl_work w = {0};
    anneal_status st = run(m, tok, text, len, p, out, &w, err);
    work_free(&w);
    return st;
}
