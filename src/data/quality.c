// Document quality filters: Gopher repetition and quality, C4 and FineWeb heuristics in one
// scan over the bytes plus hash-table passes over words, lines and paragraphs.
#include "anneal/data.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>

// ---- rule table ----------------------------------------------------------------------

static const char *const rule_names[ANNEAL_QR_COUNT] = {
    "",
    "gopher_dup_para_frac",
    "gopher_dup_para_char_frac",
    "gopher_dup_line_frac",
    "gopher_dup_line_char_frac",
    "gopher_top_2gram",
    "gopher_top_3gram",
    "gopher_top_4gram",
    "gopher_dup_5gram",
    "gopher_dup_6gram",
    "gopher_dup_7gram",
    "gopher_dup_8gram",
    "gopher_dup_9gram",
    "gopher_dup_10gram",
    "gopher_min_words",
    "gopher_max_words",
    "gopher_min_avg_word_len",
    "gopher_max_avg_word_len",
    "gopher_hash_ratio",
    "gopher_ellipsis_ratio",
    "gopher_bullet_lines",
    "gopher_end_ellipsis_lines",
    "gopher_alpha_words",
    "gopher_stop_words",
    "c4_lorem_ipsum",
    "c4_curly_brace",
    "c4_min_sentences",
    "fineweb_line_punct",
    "fineweb_short_lines",
    "fineweb_char_dup",
    "fineweb_list_ratio",
};

// clang-format off
static const double rule_defaults[ANNEAL_QR_COUNT] = {
    0,
    0.30, 0.20, 0.30, 0.20,                   // Gopher table A1: duplicate paragraphs/lines
    0.20, 0.18, 0.16,                         // top 2/3/4-gram character fraction
    0.15, 0.14, 0.13, 0.12, 0.11, 0.10,       // duplicate 5..10-gram character fraction
    50, 100000, 3, 10, 0.1, 0.1, 0.9, 0.3, 0.8, 2, // Gopher quality
    0, 0, 5,                                  // C4
    0.12, 0.67, 0.01, 0.3,                    // FineWeb
};
// clang-format on

anneal_quality_config anneal_quality_config_default(void) {
    anneal_quality_config c;
    memset(&c, 0, sizeof c);
    for (int r = 1; r < ANNEAL_QR_COUNT; r++) {
        c.enabled[r] = true;
        c.threshold[r] = rule_defaults[r];
    }
    c.c4_min_words_per_line = 3;
    c.c4_max_word_length = 1000;
    c.fineweb_short_line_length = 30;
    c.fineweb_line_punct_exclude_zero = false;
    return c;
}

const char *anneal_quality_rule_name(anneal_quality_rule rule) {
    if ((int)rule < 0 || rule >= ANNEAL_QR_COUNT) return "?";
    return rule_names[rule];
}

anneal_status anneal_quality_rule_parse(const char *name, anneal_quality_rule *out,
                                        anneal_err *err) {
    for (int r = 1; r < ANNEAL_QR_COUNT; r++) {
        if (strcmp(name, rule_names[r]) == 0) {
            *out = (anneal_quality_rule)r;
            return ANNEAL_OK;
        }
    }
    return anneal_err_set(err, ANNEAL_ERR_NOT_FOUND, "unknown quality rule '%s'", name);
}

// ---- config parsing ------------------------------------------------------------------

static anneal_status parse_threshold(const char *what, const char *key, json_t *v, double *out,
                                     anneal_err *err) {
    if (!json_is_number(v) || !isfinite(json_number_value(v)) || json_number_value(v) < 0)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "%s: key '%s': threshold must be a finite number >= 0", what, key);
    *out = json_number_value(v);
    return ANNEAL_OK;
}

static anneal_status parse_rule(const char *what, const char *key, json_t *v,
                                anneal_quality_config *c, int r, anneal_err *err) {
    if (json_is_boolean(v)) {
        c->enabled[r] = json_is_true(v);
        return ANNEAL_OK;
    }
    if (json_is_number(v)) {
        c->enabled[r] = true;
        return parse_threshold(what, key, v, &c->threshold[r], err);
    }
    if (!json_is_object(v))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "%s: key '%s': expected true/false, a number or an object", what,
                              key);
    const char *sub;
    json_t *sv;
    json_object_foreach(v, sub, sv) {
        if (strcmp(sub, "enabled") == 0) {
            if (!json_is_boolean(sv))
                return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                      "%s: key '%s.enabled': expected true or false", what, key);
            c->enabled[r] = json_is_true(sv);
        } else if (strcmp(sub, "threshold") == 0) {
            anneal_status st = parse_threshold(what, key, sv, &c->threshold[r], err);
            if (st) return st;
        } else {
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s: unknown key '%s.%s'", what, key,
                                  sub);
        }
    }
    return ANNEAL_OK;
}

static anneal_status parse_int_field(const char *what, const char *key, json_t *v, int *out,
                                     anneal_err *err) {
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000000)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "%s: key '%s': expected an integer from 0 to 1000000000", what, key);
    *out = (int)json_integer_value(v);
    return ANNEAL_OK;
}

anneal_status anneal_quality_config_parse(const char *json, size_t len, const char *what,
                                          anneal_quality_config *cfg, anneal_err *err) {
    if (!what) what = "quality config";
    json_t *root = anneal_json_parse(json, len, what, err);
    if (!root) return err ? err->status : ANNEAL_ERR_FORMAT;
    anneal_status st = ANNEAL_OK;
    anneal_quality_config c = *cfg; // applied only when every key is good
    if (!json_is_object(root)) {
        st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s: expected a JSON object", what);
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "c4_min_words_per_line") == 0) {
            st = parse_int_field(what, key, v, &c.c4_min_words_per_line, err);
        } else if (strcmp(key, "c4_max_word_length") == 0) {
            st = parse_int_field(what, key, v, &c.c4_max_word_length, err);
        } else if (strcmp(key, "fineweb_short_line_length") == 0) {
            st = parse_int_field(what, key, v, &c.fineweb_short_line_length, err);
        } else if (strcmp(key, "fineweb_line_punct_exclude_zero") == 0) {
            if (!json_is_boolean(v))
                st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                    "%s: key '%s': expected true or false", what, key);
            else
                c.fineweb_line_punct_exclude_zero = json_is_true(v);
        } else {
            int r = 1;
            while (r < ANNEAL_QR_COUNT && strcmp(key, rule_names[r]) != 0)
                r++;
            if (r == ANNEAL_QR_COUNT)
                st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s: unknown key '%s'", what, key);
            else
                st = parse_rule(what, key, v, &c, r, err);
        }
        if (st) goto done;
    }
    *cfg = c;
done:
    json_decref(root);
    return st;
}

// ---- character classes -----------------------------------------------------------------

enum { C_OTHER = 0, C_WS = 1, C_PUNCT = 2, C_ALPHA = 4 };

// Python's str.isspace() set, which is what datatrove's split() and strip() use.
static bool uni_space(uint32_t cp) {
    return (cp >= 0x1C && cp <= 0x1F) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

// Unicode punctuation commonly found around words (general punctuation, Latin-1 quotes and
// marks, CJK and full-width brackets); enough to strip words the way nltk splits them off.
static bool uni_punct(uint32_t cp) {
    return cp == 0xA1 || cp == 0xA7 || cp == 0xAB || cp == 0xB6 || cp == 0xB7 || cp == 0xBB ||
           cp == 0xBF || (cp >= 0x2010 && cp <= 0x2027) || (cp >= 0x2030 && cp <= 0x205E) ||
           (cp >= 0x3001 && cp <= 0x3003) || (cp >= 0x3008 && cp <= 0x3011) ||
           (cp >= 0x3014 && cp <= 0x301F) || (cp >= 0xFF01 && cp <= 0xFF0F) ||
           (cp >= 0xFF1A && cp <= 0xFF20) || (cp >= 0xFF3B && cp <= 0xFF40) ||
           (cp >= 0xFF5B && cp <= 0xFF65);
}

// Letters outside ASCII: everything that is not a known symbol, mark or private-use block.
static bool uni_alpha(uint32_t cp) {
    if (cp < 0xC0) return cp == 0xAA || cp == 0xB5 || cp == 0xBA;
    if (cp == 0xD7 || cp == 0xF7) return false;
    if (cp >= 0x300 && cp <= 0x36F) return false;
    if (cp >= 0x2000 && cp <= 0x2BFF) return false;
    if (cp >= 0x3000 && cp <= 0x303F) return false;
    if (cp >= 0xD800 && cp <= 0xF8FF) return false;
    if (cp >= 0xFE00 && cp <= 0xFE0F) return false;
    if (cp >= 0xFF00 && cp <= 0xFF20) return false;
    if (cp >= 0x1F000 && cp <= 0x1FAFF) return false;
    return true;
}

static uint8_t ascii_class[128];

static void init_ascii(void) {
    for (int c = 0; c < 128; c++) {
        uint8_t k = C_OTHER;
        if (c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x1F))
            k = C_WS;
        else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
            k = C_ALPHA;
        else if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
                 (c >= 123 && c <= 126))
            k = C_PUNCT; // Python's string.punctuation
        ascii_class[c] = k;
    }
}

// ---- scratch ---------------------------------------------------------------------------

typedef struct qspan {
    uint32_t off, len; // bytes
    uint32_t cps;      // code points
    uint8_t flags;
} qspan;

enum {
    L_BULLET = 1,    // first non-space character is a bullet
    L_END_ELLIP = 2, // ends in "..." or U+2026 once trailing spaces are removed
    L_STOP = 4,      // last character is one of . ' " ! ?
    L_NONEMPTY = 8,  // has a non-space character
    W_ALPHA = 16,    // word has a letter
    W_STOP = 32,     // word is a Gopher stop word
};

typedef struct qslot {
    uint64_t key;
    uint32_t count, first, gen, pad;
} qslot;

struct anneal_quality_scratch {
    qspan *words, *lines, *paras;
    size_t words_cap, lines_cap, paras_cap;
    uint64_t *whash, *wcum, *ghash; // per word: hash, code points before it, n-gram hash
    size_t wh_cap;
    qslot *tab;
    size_t tab_cap;
    uint32_t gen;
};

anneal_quality_scratch *anneal_quality_scratch_new(void) {
    return anneal_calloc(1, sizeof(anneal_quality_scratch));
}

void anneal_quality_scratch_free(anneal_quality_scratch *s) {
    if (!s) return;
    anneal_free(s->words);
    anneal_free(s->lines);
    anneal_free(s->paras);
    anneal_free(s->whash);
    anneal_free(s->wcum);
    anneal_free(s->ghash);
    anneal_free(s->tab);
    anneal_free(s);
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *q = anneal_realloc_array(*p, n, elem);
    if (!q) return false;
    *p = q;
    *cap = n;
    return true;
}

static bool push_span(void **arr, size_t *cap, size_t *n, qspan sp) {
    if (*n == *cap && !grow(arr, cap, *n + 1, sizeof(qspan))) return false;
    ((qspan *)*arr)[(*n)++] = sp;
    return true;
}

// Starts a fresh set/counter for `items` keys: the generation stamp empties it in O(1).
static bool tab_begin(anneal_quality_scratch *s, size_t items) {
    size_t need = 64;
    while (need < items * 2)
        need *= 2;
    if (need > s->tab_cap) {
        qslot *t = anneal_calloc(need, sizeof(qslot));
        if (!t) return false;
        anneal_free(s->tab);
        s->tab = t;
        s->tab_cap = need;
        s->gen = 0;
    }
    if (++s->gen == 0) {
        memset(s->tab, 0, s->tab_cap * sizeof(qslot));
        s->gen = 1;
    }
    return true;
}

// Finds or adds `key` (size is at most half the table, so probing ends). Sets *found.
static qslot *tab_get(anneal_quality_scratch *s, uint64_t key, uint32_t pos, bool *found) {
    size_t mask = s->tab_cap - 1, i = (size_t)(key ^ (key >> 32)) & mask;
    for (;;) {
        qslot *e = &s->tab[i];
        if (e->gen != s->gen) {
            e->gen = s->gen;
            e->key = key;
            e->count = 0;
            e->first = pos;
            *found = false;
            return e;
        }
        if (e->key == key) {
            *found = true;
            return e;
        }
        i = (i + 1) & mask;
    }
}

// ---- the scan ----------------------------------------------------------------------------

typedef struct qstats {
    size_t chars, newlines, hashes, ellipses, tokens;
    size_t n_words, alpha_words, stop_words;
    uint64_t word_chars;
    size_t n_lines, n_words_arr, n_paras;
} qstats;

static bool is_stop_word(const char *w, uint32_t n) {
    switch (n) {
    case 2:
        return (w[0] == 'b' && w[1] == 'e') || (w[0] == 't' && w[1] == 'o') ||
               (w[0] == 'o' && w[1] == 'f');
    case 3:
        return memcmp(w, "the", 3) == 0 || memcmp(w, "and", 3) == 0;
    case 4:
        return memcmp(w, "that", 4) == 0 || memcmp(w, "have", 4) == 0 || memcmp(w, "with", 4) == 0;
    default:
        return false;
    }
}

// One pass over the bytes: code point count, newline, '#' and ellipsis counts, the table of
// lines (split at '\n', a '\r' before it dropped), paragraphs (the stripped text split at
// runs of two or more '\n') and words (whitespace tokens with surrounding punctuation
// stripped; tokens of punctuation only are not words).
static anneal_status scan(anneal_quality_scratch *s, const uint8_t *t, size_t len, qstats *st,
                          anneal_err *err) {
    memset(st, 0, sizeof *st);
    size_t nl = 0, nw = 0, np = 0;
    uint32_t cp_i = 0;
    // line state
    uint32_t line_off = 0, line_cp = 0;
    uint8_t lflags = 0;
    bool line_seen = false;
    uint32_t line_last_end; // byte end of the last non-space character in the line
    bool line_last_ellip = false;
    // token state
    bool in_tok = false, tok_alpha = false, tok_np = false;
    uint32_t np_off = 0, np_cp = 0, np_end = 0, np_end_cp = 0;
    // paragraph state
    bool doc_seen = false;
    uint32_t para_off = 0, para_cp = 0, run = 0, run_off = 0, run_cp = 0;
    uint32_t last_end = 0, last_end_cp = 0, pushed_cp = 0;
    size_t dots = 0;

    size_t i = 0;
    for (;;) {
        // Fast path: inside a word, on a line and in a paragraph already under way, a run of
        // ASCII letters, digits and controls changes nothing but positions and counts.
        if (i < len && in_tok && tok_np && line_seen && doc_seen && run == 0 && dots == 0 &&
            t[i] < 0x80 && !(ascii_class[t[i]] & (C_WS | C_PUNCT))) {
            size_t j = i;
            uint8_t acc = 0;
            while (j < len && t[j] < 0x80 && !(ascii_class[t[j]] & (C_WS | C_PUNCT)))
                acc |= ascii_class[t[j++]];
            uint32_t m = (uint32_t)(j - i);
            st->chars += m;
            cp_i += m;
            np_end = line_last_end = last_end = (uint32_t)j;
            np_end_cp = last_end_cp = cp_i;
            tok_alpha = tok_alpha || (acc & C_ALPHA);
            line_last_ellip = false;
            i = j;
            continue;
        }
        uint32_t cp;
        size_t k;
        uint8_t cls;
        bool end = i >= len;
        if (end) {
            cp = '\n';
            k = 0;
            cls = C_WS;
        } else if (t[i] < 0x80) {
            cp = t[i];
            k = 1;
            cls = ascii_class[cp];
        } else {
            k = anneal_utf8_decode(t + i, len - i, &cp);
            if (k == 0) {
                k = 1; // an invalid byte is one character of no class
                cp = 0xFFFD;
                cls = C_OTHER;
            } else {
                cls = uni_space(cp)   ? C_WS
                      : uni_punct(cp) ? C_PUNCT
                      : uni_alpha(cp) ? C_ALPHA
                                      : C_OTHER;
            }
        }
        uint32_t pos = (uint32_t)i;
        if (cp == '.') {
            dots++;
        } else if (dots) {
            st->ellipses += dots / 3;
            dots = 0;
        }
        if (!end) {
            st->chars++;
            if (cp == '#')
                st->hashes++;
            else if (cp == 0x2026)
                st->ellipses++;
        }
        // words
        if (cls == C_WS) {
            if (in_tok) {
                st->tokens++;
                if (tok_np) {
                    uint8_t f = tok_alpha ? W_ALPHA : 0;
                    if (is_stop_word((const char *)t + np_off, np_end - np_off)) f |= W_STOP;
                    qspan w = {np_off, np_end - np_off, np_end_cp - np_cp, f};
                    if (!push_span((void **)&s->words, &s->words_cap, &nw, w)) goto nomem;
                }
                in_tok = false;
            }
        } else {
            if (!in_tok) {
                in_tok = true;
                tok_alpha = false;
                tok_np = false;
            }
            if (cls != C_PUNCT) {
                if (!tok_np) {
                    tok_np = true;
                    np_off = pos;
                    np_cp = cp_i;
                }
                np_end = pos + (uint32_t)k;
                np_end_cp = cp_i + 1;
                if (cls == C_ALPHA) tok_alpha = true;
            }
        }
        // lines
        if (cp == '\n') {
            uint32_t lend = pos, lcps = cp_i - line_cp;
            if (lend > line_off && t[lend - 1] == '\r') {
                lend--;
                lcps--;
            }
            if (lend > line_off) {
                uint8_t last = t[lend - 1];
                if (last == '.' || last == '\'' || last == '"' || last == '!' || last == '?')
                    lflags |= L_STOP;
            }
            if (line_seen) {
                lflags |= L_NONEMPTY;
                if (line_last_ellip) lflags |= L_END_ELLIP;
            }
            qspan l = {line_off, lend - line_off, lcps, lflags};
            if (!push_span((void **)&s->lines, &s->lines_cap, &nl, l)) goto nomem;
            if (!end) st->newlines++;
            line_off = pos + 1;
            line_cp = cp_i + 1;
            lflags = 0;
            line_seen = false;
        } else if (cls != C_WS) {
            if (!line_seen && (cp == 0x2022 || cp == '-')) lflags |= L_BULLET;
            line_seen = true;
            line_last_end = pos + (uint32_t)k;
            line_last_ellip =
                cp == 0x2026 || (cp == '.' && line_last_end >= line_off + 3 &&
                                 t[line_last_end - 2] == '.' && t[line_last_end - 3] == '.');
        }
        // paragraphs
        if (!end) {
            if (cp == '\n') {
                if (run++ == 0) {
                    run_off = pos;
                    run_cp = cp_i;
                }
            } else {
                if (run >= 2 && doc_seen) {
                    qspan p = {para_off, run_off - para_off, run_cp - para_cp, 0};
                    if (!push_span((void **)&s->paras, &s->paras_cap, &np, p)) goto nomem;
                    pushed_cp = para_cp;
                    para_off = pos;
                    para_cp = cp_i;
                }
                run = 0;
                if (cls != C_WS) {
                    if (!doc_seen) {
                        doc_seen = true;
                        para_off = pos;
                        para_cp = cp_i;
                    }
                    last_end = pos + (uint32_t)k;
                    last_end_cp = cp_i + 1;
                }
            }
        }
        if (end) break;
        i += k;
        cp_i++;
    }
    if (!doc_seen) {
        qspan p = {0, 0, 0, 0}; // "".strip() split gives one empty paragraph
        if (!push_span((void **)&s->paras, &s->paras_cap, &np, p)) goto nomem;
    } else if (para_off >= last_end && np > 0) {
        // The last separator lay in the trailing whitespace that strip() removes.
        qspan *p = &s->paras[np - 1];
        p->len = last_end - p->off;
        p->cps = last_end_cp - pushed_cp;
    } else {
        qspan p = {para_off, last_end - para_off, last_end_cp - para_cp, 0};
        if (!push_span((void **)&s->paras, &s->paras_cap, &np, p)) goto nomem;
    }
    for (size_t w = 0; w < nw; w++) {
        st->word_chars += s->words[w].cps;
        if (s->words[w].flags & W_ALPHA) st->alpha_words++;
        if (s->words[w].flags & W_STOP) st->stop_words++;
    }
    st->n_words = nw;
    st->n_lines = nl;
    st->n_paras = np;
    return ANNEAL_OK;
nomem:
    return anneal_err_set(err, ANNEAL_ERR_NOMEM, "quality filter: out of memory");
}

// ---- rules -------------------------------------------------------------------------------

static double frac(double num, double den) {
    return den > 0 ? num / den : 0.0;
}

// Counts spans whose bytes repeat an earlier span, and the code points in those repeats.
// Blank spans are skipped when skip_blank (see docs/data.md on duplicate lines).
static bool dup_spans(anneal_quality_scratch *s, const uint8_t *t, const qspan *sp, size_t n,
                      bool skip_blank, size_t *counted, size_t *dups, uint64_t *dup_chars) {
    *counted = 0;
    *dups = 0;
    *dup_chars = 0;
    if (!tab_begin(s, n)) return false;
    for (size_t i = 0; i < n; i++) {
        if (skip_blank && !(sp[i].flags & L_NONEMPTY)) continue;
        (*counted)++;
        bool found;
        qslot *e =
            tab_get(s, anneal_hash64(t + sp[i].off, sp[i].len) ^ sp[i].len, (uint32_t)i, &found);
        if (found) {
            (*dups)++;
            *dup_chars += sp[i].cps;
        }
        e->count++;
    }
    return true;
}

// n-gram hashes are built one word at a time: gh[i] holds the hash of the n words from i,
// and one step per word extends every n-gram to n + 1 words.
static inline uint64_t ngram_step(uint64_t h, uint64_t w) {
    h = (h ^ w) * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 29);
}

static void ngram_extend(uint64_t *gh, const uint64_t *wh, size_t nw, int n) {
    for (size_t i = 0; i + (size_t)n <= nw; i++)
        gh[i] = ngram_step(gh[i], wh[i + (size_t)n - 1]);
}

// " ".join(words[i:i+n]) length in code points.
static uint64_t ngram_chars(const uint64_t *cum, size_t i, int n) {
    return cum[i + (size_t)n] - cum[i] + (uint64_t)(n - 1);
}

typedef struct judge {
    const anneal_quality_config *cfg;
    anneal_quality_result *out;
} judge;

// Records a failure of rule r when enabled and `fails`; returns true when it did.
static bool fail(judge *j, anneal_quality_rule r, bool fails, double value) {
    if (!j->cfg->enabled[r] || !fails) return false;
    j->out->keep = false;
    j->out->rule = r;
    j->out->rule_name = rule_names[r];
    j->out->value = value;
    j->out->threshold = j->cfg->threshold[r];
    return true;
}

static bool any_enabled(const anneal_quality_config *c, int from, int to) {
    for (int r = from; r <= to; r++)
        if (c->enabled[r]) return true;
    return false;
}

static anneal_status repetition(anneal_quality_scratch *s, judge *j, const uint8_t *t,
                                const qstats *st, bool *failed, anneal_err *err) {
    const anneal_quality_config *c = j->cfg;
    const double *th = c->threshold;
    double chars = (double)st->chars;
    size_t counted, dups;
    uint64_t dchars;
    *failed = true;
    // Duplicate paragraphs, then duplicate lines: the fraction of spans and of characters.
    const struct {
        const qspan *spans;
        size_t n;
        bool lines;
        anneal_quality_rule frac_rule, char_rule;
    } kinds[2] = {
        {s->paras, st->n_paras, false, ANNEAL_QR_GOPHER_DUP_PARA_FRAC, ANNEAL_QR_GOPHER_DUP_PARA_CHAR_FRAC},
        {s->lines, st->n_lines, true, ANNEAL_QR_GOPHER_DUP_LINE_FRAC, ANNEAL_QR_GOPHER_DUP_LINE_CHAR_FRAC},
    };
    for (int k = 0; k < 2; k++) {
        if (!any_enabled(c, kinds[k].frac_rule, kinds[k].char_rule)) continue;
        if (!dup_spans(s, t, kinds[k].spans, kinds[k].n, kinds[k].lines, &counted, &dups, &dchars))
            goto nomem;
        double f = frac((double)dups, (double)counted);
        if (fail(j, kinds[k].frac_rule, f > th[kinds[k].frac_rule], f)) return ANNEAL_OK;
        f = frac((double)dchars, chars);
        if (fail(j, kinds[k].char_rule, f > th[kinds[k].char_rule], f)) return ANNEAL_OK;
    }
    if (!any_enabled(c, ANNEAL_QR_GOPHER_TOP_2GRAM, ANNEAL_QR_GOPHER_DUP_10GRAM)) {
        *failed = false;
        return ANNEAL_OK;
    }
    size_t nw = st->n_words;
    if (nw + 1 > s->wh_cap) {
        size_t cap = s->wh_cap ? s->wh_cap : 64;
        while (cap < nw + 1)
            cap *= 2;
        uint64_t *a = anneal_realloc_array(s->whash, cap, sizeof(uint64_t));
        if (a) s->whash = a;
        uint64_t *b = anneal_realloc_array(s->wcum, cap, sizeof(uint64_t));
        if (b) s->wcum = b;
        uint64_t *g = anneal_realloc_array(s->ghash, cap, sizeof(uint64_t));
        if (g) s->ghash = g;
        if (!a || !b || !g) goto nomem;
        s->wh_cap = cap;
    }
    uint64_t *wh = s->whash, *cum = s->wcum, *gh = s->ghash;
    cum[0] = 0;
    for (size_t w = 0; w < nw; w++) {
        const qspan *ws = &s->words[w];
        wh[w] = anneal_hash64(t + ws->off, ws->len) ^ ws->len;
        gh[w] = ngram_step(0x6A09E667F3BCC909ull, wh[w]);
        cum[w + 1] = cum[w] + ws->cps;
    }
    // Most frequent n-gram's characters (count x length): Counter.most_common(1) picks the
    // highest count, ties to the n-gram seen first. Only a repeated n-gram can fail.
    int longest_repeat = -1; // n when n-grams were seen to repeat, 0 when not, -1 unknown
    for (int n = 2; n <= 4; n++) {
        anneal_quality_rule r = (anneal_quality_rule)(ANNEAL_QR_GOPHER_TOP_2GRAM + (n - 2));
        if (longest_repeat == 0) break; // see below: no repeated (n-1)-gram, no repeated n-gram
        ngram_extend(gh, wh, nw, n);
        if (!c->enabled[r] || nw < (size_t)n) {
            longest_repeat = -1;
            continue;
        }
        size_t cnt = nw - (size_t)n + 1;
        if (!tab_begin(s, cnt)) goto nomem;
        uint32_t best_count = 0, best_first = 0;
        for (size_t i = 0; i < cnt; i++) {
            bool found;
            qslot *e = tab_get(s, gh[i], (uint32_t)i, &found);
            e->count++;
            if (e->count > best_count || (e->count == best_count && e->first < best_first)) {
                best_count = e->count;
                best_first = e->first;
            }
        }
        double f = best_count >= 2
                       ? frac((double)best_count * (double)ngram_chars(cum, best_first, n), chars)
                       : 0.0;
        if (fail(j, r, f > th[r], f)) return ANNEAL_OK;
        longest_repeat = best_count >= 2 ? n : 0;
    }
    // Characters in repeated n-grams, counting overlapping repeats once: after a repeat the
    // walk jumps past it.
    for (int n = 5; n <= 10; n++) {
        anneal_quality_rule r = (anneal_quality_rule)(ANNEAL_QR_GOPHER_DUP_5GRAM + (n - 5));
        // An n-gram that repeats contains (n-1)-grams that repeat: once a length is known to
        // have no repeat, no longer one has either, and every fraction left is 0.
        if (longest_repeat >= 0 && longest_repeat < n - 1) break;
        ngram_extend(gh, wh, nw, n);
        if (!c->enabled[r] || nw < (size_t)n) {
            longest_repeat = -1;
            continue;
        }
        size_t cnt = nw - (size_t)n + 1;
        if (!tab_begin(s, cnt)) goto nomem;
        uint64_t rep = 0;
        size_t i = 0;
        while (i < cnt) {
            bool found;
            tab_get(s, gh[i], (uint32_t)i, &found);
            if (found) {
                rep += ngram_chars(cum, i, n);
                i += (size_t)n;
            } else {
                i++;
            }
        }
        double f = frac((double)rep, chars);
        if (fail(j, r, f > th[r], f)) return ANNEAL_OK;
        longest_repeat = rep ? n : 0;
    }
    *failed = false;
    return ANNEAL_OK;
nomem:
    return anneal_err_set(err, ANNEAL_ERR_NOMEM, "quality filter: out of memory");
}

static bool gopher_quality(judge *j, const anneal_quality_scratch *s, const qstats *st) {
    const double *th = j->cfg->threshold;
    double nw = (double)st->n_words;
    if (fail(j, ANNEAL_QR_GOPHER_MIN_WORDS, nw < th[ANNEAL_QR_GOPHER_MIN_WORDS], nw) ||
        fail(j, ANNEAL_QR_GOPHER_MAX_WORDS, nw > th[ANNEAL_QR_GOPHER_MAX_WORDS], nw))
        return true;
    double avg = frac((double)st->word_chars, nw);
    if (fail(j, ANNEAL_QR_GOPHER_MIN_AVG_WORD_LEN, avg < th[ANNEAL_QR_GOPHER_MIN_AVG_WORD_LEN],
             avg) ||
        fail(j, ANNEAL_QR_GOPHER_MAX_AVG_WORD_LEN, avg > th[ANNEAL_QR_GOPHER_MAX_AVG_WORD_LEN],
             avg))
        return true;
    double f = frac((double)st->hashes, nw);
    if (fail(j, ANNEAL_QR_GOPHER_HASH_RATIO, f > th[ANNEAL_QR_GOPHER_HASH_RATIO], f)) return true;
    f = frac((double)st->ellipses, nw);
    if (fail(j, ANNEAL_QR_GOPHER_ELLIPSIS_RATIO, f > th[ANNEAL_QR_GOPHER_ELLIPSIS_RATIO], f))
        return true;
    // str.splitlines(): no empty last line after a final '\n', no lines for "".
    size_t nl = st->n_lines, bullets = 0, ellips = 0;
    if (nl > 0 && s->lines[nl - 1].len == 0) nl--;
    for (size_t i = 0; i < nl; i++) {
        bullets += (s->lines[i].flags & L_BULLET) != 0;
        ellips += (s->lines[i].flags & L_END_ELLIP) != 0;
    }
    f = frac((double)bullets, (double)nl);
    if (fail(j, ANNEAL_QR_GOPHER_BULLET_LINES, f > th[ANNEAL_QR_GOPHER_BULLET_LINES], f))
        return true;
    f = frac((double)ellips, (double)nl);
    if (fail(j, ANNEAL_QR_GOPHER_END_ELLIPSIS_LINES, f > th[ANNEAL_QR_GOPHER_END_ELLIPSIS_LINES],
             f))
        return true;
    f = st->n_words ? (double)st->alpha_words / nw : 1.0;
    if (fail(j, ANNEAL_QR_GOPHER_ALPHA_WORDS, f < th[ANNEAL_QR_GOPHER_ALPHA_WORDS], f)) return true;
    f = (double)st->stop_words;
    return fail(j, ANNEAL_QR_GOPHER_STOP_WORDS, f < th[ANNEAL_QR_GOPHER_STOP_WORDS], f);
}

static bool is_ws_byte(uint8_t b) {
    return b < 0x80 && ascii_class[b] == C_WS;
}

// Removes one trailing "[digits]", "[edit]" or "[citation needed]"; false when none.
static bool strip_citation(const uint8_t *t, uint32_t off, uint32_t *len) {
    uint32_t n = *len;
    if (n < 2 || t[off + n - 1] != ']') return false;
    uint32_t o = n - 1;
    while (o > 0 && t[off + o - 1] != '[' && t[off + o - 1] != ']')
        o--;
    if (o == 0 || t[off + o - 1] != '[') return false;
    const uint8_t *in = t + off + o;
    uint32_t m = n - 1 - o;
    bool ok = (m == 4 && memcmp(in, "edit", 4) == 0) ||
              (m == 15 && memcmp(in, "citation needed", 15) == 0);
    if (!ok) {
        ok = true;
        for (uint32_t q = 0; q < m; q++)
            ok = ok && in[q] >= '0' && in[q] <= '9';
    }
    if (!ok) return false;
    *len = o - 1;
    return true;
}

static inline uint8_t lower(uint8_t b) {
    return (uint8_t)(b >= 'A' && b <= 'Z' ? b + 32 : b);
}

// True when p[0..n) starts with `needle` (lowercase ASCII), ignoring ASCII case.
static bool ci_prefix(const uint8_t *p, size_t n, const char *needle, size_t m) {
    if (m > n) return false;
    for (size_t i = 0; i < m; i++)
        if (lower(p[i]) != (uint8_t)needle[i]) return false;
    return true;
}

enum { F_LOREM = 1, F_JS = 2, F_CURLY = 4, F_POLICY = 8 };

#define CI(p, n, lit) ci_prefix(p, n, lit, sizeof lit - 1)

// Byte classes for the C4 line pass.
enum { K_PLAIN = 0, K_WS, K_PHRASE, K_CURLY, K_STOP, K_CLOSER };
static uint8_t c4_class[256];

static void init_c4(void) {
    for (int b = 0; b < 256; b++) {
        uint8_t k = K_PLAIN;
        if (b < 0x80 && (b == ' ' || (b >= 9 && b <= 13) || (b >= 0x1C && b <= 0x1F)))
            k = K_WS;
        else if (strchr("lLjJtTpPuUcC", b) && b)
            k = K_PHRASE;
        else if (b == '{')
            k = K_CURLY;
        else if (b == '.' || b == '!' || b == '?')
            k = K_STOP;
        else if (b == '"' || b == '\'' || b == ')' || b == ']')
            k = K_CLOSER;
        c4_class[b] = k;
    }
}

static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void init_tables(void) {
    init_ascii();
    init_c4();
}

// Code points in p[0..n).
static uint32_t count_cps(const uint8_t *p, uint32_t n) {
    uint32_t c = 0;
    for (uint32_t i = 0; i < n; i++)
        c += (p[i] & 0xC0) != 0x80;
    return c;
}

// Sentence ends: a run of . ! ? followed (after closing quotes or brackets) by whitespace
// or the end of the line.
typedef struct c4_info {
    size_t tokens, sentences;
    bool too_long;
    unsigned flags;
} c4_info;

// One pass over a stripped line: whitespace tokens, whether one is longer than `max_word`
// code points (0: no limit), sentence ends, and which of C4's phrases occur (ASCII case
// ignored). Phrases are compared only where their first two letters occur.
static void c4_line(const uint8_t *p, uint32_t n, int max_word, c4_info *out) {
    unsigned f = 0;
    size_t tok = 0, sent = 0;
    bool in = false, longw = false, pend = false;
    uint32_t wb = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t k = c4_class[p[i]];
        if (k == K_PLAIN && in) {
            while (i + 1 < n && c4_class[p[i + 1]] == K_PLAIN)
                i++;
            pend = false;
            continue;
        }
        if (k == K_WS) {
            if (in && max_word > 0 && i - wb > (uint32_t)max_word &&
                count_cps(p + wb, i - wb) > (uint32_t)max_word)
                longw = true;
            in = false;
            sent += pend;
            pend = false;
            continue;
        }
        if (!in) {
            in = true;
            tok++;
            wb = i;
        }
        if (k == K_STOP) {
            pend = true;
            continue;
        }
        if (k != K_CLOSER) pend = false;
        if (k == K_CURLY) {
            f |= F_CURLY;
        } else if (k == K_PHRASE && i + 1 < n) {
            const uint8_t *q = p + i;
            size_t left = n - i;
            uint8_t c1 = lower(q[1]);
            switch (lower(q[0])) {
            case 'l':
                if (c1 == 'o' && CI(q, left, "lorem ipsum")) f |= F_LOREM;
                break;
            case 'j':
                if (c1 == 'a' && CI(q, left, "javascript")) f |= F_JS;
                break;
            case 't':
                if (c1 == 'e' && CI(q, left, "terms of use")) f |= F_POLICY;
                break;
            case 'p':
                if (c1 == 'r' && CI(q, left, "privacy policy")) f |= F_POLICY;
                break;
            case 'u':
                if (c1 == 's' && (CI(q, left, "uses cookies") || CI(q, left, "use of cookies") ||
                                  CI(q, left, "use cookies")))
                    f |= F_POLICY;
                break;
            case 'c':
                if (c1 == 'o' && CI(q, left, "cookie policy")) f |= F_POLICY;
                break;
            default:
                break;
            }
        }
    }
    if (in && max_word > 0 && n - wb > (uint32_t)max_word &&
        count_cps(p + wb, n - wb) > (uint32_t)max_word)
        longw = true;
    sent += pend;
    out->tokens = tok;
    out->sentences = sent ? sent : 1;
    out->too_long = longw;
    out->flags = f;
}

// Sentence ends in a line: a run of . ! ? followed (after closing quotes or brackets) by
// a space or the end of the line. A kept line counts at least one sentence.
static size_t count_sentences(const uint8_t *t, uint32_t off, uint32_t len) {
    size_t n = 0;
    uint32_t i = 0;
    while (i < len) {
        uint8_t b = t[off + i];
        if (b == '.' || b == '!' || b == '?') {
            while (i < len && (t[off + i] == '.' || t[off + i] == '!' || t[off + i] == '?'))
                i++;
            while (i < len && (t[off + i] == '"' || t[off + i] == '\'' || t[off + i] == ')' ||
                               t[off + i] == ']'))
                i++;
            if (i == len || is_ws_byte(t[off + i])) n++;
        } else {
            i++;
        }
    }
    return n ? n : 1;
}

static anneal_status c4(anneal_quality_scratch *s, judge *j, const uint8_t *t, const qstats *st,
                        bool *failed, anneal_err *err) {
    const anneal_quality_config *c = j->cfg;
    *failed = false;
    if (!any_enabled(c, ANNEAL_QR_C4_LOREM_IPSUM, ANNEAL_QR_C4_MIN_SENTENCES)) return ANNEAL_OK;
    size_t sentences = 0;
    for (size_t li = 0; li < st->n_lines; li++) {
        uint32_t off = s->lines[li].off, len = s->lines[li].len;
        // strip() (ASCII and the bytes of U+00A0/U+3000 are rare enough to leave).
        while (len && is_ws_byte(t[off])) {
            off++;
            len--;
        }
        while (len && is_ws_byte(t[off + len - 1]))
            len--;
        if (!len) continue;
        c4_info info;
        c4_line(t + off, len, c->c4_max_word_length, &info);
        if (info.too_long) continue;
        uint32_t clen = len;
        while (strip_citation(t, off, &clen)) {
        }
        if (clen == 0) continue;
        uint8_t last = t[off + clen - 1];
        bool term = last == '.' || last == '?' || last == '!' || last == '"' || last == '\'';
        bool ell = clen >= 3 && memcmp(t + off + clen - 3, "...", 3) == 0;
        if (!term || ell) continue;
        if (info.tokens < (size_t)c->c4_min_words_per_line) continue;
        if (fail(j, ANNEAL_QR_C4_LOREM_IPSUM, (info.flags & F_LOREM) != 0, 1.0)) {
            *failed = true;
            return ANNEAL_OK;
        }
        if (c->enabled[ANNEAL_QR_C4_MIN_SENTENCES] && (info.flags & F_JS)) continue;
        if (fail(j, ANNEAL_QR_C4_CURLY_BRACE, (info.flags & F_CURLY) != 0, 1.0)) {
            *failed = true;
            return ANNEAL_OK;
        }
        if (info.flags & F_POLICY) continue;
        sentences += clen == len ? info.sentences : count_sentences(t, off, clen);
    }
    double v = (double)sentences;
    *failed = fail(j, ANNEAL_QR_C4_MIN_SENTENCES, v < c->threshold[ANNEAL_QR_C4_MIN_SENTENCES], v);
    return ANNEAL_OK;
}

static anneal_status fineweb(anneal_quality_scratch *s, judge *j, const uint8_t *t,
                             const qstats *st, anneal_err *err) {
    const anneal_quality_config *c = j->cfg;
    const double *th = c->threshold;
    size_t nl = st->n_lines, stop = 0, shortl = 0; // str.split("\n"): newlines + 1 lines
    for (size_t i = 0; i < nl; i++) {
        stop += (s->lines[i].flags & L_STOP) != 0;
        shortl += s->lines[i].cps <= (uint32_t)c->fineweb_short_line_length;
    }
    double f = frac((double)stop, (double)nl);
    bool excl = f == 0 && c->fineweb_line_punct_exclude_zero;
    if (fail(j, ANNEAL_QR_FINEWEB_LINE_PUNCT, f <= th[ANNEAL_QR_FINEWEB_LINE_PUNCT] && !excl, f))
        return ANNEAL_OK;
    f = frac((double)shortl, (double)nl);
    if (fail(j, ANNEAL_QR_FINEWEB_SHORT_LINES, f >= th[ANNEAL_QR_FINEWEB_SHORT_LINES], f))
        return ANNEAL_OK;
    if (c->enabled[ANNEAL_QR_FINEWEB_CHAR_DUP]) {
        size_t counted, dups;
        uint64_t dchars;
        if (!dup_spans(s, t, s->lines, nl, true, &counted, &dups, &dchars))
            return anneal_err_set(err, ANNEAL_ERR_NOMEM, "quality filter: out of memory");
        f = frac((double)dchars, (double)(st->chars - st->newlines));
        if (fail(j, ANNEAL_QR_FINEWEB_CHAR_DUP, f >= th[ANNEAL_QR_FINEWEB_CHAR_DUP], f))
            return ANNEAL_OK;
    }
    f = st->tokens ? (double)st->newlines / (double)st->tokens : (st->newlines ? HUGE_VAL : 0.0);
    fail(j, ANNEAL_QR_FINEWEB_LIST_RATIO, f > th[ANNEAL_QR_FINEWEB_LIST_RATIO], f);
    return ANNEAL_OK;
}

anneal_status anneal_quality_check(anneal_quality_scratch *s, const anneal_quality_config *cfg,
                                   const char *text, size_t len, anneal_quality_result *out,
                                   anneal_err *err) {
    out->keep = true;
    out->rule = ANNEAL_QR_NONE;
    out->rule_name = "";
    out->value = 0;
    out->threshold = 0;
    if (!s || !cfg || (!text && len))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "quality filter: NULL argument");
    if (len >= UINT32_MAX)
        return anneal_err_set(err, ANNEAL_ERR_LIMIT,
                              "quality filter: document of %zu bytes exceeds 4 GiB", len);
    pthread_once(&tables_once, init_tables);
    const uint8_t *t = (const uint8_t *)(text ? text : "");
    qstats st;
    anneal_status rc = scan(s, t, len, &st, err);
    if (rc) return rc;
    judge j = {cfg, out};
    bool failed;
    rc = repetition(s, &j, t, &st, &failed, err);
    if (rc || failed) return rc;
    if (gopher_quality(&j, s, &st)) return ANNEAL_OK;
    rc = c4(s, &j, t, &st, &failed, err);
    if (rc || failed) return rc;
    return fineweb(s, &j, t, &st, err);
}
