// The training loop: batches sampled from the token stream with a seeded generator,
// gradient accumulation, the hooks (all-reduce after backward, a custom loss), clipping,
// AdamW on the schedule, validation every N steps, metrics as JSON lines, a loss-curve SVG,
// progress on stderr, and checkpoints that resume bit-identically.
#include "checkpoint.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct point {
    int64_t step;
    double v;
} point;

typedef struct series {
    point *p;
    size_t n, cap;
} series;

static void series_add(series *s, int64_t step, double v) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        point *np = anneal_realloc_array(s->p, cap, sizeof *np);
        if (!np) return; // the curve misses a point; training goes on
        s->p = np;
        s->cap = cap;
    }
    s->p[s->n++] = (point){step, v};
}

typedef struct trainer {
    const anneal_trainer_opts *o;
    anneal_model *src; // the model file training started from (vocabulary for checkpoints)
    anneal_train_model *tm;
    anneal_train_ctx *c;
    anneal_adamw *opt;
    anneal_lora_train *lora; // o->lora: the adapters (tm's weights are then frozen)
    char lora_keys[2][65];   // hex SHA-256 of adapter.gguf and adapter.bin being saved
    ckpt_state st;
    int32_t *tok, *tgt; // [n_batch * n_seq]
    series train, val;
    char metrics_path[4096], svg_path[4096];
    FILE *metrics;
} trainer;

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// One micro-batch: n_batch windows of n_seq + 1 tokens at random offsets.
static void sample_batch(trainer *t) {
    const anneal_trainer_opts *o = t->o;
    uint64_t range = (uint64_t)(o->n_train_tokens - (size_t)o->n_seq);
    for (int32_t b = 0; b < o->n_batch; b++) {
        size_t off = (size_t)(splitmix(&t->st.rng) % range);
        const int32_t *src = o->train_tokens + off;
        memcpy(t->tok + (size_t)b * o->n_seq, src, (size_t)o->n_seq * sizeof(int32_t));
        memcpy(t->tgt + (size_t)b * o->n_seq, src + 1, (size_t)o->n_seq * sizeof(int32_t));
    }
    t->st.batches++;
}

// Under MPI (anneal_mpi_size() > 1) each rank computes a contiguous share of the batch's
// sequences: this rank's first token in tok/tgt.
static size_t rank_offset(const anneal_trainer_opts *o) {
    return (size_t)anneal_mpi_rank() * (size_t)(o->n_batch / anneal_mpi_size()) * (size_t)o->n_seq;
}

// Mean loss over up to val_batches batches of consecutive windows of the validation tokens.
static anneal_status validate(trainer *t, double *out, anneal_err *err) {
    const anneal_trainer_opts *o = t->o;
    size_t per = (size_t)o->n_seq, win = o->n_val_tokens > per ? (o->n_val_tokens - 1) / per : 0;
    size_t n_batches = win / (size_t)o->n_batch;
    if (n_batches > (size_t)o->val_batches) n_batches = (size_t)o->val_batches;
    if (n_batches == 0) n_batches = win ? 1 : 0;
    double sum = 0;
    size_t w = 0;
    for (size_t k = 0; k < n_batches; k++) {
        for (int32_t b = 0; b < o->n_batch; b++, w++) {
            size_t off = (w % win) * per;
            memcpy(t->tok + (size_t)b * per, o->val_tokens + off, per * sizeof(int32_t));
            memcpy(t->tgt + (size_t)b * per, o->val_tokens + off + 1, per * sizeof(int32_t));
        }
        double l;
        anneal_status s = anneal_train_step(t->c, t->tok + rank_offset(o), t->tgt + rank_offset(o),
                                            false, 1.0f, &l, err);
        if (s) return s;
        sum += l;
    }
    anneal_status s = anneal_mpi_mean(&sum, err);
    if (s) return s;
    *out = n_batches ? sum / (double)n_batches : NAN;
    return ANNEAL_OK;
}

// ---- the loss-curve SVG -----------------------------------------------------------------

static void svg_polyline(FILE *f, const series *s, double x0, double x1, double y0, double y1,
                         int64_t smax, double lo, double hi, const char *color, bool dots) {
    if (!s->n) return;
    if (!dots)
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", color);
    for (size_t i = 0; i < s->n; i++) {
        double x = x0 + (x1 - x0) * (double)s->p[i].step / (double)(smax ? smax : 1);
        double y = y1 - (y1 - y0) * (s->p[i].v - lo) / (hi - lo);
        if (dots)
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", x, y, color);
        else
            fprintf(f, "%.1f,%.1f ", x, y);
    }
    if (!dots) fprintf(f, "\"/>\n");
}

static anneal_status write_svg(const trainer *t, anneal_err *err) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory for the loss curve");
    const double W = 720, H = 420, x0 = 60, x1 = W - 20, y0 = 30, y1 = H - 50;
    double lo = INFINITY, hi = -INFINITY;
    int64_t smax = 1;
    const series *ss[2] = {&t->train, &t->val};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < ss[k]->n; i++) {
            double v = ss[k]->p[i].v;
            if (!isfinite(v)) continue;
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
            smax = ss[k]->p[i].step > smax ? ss[k]->p[i].step : smax;
        }
    if (!(lo < hi)) {
        lo = isfinite(lo) ? lo - 1 : 0;
        hi = lo + 2;
    }
    double pad = (hi - lo) * 0.05;
    lo -= pad;
    hi += pad;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n",
            W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f,
            "<text x=\"%.0f\" y=\"18\">loss by step (train: blue line, validation: orange "
            "dots)</text>\n",
            x0);
    for (int i = 0; i <= 4; i++) {
        double v = lo + (hi - lo) * i / 4.0, y = y1 - (y1 - y0) * i / 4.0;
        fprintf(f,
                "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text x=\"4\" y=\"%.1f\">%.3f</text>\n",
                x0, x1, y, y, y + 4, v);
        double x = x0 + (x1 - x0) * i / 4.0;
        fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%lld</text>\n", x, y1 + 18,
                (long long)llround((double)smax * i / 4.0));
    }
    fprintf(f,
            "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
            "stroke=\"black\"/>\n",
            x0, y0, x1 - x0, y1 - y0);
    svg_polyline(f, &t->train, x0, x1, y0, y1, smax, lo, hi, "#1f77b4", false);
    svg_polyline(f, &t->val, x0, x1, y0, y1, smax, lo, hi, "#ff7f0e", true);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">step</text>\n</svg>\n",
            (x0 + x1) / 2, H - 8);
    fclose(f);
    anneal_status s = anneal_write_file_atomic(t->svg_path, buf, len, err);
    free(buf); // from open_memstream
    return s;
}

// ---- metrics ----------------------------------------------------------------------------

// Keeps the records of steps <= step (a resumed run rewrites what came after its
// checkpoint) and rebuilds the curves from them.
static anneal_status load_metrics(trainer *t, int64_t step, anneal_err *err) {
    char *text = NULL;
    size_t len = 0;
    if (anneal_read_file(t->metrics_path, (size_t)1 << 30, &text, &len, NULL) != ANNEAL_OK)
        return ANNEAL_OK; // none yet
    char *out = anneal_malloc(len + 1);
    if (!out) {
        anneal_free(text);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    }
    size_t n_out = 0;
    for (char *line = text; line < text + len;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        size_t ll = nl ? (size_t)(nl - line) : (size_t)(text + len - line);
        json_error_t je;
        json_t *j = json_loadb(line, ll, 0, &je);
        json_t *js = j ? json_object_get(j, "step") : NULL;
        if (js && json_integer_value(js) <= step) {
            int64_t s = json_integer_value(js);
            json_t *l = json_object_get(j, "loss"), *v = json_object_get(j, "val_loss");
            if (l) series_add(&t->train, s, json_number_value(l));
            if (v) series_add(&t->val, s, json_number_value(v));
            memcpy(out + n_out, line, ll);
            n_out += ll;
            out[n_out++] = '\n';
        }
        json_decref(j);
        line += ll + 1;
    }
    anneal_status st = anneal_write_file_atomic(t->metrics_path, out, n_out, err);
    anneal_free(out);
    anneal_free(text);
    return st;
}

static void metric_line(trainer *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void metric_line(trainer *t, const char *fmt, ...) {
    if (!t->metrics) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(t->metrics, fmt, ap);
    va_end(ap);
    fputc('\n', t->metrics);
    fflush(t->metrics);
}

// ---- progress -----------------------------------------------------------------------------

static void fmt_eta(char *b, size_t cap, double s) {
    if (!(s >= 0) || s > 1e7) {
        snprintf(b, cap, "--:--");
        return;
    }
    long v = (long)(s + 0.5);
    if (v >= 3600)
        snprintf(b, cap, "%ld:%02ld:%02ld", v / 3600, v / 60 % 60, v % 60);
    else
        snprintf(b, cap, "%ld:%02ld", v / 60, v % 60);
}

static void progress(const trainer *t, bool tty, double loss, double lr, double tps, double eta,
                     bool final) {
    const anneal_trainer_opts *o = t->o;
    char e[32];
    fmt_eta(e, sizeof e, eta);
    if (tty) {
        char bar[31];
        int full = (int)(30.0 * (double)t->st.step / (double)o->steps);
        for (int k = 0; k < 30; k++)
            bar[k] = k < full ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r  step %lld/%lld [%s] loss %.4f lr %.2e %.0f tok/s ETA %s\033[K",
                (long long)t->st.step, (long long)o->steps, bar, loss, lr, tps, e);
        if (final) fputc('\n', stderr);
    } else {
        fprintf(stderr, "step %lld/%lld loss %.4f lr %.2e %.0f tok/s ETA %s\n",
                (long long)t->st.step, (long long)o->steps, loss, lr, tps, e);
    }
    fflush(stderr);
}

// ---- checkpoints ---------------------------------------------------------------------------

typedef struct save_ctx {
    trainer *t;
} save_ctx;

static anneal_status extra_keys(void *ctx, anneal_gguf_writer *w, anneal_err *err) {
    trainer *t = ctx;
    anneal_gguf_writer_set_u64(w, "anneal.train.step", (uint64_t)t->st.step);
    anneal_gguf_writer_set_u64(w, "anneal.train.tokens",
                               t->st.batches * (uint64_t)t->o->n_batch * (uint64_t)t->o->n_seq);
    if (t->lora) { // the frozen base names its adapter files, so optim.bin's hash covers them
        anneal_gguf_writer_set_str(w, "anneal.lora.adapter_sha256", t->lora_keys[0]);
        anneal_gguf_writer_set_str(w, "anneal.lora.state_sha256", t->lora_keys[1]);
    }
    return ANNEAL_OK;
}

// ---- LoRA state ---------------------------------------------------------------------------
// adapter.bin (little-endian): magic[8], u32 version, u32 rank, u32 targets, f32 alpha bits,
// u64 n, i64 AdamW step, then params, m, v ([n] f32 each), then the SHA-256 of all before.
#define LORA_MAGIC "ANNLLORA"
#define LORA_HDR 40

static void lora_header(uint8_t *h, const anneal_lora_params *p, anneal_lora_state ls) {
    memset(h, 0, LORA_HDR);
    memcpy(h, LORA_MAGIC, 8);
    uint32_t alpha, u[4];
    memcpy(&alpha, &p->alpha, 4);
    u[0] = 1;
    u[1] = (uint32_t)p->rank;
    u[2] = p->targets;
    u[3] = alpha;
    uint64_t q[2] = {ls.n, (uint64_t)*ls.step};
    memcpy(h + 8, u, sizeof u); // checkpoints are little-endian only (ckpt_write checks)
    memcpy(h + 24, q, sizeof q);
}

static anneal_status lora_write_state(trainer *t, const char *path, uint8_t sha[32],
                                      anneal_err *err) {
    anneal_lora_state ls = anneal_lora_train_state(t->lora);
    uint8_t h[LORA_HDR];
    lora_header(h, t->o->lora, ls);
    anneal_sha256 hs;
    if (anneal_sha256_init(&hs)) return anneal_err_set(err, ANNEAL_ERR_INTERNAL, "no sha256");
    anneal_atomic_file f = {0};
    anneal_status st = anneal_atomic_open(&f, path, err);
    const float *arr[3] = {ls.params, ls.m, ls.v};
    if (!st) st = anneal_atomic_write(&f, h, sizeof h, err);
    anneal_sha256_update(&hs, h, sizeof h);
    for (int i = 0; i < 3; i++) {
        if (!st) st = anneal_atomic_write(&f, arr[i], ls.n * sizeof(float), err);
        anneal_sha256_update(&hs, arr[i], ls.n * sizeof(float));
    }
    uint8_t d[32];
    anneal_sha256_final(&hs, d);
    if (!st) st = anneal_atomic_write(&f, d, sizeof d, err);
    if (!st) st = anneal_atomic_commit(&f, err);
    if (st) {
        anneal_atomic_abort(&f);
        return st;
    }
    return anneal_sha256_file(path, sha, err);
}

// Reads cdir/adapter.bin into the adapters after checking it is the file the checkpoint's
// model.gguf names and that it was written with the same rank, alpha and targets.
static anneal_status lora_read_state(trainer *t, const char *cdir, anneal_err *err) {
    const anneal_gguf *g = anneal_model_gguf(t->src);
    anneal_gguf_str want;
    if (anneal_gguf_get_str(g, "anneal.lora.state_sha256", &want, NULL) != ANNEAL_OK)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "%s holds a full-training checkpoint; it cannot be resumed with "
                              "--lora-rank",
                              cdir);
    char path[4300], hex[65];
    snprintf(path, sizeof path, "%s/adapter.bin", cdir);
    uint8_t sha[32];
    anneal_status st = anneal_sha256_file(path, sha, err);
    if (st) return st;
    anneal_hex(sha, 32, hex);
    if (want.len != 64 || memcmp(want.ptr, hex, 64) != 0)
        return anneal_err_set(err, ANNEAL_ERR_FORMAT,
                              "%s: its SHA-256 is not the one the checkpoint's model.gguf records",
                              path);
    anneal_map m;
    if ((st = anneal_map_file(path, &m, err))) return st;
    anneal_lora_state ls = anneal_lora_train_state(t->lora);
    uint8_t h[LORA_HDR];
    lora_header(h, t->o->lora, ls);
    size_t bytes = LORA_HDR + 3 * ls.n * sizeof(float) + 32;
    // The header must match ours except the step (bytes 32..39).
    if (m.size != bytes || memcmp(m.data, h, 32) != 0) {
        anneal_unmap(&m);
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "%s was written with other LoRA settings (rank, alpha, targets) "
                              "than this run's",
                              path);
    }
    const uint8_t *p = m.data;
    int64_t step;
    memcpy(&step, p + 32, 8);
    *ls.step = step;
    float *arr[3] = {ls.params, ls.m, ls.v};
    for (int i = 0; i < 3; i++)
        memcpy(arr[i], p + LORA_HDR + (size_t)i * ls.n * sizeof(float), ls.n * sizeof(float));
    anneal_unmap(&m);
    return ANNEAL_OK;
}

// clip_grad_norm_ over the adapters' gradients (as anneal_train_clip does over the model's).
static double lora_clip(anneal_lora_train *lt, double max_norm) {
    anneal_lora_state ls = anneal_lora_train_state(lt);
    double sum = 0;
    for (size_t i = 0; i < ls.n; i++)
        sum += (double)ls.grads[i] * ls.grads[i];
    double norm = sqrt(sum);
    if (max_norm > 0 && norm > max_norm) {
        float sc = (float)(max_norm / (norm + 1e-6));
        for (size_t i = 0; i < ls.n; i++)
            ls.grads[i] *= sc;
    }
    return norm;
}

static anneal_status save_model(void *ctx, const anneal_train_model *tm, const char *path,
                                anneal_err *err) {
    trainer *t = ctx;
    const anneal_trainer_opts *o = t->o;
    anneal_lineage lin = {.parents = o->parents,
                          .n_parents = o->n_parents,
                          .command = o->command ? o->command : "anneal train",
                          .config = o->config_json};
    if (!t->lora)
        return anneal_train_model_save(tm, path, anneal_model_gguf(t->src), extra_keys, t, &lin,
                                       err);
    // LoRA: adapter.gguf and adapter.bin first, then the frozen base naming their hashes.
    char dir[4096], ap[4300], sp[4300];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    snprintf(ap, sizeof ap, "%s/adapter.gguf", slash ? dir : ".");
    snprintf(sp, sizeof sp, "%s/adapter.bin", slash ? dir : ".");
    uint8_t sha[32];
    anneal_status s = anneal_lora_train_save(t->lora, ap, &lin, err);
    if (!s) s = anneal_sha256_file(ap, sha, err);
    if (s) return s;
    anneal_hex(sha, 32, t->lora_keys[0]);
    if ((s = lora_write_state(t, sp, sha, err))) return s;
    anneal_hex(sha, 32, t->lora_keys[1]);
    anneal_lora_train_base(t->lora);
    s = anneal_train_model_save(tm, path, anneal_model_gguf(t->src), extra_keys, t, &lin, err);
    anneal_lora_train_compose(t->lora);
    return s;
}

static void between_files(void *ctx, int64_t step) {
    const trainer *t = ctx;
    if (t->o->between_ckpt_files) t->o->between_ckpt_files(t->o->hook_ctx, step);
}

static anneal_status checkpoint(trainer *t, anneal_trainer_result *res, anneal_err *err) {
    ckpt_model_writer mw = {save_model, t, between_files};
    anneal_status s = ckpt_write(t->o->out_dir, &t->st, t->tm, t->opt, &mw, t->o->keep,
                                 res->last_ckpt, sizeof res->last_ckpt, err);
    if (s) return s;
    if (t->lora) { // the adapter is what this run produces
        char *slash = strrchr(res->last_ckpt, '/');
        if (slash)
            snprintf(slash + 1, sizeof res->last_ckpt - (size_t)(slash + 1 - res->last_ckpt),
                     "adapter.gguf");
    }
    return write_svg(t, err);
}

// ---- the loop -----------------------------------------------------------------------------

static anneal_status check_opts(const anneal_trainer_opts *o, anneal_err *err) {
    if (!o->out_dir) return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "no output directory");
    if (!o->resume && !o->init_from)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "no model to start from");
    if (o->n_seq < 1 || o->n_batch < 1 || o->accum < 1 || o->steps < 1 || o->keep < 1)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "sequence, batch, accumulation, steps and keep must be >= 1");
    if (o->n_train_tokens < (size_t)o->n_seq + 2)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "the training data has %zu tokens; a sequence of %d needs at least "
                              "%d",
                              o->n_train_tokens, (int)o->n_seq, (int)o->n_seq + 2);
    if (!(o->sched.lr > 0) || !(o->sched.min_lr >= 0) || o->sched.warmup < 0)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "learning rate must be > 0, min_lr >= 0, warmup >= 0");
    if (o->lora && !o->init_from)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "LoRA needs a base model (init_from)");
    if (o->n_batch % anneal_mpi_size() != 0)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "a batch of %d sequences does not split evenly over %d MPI ranks",
                              (int)o->n_batch, anneal_mpi_size());
    return ANNEAL_OK;
}

static void trainer_free(trainer *t) {
    if (t->metrics) fclose(t->metrics);
    anneal_free(t->train.p);
    anneal_free(t->val.p);
    anneal_free(t->tok);
    anneal_free(t->tgt);
    anneal_adamw_free(t->opt);
    anneal_lora_train_free(t->lora);
    anneal_train_ctx_free(t->c);
    anneal_train_model_free(t->tm);
    anneal_model_free(t->src);
}

anneal_status anneal_trainer_run(const anneal_trainer_opts *o, anneal_trainer_result *res,
                                 anneal_err *err) {
    memset(res, 0, sizeof *res);
    anneal_status s = check_opts(o, err);
    if (s) return s;
    trainer t = {.o = o};
    if ((s = ckpt_mkdir(o->out_dir, err))) return s;
    if (anneal_mpi_rank() == 0) ckpt_clean_tmp(o->out_dir); // rank 0 alone writes there
    snprintf(t.metrics_path, sizeof t.metrics_path, "%s/metrics.jsonl", o->out_dir);
    snprintf(t.svg_path, sizeof t.svg_path, "%s/loss.svg", o->out_dir);

    char from[4200];
    int64_t start = 0;
    if (o->resume) {
        char cdir[4096];
        if ((s = anneal_ckpt_find(o->out_dir, &start, cdir, sizeof cdir, err))) return s;
        snprintf(from, sizeof from, "%s/model.gguf", cdir);
        if (!o->quiet) ANNEAL_INFO("resuming from %s (step %lld)", cdir, (long long)start);
    } else {
        snprintf(from, sizeof from, "%s", o->init_from);
    }
    if ((s = anneal_model_load(from, &t.src, err)) ||
        (s = anneal_train_model_from(t.src, &t.tm, err)) ||
        (s = anneal_train_ctx_new(t.tm, o->n_batch / anneal_mpi_size(), o->n_seq, o->threads, &t.c,
                                  err)) ||
        (s = anneal_adamw_new(t.tm, &o->adamw, &t.opt, err)) ||
        (o->lora && (s = anneal_lora_train_new(t.tm, o->lora, &t.lora, err))))
        goto done;
    if (o->resume && !o->lora &&
        anneal_gguf_find(anneal_model_gguf(t.src), "anneal.lora.state_sha256")) {
        s = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                           "%s is the frozen base of a LoRA run: resume it with the same "
                           "--lora-* flags",
                           from);
        goto done;
    }
    anneal_train_ctx_set_loss(t.c, o->loss, o->loss_ctx);
    size_t n = (size_t)o->n_batch * (size_t)o->n_seq;
    t.tok = anneal_calloc(n, sizeof *t.tok);
    t.tgt = anneal_calloc(n, sizeof *t.tgt);
    if (!t.tok || !t.tgt) {
        s = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
        goto done;
    }
    t.st = (ckpt_state){.step = 0, .rng = o->seed ^ 0x5DEECE66Dull, .batches = 0};
    if (o->resume) {
        char cdir[4200];
        snprintf(cdir, sizeof cdir, "%s", from);
        *strrchr(cdir, '/') = 0;
        if ((s = ckpt_read_state(cdir, &t.st, t.opt, t.tm->n_params, err))) goto done;
        if (t.st.step != start) {
            s = anneal_err_set(err, ANNEAL_ERR_INTERNAL, "checkpoint step changed while reading");
            goto done;
        }
        if (t.lora && (s = lora_read_state(&t, cdir, err))) goto done;
    }
    if (t.lora) anneal_lora_train_compose(t.lora); // W = W0 + s * B.A for every forward
    if (anneal_mpi_rank() == 0 && (s = load_metrics(&t, o->resume ? start : -1, err))) goto done;
    t.metrics = anneal_mpi_rank() == 0 ? fopen(t.metrics_path, "a") : NULL;
    if (anneal_mpi_rank() == 0 && !t.metrics) {
        s = anneal_err_set(err, ANNEAL_ERR_IO, "cannot open %s for appending", t.metrics_path);
        goto done;
    }
    if (t.st.step >= o->steps) { // already done (a resume loop's last round)
        snprintf(res->last_ckpt, sizeof res->last_ckpt, "%s", from);
        goto done;
    }

    bool tty = !o->quiet && isatty(2);
    uint64_t t_start = anneal_time_ns(), tokens_run = 0;
    int64_t first = t.st.step;
    double loss = NAN, lr = 0;
    while (t.st.step < o->steps) {
        uint64_t t0 = anneal_time_ns();
        anneal_train_zero_grads(t.c);
        loss = 0;
        for (int32_t a = 0; a < o->accum; a++) {
            sample_batch(&t);
            if (o->loss_batch && (s = o->loss_batch(o->loss_ctx, t.tok + rank_offset(o),
                                                    o->n_batch / anneal_mpi_size(), o->n_seq, err)))
                goto done;
            double l;
            if ((s = anneal_train_step(t.c, t.tok + rank_offset(o), t.tgt + rank_offset(o), true,
                                       1.0f / (float)o->accum, &l, err)))
                goto done;
            loss += l / (double)o->accum;
        }
        if ((s = anneal_mpi_allreduce_grads(t.tm, err)) || (s = anneal_mpi_mean(&loss, err)))
            goto done;
        if (o->after_backward) o->after_backward(o->hook_ctx, t.tm);
        double gn;
        lr = anneal_lr_at(&o->sched, t.st.step);
        if (t.lora) {
            // dA, dB are linear in dW, so computing them once from the accumulated (and
            // all-reduced) dW is the mean of the micro-steps' and ranks' adapter gradients.
            anneal_lora_train_zero_grads(t.lora);
            anneal_lora_train_grads(t.lora);
            gn = lora_clip(t.lora, o->clip);
            anneal_lora_train_adamw(t.lora, &o->adamw, (float)lr);
            anneal_lora_train_compose(t.lora);
        } else {
            gn = anneal_train_clip(t.c, o->clip);
            anneal_adamw_update(t.opt, t.c, (float)lr);
        }
        t.st.step++;
        if (!isfinite(loss)) {
            s = anneal_err_set(err, ANNEAL_ERR_RANGE, "step %lld: the loss is %g (diverged)",
                               (long long)t.st.step, loss);
            goto done;
        }
        uint64_t now = anneal_time_ns();
        tokens_run += n * (uint64_t)o->accum;
        double el = (double)(now - t_start) / 1e9, dt = (double)(now - t0) / 1e9;
        double tps = (double)tokens_run / el;
        metric_line(&t,
                    "{\"step\":%lld,\"loss\":%.6f,\"lr\":%.6e,\"grad_norm\":%.6f,\"tokens\":%llu,"
                    "\"tok_per_s\":%.1f,\"step_s\":%.4f}",
                    (long long)t.st.step, loss, lr, gn, (unsigned long long)(t.st.batches * n),
                    (double)(n * (uint64_t)o->accum) / dt, dt);
        series_add(&t.train, t.st.step, loss);
        bool last = t.st.step == o->steps;
        if (o->val_every > 0 && o->n_val_tokens > (size_t)o->n_seq &&
            (t.st.step % o->val_every == 0 || last)) {
            double vl;
            // A loss that needs per-batch data (loss_batch: the teacher's logits) has none for
            // validation batches: those report cross-entropy on the data.
            if (o->loss_batch) anneal_train_ctx_set_loss(t.c, NULL, NULL);
            s = validate(&t, &vl, err);
            anneal_train_ctx_set_loss(t.c, o->loss, o->loss_ctx);
            if (s) goto done;
            metric_line(&t, "{\"step\":%lld,\"val_loss\":%.6f,\"val_ppl\":%.4f}",
                        (long long)t.st.step, vl, exp(vl));
            series_add(&t.val, t.st.step, vl);
            res->last_val_loss = vl;
            if (!o->quiet) {
                if (tty) fputc('\n', stderr);
                fprintf(stderr, "step %lld: validation loss %.4f, perplexity %.2f\n",
                        (long long)t.st.step, vl, exp(vl));
            }
        }
        double eta = (double)(o->steps - t.st.step) * el / (double)(t.st.step - first);
        if (!o->quiet && (tty || last || t.st.step == first + 1 ||
                          (o->log_every > 0 && t.st.step % o->log_every == 0)))
            progress(&t, tty, loss, lr, tps, eta, last);
        if (anneal_mpi_rank() == 0 &&
            ((o->ckpt_every > 0 && t.st.step % o->ckpt_every == 0) || last))
            if ((s = checkpoint(&t, res, err))) goto done;
    }
    res->steps_run = t.st.step - first;
    res->tokens_per_s = (double)tokens_run / ((double)(anneal_time_ns() - t_start) / 1e9);
    res->last_loss = loss;
done:
    res->step = t.st.step;
    trainer_free(&t);
    return s;
}
