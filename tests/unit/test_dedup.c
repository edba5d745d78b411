// Unit tests for dedup: normalization, exact and near duplicates, clusters, determinism, the
// spill path, the Jaccard check, batches, configuration errors and the SIMD kernels.
#include "anneal/data.h"
#include "anneal/tensor.h"
#include "data/dedup_kernels.h"
#include "test.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

// Files left in a directory (the spill directory must stay empty).
static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

// A corpus of documents held as one array of strings.
typedef struct corpus {
    char **docs;
    size_t *lens;
    size_t n, cap;
} corpus;

static void corpus_add(corpus *c, const char *text, size_t len) {
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->docs = realloc(c->docs, c->cap * sizeof *c->docs);
        c->lens = realloc(c->lens, c->cap * sizeof *c->lens);
    }
    c->docs[c->n] = anneal_strndup(text, len);
    c->lens[c->n++] = len;
}

static void corpus_free(corpus *c) {
    for (size_t i = 0; i < c->n; i++)
        anneal_free(c->docs[i]);
    free(c->docs);
    free(c->lens);
    memset(c, 0, sizeof *c);
}

// Pseudo-words from a fixed vocabulary of 4000, so unrelated documents share words but
// almost no 5-word shingles.
static void make_word(uint32_t k, char *out) {
    static const char *syl[] = {"ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "qu"};
    int n = 0;
    k += 1000;
    while (k) {
        n += sprintf(out + n, "%s", syl[k % 10]);
        k /= 10;
    }
}

static size_t make_doc(uint64_t *rng, size_t n_words, uint32_t *words, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n_words; i++) {
        words[i] = (uint32_t)(test_rand(rng) % 4000);
        char w[32];
        make_word(words[i], w);
        o += (size_t)sprintf(out + o, "%s%s", i ? " " : "", w);
    }
    return o;
}

static size_t render(const uint32_t *words, size_t n_words, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n_words; i++) {
        char w[32];
        make_word(words[i], w);
        o += (size_t)sprintf(out + o, "%s%s", i ? " " : "", w);
    }
    return o;
}

// 40 originals of 200 words, each followed later by a copy with 1 or 2 words changed; 60
// unrelated documents; 10 exact copies (upper case, extra spaces).
enum { N_ORIG = 40, N_UNREL = 60, N_EXACT = 10 };

static void build_near_corpus(corpus *c, int *truth) {
    uint64_t rng = 42;
    uint32_t words[N_ORIG][200];
    char *buf = malloc(8192);
    for (int i = 0; i < N_ORIG; i++) { // docs 0..39
        size_t n = make_doc(&rng, 200, words[i], buf);
        corpus_add(c, buf, n);
        truth[c->n - 1] = -1;
    }
    for (int i = 0; i < N_UNREL; i++) { // docs 40..99
        uint32_t w[200];
        size_t n = make_doc(&rng, 200, w, buf);
        corpus_add(c, buf, n);
        truth[c->n - 1] = -1;
    }
    for (int i = 0; i < N_ORIG; i++) { // docs 100..139: near copies of doc i
        uint32_t w[200];
        memcpy(w, words[i], sizeof w);
        int changes = 1 + i % 2;
        for (int k = 0; k < changes; k++) {
            size_t pos = (size_t)(20 + k * 90 + (int)(test_rand(&rng) % 60));
            w[pos] = 4000 + (uint32_t)(test_rand(&rng) % 1000); // a word no original uses
        }
        size_t n = render(w, 200, buf);
        corpus_add(c, buf, n);
        truth[c->n - 1] = i;
    }
    for (int i = 0; i < N_EXACT; i++) { // docs 140..149: exact copies of doc 3*i, shouted
        size_t n = render(words[3 * i], 200, buf), o = 0;
        char *b2 = malloc(2 * n + 8);
        b2[o++] = ' ';
        for (size_t k = 0; k < n; k++) {
            char ch = buf[k];
            b2[o++] = (char)(ch >= 'a' && ch <= 'z' ? ch - 32 : ch);
            if (ch == ' ' && k % 3 == 0) b2[o++] = '\n';
        }
        corpus_add(c, b2, o);
        truth[c->n - 1] = 3 * i;
        free(b2);
    }
    free(buf);
}

static anneal_dedup *run_dedup(const anneal_dedup_config *cfg, const corpus *c, const char *dir) {
    anneal_err err = {0};
    anneal_dedup *d = NULL;
    if (anneal_dedup_new(cfg, dir, &d, &err)) {
        fprintf(stderr, "dedup_new: %s\n", anneal_err_msg(&err));
        return NULL;
    }
    for (size_t i = 0; i < c->n; i++) {
        if (anneal_dedup_add(d, c->docs[i], c->lens[i], &err)) {
            fprintf(stderr, "dedup_add: %s\n", anneal_err_msg(&err));
            anneal_dedup_free(d);
            return NULL;
        }
    }
    if (anneal_dedup_finish(d, &err)) {
        fprintf(stderr, "dedup_finish: %s\n", anneal_err_msg(&err));
        anneal_dedup_free(d);
        return NULL;
    }
    return d;
}

static bool same_result(const anneal_dedup *a, const anneal_dedup *b) {
    anneal_dedup_counts ca, cb;
    anneal_dedup_counts_get(a, &ca);
    anneal_dedup_counts_get(b, &cb);
    if (ca.docs != cb.docs || ca.kept != cb.kept || ca.exact != cb.exact || ca.near != cb.near ||
        ca.clusters != cb.clusters || ca.band_matches != cb.band_matches ||
        ca.rejected != cb.rejected)
        return false;
    for (uint64_t i = 0; i < ca.docs; i++) {
        anneal_dedup_verdict va, vb;
        anneal_dedup_verdict_get(a, i, &va);
        anneal_dedup_verdict_get(b, i, &vb);
        if (va.keep != vb.keep || va.reason != vb.reason ||
            va.representative != vb.representative || va.cluster != vb.cluster)
            return false;
    }
    return true;
}

static void test_config(void) {
    anneal_dedup_config c = anneal_dedup_config_default();
    CHECK(c.exact && c.near);
    CHECK_EQ(c.bands, 14);
    CHECK_EQ(c.rows, 8);
    CHECK_EQ(c.ngram, 5);
    CHECK_EQ(c.seed, 1);
    CHECK_EQ(c.memory_budget, 512ull << 20);
    CHECK(c.jaccard_threshold == 0.0);
    anneal_err err = {0};
    const char *good = "{\"bands\": 20, \"rows\": 5, \"seed\": 7, \"ngram\": 3, \"exact\": false,"
                       " \"jaccard_threshold\": 0.75, \"memory_budget\": 4096}";
    CHECK_EQ(anneal_dedup_config_parse(good, strlen(good), NULL, &c, &err), ANNEAL_OK);
    CHECK_EQ(c.bands, 20);
    CHECK_EQ(c.rows, 5);
    CHECK_EQ(c.seed, 7);
    CHECK_EQ(c.ngram, 3);
    CHECK(!c.exact && c.near);
    CHECK(c.jaccard_threshold == 0.75);
    CHECK_EQ(c.memory_budget, 4096);

    struct {
        const char *json, *needle;
    } bad[] = {
        {"{\"bandz\": 3}", "unknown key 'bandz'"},
        {"{\"bands\": 0}", "key 'bands'"},
        {"{\"rows\": 0}", "key 'rows'"},
        {"{\"rows\": 5000}", "key 'rows'"},
        {"{\"bands\": 100, \"rows\": 100}", "'bands' * 'rows' = 10000"},
        {"{\"ngram\": 0}", "key 'ngram'"},
        {"{\"seed\": -1}", "key 'seed'"},
        {"{\"memory_budget\": 10}", "key 'memory_budget'"},
        {"{\"jaccard_threshold\": 1.5}", "key 'jaccard_threshold'"},
        {"{\"near\": 1}", "key 'near'"},
        {"{\"exact\": false, \"near\": false}", "'exact' and 'near'"},
        {"[1]", "expected a JSON object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        anneal_dedup_config d = anneal_dedup_config_default();
        anneal_err e = {0};
        CHECK_EQ(anneal_dedup_config_parse(bad[i].json, strlen(bad[i].json), "cfg.json", &d, &e),
                 ANNEAL_ERR_INVALID_ARG);
        CHECK_CONTAINS(e.msg, bad[i].needle);
        CHECK_CONTAINS(e.msg, "cfg.json");
        CHECK_EQ(d.bands, 14); // unchanged on failure
    }
    anneal_dedup_config z = anneal_dedup_config_default();
    z.bands = 0;
    anneal_dedup *dd = NULL;
    anneal_err e2 = {0};
    CHECK_EQ(anneal_dedup_new(&z, NULL, &dd, &e2), ANNEAL_ERR_INVALID_ARG);
    CHECK(dd == NULL);
    CHECK_CONTAINS(e2.msg, "key 'bands'");
    z = anneal_dedup_config_default();
    z.rows = 1 << 20;
    anneal_err_clear(&e2);
    CHECK_EQ(anneal_dedup_config_check(&z, &e2), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(e2.msg, "key 'rows'");
    CHECK_STR(anneal_dedup_reason_name(ANNEAL_DEDUP_NEAR), "near");
    CHECK_STR(anneal_dedup_reason_name(ANNEAL_DEDUP_EXACT), "exact");
    CHECK_STR(anneal_dedup_reason_name(ANNEAL_DEDUP_KEEP), "keep");
}

static void test_exact(void) {
    const char *docs[] = {
        "Hello   World\n", // 0
        "hello world",     // 1 exact of 0
        " HELLO\tWORLD ",  // 2 exact of 0
        // 3: full-width "hello", ideographic space, "world"
        ("\xEF\xBD\x88\xEF\xBD\x85\xEF\xBD\x8C\xEF\xBD\x8C\xEF\xBD\x8F"
         "\xE3\x80\x80world"),
        "Stra\303\237e caf\xC3\xA9",    // 4 (octal: a hex escape would eat the 'e')
        "STRASSE CAFE\xCC\x81",         // 5 exact of 4 (fold, NFC)
        "\xEF\xAC\x81ne day",           // 6 "fine day" with a ligature
        "fine\xC2\xA0\xC2\xA0 day",     // 7 exact of 6 (NBSP)
        "hello worlds",                 // 8 different
        "",                             // 9
        " \n\t ",                       // 10 exact of 9 (empty)
        "\xFF\xFE abc",                 // 11 invalid bytes
        "\xEF\xBF\xBD\xEF\xBF\xBD ABC", // 12 exact of 11 (U+FFFD)
        "a\0b c",                       // 13 (NUL is a character)
        "x\0\xC3\xA9",                  // 14 NUL before a run
        "X\0\xC3\x89",                  // 15 exact of 14
    };
    size_t lens[16];
    for (int i = 0; i < 16; i++)
        lens[i] = i == 13 ? 5 : i >= 14 ? 4 : strlen(docs[i]);
    corpus c = {0};
    for (int i = 0; i < 16; i++)
        corpus_add(&c, docs[i], lens[i]);
    anneal_dedup_config cfg = anneal_dedup_config_default();
    cfg.near = false;
    const char *dir = test_tmpdir();
    anneal_dedup *d = run_dedup(&cfg, &c, dir);
    CHECK(d != NULL);
    if (!d) return;
    int want_rep[16] = {0, 0, 0, 0, 4, 4, 6, 6, 8, 9, 9, 11, 11, 13, 14, 14};
    for (int i = 0; i < 16; i++) {
        anneal_dedup_verdict v;
        CHECK_EQ(anneal_dedup_verdict_get(d, (uint64_t)i, &v), ANNEAL_OK);
        CHECK_EQ(v.representative, want_rep[i]);
        CHECK_EQ(v.keep, want_rep[i] == i);
        CHECK_EQ(v.reason, want_rep[i] == i ? ANNEAL_DEDUP_KEEP : ANNEAL_DEDUP_EXACT);
    }
    anneal_dedup_counts k;
    anneal_dedup_counts_get(d, &k);
    CHECK_EQ(k.docs, 16);
    CHECK_EQ(k.exact, 8);
    CHECK_EQ(k.near, 0);
    CHECK_EQ(k.kept, 8);
    CHECK_EQ(k.clusters, 6);
    CHECK_EQ(k.spill_runs, 0);
    anneal_dedup_cluster cl;
    CHECK_EQ(anneal_dedup_cluster_get(d, 0, &cl), ANNEAL_OK);
    CHECK_EQ(cl.representative, 0);
    CHECK_EQ(cl.size, 4);
    CHECK_EQ(cl.members[3], 3);
    CHECK_EQ(anneal_dedup_cluster_get(d, 4, &cl), ANNEAL_OK);
    CHECK_EQ(cl.representative, 11);
    CHECK_EQ(cl.size, 2);
    CHECK_EQ(anneal_dedup_cluster_get(d, 6, &cl), ANNEAL_ERR_RANGE);
    anneal_dedup_verdict v;
    CHECK_EQ(anneal_dedup_verdict_get(d, 13, &v), ANNEAL_OK);
    CHECK_EQ(v.cluster, -1);
    CHECK_EQ(anneal_dedup_verdict_get(d, 16, &v), ANNEAL_ERR_RANGE);
    anneal_err err = {0};
    CHECK_EQ(anneal_dedup_add(d, "x", 1, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(err.msg, "after finish");
    anneal_dedup_free(d);
    CHECK_EQ(count_files(dir), 0);
    corpus_free(&c);
}

static void test_near(void) {
    corpus c = {0};
    int truth[200];
    build_near_corpus(&c, truth);
    anneal_dedup_config cfg = anneal_dedup_config_default();
    anneal_dedup *d = run_dedup(&cfg, &c, test_tmpdir());
    CHECK(d != NULL);
    if (!d) return;
    int wrong = 0;
    for (size_t i = 0; i < c.n; i++) {
        anneal_dedup_verdict v;
        anneal_dedup_verdict_get(d, i, &v);
        if (truth[i] < 0) {
            wrong += !v.keep;
            if (i < N_ORIG) {
                CHECK_EQ(v.cluster, (int64_t)i); // one cluster per original, in order
            } else {
                CHECK_EQ(v.cluster, -1);
            }
        } else {
            wrong += v.keep || v.representative != (uint64_t)truth[i];
            wrong += v.reason != (i < 140 ? ANNEAL_DEDUP_NEAR : ANNEAL_DEDUP_EXACT);
        }
    }
    CHECK_EQ(wrong, 0);
    anneal_dedup_counts k;
    anneal_dedup_counts_get(d, &k);
    CHECK_EQ(k.docs, 150);
    CHECK_EQ(k.near, 40);
    CHECK_EQ(k.exact, 10);
    CHECK_EQ(k.kept, 100);
    CHECK_EQ(k.clusters, 40);
    anneal_dedup_cluster cl;
    CHECK_EQ(anneal_dedup_cluster_get(d, 3, &cl), ANNEAL_OK);
    CHECK_EQ(cl.size, 3);
    CHECK_EQ(cl.members[0], 3);
    CHECK_EQ(cl.members[1], 103);
    CHECK_EQ(cl.members[2], 141);

    // Exact off: the shouted copies are near duplicates; near off: only exact ones.
    cfg.exact = false;
    anneal_dedup *d2 = run_dedup(&cfg, &c, NULL);
    CHECK(d2 != NULL);
    if (d2) {
        anneal_dedup_counts_get(d2, &k);
        CHECK_EQ(k.near, 50);
        CHECK_EQ(k.exact, 0);
        anneal_dedup_free(d2);
    }
    cfg.exact = true;
    cfg.near = false;
    d2 = run_dedup(&cfg, &c, NULL);
    CHECK(d2 != NULL);
    if (d2) {
        anneal_dedup_counts_get(d2, &k);
        CHECK_EQ(k.near, 0);
        CHECK_EQ(k.exact, 10);
        CHECK_EQ(k.clusters, 10);
        anneal_dedup_free(d2);
    }
    anneal_dedup_free(d);
    corpus_free(&c);
}

static void test_short_docs(void) {
    const char *docs[] = {"a b c", "a b c", "a b d", "one", "One", "x y z w v u"};
    corpus c = {0};
    for (int i = 0; i < 6; i++)
        corpus_add(&c, docs[i], strlen(docs[i]));
    anneal_dedup_config cfg = anneal_dedup_config_default();
    cfg.exact = false;
    anneal_dedup *d = run_dedup(&cfg, &c, NULL);
    CHECK(d != NULL);
    if (!d) return;
    int want[6] = {0, 0, 2, 3, 3, 5};
    for (int i = 0; i < 6; i++) {
        anneal_dedup_verdict v;
        anneal_dedup_verdict_get(d, (uint64_t)i, &v);
        CHECK_EQ(v.representative, want[i]);
        CHECK_EQ(v.reason, want[i] == i ? ANNEAL_DEDUP_KEEP : ANNEAL_DEDUP_NEAR);
    }
    anneal_dedup_free(d);
    corpus_free(&c);
}

static void test_signature(void) {
    anneal_dedup_config cfg = anneal_dedup_config_default();
    // Two documents of 300 distinct words sharing the first 200: 196 common shingles out of
    // 296 + 296 - 196 = 396, so J = 0.495.
    char *a = malloc(4096), *b = malloc(4096);
    size_t na = 0, nb = 0;
    for (int i = 0; i < 300; i++) {
        na += (size_t)sprintf(a + na, "w%d ", i);
        nb += (size_t)sprintf(b + nb, "w%d ", i < 200 ? i : 1000 + i);
    }
    uint32_t sa[112], sb[112], sc[112];
    anneal_err err = {0};
    CHECK_EQ(anneal_dedup_signature(&cfg, a, na, sa, &err), ANNEAL_OK);
    CHECK_EQ(anneal_dedup_signature(&cfg, b, nb, sb, &err), ANNEAL_OK);
    int eq = 0;
    for (int i = 0; i < 112; i++)
        eq += sa[i] == sb[i];
    CHECK_NEAR(eq / 112.0, 0.495, 0.15);
    // Same seed, same signature; another seed, another one.
    CHECK_EQ(anneal_dedup_signature(&cfg, a, na, sc, &err), ANNEAL_OK);
    CHECK(memcmp(sa, sc, sizeof sa) == 0);
    cfg.seed = 2;
    CHECK_EQ(anneal_dedup_signature(&cfg, a, na, sc, &err), ANNEAL_OK);
    int same = 0;
    for (int i = 0; i < 112; i++)
        same += sa[i] == sc[i];
    CHECK(same < 5);
    // An empty document has no shingles: every value is the maximum.
    CHECK_EQ(anneal_dedup_signature(&cfg, "  ", 2, sc, &err), ANNEAL_OK);
    CHECK_EQ(sc[0], UINT32_MAX);
    CHECK_EQ(sc[111], UINT32_MAX);
    free(a);
    free(b);
}

static void test_determinism_and_spill(void) {
    corpus c = {0};
    int truth[200];
    build_near_corpus(&c, truth);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/spill", test_tmpdir());
    mkdir(dir, 0700);
    anneal_dedup_config cfg = anneal_dedup_config_default();
    anneal_dedup *a = run_dedup(&cfg, &c, dir), *b = run_dedup(&cfg, &c, dir);
    CHECK(a && b);
    // 150 docs * 15 records = 2250 records of 24 bytes: a 1 KiB budget holds 42, so 53 runs
    // are written (24 records stay in memory), and runs 16, 31 and 46 each start a cascade
    // that merges 16 open runs into one (16, 31 and 46 runs' worth of records).
    cfg.memory_budget = 1024;
    anneal_dedup *s = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_dedup_new(&cfg, dir, &s, &err), ANNEAL_OK);
    for (size_t i = 0; i < c.n && s; i++) {
        CHECK_EQ(anneal_dedup_add(s, c.docs[i], c.lens[i], &err), ANNEAL_OK);
        if (i == 100) CHECK_EQ(count_files(dir), 0); // open but already unlinked
    }
    CHECK_EQ(anneal_dedup_finish(s, &err), ANNEAL_OK);
    if (a && b && s) {
        CHECK(same_result(a, b));
        CHECK(same_result(a, s));
        anneal_dedup_counts k;
        anneal_dedup_counts_get(s, &k);
        CHECK_EQ(k.spill_runs, 53 + 3);
        CHECK_EQ(k.spill_bytes, (53ull + 16 + 31 + 46) * 42 * 24);
        anneal_dedup_counts_get(a, &k);
        CHECK_EQ(k.spill_runs, 0);
        CHECK_EQ(k.spill_bytes, 0);
    }
    anneal_dedup_free(a);
    anneal_dedup_free(b);
    anneal_dedup_free(s);
    CHECK_EQ(count_files(dir), 0);
    rmdir(dir);
    corpus_free(&c);
}

static void test_jaccard_threshold(void) {
    corpus c = {0};
    int truth[200];
    build_near_corpus(&c, truth);
    anneal_dedup_config cfg = anneal_dedup_config_default();
    anneal_dedup *plain = run_dedup(&cfg, &c, NULL);
    cfg.jaccard_threshold = 0.5; // every planted pair is far above: nothing changes
    anneal_dedup *half = run_dedup(&cfg, &c, NULL);
    cfg.memory_budget = 2048;
    anneal_dedup *half_spill = run_dedup(&cfg, &c, NULL);
    cfg.memory_budget = 512ull << 20;
    cfg.jaccard_threshold = 1.0; // only identical signatures join
    anneal_dedup *strict = run_dedup(&cfg, &c, NULL);
    CHECK(plain && half && half_spill && strict);
    if (plain && half && half_spill && strict) {
        anneal_dedup_counts k;
        anneal_dedup_counts_get(half, &k);
        CHECK_EQ(k.rejected, 0);
        CHECK_EQ(k.near, 40);
        CHECK(same_result(half, half_spill));
        anneal_dedup_counts kp;
        anneal_dedup_counts_get(plain, &kp);
        CHECK_EQ(kp.band_matches, k.band_matches);
        anneal_dedup_counts_get(strict, &k);
        CHECK_EQ(k.exact, 10); // exact duplicates never need the check
        CHECK(k.rejected > 0);
        CHECK(k.near < 10);
    }
    anneal_dedup_free(plain);
    anneal_dedup_free(half);
    anneal_dedup_free(half_spill);
    anneal_dedup_free(strict);
    corpus_free(&c);
}

static void test_batch(void) {
    corpus c = {0};
    int truth[200];
    build_near_corpus(&c, truth);
    anneal_dedup_config cfg = anneal_dedup_config_default();
    anneal_dedup *one = run_dedup(&cfg, &c, NULL), *d = NULL;
    anneal_pool *pool = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_pool_new(2, &pool, &err), ANNEAL_OK);
    CHECK_EQ(anneal_dedup_new(&cfg, NULL, &d, &err), ANNEAL_OK);
    // Uneven batches: 7, 64, then the rest, one of them without a pool.
    CHECK_EQ(anneal_dedup_add_batch(d, pool, (const char *const *)c.docs, c.lens, 7, &err),
             ANNEAL_OK);
    CHECK_EQ(anneal_dedup_add_batch(d, NULL, (const char *const *)c.docs + 7, c.lens + 7, 64, &err),
             ANNEAL_OK);
    CHECK_EQ(anneal_dedup_add_batch(d, pool, (const char *const *)c.docs + 71, c.lens + 71,
                                    c.n - 71, &err),
             ANNEAL_OK);
    anneal_dedup_verdict v;
    CHECK_EQ(anneal_dedup_verdict_get(d, 0, &v), ANNEAL_ERR_INVALID_ARG); // not finished
    CHECK_EQ(anneal_dedup_finish(d, &err), ANNEAL_OK);
    CHECK(one && same_result(one, d));
    anneal_dedup_free(one);
    anneal_dedup_free(d);
    anneal_pool_free(pool);
    corpus_free(&c);
}

static void test_spill_dir_error(void) {
    anneal_dedup_config cfg = anneal_dedup_config_default();
    cfg.memory_budget = 1024;
    anneal_dedup *d = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_dedup_new(&cfg, "/nonexistent/dir", &d, &err), ANNEAL_ERR_IO);
    CHECK(d == NULL);
    CHECK_CONTAINS(err.msg, "spill directory /nonexistent/dir");
    // The directory disappears after the start: the first spill fails, naming it.
    char dir[300];
    snprintf(dir, sizeof dir, "%s/gone", test_tmpdir());
    CHECK_EQ(mkdir(dir, 0700), 0);
    anneal_err_clear(&err);
    CHECK_EQ(anneal_dedup_new(&cfg, dir, &d, &err), ANNEAL_OK);
    rmdir(dir);
    anneal_status st = ANNEAL_OK;
    for (int i = 0; i < 20 && !st; i++) {
        char doc[64];
        int n = snprintf(doc, sizeof doc, "document number %d with some words", i);
        st = anneal_dedup_add(d, doc, (size_t)n, &err);
    }
    CHECK_EQ(st, ANNEAL_ERR_IO);
    CHECK_CONTAINS(err.msg, dir);
    anneal_err e2 = {0};
    CHECK_EQ(anneal_dedup_finish(d, &e2), ANNEAL_ERR_IO); // the handle stays failed
    CHECK_CONTAINS(e2.msg, "creating a spill file");
    anneal_dedup_free(d);
}

static void test_simd(void) {
    const anneal_cpu *cpu = anneal_cpu_get();
    uint64_t rng = 7;
    size_t ns[] = {0, 1, 3, 17, 100, 1001};
    size_t nps[] = {1, 15, 16, 17, 112, 129, 1024};
    uint32_t *sh = malloc(1001 * sizeof *sh), *seeds = malloc(1024 * sizeof *seeds);
    uint32_t *r = malloc(1024 * sizeof *r), *x = malloc(1024 * sizeof *x);
    int compared = 0;
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
        for (size_t b = 0; b < sizeof nps / sizeof nps[0]; b++) {
            for (size_t i = 0; i < ns[a]; i++) {
                uint64_t v = test_rand(&rng);
                sh[i] = i % 7 == 0 ? 0 : i % 11 == 0 ? UINT32_MAX : (uint32_t)v;
            }
            for (size_t j = 0; j < 1024; j++)
                seeds[j] = j % 13 == 0 ? UINT32_MAX : (uint32_t)test_rand(&rng);
            dedup_minhash_ref(sh, ns[a], seeds, nps[b], r);
            if (ns[a] == 1) CHECK_EQ(r[0], dedup_perm(sh[0], seeds[0]));
            for (int level = 1; level <= 2; level++) {
                dedup_minhash_fn fn = dedup_minhash_at(level);
                if (fn == dedup_minhash_ref) continue;
                memset(x, 0xAB, 1024 * sizeof *x);
                fn(sh, ns[a], seeds, nps[b], x);
                CHECK(memcmp(r, x, dedup_perm_padded(nps[b]) * sizeof *r) == 0);
                compared++;
            }
        }
    }
    if (cpu->avx2) CHECK(compared >= 42);
    if (cpu->avx512f) CHECK_EQ(compared, 84);
    CHECK(dedup_minhash_at(0) == dedup_minhash_ref);
    free(sh);
    free(seeds);
    free(r);
    free(x);
}

int main(void) {
    RUN(test_config);
    RUN(test_exact);
    RUN(test_near);
    RUN(test_short_docs);
    RUN(test_signature);
    RUN(test_determinism_and_spill);
    RUN(test_jaccard_threshold);
    RUN(test_batch);
    RUN(test_spill_dir_error);
    RUN(test_simd);
    rmdir(test_tmpdir());
    return TEST_EXIT();
}
