// Exact and near-duplicate detection (MinHash + LSH) over a document stream, with bucket
// records spilled to unlinked temporary files and merged by an external sort.
#include "anneal/data.h"

#include "data/dedup_kernels.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utf8proc.h>

#define MAX_PERM 1024 // bands * rows
#define MAX_NGRAM 32
#define MIN_BUDGET 1024    // bytes (42 records); smaller budgets only make more, tinier runs
#define MAX_RUNS 16        // open runs before they are merged into one
#define READ_RECS 2730     // records per run read buffer (64 KiB)
#define SIG_WBUF (1 << 20) // signature write buffer

#define F_EXACT 1u   // an earlier document has the same normalized text
#define F_MEMBERS 2u // a cluster root with at least one other member
#define NO_CLUSTER UINT32_MAX

// One bucket entry: kind 0 = exact hash, kind 1 + b = band b. Sorting by (kind, h0, h1, doc)
// puts each bucket's documents together in input order.
typedef struct rec {
    uint64_t h0, h1;
    uint32_t kind, doc;
} rec;

// Per-thread working memory for hashing documents; grows to the largest document seen.
typedef struct scratch {
    uint8_t *norm; // normalized text, +8 bytes of slack for whole-word loads
    size_t norm_len, norm_cap;
    uint8_t *clean; // a non-ASCII run with invalid bytes replaced by U+FFFD
    size_t clean_cap;
    uint64_t *words; // [n_words] 64-bit word hashes
    size_t words_cap;
    uint32_t *shingles; // [n_shingles]
    size_t shingles_cap;
} scratch;

typedef struct sketch {
    uint64_t ex0, ex1; // 128-bit hash of the normalized text
    uint32_t n_words;
} sketch;

struct anneal_dedup {
    anneal_dedup_config cfg;
    size_t n_perm, n_pad;
    uint32_t *seeds; // [n_pad] permutation seeds
    dedup_minhash_fn minhash;
    char *spill_dir;
    anneal_err fail; // first failure; the handle refuses work after one
    bool finished;

    uint32_t *parent; // [n_docs] union-find; the root is the smallest index
    uint8_t *flags;   // [n_docs] F_*
    size_t n_docs, doc_cap;

    rec *buf; // records not yet spilled
    size_t buf_n, buf_cap, buf_max;
    int run_fd[MAX_RUNS];
    uint64_t run_n[MAX_RUNS];
    int n_runs;

    int sig_fd; // signatures for the Jaccard check, n_perm values per document
    uint8_t *sig_wbuf;
    size_t sig_wn;
    uint32_t *sig_a, *sig_b; // [n_perm] read back

    scratch main_s;
    uint32_t *sig; // [n_pad]

    scratch *th; // per pool thread, for add_batch
    anneal_err *th_err;
    int n_th;
    sketch *bsk;
    uint32_t *bsig; // [bcap * n_pad]
    size_t bcap;

    uint32_t *cid;    // [n_docs] cluster id or NO_CLUSTER
    uint32_t *cl_off; // [n_clusters + 1] into members
    uint32_t *members;
    anneal_dedup_counts counts;
};

// ---- configuration ------------------------------------------------------------------------

anneal_dedup_config anneal_dedup_config_default(void) {
    return (anneal_dedup_config){
        .exact = true,
        .near = true,
        .bands = 14,
        .rows = 8,
        .ngram = 5,
        .seed = 1,
        .jaccard_threshold = 0.0,
        .memory_budget = 512ull << 20,
    };
}

static anneal_status check_cfg(const char *what, const anneal_dedup_config *c, anneal_err *err) {
    if (!c->exact && !c->near)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "%s: keys 'exact' and 'near' are both false: nothing to do", what);
    if (c->bands < 1 || c->bands > MAX_PERM)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s: key 'bands': %d is not in 1..%d",
                              what, c->bands, MAX_PERM);
    if (c->rows < 1 || c->rows > MAX_PERM)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s: key 'rows': %d is not in 1..%d",
                              what, c->rows, MAX_PERM);
    if ((long long)c->bands * c->rows > MAX_PERM)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "%s: keys 'bands' * 'rows' = %lld is more than %d permutations", what,
                              (long long)c->bands * c->rows, MAX_PERM);
    if (c->ngram < 1 || c->ngram > MAX_NGRAM)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s: key 'ngram': %d is not in 1..%d",
                              what, c->ngram, MAX_NGRAM);
    if (!(c->jaccard_threshold >= 0.0 && c->jaccard_threshold <= 1.0))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "%s: key 'jaccard_threshold': %g is not in 0..1", what,
                              c->jaccard_threshold);
    if (c->memory_budget < MIN_BUDGET || c->memory_budget > (1ull << 50))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "%s: key 'memory_budget': %llu bytes is not in %d..2^50", what,
                              (unsigned long long)c->memory_budget, MIN_BUDGET);
    return ANNEAL_OK;
}

anneal_status anneal_dedup_config_check(const anneal_dedup_config *cfg, anneal_err *err) {
    if (!cfg) return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "dedup config: NULL");
    return check_cfg("dedup config", cfg, err);
}

static anneal_status parse_int(const char *what, const char *key, json_t *v, long long lo,
                               long long hi, long long *out, anneal_err *err) {
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "%s: key '%s': expected an integer from %lld to %lld", what, key, lo,
                              hi);
    *out = json_integer_value(v);
    return ANNEAL_OK;
}

anneal_status anneal_dedup_config_parse(const char *json, size_t len, const char *what,
                                        anneal_dedup_config *cfg, anneal_err *err) {
    if (!what) what = "dedup config";
    json_t *root = anneal_json_parse(json, len, what, err);
    if (!root) return err ? err->status : ANNEAL_ERR_FORMAT;
    anneal_status st = ANNEAL_OK;
    anneal_dedup_config c = *cfg; // applied only when every key is good
    if (!json_is_object(root)) {
        st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s: expected a JSON object", what);
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        long long x = 0;
        if (strcmp(key, "exact") == 0 || strcmp(key, "near") == 0) {
            if (!json_is_boolean(v)) {
                st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                    "%s: key '%s': expected true or false", what, key);
            } else if (key[0] == 'e') {
                c.exact = json_is_true(v);
            } else {
                c.near = json_is_true(v);
            }
        } else if (strcmp(key, "bands") == 0) {
            if (!(st = parse_int(what, key, v, 1, MAX_PERM, &x, err))) c.bands = (int)x;
        } else if (strcmp(key, "rows") == 0) {
            if (!(st = parse_int(what, key, v, 1, MAX_PERM, &x, err))) c.rows = (int)x;
        } else if (strcmp(key, "ngram") == 0) {
            if (!(st = parse_int(what, key, v, 1, MAX_NGRAM, &x, err))) c.ngram = (int)x;
        } else if (strcmp(key, "seed") == 0) {
            if (!(st = parse_int(what, key, v, 0, INT64_MAX, &x, err))) c.seed = (uint64_t)x;
        } else if (strcmp(key, "memory_budget") == 0) {
            if (!(st = parse_int(what, key, v, MIN_BUDGET, 1ll << 50, &x, err)))
                c.memory_budget = (uint64_t)x;
        } else if (strcmp(key, "jaccard_threshold") == 0) {
            if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1)
                st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                    "%s: key '%s': expected a number from 0 to 1", what, key);
            else
                c.jaccard_threshold = json_number_value(v);
        } else {
            st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s: unknown key '%s'", what, key);
        }
        if (st) goto done;
    }
    if (!(st = check_cfg(what, &c, err))) *cfg = c;
done:
    json_decref(root);
    return st;
}

const char *anneal_dedup_reason_name(anneal_dedup_reason r) {
    switch (r) {
    case ANNEAL_DEDUP_KEEP:
        return "keep";
    case ANNEAL_DEDUP_EXACT:
        return "exact";
    case ANNEAL_DEDUP_NEAR:
        return "near";
    }
    return "?";
}

// ---- hashing --------------------------------------------------------------------------------
// Our own fixed functions (not anneal_hash64, which may change between versions), so a
// dataset deduplicated twice with the same seed gives the same result with any build.

static inline uint64_t fmix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 33;
    return h;
}

static inline uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Two independent 64-bit hashes of one word. p has 8 readable bytes past n (scratch slack).
static inline void word_hash(const uint8_t *p, size_t n, uint64_t *a, uint64_t *b) {
    uint64_t h1 = 0x243F6A8885A308D3ull ^ (n * 0x9E3779B97F4A7C15ull);
    uint64_t h2 = 0x13198A2E03707344ull ^ (n * 0xC2B2AE3D27D4EB4Full);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h1 = (h1 ^ v) * 0x87C37B91114253D5ull;
        h1 ^= h1 >> 31;
        h2 = (h2 ^ v) * 0x4CF5AD432745937Full;
        h2 ^= h2 >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t v;
    memcpy(&v, p, 8);
    v = n ? v & (~0ull >> (64 - 8 * n)) : 0;
    *a = fmix64((h1 ^ v) * 0x87C37B91114253D5ull);
    *b = fmix64((h2 ^ v) * 0x4CF5AD432745937Full ^ 0x5851F42D4C957F2Dull);
}

// Hash of one band's rows, 128 bits: a false bucket collision needs both halves to match.
static inline void band_hash(const uint32_t *v, int rows, int band, uint64_t *h0, uint64_t *h1) {
    uint64_t a = 0xA0761D6478BD642Full ^ (uint64_t)band, b = 0xE7037ED1A0B428DBull + (uint64_t)band;
    for (int i = 0; i < rows; i++) {
        a = (a ^ v[i]) * 0x87C37B91114253D5ull;
        a ^= a >> 29;
        b = (b ^ v[i]) * 0x4CF5AD432745937Full;
        b ^= b >> 31;
    }
    *h0 = fmix64(a);
    *h1 = fmix64(b ^ 0x8EBC6AF09C88C6E3ull);
}

// ---- normalization and words -----------------------------------------------------------

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    void *q = anneal_realloc_array(*p, c, elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static bool norm_reserve(scratch *s, size_t extra) {
    return grow((void **)&s->norm, &s->norm_cap, s->norm_len + extra + 8, 1);
}

// NFKC + case fold of one run that holds non-ASCII bytes, appended to s->norm.
static anneal_status map_run(scratch *s, const uint8_t *p, size_t n, anneal_err *err) {
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        size_t k = anneal_utf8_decode(p + i, n - i, &cp);
        if (!k) break;
        i += k;
    }
    if (i < n) { // invalid bytes: each becomes U+FFFD, as the docs promise
        if (!grow((void **)&s->clean, &s->clean_cap, n * 3, 1))
            return anneal_err_set(err, ANNEAL_ERR_NOMEM, "dedup: out of memory normalizing");
        size_t o = 0;
        for (i = 0; i < n;) {
            size_t k = anneal_utf8_decode(p + i, n - i, &cp);
            if (k) {
                memcpy(s->clean + o, p + i, k);
                o += k;
                i += k;
            } else {
                memcpy(s->clean + o, "\xEF\xBF\xBD", 3);
                o += 3;
                i++;
            }
        }
        p = s->clean;
        n = o;
    }
    utf8proc_uint8_t *out = NULL;
    utf8proc_ssize_t m = utf8proc_map(p, (utf8proc_ssize_t)n, &out,
                                      UTF8PROC_COMPOSE | UTF8PROC_COMPAT | UTF8PROC_CASEFOLD);
    if (m < 0) {
        free(out);
        return anneal_err_set(err, m == UTF8PROC_ERROR_NOMEM ? ANNEAL_ERR_NOMEM : ANNEAL_ERR_FORMAT,
                              "dedup: normalizing: %s", utf8proc_errmsg(m));
    }
    if (!norm_reserve(s, (size_t)m)) {
        free(out);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "dedup: out of memory normalizing");
    }
    memcpy(s->norm + s->norm_len, out, (size_t)m);
    s->norm_len += (size_t)m;
    free(out);
    return ANNEAL_OK;
}

// ASCII is lower-cased in place (NFKC leaves it alone); each run of non-ASCII bytes, with the
// ASCII character before it (a combining mark may compose with it), goes through utf8proc.
// Splitting before an ASCII character is safe: no composition has an ASCII second character.
static anneal_status normalize(scratch *s, const uint8_t *t, size_t len, anneal_err *err) {
    s->norm_len = 0;
    if (!norm_reserve(s, len))
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "dedup: out of memory normalizing");
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        uint8_t *o = s->norm + s->norm_len;
        // Eight ASCII bytes at a time: adding 0x3F / 0x25 sets a byte's top bit from 'A' /
        // past 'Z' on (no carries, every byte is below 0x80), so their XOR marks upper case.
        while (j + 8 <= len) {
            uint64_t v;
            memcpy(&v, t + j, 8);
            if (v & 0x8080808080808080ull) break;
            uint64_t up =
                ((v + 0x3F3F3F3F3F3F3F3Full) ^ (v + 0x2525252525252525ull)) & 0x8080808080808080ull;
            v |= up >> 2;
            memcpy(o, &v, 8);
            o += 8;
            j += 8;
        }
        while (j < len && t[j] < 0x80) {
            uint8_t c = t[j++];
            *o++ = (uint8_t)((unsigned)(c - 'A') < 26u ? c + 32 : c);
        }
        s->norm_len = (size_t)(o - s->norm);
        if (j == len) break;
        size_t start = j;
        if (j > i) { // the ASCII character before the run goes with it
            start--;
            s->norm_len--;
        }
        size_t e = j;
        while (e < len && t[e] >= 0x80)
            e++;
        anneal_status st = map_run(s, t + start, e - start, err);
        if (st) return st;
        i = e;
        if (!norm_reserve(s, len - i))
            return anneal_err_set(err, ANNEAL_ERR_NOMEM, "dedup: out of memory normalizing");
    }
    return ANNEAL_OK;
}

// Byte length of the whitespace character at p (Python's str.isspace set), 0 if none.
static inline size_t space_len(const uint8_t *p, size_t n) {
    uint8_t c = p[0];
    if (c < 0x80) return (c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x1F)) ? 1 : 0;
    uint32_t cp;
    size_t k = anneal_utf8_decode(p, n, &cp);
    if (!k) return 0;
    bool ws = cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
              cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
    return ws ? k : 0;
}

// Index of the first byte of v (little-endian) below '!' or above 0x7F, 8 if none. The
// subtraction borrows only out of such a byte, so the lowest flag is never a false one.
static inline size_t stop_byte(uint64_t v) {
    uint64_t m = (((v - 0x2121212121212121ull) & ~v) | v) & 0x8080808080808080ull;
    return m ? (size_t)__builtin_ctzll(m) >> 3 : 8;
}

// Normalizes one document and computes its exact hash and, when sig is not NULL, its
// MinHash signature ([n_pad]).
static anneal_status compute_sketch(const anneal_dedup_config *cfg, const uint32_t *seeds,
                                    size_t n_perm, dedup_minhash_fn minhash, scratch *s,
                                    const char *text, size_t len, sketch *out, uint32_t *sig,
                                    anneal_err *err) {
    anneal_status st = normalize(s, (const uint8_t *)text, len, err);
    if (st) return st;
    const uint8_t *p = s->norm;
    size_t n = s->norm_len, i = 0, nw = 0;
    uint64_t e0 = 0x6A09E667F3BCC908ull, e1 = 0xBB67AE8584CAA73Bull;
    while (i < n) {
        size_t k;
        while (i < n && (k = space_len(p + i, n - i)) != 0)
            i += k;
        if (i == n) break;
        size_t w = i;
        for (;;) {
            while (i < n) { // eight bytes at a time up to a control, space or non-ASCII byte
                uint64_t v;
                memcpy(&v, p + i, 8);
                size_t stop = stop_byte(v);
                i += stop;
                if (stop < 8) break;
            }
            if (i >= n) {
                i = n;
                break;
            }
            if (space_len(p + i, n - i)) break;
            i++;
        }
        uint64_t a, b;
        word_hash(p + w, i - w, &a, &b);
        e0 = (e0 ^ a) * 0x9FB21C651E98DF25ull;
        e0 ^= e0 >> 29;
        e1 = (e1 ^ b) * 0xD6E8FEB86659FD93ull;
        e1 ^= e1 >> 32;
        if (sig) {
            if (!grow((void **)&s->words, &s->words_cap, nw + 1, sizeof *s->words))
                return anneal_err_set(err, ANNEAL_ERR_NOMEM, "dedup: out of memory");
            s->words[nw] = a;
        }
        nw++;
    }
    out->ex0 = fmix64(e0 ^ nw);
    out->ex1 = fmix64(e1 + nw * 0x9E3779B97F4A7C15ull);
    out->n_words = nw > UINT32_MAX ? UINT32_MAX : (uint32_t)nw;
    if (!sig) return ANNEAL_OK;
    // Shingle hashes by a rolling polynomial over the word hashes: one step per shingle.
    size_t g = (size_t)cfg->ngram, ns = nw == 0 ? 0 : nw < g ? 1 : nw - g + 1;
    if (!grow((void **)&s->shingles, &s->shingles_cap, ns ? ns : 1, sizeof *s->shingles))
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "dedup: out of memory");
    const uint64_t P = 0x100000001B3ull * 2 + 1, mixs = cfg->seed * 0x9E3779B97F4A7C15ull;
    if (ns) {
        size_t first = nw < g ? nw : g;
        uint64_t h = 0, pg = 1; // pg = P^(first-1)
        for (size_t k = 0; k < first; k++) {
            h = h * P + s->words[k];
            if (k) pg *= P;
        }
        s->shingles[0] = (uint32_t)(fmix64(h ^ mixs) >> 32);
        for (size_t j = 1; j < ns; j++) {
            h = (h - s->words[j - 1] * pg) * P + s->words[j + g - 1];
            s->shingles[j] = (uint32_t)(fmix64(h ^ mixs) >> 32);
        }
    }
    minhash(s->shingles, ns, seeds, n_perm, sig);
    return ANNEAL_OK;
}

static void scratch_free(scratch *s) {
    anneal_free(s->norm);
    anneal_free(s->clean);
    anneal_free(s->words);
    anneal_free(s->shingles);
    memset(s, 0, sizeof *s);
}

static uint32_t *make_seeds(uint64_t seed, size_t n_pad) {
    uint32_t *seeds = anneal_calloc(n_pad, sizeof *seeds);
    if (!seeds) return NULL;
    uint64_t st = seed ^ 0x5DEECE66Dull;
    for (size_t j = 0; j < n_pad; j++)
        seeds[j] = (uint32_t)(splitmix64(&st) >> 32);
    return seeds;
}

anneal_status anneal_dedup_signature(const anneal_dedup_config *cfg, const char *text, size_t len,
                                     uint32_t *sig, anneal_err *err) {
    anneal_status st = anneal_dedup_config_check(cfg, err);
    if (st) return st;
    size_t n_perm = (size_t)cfg->bands * (size_t)cfg->rows, n_pad = dedup_perm_padded(n_perm);
    uint32_t *seeds = make_seeds(cfg->seed, n_pad), *full = anneal_calloc(n_pad, sizeof *full);
    scratch s = {0};
    sketch sk;
    if (!seeds || !full)
        st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "dedup: out of memory");
    else
        st = compute_sketch(cfg, seeds, n_perm, dedup_minhash_get(), &s, text, len, &sk, full, err);
    if (!st) memcpy(sig, full, n_perm * sizeof *sig);
    scratch_free(&s);
    anneal_free(seeds);
    anneal_free(full);
    return st;
}

// ---- spill files ----------------------------------------------------------------------------

static anneal_status failed(anneal_dedup *d, anneal_err *err) {
    return anneal_err_set(err, d->fail.status, "%s", d->fail.msg);
}

// A temporary file in the spill directory, unlinked at once: the descriptor keeps it alive
// and nothing is left behind however the process ends.
static int spill_open(anneal_dedup *d) {
    size_t n = strlen(d->spill_dir) + 32;
    char *path = anneal_malloc(n);
    if (!path) {
        anneal_err_set(&d->fail, ANNEAL_ERR_NOMEM, "dedup: out of memory");
        return -1;
    }
    snprintf(path, n, "%s/anneal-dedup-XXXXXX", d->spill_dir);
    int fd = mkstemp(path);
    if (fd < 0)
        anneal_err_set(&d->fail, ANNEAL_ERR_IO, "dedup: creating a spill file in %s: %s",
                       d->spill_dir, strerror(errno));
    else
        unlink(path);
    anneal_free(path);
    return fd;
}

static anneal_status write_all(anneal_dedup *d, int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return anneal_err_set(&d->fail, ANNEAL_ERR_IO, "dedup: writing a spill file in %s: %s",
                                  d->spill_dir, w < 0 ? strerror(errno) : "no progress");
        b += w;
        n -= (size_t)w;
        d->counts.spill_bytes += (uint64_t)w;
    }
    return ANNEAL_OK;
}

static anneal_status pread_all(anneal_dedup *d, int fd, void *p, size_t n, uint64_t off) {
    uint8_t *b = p;
    while (n) {
        ssize_t r = pread(fd, b, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return anneal_err_set(&d->fail, ANNEAL_ERR_IO, "dedup: reading a spill file in %s: %s",
                                  d->spill_dir, r < 0 ? strerror(errno) : "unexpected end");
        b += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return ANNEAL_OK;
}

static inline bool rec_less(const rec *a, const rec *b) {
    if (a->kind != b->kind) return a->kind < b->kind;
    if (a->h0 != b->h0) return a->h0 < b->h0;
    if (a->h1 != b->h1) return a->h1 < b->h1;
    return a->doc < b->doc;
}

// In-place introsort-style quicksort (median of three, insertion sort below 16, heap sort
// when the depth runs out): glibc's qsort would allocate a second buffer as large as the
// first, doubling the memory the budget promises.
static void sift_down(rec *a, size_t i, size_t n) {
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && rec_less(&a[c], &a[c + 1])) c++;
        if (!rec_less(&a[i], &a[c])) return;
        rec t = a[i];
        a[i] = a[c];
        a[c] = t;
        i = c;
    }
}

static void sort_recs(rec *a, size_t n, int depth) {
    while (n > 16) {
        if (depth-- == 0) {
            for (size_t i = n / 2; i-- > 0;)
                sift_down(a, i, n);
            for (size_t e = n - 1; e > 0; e--) {
                rec t = a[0];
                a[0] = a[e];
                a[e] = t;
                sift_down(a, 0, e);
            }
            return;
        }
        size_t m = n / 2;
        rec t;
        if (rec_less(&a[m], &a[0])) t = a[m], a[m] = a[0], a[0] = t;
        if (rec_less(&a[n - 1], &a[m])) {
            t = a[m], a[m] = a[n - 1], a[n - 1] = t;
            if (rec_less(&a[m], &a[0])) t = a[m], a[m] = a[0], a[0] = t;
        }
        rec pivot = a[m];
        size_t i = 0, j = n - 1;
        for (;;) { // Hoare partition; records are distinct (doc differs), so it terminates
            while (rec_less(&a[i], &pivot))
                i++;
            while (rec_less(&pivot, &a[j]))
                j--;
            if (i >= j) break;
            t = a[i], a[i] = a[j], a[j] = t;
            i++;
            j--;
        }
        // Recurse into the smaller side, loop on the larger: stack depth stays O(log n).
        size_t left = j + 1;
        if (left < n - left) {
            sort_recs(a, left, depth);
            a += left;
            n -= left;
        } else {
            sort_recs(a + left, n - left, depth);
            n = left;
        }
    }
    for (size_t i = 1; i < n; i++) {
        rec t = a[i];
        size_t j = i;
        while (j > 0 && rec_less(&t, &a[j - 1])) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = t;
    }
}

static void sort_all(rec *a, size_t n) {
    int depth = 0;
    for (size_t k = n; k; k >>= 1)
        depth += 2;
    sort_recs(a, n, depth);
}

static inline bool same_bucket(const rec *a, const rec *b) {
    return a->kind == b->kind && a->h0 == b->h0 && a->h1 == b->h1;
}

// A sorted stream of records: the in-memory buffer or a run file read in chunks.
typedef struct source {
    const rec *mem;
    size_t mem_n;
    int fd;
    uint64_t left, off; // records not yet read from the file, byte offset
    rec *rbuf;
    size_t rn, rpos;
} source;

static anneal_status src_fill(anneal_dedup *d, source *s) {
    if (s->mem || s->rpos < s->rn || !s->left) return ANNEAL_OK;
    size_t k = s->left < READ_RECS ? (size_t)s->left : READ_RECS;
    anneal_status st = pread_all(d, s->fd, s->rbuf, k * sizeof(rec), s->off);
    if (st) return st;
    s->off += k * sizeof(rec);
    s->left -= k;
    s->rn = k;
    s->rpos = 0;
    return ANNEAL_OK;
}

static inline const rec *src_head(const source *s) {
    if (s->mem) return s->rpos < s->mem_n ? &s->mem[s->rpos] : NULL;
    return s->rpos < s->rn ? &s->rbuf[s->rpos] : NULL;
}

typedef anneal_status (*rec_sink)(anneal_dedup *d, const rec *r, void *arg);

// k-way merge of the open runs and (when mem_n > 0) the sorted buffer; k <= 17, so a linear
// scan for the smallest head is as fast as a heap.
static anneal_status merge(anneal_dedup *d, const rec *mem, size_t mem_n, rec_sink sink,
                           void *arg) {
    source src[MAX_RUNS + 1];
    int k = 0;
    rec *bufs = NULL;
    if (d->n_runs) {
        bufs = anneal_calloc((size_t)d->n_runs * READ_RECS, sizeof *bufs);
        if (!bufs) return anneal_err_set(&d->fail, ANNEAL_ERR_NOMEM, "dedup: out of memory");
    }
    for (int r = 0; r < d->n_runs; r++)
        src[k++] =
            (source){.fd = d->run_fd[r], .left = d->run_n[r], .rbuf = bufs + (size_t)r * READ_RECS};
    if (mem_n) src[k++] = (source){.mem = mem, .mem_n = mem_n, .fd = -1};
    anneal_status st = ANNEAL_OK;
    for (int j = 0; j < k && !st; j++)
        st = src_fill(d, &src[j]);
    while (!st) {
        int best = -1;
        const rec *bh = NULL;
        for (int j = 0; j < k; j++) {
            const rec *h = src_head(&src[j]);
            if (h && (!bh || rec_less(h, bh))) {
                bh = h;
                best = j;
            }
        }
        if (best < 0) break;
        st = sink(d, bh, arg);
        src[best].rpos++;
        if (!st) st = src_fill(d, &src[best]);
    }
    anneal_free(bufs);
    return st;
}

static void close_runs(anneal_dedup *d) {
    for (int r = 0; r < d->n_runs; r++)
        close(d->run_fd[r]);
    d->n_runs = 0;
}

// Writes records to one new run through a buffer.
typedef struct run_writer {
    int fd;
    rec *buf;
    size_t n;
    uint64_t total;
} run_writer;

static anneal_status rw_put(anneal_dedup *d, const rec *r, void *arg) {
    run_writer *w = arg;
    w->buf[w->n++] = *r;
    w->total++;
    if (w->n < READ_RECS) return ANNEAL_OK;
    w->n = 0;
    return write_all(d, w->fd, w->buf, READ_RECS * sizeof(rec));
}

// MAX_RUNS runs are open: merge them into one so the number of descriptors stays bounded.
static anneal_status cascade(anneal_dedup *d) {
    run_writer w = {.fd = spill_open(d)};
    if (w.fd < 0) return d->fail.status;
    w.buf = anneal_malloc(READ_RECS * sizeof(rec));
    anneal_status st =
        w.buf ? ANNEAL_OK : anneal_err_set(&d->fail, ANNEAL_ERR_NOMEM, "dedup: out of memory");
    if (!st) st = merge(d, NULL, 0, rw_put, &w);
    if (!st && w.n) st = write_all(d, w.fd, w.buf, w.n * sizeof(rec));
    anneal_free(w.buf);
    if (st) {
        close(w.fd);
        return st;
    }
    close_runs(d);
    d->run_fd[0] = w.fd;
    d->run_n[0] = w.total;
    d->n_runs = 1;
    d->counts.spill_runs++;
    return ANNEAL_OK;
}

// The buffer is full: sort it and write it out as a run.
static anneal_status spill(anneal_dedup *d) {
    sort_all(d->buf, d->buf_n);
    int fd = spill_open(d);
    if (fd < 0) return d->fail.status;
    anneal_status st = write_all(d, fd, d->buf, d->buf_n * sizeof(rec));
    if (st) {
        close(fd);
        return st;
    }
    d->run_fd[d->n_runs] = fd;
    d->run_n[d->n_runs] = d->buf_n;
    d->n_runs++;
    d->counts.spill_runs++;
    d->buf_n = 0;
    return d->n_runs == MAX_RUNS ? cascade(d) : ANNEAL_OK;
}

static anneal_status push(anneal_dedup *d, uint64_t h0, uint64_t h1, uint32_t kind, uint32_t doc) {
    if (d->buf_n == d->buf_cap) {
        if (d->buf_cap < d->buf_max) {
            size_t c = d->buf_cap ? d->buf_cap * 2 : 4096;
            if (c > d->buf_max) c = d->buf_max;
            rec *b = anneal_realloc_array(d->buf, c, sizeof *b);
            if (!b) return anneal_err_set(&d->fail, ANNEAL_ERR_NOMEM, "dedup: out of memory");
            d->buf = b;
            d->buf_cap = c;
        } else {
            anneal_status st = spill(d);
            if (st) return st;
        }
    }
    d->buf[d->buf_n++] = (rec){h0, h1, kind, doc};
    return ANNEAL_OK;
}

// ---- the handle -----------------------------------------------------------------------------

anneal_status anneal_dedup_new(const anneal_dedup_config *cfg, const char *spill_dir,
                               anneal_dedup **out, anneal_err *err) {
    *out = NULL;
    anneal_status st = anneal_dedup_config_check(cfg, err);
    if (st) return st;
    if (!spill_dir || !*spill_dir) spill_dir = getenv("TMPDIR");
    if (!spill_dir || !*spill_dir) spill_dir = "/tmp";
    struct stat sb; // a bad directory should fail now, not after reading half the input
    if (stat(spill_dir, &sb) != 0)
        return anneal_err_set(err, ANNEAL_ERR_IO, "dedup: spill directory %s: %s", spill_dir,
                              strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return anneal_err_set(err, ANNEAL_ERR_IO, "dedup: spill directory %s: not a directory",
                              spill_dir);
    anneal_dedup *d = anneal_calloc(1, sizeof *d);
    if (!d) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "dedup: out of memory");
    d->cfg = *cfg;
    d->sig_fd = -1;
    d->n_perm = (size_t)cfg->bands * (size_t)cfg->rows;
    d->n_pad = dedup_perm_padded(d->n_perm);
    d->minhash = dedup_minhash_get();
    d->buf_max = (size_t)(cfg->memory_budget / sizeof(rec));
    d->spill_dir = anneal_strndup(spill_dir, strlen(spill_dir));
    d->seeds = make_seeds(cfg->seed, d->n_pad);
    d->sig = anneal_calloc(d->n_pad, sizeof *d->sig);
    if (!d->spill_dir || !d->seeds || !d->sig) {
        anneal_dedup_free(d);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "dedup: out of memory");
    }
    if (cfg->near && cfg->jaccard_threshold > 0) {
        d->sig_wbuf = anneal_malloc(SIG_WBUF);
        d->sig_a = anneal_malloc(d->n_perm * sizeof *d->sig_a);
        d->sig_b = anneal_malloc(d->n_perm * sizeof *d->sig_b);
        if (!d->sig_wbuf || !d->sig_a || !d->sig_b) {
            anneal_dedup_free(d);
            return anneal_err_set(err, ANNEAL_ERR_NOMEM, "dedup: out of memory");
        }
        d->sig_fd = spill_open(d);
        if (d->sig_fd < 0) {
            st = anneal_err_set(err, d->fail.status, "%s", d->fail.msg);
            anneal_dedup_free(d);
            return st;
        }
    }
    *out = d;
    return ANNEAL_OK;
}

void anneal_dedup_free(anneal_dedup *d) {
    if (!d) return;
    close_runs(d);
    if (d->sig_fd >= 0) close(d->sig_fd);
    scratch_free(&d->main_s);
    for (int t = 0; t < d->n_th; t++)
        scratch_free(&d->th[t]);
    anneal_free(d->th);
    anneal_free(d->th_err);
    anneal_free(d->bsk);
    anneal_free(d->bsig);
    anneal_free(d->sig_wbuf);
    anneal_free(d->sig_a);
    anneal_free(d->sig_b);
    anneal_free(d->seeds);
    anneal_free(d->sig);
    anneal_free(d->spill_dir);
    anneal_free(d->parent);
    anneal_free(d->flags);
    anneal_free(d->buf);
    anneal_free(d->cid);
    anneal_free(d->cl_off);
    anneal_free(d->members);
    anneal_free(d);
}

// Records one hashed document as the next index.
static anneal_status add_sketch(anneal_dedup *d, const sketch *sk, const uint32_t *sig) {
    if (d->n_docs >= UINT32_MAX)
        return anneal_err_set(&d->fail, ANNEAL_ERR_LIMIT, "dedup: more than %u documents",
                              UINT32_MAX - 1);
    if (d->n_docs == d->doc_cap) {
        size_t c = d->doc_cap ? d->doc_cap * 2 : 1024;
        uint32_t *p = anneal_realloc_array(d->parent, c, sizeof *p);
        if (p) d->parent = p;
        uint8_t *f = p ? anneal_realloc(d->flags, c) : NULL;
        if (!f) return anneal_err_set(&d->fail, ANNEAL_ERR_NOMEM, "dedup: out of memory");
        d->flags = f;
        d->doc_cap = c;
    }
    uint32_t doc = (uint32_t)d->n_docs;
    d->parent[doc] = doc;
    d->flags[doc] = 0;
    anneal_status st = ANNEAL_OK;
    if (d->cfg.exact) st = push(d, sk->ex0, sk->ex1, 0, doc);
    if (d->cfg.near && sk->n_words) {
        for (int b = 0; b < d->cfg.bands && !st; b++) {
            uint64_t h0, h1;
            band_hash(sig + (size_t)b * (size_t)d->cfg.rows, d->cfg.rows, b, &h0, &h1);
            st = push(d, h0, h1, 1u + (uint32_t)b, doc);
        }
    }
    if (!st && d->sig_fd >= 0) {
        size_t nb = d->n_perm * sizeof *sig;
        if (d->sig_wn + nb > SIG_WBUF) {
            st = write_all(d, d->sig_fd, d->sig_wbuf, d->sig_wn);
            d->sig_wn = 0;
        }
        if (!st) {
            memcpy(d->sig_wbuf + d->sig_wn, sig, nb);
            d->sig_wn += nb;
        }
    }
    if (!st) d->n_docs++;
    return st;
}

static anneal_status check_open(anneal_dedup *d, anneal_err *err) {
    if (d->fail.status) return failed(d, err);
    if (d->finished) return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "dedup: add after finish");
    return ANNEAL_OK;
}

anneal_status anneal_dedup_add(anneal_dedup *d, const char *text, size_t len, anneal_err *err) {
    anneal_status st = check_open(d, err);
    if (st) return st;
    sketch sk;
    st = compute_sketch(&d->cfg, d->seeds, d->n_perm, d->minhash, &d->main_s, text, len, &sk,
                        d->cfg.near ? d->sig : NULL, &d->fail);
    if (!st) st = add_sketch(d, &sk, d->sig);
    return st ? failed(d, err) : ANNEAL_OK;
}

typedef struct batch_job {
    anneal_dedup *d;
    const char *const *texts;
    const size_t *lens;
    size_t n;
} batch_job;

static void batch_work(void *arg, int ith, int nth) {
    batch_job *j = arg;
    anneal_dedup *d = j->d;
    int64_t lo, hi;
    anneal_split((int64_t)j->n, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        uint32_t *sig = d->cfg.near ? d->bsig + (size_t)i * d->n_pad : NULL;
        if (compute_sketch(&d->cfg, d->seeds, d->n_perm, d->minhash, &d->th[ith], j->texts[i],
                           j->lens[i], &d->bsk[i], sig, &d->th_err[ith]))
            return;
    }
}

anneal_status anneal_dedup_add_batch(anneal_dedup *d, anneal_pool *pool, const char *const *texts,
                                     const size_t *lens, size_t n, anneal_err *err) {
    anneal_status st = check_open(d, err);
    if (st) return st;
    int nth = pool ? anneal_pool_size(pool) : 1;
    if (nth > d->n_th) {
        scratch *t = anneal_realloc_array(d->th, (size_t)nth, sizeof *t);
        if (t) {
            d->th = t;
            memset(t + d->n_th, 0, (size_t)(nth - d->n_th) * sizeof *t);
            anneal_free(d->th_err);
            d->th_err = anneal_calloc((size_t)nth, sizeof *d->th_err);
        }
        if (!t || !d->th_err) {
            anneal_err_set(&d->fail, ANNEAL_ERR_NOMEM, "dedup: out of memory");
            return failed(d, err);
        }
        d->n_th = nth;
    }
    if (n > d->bcap) {
        sketch *b = anneal_realloc_array(d->bsk, n, sizeof *b);
        if (b) d->bsk = b;
        uint32_t *s = b ? anneal_realloc_array(d->bsig, n * d->n_pad, sizeof *s) : NULL;
        if (!s) {
            anneal_err_set(&d->fail, ANNEAL_ERR_NOMEM, "dedup: out of memory");
            return failed(d, err);
        }
        d->bsig = s;
        d->bcap = n;
    }
    for (int t = 0; t < nth; t++)
        anneal_err_clear(&d->th_err[t]);
    batch_job job = {d, texts, lens, n};
    if (pool && nth > 1)
        anneal_pool_run(pool, batch_work, &job);
    else
        batch_work(&job, 0, 1);
    for (int t = 0; t < nth; t++)
        if (d->th_err[t].status) {
            anneal_err_set(&d->fail, d->th_err[t].status, "%s", d->th_err[t].msg);
            return failed(d, err);
        }
    for (size_t i = 0; i < n; i++)
        if (add_sketch(d, &d->bsk[i], d->bsig + i * d->n_pad)) return failed(d, err);
    return ANNEAL_OK;
}

// ---- finish: buckets to clusters -------------------------------------------------------------

static inline uint32_t find(uint32_t *parent, uint32_t x) {
    while (parent[x] != x) {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    return x;
}

// The smaller root wins, so every root is its cluster's first document.
static inline void unite(uint32_t *parent, uint32_t a, uint32_t b) {
    a = find(parent, a);
    b = find(parent, b);
    if (a < b)
        parent[b] = a;
    else if (b < a)
        parent[a] = b;
}

static anneal_status jaccard(anneal_dedup *d, uint32_t a, uint32_t b, double *out) {
    size_t nb = d->n_perm * sizeof(uint32_t);
    anneal_status st = pread_all(d, d->sig_fd, d->sig_a, nb, (uint64_t)a * nb);
    if (!st) st = pread_all(d, d->sig_fd, d->sig_b, nb, (uint64_t)b * nb);
    if (st) return st;
    size_t eq = 0;
    for (size_t i = 0; i < d->n_perm; i++)
        eq += d->sig_a[i] == d->sig_b[i];
    *out = (double)eq / (double)d->n_perm;
    return ANNEAL_OK;
}

// The current bucket while the sorted records go by.
typedef struct group {
    rec key;
    uint32_t first, prev;
    bool have;
} group;

static anneal_status on_rec(anneal_dedup *d, const rec *r, void *arg) {
    group *g = arg;
    if (!g->have || !same_bucket(&g->key, r)) {
        g->key = *r;
        g->first = g->prev = r->doc;
        g->have = true;
        return ANNEAL_OK;
    }
    uint32_t doc = r->doc;
    if (r->kind == 0) {
        d->flags[doc] |= F_EXACT;
        unite(d->parent, g->first, doc);
    } else {
        d->counts.band_matches++;
        double t = d->cfg.jaccard_threshold;
        if (t <= 0) {
            unite(d->parent, g->first, doc);
        } else if (find(d->parent, g->first) != find(d->parent, doc)) {
            // Checked against the bucket's first document, then the one just before it, so a
            // chain of close revisions still joins without comparing every pair.
            double j = 0;
            uint32_t with = g->first;
            anneal_status st = jaccard(d, with, doc, &j);
            if (!st && j < t && g->prev != g->first) {
                with = g->prev;
                st = jaccard(d, with, doc, &j);
            }
            if (st) return st;
            if (j >= t)
                unite(d->parent, with, doc);
            else
                d->counts.rejected++;
        }
    }
    g->prev = doc;
    return ANNEAL_OK;
}

anneal_status anneal_dedup_finish(anneal_dedup *d, anneal_err *err) {
    anneal_status st = check_open(d, err);
    if (st) return st;
    if (d->sig_fd >= 0 && d->sig_wn) {
        if (write_all(d, d->sig_fd, d->sig_wbuf, d->sig_wn)) return failed(d, err);
        d->sig_wn = 0;
    }
    sort_all(d->buf, d->buf_n);
    group g = {0};
    if (merge(d, d->buf, d->buf_n, on_rec, &g)) return failed(d, err);
    close_runs(d);
    anneal_free(d->buf);
    d->buf = NULL;
    d->buf_n = d->buf_cap = 0;

    // Roots in one ascending pass; clusters numbered in order of their first document.
    size_t n = d->n_docs;
    uint32_t *parent = d->parent;
    uint64_t n_cl = 0, n_in = 0;
    for (size_t i = 0; i < n; i++) {
        parent[i] = parent[parent[i]]; // parent[i] < i is already fully compressed
        if (parent[i] == i) continue;
        if (!(d->flags[parent[i]] & F_MEMBERS)) {
            d->flags[parent[i]] |= F_MEMBERS;
            n_cl++;
            n_in++;
        }
        n_in++;
        if (d->flags[i] & F_EXACT)
            d->counts.exact++;
        else
            d->counts.near++;
    }
    d->cid = anneal_malloc(n ? n * sizeof *d->cid : 1);
    d->cl_off = anneal_calloc(n_cl + 1, sizeof *d->cl_off);
    d->members = anneal_malloc(n_in ? n_in * sizeof *d->members : 1);
    if (!d->cid || !d->cl_off || !d->members) {
        anneal_err_set(&d->fail, ANNEAL_ERR_NOMEM, "dedup: out of memory");
        return failed(d, err);
    }
    uint32_t next = 0;
    for (size_t i = 0; i < n; i++) {
        if (parent[i] != i)
            d->cid[i] = d->cid[parent[i]];
        else if (d->flags[i] & F_MEMBERS)
            d->cid[i] = next++;
        else
            d->cid[i] = NO_CLUSTER;
        if (d->cid[i] != NO_CLUSTER) d->cl_off[d->cid[i] + 1]++;
    }
    for (uint64_t c = 0; c < n_cl; c++)
        d->cl_off[c + 1] += d->cl_off[c];
    uint32_t *fill = anneal_malloc((n_cl ? n_cl : 1) * sizeof *fill);
    if (!fill) {
        anneal_err_set(&d->fail, ANNEAL_ERR_NOMEM, "dedup: out of memory");
        return failed(d, err);
    }
    memcpy(fill, d->cl_off, n_cl * sizeof *fill);
    for (size_t i = 0; i < n; i++)
        if (d->cid[i] != NO_CLUSTER) d->members[fill[d->cid[i]]++] = (uint32_t)i;
    anneal_free(fill);
    d->counts.docs = n;
    d->counts.kept = n - d->counts.exact - d->counts.near;
    d->counts.clusters = n_cl;
    d->finished = true;
    return ANNEAL_OK;
}

anneal_status anneal_dedup_verdict_get(const anneal_dedup *d, uint64_t index,
                                       anneal_dedup_verdict *out) {
    if (!d->finished) return ANNEAL_ERR_INVALID_ARG;
    if (index >= d->n_docs) return ANNEAL_ERR_RANGE;
    uint32_t i = (uint32_t)index, r = d->parent[i];
    out->keep = r == i;
    out->reason = r == i ? ANNEAL_DEDUP_KEEP
                         : (d->flags[i] & F_EXACT ? ANNEAL_DEDUP_EXACT : ANNEAL_DEDUP_NEAR);
    out->representative = r;
    out->cluster = d->cid[i] == NO_CLUSTER ? -1 : (int64_t)d->cid[i];
    return ANNEAL_OK;
}

void anneal_dedup_counts_get(const anneal_dedup *d, anneal_dedup_counts *out) {
    *out = d->counts;
    out->docs = d->n_docs;
}

anneal_status anneal_dedup_cluster_get(const anneal_dedup *d, uint64_t id,
                                       anneal_dedup_cluster *out) {
    if (!d->finished || id >= d->counts.clusters) return ANNEAL_ERR_RANGE;
    out->members = d->members + d->cl_off[id];
    out->size = d->cl_off[id + 1] - d->cl_off[id];
    out->representative = out->members[0];
    return ANNEAL_OK;
}
