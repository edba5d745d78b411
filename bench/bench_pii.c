// PII redaction benchmark: a corpus text with PII sprinkled in deterministically, redacted
// in 64 KiB documents on this thread.
//
//   bench_pii [TEXT] [--runs N] [--every K]
//
// TEXT defaults to ../shared/corpora/tinyshakespeare.txt (ANNEAL_SHARED overrides ../shared).
// After every K-th line (default 20) one generated item is inserted: an e-mail, phone, IPv4,
// IPv6, card, IBAN or SSN in turn, from a fixed-seed generator. The figure is the median
// run's throughput over all input bytes, in MB/s (10^6 bytes), plus the matches per kind.
#include "anneal/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t g_rng = 12345;
static unsigned rnd(unsigned n) {
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)(g_rng >> 33) % n;
}

// One PII item of kind k into buf (returns its length).
static int gen_item(int k, char *buf, size_t cap) {
    static const char *const ITEMS_CARD[] = {"4111 1111 1111 1111", "5500-0000-0000-0004",
                                             "378282246310005", "6011111111111117"};
    static const char *const ITEMS_IBAN[] = {"GB82 WEST 1234 5698 7654 32",
                                             "DE89370400440532013000", "NL91ABNA0417164300"};
    switch (k) {
    case 0:
        return snprintf(buf, cap, " mail user%u.name@example%u.com ", rnd(1000), rnd(100));
    case 1:
        return snprintf(buf, cap, " call (%u) %u-%04u ", 200 + rnd(800), 200 + rnd(800),
                        rnd(10000));
    case 2:
        return snprintf(buf, cap, " from %u.%u.%u.%u ", rnd(256), rnd(256), rnd(256), rnd(256));
    case 3:
        return snprintf(buf, cap, " host 2001:db8:%x::%x ", rnd(65536), 1 + rnd(65535));
    case 4:
        return snprintf(buf, cap, " card %s ", ITEMS_CARD[rnd(4)]);
    case 5:
        return snprintf(buf, cap, " iban %s ", ITEMS_IBAN[rnd(3)]);
    default:
        return snprintf(buf, cap, " ssn %03u-%02u-%04u ", 1 + rnd(665), 1 + rnd(99), 1 + rnd(9999));
    }
}

int main(int argc, char **argv) {
    const char *path = NULL;
    long runs = 7, every = 20;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            runs = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--every") == 0 && i + 1 < argc) {
            every = strtol(argv[++i], NULL, 10);
        } else if (argv[i][0] != '-' && !path) {
            path = argv[i];
        } else {
            fprintf(stderr, "usage: bench_pii [TEXT] [--runs N] [--every K]\n");
            return 2;
        }
    }
    if (runs < 1 || runs > 1000 || every < 1) {
        fprintf(stderr, "bench_pii: --runs wants 1..1000 and --every >= 1\n");
        return 2;
    }
    char def[4096];
    if (!path) {
        const char *root = getenv("ANNEAL_SHARED");
        snprintf(def, sizeof def, "%s/corpora/tinyshakespeare.txt",
                 root && *root ? root : "../shared");
        path = def;
    }
    anneal_err err = {0};
    char *src = NULL;
    size_t src_len = 0;
    if (anneal_read_file(path, (size_t)1 << 30, &src, &src_len, &err) != ANNEAL_OK) {
        fprintf(stderr, "bench_pii: %s\n", anneal_err_msg(&err));
        return 1;
    }
    // Build the text: the corpus with one item after every `every`-th line.
    size_t cap = src_len * 2 + 4096, len = 0;
    char *txt = malloc(cap);
    if (!txt) return 1;
    long line = 0;
    int kind = 0;
    for (size_t i = 0; i < src_len; i++) {
        txt[len++] = src[i];
        if (src[i] == '\n' && ++line % every == 0 && len + 128 < cap) {
            len += (size_t)gen_item(kind, txt + len, 128);
            kind = (kind + 1) % 7;
        }
    }
    anneal_free(src);

    const size_t doc = 64 * 1024;
    double *t = malloc((size_t)runs * sizeof *t);
    char *out = NULL;
    size_t out_len = 0, out_cap = 0;
    size_t counts[ANNEAL_PII_COUNT] = {0};
    for (long r = 0; r < runs; r++) {
        size_t c[ANNEAL_PII_COUNT] = {0};
        double t0 = now();
        for (size_t off = 0; off < len; off += doc) {
            size_t n = len - off < doc ? len - off : doc;
            if (anneal_pii_redact(NULL, txt + off, n, &out, &out_len, &out_cap, c, &err)) {
                fprintf(stderr, "bench_pii: %s\n", anneal_err_msg(&err));
                return 1;
            }
        }
        t[r] = now() - t0;
        memcpy(counts, c, sizeof c);
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    printf("bench_pii: %zu bytes, median %.2f ms, %.1f MB/s\n", len, t[runs / 2] * 1e3,
           (double)len / t[runs / 2] / 1e6);
    for (int k = 0; k < ANNEAL_PII_COUNT; k++)
        printf("  %-6s %zu\n", anneal_pii_kind_name((anneal_pii_kind)k), counts[k]);
    free(t);
    free(txt);
    anneal_free(out);
    return 0;
}
