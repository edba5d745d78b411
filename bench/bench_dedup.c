// Dedup benchmark: generates a corpus with planted exact and near duplicates, runs exact +
// near dedup in two streaming passes (the way `anneal data dedup` reads), and prints the
// counts, the recall on the planted duplicates, wall time and peak RSS.
//
//   bench_dedup [--mb N] [--dir DIR] [--threads N] [--budget BYTES] [--config FILE.json]
//               [--corpora DIR] [--seed N] [--keep]
//
// Documents are 8-24 paragraphs drawn at random from the corpora (*.txt under --corpora,
// default $ANNEAL_SHARED/corpora or ../shared/corpora; paragraphs split at blank lines and
// every 50 words). 5% of
// documents are exact copies of an earlier original (letter case and spacing changed), 5%
// near copies (one word in every 100, at least one, replaced). The corpus (--mb MB of text,
// default 1000) is written to DIR (default $TMPDIR or /tmp) as length-prefixed records and
// read back twice: pass 1 adds batches of documents (hashed on --threads threads), pass 2
// reads the verdicts in order. The timed part is pass 1 + finish + pass 2.
#include "anneal/data.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

typedef struct span {
    const char *p;
    size_t n;
} span;

enum { ORIG = 0, EXACT = 1, NEAR = 2 };

typedef struct truth {
    uint8_t kind;
    uint32_t src; // for copies: the original's document index
} truth;

static uint64_t rnd(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static double now_s(void) {
    return (double)anneal_time_ns() / 1e9;
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

// Paragraphs of every *.txt in dir: runs of text separated by blank lines.
static int load_paragraphs(const char *dir, char ***texts, span **paras, size_t *n_paras,
                           size_t *n_files) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    size_t cap = 0;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".txt") != 0) continue;
        char path[8192];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path) continue;
        char *data;
        size_t size;
        anneal_err err = {0};
        if (anneal_read_file(path, 1ull << 32, &data, &size, &err)) continue;
        *texts = realloc(*texts, (*n_files + 1) * sizeof **texts);
        (*texts)[(*n_files)++] = data;
        size_t i = 0;
        while (i < size) {
            while (i < size && data[i] == '\n')
                i++;
            size_t s = i;
            while (i < size && !(data[i] == '\n' && i + 1 < size && data[i + 1] == '\n'))
                i++;
            // Long paragraphs are cut every 50 words, so no single one dominates a document
            // and makes unrelated documents near duplicates.
            while (i > s) {
                size_t q = s, words = 0;
                while (q < i && words < 50) {
                    while (q < i && data[q] != ' ' && data[q] != '\n')
                        q++;
                    while (q < i && (data[q] == ' ' || data[q] == '\n'))
                        q++;
                    words++;
                }
                if (*n_paras == cap) {
                    cap = cap ? cap * 2 : 4096;
                    *paras = realloc(*paras, cap * sizeof **paras);
                }
                (*paras)[(*n_paras)++] = (span){data + s, q - s};
                s = q;
            }
        }
    }
    closedir(d);
    return *n_paras ? 0 : -1;
}

// An original document: paragraphs chosen by a generator seeded with its recipe seed.
static size_t make_original(uint64_t seed, const span *paras, size_t n_paras, char *out) {
    uint64_t s = seed | 1;
    size_t k = 8 + rnd(&s) % 17, o = 0;
    for (size_t i = 0; i < k; i++) {
        const span *p = &paras[rnd(&s) % n_paras];
        memcpy(out + o, p->p, p->n);
        o += p->n;
        out[o++] = '\n';
        out[o++] = '\n';
    }
    return o;
}

// Case and spacing changes only: upper-cases every other word and doubles some spaces.
static size_t make_exact(const char *in, size_t n, uint64_t *s, char *out) {
    size_t o = 0, word = 0;
    bool up = rnd(s) & 1;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c == ' ') {
            word++;
            out[o++] = ' ';
            if (word % 7 == 0) out[o++] = '\t';
            continue;
        }
        out[o++] = (char)((up ^ (word & 1)) && c >= 'a' && c <= 'z' ? c - 32 : c);
    }
    return o;
}

// Replaces one word in every 100 (at least one) with a made-up word.
static size_t make_near(const char *in, size_t n, uint64_t *s, char *out) {
    size_t words = 0;
    for (size_t i = 0; i < n; i++)
        words += in[i] != ' ' && in[i] != '\n' && (i == 0 || in[i - 1] == ' ' || in[i - 1] == '\n');
    size_t changes = words / 100 ? words / 100 : 1, o = 0, w = 0;
    size_t every = words / changes ? words / changes : 1, phase = rnd(s) % every;
    for (size_t i = 0; i < n;) {
        bool start =
            in[i] != ' ' && in[i] != '\n' && (i == 0 || in[i - 1] == ' ' || in[i - 1] == '\n');
        if (start) {
            size_t e = i;
            while (e < n && in[e] != ' ' && in[e] != '\n')
                e++;
            if (w % every == phase)
                o += (size_t)sprintf(out + o, "zq%05u", (unsigned)(rnd(s) % 100000));
            else {
                memcpy(out + o, in + i, e - i);
                o += e - i;
            }
            w++;
            i = e;
        } else {
            out[o++] = in[i++];
        }
    }
    return o;
}

int main(int argc, char **argv) {
    double mb = 1000;
    const char *dir = getenv("TMPDIR"), *cfg_path = NULL, *corpora = NULL;
    int threads = anneal_thread_count();
    long long budget = -1;
    uint64_t seed = 12345;
    bool keep = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--mb") == 0 && v) {
            mb = atof(argv[++i]);
        } else if (strcmp(a, "--dir") == 0 && v) {
            dir = argv[++i];
        } else if (strcmp(a, "--threads") == 0 && v) {
            threads = atoi(argv[++i]);
        } else if (strcmp(a, "--budget") == 0 && v) {
            budget = atoll(argv[++i]);
        } else if (strcmp(a, "--config") == 0 && v) {
            cfg_path = argv[++i];
        } else if (strcmp(a, "--corpora") == 0 && v) {
            corpora = argv[++i];
        } else if (strcmp(a, "--seed") == 0 && v) {
            seed = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(a, "--keep") == 0) {
            keep = true;
        } else {
            fprintf(stderr, "usage: bench_dedup [--mb N] [--dir DIR] [--threads N] "
                            "[--budget BYTES] [--config FILE.json] [--corpora DIR] [--seed N] "
                            "[--keep]\n");
            return 2;
        }
    }
    if (mb <= 0 || threads < 1) {
        fprintf(stderr, "bench_dedup: --mb and --threads must be positive\n");
        return 2;
    }
    if (!dir || !*dir) dir = "/tmp";
    char cdir[4096];
    if (!corpora) {
        const char *sh = getenv("ANNEAL_SHARED");
        snprintf(cdir, sizeof cdir, "%s/corpora", sh && *sh ? sh : "../shared");
        corpora = cdir;
    }
    anneal_err err = {0};
    anneal_dedup_config cfg = anneal_dedup_config_default();
    if (cfg_path) {
        char *js = NULL;
        size_t jn = 0;
        if (anneal_read_file(cfg_path, 1 << 20, &js, &jn, &err) ||
            anneal_dedup_config_parse(js, jn, cfg_path, &cfg, &err)) {
            fprintf(stderr, "bench_dedup: %s\n", anneal_err_msg(&err));
            anneal_free(js);
            return 1;
        }
        anneal_free(js);
    }
    if (budget >= 0) cfg.memory_budget = (uint64_t)budget;

    char **texts = NULL;
    span *paras = NULL;
    size_t n_paras = 0, n_files = 0;
    if (load_paragraphs(corpora, &texts, &paras, &n_paras, &n_files)) {
        fprintf(stderr, "bench_dedup: no paragraphs under %s\n", corpora);
        return 1;
    }

    // ---- generate -------------------------------------------------------------------------
    char path[8192];
    if ((size_t)snprintf(path, sizeof path, "%s/bench_dedup.%d.bin", dir, (int)getpid()) >=
        sizeof path) {
        fprintf(stderr, "bench_dedup: --dir too long\n");
        return 2;
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return 1;
    }
    size_t max_doc = 0;
    for (size_t i = 0; i < n_paras; i++)
        if (paras[i].n > max_doc) max_doc = paras[i].n;
    max_doc = (max_doc + 2) * 24 * 2 + 1024; // exact copies may grow by a tab per 7 words
    char *a = malloc(max_doc), *b = malloc(max_doc);
    size_t tcap = 1 << 20, n_docs = 0, n_orig = 0;
    truth *tr = malloc(tcap * sizeof *tr);
    uint64_t *orig_seed = malloc(tcap * sizeof *orig_seed);
    uint32_t *orig_doc = malloc(tcap * sizeof *orig_doc);
    uint64_t target = (uint64_t)(mb * 1e6), bytes = 0, rng = seed;
    double t0 = now_s();
    while (bytes < target) {
        if (n_docs == tcap) {
            tcap *= 2;
            tr = realloc(tr, tcap * sizeof *tr);
            orig_seed = realloc(orig_seed, tcap * sizeof *orig_seed);
            orig_doc = realloc(orig_doc, tcap * sizeof *orig_doc);
        }
        uint64_t r = rnd(&rng) % 100;
        size_t n;
        if (n_orig > 10 && r < 10) {
            size_t o = rnd(&rng) % n_orig;
            size_t on = make_original(orig_seed[o], paras, n_paras, a);
            n = r < 5 ? make_exact(a, on, &rng, b) : make_near(a, on, &rng, b);
            tr[n_docs] = (truth){r < 5 ? EXACT : NEAR, orig_doc[o]};
        } else {
            orig_seed[n_orig] = rnd(&rng);
            orig_doc[n_orig] = (uint32_t)n_docs;
            n = make_original(orig_seed[n_orig++], paras, n_paras, b);
            tr[n_docs] = (truth){ORIG, 0};
        }
        uint32_t len = (uint32_t)n;
        fwrite(&len, 4, 1, f);
        fwrite(b, 1, n, f);
        bytes += n;
        n_docs++;
    }
    if (fclose(f)) {
        perror(path);
        return 1;
    }
    free(orig_seed);
    free(orig_doc);
    double t_gen = now_s() - t0;
    size_t planted_exact = 0, planted_near = 0;
    for (size_t i = 0; i < n_docs; i++) {
        planted_exact += tr[i].kind == EXACT;
        planted_near += tr[i].kind == NEAR;
    }
    printf("generated %.1f MB in %zu documents (%zu paragraphs from %zu files) in %.1f s: "
           "%zu exact and %zu near copies planted\n",
           (double)bytes / 1e6, n_docs, n_paras, n_files, t_gen, planted_exact, planted_near);
    fflush(stdout);

    // ---- pass 1: add ------------------------------------------------------------------------
    enum { BATCH = 1024 };
    size_t bcap = 8 << 20;
    char *bbuf = malloc(bcap);
    const char *bt[BATCH];
    size_t bl[BATCH];
    anneal_pool *pool = NULL;
    anneal_dedup *d = NULL;
    if (anneal_pool_new(threads, &pool, &err) || anneal_dedup_new(&cfg, dir, &d, &err)) {
        fprintf(stderr, "bench_dedup: %s\n", anneal_err_msg(&err));
        return 1;
    }
    double t1 = now_s();
    f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    size_t got = 0;
    for (;;) {
        size_t k = 0, used = 0;
        uint32_t len;
        while (k < BATCH && fread(&len, 4, 1, f) == 1) {
            if (used + len > bcap) { // keep earlier pointers valid: flush first
                fseek(f, -4, SEEK_CUR);
                break;
            }
            if (fread(bbuf + used, 1, len, f) != len) {
                fprintf(stderr, "bench_dedup: %s: short read\n", path);
                return 1;
            }
            bt[k] = bbuf + used;
            bl[k++] = len;
            used += len;
        }
        if (!k) break;
        if (anneal_dedup_add_batch(d, pool, bt, bl, k, &err)) {
            fprintf(stderr, "bench_dedup: %s\n", anneal_err_msg(&err));
            return 1;
        }
        got += k;
    }
    fclose(f);
    double t_add = now_s() - t1;
    double t2 = now_s();
    if (anneal_dedup_finish(d, &err)) {
        fprintf(stderr, "bench_dedup: %s\n", anneal_err_msg(&err));
        return 1;
    }
    double t_finish = now_s() - t2;

    // ---- pass 2: verdicts in input order -----------------------------------------------------
    double t3 = now_s();
    f = fopen(path, "rb");
    size_t found_exact = 0, found_near = 0, near_as_exact = 0, other_removed = 0, kept_bytes = 0;
    size_t idx = 0;
    uint32_t len;
    while (f && fread(&len, 4, 1, f) == 1) {
        if (len > bcap || fread(bbuf, 1, len, f) != len) break;
        anneal_dedup_verdict v, vs;
        if (anneal_dedup_verdict_get(d, idx, &v)) break;
        if (v.keep) kept_bytes += len;
        // Found: removed, and in the same cluster as the original it was copied from.
        bool same = tr[idx].kind != ORIG && !v.keep &&
                    anneal_dedup_verdict_get(d, tr[idx].src, &vs) == ANNEAL_OK &&
                    vs.representative == v.representative;
        if (tr[idx].kind == EXACT)
            found_exact += same;
        else if (tr[idx].kind == NEAR) {
            found_near += same;
            near_as_exact += v.reason == ANNEAL_DEDUP_EXACT;
        } else
            other_removed += !v.keep;
        idx++;
    }
    if (f) fclose(f);
    double t_pass2 = now_s() - t3;
    double total = t_add + t_finish + t_pass2;
    anneal_dedup_counts c;
    anneal_dedup_counts_get(d, &c);
    printf("docs %llu (read %zu, verdicts %zu), kept %llu, removed %llu (exact %llu, near %llu), "
           "clusters %llu, band matches %llu, rejected %llu\n",
           (unsigned long long)c.docs, got, idx, (unsigned long long)c.kept,
           (unsigned long long)(c.exact + c.near), (unsigned long long)c.exact,
           (unsigned long long)c.near, (unsigned long long)c.clusters,
           (unsigned long long)c.band_matches, (unsigned long long)c.rejected);
    printf("recall: exact %.4f (%zu/%zu), near %.4f (%zu/%zu; %zu of them judged exact); "
           "originals removed: %zu; kept %.1f MB\n",
           planted_exact ? (double)found_exact / (double)planted_exact : 1.0, found_exact,
           planted_exact, planted_near ? (double)found_near / (double)planted_near : 1.0,
           found_near, planted_near, near_as_exact, other_removed, (double)kept_bytes / 1e6);
    printf("spill: %llu runs, %.1f MB written; budget %.0f MiB; %d threads; bands %d x rows %d\n",
           (unsigned long long)c.spill_runs, (double)c.spill_bytes / 1e6,
           (double)cfg.memory_budget / 1048576.0, threads, cfg.bands, cfg.rows);
    printf("time: pass 1 (read + hash) %.2f s, finish %.2f s, pass 2 %.2f s, total %.2f s "
           "(%.1f MB/s); peak RSS %.0f MB\n",
           t_add, t_finish, t_pass2, total, (double)bytes / 1e6 / total, peak_rss_mb());
    anneal_dedup_free(d);
    anneal_pool_free(pool);
    if (!keep) unlink(path);
    for (size_t i = 0; i < n_files; i++)
        anneal_free(texts[i]);
    free(texts);
    free(paras);
    free(tr);
    free(a);
    free(b);
    free(bbuf);
    return 0;
}
