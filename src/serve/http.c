// The HTTP side of the server on libmicrohttpd (a thread per connection, with connection
// limits and timeouts): routing, body caps, API keys and rate limits, blocking waits for
// non-streaming answers, server-sent events for streaming ones, client-disconnect
// cancellation, the JSON access log, and the server's start, drain and stop.
#include "serve_internal.h"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WAIT_SLICE_NS (100 * 1000000ull) // how often a waiting handler checks its client

struct anneal_server {
    anneal_serve_config cfg; // strings borrowed from the caller's config
    anneal_model *model;
    anneal_tokenizer *tok;
    sched *sch;
    metrics met;
    bool met_ok;
    auth au;
    bool au_ok;
    api_env env;
    char model_name[128];
    struct MHD_Daemon *d;
    int port;
    atomic_bool draining;
    atomic_int inflight; // requests being handled
    FILE *alog;
    bool alog_close;
    pthread_mutex_t alog_mu;
    uint64_t started; // Unix time
};

typedef struct route_def {
    const char *method, *path;
    api_route route;
} route_def;

static const route_def ROUTES[] = {
    {"POST", "/v1/chat/completions", API_CHAT},
    {"POST", "/v1/completions", API_COMPLETIONS},
    {"POST", "/v1/embeddings", API_EMBEDDINGS},
    {"POST", "/tokenize", API_TOKENIZE},
    {"POST", "/detokenize", API_DETOKENIZE},
    {"GET", "/v1/models", API_MODELS},
    {"GET", "/health", API_HEALTH},
    {"GET", "/ready", API_READY},
    {"GET", "/metrics", API_METRICS},
};

static const char *path_method(const char *url) {
    for (size_t i = 0; i < sizeof ROUTES / sizeof ROUTES[0]; i++)
        if (!strcmp(url, ROUTES[i].path)) return ROUTES[i].method;
    return NULL;
}

// One request's state, from its first byte to the completion callback.
typedef struct conn {
    anneal_server *s;
    api_route route;
    const char *path; // the route's path, or "other"
    const char *allow; // the route's method, for a 405
    char model_id[160]; // GET /v1/models/{id}
    char method[8];
    char rid[40];
    char key_id[64];
    auth_key *key;
    sb body;
    bool too_large, slow, answered;
    uint64_t t0;
    int status;
    api_req q; // q.r once submitted
    bool submitted;
} conn;

// The state of one streaming response, owned by the response (freed by stream_free).
typedef struct stream {
    anneal_server *s;
    api_req q; // holds its own reference on q.r
    int fd;
    bool first, finished;
    sb out;            // formatted bytes not yet handed to MHD
    size_t out_off;
    sb text;           // new text copied out of the request
    anneal_sample *smp; // new samples copied out of the request
    size_t smp_cap;
    size_t lp_off; // completions logprobs: text_offset of the next token
} stream;

// True when the peer has closed its end (or the socket failed).
static bool client_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
    if (p.revents & POLLIN) {
        char c;
        ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return n == 0;
    }
    return false;
}

static int conn_fd(struct MHD_Connection *mc) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

// ---- responses -------------------------------------------------------------------------------

static enum MHD_Result send_body(conn *c, struct MHD_Connection *mc, int status, const char *type,
                                 const char *body, size_t len, double retry_after) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "X-Request-Id", c->rid);
    if (retry_after > 0) {
        char v[32];
        snprintf(v, sizeof v, "%.0f", ceil(retry_after));
        MHD_add_response_header(r, "Retry-After", v);
    }
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    if (status == 405 && c->allow) MHD_add_response_header(r, "Allow", c->allow);
    enum MHD_Result ok = MHD_queue_response(mc, (unsigned)status, r);
    MHD_destroy_response(r);
    c->status = status;
    c->answered = true;
    return ok;
}

static enum MHD_Result send_json(conn *c, struct MHD_Connection *mc, int status, sb *b) {
    if (b->oom) {
        static const char OOM[] =
            "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";
        return send_body(c, mc, 500, "application/json", OOM, sizeof OOM - 1, 0);
    }
    return send_body(c, mc, status, "application/json", b->p ? b->p : "", b->len, 0);
}

static enum MHD_Result send_error(conn *c, struct MHD_Connection *mc, const api_error *e, double retry_after) {
    sb b = {0};
    api_error_json(e, &b);
    enum MHD_Result r = b.oom ? send_json(c, mc, 500, &b)
                              : send_body(c, mc, e->status, "application/json", b.p, b.len, retry_after);
    sb_free(&b);
    return r;
}

static enum MHD_Result fail(conn *c, struct MHD_Connection *mc, int status, const char *param, double retry,
                            const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static enum MHD_Result fail(conn *c, struct MHD_Connection *mc, int status, const char *param, double retry,
                            const char *fmt, ...) {
    api_error e;
    api_set_error(&e, status, param, "%s", "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof e.msg, fmt, ap);
    va_end(ap);
    return send_error(c, mc, &e, retry);
}

// ---- streaming -------------------------------------------------------------------------------

static void stream_free(void *cls) {
    stream *st = cls;
    if (!st->finished) srq_cancel(st->q.r);
    srq_release(st->q.r);
    sb_free(&st->out);
    sb_free(&st->text);
    anneal_free(st->smp);
    anneal_free(st);
}

// Waits for new output of the request and formats it as SSE events into st->out.
static bool stream_fill(stream *st) {
    srq *r = st->q.r;
    st->out.len = 0;
    st->out_off = 0;
    st->text.len = 0;
    size_t n_smp = 0;
    bool done = false;
    pthread_mutex_lock(&r->mu);
    // The first chat chunk (the role) goes out at once, before any token exists.
    for (bool wait = !(st->first && st->q.route == API_CHAT); wait;) {
        if (r->text_len > r->text_read || r->n_samples > r->samples_read || r->done) break;
        pthread_mutex_unlock(&r->mu);
        bool gone = client_gone(st->fd);
        pthread_mutex_lock(&r->mu);
        if (gone) {
            pthread_mutex_unlock(&r->mu);
            srq_cancel(r);
            return false;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += (long)WAIT_SLICE_NS;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (!(r->text_len > r->text_read || r->n_samples > r->samples_read || r->done))
            pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    if (r->text_len > r->text_read) sb_put(&st->text, r->text + r->text_read, r->text_len - r->text_read);
    r->text_read = r->text_len;
    n_smp = r->n_samples - r->samples_read;
    if (n_smp > st->smp_cap) {
        anneal_sample *p = anneal_realloc_array(st->smp, n_smp, sizeof *p);
        if (p) {
            st->smp = p;
            st->smp_cap = n_smp;
        }
    }
    if (n_smp > st->smp_cap) n_smp = st->smp_cap;
    if (n_smp) memcpy(st->smp, r->samples + r->samples_read, n_smp * sizeof *st->smp);
    r->samples_read += n_smp;
    done = r->done && r->text_read == r->text_len && r->samples_read == r->n_samples;
    pthread_mutex_unlock(&r->mu);
    api_stream_chunk(&st->s->env, &st->q, st->first, st->text.p, st->text.len, st->smp, n_smp, done, &st->lp_off,
                     &st->out);
    st->first = false;
    if (done) st->finished = true;
    return !st->out.oom;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream *st = cls;
    (void)pos;
    while (st->out_off >= st->out.len) {
        if (st->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        if (!stream_fill(st)) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = st->out.len - st->out_off;
    if (n > max) n = max;
    memcpy(buf, st->out.p + st->out_off, n);
    st->out_off += n;
    return (ssize_t)n;
}

// ---- generate and embed ----------------------------------------------------------------------

static enum MHD_Result run_model(conn *c, struct MHD_Connection *mc) {
    anneal_server *s = c->s;
    api_error e;
    if (atomic_load(&s->draining)) return fail(c, mc, 503, NULL, 1, "%s", "the server is draining");
    if (!api_parse(&s->env, c->route, c->body.p ? c->body.p : "", c->body.len, &c->q, &e))
        return send_error(c, mc, &e, 0);
    srq *r = c->q.r;
    snprintf(c->rid, sizeof c->rid, "%s", r->id);
    double retry = 0;
    if (!auth_admit(&s->au, c->key, r->n_prompt, &retry)) {
        api_set_error(&e, 429, NULL, "rate limit of key '%s' reached; retry in %.0f s", c->key_id, ceil(retry));
        e.code = "rate_limit_exceeded";
        return send_error(c, mc, &e, retry > 1 ? retry : 1);
    }
    anneal_err err = {0};
    anneal_status st = sched_submit(s->sch, r, &err);
    if (st == ANNEAL_ERR_LIMIT) {
        api_set_error(&e, 429, NULL, "%s", anneal_err_msg(&err));
        e.code = "queue_full";
        return send_error(c, mc, &e, 1);
    }
    if (st == ANNEAL_ERR_UNSUPPORTED) return fail(c, mc, 503, NULL, 1, "%s", anneal_err_msg(&err));
    if (st) return fail(c, mc, st == ANNEAL_ERR_RANGE ? 400 : 500, c->route == API_EMBEDDINGS ? "input" : NULL, 0,
                        "%s", anneal_err_msg(&err));
    c->submitted = true;
    int fd = conn_fd(mc);
    if (c->q.stream) {
        stream *sm = anneal_calloc(1, sizeof *sm);
        if (!sm) {
            srq_cancel(r);
            return fail(c, mc, 500, NULL, 0, "%s", "out of memory");
        }
        sm->s = s;
        sm->q = c->q;
        sm->fd = fd;
        sm->first = true;
        atomic_fetch_add(&r->refs, 1);
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, sm,
                                                                      stream_free);
        if (!resp) {
            stream_free(sm);
            return fail(c, mc, 500, NULL, 0, "%s", "out of memory");
        }
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no"); // proxies: do not hold events back
        MHD_add_response_header(resp, "X-Request-Id", c->rid);
        enum MHD_Result ok = MHD_queue_response(mc, 200, resp);
        MHD_destroy_response(resp);
        c->status = 200;
        c->answered = true;
        return ok;
    }
    while (!srq_wait_done(r, WAIT_SLICE_NS)) {
        if (client_gone(fd)) {
            srq_cancel(r);
            c->status = 499; // nginx's "client closed request", for the log only
            return MHD_NO;
        }
    }
    switch (r->finish) {
    case SRQ_FIN_STOP:
    case SRQ_FIN_LENGTH: {
        sb b = {0};
        api_render(&s->env, &c->q, &b);
        enum MHD_Result ok = send_json(c, mc, 200, &b);
        sb_free(&b);
        return ok;
    }
    case SRQ_FIN_TIMEOUT: return fail(c, mc, 408, NULL, 0, "request timed out: %s", r->err_msg);
    case SRQ_FIN_CANCEL: return fail(c, mc, 503, NULL, 1, "%s", "the server is shutting down");
    default: return fail(c, mc, 500, NULL, 0, "generation failed: %s", r->err_msg);
    }
}

// ---- the access handler ------------------------------------------------------------------------

static enum MHD_Result dispatch(conn *c, struct MHD_Connection *mc) {
    anneal_server *s = c->s;
    sb b = {0};
    api_error e;
    enum MHD_Result ok;
    const char *body = c->body.p ? c->body.p : "";
    switch (c->route) {
    case API_HEALTH:
        sb_puts(&b, "{\"status\":\"ok\"}");
        ok = send_json(c, mc, 200, &b);
        break;
    case API_READY: {
        const char *why = atomic_load(&s->draining) ? "draining" : sched_queue_full(s->sch) ? "queue full" : NULL;
        sb_printf(&b, "{\"status\":\"%s\"}", why ? why : "ready");
        ok = send_json(c, mc, why ? 503 : 200, &b);
        break;
    }
    case API_MODELS:
        api_models(&s->env, s->started, &b);
        ok = send_json(c, mc, 200, &b);
        break;
    case API_MODEL:
        ok = api_model(&s->env, s->started, c->model_id, &b, &e) ? send_json(c, mc, 200, &b) : send_error(c, mc, &e, 0);
        break;
    case API_METRICS:
        metrics_render(&s->met, &b);
        ok = b.oom ? send_json(c, mc, 500, &b)
                   : send_body(c, mc, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len, 0);
        break;
    case API_TOKENIZE:
    case API_DETOKENIZE:
        if (c->route == API_TOKENIZE ? api_tokenize(&s->env, body, c->body.len, &b, &e)
                                     : api_detokenize(&s->env, body, c->body.len, &b, &e))
            ok = send_json(c, mc, 200, &b);
        else
            ok = send_error(c, mc, &e, 0);
        break;
    default: ok = run_model(c, mc); break;
    }
    sb_free(&b);
    return ok;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    anneal_server *s = cls;
    conn *c = *con_cls;
    if (!c) {
        c = anneal_calloc(1, sizeof *c);
        if (!c) return MHD_NO;
        *con_cls = c;
        atomic_fetch_add(&s->inflight, 1);
        c->s = s;
        c->t0 = anneal_time_ns();
        c->route = API_UNKNOWN;
        c->path = "other";
        snprintf(c->method, sizeof c->method, "%s", method);
        api_new_id(c->rid, sizeof c->rid, "req-");
        bool path_known = false;
        for (size_t i = 0; i < sizeof ROUTES / sizeof ROUTES[0]; i++) {
            if (strcmp(url, ROUTES[i].path)) continue;
            path_known = true;
            c->path = ROUTES[i].path;
            if (!strcmp(method, ROUTES[i].method)) c->route = ROUTES[i].route;
        }
        if (!path_known && !strncmp(url, "/v1/models/", 11)) {
            path_known = true;
            c->path = "/v1/models/{id}";
            if (!strcmp(method, "GET")) c->route = API_MODEL;
            else c->allow = "GET";
            snprintf(c->model_id, sizeof c->model_id, "%s", url + 11);
        }
        if (c->route == API_UNKNOWN) {
            if (path_known) {
                if (!c->allow) c->allow = path_method(url);
                return fail(c, mc, 405, NULL, 0, "method %.16s is not allowed on %s", method, c->path);
            }
            return fail(c, mc, 404, NULL, 0, "no route %.200s", url);
        }
        if (c->route != API_HEALTH && c->route != API_READY) {
            const char *h = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Authorization");
            c->key = auth_check(&s->au, h);
            if (!c->key)
                return fail(c, mc, 401, NULL, 0, "%s", h ? "invalid API key" : "an API key is required (Authorization: Bearer KEY)");
        } else {
            c->key = &s->au.anon;
        }
        snprintf(c->key_id, sizeof c->key_id, "%s", c->key->id);
        const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > (unsigned long long)s->cfg.max_body)
            return fail(c, mc, 413, NULL, 0, "the request body is larger than the limit of %lld bytes",
                        (long long)s->cfg.max_body);
        return MHD_YES;
    }
    if (c->answered) {
        *upload_size = 0;
        return MHD_YES;
    }
    // libmicrohttpd takes a response only before the body or after all of it: a body that
    // is too large or too slow is read and dropped, and answered at its end. A client that
    // keeps trickling past twice the read timeout is disconnected.
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        double secs = (double)(anneal_time_ns() - c->t0) / 1e9;
        if (c->too_large || c->slow) return secs > 2 * s->cfg.read_timeout + 1 ? MHD_NO : MHD_YES;
        if (secs > s->cfg.read_timeout) {
            c->slow = true;
            sb_free(&c->body);
            return MHD_YES;
        }
        if ((int64_t)(c->body.len + n) > s->cfg.max_body) {
            c->too_large = true;
            sb_free(&c->body);
            return MHD_YES;
        }
        sb_put(&c->body, upload_data, n);
        return MHD_YES;
    }
    if (c->slow) return fail(c, mc, 408, NULL, 0, "the request body arrived too slowly (more than %g s)", s->cfg.read_timeout);
    if (c->too_large)
        return fail(c, mc, 413, NULL, 0, "the request body is larger than the limit of %lld bytes", (long long)s->cfg.max_body);
    if (c->body.oom) return fail(c, mc, 500, NULL, 0, "%s", "out of memory");
    (void)version;
    return dispatch(c, mc);
}

// Access log line, request metrics and rate-limit charge, once per request.
static void completed(void *cls, struct MHD_Connection *mc, void **con_cls, enum MHD_RequestTerminationCode toe) {
    anneal_server *s = cls;
    conn *c = *con_cls;
    (void)mc;
    if (!c) return;
    srq *r = c->q.r;
    int status = c->status ? c->status : toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? 200 : 499;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && status == 200 && c->q.stream) status = 200;
    int32_t n_prompt = 0, n_gen = 0, n_cached = 0;
    const char *finish = "";
    double queue_ms = -1, ttft_ms = -1;
    if (r) {
        if (c->submitted) {
            pthread_mutex_lock(&r->mu);
            bool done = r->done;
            n_gen = r->n_gen;
            // The scheduler writes these before it publishes the first token or the end.
            if (done || n_gen) {
                n_cached = r->n_cached;
                if (r->t_admit) queue_ms = (double)(r->t_admit - r->t_arrive) / 1e6;
                if (r->t_first) ttft_ms = (double)(r->t_first - r->t_arrive) / 1e6;
            }
            finish = done ? srq_finish_name(r->finish) : "cancelled";
            pthread_mutex_unlock(&r->mu);
            if (!done) srq_cancel(r);
            auth_charge(&s->au, c->key, n_gen);
        }
        n_prompt = r->n_prompt;
    }
    metrics_request(&s->met, c->path, status);
    if (s->alog) {
        sb b = {0};
        char ts[32];
        anneal_time_utc(ts, sizeof ts);
        sb_printf(&b, "{\"ts\":\"%s\",\"request_id\":", ts);
        sb_json_str(&b, c->rid, strlen(c->rid));
        sb_puts(&b, ",\"key_id\":");
        sb_json_str(&b, c->key_id, strlen(c->key_id));
        sb_puts(&b, ",\"method\":");
        sb_json_str(&b, c->method, strlen(c->method));
        sb_puts(&b, ",\"route\":");
        sb_json_str(&b, c->path, strlen(c->path));
        sb_printf(&b, ",\"status\":%d,\"model\":", status);
        sb_json_str(&b, s->model_name, strlen(s->model_name));
        sb_printf(&b, ",\"stream\":%s,\"prompt_tokens\":%d,\"completion_tokens\":%d,\"cached_tokens\":%d",
                  c->q.stream ? "true" : "false", (int)n_prompt, (int)n_gen, (int)n_cached);
        if (*finish) sb_printf(&b, ",\"finish_reason\":\"%s\"", finish);
        if (queue_ms >= 0) sb_printf(&b, ",\"queue_ms\":%.3f", queue_ms);
        if (ttft_ms >= 0) sb_printf(&b, ",\"ttft_ms\":%.3f", ttft_ms);
        sb_printf(&b, ",\"duration_ms\":%.3f}\n", (double)(anneal_time_ns() - c->t0) / 1e6);
        if (!b.oom) {
            pthread_mutex_lock(&s->alog_mu);
            fwrite(b.p, 1, b.len, s->alog);
            fflush(s->alog);
            pthread_mutex_unlock(&s->alog_mu);
        }
        sb_free(&b);
    }
    srq_release(r);
    sb_free(&c->body);
    anneal_free(c);
    *con_cls = NULL;
    atomic_fetch_sub(&s->inflight, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    anneal_log(ANNEAL_LOG_DEBUG, NULL, "http: %s", msg);
}

// ---- start and stop ------------------------------------------------------------------------------

static void model_name(const char *path, char *out, size_t cap) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && !strcmp(base + n - 5, ".gguf")) n -= 5;
    snprintf(out, cap, "%.*s", (int)n, base);
}

anneal_status anneal_serve_start(const anneal_serve_config *cfg, anneal_server **out, anneal_err *err) {
    *out = NULL;
    if (!cfg->model) return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "serve: no model given");
    anneal_server *s = anneal_calloc(1, sizeof *s);
    if (!s) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    s->cfg = *cfg;
    atomic_init(&s->draining, false);
    atomic_init(&s->inflight, 0);
    pthread_mutex_init(&s->alog_mu, NULL);
    s->started = (uint64_t)time(NULL);
    anneal_status st = anneal_model_load(cfg->model, &s->model, err);
    if (!st && cfg->lora && *cfg->lora) st = anneal_model_apply_lora_list(s->model, cfg->lora, err);
    if (!st) st = anneal_tokenizer_load(anneal_model_gguf(s->model), &s->tok, err);
    if (st) goto fail;
    const anneal_model_config *mc = anneal_model_config_of(s->model);
    if (cfg->alias && *cfg->alias) snprintf(s->model_name, sizeof s->model_name, "%s", cfg->alias);
    else model_name(cfg->model, s->model_name, sizeof s->model_name);
    anneal_chat_template tpl = ANNEAL_CHAT_CHATML;
    if (cfg->chat_template && *cfg->chat_template) st = anneal_chat_template_parse_name(cfg->chat_template, &tpl, err);
    else st = anneal_chat_template_from_gguf(anneal_model_gguf(s->model), &tpl, NULL, err);
    if (st) goto fail;
    int32_t n_ctx = cfg->ctx > 0 ? cfg->ctx : mc->n_ctx_train > 0 && mc->n_ctx_train < 4096 ? mc->n_ctx_train : 4096;
    int64_t kv_tokens = cfg->kv_tokens > 0 ? cfg->kv_tokens : (int64_t)n_ctx * cfg->parallel;
    if (kv_tokens > INT32_MAX) kv_tokens = INT32_MAX / cfg->block_size * cfg->block_size;
    if (kv_tokens < (int64_t)n_ctx + cfg->block_size) kv_tokens = (int64_t)n_ctx + cfg->block_size;
    sched_params sp = {.n_ctx = n_ctx,
                       .parallel = cfg->parallel,
                       .kv_tokens = (int32_t)kv_tokens,
                       .block_size = cfg->block_size,
                       .batch = cfg->batch < cfg->parallel ? cfg->parallel : cfg->batch,
                       .prefill_chunk = cfg->prefill_chunk,
                       .threads = cfg->threads,
                       .max_queue = cfg->max_queue,
                       .kv_f32 = cfg->kv_f32};
    if (sp.prefill_chunk > sp.batch) sp.prefill_chunk = sp.batch;
    st = metrics_init(&s->met, s->model_name, err);
    if (st) goto fail;
    s->met_ok = true;
    st = auth_init(&s->au, cfg->api_keys, cfg->rpm, cfg->tpm, err);
    if (st) goto fail;
    s->au_ok = true;
    if (!cfg->access_log || !strcmp(cfg->access_log, "-")) s->alog = stderr;
    else if (strcmp(cfg->access_log, "off")) {
        s->alog = fopen(cfg->access_log, "a");
        if (!s->alog) {
            st = anneal_err_set(err, ANNEAL_ERR_IO, "cannot open the access log %s", cfg->access_log);
            goto fail;
        }
        s->alog_close = true;
    }
    st = sched_new(s->model, s->tok, &sp, &s->met, &s->sch, err);
    if (st) goto fail;
    s->env = (api_env){.tok = s->tok,
                       .model_name = s->model_name,
                       .n_ctx = n_ctx,
                       .max_tokens = cfg->max_tokens < n_ctx - 1 ? cfg->max_tokens : n_ctx - 1,
                       .n_embd = mc->n_embd,
                       .chat_template = (int)tpl,
                       .timeout_ns = (uint64_t)(cfg->timeout * 1e9)};
    // The listen address.
    const char *host = cfg->host && *cfg->host ? cfg->host : "127.0.0.1";
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", (int)cfg->port);
    if (getaddrinfo(host, port, &hints, &ai) || !ai) {
        st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "--host '%s' is not an IPv4 or IPv6 address or a known name",
                            host);
        goto fail;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, handle, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->idle_timeout,
                            MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
                            MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->d) {
        st = anneal_err_set(err, ANNEAL_ERR_IO, "cannot listen on %s port %d (in use, or not allowed)", host,
                            (int)cfg->port);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : cfg->port;
    *out = s;
    return ANNEAL_OK;
fail:
    anneal_serve_free(s);
    return st;
}

int anneal_serve_port(const anneal_server *s) {
    return s->port;
}

static void wait_idle(anneal_server *s, uint64_t until_ns) {
    while (atomic_load(&s->inflight) > 0 && anneal_time_ns() < until_ns) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int anneal_serve_drain(anneal_server *s, double timeout_s) {
    atomic_store(&s->draining, true);
    if (s->sch) sched_set_draining(s->sch);
    if (s->d) {
        MHD_socket fd = MHD_quiesce_daemon(s->d);
        if (fd != MHD_INVALID_SOCKET) close(fd);
    }
    uint64_t t0 = anneal_time_ns();
    wait_idle(s, t0 + (uint64_t)(timeout_s * 1e9));
    int left = s->sch ? sched_active(s->sch) : 0;
    if (left > 0 && s->sch) {
        sched_cancel_all(s->sch); // waiting handlers answer 503, streams end with an error event
        wait_idle(s, anneal_time_ns() + 5000000000ull);
    }
    return left;
}

void anneal_serve_free(anneal_server *s) {
    if (!s) return;
    atomic_store(&s->draining, true);
    if (s->sch) {
        sched_set_draining(s->sch);
        sched_cancel_all(s->sch);
    }
    if (s->d) MHD_stop_daemon(s->d);
    sched_free(s->sch);
    if (s->au_ok) auth_destroy(&s->au);
    if (s->met_ok) metrics_destroy(&s->met);
    if (s->alog_close) fclose(s->alog);
    pthread_mutex_destroy(&s->alog_mu);
    anneal_tokenizer_free(s->tok);
    anneal_model_free(s->model);
    anneal_free(s);
}
