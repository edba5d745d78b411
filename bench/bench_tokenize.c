// Tokenizer encoding benchmark: encodes a text line by line with a GGUF vocabulary.
//
//   bench_tokenize VOCAB.gguf TEXT [--runs N] [--ids-out FILE]
//
// Each line of TEXT (without its '\n'; a final '\n' starts no extra line) is one encode call
// on this thread, with no BOS and ANNEAL_TOK_ADD_SPECIAL off. A run encodes every line; the
// figure is the median run's throughput counting all input bytes including newlines, in
// MB/s (10^6 bytes). --ids-out writes the ids of an untimed pass, one output line per input
// line, space-separated (the format bench/spm_ref.cpp writes, compared by bench/run.sh).
#include "anneal/gguf.h"
#include "anneal/tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct line {
    const char *p;
    size_t n;
} line;

static int usage(void) {
    fprintf(stderr, "usage: bench_tokenize VOCAB.gguf TEXT [--runs N] [--ids-out FILE]\n");
    return 2;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *vocab = NULL, *text_path = NULL, *ids_out = NULL;
    long runs = 7;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            char *end;
            runs = strtol(argv[++i], &end, 10);
            if (*end || runs < 1 || runs > 1000) {
                fprintf(stderr, "bench_tokenize: --runs wants 1..1000, got %s\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--ids-out") == 0 && i + 1 < argc) {
            ids_out = argv[++i];
        } else if (argv[i][0] != '-' && !vocab) {
            vocab = argv[i];
        } else if (argv[i][0] != '-' && !text_path) {
            text_path = argv[i];
        } else {
            return usage();
        }
    }
    if (!vocab || !text_path) return usage();

    anneal_err err = {0};
    anneal_gguf *g = NULL;
    anneal_tokenizer *t = NULL;
    if (anneal_gguf_open(vocab, &g, &err) || anneal_tokenizer_load(g, &t, &err)) {
        fprintf(stderr, "bench_tokenize: %s: %s\n", vocab, anneal_err_msg(&err));
        anneal_gguf_close(g);
        return 1;
    }
    anneal_gguf_close(g);
    char *text = NULL;
    size_t size = 0;
    if (anneal_read_file(text_path, (size_t)1 << 32, &text, &size, &err)) {
        fprintf(stderr, "bench_tokenize: %s\n", anneal_err_msg(&err));
        anneal_tokenizer_free(t);
        return 1;
    }

    size_t n_lines = 0, max_len = 0;
    for (size_t i = 0; i < size; i++)
        n_lines += text[i] == '\n';
    if (size && text[size - 1] != '\n') n_lines++;
    line *lines = malloc((n_lines ? n_lines : 1) * sizeof *lines);
    size_t k = 0;
    for (size_t start = 0; start < size;) {
        const char *nl = memchr(text + start, '\n', size - start);
        size_t end = nl ? (size_t)(nl - text) : size;
        lines[k++] = (line){text + start, end - start};
        if (end - start > max_len) max_len = end - start;
        start = end + 1;
    }
    // An SPM line gives at most one id per byte plus the space prefix (4 byte tokens per
    // 4-byte character, one "▁" in front).
    size_t cap = max_len + 8;
    anneal_token *ids = malloc(cap * sizeof *ids);
    double *secs = malloc((size_t)runs * sizeof *secs);
    if (!lines || !ids || !secs) {
        fprintf(stderr, "bench_tokenize: out of memory\n");
        return 1;
    }

    size_t n_ids = 0;
    int rc = 0;
    for (long r = 0; r < runs && !rc; r++) {
        n_ids = 0;
        uint64_t t0 = anneal_time_ns();
        for (size_t i = 0; i < n_lines; i++) {
            size_t n;
            if (anneal_tokenizer_encode(t, lines[i].p, lines[i].n, 0, ids, cap, &n, &err)) {
                fprintf(stderr, "bench_tokenize: line %zu: %s\n", i + 1, anneal_err_msg(&err));
                rc = 1;
                break;
            }
            n_ids += n;
        }
        secs[r] = (double)(anneal_time_ns() - t0) * 1e-9;
    }
    if (!rc && ids_out) {
        FILE *f = fopen(ids_out, "w");
        if (!f) {
            fprintf(stderr, "bench_tokenize: cannot write %s: %s\n", ids_out, strerror(errno));
            rc = 1;
        }
        for (size_t i = 0; f && i < n_lines && !rc; i++) {
            size_t n;
            if (anneal_tokenizer_encode(t, lines[i].p, lines[i].n, 0, ids, cap, &n, &err)) {
                fprintf(stderr, "bench_tokenize: line %zu: %s\n", i + 1, anneal_err_msg(&err));
                rc = 1;
                break;
            }
            for (size_t j = 0; j < n; j++)
                fprintf(f, j ? " %d" : "%d", ids[j]);
            fputc('\n', f);
        }
        if (f && fclose(f) != 0) {
            fprintf(stderr, "bench_tokenize: error writing %s\n", ids_out);
            rc = 1;
        }
    }
    if (!rc) {
        qsort(secs, (size_t)runs, sizeof *secs, cmp_double);
        double med = runs % 2 ? secs[runs / 2] : 0.5 * (secs[runs / 2 - 1] + secs[runs / 2]);
        printf(
            "bench_tokenize: %zu bytes, %zu lines, %zu ids, %ld runs, median %.4f s (min %.4f, max "
            "%.4f): %.2f MB/s\n",
            size, n_lines, n_ids, runs, med, secs[0], secs[runs - 1], (double)size / med / 1e6);
    }
    free(secs);
    free(ids);
    free(lines);
    anneal_free(text);
    anneal_tokenizer_free(t);
    return rc;
}
