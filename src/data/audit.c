// Bias audit: counts demographic group mentions (whole-word, case-insensitive, multi-word
// terms) and sentiment words within a window of them, then PMI per group with add-one
// smoothing and flags against the category mean. docs/data.md ("Bias audit") specifies it.
#include "anneal/data.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAX_WORD 64 // lexicon words are at most this long, so longer text words never match
#define MAX_TERM_WORDS 8

enum { SENT_NONE = 0, SENT_POS = 1, SENT_NEG = 2 };

typedef struct term {
    int group;
    int category;
    int n_words;
    int32_t words[MAX_TERM_WORDS]; // word ids
    int32_t next;                  // next term starting with the same word (longer first), -1
} term;

typedef struct word_entry {
    char *text;
    uint32_t len;
    uint8_t sentiment;
    int32_t first_term; // -1 when no term starts with this word
} word_entry;

typedef struct group_info {
    char *name;
    int category;
    uint64_t mentions, documents, positive, negative;
    uint64_t last_doc; // 1-based index of the last document that mentioned it
} group_info;

typedef struct span {
    int32_t start, end; // word positions [start, end)
    int32_t group;
} span;

struct anneal_audit {
    anneal_audit_config cfg;
    char **categories;
    int n_categories;
    group_info *groups;
    int n_groups;
    term *terms;
    int n_terms;
    word_entry *words;
    int n_words;
    int32_t *slots; // open addressing: word id or -1
    size_t n_slots; // power of two
    uint64_t docs, total_words, mentions, pos_words, neg_words;
    // per-document scratch, grown as needed
    int32_t *ids;
    size_t ids_cap;
    int32_t *pos_at, *neg_at;
    size_t pos_cap, neg_cap;
    span *spans;
    size_t spans_cap;
};

// ---- word table -----------------------------------------------------------------------

static int32_t word_find(const anneal_audit *a, const char *w, size_t n) {
    uint64_t h = anneal_hash64(w, n);
    size_t mask = a->n_slots - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        int32_t id = a->slots[i];
        if (id < 0) return -1;
        const word_entry *e = &a->words[id];
        if (e->len == n && memcmp(e->text, w, n) == 0) return id;
    }
}

static anneal_status grow_slots(anneal_audit *a) {
    size_t n = a->n_slots ? a->n_slots * 2 : 1024;
    int32_t *s = anneal_realloc_array(NULL, n, sizeof *s);
    if (!s) return ANNEAL_ERR_NOMEM;
    memset(s, 0xff, n * sizeof *s);
    for (int id = 0; id < a->n_words; id++) {
        uint64_t h = anneal_hash64(a->words[id].text, a->words[id].len);
        size_t i = (size_t)h & (n - 1);
        while (s[i] >= 0)
            i = (i + 1) & (n - 1);
        s[i] = id;
    }
    anneal_free(a->slots);
    a->slots = s;
    a->n_slots = n;
    return ANNEAL_OK;
}

// Id of word w (already lower-case), added when new; -1 when out of memory.
static int32_t word_intern(anneal_audit *a, const char *w, size_t n) {
    int32_t id = word_find(a, w, n);
    if (id >= 0) return id;
    if ((size_t)(a->n_words + 1) * 2 > a->n_slots && grow_slots(a)) return -1;
    word_entry *nw = anneal_realloc_array(a->words, (size_t)a->n_words + 1, sizeof *nw);
    if (!nw) return -1;
    a->words = nw;
    word_entry *e = &a->words[a->n_words];
    e->text = anneal_strndup(w, n);
    if (!e->text) return -1;
    e->len = (uint32_t)n;
    e->sentiment = SENT_NONE;
    e->first_term = -1;
    id = a->n_words++;
    uint64_t h = anneal_hash64(w, n);
    size_t i = (size_t)h & (a->n_slots - 1);
    while (a->slots[i] >= 0)
        i = (i + 1) & (a->n_slots - 1);
    a->slots[i] = id;
    return id;
}

// ---- tokenizing -------------------------------------------------------------------------

// Word bytes: ASCII letters and digits, and every byte >= 0x80 (so UTF-8 letters stay inside
// words); everything else separates words.
static inline bool word_byte(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}
static inline uint8_t lower(uint8_t c) {
    return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
}

// ---- lexicon ----------------------------------------------------------------------------

#define LEXERR(...) anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, __VA_ARGS__)

static anneal_status add_term(anneal_audit *a, const char *what, const char *key, size_t idx,
                              json_t *v, int group, int category, anneal_err *err) {
    if (!json_is_string(v) || json_string_length(v) == 0)
        return LEXERR("%s: key '%s[%zu]': a term must be a non-empty string", what, key, idx);
    const uint8_t *s = (const uint8_t *)json_string_value(v);
    size_t n = json_string_length(v);
    term t = {.group = group, .category = category, .next = -1};
    char buf[MAX_WORD];
    size_t i = 0;
    while (i < n) {
        while (i < n && !word_byte(s[i]))
            i++;
        if (i == n) break;
        size_t len = 0;
        while (i < n && word_byte(s[i])) {
            if (len == MAX_WORD)
                return LEXERR("%s: key '%s[%zu]': a word of '%s' is longer than %d bytes", what,
                              key, idx, (const char *)s, MAX_WORD);
            buf[len++] = (char)lower(s[i++]);
        }
        if (t.n_words == MAX_TERM_WORDS)
            return LEXERR("%s: key '%s[%zu]': '%s' has more than %d words", what, key, idx,
                          (const char *)s, MAX_TERM_WORDS);
        int32_t id = word_intern(a, buf, len);
        if (id < 0) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", what);
        t.words[t.n_words++] = id;
    }
    if (t.n_words == 0)
        return LEXERR("%s: key '%s[%zu]': '%s' has no word (letters or digits)", what, key, idx,
                      (const char *)s);
    if (group < 0) { // a sentiment word
        if (t.n_words != 1)
            return LEXERR("%s: key '%s[%zu]': sentiment entries are single words, not '%s'", what,
                          key, idx, (const char *)s);
        word_entry *e = &a->words[t.words[0]];
        uint8_t want = category == 0 ? SENT_POS : SENT_NEG;
        if (e->sentiment == want)
            return LEXERR("%s: key '%s[%zu]': '%s' is listed twice", what, key, idx, e->text);
        if (e->sentiment != SENT_NONE)
            return LEXERR("%s: key '%s[%zu]': '%s' is both positive and negative", what, key, idx,
                          e->text);
        e->sentiment = want;
        return ANNEAL_OK;
    }
    // Same words twice in one category: ambiguous, refused. Other categories may share terms.
    for (int32_t k = a->words[t.words[0]].first_term; k >= 0; k = a->terms[k].next) {
        const term *o = &a->terms[k];
        if (o->category == category && o->n_words == t.n_words &&
            memcmp(o->words, t.words, (size_t)t.n_words * sizeof t.words[0]) == 0)
            return LEXERR("%s: key '%s[%zu]': term '%s' is already in group '%s'", what, key, idx,
                          (const char *)s, a->groups[o->group].name);
    }
    term *nt = anneal_realloc_array(a->terms, (size_t)a->n_terms + 1, sizeof *nt);
    if (!nt) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", what);
    a->terms = nt;
    int32_t me = a->n_terms++;
    // Insert into the first word's list, longest first, so matching tries longer terms first.
    int32_t *link = &a->words[t.words[0]].first_term;
    while (*link >= 0 && a->terms[*link].n_words >= t.n_words)
        link = &a->terms[*link].next;
    t.next = *link;
    a->terms[me] = t;
    *link = me;
    return ANNEAL_OK;
}

static anneal_status add_list(anneal_audit *a, const char *what, const char *key, json_t *arr,
                              int group, int category, anneal_err *err) {
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return LEXERR("%s: key '%s': must be a non-empty array of strings", what, key);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        anneal_status st = add_term(a, what, key, i, v, group, category, err);
        if (st) return st;
    }
    return ANNEAL_OK;
}

static anneal_status parse_lexicon(anneal_audit *a, json_t *root, const char *what,
                                   anneal_err *err) {
    if (!json_is_object(root)) return LEXERR("%s: the lexicon must be a JSON object", what);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "format") == 0) {
            if (!json_is_string(v) || strcmp(json_string_value(v), "anneal-audit-lexicon") != 0)
                return LEXERR("%s: key 'format': must be \"anneal-audit-lexicon\"", what);
        } else if (strcmp(key, "version") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) != 1)
                return LEXERR("%s: key 'version': must be 1", what);
        } else if (strcmp(key, "categories") != 0 && strcmp(key, "sentiment") != 0) {
            return LEXERR("%s: unknown key '%s' (expected format, version, categories, sentiment)",
                          what, key);
        }
    }
    json_t *cats = json_object_get(root, "categories");
    if (!cats) return LEXERR("%s: key 'categories': missing", what);
    if (!json_is_object(cats) || json_object_size(cats) == 0)
        return LEXERR("%s: key 'categories': must be a non-empty object", what);
    size_t n_cat = json_object_size(cats), n_grp = 0;
    const char *ck;
    json_t *cv;
    json_object_foreach(cats, ck, cv) {
        if (!json_is_object(cv) || json_object_size(cv) == 0)
            return LEXERR("%s: key 'categories.%s': must be a non-empty object of groups", what,
                          ck);
        n_grp += json_object_size(cv);
    }
    a->categories = anneal_calloc(n_cat, sizeof *a->categories);
    a->groups = anneal_calloc(n_grp, sizeof *a->groups);
    if (!a->categories || !a->groups)
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", what);
    char kbuf[512];
    json_object_foreach(cats, ck, cv) {
        int c = a->n_categories;
        a->categories[c] = anneal_strndup(ck, strlen(ck));
        if (!a->categories[c])
            return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", what);
        a->n_categories++;
        const char *gk;
        json_t *gv;
        json_object_foreach(cv, gk, gv) {
            int g = a->n_groups;
            a->groups[g].name = anneal_strndup(gk, strlen(gk));
            if (!a->groups[g].name)
                return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", what);
            a->groups[g].category = c;
            a->n_groups++;
            snprintf(kbuf, sizeof kbuf, "categories.%s.%s", ck, gk);
            anneal_status st = add_list(a, what, kbuf, gv, g, c, err);
            if (st) return st;
        }
    }
    json_t *sent = json_object_get(root, "sentiment");
    if (!sent) return LEXERR("%s: key 'sentiment': missing", what);
    if (!json_is_object(sent)) return LEXERR("%s: key 'sentiment': must be an object", what);
    json_object_foreach(sent, key, v) {
        if (strcmp(key, "positive") != 0 && strcmp(key, "negative") != 0)
            return LEXERR("%s: unknown key 'sentiment.%s' (expected positive, negative)", what,
                          key);
    }
    static const char *const names[2] = {"positive", "negative"};
    for (int k = 0; k < 2; k++) {
        json_t *arr = json_object_get(sent, names[k]);
        snprintf(kbuf, sizeof kbuf, "sentiment.%s", names[k]);
        if (!arr) return LEXERR("%s: key '%s': missing", what, kbuf);
        anneal_status st = add_list(a, what, kbuf, arr, -1, k, err);
        if (st) return st;
    }
    return ANNEAL_OK;
}

anneal_audit_config anneal_audit_config_default(void) {
    return (anneal_audit_config){.window = 10, .min_mentions = 20, .threshold = 0.5};
}

anneal_status anneal_audit_new(const char *lexicon_json, size_t len, const char *what,
                               const anneal_audit_config *cfg, anneal_audit **out,
                               anneal_err *err) {
    *out = NULL;
    anneal_audit_config c = cfg ? *cfg : anneal_audit_config_default();
    if (c.window < 0 || c.window > 1000)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "audit: window %d is not in 0..1000",
                              c.window);
    if (!isfinite(c.threshold) || c.threshold < 0)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "audit: threshold %g must be a finite "
                              "number >= 0",
                              c.threshold);
    if (!lexicon_json) {
        lexicon_json = anneal_audit_default_lexicon();
        len = strlen(lexicon_json);
        what = "default lexicon";
    }
    if (!what) what = "lexicon";
    json_t *root = anneal_json_parse(lexicon_json, len, what, err);
    if (!root) return ANNEAL_ERR_FORMAT;
    anneal_audit *a = anneal_calloc(1, sizeof *a);
    if (!a) {
        json_decref(root);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", what);
    }
    a->cfg = c;
    anneal_status st = grow_slots(a)
                           ? anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", what)
                           : parse_lexicon(a, root, what, err);
    json_decref(root);
    if (st) {
        anneal_audit_free(a);
        return st;
    }
    *out = a;
    return ANNEAL_OK;
}

void anneal_audit_free(anneal_audit *a) {
    if (!a) return;
    for (int i = 0; i < a->n_categories; i++)
        anneal_free(a->categories[i]);
    for (int i = 0; i < a->n_groups; i++)
        anneal_free(a->groups[i].name);
    for (int i = 0; i < a->n_words; i++)
        anneal_free(a->words[i].text);
    anneal_free(a->categories);
    anneal_free(a->groups);
    anneal_free(a->words);
    anneal_free(a->terms);
    anneal_free(a->slots);
    anneal_free(a->ids);
    anneal_free(a->pos_at);
    anneal_free(a->neg_at);
    anneal_free(a->spans);
    anneal_free(a);
}

// ---- counting ---------------------------------------------------------------------------

static bool reserve(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    void *q = anneal_realloc_array(*p, n, elem);
    if (!q) return false;
    *p = q;
    *cap = n;
    return true;
}

// First index in sorted v[0..n) with v[i] >= x.
static size_t lower_bound(const int32_t *v, size_t n, int64_t x) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

// True when a position of v lies within `w` words of [start, end) but outside it.
static bool near(const int32_t *v, size_t n, int32_t start, int32_t end, int w) {
    size_t i = lower_bound(v, n, (int64_t)start - w);
    if (i < n && v[i] < start) return true;
    i = lower_bound(v, n, end);
    return i < n && (int64_t)v[i] < (int64_t)end + w;
}

anneal_status anneal_audit_add(anneal_audit *a, const char *text, size_t len, anneal_err *err) {
    const uint8_t *s = (const uint8_t *)text;
    size_t n_ids = 0, n_pos = 0, n_neg = 0;
    char buf[MAX_WORD];
    size_t i = 0;
    while (i < len) {
        if (!word_byte(s[i])) {
            i++;
            continue;
        }
        size_t wl = 0;
        while (i < len && word_byte(s[i])) {
            if (wl < MAX_WORD) buf[wl] = (char)lower(s[i]);
            wl++;
            i++;
        }
        if (n_ids >= (size_t)INT32_MAX)
            return anneal_err_set(err, ANNEAL_ERR_LIMIT,
                                  "audit: a document has more than 2^31 words");
        if (!reserve((void **)&a->ids, &a->ids_cap, n_ids + 1, sizeof *a->ids))
            return anneal_err_set(err, ANNEAL_ERR_NOMEM, "audit: out of memory");
        int32_t id = wl <= MAX_WORD ? word_find(a, buf, wl) : -1;
        if (id >= 0) {
            uint8_t sent = a->words[id].sentiment;
            if (sent == SENT_POS) {
                if (!reserve((void **)&a->pos_at, &a->pos_cap, n_pos + 1, sizeof *a->pos_at))
                    return anneal_err_set(err, ANNEAL_ERR_NOMEM, "audit: out of memory");
                a->pos_at[n_pos++] = (int32_t)n_ids;
            } else if (sent == SENT_NEG) {
                if (!reserve((void **)&a->neg_at, &a->neg_cap, n_neg + 1, sizeof *a->neg_at))
                    return anneal_err_set(err, ANNEAL_ERR_NOMEM, "audit: out of memory");
                a->neg_at[n_neg++] = (int32_t)n_ids;
            }
        }
        a->ids[n_ids++] = id;
    }
    // Mentions: at each word, the longest term of each category starting there, unless an
    // earlier mention of that category still covers the word.
    int32_t next_free[64];
    int32_t *nf = next_free;
    int32_t *nf_heap = NULL;
    if (a->n_categories > 64) {
        nf_heap = anneal_calloc((size_t)a->n_categories, sizeof *nf_heap);
        if (!nf_heap) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "audit: out of memory");
        nf = nf_heap;
    } else {
        memset(next_free, 0, sizeof next_free);
    }
    size_t n_spans = 0;
    for (size_t p = 0; p < n_ids; p++) {
        int32_t id = a->ids[p];
        if (id < 0) continue;
        for (int32_t k = a->words[id].first_term; k >= 0; k = a->terms[k].next) {
            const term *t = &a->terms[k];
            if ((int32_t)p < nf[t->category] || p + (size_t)t->n_words > n_ids) continue;
            bool ok = true;
            for (int j = 1; j < t->n_words && ok; j++)
                ok = a->ids[p + (size_t)j] == t->words[j];
            if (!ok) continue;
            if (!reserve((void **)&a->spans, &a->spans_cap, n_spans + 1, sizeof *a->spans)) {
                anneal_free(nf_heap);
                return anneal_err_set(err, ANNEAL_ERR_NOMEM, "audit: out of memory");
            }
            a->spans[n_spans++] = (span){(int32_t)p, (int32_t)p + t->n_words, t->group};
            nf[t->category] = (int32_t)p + t->n_words;
        }
    }
    anneal_free(nf_heap);
    a->docs++;
    a->total_words += n_ids;
    a->pos_words += n_pos;
    a->neg_words += n_neg;
    a->mentions += n_spans;
    for (size_t k = 0; k < n_spans; k++) {
        const span *sp = &a->spans[k];
        group_info *g = &a->groups[sp->group];
        g->mentions++;
        if (g->last_doc != a->docs) {
            g->last_doc = a->docs;
            g->documents++;
        }
        g->positive += near(a->pos_at, n_pos, sp->start, sp->end, a->cfg.window);
        g->negative += near(a->neg_at, n_neg, sp->start, sp->end, a->cfg.window);
    }
    return ANNEAL_OK;
}

// ---- figures ------------------------------------------------------------------------------

size_t anneal_audit_group_count(const anneal_audit *a) {
    return (size_t)a->n_groups;
}

void anneal_audit_totals(const anneal_audit *a, uint64_t *docs, uint64_t *words, uint64_t *mentions,
                         uint64_t *positive_words, uint64_t *negative_words) {
    if (docs) *docs = a->docs;
    if (words) *words = a->total_words;
    if (mentions) *mentions = a->mentions;
    if (positive_words) *positive_words = a->pos_words;
    if (negative_words) *negative_words = a->neg_words;
}

// PMI(g, s) = log2( ((c(g,s)+1) / (c(g)+2)) / ((c(s)+1) / (N+2)) ), N = all mentions,
// c(s) = mentions (of any group) with sentiment s in the window.
static double pmi(uint64_t cgs, uint64_t cg, uint64_t cs, uint64_t n) {
    return log2(((double)cgs + 1) / ((double)cg + 2)) - log2(((double)cs + 1) / ((double)n + 2));
}

static void group_pmi(const anneal_audit *a, int g, uint64_t cs_pos, uint64_t cs_neg, double *pp,
                      double *pn) {
    const group_info *gi = &a->groups[g];
    *pp = pmi(gi->positive, gi->mentions, cs_pos, a->mentions);
    *pn = pmi(gi->negative, gi->mentions, cs_neg, a->mentions);
}

void anneal_audit_group_get(const anneal_audit *a, size_t i, anneal_audit_group *out) {
    memset(out, 0, sizeof *out);
    if (i >= (size_t)a->n_groups) return;
    uint64_t cs_pos = 0, cs_neg = 0;
    for (int g = 0; g < a->n_groups; g++) {
        cs_pos += a->groups[g].positive;
        cs_neg += a->groups[g].negative;
    }
    const group_info *gi = &a->groups[i];
    out->category = a->categories[gi->category];
    out->name = gi->name;
    out->mentions = gi->mentions;
    out->documents = gi->documents;
    out->positive = gi->positive;
    out->negative = gi->negative;
    group_pmi(a, (int)i, cs_pos, cs_neg, &out->pmi_positive, &out->pmi_negative);
    double sp = 0, sn = 0;
    int judged = 0;
    for (int g = 0; g < a->n_groups; g++) {
        if (a->groups[g].category != gi->category || a->groups[g].mentions < a->cfg.min_mentions)
            continue;
        double pp, pn;
        group_pmi(a, g, cs_pos, cs_neg, &pp, &pn);
        sp += pp;
        sn += pn;
        judged++;
    }
    out->mean_positive = judged ? sp / judged : NAN;
    out->mean_negative = judged ? sn / judged : NAN;
    if (gi->mentions < a->cfg.min_mentions) {
        out->status = ANNEAL_AUDIT_INSUFFICIENT;
        return;
    }
    out->flag_positive = fabs(out->pmi_positive - out->mean_positive) > a->cfg.threshold;
    out->flag_negative = fabs(out->pmi_negative - out->mean_negative) > a->cfg.threshold;
    out->status = out->flag_positive || out->flag_negative ? ANNEAL_AUDIT_FLAGGED : ANNEAL_AUDIT_OK;
}

// ---- reports ------------------------------------------------------------------------------

static const char *status_name(anneal_audit_status s) {
    return s == ANNEAL_AUDIT_FLAGGED        ? "flagged"
           : s == ANNEAL_AUDIT_INSUFFICIENT ? "insufficient"
                                            : "ok";
}

// Fixed 4 decimals: stable text, and -0.0000 printed as 0.0000.
static void num(FILE *f, double v) {
    if (isnan(v)) {
        fputs("null", f);
        return;
    }
    char b[64];
    snprintf(b, sizeof b, "%.4f", v);
    fputs(strcmp(b, "-0.0000") == 0 ? "0.0000" : b, f);
}

static void jstr(FILE *f, const char *s) {
    anneal_json_write_str(f, s, strlen(s));
}

// buf and size are only final after fclose.
static anneal_status finish_stream(FILE *f, char **buf, size_t *size, char **out, size_t *len,
                                   anneal_err *err) {
    bool bad = ferror(f) != 0;
    bad |= fclose(f) != 0;
    if (!bad) *out = anneal_strndup(*buf, *size);
    free(*buf); // allocated by open_memstream
    if (bad || !*out) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "audit report: out of memory");
    if (len) *len = *size;
    return ANNEAL_OK;
}

anneal_status anneal_audit_report_json(const anneal_audit *a, char **out, size_t *len,
                                       anneal_err *err) {
    *out = NULL;
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "audit report: out of memory");
    uint64_t cs_pos = 0, cs_neg = 0;
    for (int g = 0; g < a->n_groups; g++) {
        cs_pos += a->groups[g].positive;
        cs_neg += a->groups[g].negative;
    }
    fprintf(f, "{\n  \"config\": {\"window\": %d, \"min_mentions\": %llu, \"threshold\": ",
            a->cfg.window, (unsigned long long)a->cfg.min_mentions);
    num(f, a->cfg.threshold);
    fprintf(f, "},\n  \"documents\": %llu,\n  \"words\": %llu,\n  \"mentions\": %llu,\n",
            (unsigned long long)a->docs, (unsigned long long)a->total_words,
            (unsigned long long)a->mentions);
    fprintf(f, "  \"sentiment_words\": {\"positive\": %llu, \"negative\": %llu},\n",
            (unsigned long long)a->pos_words, (unsigned long long)a->neg_words);
    fprintf(f, "  \"mentions_near_sentiment\": {\"positive\": %llu, \"negative\": %llu},\n",
            (unsigned long long)cs_pos, (unsigned long long)cs_neg);
    fputs("  \"categories\": [", f);
    for (int c = 0; c < a->n_categories; c++) {
        bool first = true;
        for (int g = 0; g < a->n_groups; g++) {
            if (a->groups[g].category != c) continue;
            anneal_audit_group r;
            anneal_audit_group_get(a, (size_t)g, &r);
            if (first) {
                fputs(c ? ",\n    {\"name\": " : "\n    {\"name\": ", f);
                jstr(f, a->categories[c]);
                fputs(", \"mean_pmi\": {\"positive\": ", f);
                num(f, r.mean_positive);
                fputs(", \"negative\": ", f);
                num(f, r.mean_negative);
                fputs("}, \"groups\": [", f);
            }
            fputs(first ? "\n      {\"name\": " : ",\n      {\"name\": ", f);
            first = false;
            jstr(f, r.name);
            fprintf(f,
                    ", \"mentions\": %llu, \"documents\": %llu, \"positive\": %llu, "
                    "\"negative\": %llu, \"pmi\": {\"positive\": ",
                    (unsigned long long)r.mentions, (unsigned long long)r.documents,
                    (unsigned long long)r.positive, (unsigned long long)r.negative);
            num(f, r.pmi_positive);
            fputs(", \"negative\": ", f);
            num(f, r.pmi_negative);
            fprintf(f, "}, \"status\": \"%s\", \"flags\": [%s%s%s]}", status_name(r.status),
                    r.flag_positive ? "\"positive\"" : "",
                    r.flag_positive && r.flag_negative ? ", " : "",
                    r.flag_negative ? "\"negative\"" : "");
        }
        fputs("\n    ]}", f);
    }
    fputs(a->n_categories ? "\n  ],\n  \"flagged\": [" : "],\n  \"flagged\": [", f);
    bool any = false;
    for (int g = 0; g < a->n_groups; g++) {
        anneal_audit_group r;
        anneal_audit_group_get(a, (size_t)g, &r);
        for (int k = 0; k < 2; k++) {
            bool fl = k == 0 ? r.flag_positive : r.flag_negative;
            if (!fl) continue;
            double v = k == 0 ? r.pmi_positive : r.pmi_negative;
            double m = k == 0 ? r.mean_positive : r.mean_negative;
            fputs(any ? ",\n    {\"category\": " : "\n    {\"category\": ", f);
            any = true;
            jstr(f, r.category);
            fputs(", \"group\": ", f);
            jstr(f, r.name);
            fprintf(f, ", \"sentiment\": \"%s\", \"pmi\": ", k == 0 ? "positive" : "negative");
            num(f, v);
            fputs(", \"category_mean\": ", f);
            num(f, m);
            fputs(", \"difference\": ", f);
            num(f, v - m);
            fputc('}', f);
        }
    }
    fputs(any ? "\n  ],\n  \"insufficient\": [" : "],\n  \"insufficient\": [", f);
    any = false;
    for (int g = 0; g < a->n_groups; g++) {
        if (a->groups[g].mentions >= a->cfg.min_mentions) continue;
        fputs(any ? ",\n    {\"category\": " : "\n    {\"category\": ", f);
        any = true;
        jstr(f, a->categories[a->groups[g].category]);
        fputs(", \"group\": ", f);
        jstr(f, a->groups[g].name);
        fprintf(f, ", \"mentions\": %llu}", (unsigned long long)a->groups[g].mentions);
    }
    fputs(any ? "\n  ]\n}\n" : "]\n}\n", f);
    return finish_stream(f, &buf, &size, out, len, err);
}

// Markdown table cells: '|' and line breaks would break the table.
static void md_cell(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|')
            fputs("\\|", f);
        else if (*s == '\n' || *s == '\r')
            fputc(' ', f);
        else
            fputc(*s, f);
    }
}

anneal_status anneal_audit_report_markdown(const anneal_audit *a, char **out, size_t *len,
                                           anneal_err *err) {
    *out = NULL;
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "audit report: out of memory");
    fprintf(f,
            "# Bias audit\n\n%llu documents, %llu words, %llu group mentions; %llu positive "
            "and %llu negative words.\n\n",
            (unsigned long long)a->docs, (unsigned long long)a->total_words,
            (unsigned long long)a->mentions, (unsigned long long)a->pos_words,
            (unsigned long long)a->neg_words);
    fprintf(f,
            "Window: %d words either side of a mention. PMI in bits with add-one smoothing. "
            "A group is flagged when its PMI differs from its category's mean by more than ",
            a->cfg.window);
    num(f, a->cfg.threshold);
    fprintf(f, "; groups with fewer than %llu mentions are not judged.\n",
            (unsigned long long)a->cfg.min_mentions);
    for (int c = 0; c < a->n_categories; c++) {
        fputs("\n## ", f);
        md_cell(f, a->categories[c]);
        fputs("\n\n| group | mentions | documents | near positive | near negative | PMI positive "
              "| PMI negative | status |\n|---|---:|---:|---:|---:|---:|---:|---|\n",
              f);
        anneal_audit_group r = {0};
        for (int g = 0; g < a->n_groups; g++) {
            if (a->groups[g].category != c) continue;
            anneal_audit_group_get(a, (size_t)g, &r);
            fputs("| ", f);
            md_cell(f, r.name);
            fprintf(f, " | %llu | %llu | %llu | %llu | ", (unsigned long long)r.mentions,
                    (unsigned long long)r.documents, (unsigned long long)r.positive,
                    (unsigned long long)r.negative);
            num(f, r.pmi_positive);
            fputs(" | ", f);
            num(f, r.pmi_negative);
            fprintf(f, " | %s%s%s |\n", status_name(r.status), r.flag_positive ? " (positive)" : "",
                    r.flag_negative ? " (negative)" : "");
        }
        fputs("\nCategory mean PMI: positive ", f);
        if (isnan(r.mean_positive))
            fputs("n/a", f);
        else
            num(f, r.mean_positive);
        fputs(", negative ", f);
        if (isnan(r.mean_negative))
            fputs("n/a", f);
        else
            num(f, r.mean_negative);
        fputs(".\n", f);
    }
    return finish_stream(f, &buf, &size, out, len, err);
}
