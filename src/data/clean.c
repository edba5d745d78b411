// Text cleaning for the data pipeline: invalid UTF-8, control characters, NFKC, leftover
// HTML, whitespace and boilerplate lines, in an order that makes the result idempotent.
#include "anneal/data.h"
#include "data/html.h"

#include <jansson.h>
#include <utf8proc.h>

// Boilerplate found on web pages; matched as substrings of a line, ASCII case ignored.
static const char *const default_patterns[] = {
    "cookie policy",
    "cookie settings",
    "use cookies",
    "uses cookies",
    "use of cookies",
    "accept cookies",
    "accept all cookies",
    "enable javascript",
    "javascript is disabled",
    "javascript is required",
    "requires javascript",
    "javascript must be enabled",
    "all rights reserved",
    "terms of use",
    "terms of service",
    "terms and conditions",
    "privacy policy",
    "click here",
    "subscribe to our newsletter",
    "sign up for our newsletter",
    "share this",
    "share on facebook",
    "share on twitter",
    "skip to content",
    "skip to main content",
    "log in to reply",
};

#define N_DEFAULT (sizeof default_patterns / sizeof default_patterns[0])
#define MAX_LEN ((size_t)1 << 30)

struct anneal_clean_scratch {
    char *buf[2];
    size_t cap[2];
    int32_t *u32;
    size_t u32_cap;
    // Boilerplate matcher for the last pattern list seen (hash of the list).
    uint64_t bp_hash;
    bool bp_ready;
    uint64_t first_mask[256]; // patterns starting with this lower-case byte
    uint8_t pair_bits[8192];  // first two bytes of some pattern, in any ASCII case
    char pats[ANNEAL_CLEAN_MAX_PATTERNS][ANNEAL_CLEAN_PATTERN_MAX];
    size_t plen[ANNEAL_CLEAN_MAX_PATTERNS];
    size_t npat;
};

// Tables are constant so scratches in different threads share them without a race.
static const uint8_t ws_class[256] = {[' '] = 1, ['\t'] = 1, ['\r'] = 2, ['\n'] = 2};

static inline uint8_t lower(uint8_t c) {
    return (uint8_t)((unsigned)c - 'A' < 26u ? c + 32 : c);
}

static void set_pattern(anneal_clean_config *c, size_t i, const char *p) {
    size_t n = strlen(p);
    for (size_t k = 0; k < n; k++)
        c->patterns[i][k] = (char)((p[k] >= 'A' && p[k] <= 'Z') ? p[k] + 32 : p[k]);
    c->patterns[i][n] = 0;
}

anneal_clean_config anneal_clean_config_default(void) {
    anneal_clean_config c;
    memset(&c, 0, sizeof c);
    c.nfkc = c.control = c.whitespace = c.html = c.boilerplate = true;
    c.boilerplate_max_line = 300;
    c.n_patterns = N_DEFAULT;
    for (size_t i = 0; i < N_DEFAULT; i++)
        set_pattern(&c, i, default_patterns[i]);
    return c;
}

// ---- configuration ------------------------------------------------------------------------

static anneal_status parse_patterns(const char *what, const char *key, json_t *v,
                                    anneal_clean_config *c, anneal_err *err) {
    if (!json_is_array(v))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "%s: key '%s': expected an array of strings", what, key);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        if (!json_is_string(e))
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                  "%s: key '%s': item %zu is not a string", what, key, i);
        size_t n = json_string_length(e);
        const char *s = json_string_value(e);
        if (n < 2 || n >= ANNEAL_CLEAN_PATTERN_MAX || memchr(s, 0, n) || memchr(s, '\n', n))
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                  "%s: key '%s': item %zu must be 2 to %d bytes on one line", what,
                                  key, i, ANNEAL_CLEAN_PATTERN_MAX - 1);
        if (c->n_patterns >= ANNEAL_CLEAN_MAX_PATTERNS)
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                  "%s: key '%s': more than %d patterns", what, key,
                                  ANNEAL_CLEAN_MAX_PATTERNS);
        set_pattern(c, c->n_patterns++, s);
    }
    return ANNEAL_OK;
}

anneal_status anneal_clean_config_parse(const char *json, size_t len, const char *what,
                                        anneal_clean_config *cfg, anneal_err *err) {
    if (!what) what = "clean config";
    json_t *root = anneal_json_parse(json, len, what, err);
    if (!root) return err ? err->status : ANNEAL_ERR_FORMAT;
    anneal_status st = ANNEAL_OK;
    anneal_clean_config c = *cfg; // applied only when every key is good
    if (!json_is_object(root)) {
        st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s: expected a JSON object", what);
        goto done;
    }
    // The replacing list first, so "boilerplate_extra" appends to it whatever the key order.
    json_t *pv = json_object_get(root, "boilerplate_patterns");
    if (pv) {
        c.n_patterns = 0;
        c.boilerplate = true;
        st = parse_patterns(what, "boilerplate_patterns", pv, &c, err);
        if (st) goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        bool *flag = NULL;
        if (strcmp(key, "nfkc") == 0)
            flag = &c.nfkc;
        else if (strcmp(key, "control") == 0)
            flag = &c.control;
        else if (strcmp(key, "whitespace") == 0)
            flag = &c.whitespace;
        else if (strcmp(key, "html") == 0)
            flag = &c.html;
        else if (strcmp(key, "boilerplate") == 0)
            flag = &c.boilerplate;
        if (flag) {
            if (!json_is_boolean(v)) {
                st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                    "%s: key '%s': expected true or false", what, key);
                goto done;
            }
            *flag = json_is_true(v);
        } else if (strcmp(key, "boilerplate_patterns") == 0) {
            continue;
        } else if (strcmp(key, "boilerplate_extra") == 0) {
            st = parse_patterns(what, key, v, &c, err);
            if (st) goto done;
        } else if (strcmp(key, "boilerplate_max_line") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > 1000000000) {
                st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                    "%s: key '%s': expected an integer from 0 to 1000000000", what,
                                    key);
                goto done;
            }
            c.boilerplate_max_line = (size_t)json_integer_value(v);
        } else {
            st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s: unknown key '%s'", what, key);
            goto done;
        }
    }
    *cfg = c;
done:
    json_decref(root);
    return st;
}

// ---- scratch ------------------------------------------------------------------------------

anneal_clean_scratch *anneal_clean_scratch_new(void) {
    return anneal_calloc(1, sizeof(anneal_clean_scratch));
}

void anneal_clean_scratch_free(anneal_clean_scratch *s) {
    if (!s) return;
    anneal_free(s->buf[0]);
    anneal_free(s->buf[1]);
    anneal_free(s->u32);
    anneal_free(s);
}

static bool reserve(anneal_clean_scratch *s, int k, size_t need) {
    if (need <= s->cap[k]) return true;
    size_t nc = s->cap[k] ? s->cap[k] : 4096;
    while (nc < need)
        nc *= 2;
    char *p = anneal_realloc(s->buf[k], nc);
    if (!p) return false;
    s->buf[k] = p;
    s->cap[k] = nc;
    return true;
}

// The stages read `in` (the input text or one scratch buffer) and write into the other
// buffer; `k` names that buffer.
typedef struct text {
    const char *p;
    size_t n;
    int k; // scratch buffer holding p, -1 for the caller's text
} text;

static int other(const text *t) {
    return t->k == 0 ? 1 : 0;
}

// ---- stage 1: invalid UTF-8 and control characters -----------------------------------------

static bool is_ctrl_ascii(uint8_t c) {
    return (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7F;
}

static anneal_status stage_bytes(anneal_clean_scratch *s, const anneal_clean_config *cfg, text *t,
                                 anneal_clean_stats *st) {
    const uint8_t *p = (const uint8_t *)t->p;
    size_t n = t->n, i = 0;
    // Fast scan: most text needs nothing here.
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t v;
            memcpy(&v, p + i, 8);
            // No byte >= 0x80 and none < 0x20 (x - 0x20 borrows into the top bit) and no 0x7F.
            uint64_t lo = (v - 0x2020202020202020ull) & ~v;
            uint64_t del = ((v ^ 0x7F7F7F7F7F7F7F7Full) - 0x0101010101010101ull) &
                           ~(v ^ 0x7F7F7F7F7F7F7F7Full);
            if (((v | lo | del) & 0x8080808080808080ull) == 0) {
                i += 8;
                continue;
            }
        }
        uint8_t c = p[i];
        if (c < 0x80) {
            if (cfg->control && is_ctrl_ascii(c)) break;
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = anneal_utf8_decode(p + i, n - i, &cp);
        if (k == 0 || (cfg->control && cp >= 0x80 && cp <= 0x9F)) break;
        i += k;
    }
    if (i == n) return ANNEAL_OK;
    int o = other(t);
    size_t need;
    if (!anneal_mul_ok(n, 3, &need) || !reserve(s, o, need + 1)) return ANNEAL_ERR_NOMEM;
    char *out = s->buf[o];
    memcpy(out, p, i);
    size_t ol = i;
    while (i < n) {
        uint8_t c = p[i];
        if (c < 0x80) {
            if (cfg->control && is_ctrl_ascii(c))
                st->control_removed++;
            else
                out[ol++] = (char)c;
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = anneal_utf8_decode(p + i, n - i, &cp);
        if (k == 0) {
            memcpy(out + ol, "\xEF\xBF\xBD", 3);
            ol += 3;
            st->invalid_utf8++;
            i++;
            continue;
        }
        if (cfg->control && cp >= 0x80 && cp <= 0x9F)
            st->control_removed++;
        else {
            memcpy(out + ol, p + i, k);
            ol += k;
        }
        i += k;
    }
    t->p = out;
    t->n = ol;
    t->k = o;
    return ANNEAL_OK;
}

// ---- stage 2: NFKC ------------------------------------------------------------------------

static const utf8proc_option_t NFKC_OPTS = UTF8PROC_STABLE | UTF8PROC_COMPAT | UTF8PROC_COMPOSE;

// NFKC of valid UTF-8 s[0..n) into a scratch array; returns the byte length of the result
// (in (char *)s->u32), or -1 out of memory.
static ptrdiff_t nfkc_piece(anneal_clean_scratch *s, const char *p, size_t n) {
    for (;;) {
        utf8proc_ssize_t r = utf8proc_decompose((const utf8proc_uint8_t *)p, (utf8proc_ssize_t)n,
                                                s->u32, (utf8proc_ssize_t)s->u32_cap, NFKC_OPTS);
        if (r < 0) return -1;
        if ((size_t)r <= s->u32_cap) return utf8proc_reencode(s->u32, r, NFKC_OPTS);
        size_t nc = s->u32_cap ? s->u32_cap : 256;
        while (nc < (size_t)r)
            nc *= 2;
        int32_t *q = anneal_realloc_array(s->u32, nc, sizeof *q);
        if (!q) return -1;
        s->u32 = q;
        s->u32_cap = nc;
    }
}

static size_t count_cps(const char *p, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((uint8_t)p[i] & 0xC0) != 0x80;
    return c;
}

static anneal_status stage_nfkc(anneal_clean_scratch *s, text *t, anneal_clean_stats *st) {
    const char *p = t->p;
    size_t n = t->n, i = 0;
    while (i < n && (uint8_t)p[i] < 0x80)
        i++;
    if (i == n) return ANNEAL_OK; // ASCII is already NFKC
    int o = other(t);
    // NFKC can grow text (up to 18 code points for one); start at n + 1/4 and grow.
    if (!reserve(s, o, n + n / 4 + 64)) return ANNEAL_ERR_NOMEM;
    size_t ol = 0;
    size_t copied = 0; // p[0..copied) is in the output
    bool changed = false;
    while (i < n) {
        // p[i] is non-ASCII. The segment starts at the ASCII character before it (a base a
        // combining mark may compose with) and runs to the next ASCII byte: ASCII characters
        // are starters that never compose with what precedes them.
        size_t a = i > copied ? i - 1 : i;
        size_t b = i;
        while (b < n && (uint8_t)p[b] >= 0x80)
            b++;
        // Copy the ASCII run before the segment.
        if (!reserve(s, o, ol + (a - copied) + 1)) return ANNEAL_ERR_NOMEM;
        memcpy(s->buf[o] + ol, p + copied, a - copied);
        ol += a - copied;
        ptrdiff_t r = nfkc_piece(s, p + a, b - a);
        if (r < 0) return ANNEAL_ERR_NOMEM;
        const char *res = (const char *)s->u32;
        if ((size_t)r != b - a || memcmp(res, p + a, b - a) != 0) {
            changed = true;
            st->chars_normalized += count_cps(p + i, b - i);
        }
        if (!reserve(s, o, ol + (size_t)r + 1)) return ANNEAL_ERR_NOMEM;
        memcpy(s->buf[o] + ol, res, (size_t)r);
        ol += (size_t)r;
        copied = b;
        i = b;
        while (i < n && (uint8_t)p[i] < 0x80)
            i++;
    }
    if (!changed) return ANNEAL_OK;
    if (!reserve(s, o, ol + (n - copied) + 1)) return ANNEAL_ERR_NOMEM;
    memcpy(s->buf[o] + ol, p + copied, n - copied);
    ol += n - copied;
    t->p = s->buf[o];
    t->n = ol;
    t->k = o;
    return ANNEAL_OK;
}

// ---- stage 3: HTML remnants ---------------------------------------------------------------

typedef struct hout {
    anneal_clean_scratch *s;
    int k;
    size_t len;
    bool nfkc, nomem;
    uint64_t removed;
} hout;

static void hpush(hout *h, char c);

static void hpush_cp(hout *h, uint32_t cp) {
    char b[4];
    size_t n = anneal_utf8_encode(cp, b);
    if (h->nfkc && cp >= 0x80) {
        // The decoded character is normalized now, so NFKC cannot turn it into markup later.
        ptrdiff_t r = nfkc_piece(h->s, b, n);
        if (r < 0) {
            h->nomem = true;
            return;
        }
        char tmp[128];
        if ((size_t)r <= sizeof tmp) {
            memcpy(tmp, h->s->u32, (size_t)r);
            for (ptrdiff_t i = 0; i < r; i++)
                hpush(h, tmp[i]);
            return;
        }
    }
    for (size_t i = 0; i < n; i++)
        hpush(h, b[i]);
}

// A comment "<!-- ... -->" ending at the tail (at most 4 KiB): removed.
static bool tail_comment(hout *h) {
    char *o = h->s->buf[h->k];
    size_t L = h->len;
    if (L < 7 || memcmp(o + L - 3, "-->", 3) != 0) return false;
    size_t lo = L > 4096 ? L - 4096 : 0;
    for (size_t j = L - 7 + 1; j-- > lo;) {
        if (memcmp(o + j, "<!--", 4) == 0) {
            h->len = j;
            h->removed++;
            return true;
        }
    }
    return false;
}

// A tag of a known element ending at the tail ('<', optional '/', its name, then '>', '/'
// or a space or tab and attributes without '<' or a newline, 256 bytes at most): removed,
// block elements leave a newline.
static void tail_tag(hout *h) {
    if (tail_comment(h)) return;
    char *o = h->s->buf[h->k];
    size_t L = h->len;
    size_t lo = L > 256 ? L - 256 : 0;
    size_t j = L - 1;
    while (j > lo) {
        j--;
        if (o[j] == '<') break;
        if (o[j] == '\n' || o[j] == '>') return;
    }
    if (o[j] != '<') return;
    size_t q = j + 1;
    if (q < L && o[q] == '/') q++;
    size_t ns = q;
    while (q < L && ((o[q] >= 'a' && o[q] <= 'z') || (o[q] >= 'A' && o[q] <= 'Z') ||
                     (q > ns && o[q] >= '0' && o[q] <= '9')))
        q++;
    if (q == ns || !(o[q] == '>' || o[q] == '/' || o[q] == ' ' || o[q] == '\t')) return;
    int kind = html_tag_kind(o + ns, q - ns);
    if (!kind) return;
    h->len = j;
    h->removed++;
    if (kind >= 2) hpush(h, '\n');
}

// A character reference ending at the tail: decoded.
static void tail_ref(hout *h) {
    char *o = h->s->buf[h->k];
    size_t L = h->len;
    size_t lo = L > 35 ? L - 35 : 0;
    size_t j = L - 1;
    while (j > lo) {
        j--;
        char c = o[j];
        if (c == '&') break;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '#'))
            return;
    }
    if (o[j] != '&') return;
    uint32_t cp = html_ref_decode(o + j + 1, L - 1 - (j + 1));
    if (!cp) return;
    h->len = j;
    h->removed++;
    hpush_cp(h, cp);
}

static void hpush(hout *h, char c) {
    if (h->nomem) return;
    if (!reserve(h->s, h->k, h->len + 2)) {
        h->nomem = true;
        return;
    }
    h->s->buf[h->k][h->len++] = c;
    if (c == '>')
        tail_tag(h);
    else if (c == ';')
        tail_ref(h);
}

static anneal_status stage_html(anneal_clean_scratch *s, bool nfkc, text *t,
                                anneal_clean_stats *st) {
    if (!memchr(t->p, '<', t->n) && !memchr(t->p, '&', t->n)) return ANNEAL_OK;
    int o = other(t);
    if (!reserve(s, o, t->n + 64)) return ANNEAL_ERR_NOMEM;
    hout h = {.s = s, .k = o, .nfkc = nfkc};
    const char *p = t->p;
    size_t n = t->n, i = 0;
    while (i < n) {
        // Bytes other than '>' and ';' cannot complete markup: copy them in runs.
        size_t j = i;
        while (j < n && p[j] != '>' && p[j] != ';')
            j++;
        if (!reserve(s, o, h.len + (j - i) + 2)) return ANNEAL_ERR_NOMEM;
        memcpy(s->buf[o] + h.len, p + i, j - i);
        h.len += j - i;
        if (j < n) hpush(&h, p[j]);
        if (h.nomem) return ANNEAL_ERR_NOMEM;
        i = j + 1;
    }
    if (h.removed == 0) return ANNEAL_OK;
    st->html_removed += h.removed;
    t->p = s->buf[o];
    t->n = h.len;
    t->k = o;
    return ANNEAL_OK;
}

// ---- stage 4: whitespace ------------------------------------------------------------------

static anneal_status stage_ws(anneal_clean_scratch *s, text *t, anneal_clean_stats *st) {
    int o = other(t);
    if (!reserve(s, o, t->n + 1)) return ANNEAL_ERR_NOMEM;
    char *out = s->buf[o];
    const uint8_t *p = (const uint8_t *)t->p;
    size_t n = t->n, ol = 0;
    uint64_t in_ws = 0, kept = 0;
    size_t run = 0;             // spaces and tabs pending since the last character or newline
    bool run_is_space = false;  // the pending run is exactly one ' '
    size_t nl = 0, nl_real = 0; // pending newlines, and how many were '\n' bytes
    bool started = false, pending = true;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        uint8_t k = ws_class[c];
        if (__builtin_expect(k == 0, 1)) {
            if (pending) {
                if (started) {
                    size_t emit = nl > 2 ? 2 : nl;
                    for (size_t j = 0; j < emit; j++)
                        out[ol++] = '\n';
                    kept += emit < nl_real ? emit : nl_real;
                    if (run > 0) {
                        out[ol++] = ' ';
                        kept += run == 1 && run_is_space;
                    }
                }
                started = true;
                pending = false;
                nl = nl_real = run = 0;
            }
            out[ol++] = (char)c;
            continue;
        }
        in_ws++;
        pending = true;
        if (k == 1) {
            run_is_space = run == 0 && c == ' ';
            run++;
        } else {
            if (c == '\r' && i + 1 < n && p[i + 1] == '\n') continue; // CRLF: the LF follows
            nl++;
            nl_real += c == '\n';
            run = 0;
        }
    }
    uint64_t fixed = in_ws - kept;
    if (fixed == 0) return ANNEAL_OK;
    st->whitespace_fixed += fixed;
    t->p = out;
    t->n = ol;
    t->k = o;
    return ANNEAL_OK;
}

// ---- stage 5: boilerplate lines -----------------------------------------------------------

static void bp_compile(anneal_clean_scratch *s, const anneal_clean_config *cfg) {
    size_t np =
        cfg->n_patterns > ANNEAL_CLEAN_MAX_PATTERNS ? ANNEAL_CLEAN_MAX_PATTERNS : cfg->n_patterns;
    uint64_t h = np;
    for (size_t i = 0; i < np; i++) {
        size_t n = strnlen(cfg->patterns[i], ANNEAL_CLEAN_PATTERN_MAX - 1);
        h = h * 0x9E3779B97F4A7C15ull ^ anneal_hash64(cfg->patterns[i], n);
    }
    if (s->bp_ready && s->bp_hash == h) return;
    memset(s->first_mask, 0, sizeof s->first_mask);
    memset(s->pair_bits, 0, sizeof s->pair_bits);
    s->npat = 0;
    for (size_t i = 0; i < np; i++) {
        size_t n = strnlen(cfg->patterns[i], ANNEAL_CLEAN_PATTERN_MAX - 1);
        if (n < 2) continue;
        size_t k = s->npat++;
        for (size_t j = 0; j < n; j++)
            s->pats[k][j] = (char)lower((uint8_t)cfg->patterns[i][j]);
        s->plen[k] = n;
        uint8_t a = (uint8_t)s->pats[k][0], b = (uint8_t)s->pats[k][1];
        s->first_mask[a] |= 1ull << k;
        for (int v = 0; v < 4; v++) {
            unsigned x = (v & 1) && a >= 'a' && a <= 'z' ? a - 32u : a;
            unsigned y = (v & 2) && b >= 'a' && b <= 'z' ? b - 32u : b;
            unsigned pair = x << 8 | y;
            s->pair_bits[pair >> 3] |= (uint8_t)(1u << (pair & 7));
        }
    }
    s->bp_hash = h;
    s->bp_ready = true;
}

static bool bp_match(const anneal_clean_scratch *s, const uint8_t *l, size_t n) {
    for (size_t i = 0; i + 1 < n; i++) {
        unsigned pair = (unsigned)l[i] << 8 | l[i + 1];
        if (__builtin_expect(!(s->pair_bits[pair >> 3] & (1u << (pair & 7))), 1)) continue;
        uint64_t m = s->first_mask[lower(l[i])];
        while (m) {
            int k = __builtin_ctzll(m);
            m &= m - 1;
            size_t pl = s->plen[k];
            if (pl > n - i) continue;
            size_t j = 2;
            while (j < pl && lower(l[i + j]) == (uint8_t)s->pats[k][j])
                j++;
            if (j == pl && lower(l[i + 1]) == (uint8_t)s->pats[k][1]) return true;
        }
    }
    return false;
}

static anneal_status stage_bp(anneal_clean_scratch *s, const anneal_clean_config *cfg, text *t,
                              anneal_clean_stats *st, bool *dropped) {
    bp_compile(s, cfg);
    *dropped = false;
    if (s->npat == 0) return ANNEAL_OK;
    const char *p = t->p;
    size_t n = t->n, max = cfg->boilerplate_max_line;
    int o = other(t);
    size_t ol = 0;
    bool any = false;
    for (size_t i = 0; i < n;) {
        const char *nlp = memchr(p + i, '\n', n - i);
        size_t e = nlp ? (size_t)(nlp - p) : n;
        size_t ll = e - i;
        bool drop = (max == 0 || ll <= max) && bp_match(s, (const uint8_t *)p + i, ll);
        if (drop) {
            if (!any) {
                if (!reserve(s, o, n + 1)) return ANNEAL_ERR_NOMEM;
                memcpy(s->buf[o], p, i);
                ol = i;
                any = true;
            }
            st->boilerplate_lines++;
            if (!nlp && ol > 0 && s->buf[o][ol - 1] == '\n') ol--; // the last line had no '\n'
        } else if (any) {
            size_t k = nlp ? ll + 1 : ll;
            memcpy(s->buf[o] + ol, p + i, k);
            ol += k;
        }
        i = nlp ? e + 1 : n;
    }
    if (!any) return ANNEAL_OK;
    *dropped = true;
    t->p = s->buf[o];
    t->n = ol;
    t->k = o;
    return ANNEAL_OK;
}

// ---- driver -------------------------------------------------------------------------------

anneal_status anneal_clean_text(anneal_clean_scratch *s, const anneal_clean_config *cfg,
                                const char *text_in, size_t len, const char **out, size_t *out_len,
                                anneal_clean_stats *stats, anneal_err *err) {
    if (len >= MAX_LEN)
        return anneal_err_set(err, ANNEAL_ERR_LIMIT, "clean: text of %zu bytes (limit 1 GiB)", len);
    anneal_clean_config def;
    if (!cfg) {
        def = anneal_clean_config_default();
        cfg = &def;
    }
    anneal_clean_stats local = {0};
    text t = {text_in ? text_in : "", text_in ? len : 0, -1};
    anneal_status st = stage_bytes(s, cfg, &t, &local);
    bool html_changed = false;
    if (!st && cfg->nfkc) st = stage_nfkc(s, &t, &local);
    if (!st && cfg->html) {
        uint64_t before = local.html_removed;
        st = stage_html(s, cfg->nfkc, &t, &local);
        html_changed = local.html_removed != before;
    }
    // Removing markup can bring a base character and a combining mark together.
    if (!st && cfg->nfkc && html_changed) st = stage_nfkc(s, &t, &local);
    if (!st && cfg->whitespace) st = stage_ws(s, &t, &local);
    if (!st && cfg->boilerplate) {
        bool dropped = false;
        st = stage_bp(s, cfg, &t, &local, &dropped);
        // Dropped lines can leave blank-line runs or edges the whitespace rule removes.
        if (!st && dropped && cfg->whitespace) {
            uint64_t before = local.whitespace_fixed;
            st = stage_ws(s, &t, &local);
            local.whitespace_fixed = before;
        }
    }
    if (st) return anneal_err_set(err, st, "clean: out of memory");
    if (t.k >= 0) s->buf[t.k][t.n] = 0;
    *out = t.p;
    *out_len = t.n;
    if (stats) {
        stats->invalid_utf8 += local.invalid_utf8;
        stats->control_removed += local.control_removed;
        stats->chars_normalized += local.chars_normalized;
        stats->html_removed += local.html_removed;
        stats->whitespace_fixed += local.whitespace_fixed;
        stats->boilerplate_lines += local.boilerplate_lines;
    }
    return ANNEAL_OK;
}
