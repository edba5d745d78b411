// The continuous-batching scheduler: one thread owns the model context and the paged KV
// cache. Between forward steps it admits queued requests (reusing cached prompt prefixes),
// then runs one forward over a decode token of every running sequence plus a chunk of
// prompt tokens, samples, and hands text to the waiting HTTP threads.
#include "serve_internal.h"

#include "anneal/tensor.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <time.h>

typedef enum seq_state { SEQ_FREE = 0, SEQ_CACHED = 1, SEQ_RUN = 2 } seq_state;

// One KV sequence slot. A RUN slot serves a request; a CACHED slot keeps the KV of a
// finished request so a later prompt with the same prefix can share its blocks.
typedef struct sseq {
    seq_state state;
    bool parked;  // preempted: its KV was dropped, it is recomputed when blocks free up
    srq *r;
    int32_t *tok; // [n_ctx] prompt then generated tokens
    int32_t n_tok;
    int32_t n_kv; // tokens of tok in the cache; the next forward feeds tok[n_kv..n_tok)
    anneal_sampler *smp;
    anneal_stop *stop;
    uint64_t order; // admission order for RUN (youngest = largest), last use for CACHED
    uint64_t t_last;
    int32_t input;  // embed: the input being computed
} sseq;

struct sched {
    const anneal_model *m;
    const anneal_tokenizer *tok;
    sched_params p;
    metrics *mt;
    int32_t n_vocab, n_embd;
    anneal_token eos;
    anneal_kv *kv;
    anneal_ctx *ctx, *hctx; // logits; hidden states (created at the first embedding)
    int32_t n_slots;
    sseq *seqs;
    // one step's batch, sized once
    int32_t *b_tok, *b_seq, *b_pos, *row_seq;
    bool *b_out;
    int32_t *b_take; // per slot: tokens it contributes this step
    float *logits;   // [n_slots][n_vocab]
    float *hidden;   // [prefill_chunk][n_embd]
    char *piece;
    size_t piece_cap;
    uint64_t counter;
    // the queue of admitted-but-not-started requests (a ring), guarded by mu
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srq **q;
    int32_t q_head, q_len;
    bool quit, draining, cancel_all;
    atomic_int active;
    pthread_t th;
    bool started;
};

// ---- requests -------------------------------------------------------------------------

const char *srq_finish_name(srq_finish f) {
    switch (f) {
    case SRQ_FIN_STOP: return "stop";
    case SRQ_FIN_LENGTH: return "length";
    case SRQ_FIN_CANCEL: return "cancelled";
    case SRQ_FIN_TIMEOUT: return "timeout";
    case SRQ_FIN_ERROR: return "error";
    default: return "none";
    }
}

srq *srq_new(srq_kind kind) {
    srq *r = anneal_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->kind = kind;
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&r->cancel, false);
    atomic_init(&r->refs, 1);
    r->t_arrive = anneal_time_ns();
    return r;
}

void srq_release(srq *r) {
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1) return;
    for (size_t i = 0; i < r->n_stops; i++)
        anneal_free(r->stops[i]);
    anneal_free(r->stops);
    anneal_free(r->prompt);
    anneal_free(r->in_off);
    anneal_free(r->text);
    anneal_free(r->samples);
    anneal_free(r->embd);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    anneal_free(r);
}

void srq_cancel(srq *r) {
    atomic_store(&r->cancel, true);
}

static struct timespec abs_after(uint64_t ns) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t t = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + ns;
    ts.tv_sec = (time_t)(t / 1000000000ull);
    ts.tv_nsec = (long)(t % 1000000000ull);
    return ts;
}

bool srq_wait_done(srq *r, uint64_t timeout_ns) {
    struct timespec ts = abs_after(timeout_ns);
    pthread_mutex_lock(&r->mu);
    while (!r->done)
        if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT) break;
    bool done = r->done;
    pthread_mutex_unlock(&r->mu);
    return done;
}

// Marks r finished and wakes its reader. The scheduler's reference is dropped by the caller.
static void complete(sched *s, srq *r, srq_finish f, const char *msg) {
    uint64_t now = anneal_time_ns();
    // Counted out before the reader wakes, so a drain that sees the request done also
    // sees it gone from the active count.
    atomic_fetch_sub(&s->active, 1);
    if (s->mt) {
        metrics_finish(s->mt, f, r->kind == SRQ_GENERATE ? r->n_prompt : 0, r->n_gen, r->n_cached);
        if (r->kind == SRQ_GENERATE && f != SRQ_FIN_CANCEL && f != SRQ_FIN_ERROR) {
            metrics_observe(s->mt, MET_E2E, (double)(now - r->t_arrive) / 1e9);
            metrics_observe(s->mt, MET_PROMPT_TOKENS, r->n_prompt);
            metrics_observe(s->mt, MET_GEN_TOKENS, r->n_gen);
        }
    }
    pthread_mutex_lock(&r->mu);
    r->done = true;
    r->finish = f;
    r->t_end = now;
    if (msg) snprintf(r->err_msg, sizeof r->err_msg, "%s", msg);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

// ---- slots ------------------------------------------------------------------------------

static int32_t seq_id(const sched *s, const sseq *q) {
    return (int32_t)(q - s->seqs);
}

static int32_t n_running(const sched *s) {
    int32_t n = 0;
    for (int32_t i = 0; i < s->n_slots; i++)
        n += s->seqs[i].state == SEQ_RUN;
    return n;
}

static void seq_drop_kv(sched *s, sseq *q) {
    anneal_kv_seq_clear(s->kv, seq_id(s, q));
    q->n_kv = 0;
}

// Ends the request of a RUN slot. Finished generations keep their KV as a cached prefix;
// cancelled, failed and embedding ones return their blocks at once.
static void seq_finish(sched *s, sseq *q, srq_finish f, const char *msg) {
    srq *r = q->r;
    complete(s, r, f, msg);
    anneal_sampler_free(q->smp);
    anneal_stop_free(q->stop);
    q->smp = NULL;
    q->stop = NULL;
    q->r = NULL;
    q->parked = false;
    if (r->kind == SRQ_GENERATE && (f == SRQ_FIN_STOP || f == SRQ_FIN_LENGTH) && q->n_kv > 0) {
        q->state = SEQ_CACHED;
        q->n_tok = q->n_kv;
        q->order = ++s->counter;
    } else {
        seq_drop_kv(s, q);
        q->state = SEQ_FREE;
        q->n_tok = 0;
    }
    srq_release(r);
}

// Drops the least recently used cached prefix other than `keep`; false when none.
static bool evict_one(sched *s, const sseq *keep) {
    sseq *lru = NULL;
    for (int32_t i = 0; i < s->n_slots; i++) {
        sseq *q = &s->seqs[i];
        if (q->state == SEQ_CACHED && q != keep && (!lru || q->order < lru->order)) lru = q;
    }
    if (!lru) return false;
    seq_drop_kv(s, lru);
    lru->state = SEQ_FREE;
    lru->n_tok = 0;
    return true;
}

// Frees cached prefixes (least recently used first) until `need` blocks are free.
static bool make_room(sched *s, int32_t need, const sseq *keep) {
    while (anneal_kv_free_blocks(s->kv) < need)
        if (!evict_one(s, keep)) return false;
    return true;
}

static int32_t blocks_between(const sched *s, int32_t from, int32_t to) {
    int32_t bs = s->p.block_size;
    return (to + bs - 1) / bs - (from + bs - 1) / bs;
}

// A slot for a new sequence: a free one, else the oldest cached prefix other than `keep`.
static sseq *take_slot(sched *s, const sseq *keep) {
    for (int32_t i = 0; i < s->n_slots; i++)
        if (s->seqs[i].state == SEQ_FREE) return &s->seqs[i];
    if (!evict_one(s, keep)) return NULL;
    for (int32_t i = 0; i < s->n_slots; i++)
        if (s->seqs[i].state == SEQ_FREE) return &s->seqs[i];
    return NULL;
}

// The slot (cached or running) sharing the longest prefix with toks[0..n); *lcp its length.
static sseq *best_prefix(sched *s, const int32_t *toks, int32_t n, int32_t *lcp) {
    sseq *best = NULL;
    *lcp = 0;
    for (int32_t i = 0; i < s->n_slots; i++) {
        sseq *q = &s->seqs[i];
        if (q->state == SEQ_FREE || q->n_kv == 0 || (q->r && q->r->kind != SRQ_GENERATE)) continue;
        int32_t lim = q->n_kv < n ? q->n_kv : n, k = 0;
        while (k < lim && q->tok[k] == toks[k])
            k++;
        if (k > *lcp) {
            *lcp = k;
            best = q;
        }
    }
    return best;
}

// ---- admission ----------------------------------------------------------------------------

// Records when r left the queue.
static void admitted(sched *s, srq *r, uint64_t now) {
    r->t_admit = now;
    if (s->mt) metrics_observe(s->mt, MET_QUEUE, (double)(now - r->t_arrive) / 1e9);
}

// Starts r in a slot; false when there is no room yet. A request that fails to start is
// completed with an error (and still counts as taken from the queue).
static bool admit_generate(sched *s, srq *r, uint64_t now) {
    int32_t lcp = 0;
    // At least the last prompt token is computed: its logits give the first token.
    sseq *src = best_prefix(s, r->prompt, r->n_prompt - 1, &lcp);
    int32_t need = blocks_between(s, 0, r->n_prompt) - lcp / s->p.block_size;
    // Keep one block per running sequence in reserve so admissions do not force
    // preemptions on the next decode step.
    if (!make_room(s, need + n_running(s), src)) {
        if (n_running(s) > 0) return false;
        if (!make_room(s, need, NULL)) return false;
        src = NULL;
        lcp = 0;
    }
    sseq *q = take_slot(s, src);
    if (!q) return false;
    anneal_err e = {0};
    admitted(s, r, now);
    if (anneal_sampler_new(&r->sp, s->n_vocab, &q->smp, &e) ||
        anneal_stop_new((const char *const *)r->stops, r->n_stops, r->max_tokens, &q->stop, &e)) {
        anneal_sampler_free(q->smp);
        q->smp = NULL;
        complete(s, r, SRQ_FIN_ERROR, anneal_err_msg(&e));
        srq_release(r);
        return true;
    }
    // The penalties see the prompt, as llama.cpp's do.
    for (int32_t i = 0; i < r->n_prompt; i++)
        anneal_sampler_accept(q->smp, r->prompt[i], NULL);
    memcpy(q->tok, r->prompt, (size_t)r->n_prompt * sizeof *q->tok);
    q->n_tok = r->n_prompt;
    q->n_kv = 0;
    if (src && lcp > 0 && anneal_kv_seq_share(s->kv, seq_id(s, q), seq_id(s, src), lcp, NULL) == ANNEAL_OK)
        q->n_kv = lcp;
    r->n_cached = q->n_kv;
    q->state = SEQ_RUN;
    q->parked = false;
    q->r = r;
    q->order = ++s->counter;
    return true;
}

static bool admit_embed(sched *s, srq *r, uint64_t now) {
    sseq *q = take_slot(s, NULL);
    if (!q) return false;
    admitted(s, r, now);
    q->state = SEQ_RUN;
    q->parked = false;
    q->r = r;
    q->order = ++s->counter;
    q->input = 0;
    q->n_tok = q->n_kv = 0;
    return true;
}

// Resumes parked sequences first (oldest first), then admits queued requests in order
// while slots and blocks allow.
static void admit(sched *s) {
    for (;;) {
        sseq *old = NULL;
        for (int32_t i = 0; i < s->n_slots; i++) {
            sseq *q = &s->seqs[i];
            if (q->state == SEQ_RUN && q->parked && (!old || q->order < old->order)) old = q;
        }
        if (!old) break;
        int32_t active = 0;
        for (int32_t i = 0; i < s->n_slots; i++)
            active += s->seqs[i].state == SEQ_RUN && !s->seqs[i].parked;
        if (!make_room(s, blocks_between(s, 0, old->n_tok) + active, NULL)) return;
        old->parked = false;
    }
    uint64_t now = anneal_time_ns();
    for (;;) {
        if (n_running(s) >= s->p.parallel) return;
        pthread_mutex_lock(&s->mu);
        srq *r = s->q_len ? s->q[s->q_head] : NULL;
        pthread_mutex_unlock(&s->mu);
        if (!r) return;
        bool ok = r->kind == SRQ_GENERATE ? admit_generate(s, r, now) : admit_embed(s, r, now);
        if (!ok) return;
        pthread_mutex_lock(&s->mu);
        s->q_head = (s->q_head + 1) % s->p.max_queue;
        s->q_len--;
        pthread_mutex_unlock(&s->mu);
    }
}

// Drops cancelled and expired requests, queued or running.
static void reap(sched *s) {
    uint64_t now = anneal_time_ns();
    pthread_mutex_lock(&s->mu);
    bool all = s->cancel_all;
    pthread_mutex_unlock(&s->mu);
    for (int32_t i = 0; i < s->n_slots; i++) {
        sseq *q = &s->seqs[i];
        if (q->state != SEQ_RUN) continue;
        if (all) seq_finish(s, q, SRQ_FIN_CANCEL, "the server is shutting down");
        else if (atomic_load(&q->r->cancel)) seq_finish(s, q, SRQ_FIN_CANCEL, NULL);
        else if (q->r->deadline_ns && now > q->r->deadline_ns)
            seq_finish(s, q, SRQ_FIN_TIMEOUT, "the request's deadline passed");
    }
    pthread_mutex_lock(&s->mu);
    int32_t kept = 0, cap = s->p.max_queue;
    for (int32_t i = 0; i < s->q_len; i++) {
        srq *r = s->q[(s->q_head + i) % cap];
        srq_finish f = all || atomic_load(&r->cancel)            ? SRQ_FIN_CANCEL
                       : r->deadline_ns && now > r->deadline_ns ? SRQ_FIN_TIMEOUT
                                                                 : SRQ_FIN_NONE;
        if (f == SRQ_FIN_NONE) {
            s->q[(s->q_head + kept++) % cap] = r;
            continue;
        }
        complete(s, r, f, f == SRQ_FIN_TIMEOUT ? "the request's deadline passed in the queue" : NULL);
        srq_release(r);
    }
    s->q_len = kept;
    pthread_mutex_unlock(&s->mu);
}

// ---- one step -------------------------------------------------------------------------------

// Appends emitted text (and the sample of a generated token) to the request and wakes its
// reader; `counted` when the text comes from a newly generated token.
static void publish(srq *r, const char *text, size_t n, const anneal_sample *smp, bool counted) {
    pthread_mutex_lock(&r->mu);
    if (n) {
        if (r->text_len + n + 1 > r->text_cap) {
            size_t cap = r->text_cap ? r->text_cap : 256;
            while (cap < r->text_len + n + 1)
                cap *= 2;
            char *p = anneal_realloc(r->text, cap);
            if (p) {
                r->text = p;
                r->text_cap = cap;
            }
        }
        if (r->text_len + n + 1 <= r->text_cap) {
            memcpy(r->text + r->text_len, text, n);
            r->text_len += n;
            r->text[r->text_len] = '\0';
        }
    }
    if (smp) {
        if (r->n_samples == r->samples_cap) {
            size_t cap = r->samples_cap ? r->samples_cap * 2 : 16;
            anneal_sample *p = anneal_realloc_array(r->samples, cap, sizeof *p);
            if (p) {
                r->samples = p;
                r->samples_cap = cap;
            }
        }
        if (r->n_samples < r->samples_cap) r->samples[r->n_samples++] = *smp;
    }
    if (counted) r->n_gen++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static int64_t piece_of(sched *s, anneal_token id) {
    int64_t len = anneal_tokenizer_piece(s->tok, id, false, s->piece, s->piece_cap);
    if (len > (int64_t)s->piece_cap) {
        char *p = anneal_realloc(s->piece, (size_t)len);
        if (!p) return -1;
        s->piece = p;
        s->piece_cap = (size_t)len;
        len = anneal_tokenizer_piece(s->tok, id, false, s->piece, s->piece_cap);
    }
    return len;
}

// Samples the next token of q from its logits and streams what it produced.
static void on_logits(sched *s, sseq *q, const float *logits) {
    srq *r = q->r;
    anneal_err e = {0};
    anneal_sample smp;
    if (anneal_sampler_sample(q->smp, logits, &smp, &e)) {
        seq_finish(s, q, SRQ_FIN_ERROR, anneal_err_msg(&e));
        return;
    }
    uint64_t now = anneal_time_ns();
    if (s->mt) {
        if (!r->t_first) metrics_observe(s->mt, MET_TTFT, (double)(now - r->t_arrive) / 1e9);
        else metrics_observe(s->mt, MET_ITL, (double)(now - q->t_last) / 1e9);
    }
    if (!r->t_first) r->t_first = now;
    q->t_last = now;
    anneal_stop_result sr = {0};
    const anneal_sample *keep = r->sp.logprobs ? &smp : NULL;
    bool eog = !r->ignore_eos && (smp.token == s->eos || anneal_tokenizer_token_type(s->tok, smp.token) ==
                                                            ANNEAL_TOK_TYPE_CONTROL);
    if (eog) {
        anneal_stop_end(q->stop, &sr, NULL);
        publish(r, sr.emit, sr.emit_len, keep, true);
        seq_finish(s, q, SRQ_FIN_STOP, NULL);
        return;
    }
    int64_t len = piece_of(s, smp.token);
    if (len < 0) len = 0;
    if (anneal_stop_feed(q->stop, s->piece, (size_t)len, &sr, &e)) {
        seq_finish(s, q, SRQ_FIN_ERROR, anneal_err_msg(&e));
        return;
    }
    publish(r, sr.emit, sr.emit_len, keep, true);
    if (sr.finish != ANNEAL_FINISH_NONE) {
        seq_finish(s, q, sr.finish == ANNEAL_FINISH_STOP ? SRQ_FIN_STOP : SRQ_FIN_LENGTH, NULL);
        return;
    }
    anneal_sampler_accept(q->smp, smp.token, NULL);
    q->tok[q->n_tok++] = smp.token;
    if (q->n_tok >= s->p.n_ctx) {
        // The context is full: the last token cannot be fed back; flush what is held.
        anneal_stop_end(q->stop, &sr, NULL);
        publish(r, sr.emit, sr.emit_len, NULL, false);
        seq_finish(s, q, SRQ_FIN_LENGTH, NULL);
    }
}

// Fills the batch: one token for every decoding sequence, then prompt chunks (oldest
// first) up to the prefill budget. Returns the tokens; *blocks = blocks it needs.
static int32_t build(sched *s, int32_t *blocks) {
    int32_t n = 0;
    *blocks = 0;
    for (int32_t i = 0; i < s->n_slots; i++) {
        sseq *q = &s->seqs[i];
        s->b_take[i] = 0;
        if (q->state != SEQ_RUN || q->parked || q->r->kind != SRQ_GENERATE) continue;
        if (q->n_tok - q->n_kv == 1) s->b_take[i] = 1;
    }
    for (int32_t i = 0; i < s->n_slots; i++)
        n += s->b_take[i];
    int32_t budget = s->p.batch - n < s->p.prefill_chunk ? s->p.batch - n : s->p.prefill_chunk;
    while (budget > 0) {
        sseq *old = NULL;
        for (int32_t i = 0; i < s->n_slots; i++) {
            sseq *q = &s->seqs[i];
            if (q->state == SEQ_RUN && !q->parked && q->r->kind == SRQ_GENERATE && !s->b_take[i] &&
                q->n_tok - q->n_kv > 1 && (!old || q->order < old->order))
                old = q;
        }
        if (!old) break;
        int32_t k = old->n_tok - old->n_kv < budget ? old->n_tok - old->n_kv : budget;
        s->b_take[seq_id(s, old)] = k;
        budget -= k;
        n += k;
    }
    for (int32_t i = 0; i < s->n_slots; i++)
        if (s->b_take[i]) *blocks += blocks_between(s, s->seqs[i].n_kv, s->seqs[i].n_kv + s->b_take[i]);
    return n;
}

// Preempts the youngest running generation: its blocks go back to the pool and it is
// recomputed from its tokens later. false when there is nothing to preempt.
static bool preempt(sched *s) {
    sseq *young = NULL;
    for (int32_t i = 0; i < s->n_slots; i++) {
        sseq *q = &s->seqs[i];
        if (q->state == SEQ_RUN && !q->parked && q->r->kind == SRQ_GENERATE &&
            (!young || q->order > young->order))
            young = q;
    }
    if (!young || n_running(s) < 2) return false;
    seq_drop_kv(s, young);
    young->parked = true;
    if (s->mt) metrics_preempt(s->mt);
    return true;
}

static void step_generate(sched *s) {
    int32_t blocks = 0, n = build(s, &blocks);
    while (n > 0 && !make_room(s, blocks, NULL)) {
        if (!preempt(s)) break;
        n = build(s, &blocks);
    }
    if (n == 0) return;
    int32_t k = 0, rows = 0;
    for (int32_t i = 0; i < s->n_slots; i++) {
        sseq *q = &s->seqs[i];
        for (int32_t j = 0; j < s->b_take[i]; j++, k++) {
            s->b_tok[k] = q->tok[q->n_kv + j];
            s->b_seq[k] = i;
            s->b_pos[k] = q->n_kv + j;
            s->b_out[k] = q->n_kv + j == q->n_tok - 1;
            if (s->b_out[k]) s->row_seq[rows++] = i;
        }
    }
    anneal_batch b = {.n_tokens = n, .tokens = s->b_tok, .seq = s->b_seq, .pos = s->b_pos, .output = s->b_out};
    anneal_err e = {0};
    int32_t n_out = 0;
    if (s->mt) metrics_observe(s->mt, MET_BATCH_TOKENS, n);
    if (anneal_forward(s->ctx, s->kv, &b, s->logits, s->n_slots, &n_out, &e)) {
        // Nothing was appended: fail the sequences of this batch, keep the server up.
        for (int32_t i = 0; i < s->n_slots; i++)
            if (s->b_take[i]) seq_finish(s, &s->seqs[i], SRQ_FIN_ERROR, anneal_err_msg(&e));
        return;
    }
    for (int32_t i = 0; i < s->n_slots; i++)
        if (s->b_take[i]) s->seqs[i].n_kv += s->b_take[i];
    for (int32_t j = 0; j < n_out; j++) {
        sseq *q = &s->seqs[s->row_seq[j]];
        if (q->state == SEQ_RUN) on_logits(s, q, s->logits + (size_t)j * (size_t)s->n_vocab);
    }
}

// One chunk of the oldest embedding request: hidden states of every position, summed into
// its row; at the end of an input the row becomes the L2-normalized mean.
static void step_embed(sched *s) {
    sseq *q = NULL;
    for (int32_t i = 0; i < s->n_slots; i++) {
        sseq *c = &s->seqs[i];
        if (c->state == SEQ_RUN && c->r->kind == SRQ_EMBED && (!q || c->order < q->order)) q = c;
    }
    if (!q) return;
    srq *r = q->r;
    anneal_err e = {0};
    if (!s->hctx) {
        anneal_ctx_params cp = anneal_ctx_params_default();
        cp.max_batch = s->p.prefill_chunk;
        cp.n_threads = s->p.threads;
        cp.output = ANNEAL_OUTPUT_HIDDEN;
        if (anneal_ctx_new(s->m, &cp, &s->hctx, &e)) {
            seq_finish(s, q, SRQ_FIN_ERROR, anneal_err_msg(&e));
            return;
        }
    }
    int32_t start = r->in_off[q->input], len = r->in_off[q->input + 1] - start;
    int32_t k = len - q->n_kv < s->p.prefill_chunk ? len - q->n_kv : s->p.prefill_chunk;
    if (!make_room(s, blocks_between(s, q->n_kv, q->n_kv + k), NULL)) return;
    for (int32_t j = 0; j < k; j++) {
        s->b_tok[j] = r->prompt[start + q->n_kv + j];
        s->b_seq[j] = seq_id(s, q);
        s->b_pos[j] = q->n_kv + j;
        s->b_out[j] = true;
    }
    anneal_batch b = {.n_tokens = k, .tokens = s->b_tok, .seq = s->b_seq, .pos = s->b_pos, .output = s->b_out};
    int32_t n_out = 0;
    if (anneal_forward(s->hctx, s->kv, &b, s->hidden, s->p.prefill_chunk, &n_out, &e)) {
        seq_finish(s, q, SRQ_FIN_ERROR, anneal_err_msg(&e));
        return;
    }
    float *row = r->embd + (size_t)q->input * (size_t)s->n_embd;
    for (int32_t j = 0; j < n_out; j++)
        for (int32_t d = 0; d < s->n_embd; d++)
            row[d] += s->hidden[(size_t)j * (size_t)s->n_embd + (size_t)d];
    q->n_kv += k;
    if (q->n_kv < len) return;
    double norm = 0;
    for (int32_t d = 0; d < s->n_embd; d++) {
        row[d] /= (float)len;
        norm += (double)row[d] * row[d];
    }
    norm = sqrt(norm);
    if (norm > 0)
        for (int32_t d = 0; d < s->n_embd; d++)
            row[d] = (float)(row[d] / norm);
    seq_drop_kv(s, q);
    if (++q->input == r->n_inputs) seq_finish(s, q, SRQ_FIN_STOP, NULL);
}

static void gauges(sched *s, int32_t batch) {
    if (!s->mt) return;
    pthread_mutex_lock(&s->mu);
    int64_t waiting = s->q_len;
    pthread_mutex_unlock(&s->mu);
    int32_t n_run = 0;
    for (int32_t i = 0; i < s->n_slots; i++)
        n_run += s->seqs[i].state == SEQ_RUN;
    int32_t nb = s->p.kv_tokens / s->p.block_size, nf = anneal_kv_free_blocks(s->kv);
    metrics_gauges(s->mt, n_run, waiting, nb - nf, nf, batch);
}

static void *sched_main(void *arg) {
    sched *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->quit && s->q_len == 0 && n_running(s) == 0) {
            struct timespec ts = abs_after(200 * 1000000ull);
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        }
        bool quit = s->quit;
        pthread_mutex_unlock(&s->mu);
        if (quit) break;
        reap(s);
        admit(s);
        step_generate(s);
        step_embed(s);
        int32_t batch = 0;
        for (int32_t i = 0; i < s->n_slots; i++)
            batch += s->seqs[i].state == SEQ_RUN && !s->seqs[i].parked;
        gauges(s, batch);
    }
    for (int32_t i = 0; i < s->n_slots; i++)
        if (s->seqs[i].state == SEQ_RUN) seq_finish(s, &s->seqs[i], SRQ_FIN_CANCEL, "the server is shutting down");
    pthread_mutex_lock(&s->mu);
    while (s->q_len) {
        srq *r = s->q[s->q_head];
        s->q_head = (s->q_head + 1) % s->p.max_queue;
        s->q_len--;
        complete(s, r, SRQ_FIN_CANCEL, "the server is shutting down");
        srq_release(r);
    }
    pthread_mutex_unlock(&s->mu);
    gauges(s, 0);
    return NULL;
}

// ---- public --------------------------------------------------------------------------------

anneal_status sched_new(const anneal_model *m, const anneal_tokenizer *tok, const sched_params *p,
                        metrics *mt, sched **out, anneal_err *err) {
    *out = NULL;
    if (p->n_ctx < 2 || p->parallel < 1 || p->block_size < 1 || p->batch < p->parallel ||
        p->prefill_chunk < 1 || p->prefill_chunk > p->batch || p->max_queue < 1)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "scheduler: need ctx >= 2, parallel >= 1, batch >= parallel, "
                              "1 <= prefill-chunk <= batch, max-queue >= 1");
    int32_t seq_blocks = (p->n_ctx + p->block_size - 1) / p->block_size;
    if (p->kv_tokens / p->block_size < seq_blocks + 1)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "kv-tokens %d is less than one full context (%d) plus a block",
                              (int)p->kv_tokens, (int)p->n_ctx);
    sched *s = anneal_calloc(1, sizeof *s);
    if (!s) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory for the scheduler");
    s->m = m;
    s->tok = tok;
    s->p = *p;
    s->p.kv_tokens = p->kv_tokens / p->block_size * p->block_size;
    s->mt = mt;
    const anneal_model_config *cfg = anneal_model_config_of(m);
    s->n_vocab = cfg->n_vocab;
    s->n_embd = cfg->n_embd;
    s->eos = anneal_tokenizer_eos(tok);
    // Running slots plus as many cached prefixes, plus one so a new sequence never has
    // to evict the prefix it is about to share.
    s->n_slots = 2 * p->parallel + 1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&s->active, 0);
    anneal_kv_params kp = {.block_size = p->block_size,
                           .n_blocks = p->kv_tokens / p->block_size,
                           .max_seqs = s->n_slots,
                           .max_len = p->n_ctx,
                           .type = p->kv_f32 ? ANNEAL_TYPE_F32 : ANNEAL_TYPE_F16};
    anneal_ctx_params cp = anneal_ctx_params_default();
    cp.max_batch = p->batch;
    cp.n_threads = p->threads;
    anneal_status st = anneal_kv_new(m, &kp, &s->kv, err);
    if (!st) st = anneal_ctx_new(m, &cp, &s->ctx, err);
    if (st) {
        sched_free(s);
        return st;
    }
    size_t B = (size_t)p->batch;
    s->seqs = anneal_calloc((size_t)s->n_slots, sizeof *s->seqs);
    s->b_tok = anneal_calloc(B, sizeof *s->b_tok);
    s->b_seq = anneal_calloc(B, sizeof *s->b_seq);
    s->b_pos = anneal_calloc(B, sizeof *s->b_pos);
    s->b_out = anneal_calloc(B, sizeof *s->b_out);
    s->row_seq = anneal_calloc((size_t)s->n_slots, sizeof *s->row_seq);
    s->b_take = anneal_calloc((size_t)s->n_slots, sizeof *s->b_take);
    s->logits = anneal_calloc((size_t)s->n_slots * (size_t)s->n_vocab, sizeof *s->logits);
    s->hidden = anneal_calloc((size_t)p->prefill_chunk * (size_t)s->n_embd, sizeof *s->hidden);
    s->piece_cap = anneal_tokenizer_max_piece(tok) + 16;
    s->piece = anneal_malloc(s->piece_cap);
    s->q = anneal_calloc((size_t)p->max_queue, sizeof *s->q);
    bool ok = s->seqs && s->b_tok && s->b_seq && s->b_pos && s->b_out && s->row_seq && s->b_take &&
              s->logits && s->hidden && s->piece && s->q;
    for (int32_t i = 0; ok && i < s->n_slots; i++)
        ok = (s->seqs[i].tok = anneal_calloc((size_t)p->n_ctx, sizeof(int32_t))) != NULL;
    if (!ok) {
        sched_free(s);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory for the scheduler's buffers");
    }
    if (pthread_create(&s->th, NULL, sched_main, s)) {
        sched_free(s);
        return anneal_err_set(err, ANNEAL_ERR_INTERNAL, "cannot start the scheduler thread");
    }
    s->started = true;
    gauges(s, 0);
    *out = s;
    return ANNEAL_OK;
}

void sched_free(sched *s) {
    if (!s) return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->quit = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->th, NULL);
    }
    if (s->seqs)
        for (int32_t i = 0; i < s->n_slots; i++)
            anneal_free(s->seqs[i].tok);
    anneal_free(s->seqs);
    anneal_free(s->b_tok);
    anneal_free(s->b_seq);
    anneal_free(s->b_pos);
    anneal_free(s->b_out);
    anneal_free(s->row_seq);
    anneal_free(s->b_take);
    anneal_free(s->logits);
    anneal_free(s->hidden);
    anneal_free(s->piece);
    anneal_free(s->q);
    anneal_ctx_free(s->hctx);
    anneal_ctx_free(s->ctx);
    anneal_kv_free(s->kv);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    anneal_free(s);
}

anneal_status sched_submit(sched *s, srq *r, anneal_err *err) {
    int32_t nb = s->p.kv_tokens / s->p.block_size;
    if (r->kind == SRQ_GENERATE) {
        if (r->n_prompt < 1) return anneal_err_set(err, ANNEAL_ERR_RANGE, "the prompt has no tokens");
        if (r->n_prompt >= s->p.n_ctx)
            return anneal_err_set(err, ANNEAL_ERR_RANGE,
                                  "the prompt has %d tokens; the context holds %d (prompt plus at "
                                  "least one generated token)",
                                  (int)r->n_prompt, (int)s->p.n_ctx);
        if (blocks_between(s, 0, r->n_prompt + 1) > nb)
            return anneal_err_set(err, ANNEAL_ERR_RANGE, "the prompt has %d tokens, more than the KV pool",
                                  (int)r->n_prompt);
    } else {
        for (int32_t i = 0; i < r->n_inputs; i++) {
            int32_t len = r->in_off[i + 1] - r->in_off[i];
            if (len < 1) return anneal_err_set(err, ANNEAL_ERR_RANGE, "input %d has no tokens", (int)i);
            if (len > s->p.n_ctx)
                return anneal_err_set(err, ANNEAL_ERR_RANGE,
                                      "input %d has %d tokens; the context holds %d", (int)i, (int)len,
                                      (int)s->p.n_ctx);
        }
        if (!r->embd) {
            r->embd = anneal_calloc((size_t)r->n_inputs * (size_t)s->n_embd, sizeof *r->embd);
            if (!r->embd) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory for embeddings");
        }
    }
    pthread_mutex_lock(&s->mu);
    anneal_status st = ANNEAL_OK;
    if (s->draining || s->quit) st = anneal_err_set(err, ANNEAL_ERR_UNSUPPORTED, "the server is draining");
    else if (s->q_len >= s->p.max_queue)
        st = anneal_err_set(err, ANNEAL_ERR_LIMIT, "the queue is full (%d requests waiting)", (int)s->q_len);
    if (st == ANNEAL_OK) {
        atomic_fetch_add(&r->refs, 1);
        atomic_fetch_add(&s->active, 1);
        s->q[(s->q_head + s->q_len++) % s->p.max_queue] = r;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

void sched_cancel_all(sched *s) {
    pthread_mutex_lock(&s->mu);
    s->draining = true;
    s->cancel_all = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void sched_set_draining(sched *s) {
    pthread_mutex_lock(&s->mu);
    s->draining = true;
    pthread_mutex_unlock(&s->mu);
}

bool sched_queue_full(sched *s) {
    pthread_mutex_lock(&s->mu);
    bool full = s->q_len >= s->p.max_queue;
    pthread_mutex_unlock(&s->mu);
    return full;
}

int32_t sched_active(sched *s) {
    return atomic_load(&s->active);
}

const sched_params *sched_params_of(const sched *s) {
    return &s->p;
}
