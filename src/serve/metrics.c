// Server metrics in the Prometheus text exposition format: latency and size histograms,
// request/finish/token counters and scheduler gauges, every series labelled with the model.
#include "serve_internal.h"

#include <stdio.h>

static const double LAT_BUCKETS[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                     1,     2.5,    5,     10,   20,    40,   80,  160};
static const double ITL_BUCKETS[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                     0.075,  0.1,   0.25,   0.5,   1,    2.5};
static const double TOK_BUCKETS[] = {1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768};

typedef struct hist_def {
    const char *name, *help;
    const double *le;
    int n;
} hist_def;

#define NB(a) ((int)(sizeof a / sizeof a[0]))
static const hist_def HISTS[MET_N_HIST] = {
    [MET_TTFT] = {"anneal_time_to_first_token_seconds", "Time from arrival to the first generated token.",
                  LAT_BUCKETS, NB(LAT_BUCKETS)},
    [MET_ITL] = {"anneal_inter_token_latency_seconds", "Time between consecutive generated tokens of a request.",
                 ITL_BUCKETS, NB(ITL_BUCKETS)},
    [MET_E2E] = {"anneal_e2e_request_latency_seconds", "Time from arrival to the end of generation.", LAT_BUCKETS,
                 NB(LAT_BUCKETS)},
    [MET_QUEUE] = {"anneal_request_queue_time_seconds", "Time a request waited in the queue before it ran.",
                   LAT_BUCKETS, NB(LAT_BUCKETS)},
    [MET_PROMPT_TOKENS] = {"anneal_request_prompt_tokens", "Prompt tokens per finished request.", TOK_BUCKETS,
                           NB(TOK_BUCKETS)},
    [MET_GEN_TOKENS] = {"anneal_request_generation_tokens", "Generated tokens per finished request.",
                        TOK_BUCKETS, NB(TOK_BUCKETS)},
    [MET_BATCH_TOKENS] = {"anneal_batch_tokens", "Tokens in each forward step of the scheduler.", TOK_BUCKETS,
                          NB(TOK_BUCKETS)},
};

anneal_status metrics_init(metrics *m, const char *model, anneal_err *err) {
    memset(m, 0, sizeof *m);
    if (pthread_mutex_init(&m->mu, NULL))
        return anneal_err_set(err, ANNEAL_ERR_INTERNAL, "cannot create the metrics lock");
    // Label values escape backslash, quote and newline.
    size_t j = 0;
    for (const char *p = model; *p && j + 3 < sizeof m->model; p++) {
        if (*p == '\\' || *p == '"') m->model[j++] = '\\';
        if (*p == '\n') {
            m->model[j++] = '\\';
            m->model[j++] = 'n';
            continue;
        }
        m->model[j++] = *p;
    }
    m->model[j] = '\0';
    for (int i = 0; i < MET_N_HIST; i++) {
        m->h[i].n = HISTS[i].n;
        m->h[i].le = HISTS[i].le;
    }
    return ANNEAL_OK;
}

void metrics_destroy(metrics *m) {
    pthread_mutex_destroy(&m->mu);
}

void metrics_observe(metrics *m, met_h h, double v) {
    met_hist *x = &m->h[h];
    int b = 0;
    while (b < x->n && v > x->le[b])
        b++;
    pthread_mutex_lock(&m->mu);
    x->count[b]++;
    x->total++;
    x->sum += v;
    pthread_mutex_unlock(&m->mu);
}

void metrics_request(metrics *m, const char *route, int status) {
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < m->n_req && (m->req[i].status != status || strcmp(m->req[i].route, route)))
        i++;
    if (i == m->n_req && m->n_req < MET_MAX_ROUTES * MET_MAX_STATUS) {
        snprintf(m->req[i].route, sizeof m->req[i].route, "%s", route);
        m->req[i].status = status;
        m->n_req++;
    }
    if (i < m->n_req) m->req[i].n++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_finish(metrics *m, srq_finish f, int32_t n_prompt, int32_t n_gen, int32_t n_cached) {
    pthread_mutex_lock(&m->mu);
    if (f > SRQ_FIN_NONE && f <= SRQ_FIN_ERROR) m->finish[f]++;
    m->prompt_tokens += (uint64_t)(n_prompt > 0 ? n_prompt : 0);
    m->gen_tokens += (uint64_t)(n_gen > 0 ? n_gen : 0);
    m->cached_tokens += (uint64_t)(n_cached > 0 ? n_cached : 0);
    pthread_mutex_unlock(&m->mu);
}

void metrics_gauges(metrics *m, int64_t running, int64_t waiting, int64_t kv_used, int64_t kv_free,
                    int64_t batch) {
    pthread_mutex_lock(&m->mu);
    m->running = running;
    m->waiting = waiting;
    m->kv_used = kv_used;
    m->kv_free = kv_free;
    m->batch_size = batch;
    pthread_mutex_unlock(&m->mu);
}

void metrics_preempt(metrics *m) {
    pthread_mutex_lock(&m->mu);
    m->preemptions++;
    pthread_mutex_unlock(&m->mu);
}

static void header(sb *o, const char *name, const char *type, const char *help) {
    sb_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void scalar(sb *o, const metrics *m, const char *name, const char *type, const char *help, double v) {
    header(o, name, type, help);
    sb_printf(o, "%s{model=\"%s\"} %.17g\n", name, m->model, v);
}

void metrics_render(metrics *m, sb *o) {
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < MET_N_HIST; i++) {
        const met_hist *x = &m->h[i];
        const char *name = HISTS[i].name;
        header(o, name, "histogram", HISTS[i].help);
        uint64_t cum = 0;
        for (int b = 0; b < x->n; b++) {
            cum += x->count[b];
            sb_printf(o, "%s_bucket{model=\"%s\",le=\"%g\"} %llu\n", name, m->model, x->le[b],
                      (unsigned long long)cum);
        }
        cum += x->count[x->n];
        sb_printf(o, "%s_bucket{model=\"%s\",le=\"+Inf\"} %llu\n", name, m->model, (unsigned long long)cum);
        sb_printf(o, "%s_sum{model=\"%s\"} %.17g\n", name, m->model, x->sum);
        sb_printf(o, "%s_count{model=\"%s\"} %llu\n", name, m->model, (unsigned long long)x->total);
    }
    header(o, "anneal_requests_total", "counter", "HTTP requests by route and status code.");
    for (int i = 0; i < m->n_req; i++)
        sb_printf(o, "anneal_requests_total{model=\"%s\",route=\"%s\",status=\"%d\"} %llu\n", m->model,
                  m->req[i].route, m->req[i].status, (unsigned long long)m->req[i].n);
    header(o, "anneal_request_finish_total", "counter", "Finished generation and embedding requests by reason.");
    for (int f = SRQ_FIN_STOP; f <= SRQ_FIN_ERROR; f++)
        sb_printf(o, "anneal_request_finish_total{model=\"%s\",reason=\"%s\"} %llu\n", m->model,
                  srq_finish_name((srq_finish)f), (unsigned long long)m->finish[f]);
    scalar(o, m, "anneal_prompt_tokens_total", "counter", "Prompt tokens of finished requests.",
           (double)m->prompt_tokens);
    scalar(o, m, "anneal_generation_tokens_total", "counter", "Generated tokens of finished requests.",
           (double)m->gen_tokens);
    scalar(o, m, "anneal_prefix_cache_hit_tokens_total", "counter",
           "Prompt tokens whose KV was reused from a cached prefix.", (double)m->cached_tokens);
    scalar(o, m, "anneal_preemptions_total", "counter",
           "Sequences preempted (KV dropped, recomputed later) because the KV pool was full.",
           (double)m->preemptions);
    scalar(o, m, "anneal_requests_running", "gauge", "Requests being computed.", (double)m->running);
    scalar(o, m, "anneal_requests_waiting", "gauge", "Requests waiting in the queue.", (double)m->waiting);
    scalar(o, m, "anneal_kv_blocks_used", "gauge", "KV cache blocks held by sequences.", (double)m->kv_used);
    scalar(o, m, "anneal_kv_blocks_free", "gauge", "KV cache blocks free.", (double)m->kv_free);
    scalar(o, m, "anneal_batch_size", "gauge", "Sequences in the last forward step.", (double)m->batch_size);
    pthread_mutex_unlock(&m->mu);
}
