// Load generator for an OpenAI-compatible server (anneal serve, llama-server, vLLM): N
// concurrent clients each send streaming completion requests back to back; reports
// aggregate generated tokens per second (all generated tokens / wall time of the whole
// run) and p50/p99 of time to first token (request start to the first event with text)
// and inter-token latency (between consecutive events with text).
//
//   bench_serve --port 8080 -c 32 -n 4 --max-tokens 128 [--host 127.0.0.1] [--chat]
//               [--prompt TEXT] [--same-prompt] [--api-key KEY] [--json]
//
// Every request's prompt is "Request C.I: " (client C, its request I) followed by the
// prompt text, so each request has to be prefilled (a server's prefix cache reuses only
// the chat template's first tokens) while the run stays the same from one server to the
// next; --same-prompt sends the text alone.
#include "anneal/base.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct opts {
    const char *host, *prompt, *key;
    int port, clients, requests, max_tokens;
    bool chat, json, same;
} opts;

// About 100 Llama tokens of ordinary prose: the default prompt text.
static const char *default_prompt =
    "You are helping a small bakery plan its week. On Monday they bake bread and rolls, on Tuesday "
    "cakes for two birthday orders, and on Wednesday they close early for a delivery of flour. The "
    "owner wants a short list of what to prepare each evening, which ovens to use, and how many "
    "people should come in on Thursday morning. Write the plan as a few clear sentences.";

typedef struct lat {
    double *v;
    size_t n, cap;
} lat;

static void lat_add(lat *l, double x) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        double *p = realloc(l->v, cap * sizeof *p);
        if (!p) return;
        l->v = p;
        l->cap = cap;
    }
    l->v[l->n++] = x;
}

typedef struct client {
    const opts *o;
    int id;
    lat ttft, itl;
    long tokens, errors, done;
    pthread_t th;
} client;

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(lat *l, double p) {
    if (!l->n) return 0;
    qsort(l->v, l->n, sizeof *l->v, cmp_dbl);
    size_t i = (size_t)(p * (double)(l->n - 1) + 0.5);
    return l->v[i];
}

// Decodes HTTP/1.1 chunked bytes incrementally into out; returns false on a framing error.
typedef struct dechunk {
    int state; // 0 size line, 1 data, 2 CRLF after data, 3 done
    size_t left;
    char line[32];
    size_t line_n;
} dechunk;

static bool dechunk_feed(dechunk *d, const char *p, size_t n, char *out, size_t *out_n, size_t cap) {
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (d->state == 0) {
            if (c == '\n') {
                d->line[d->line_n] = '\0';
                d->left = strtoul(d->line, NULL, 16);
                d->line_n = 0;
                d->state = d->left ? 1 : 3;
            } else if (c != '\r' && d->line_n + 1 < sizeof d->line) {
                d->line[d->line_n++] = c;
            }
        } else if (d->state == 1) {
            size_t k = n - i < d->left ? n - i : d->left;
            if (*out_n + k > cap) return false;
            memcpy(out + *out_n, p + i, k);
            *out_n += k;
            d->left -= k;
            i += k - 1;
            if (!d->left) d->state = 2;
        } else if (d->state == 2) {
            if (c == '\n') d->state = 0;
        }
    }
    return true;
}

// One streaming request; records latencies. Returns generated tokens, -1 on error.
static long one_request(client *cl, int idx) {
    const opts *o = cl->o;
    uint64_t t0 = anneal_time_ns(), last = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    if (fd < 0 || inet_pton(AF_INET, o->host, &a.sin_addr) != 1 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char body[4096], reqbuf[8192], tag[64] = "";
    if (!o->same) snprintf(tag, sizeof tag, "Request %d.%d: ", cl->id, idx);
    if (o->chat)
        snprintf(body, sizeof body,
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"%s%s\"}],\"max_tokens\":%d,\"ignore_eos\":true,"
                 "\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
                 tag, o->prompt, o->max_tokens);
    else
        snprintf(body, sizeof body,
                 "{\"prompt\":\"%s%s\",\"max_tokens\":%d,\"ignore_eos\":true,\"stream\":true,"
                 "\"stream_options\":{\"include_usage\":true}}",
                 tag, o->prompt, o->max_tokens);
    char auth[512] = "";
    if (o->key) snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", o->key);
    int n = snprintf(reqbuf, sizeof reqbuf,
                     "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n%sContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     o->chat ? "/v1/chat/completions" : "/v1/completions", o->host, auth, strlen(body), body);
    if (write(fd, reqbuf, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t cap = 1 << 22, sse_n = 0, scan = 0;
    char *sse = malloc(cap), buf[16384], hdr[4096];
    size_t hdr_n = 0;
    bool in_body = false, chunked = false, ok = true;
    long tokens = -1, events = 0;
    dechunk d = {0};
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        uint64_t now = anneal_time_ns();
        const char *p = buf;
        size_t len = (size_t)r;
        if (!in_body) {
            size_t k = len < sizeof hdr - 1 - hdr_n ? len : sizeof hdr - 1 - hdr_n;
            memcpy(hdr + hdr_n, p, k);
            hdr_n += k;
            hdr[hdr_n] = '\0';
            char *end = strstr(hdr, "\r\n\r\n");
            if (!end) continue;
            if (strncmp(hdr, "HTTP/1.1 200", 12)) {
                ok = false;
                break;
            }
            chunked = strcasestr(hdr, "transfer-encoding: chunked") != NULL;
            size_t body_off = (size_t)(end + 4 - hdr) - (hdr_n - k);
            p += body_off;
            len -= body_off;
            in_body = true;
        }
        if (chunked) ok = dechunk_feed(&d, p, len, sse, &sse_n, cap);
        else if (sse_n + len <= cap) {
            memcpy(sse + sse_n, p, len);
            sse_n += len;
        }
        if (!ok) break;
        // Each complete event with text is a token arrival.
        for (char *e; (e = memmem(sse + scan, sse_n - scan, "\n\n", 2));) {
            *e = '\0';
            const char *ev = sse + scan;
            bool text = (strstr(ev, "\"text\":\"") && !strstr(ev, "\"text\":\"\"")) ||
                        (strstr(ev, "\"content\":\"") && !strstr(ev, "\"content\":\"\""));
            const char *u = strstr(ev, "\"completion_tokens\":");
            if (u) tokens = strtol(u + 20, NULL, 10);
            if (text) {
                events++;
                if (!last) lat_add(&cl->ttft, (double)(now - t0) / 1e9);
                else lat_add(&cl->itl, (double)(now - last) / 1e9);
                last = now;
            }
            scan = (size_t)(e - sse) + 2;
        }
    }
    close(fd);
    free(sse);
    // A server that sends no usage chunk: count the events with text (one token each
    // unless it holds back incomplete UTF-8).
    if (tokens < 0 && events > 0) tokens = events;
    return ok ? tokens : -1;
}

static void *client_main(void *arg) {
    client *cl = arg;
    for (int i = 0; i < cl->o->requests; i++) {
        long t = one_request(cl, i);
        if (t < 0) cl->errors++;
        else {
            cl->tokens += t;
            cl->done++;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    opts o = {.host = "127.0.0.1", .prompt = default_prompt, .port = 8080, .clients = 8, .requests = 4,
              .max_tokens = 128};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--chat")) o.chat = true;
        else if (!strcmp(a, "--json")) o.json = true;
        else if (!strcmp(a, "--same-prompt")) o.same = true;
        else if (v && !strcmp(a, "--host")) o.host = argv[++i];
        else if (v && !strcmp(a, "--port")) o.port = atoi(argv[++i]);
        else if (v && !strcmp(a, "-c")) o.clients = atoi(argv[++i]);
        else if (v && !strcmp(a, "-n")) o.requests = atoi(argv[++i]);
        else if (v && !strcmp(a, "--max-tokens")) o.max_tokens = atoi(argv[++i]);
        else if (v && !strcmp(a, "--prompt")) o.prompt = argv[++i];
        else if (v && !strcmp(a, "--api-key")) o.key = argv[++i];
        else {
            fprintf(stderr, "usage: bench_serve [--host H] [--port P] [-c CLIENTS] [-n REQUESTS_EACH] "
                            "[--max-tokens N] [--prompt TEXT] [--same-prompt] [--api-key KEY] [--chat] [--json]\n");
            return 2;
        }
    }
    if (o.clients < 1 || o.requests < 1 || o.max_tokens < 1 || strpbrk(o.prompt, "\"\\")) {
        fprintf(stderr, "bench_serve: bad arguments (prompt may not contain quotes or backslashes)\n");
        return 2;
    }
    client *cl = calloc((size_t)o.clients, sizeof *cl);
    uint64_t t0 = anneal_time_ns();
    for (int i = 0; i < o.clients; i++) {
        cl[i].o = &o;
        cl[i].id = i;
        pthread_create(&cl[i].th, NULL, client_main, &cl[i]);
    }
    lat ttft = {0}, itl = {0};
    long tokens = 0, errors = 0, done = 0;
    for (int i = 0; i < o.clients; i++) {
        pthread_join(cl[i].th, NULL);
        tokens += cl[i].tokens;
        errors += cl[i].errors;
        done += cl[i].done;
        for (size_t k = 0; k < cl[i].ttft.n; k++)
            lat_add(&ttft, cl[i].ttft.v[k]);
        for (size_t k = 0; k < cl[i].itl.n; k++)
            lat_add(&itl, cl[i].itl.v[k]);
        free(cl[i].ttft.v);
        free(cl[i].itl.v);
    }
    double wall = (double)(anneal_time_ns() - t0) / 1e9;
    double tps = tokens / wall;
    if (o.json)
        printf("{\"clients\":%d,\"requests\":%ld,\"errors\":%ld,\"tokens\":%ld,\"seconds\":%.3f,\"tokens_per_s\":%.2f,"
               "\"ttft_p50\":%.4f,\"ttft_p99\":%.4f,\"itl_p50\":%.5f,\"itl_p99\":%.5f}\n",
               o.clients, done, errors, tokens, wall, tps, pct(&ttft, 0.5), pct(&ttft, 0.99), pct(&itl, 0.5),
               pct(&itl, 0.99));
    else
        printf("clients %d, requests %ld (errors %ld), generated %ld tokens in %.2f s: %.1f tokens/s\n"
               "time to first token: p50 %.1f ms, p99 %.1f ms\ninter-token latency: p50 %.2f ms, p99 %.2f ms\n",
               o.clients, done, errors, tokens, wall, tps, pct(&ttft, 0.5) * 1e3, pct(&ttft, 0.99) * 1e3,
               pct(&itl, 0.5) * 1e3, pct(&itl, 0.99) * 1e3);
    free(ttft.v);
    free(itl.v);
    free(cl);
    return errors ? 1 : 0;
}
