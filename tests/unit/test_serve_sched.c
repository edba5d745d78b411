// The serving scheduler on a tiny random model: continuous batching, chunked prefill,
// prefix sharing and preemption must give exactly the tokens of a plain one-sequence
// greedy decode; cancellation frees the KV at once; limits answer with the right status.
// Also the KV cache's block sharing (anneal_kv_seq_share, copy on write on truncate).
#include "model_fixture.h"
#include "serve/serve_internal.h"
#include "test.h"

#include "anneal/tokenizer.h"

#include <time.h>

static anneal_model *g_m;
static anneal_tokenizer *g_tok;

static int32_t argmax(const float *x, int32_t n) {
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

// Greedy decode of one sequence straight through anneal_forward, F32 cache.
static void ref_greedy(const int32_t *prompt, int32_t np, int32_t ng, int32_t *out) {
    anneal_err e = {0};
    anneal_kv_params kp = anneal_kv_params_default(512, 1);
    kp.type = ANNEAL_TYPE_F32;
    anneal_kv *kv = NULL;
    anneal_ctx *c = NULL;
    anneal_ctx_params cp = anneal_ctx_params_default();
    cp.n_threads = 2;
    CHECK_EQ(anneal_kv_new(g_m, &kp, &kv, &e), ANNEAL_OK);
    CHECK_EQ(anneal_ctx_new(g_m, &cp, &c, &e), ANNEAL_OK);
    int32_t nv = anneal_model_config_of(g_m)->n_vocab;
    float *lg = malloc((size_t)nv * sizeof *lg);
    int32_t seq[512] = {0}, pos[512];
    for (int32_t i = 0; i < 512; i++)
        pos[i] = i;
    anneal_batch b = {.n_tokens = np, .tokens = prompt, .seq = seq, .pos = pos};
    int32_t n_out = 0;
    CHECK_EQ(anneal_forward(c, kv, &b, lg, 1, &n_out, &e), ANNEAL_OK);
    for (int32_t i = 0; i < ng; i++) {
        out[i] = argmax(lg, nv);
        anneal_batch d = {.n_tokens = 1, .tokens = &out[i], .seq = seq, .pos = &pos[np + i]};
        CHECK_EQ(anneal_forward(c, kv, &d, lg, 1, &n_out, &e), ANNEAL_OK);
    }
    free(lg);
    anneal_ctx_free(c);
    anneal_kv_free(kv);
}

static sched_params params(void) {
    sched_params p = {.n_ctx = 256, .parallel = 4, .kv_tokens = 4096, .block_size = 16, .batch = 64,
                      .prefill_chunk = 16, .threads = 2, .max_queue = 16, .kv_f32 = true};
    return p;
}

// A greedy request for ng tokens that records token ids (logprobs on).
static srq *greedy_req(const int32_t *prompt, int32_t np, int32_t ng) {
    srq *r = srq_new(SRQ_GENERATE);
    r->prompt = malloc((size_t)np * sizeof *r->prompt);
    memcpy(r->prompt, prompt, (size_t)np * sizeof *r->prompt);
    r->n_prompt = np;
    r->sp = anneal_sampler_params_neutral();
    r->sp.temperature = 0;
    r->sp.logprobs = true;
    r->max_tokens = ng;
    r->ignore_eos = true;
    snprintf(r->id, sizeof r->id, "t");
    return r;
}

static void prompt_of(int32_t seed, int32_t n, int32_t *out) {
    uint64_t s = (uint64_t)seed * 7919u + 13u;
    for (int32_t i = 0; i < n; i++)
        out[i] = (int32_t)(fx_next(&s) % 31000) + 500;
}

static bool wait(srq *r) {
    return srq_wait_done(r, 60ull * 1000000000ull);
}

static void check_tokens(srq *r, const int32_t *want, int32_t n) {
    CHECK_EQ(r->n_samples, n);
    int bad = 0;
    for (int32_t i = 0; i < n && i < (int32_t)r->n_samples; i++)
        bad += r->samples[i].token != want[i];
    CHECK_EQ(bad, 0);
}

static void test_single_matches_reference(void) {
    sched_params p = params();
    sched *s = NULL;
    anneal_err e = {0};
    CHECK_EQ(sched_new(g_m, g_tok, &p, NULL, &s, &e), ANNEAL_OK);
    int32_t prompt[7], want[12];
    prompt_of(1, 7, prompt);
    ref_greedy(prompt, 7, 12, want);
    srq *r = greedy_req(prompt, 7, 12);
    CHECK_EQ(sched_submit(s, r, &e), ANNEAL_OK);
    CHECK(wait(r));
    CHECK_EQ(r->finish, SRQ_FIN_LENGTH);
    CHECK_EQ(r->n_gen, 12);
    check_tokens(r, want, 12);
    // The text is the tokens' pieces (nothing held back: no stop strings).
    char text[4096];
    size_t len = 0;
    for (int32_t i = 0; i < 12; i++) {
        int64_t n = anneal_tokenizer_piece(g_tok, want[i], false, text + len, sizeof text - len);
        len += (size_t)n;
    }
    CHECK_EQ(r->text_len, len);
    CHECK(r->text && memcmp(r->text, text, len) == 0);
    CHECK(r->t_first >= r->t_admit && r->t_admit >= r->t_arrive && r->t_end >= r->t_first);
    srq_release(r);
    sched_free(s);
}

// Requests of different lengths submitted together, prefilled in chunks of 16 while
// others decode, four at a time out of six.
static void run_concurrent(sched_params p, metrics *mt) {
    sched *s = NULL;
    anneal_err e = {0};
    CHECK_EQ(sched_new(g_m, g_tok, &p, mt, &s, &e), ANNEAL_OK);
    enum { N = 6, G = 12 };
    static const int32_t lens[N] = {3, 40, 17, 5, 33, 9};
    int32_t prompts[N][64], want[N][G];
    srq *r[N];
    for (int i = 0; i < N; i++) {
        prompt_of(10 + i, lens[i], prompts[i]);
        ref_greedy(prompts[i], lens[i], G, want[i]);
    }
    for (int i = 0; i < N; i++) {
        r[i] = greedy_req(prompts[i], lens[i], G);
        CHECK_EQ(sched_submit(s, r[i], &e), ANNEAL_OK);
    }
    for (int i = 0; i < N; i++) {
        CHECK(wait(r[i]));
        CHECK_EQ(r[i]->finish, SRQ_FIN_LENGTH);
        check_tokens(r[i], want[i], G);
        srq_release(r[i]);
    }
    CHECK_EQ(sched_active(s), 0);
    sched_free(s);
}

static void test_concurrent_matches_reference(void) {
    run_concurrent(params(), NULL);
}

// A pool of 24 blocks of 4 for four sequences of up to 52 positions: sequences are
// preempted and recomputed, and still produce the reference tokens.
static void test_preemption_matches_reference(void) {
    metrics mt;
    anneal_err e = {0};
    CHECK_EQ(metrics_init(&mt, "tiny", &e), ANNEAL_OK);
    sched_params p = params();
    p.n_ctx = 64;
    p.block_size = 4;
    p.kv_tokens = 96;
    run_concurrent(p, &mt);
    CHECK(mt.preemptions > 0);
    CHECK_EQ(mt.finish[SRQ_FIN_LENGTH], 6);
    CHECK_EQ(mt.gen_tokens, 6 * 12);
    CHECK_EQ(mt.prompt_tokens, 3 + 40 + 17 + 5 + 33 + 9);
    metrics_destroy(&mt);
}

static void test_prefix_reuse(void) {
    sched_params p = params();
    sched *s = NULL;
    anneal_err e = {0};
    CHECK_EQ(sched_new(g_m, g_tok, &p, NULL, &s, &e), ANNEAL_OK);
    int32_t prompt[60], want[10];
    prompt_of(3, 60, prompt);
    // First 40 tokens, then the same 40 again, then 60 sharing the first 40.
    srq *a = greedy_req(prompt, 40, 10);
    CHECK_EQ(sched_submit(s, a, &e), ANNEAL_OK);
    CHECK(wait(a));
    CHECK_EQ(a->n_cached, 0);
    srq *b = greedy_req(prompt, 40, 10);
    CHECK_EQ(sched_submit(s, b, &e), ANNEAL_OK);
    CHECK(wait(b));
    CHECK_EQ(b->n_cached, 39); // all but the last prompt token, whose logits are needed
    ref_greedy(prompt, 40, 10, want);
    check_tokens(a, want, 10);
    check_tokens(b, want, 10);
    srq *c = greedy_req(prompt, 60, 10);
    CHECK_EQ(sched_submit(s, c, &e), ANNEAL_OK);
    CHECK(wait(c));
    CHECK_EQ(c->n_cached, 40);
    ref_greedy(prompt, 60, 10, want);
    check_tokens(c, want, 10);
    srq_release(a);
    srq_release(b);
    srq_release(c);
    sched_free(s);
}

static void test_cancel_frees_blocks(void) {
    metrics mt;
    anneal_err e = {0};
    CHECK_EQ(metrics_init(&mt, "tiny", &e), ANNEAL_OK);
    sched_params p = params();
    sched *s = NULL;
    CHECK_EQ(sched_new(g_m, g_tok, &p, &mt, &s, &e), ANNEAL_OK);
    int32_t prompt[20];
    prompt_of(5, 20, prompt);
    srq *r = greedy_req(prompt, 20, 200);
    CHECK_EQ(sched_submit(s, r, &e), ANNEAL_OK);
    // Wait for a first token, then cancel.
    for (int i = 0; i < 6000; i++) {
        pthread_mutex_lock(&r->mu);
        bool started = r->n_gen > 0;
        pthread_mutex_unlock(&r->mu);
        if (started) break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    srq_cancel(r);
    CHECK(wait(r));
    CHECK_EQ(r->finish, SRQ_FIN_CANCEL);
    CHECK(r->n_gen < 200);
    int64_t used = -1;
    for (int i = 0; i < 2000 && used != 0; i++) {
        pthread_mutex_lock(&mt.mu);
        used = mt.kv_used;
        pthread_mutex_unlock(&mt.mu);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    CHECK_EQ(used, 0);
    CHECK_EQ(mt.finish[SRQ_FIN_CANCEL], 1);
    srq_release(r);
    sched_free(s);
    metrics_destroy(&mt);
}

static void test_limits(void) {
    sched_params p = params();
    p.parallel = 1;
    p.max_queue = 2;
    p.n_ctx = 32;
    p.kv_tokens = 64;
    sched *s = NULL;
    anneal_err e = {0};
    CHECK_EQ(sched_new(g_m, g_tok, &p, NULL, &s, &e), ANNEAL_OK);
    int32_t prompt[40];
    prompt_of(7, 40, prompt);
    srq *big = greedy_req(prompt, 32, 1);
    anneal_err_clear(&e);
    CHECK_EQ(sched_submit(s, big, &e), ANNEAL_ERR_RANGE);
    CHECK_CONTAINS(e.msg, "32 tokens");
    srq_release(big);
    // Ten submissions at once: one runs, two wait, the rest find the queue full.
    srq *r[10];
    bool queued[10];
    int full = 0;
    for (int i = 0; i < 10; i++) {
        r[i] = greedy_req(prompt, 8, 10);
        anneal_err_clear(&e);
        anneal_status st = sched_submit(s, r[i], &e);
        queued[i] = st == ANNEAL_OK;
        if (st == ANNEAL_ERR_LIMIT) full++;
        else CHECK_EQ(st, ANNEAL_OK);
    }
    CHECK(full >= 7);
    for (int i = 0; i < 10; i++) {
        if (queued[i]) {
            CHECK(wait(r[i]));
            CHECK_EQ(r[i]->n_gen, 10);
        }
        srq_release(r[i]);
    }
    sched_set_draining(s);
    srq *late = greedy_req(prompt, 8, 2);
    CHECK_EQ(sched_submit(s, late, &e), ANNEAL_ERR_UNSUPPORTED);
    srq_release(late);
    sched_free(s);
}

static void test_deadline(void) {
    sched_params p = params();
    sched *s = NULL;
    anneal_err e = {0};
    CHECK_EQ(sched_new(g_m, g_tok, &p, NULL, &s, &e), ANNEAL_OK);
    int32_t prompt[8];
    prompt_of(9, 8, prompt);
    srq *r = greedy_req(prompt, 8, 240);
    r->deadline_ns = anneal_time_ns() + 5000000; // 5 ms: far less than 240 tokens take
    CHECK_EQ(sched_submit(s, r, &e), ANNEAL_OK);
    CHECK(wait(r));
    CHECK_EQ(r->finish, SRQ_FIN_TIMEOUT);
    CHECK(r->n_gen < 240);
    srq_release(r);
    sched_free(s);
}

// A stop string taken from the greedy text ends the text right before it.
static void test_stop_string(void) {
    sched_params p = params();
    sched *s = NULL;
    anneal_err e = {0};
    CHECK_EQ(sched_new(g_m, g_tok, &p, NULL, &s, &e), ANNEAL_OK);
    int32_t prompt[6];
    prompt_of(11, 6, prompt);
    srq *a = greedy_req(prompt, 6, 16);
    CHECK_EQ(sched_submit(s, a, &e), ANNEAL_OK);
    CHECK(wait(a));
    CHECK(a->text_len > 12);
    srq *b = greedy_req(prompt, 6, 16);
    b->stops = calloc(1, sizeof *b->stops);
    b->stops[0] = anneal_strndup(a->text + 8, 3);
    b->n_stops = 1;
    CHECK_EQ(sched_submit(s, b, &e), ANNEAL_OK);
    CHECK(wait(b));
    CHECK_EQ(b->finish, SRQ_FIN_STOP);
    const char *at = strstr(a->text, b->stops[0]);
    CHECK(at != NULL);
    if (at) {
        CHECK_EQ(b->text_len, (size_t)(at - a->text));
        CHECK(memcmp(b->text ? b->text : "", a->text, b->text_len) == 0);
    }
    srq_release(a);
    srq_release(b);
    sched_free(s);
}

// Embeddings: the L2-normalized mean of the final hidden states, computed directly.
static void test_embed(void) {
    sched_params p = params();
    sched *s = NULL;
    anneal_err e = {0};
    CHECK_EQ(sched_new(g_m, g_tok, &p, NULL, &s, &e), ANNEAL_OK);
    int32_t in[50];
    prompt_of(13, 50, in);
    srq *r = srq_new(SRQ_EMBED);
    r->prompt = malloc(sizeof in + 20 * sizeof(int32_t));
    memcpy(r->prompt, in, sizeof in);
    memcpy(r->prompt + 50, in, 20 * sizeof(int32_t));
    r->n_prompt = 70;
    r->n_inputs = 2;
    r->in_off = calloc(3, sizeof *r->in_off);
    r->in_off[1] = 50;
    r->in_off[2] = 70;
    CHECK_EQ(sched_submit(s, r, &e), ANNEAL_OK);
    CHECK(wait(r));
    CHECK_EQ(r->finish, SRQ_FIN_STOP);
    int32_t E = anneal_model_config_of(g_m)->n_embd;
    // Direct: hidden rows of all 50 positions in one forward.
    anneal_kv_params kp = anneal_kv_params_default(64, 1);
    kp.type = ANNEAL_TYPE_F32;
    anneal_ctx_params cp = anneal_ctx_params_default();
    cp.output = ANNEAL_OUTPUT_HIDDEN;
    cp.n_threads = 2;
    anneal_kv *kv = NULL;
    anneal_ctx *c = NULL;
    CHECK_EQ(anneal_kv_new(g_m, &kp, &kv, &e), ANNEAL_OK);
    CHECK_EQ(anneal_ctx_new(g_m, &cp, &c, &e), ANNEAL_OK);
    float *h = malloc((size_t)50 * (size_t)E * sizeof *h);
    int32_t seq[50] = {0}, pos[50];
    bool out[50];
    for (int i = 0; i < 50; i++) {
        pos[i] = i;
        out[i] = true;
    }
    anneal_batch b = {.n_tokens = 50, .tokens = in, .seq = seq, .pos = pos, .output = out};
    int32_t n_out = 0;
    CHECK_EQ(anneal_forward(c, kv, &b, h, 50, &n_out, &e), ANNEAL_OK);
    double norm = 0, max_err = 0;
    double *mean = calloc((size_t)E, sizeof *mean);
    for (int32_t d = 0; d < E; d++) {
        for (int i = 0; i < 50; i++)
            mean[d] += h[(size_t)i * (size_t)E + (size_t)d];
        mean[d] /= 50;
        norm += mean[d] * mean[d];
    }
    double n2 = 0;
    for (int32_t d = 0; d < E; d++) {
        double diff = fabs(mean[d] / sqrt(norm) - r->embd[d]);
        if (diff > max_err) max_err = diff;
        n2 += (double)r->embd[E + d] * r->embd[E + d];
    }
    CHECK(max_err < 1e-5);
    CHECK_NEAR(n2, 1.0, 1e-5);
    free(mean);
    free(h);
    anneal_ctx_free(c);
    anneal_kv_free(kv);
    srq_release(r);
    sched_free(s);
}

// ---- the KV cache's block sharing ----------------------------------------------------------

// Logits of feeding toks[from..to) to seq (which holds `from` positions) into lg.
static void feed(anneal_ctx *c, anneal_kv *kv, int32_t seq, const int32_t *toks, int32_t from, int32_t to,
                 float *lg) {
    int32_t sq[64], pos[64], n_out = 0;
    for (int32_t i = from; i < to; i++) {
        sq[i - from] = seq;
        pos[i - from] = i;
    }
    anneal_batch b = {.n_tokens = to - from, .tokens = toks + from, .seq = sq, .pos = pos};
    anneal_err e = {0};
    CHECK_EQ(anneal_forward(c, kv, &b, lg, 1, &n_out, &e), ANNEAL_OK);
}

static double max_diff(const float *a, const float *b, int32_t n) {
    double m = 0;
    for (int32_t i = 0; i < n; i++)
        if (fabs((double)a[i] - b[i]) > m) m = fabs((double)a[i] - b[i]);
    return m;
}

static void test_kv_share(void) {
    anneal_err e = {0};
    anneal_kv_params kp = {.block_size = 4, .n_blocks = 12, .max_seqs = 3, .max_len = 40, .type = ANNEAL_TYPE_F32};
    anneal_kv *kv = NULL;
    anneal_ctx *c = NULL;
    anneal_ctx_params cp = anneal_ctx_params_default();
    cp.n_threads = 2;
    CHECK_EQ(anneal_kv_new(g_m, &kp, &kv, &e), ANNEAL_OK);
    CHECK_EQ(anneal_ctx_new(g_m, &cp, &c, &e), ANNEAL_OK);
    int32_t nv = anneal_model_config_of(g_m)->n_vocab;
    float *l0 = malloc((size_t)nv * sizeof *l0), *l1 = malloc((size_t)nv * sizeof *l1);
    int32_t t[16];
    prompt_of(21, 16, t);
    feed(c, kv, 0, t, 0, 10, l0); // 3 blocks, the last with 2 positions
    CHECK_EQ(anneal_kv_free_blocks(kv), 9);
    // Share 10 positions: 2 full blocks by reference, the partial one copied.
    CHECK_EQ(anneal_kv_seq_share(kv, 1, 0, 10, &e), ANNEAL_OK);
    CHECK_EQ(anneal_kv_seq_len(kv, 1), 10);
    CHECK_EQ(anneal_kv_free_blocks(kv), 8);
    // Both continue with different tokens; each equals a fresh run of its own tokens.
    int32_t u[16];
    memcpy(u, t, sizeof u);
    u[10] = 777;
    feed(c, kv, 0, t, 10, 14, l0);
    feed(c, kv, 1, u, 10, 14, l1);
    CHECK_EQ(anneal_kv_free_blocks(kv), 6);
    float *ref = malloc((size_t)nv * sizeof *ref);
    feed(c, kv, 2, u, 0, 14, ref);
    CHECK(max_diff(ref, l1, nv) < 1e-4);
    anneal_kv_seq_clear(kv, 2);
    // Clearing the source keeps the blocks the other sequence still holds.
    anneal_kv_seq_clear(kv, 0);
    CHECK_EQ(anneal_kv_free_blocks(kv), 8); // seq 1 holds 4 blocks
    anneal_kv_seq_clear(kv, 1);
    CHECK_EQ(anneal_kv_free_blocks(kv), 12);
    // Copy on write: seq 1 shares 8 positions (two full blocks), truncates to 6 and
    // continues differently; seq 0 must not see the change.
    feed(c, kv, 0, t, 0, 8, l0);
    CHECK_EQ(anneal_kv_seq_share(kv, 1, 0, 8, &e), ANNEAL_OK);
    CHECK_EQ(anneal_kv_free_blocks(kv), 10);
    CHECK_EQ(anneal_kv_seq_truncate(kv, 1, 6, &e), ANNEAL_OK);
    CHECK_EQ(anneal_kv_free_blocks(kv), 9); // the shared second block was copied
    u[6] = 999;
    feed(c, kv, 1, u, 6, 9, l1);
    feed(c, kv, 0, t, 8, 9, l0);
    feed(c, kv, 2, t, 0, 9, ref);
    CHECK(max_diff(ref, l0, nv) < 1e-4);
    anneal_kv_seq_clear(kv, 2);
    feed(c, kv, 2, u, 0, 9, ref);
    CHECK(max_diff(ref, l1, nv) < 1e-4);
    // Errors change nothing.
    anneal_err_clear(&e);
    CHECK_EQ(anneal_kv_seq_share(kv, 1, 0, 4, &e), ANNEAL_ERR_INVALID_ARG); // dst not empty
    anneal_err_clear(&e);
    CHECK_EQ(anneal_kv_seq_share(kv, 0, 0, 4, &e), ANNEAL_ERR_INVALID_ARG);
    anneal_kv_seq_clear(kv, 2);
    anneal_err_clear(&e);
    CHECK_EQ(anneal_kv_seq_share(kv, 2, 0, 10, &e), ANNEAL_ERR_RANGE);
    anneal_err_clear(&e);
    CHECK_EQ(anneal_kv_seq_share(kv, 3, 0, 1, &e), ANNEAL_ERR_INVALID_ARG);
    free(ref);
    free(l0);
    free(l1);
    anneal_ctx_free(c);
    anneal_kv_free(kv);
}

int main(void) {
    char path[256];
    fx_path(path, sizeof path, "serve", 1);
    fx_spec spec = fx_default();
    fx_write(&spec, path);
    anneal_err e = {0};
    if (anneal_model_load(path, &g_m, &e) || anneal_tokenizer_load(anneal_model_gguf(g_m), &g_tok, &e)) {
        fprintf(stderr, "cannot load the fixture: %s\n", anneal_err_msg(&e));
        return 1;
    }
    RUN(test_kv_share);
    RUN(test_single_matches_reference);
    RUN(test_concurrent_matches_reference);
    RUN(test_preemption_matches_reference);
    RUN(test_prefix_reuse);
    RUN(test_cancel_frees_blocks);
    RUN(test_limits);
    RUN(test_deadline);
    RUN(test_stop_string);
    RUN(test_embed);
    anneal_tokenizer_free(g_tok);
    anneal_model_free(g_m);
    unlink(path);
    return TEST_EXIT();
}
