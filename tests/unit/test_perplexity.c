// Perplexity (src/eval) against an independent computation: the same chunks decoded one
// token at a time through the forward pass, scored in the test.
#include "anneal/eval.h"
#include "anneal/tensor.h"
#include "model_fixture.h"
#include "test.h"

#include <math.h>
#include <unistd.h>

static char g_path[256];
static anneal_model *g_model;
static anneal_tokenizer *g_tok;
static char *g_text;
static size_t g_len;

// The llama.cpp method written out directly: tokens with BOS, chunk c = ids[c*n .. c*n+n)
// with BOS first, every position decoded alone, rows n/2 .. n-2 scored.
static double reference_nll(int32_t n_ctx, int32_t n_chunks, int64_t *count, int64_t *bytes) {
    const anneal_tokenizer *tok = g_tok;
    int32_t n_vocab = anneal_model_config_of(g_model)->n_vocab;
    size_t n_tok = 0;
    anneal_tokenizer_encode(tok, g_text, g_len, ANNEAL_TOK_ADD_SPECIAL, NULL, 0, &n_tok, NULL);
    int32_t *ids = calloc(n_tok, sizeof *ids);
    CHECK_EQ(anneal_tokenizer_encode(tok, g_text, g_len, ANNEAL_TOK_ADD_SPECIAL, ids, n_tok, &n_tok, NULL),
             ANNEAL_OK);
    CHECK_EQ(ids[0], anneal_tokenizer_bos(tok));
    anneal_ctx *ctx = NULL;
    anneal_kv *kv = NULL;
    anneal_ctx_params cp = anneal_ctx_params_default();
    cp.n_threads = 1;
    anneal_kv_params kp = anneal_kv_params_default(n_ctx, 1);
    CHECK_EQ(anneal_ctx_new(g_model, &cp, &ctx, NULL), ANNEAL_OK);
    CHECK_EQ(anneal_kv_new(g_model, &kp, &kv, NULL), ANNEAL_OK);
    float *logits = calloc((size_t)n_vocab, sizeof *logits);
    double nll = 0;
    *count = *bytes = 0;
    for (int32_t c = 0; c < n_chunks; c++) {
        anneal_kv_seq_clear(kv, 0);
        for (int32_t j = 0; j < n_ctx - 1; j++) {
            int32_t t = j == 0 ? anneal_tokenizer_bos(tok) : ids[c * n_ctx + j], seq = 0, n_out = 0;
            anneal_batch b = {.n_tokens = 1, .tokens = &t, .seq = &seq, .pos = &j};
            CHECK_EQ(anneal_forward(ctx, kv, &b, logits, 1, &n_out, NULL), ANNEAL_OK);
            if (j < n_ctx / 2) continue;
            int32_t target = ids[c * n_ctx + j + 1];
            double mx = logits[0], sum = 0;
            for (int32_t v = 1; v < n_vocab; v++) mx = logits[v] > mx ? logits[v] : mx;
            for (int32_t v = 0; v < n_vocab; v++) sum += exp(logits[v] - mx);
            nll += log(sum) - (logits[target] - mx);
            (*count)++;
            *bytes += anneal_tokenizer_piece(tok, target, false, NULL, 0);
        }
    }
    free(logits);
    free(ids);
    anneal_kv_free(kv);
    anneal_ctx_free(ctx);
    return nll;
}

static int g_progress_calls;
static void on_progress(void *user, int32_t chunk, int32_t n_chunks, double ppl) {
    (void)user;
    g_progress_calls++;
    CHECK(chunk >= 1 && chunk <= n_chunks && ppl > 1);
}

static void test_matches_reference(void) {
    anneal_ppl_params p = anneal_ppl_params_default();
    CHECK_EQ(p.n_ctx, 512);
    p.n_ctx = 24;
    p.max_chunks = 3;
    p.progress = on_progress;
    anneal_ppl_result r;
    anneal_err e = {0};
    CHECK_EQ(anneal_perplexity(g_model, g_tok, g_text, g_len, &p, &r, &e), ANNEAL_OK);
    CHECK_EQ(r.n_chunks, 3);
    CHECK_EQ(r.scored_tokens, 3 * (24 - 1 - 12));
    CHECK_EQ(g_progress_calls, 3);
    int64_t count, bytes;
    double nll = reference_nll(24, 3, &count, &bytes);
    CHECK_EQ(r.scored_tokens, count);
    CHECK_EQ(r.scored_bytes, bytes);
    // Batched prefill vs one-token decode: same math, different summation order and F16
    // cache rounding in both; the per-token difference is ~1e-6 of a ~10-nat value.
    CHECK_NEAR(r.nll_sum, nll, 1e-4 * fabs(nll));
    CHECK_NEAR(r.ppl, exp(nll / (double)count), 1e-3 * r.ppl);
    CHECK_NEAR(r.bits_per_byte, nll / log(2.0) / (double)bytes, 1e-4);
    CHECK(r.ppl_stderr > 0 && r.ppl_stderr < r.ppl);

    // All chunks by default: floor(tokens / n_ctx) of them.
    p.max_chunks = 0;
    p.progress = NULL;
    CHECK_EQ(anneal_perplexity(g_model, g_tok, g_text, g_len, &p, &r, &e), ANNEAL_OK);
    CHECK_EQ(r.n_chunks, r.n_text_tokens / 24);
}

static void test_errors(void) {
    anneal_ppl_params p = anneal_ppl_params_default();
    anneal_ppl_result r;
    anneal_err e = {0};
    p.n_ctx = 512; // the text is far shorter than 2 * 512 tokens
    CHECK_EQ(anneal_perplexity(g_model, g_tok, g_text, g_len, &p, &r, &e), ANNEAL_ERR_RANGE);
    CHECK_CONTAINS(e.msg, "needs at least 1024");
    anneal_err_clear(&e);
    p.n_ctx = 2;
    CHECK_EQ(anneal_perplexity(g_model, g_tok, g_text, g_len, &p, &r, &e), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(e.msg, "n_ctx 2");
    anneal_err_clear(&e);
    p.n_ctx = 16;
    CHECK_EQ(anneal_perplexity(g_model, g_tok, "", 0, &p, &r, &e), ANNEAL_ERR_RANGE);
}

int main(void) {
    fx_spec s = fx_default();
    fx_path(g_path, sizeof g_path, "ppl", 0);
    fx_write(&s, g_path);
    anneal_err e = {0};
    if (anneal_model_load(g_path, &g_model, &e) != ANNEAL_OK ||
        anneal_tokenizer_load(anneal_model_gguf(g_model), &g_tok, &e) != ANNEAL_OK) {
        fprintf(stderr, "cannot load the test model: %s\n", anneal_err_msg(&e));
        return 1;
    }
    const char *path = test_shared("corpora/tinyshakespeare.txt");
    char *all;
    size_t n;
    if (anneal_read_file(path, (size_t)1 << 24, &all, &n, &e) != ANNEAL_OK) {
        fprintf(stderr, "%s\n", anneal_err_msg(&e));
        return 1;
    }
    g_len = n < 1500 ? n : 1500;
    g_text = all;
    RUN(test_matches_reference);
    RUN(test_errors);
    anneal_free(all);
    anneal_tokenizer_free(g_tok);
    anneal_model_free(g_model);
    unlink(g_path);
    return TEST_EXIT();
}
