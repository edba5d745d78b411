// Quality filter benchmark: every rule at its default, one thread, over a text file split
// into documents.
//
//   bench_quality [TEXT] [--runs N] [--config FILE.json]
//
// TEXT defaults to ../shared/corpora/tinystories-sample.txt. Each line (a '\r' before the
// '\n' dropped) is one document; the file is small, so a run evaluates all documents
// repeatedly until 64 MB have gone through. The figure is the median run's throughput over
// the document bytes, in MB/s (10^6 bytes), with the kept count and the per-rule removals
// of one pass.
#include "anneal/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct doc {
    const char *p;
    size_t n;
} doc;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *path = "../shared/corpora/tinystories-sample.txt", *cfg_path = NULL;
    long runs = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            char *end;
            runs = strtol(argv[++i], &end, 10);
            if (*end || runs < 1 || runs > 1000) {
                fprintf(stderr, "bench_quality: --runs wants 1..1000, got %s\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            cfg_path = argv[++i];
        } else if (argv[i][0] != '-') {
            path = argv[i];
        } else {
            fprintf(stderr, "usage: bench_quality [TEXT] [--runs N] [--config FILE.json]\n");
            return 2;
        }
    }
    anneal_err err = {0};
    anneal_quality_config cfg = anneal_quality_config_default();
    if (cfg_path) {
        char *js = NULL;
        size_t jn = 0;
        if (anneal_read_file(cfg_path, 1 << 20, &js, &jn, &err) ||
            anneal_quality_config_parse(js, jn, cfg_path, &cfg, &err)) {
            fprintf(stderr, "bench_quality: %s\n", anneal_err_msg(&err));
            anneal_free(js);
            return 1;
        }
        anneal_free(js);
    }
    anneal_map m;
    if (anneal_map_file(path, &m, &err)) {
        fprintf(stderr, "bench_quality: %s\n", anneal_err_msg(&err));
        return 1;
    }
    const char *text = (const char *)m.data;
    size_t size = m.size, ndocs = 0, bytes = 0;
    doc *docs = malloc((size / 2 + 2) * sizeof(doc));
    if (!docs) {
        fprintf(stderr, "bench_quality: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < size;) {
        const char *nl = memchr(text + i, '\n', size - i);
        size_t e = nl ? (size_t)(nl - text) : size, n = e - i;
        if (n && text[i + n - 1] == '\r') n--;
        if (n) {
            docs[ndocs++] = (doc){text + i, n};
            bytes += n;
        }
        i = e + 1;
    }
    if (!ndocs) {
        fprintf(stderr, "bench_quality: %s has no documents\n", path);
        return 1;
    }
    anneal_quality_scratch *s = anneal_quality_scratch_new();
    size_t removed[ANNEAL_QR_COUNT] = {0}, kept = 0;
    for (size_t d = 0; d < ndocs; d++) { // untimed pass: warms the scratch, counts verdicts
        anneal_quality_result r;
        if (anneal_quality_check(s, &cfg, docs[d].p, docs[d].n, &r, &err)) {
            fprintf(stderr, "bench_quality: %s\n", anneal_err_msg(&err));
            return 1;
        }
        if (r.keep)
            kept++;
        else
            removed[r.rule]++;
    }
    size_t reps = (size_t)(64e6 / (double)bytes) + 1;
    double *mbs = malloc((size_t)runs * sizeof(double));
    for (long run = 0; run < runs; run++) {
        uint64_t t0 = anneal_time_ns();
        for (size_t rep = 0; rep < reps; rep++)
            for (size_t d = 0; d < ndocs; d++) {
                anneal_quality_result r;
                anneal_quality_check(s, &cfg, docs[d].p, docs[d].n, &r, NULL);
            }
        double sec = (double)(anneal_time_ns() - t0) / 1e9;
        mbs[run] = (double)bytes * (double)reps / sec / 1e6;
    }
    qsort(mbs, (size_t)runs, sizeof(double), cmp_double);
    printf("bench_quality: %zu documents, %zu bytes, x%zu per run, %ld runs\n", ndocs, bytes, reps,
           runs);
    printf("kept %zu of %zu\n", kept, ndocs);
    for (int r = 1; r < ANNEAL_QR_COUNT; r++)
        if (removed[r])
            printf("  removed by %s: %zu\n", anneal_quality_rule_name((anneal_quality_rule)r),
                   removed[r]);
    printf("median %.1f MB/s (min %.1f, max %.1f)\n", mbs[runs / 2], mbs[0], mbs[runs - 1]);
    free(mbs);
    free(docs);
    anneal_quality_scratch_free(s);
    anneal_unmap(&m);
    return 0;
}
