// Internals of the server shared by http.c, api.c, scheduler.c, auth.c, ratelimit.c,
// metrics.c and config.c: the request record that the HTTP threads and the scheduler
// thread share, the scheduler, request parsing, metrics and guards.
#ifndef ANNEAL_SERVE_INTERNAL_H
#define ANNEAL_SERVE_INTERNAL_H

#include "anneal/generate.h"
#include "anneal/model.h"
#include "anneal/serve.h"
#include "anneal/tokenizer.h"

#include <pthread.h>
#include <stdatomic.h>

// ---- string builder ----------------------------------------------------------------
// A growable byte buffer for response bodies; on allocation failure `oom` is set and
// further appends are dropped (the caller answers 500).
typedef struct sb {
    char *p;
    size_t len, cap;
    bool oom;
} sb;
void sb_free(sb *b);
void sb_put(sb *b, const char *s, size_t n);
void sb_puts(sb *b, const char *s);
void sb_printf(sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// A JSON string literal (quotes included); invalid UTF-8 bytes become U+FFFD.
void sb_json_str(sb *b, const char *s, size_t n);
// A float as JSON: finite values with %.9g, NaN/inf as the given fallback text.
void sb_json_float(sb *b, double v);
// True when s[0..n) is valid UTF-8.
bool serve_utf8_valid(const char *s, size_t n);

// ---- requests shared between an HTTP thread and the scheduler -----------------------
typedef enum srq_kind { SRQ_GENERATE = 0, SRQ_EMBED = 1 } srq_kind;

typedef enum srq_finish {
    SRQ_FIN_NONE = 0,
    SRQ_FIN_STOP = 1,    // end-of-generation token or stop string
    SRQ_FIN_LENGTH = 2,  // max_tokens or the context is full
    SRQ_FIN_CANCEL = 3,  // the client went away (or the server shut down)
    SRQ_FIN_TIMEOUT = 4, // the request's deadline passed
    SRQ_FIN_ERROR = 5,   // the engine failed; err_msg says why
} srq_finish;
const char *srq_finish_name(srq_finish f); // "stop", "length", "cancelled", "timeout", "error"

// One request. Inputs are written by the HTTP thread before sched_submit and read-only
// afterwards; outputs are guarded by mu and announced on cv. Reference counted: the
// submitter holds one reference, the scheduler another while it knows the request.
typedef struct srq {
    char id[40];
    srq_kind kind;
    // inputs
    int32_t *prompt;   // generate: the prompt; embed: all inputs back to back
    int32_t n_prompt;
    int32_t n_inputs;  // embed: inputs; in_off[i]..in_off[i+1] are input i's tokens
    int32_t *in_off;
    anneal_sampler_params sp;
    int32_t max_tokens;
    bool ignore_eos;
    char **stops;
    size_t n_stops;
    uint64_t deadline_ns; // anneal_time_ns() after which the request is dropped; 0 = none
    // outputs (under mu)
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *text; // emitted text, text_len bytes (the reader consumes from text_read)
    size_t text_len, text_cap, text_read;
    anneal_sample *samples; // per generated token when sp.logprobs
    size_t n_samples, samples_cap, samples_read;
    float *embd; // embed: n_inputs rows of n_embd, L2-normalized means
    bool done;
    srq_finish finish;
    char err_msg[256];
    int32_t n_cached; // prompt positions reused from the prefix cache
    int32_t n_gen;    // generated tokens
    uint64_t t_arrive, t_admit, t_first, t_end; // anneal_time_ns()
    atomic_bool cancel;
    atomic_int refs;
} srq;

// A fresh request with one reference (the caller's), or NULL when out of memory.
srq *srq_new(srq_kind kind);
void srq_release(srq *r); // drops one reference; frees at zero
void srq_cancel(srq *r);  // asks the scheduler to stop it (any thread)

// ---- metrics -------------------------------------------------------------------------
#define MET_MAX_BUCKETS 20
typedef struct met_hist {
    int n; // buckets
    const double *le;
    uint64_t count[MET_MAX_BUCKETS + 1]; // per bucket (not cumulative); last = +Inf
    uint64_t total;
    double sum;
} met_hist;

typedef enum met_h {
    MET_TTFT = 0,
    MET_ITL,
    MET_E2E,
    MET_QUEUE,
    MET_PROMPT_TOKENS,
    MET_GEN_TOKENS,
    MET_BATCH_TOKENS,
    MET_N_HIST
} met_h;

#define MET_MAX_ROUTES 16
#define MET_MAX_STATUS 16
typedef struct metrics {
    pthread_mutex_t mu;
    char model[128]; // label value, escaped for the exposition format
    met_hist h[MET_N_HIST];
    // requests by (route, status)
    struct {
        char route[32];
        int status;
        uint64_t n;
    } req[MET_MAX_ROUTES * MET_MAX_STATUS];
    int n_req;
    uint64_t finish[SRQ_FIN_ERROR + 1];
    uint64_t prompt_tokens, gen_tokens, cached_tokens, preemptions;
    // gauges written by the scheduler
    int64_t running, waiting, kv_used, kv_free, batch_size;
} metrics;

anneal_status metrics_init(metrics *m, const char *model, anneal_err *err);
void metrics_destroy(metrics *m);
void metrics_observe(metrics *m, met_h h, double v);
void metrics_request(metrics *m, const char *route, int status);
void metrics_finish(metrics *m, srq_finish f, int32_t n_prompt, int32_t n_gen, int32_t n_cached);
void metrics_gauges(metrics *m, int64_t running, int64_t waiting, int64_t kv_used,
                    int64_t kv_free, int64_t batch);
void metrics_preempt(metrics *m);
// The Prometheus text exposition of everything.
void metrics_render(metrics *m, sb *out);

// ---- scheduler ---------------------------------------------------------------------------
typedef struct sched_params {
    int32_t n_ctx, parallel, kv_tokens, block_size, batch, prefill_chunk, threads, max_queue;
    bool kv_f32;
} sched_params;

typedef struct sched sched;
// Creates the KV cache and context and starts the scheduler thread. `mt` may be NULL.
anneal_status sched_new(const anneal_model *m, const anneal_tokenizer *tok,
                        const sched_params *p, metrics *mt, sched **out, anneal_err *err);
// Cancels everything still queued or running, stops the thread, frees. Accepts NULL.
void sched_free(sched *s);
// Queues a request (the scheduler takes its own reference). ANNEAL_ERR_LIMIT when the
// queue is full, ANNEAL_ERR_UNSUPPORTED while draining, ANNEAL_ERR_RANGE when the
// request can never fit (longer than the context or the whole KV pool).
anneal_status sched_submit(sched *s, srq *r, anneal_err *err);
void sched_set_draining(sched *s);
// Cancels every queued and running request (shutdown); implies draining.
void sched_cancel_all(sched *s);
bool sched_queue_full(sched *s);
int32_t sched_active(sched *s); // requests queued or running
const sched_params *sched_params_of(const sched *s);
// Blocks until r is done or `timeout_ns` passes; true when done.
bool srq_wait_done(srq *r, uint64_t timeout_ns);

// ---- auth and rate limits ---------------------------------------------------------------
// A token bucket holding at most `burst` tokens, refilled at `rate` per second.
typedef struct tbucket {
    double rate, burst, level;
    uint64_t last_ns;
} tbucket;
void tb_init(tbucket *b, double per_minute, uint64_t now_ns);
// Takes n tokens when the level is at least min(n, burst) (the level may go negative when
// n exceeds what is there); otherwise takes nothing and sets *retry_s to the seconds
// until it would succeed. A bucket with rate 0 always succeeds.
bool tb_take(tbucket *b, double n, uint64_t now_ns, double *retry_s);
// Takes n tokens unconditionally (debt is allowed).
void tb_charge(tbucket *b, double n, uint64_t now_ns);

typedef struct auth_key {
    char id[64];
    uint8_t digest[32]; // SHA-256 of the secret: compared in constant time
    tbucket req, tok;
} auth_key;

typedef struct auth {
    auth_key *keys;
    size_t n_keys;
    auth_key anon; // limits of unauthenticated use when no keys are configured
    int32_t rpm, tpm;
    pthread_mutex_t mu; // guards the buckets
} auth;

// keys_path may be NULL (no keys: every request is allowed as key id "anonymous").
anneal_status auth_init(auth *a, const char *keys_path, int32_t rpm, int32_t tpm, anneal_err *err);
void auth_destroy(auth *a);
bool auth_enabled(const auth *a);
// Checks an Authorization header value ("Bearer KEY"; may be NULL); returns the key or
// NULL when it is missing or unknown. Every configured key is compared.
auth_key *auth_check(auth *a, const char *header);
// Rate limits for one request on `k`: the request bucket always, the token bucket with
// `tokens` (the prompt). false and *retry_s when limited.
bool auth_admit(auth *a, auth_key *k, double tokens, double *retry_s);
void auth_charge(auth *a, auth_key *k, double tokens);

// ---- API (OpenAI JSON) ---------------------------------------------------------------
typedef enum api_route {
    API_CHAT = 0,
    API_COMPLETIONS,
    API_EMBEDDINGS,
    API_TOKENIZE,
    API_DETOKENIZE,
    API_MODELS,
    API_MODEL, // GET /v1/models/{id}
    API_HEALTH,
    API_READY,
    API_METRICS,
    API_UNKNOWN,
} api_route;

// What the HTTP layer needs to answer once the scheduler is done.
typedef struct api_req {
    api_route route;
    bool stream, include_usage;
    bool logprobs;      // report logprobs (chat: logprobs=true; completions: logprobs=N)
    int32_t top_logprobs;
    bool base64;        // embeddings: encoding_format = base64
    int64_t created;    // Unix time of the request
    srq *r;             // generate / embed work
} api_req;

// An error for the client: HTTP status, OpenAI error type, the offending parameter.
typedef struct api_error {
    int status;
    const char *type; // "invalid_request_error", ...
    const char *code; // may be NULL
    char param[64];
    char msg[400];
} api_error;

typedef struct api_env {
    const anneal_tokenizer *tok;
    const char *model_name;
    int32_t n_ctx, max_tokens, n_embd;
    int chat_template; // anneal_chat_template
    uint64_t timeout_ns;
} api_env;

// Parses a generate/embed request body into *out (out->r is a new request holding one
// reference). false and *e filled on bad input.
bool api_parse(const api_env *env, api_route route, const char *body, size_t len, api_req *out,
               api_error *e);
// Renders a finished request as a non-streaming response body.
void api_render(const api_env *env, const api_req *q, sb *out);
// Streaming: the chunk(s) for text and samples emitted since the last call (first = the
// first call, which carries the role for chat), the finish chunk, the usage chunk and
// [DONE] when `done`. *lp_offset (may be NULL) carries the completions logprobs'
// text_offset from chunk to chunk.
void api_stream_chunk(const api_env *env, const api_req *q, bool first, const char *text,
                      size_t n, const anneal_sample *samples, size_t n_samples, bool done,
                      size_t *lp_offset, sb *out);
void api_error_json(const api_error *e, sb *out);
void api_set_error(api_error *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
// /tokenize and /detokenize: body in, response out.
bool api_tokenize(const api_env *env, const char *body, size_t len, sb *out, api_error *e);
bool api_detokenize(const api_env *env, const char *body, size_t len, sb *out, api_error *e);
void api_models(const api_env *env, uint64_t created, sb *out);
// GET /v1/models/{id}: the model object, or a 404 (code model_not_found) for another id.
bool api_model(const api_env *env, uint64_t created, const char *id, sb *out, api_error *e);
// The chat prompt for messages (the template in env).
bool api_chat_render(const api_env *env, const char *const *roles, const char *const *contents,
                     size_t n, sb *out, api_error *e);
// A random request id with a prefix, e.g. "chatcmpl-3f2a...".
void api_new_id(char *out, size_t cap, const char *prefix);

#endif
