// Data pipeline throughput: clean + PII redaction (the benchmark) on the shared corpora
// made noisy: HTML-wrapped, PII-sprinkled, with boilerplate lines, control characters,
// full-width letters and duplicated paragraphs. With --write FILE it only writes the noisy
// corpus as JSON lines (for `anneal data` end-to-end runs and the dedup benchmark).
//
//   bench_data [--mb N] [--reps R] [--write FILE] CORPUS.txt...
#include "anneal/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}
static void puts_(buf *b, const char *s) {
    put(b, s, strlen(s));
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(uint32_t n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

// Seconds of this thread's CPU time: on a shared machine wall time also counts the time other
// processes hold the core, so both are reported.
static double cpu_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void card(buf *b) {
    int d[16] = {4};
    for (int i = 1; i < 15; i++)
        d[i] = (int)rnd(10);
    int sum = 0;
    for (int i = 0; i < 15; i++) {
        int v = d[14 - i];
        if (i % 2 == 0) v = v * 2 > 9 ? v * 2 - 9 : v * 2;
        sum += v;
    }
    d[15] = (10 - sum % 10) % 10;
    char s[24];
    size_t k = 0;
    for (int i = 0; i < 16; i++) {
        if (i && i % 4 == 0) s[k++] = ' ';
        s[k++] = (char)('0' + d[i]);
    }
    s[k] = '\0';
    puts_(b, s);
}

// One noisy document made of a paragraph of the corpus.
static void noisy(buf *out, const char *para, size_t n) {
    bool html = rnd(3) == 0;
    if (html) puts_(out, "<div class=\"post\"><p>");
    if (rnd(4) == 0) puts_(out, "Accept all cookies to continue\n");
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && para[i] != '\n') continue;
        put(out, para + start, i - start);
        switch (rnd(12)) {
        case 0: {
            char s[64];
            snprintf(s, sizeof s, " Mail me at user%u@example%u.com.", rnd(10000), rnd(100));
            puts_(out, s);
            break;
        }
        case 1: {
            char s[64];
            snprintf(s, sizeof s, " Call (555) %03u-%04u today.", rnd(1000), rnd(10000));
            puts_(out, s);
            break;
        }
        case 2: {
            char s[64];
            snprintf(s, sizeof s, " Seen from 10.%u.%u.%u.", rnd(256), rnd(256), rnd(256));
            puts_(out, s);
            break;
        }
        case 3: puts_(out, " Card: "); card(out); break;
        case 4: puts_(out, html ? " &amp; <b>more</b>" : " \xEF\xBC\xA1\xEF\xBC\xA2\xEF\xBC\xA3"); break;
        case 5: puts_(out, "\x07\t  "); break;
        default: break;
        }
        puts_(out, html ? "<br>\n" : "\n");
        start = i + 1;
    }
    if (rnd(5) == 0) puts_(out, "All rights reserved. Privacy Policy | Terms of Use\n");
    if (html) puts_(out, "</p></div>");
}

int main(int argc, char **argv) {
    size_t mb = 64;
    int reps = 3;
    const char *write_path = NULL;
    buf corpus = {0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mb") == 0 && i + 1 < argc) mb = (size_t)atol(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--write") == 0 && i + 1 < argc) write_path = argv[++i];
        else {
            char *data = NULL;
            size_t len = 0;
            anneal_err err = {0};
            if (anneal_read_file(argv[i], (size_t)1 << 30, &data, &len, &err)) {
                fprintf(stderr, "bench_data: %s\n", err.msg);
                return 1;
            }
            put(&corpus, data, len);
            anneal_free(data);
        }
    }
    if (!corpus.n) {
        fprintf(stderr, "usage: bench_data [--mb N] [--reps R] [--write FILE] CORPUS.txt...\n");
        return 2;
    }
    // Paragraphs of the corpus (blank-line separated).
    size_t n_para = 0, cap_para = 1024;
    size_t *ps = malloc(cap_para * sizeof *ps), *pl = malloc(cap_para * sizeof *pl);
    for (size_t i = 0; i < corpus.n;) {
        size_t j = i;
        while (j < corpus.n && !(corpus.p[j] == '\n' && j + 1 < corpus.n && corpus.p[j + 1] == '\n'))
            j++;
        if (n_para == cap_para) {
            cap_para *= 2;
            ps = realloc(ps, cap_para * sizeof *ps);
            pl = realloc(pl, cap_para * sizeof *pl);
        }
        ps[n_para] = i;
        pl[n_para++] = j - i;
        i = j + 2;
    }
    // Documents: 1-4 paragraphs each; one in ten repeats an earlier document.
    size_t target = mb << 20, n_docs = 0, cap_docs = 1 << 16;
    buf text = {0};
    size_t *ds = malloc(cap_docs * sizeof *ds), *dl = malloc(cap_docs * sizeof *dl);
    while (text.n < target) {
        if (n_docs == cap_docs) {
            cap_docs *= 2;
            ds = realloc(ds, cap_docs * sizeof *ds);
            dl = realloc(dl, cap_docs * sizeof *dl);
        }
        size_t start = text.n;
        if (n_docs > 10 && rnd(10) == 0) {
            size_t k = rnd((uint32_t)n_docs);
            size_t s = ds[k], l = dl[k];
            char *copy = malloc(l);
            memcpy(copy, text.p + s, l);
            put(&text, copy, l);
            free(copy);
        } else {
            int np = 1 + (int)rnd(4);
            size_t p0 = rnd((uint32_t)n_para);
            for (int k = 0; k < np; k++) {
                size_t p = (p0 + (size_t)k) % n_para;
                noisy(&text, corpus.p + ps[p], pl[p]);
                puts_(&text, "\n\n");
            }
        }
        ds[n_docs] = start;
        dl[n_docs++] = text.n - start;
    }
    if (write_path) {
        FILE *f = fopen(write_path, "w");
        if (!f) {
            perror(write_path);
            return 1;
        }
        for (size_t i = 0; i < n_docs; i++) {
            fprintf(f, "{\"id\":\"doc%zu\",\"text\":", i);
            anneal_json_write_str(f, text.p + ds[i], dl[i]);
            fputs("}\n", f);
        }
        if (fclose(f) != 0) {
            perror(write_path);
            return 1;
        }
        printf("wrote %zu documents, %.1f MB of text, to %s\n", n_docs, (double)text.n / 1e6,
               write_path);
        return 0;
    }
    anneal_clean_config cc = anneal_clean_config_default();
    anneal_pii_config pc = anneal_pii_config_default();
    anneal_clean_scratch *cs = anneal_clean_scratch_new();
    anneal_err err = {0};
    char *red = NULL;
    size_t red_len = 0, red_cap = 0;
    if (reps < 1) reps = 1;
    double *cs_mb = calloc((size_t)reps, sizeof *cs_mb), *both_mb = calloc((size_t)reps, sizeof *both_mb);
    double *both_cpu = calloc((size_t)reps, sizeof *both_cpu);
    for (int r = 0; r < reps; r++) {
        double t0 = (double)anneal_time_ns() * 1e-9;
        for (size_t i = 0; i < n_docs; i++) {
            const char *o;
            size_t ol;
            anneal_clean_text(cs, &cc, text.p + ds[i], dl[i], &o, &ol, NULL, &err);
        }
        double t1 = (double)anneal_time_ns() * 1e-9, c1 = cpu_sec();
        for (size_t i = 0; i < n_docs; i++) {
            const char *o;
            size_t ol;
            anneal_clean_text(cs, &cc, text.p + ds[i], dl[i], &o, &ol, NULL, &err);
            anneal_pii_redact(&pc, o, ol, &red, &red_len, &red_cap, NULL, &err);
        }
        double t2 = (double)anneal_time_ns() * 1e-9, c2 = cpu_sec();
        double c = (double)text.n / (t1 - t0) / 1e6, b = (double)text.n / (t2 - t1) / 1e6;
        printf("rep %d: clean %.1f MB/s, clean+pii %.1f MB/s (one core)\n", r + 1, c, b);
        cs_mb[r] = c;
        both_mb[r] = b;
        both_cpu[r] = (double)text.n / (c2 - c1) / 1e6;
    }
    qsort(cs_mb, (size_t)reps, sizeof *cs_mb, cmp_double);
    qsort(both_mb, (size_t)reps, sizeof *both_mb, cmp_double);
    qsort(both_cpu, (size_t)reps, sizeof *both_cpu, cmp_double);
    printf("%zu documents, %.1f MB noisy text; median of %d: clean %.1f MB/s, clean+pii %.1f "
           "MB/s per core (wall), clean+pii %.1f MB per CPU-second\n",
           n_docs, (double)text.n / 1e6, reps, cs_mb[reps / 2], both_mb[reps / 2],
           both_cpu[reps / 2]);
    free(both_cpu);
    free(cs_mb);
    free(both_mb);
    anneal_free(red);
    anneal_clean_scratch_free(cs);
    free(text.p);
    free(corpus.p);
    free(ps);
    free(pl);
    free(ds);
    free(dl);
    return 0;
}
