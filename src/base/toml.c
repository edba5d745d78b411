// Strict TOML 1.0 reader producing the jansson value the equivalent JSON file would parse to.
#include "anneal/base.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define TOML_MAX_BYTES ((size_t)16 << 20)
#define TOML_MAX_DEPTH 64

// Per-table bookkeeping jansson cannot hold: how a table came to exist decides whether a
// later header or dotted key may add to it.
enum {
    M_EXPLICIT = 1, // defined by a [header] or as an [[array]] element
    M_DOTTED = 2,   // created by dotted keys (extendable only in the section that made it)
    M_FROZEN = 4,   // an inline table: complete once written
    M_AOT = 8,      // an array made by [[header]] (others are static arrays)
};

typedef struct tmeta {
    const json_t *key;
    uint32_t section;
    uint8_t flags;
} tmeta;

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

typedef struct keypath {
    size_t off[TOML_MAX_DEPTH], len[TOML_MAX_DEPTH], pos[TOML_MAX_DEPTH];
    int n;
    sbuf b;
} keypath;

typedef struct tp {
    const char *s;
    size_t n, p;
    const char *what;
    anneal_err *err;
    tmeta *meta;
    size_t meta_cap, meta_n;
    uint32_t next_section;
    sbuf tmp;
} tp;

static bool fail_at(tp *t, size_t pos, anneal_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static bool fail_at(tp *t, size_t pos, anneal_status st, const char *fmt, ...) {
    int line = 1, col = 1;
    size_t ls = 0;
    if (pos > t->n) pos = t->n;
    for (size_t i = 0; i < pos; i++)
        if (t->s[i] == '\n') {
            line++;
            ls = i + 1;
        }
    // Columns count characters, not bytes, so they match what an editor shows.
    for (size_t i = ls; i < pos; i++)
        if (((uint8_t)t->s[i] & 0xC0) != 0x80) col++;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    anneal_err_set(t->err, st, "%s:%d:%d: %s", t->what, line, col, msg);
    return false;
}

static bool nomem(tp *t) {
    anneal_err_set(t->err, ANNEAL_ERR_NOMEM, "%s: out of memory", t->what);
    return false;
}

static bool sb_put(tp *t, sbuf *b, const char *src, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = anneal_realloc(b->p, cap);
        if (!q) return nomem(t);
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
    b->p[b->len] = 0;
    return true;
}

static bool sb_putc(tp *t, sbuf *b, char c) {
    return sb_put(t, b, &c, 1);
}

// ---- table metadata: an open-addressing map from json_t* ----------------------------------

static size_t meta_slot(const tmeta *m, size_t cap, const json_t *k) {
    size_t i = (size_t)(((uintptr_t)k >> 4) * 0x9E3779B97F4A7C15ull) & (cap - 1);
    while (m[i].key && m[i].key != k)
        i = (i + 1) & (cap - 1);
    return i;
}

static tmeta *meta_get(tp *t, const json_t *k) {
    if (!t->meta_cap) return NULL;
    tmeta *m = &t->meta[meta_slot(t->meta, t->meta_cap, k)];
    return m->key ? m : NULL;
}

static bool meta_put(tp *t, const json_t *k, uint8_t flags, uint32_t section) {
    if ((t->meta_n + 1) * 2 > t->meta_cap) {
        size_t cap = t->meta_cap ? t->meta_cap * 2 : 64;
        tmeta *m = anneal_calloc(cap, sizeof *m);
        if (!m) return nomem(t);
        for (size_t i = 0; i < t->meta_cap; i++)
            if (t->meta[i].key) m[meta_slot(m, cap, t->meta[i].key)] = t->meta[i];
        anneal_free(t->meta);
        t->meta = m;
        t->meta_cap = cap;
    }
    size_t i = meta_slot(t->meta, t->meta_cap, k);
    if (!t->meta[i].key) t->meta_n++;
    t->meta[i] = (tmeta){.key = k, .section = section, .flags = flags};
    return true;
}

static uint8_t meta_flags(tp *t, const json_t *k) {
    tmeta *m = meta_get(t, k);
    // Every table is registered when made; an unknown one is treated as closed.
    return m ? m->flags : M_FROZEN | M_EXPLICIT;
}

// ---- lexing helpers ------------------------------------------------------------------------

static bool at_eof(const tp *t) {
    return t->p >= t->n;
}
static int cur(const tp *t) {
    return t->p < t->n ? (uint8_t)t->s[t->p] : -1;
}
static int peek(const tp *t, size_t k) {
    return t->p + k < t->n ? (uint8_t)t->s[t->p + k] : -1;
}

static void skip_ws(tp *t) {
    while (t->p < t->n && (t->s[t->p] == ' ' || t->s[t->p] == '\t'))
        t->p++;
}

static bool is_newline(const tp *t) {
    return cur(t) == '\n' || (cur(t) == '\r' && peek(t, 1) == '\n');
}

static void eat_newline(tp *t) {
    t->p += cur(t) == '\r' ? 2 : 1;
}

static bool is_bare(int c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

static bool is_ctrl(int c) {
    return (c < 0x20 && c != '\t') || c == 0x7F;
}

static const char *describe(int c, char buf[16]) {
    if (c < 0) return "end of file";
    if (c >= 0x21 && c < 0x7F)
        snprintf(buf, 16, "'%c'", c);
    else if (c == '\n' || c == '\r')
        return "end of line";
    else if (c < 0x80)
        snprintf(buf, 16, "U+%04X", (unsigned)c);
    else
        return "a non-ASCII character";
    return buf;
}

static bool skip_comment(tp *t) {
    t->p++;
    while (!at_eof(t) && !is_newline(t)) {
        int c = cur(t);
        if (is_ctrl(c))
            return fail_at(t, t->p, ANNEAL_ERR_FORMAT, "control character U+%04X in a comment",
                           (unsigned)c);
        t->p++;
    }
    return true;
}

// Whitespace, newlines and comments between array elements.
static bool skip_ws_nl(tp *t) {
    for (;;) {
        skip_ws(t);
        if (cur(t) == '#') {
            if (!skip_comment(t)) return false;
        } else if (is_newline(t)) {
            eat_newline(t);
        } else {
            return true;
        }
    }
}

static bool expect_eol(tp *t) {
    skip_ws(t);
    if (cur(t) == '#' && !skip_comment(t)) return false;
    if (at_eof(t)) return true;
    if (is_newline(t)) {
        eat_newline(t);
        return true;
    }
    char b[16];
    return fail_at(t, t->p, ANNEAL_ERR_FORMAT, "expected the end of the line, found %s",
                   describe(cur(t), b));
}

// ---- strings -------------------------------------------------------------------------------

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool unicode_escape(tp *t, sbuf *out, int digits) {
    size_t at = t->p;
    uint32_t v = 0;
    for (int i = 0; i < digits; i++) {
        int h = hexval(peek(t, 2 + (size_t)i));
        if (h < 0)
            return fail_at(t, at, ANNEAL_ERR_FORMAT, "\\%c needs %d hex digits",
                           digits == 4 ? 'u' : 'U', digits);
        v = v * 16 + (uint32_t)h;
    }
    if (v == 0)
        return fail_at(t, at, ANNEAL_ERR_UNSUPPORTED,
                       "U+0000 is not supported (the JSON reader rejects it too)");
    char enc[4];
    size_t k = anneal_utf8_encode(v, enc);
    if (k == 0)
        return fail_at(t, at, ANNEAL_ERR_FORMAT,
                       "escape names U+%X, which is not a Unicode scalar value", (unsigned)v);
    t->p += 2 + (size_t)digits;
    return sb_put(t, out, enc, k);
}

// At the quote character of the string being read: a single-line string ends here; in a
// multi-line one, 3-5 quotes end it (one or two more belong to the value) and fewer are
// content. Returns 1 when the string ended, 0 to read on, -1 on an error.
static int at_quote(tp *t, sbuf *out, char quote, bool multi) {
    if (!multi) {
        t->p++;
        return 1;
    }
    const char pair[2] = {quote, quote};
    size_t q = 0;
    while (peek(t, q) == quote)
        q++;
    if (q >= 3) {
        if (q > 5) {
            fail_at(t, t->p, ANNEAL_ERR_FORMAT, "too many quotes closing a string");
            return -1;
        }
        t->p += q;
        return sb_put(t, out, pair, q - 3) ? 1 : -1;
    }
    t->p += q;
    return sb_put(t, out, pair, q) ? 0 : -1;
}

// Appends the string's value to out. Multi-line forms drop a newline right after the opening
// quotes and turn CRLF into LF.
static bool parse_basic(tp *t, sbuf *out, bool multi) {
    size_t start = t->p;
    t->p += multi ? 3 : 1;
    if (multi && is_newline(t)) eat_newline(t);
    for (;;) {
        int c = cur(t);
        if (c < 0) return fail_at(t, start, ANNEAL_ERR_FORMAT, "unterminated string");
        if (c == '"') {
            int r = at_quote(t, out, '"', multi);
            if (r) return r > 0;
            continue;
        }
        if (c == '\\') {
            int e = peek(t, 1);
            const char *rep = NULL;
            switch (e) {
            case 'b':
                rep = "\b";
                break;
            case 't':
                rep = "\t";
                break;
            case 'n':
                rep = "\n";
                break;
            case 'f':
                rep = "\f";
                break;
            case 'r':
                rep = "\r";
                break;
            case '"':
                rep = "\"";
                break;
            case '\\':
                rep = "\\";
                break;
            default:
                break;
            }
            if (rep) {
                t->p += 2;
                if (!sb_putc(t, out, rep[0])) return false;
                continue;
            }
            if (e == 'u' || e == 'U') {
                if (!unicode_escape(t, out, e == 'u' ? 4 : 8)) return false;
                continue;
            }
            if (multi && (e == ' ' || e == '\t' || e == '\n' || e == '\r')) {
                // A line-ending backslash: only whitespace may follow it on its line.
                size_t at = t->p;
                t->p++;
                skip_ws(t);
                if (!is_newline(t))
                    return fail_at(t, at, ANNEAL_ERR_FORMAT,
                                   "a backslash followed by spaces must end the line");
                while (cur(t) == ' ' || cur(t) == '\t' || is_newline(t))
                    t->p += is_newline(t) && cur(t) == '\r' ? 2 : 1;
                continue;
            }
            char b[16];
            return fail_at(t, t->p, ANNEAL_ERR_FORMAT, "invalid escape: backslash and %s",
                           describe(e, b));
        }
        if (multi && is_newline(t)) {
            eat_newline(t);
            if (!sb_putc(t, out, '\n')) return false;
            continue;
        }
        if (c == '\n' || (c == '\r' && peek(t, 1) == '\n'))
            return fail_at(t, start, ANNEAL_ERR_FORMAT,
                           "unterminated string (a newline before the closing quote)");
        if (is_ctrl(c))
            return fail_at(t, t->p, ANNEAL_ERR_FORMAT, "control character U+%04X in a string",
                           (unsigned)c);
        size_t run = t->p;
        while (run < t->n && t->s[run] != '"' && t->s[run] != '\\' && !is_ctrl((uint8_t)t->s[run]))
            run++;
        if (!sb_put(t, out, t->s + t->p, run - t->p)) return false;
        t->p = run;
    }
}

static bool parse_literal(tp *t, sbuf *out, bool multi) {
    size_t start = t->p;
    t->p += multi ? 3 : 1;
    if (multi && is_newline(t)) eat_newline(t);
    for (;;) {
        int c = cur(t);
        if (c < 0) return fail_at(t, start, ANNEAL_ERR_FORMAT, "unterminated string");
        if (c == '\'') {
            int r = at_quote(t, out, '\'', multi);
            if (r) return r > 0;
            continue;
        }
        if (multi && is_newline(t)) {
            eat_newline(t);
            if (!sb_putc(t, out, '\n')) return false;
            continue;
        }
        if (c == '\n' || (c == '\r' && peek(t, 1) == '\n'))
            return fail_at(t, start, ANNEAL_ERR_FORMAT,
                           "unterminated string (a newline before the closing quote)");
        if (is_ctrl(c))
            return fail_at(t, t->p, ANNEAL_ERR_FORMAT, "control character U+%04X in a string",
                           (unsigned)c);
        size_t run = t->p;
        while (run < t->n && t->s[run] != '\'' && !is_ctrl((uint8_t)t->s[run]))
            run++;
        if (!sb_put(t, out, t->s + t->p, run - t->p)) return false;
        t->p = run;
    }
}

// ---- keys ----------------------------------------------------------------------------------

static bool parse_key(tp *t, keypath *k) {
    k->n = 0;
    k->b.len = 0;
    for (;;) {
        skip_ws(t);
        if (k->n == TOML_MAX_DEPTH)
            return fail_at(t, t->p, ANNEAL_ERR_LIMIT, "a key with more than %d parts",
                           TOML_MAX_DEPTH);
        size_t pos = t->p, off = k->b.len;
        int c = cur(t);
        if (c == '"') {
            if (!parse_basic(t, &k->b, false)) return false;
        } else if (c == '\'') {
            if (!parse_literal(t, &k->b, false)) return false;
        } else if (is_bare(c)) {
            size_t e = t->p;
            while (e < t->n && is_bare((uint8_t)t->s[e]))
                e++;
            if (!sb_put(t, &k->b, t->s + t->p, e - t->p)) return false;
            t->p = e;
        } else {
            char b[16];
            return fail_at(t, pos, ANNEAL_ERR_FORMAT, "expected a key, found %s", describe(c, b));
        }
        // The buffer may move as it grows, so parts are offsets into it.
        k->off[k->n] = off;
        k->len[k->n] = k->b.len - off;
        k->pos[k->n] = pos;
        k->n++;
        skip_ws(t);
        if (cur(t) != '.') return true;
        t->p++;
    }
}

static const char *kpart(const keypath *k, int i) {
    return k->b.p ? k->b.p + k->off[i] : "";
}

static int kshow(const keypath *k, int i) {
    return k->len[i] > 80 ? 80 : (int)k->len[i];
}

static const char *kind(const json_t *v) {
    if (json_is_object(v)) return "a table";
    if (json_is_array(v)) return "an array";
    if (json_is_string(v)) return "a string";
    if (json_is_integer(v)) return "an integer";
    if (json_is_real(v)) return "a float";
    return "a boolean";
}

// ---- numbers -------------------------------------------------------------------------------

static bool is_digit_in(int c, int base) {
    int v = hexval(c);
    return v >= 0 && v < base && (base == 16 || (c >= '0' && c <= '9'));
}

// Digits of `base` with each underscore between two digits; appends the digits (without
// underscores) to out. Returns the digit count, or -1 for a misplaced underscore.
static int digit_run(const char *s, size_t n, size_t *i, int base, char *out, size_t *olen) {
    int count = 0;
    while (*i < n) {
        char c = s[*i];
        if (is_digit_in((uint8_t)c, base)) {
            out[(*olen)++] = c;
            count++;
            (*i)++;
        } else if (c == '_') {
            if (count == 0 || *i + 1 >= n || !is_digit_in((uint8_t)s[*i + 1], base)) return -1;
            (*i)++;
        } else {
            break;
        }
    }
    return count;
}

static bool parse_number(tp *t, json_t **out) {
    size_t start = t->p, e = t->p;
    while (e < t->n &&
           (is_bare((uint8_t)t->s[e]) || t->s[e] == '.' || t->s[e] == '+' || t->s[e] == ':'))
        e++;
    const char *s = t->s + start;
    size_t n = e - start;
    t->p = e;
    bool dig4 = n >= 5 && s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9' && s[2] >= '0' &&
                s[2] <= '9' && s[3] >= '0' && s[3] <= '9';
    bool dig2 = n >= 3 && s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9';
    if ((dig4 && s[4] == '-') || (dig2 && s[2] == ':'))
        return fail_at(t, start, ANNEAL_ERR_UNSUPPORTED,
                       "dates are not supported (write the date or time as a string)");
    size_t i = 0;
    bool neg = false, sign = false;
    if (n && (s[0] == '+' || s[0] == '-')) {
        neg = s[0] == '-';
        sign = true;
        i = 1;
    }
    if (n - i == 3 && (!memcmp(s + i, "inf", 3) || !memcmp(s + i, "nan", 3)))
        return fail_at(t, start, ANNEAL_ERR_UNSUPPORTED, "%.*s is not representable in JSON",
                       (int)n, s);
    char *buf = anneal_malloc(n + 2);
    if (!buf) return nomem(t);
    size_t bl = 0;
    bool ok = false;
    if (n - i >= 2 && s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'o' || s[i + 1] == 'b')) {
        int base = s[i + 1] == 'x' ? 16 : s[i + 1] == 'o' ? 8 : 2;
        if (sign) {
            fail_at(t, start, ANNEAL_ERR_FORMAT,
                    "a sign is not allowed on hex, octal or binary integers");
            goto done;
        }
        i += 2;
        int d = digit_run(s, n, &i, base, buf, &bl);
        if (d <= 0 || i != n) {
            fail_at(t, start, ANNEAL_ERR_FORMAT, "invalid %s integer '%.*s'",
                    base == 16  ? "hex"
                    : base == 8 ? "octal"
                                : "binary",
                    (int)(n > 64 ? 64 : n), s);
            goto done;
        }
        uint64_t v = 0;
        for (size_t j = 0; j < bl; j++) {
            uint64_t h = (uint64_t)hexval((uint8_t)buf[j]);
            if (v > ((uint64_t)INT64_MAX - h) / (uint64_t)base) {
                fail_at(t, start, ANNEAL_ERR_RANGE, "integer %.*s does not fit in 64 bits",
                        (int)(n > 64 ? 64 : n), s);
                goto done;
            }
            v = v * (uint64_t)base + h;
        }
        *out = json_integer((json_int_t)v);
        ok = *out ? true : nomem(t);
        goto done;
    }
    if (sign) buf[bl++] = s[0];
    size_t int_start = i;
    int d = digit_run(s, n, &i, 10, buf, &bl);
    if (d <= 0) {
        fail_at(t, start, ANNEAL_ERR_FORMAT, "invalid number '%.*s'", (int)(n > 64 ? 64 : n), s);
        goto done;
    }
    if (s[int_start] == '0' && d > 1) {
        fail_at(t, start, ANNEAL_ERR_FORMAT, "leading zeros are not allowed in '%.*s'",
                (int)(n > 64 ? 64 : n), s);
        goto done;
    }
    bool is_float = false;
    if (i < n && s[i] == '.') {
        is_float = true;
        buf[bl++] = '.';
        i++;
        if (digit_run(s, n, &i, 10, buf, &bl) <= 0) {
            fail_at(t, start, ANNEAL_ERR_FORMAT,
                    "a decimal point needs digits on both sides in '%.*s'", (int)(n > 64 ? 64 : n),
                    s);
            goto done;
        }
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        is_float = true;
        buf[bl++] = 'e';
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) buf[bl++] = s[i++];
        if (digit_run(s, n, &i, 10, buf, &bl) <= 0) {
            fail_at(t, start, ANNEAL_ERR_FORMAT, "an exponent needs digits in '%.*s'",
                    (int)(n > 64 ? 64 : n), s);
            goto done;
        }
    }
    if (i != n) {
        fail_at(t, start, ANNEAL_ERR_FORMAT, "invalid number '%.*s'", (int)(n > 64 ? 64 : n), s);
        goto done;
    }
    buf[bl] = 0;
    if (is_float) {
        double v = strtod(buf, NULL);
        if (!isfinite(v)) {
            fail_at(t, start, ANNEAL_ERR_RANGE, "float %.*s is out of range",
                    (int)(n > 64 ? 64 : n), s);
            goto done;
        }
        *out = json_real(v);
    } else {
        // Accumulate negatively so INT64_MIN fits.
        int64_t v = 0;
        for (size_t j = sign ? 1 : 0; j < bl; j++) {
            int dv = buf[j] - '0';
            if (v < (INT64_MIN + dv) / 10) {
                fail_at(t, start, ANNEAL_ERR_RANGE, "integer %.*s does not fit in 64 bits",
                        (int)(n > 64 ? 64 : n), s);
                goto done;
            }
            v = v * 10 - dv;
        }
        if (!neg) {
            if (v == INT64_MIN) {
                fail_at(t, start, ANNEAL_ERR_RANGE, "integer %.*s does not fit in 64 bits",
                        (int)(n > 64 ? 64 : n), s);
                goto done;
            }
            v = -v;
        }
        *out = json_integer((json_int_t)v);
    }
    ok = *out ? true : nomem(t);
done:
    anneal_free(buf);
    return ok;
}

// ---- values and tables ---------------------------------------------------------------------

static bool parse_keyval(tp *t, json_t *tbl, uint32_t section, int depth);

static bool depth_ok(tp *t, size_t pos, int depth) {
    if (depth > TOML_MAX_DEPTH)
        return fail_at(t, pos, ANNEAL_ERR_LIMIT, "nesting deeper than %d levels", TOML_MAX_DEPTH);
    return true;
}

// `depth` is the JSON nesting level the value would sit at if it is an array or a table.
static bool parse_value(tp *t, int depth, json_t **out) {
    *out = NULL;
    size_t start = t->p;
    int c = cur(t);
    if (c == '"' || c == '\'') {
        bool multi = peek(t, 1) == c && peek(t, 2) == c;
        t->tmp.len = 0;
        if (!(c == '"' ? parse_basic(t, &t->tmp, multi) : parse_literal(t, &t->tmp, multi)))
            return false;
        *out = json_stringn_nocheck(t->tmp.p ? t->tmp.p : "", t->tmp.len);
        return *out ? true : nomem(t);
    }
    if (c == 't' || c == 'f') {
        const char *word = c == 't' ? "true" : "false";
        size_t wl = strlen(word);
        if (t->n - t->p >= wl && !memcmp(t->s + t->p, word, wl) && !is_bare(peek(t, wl))) {
            t->p += wl;
            *out = json_boolean(c == 't');
            return true;
        }
    }
    if (c == 'i' || c == 'n' || c == '+' || c == '-' || (c >= '0' && c <= '9'))
        return parse_number(t, out);
    if (c == '[') {
        if (!depth_ok(t, start, depth)) return false;
        json_t *arr = json_array();
        if (!arr) return nomem(t);
        t->p++;
        for (;;) {
            if (!skip_ws_nl(t)) break;
            if (cur(t) == ']') {
                t->p++;
                *out = arr;
                return true;
            }
            json_t *v;
            if (!parse_value(t, depth + 1, &v)) break;
            if (json_array_append_new(arr, v)) {
                nomem(t);
                break;
            }
            if (!skip_ws_nl(t)) break;
            if (cur(t) == ',') {
                t->p++;
                continue;
            }
            if (cur(t) == ']') continue;
            char b[16];
            fail_at(t, t->p, ANNEAL_ERR_FORMAT, "expected ',' or ']' in an array, found %s",
                    describe(cur(t), b));
            break;
        }
        json_decref(arr);
        return false;
    }
    if (c == '{') {
        if (!depth_ok(t, start, depth)) return false;
        json_t *tbl = json_object();
        if (!tbl) return nomem(t);
        uint32_t sec = ++t->next_section;
        if (!meta_put(t, tbl, 0, sec)) {
            json_decref(tbl);
            return false;
        }
        t->p++;
        skip_ws(t);
        if (cur(t) == '}') {
            t->p++;
            meta_get(t, tbl)->flags = M_FROZEN | M_EXPLICIT;
            *out = tbl;
            return true;
        }
        for (;;) {
            if (!parse_keyval(t, tbl, sec, depth)) break;
            skip_ws(t);
            if (cur(t) == ',') {
                t->p++;
                skip_ws(t);
                if (cur(t) == '}') {
                    fail_at(t, t->p, ANNEAL_ERR_FORMAT,
                            "a trailing comma is not allowed in an inline table");
                    break;
                }
                continue;
            }
            if (cur(t) == '}') {
                t->p++;
                meta_get(t, tbl)->flags = M_FROZEN | M_EXPLICIT;
                *out = tbl;
                return true;
            }
            char b[16];
            if (is_newline(t))
                fail_at(t, t->p, ANNEAL_ERR_FORMAT, "an inline table must be on one line");
            else
                fail_at(t, t->p, ANNEAL_ERR_FORMAT,
                        "expected ',' or '}' in an inline table, found %s", describe(cur(t), b));
            break;
        }
        json_decref(tbl);
        return false;
    }
    char b[16];
    return fail_at(t, start, ANNEAL_ERR_FORMAT, "expected a value, found %s", describe(c, b));
}

static bool parse_keyval(tp *t, json_t *tbl, uint32_t section, int depth) {
    keypath *k = anneal_calloc(1, sizeof *k);
    if (!k) return nomem(t);
    bool ok = false;
    json_t *v = NULL;
    if (!parse_key(t, k)) goto done;
    if (cur(t) != '=') {
        char b[16];
        fail_at(t, t->p, ANNEAL_ERR_FORMAT, "expected '=' after a key, found %s",
                describe(cur(t), b));
        goto done;
    }
    t->p++;
    skip_ws(t);
    json_t *at = tbl;
    for (int i = 0; i + 1 < k->n; i++) {
        json_t *child = json_object_getn(at, kpart(k, i), k->len[i]);
        if (!child) {
            if (!depth_ok(t, k->pos[i], depth + 1)) goto done;
            child = json_object();
            if (!child) {
                nomem(t);
                goto done;
            }
            if (json_object_setn_new_nocheck(at, kpart(k, i), k->len[i], child)) {
                nomem(t);
                goto done;
            }
            if (!meta_put(t, child, M_DOTTED, section)) goto done;
        } else if (!json_is_object(child)) {
            fail_at(t, k->pos[i], ANNEAL_ERR_FORMAT, "key '%.*s' is already %s, not a table",
                    kshow(k, i), kpart(k, i), kind(child));
            goto done;
        } else {
            tmeta *m = meta_get(t, child);
            uint8_t f = m ? m->flags : M_FROZEN;
            if (f & M_FROZEN) {
                fail_at(t, k->pos[i], ANNEAL_ERR_FORMAT, "cannot add keys to inline table '%.*s'",
                        kshow(k, i), kpart(k, i));
                goto done;
            }
            if ((f & M_EXPLICIT) || ((f & M_DOTTED) && m->section != section)) {
                fail_at(t, k->pos[i], ANNEAL_ERR_FORMAT, "table '%.*s' is already defined",
                        kshow(k, i), kpart(k, i));
                goto done;
            }
            // A table made implicitly by a header becomes a dotted-key table of this section.
            m->flags |= M_DOTTED;
            m->section = section;
        }
        at = child;
        depth++;
    }
    int last = k->n - 1;
    if (json_object_getn(at, kpart(k, last), k->len[last])) {
        fail_at(t, k->pos[last], ANNEAL_ERR_FORMAT, "duplicate key '%.*s'", kshow(k, last),
                kpart(k, last));
        goto done;
    }
    if (!parse_value(t, depth + 1, &v)) goto done;
    if (json_object_setn_new_nocheck(at, kpart(k, last), k->len[last], v)) {
        v = NULL;
        nomem(t);
        goto done;
    }
    v = NULL;
    ok = true;
done:
    json_decref(v);
    anneal_free(k->b.p);
    anneal_free(k);
    return ok;
}

// A [header] or [[header]]; on success *tbl and *depth name the table that keys now go into.
static bool parse_header(tp *t, json_t *root, json_t **tbl, int *depth) {
    size_t start = t->p;
    bool aot = peek(t, 1) == '[';
    t->p += aot ? 2 : 1;
    keypath *k = anneal_calloc(1, sizeof *k);
    if (!k) return nomem(t);
    bool ok = false;
    if (!parse_key(t, k)) goto done;
    if (cur(t) != ']' || (aot && peek(t, 1) != ']')) {
        char b[16];
        fail_at(t, t->p, ANNEAL_ERR_FORMAT, "expected '%s' to close a table header, found %s",
                aot ? "]]" : "]", describe(cur(t), b));
        goto done;
    }
    t->p += aot ? 2 : 1;
    json_t *at = root;
    int d = 1;
    for (int i = 0; i + 1 < k->n; i++) {
        json_t *child = json_object_getn(at, kpart(k, i), k->len[i]);
        if (!child) {
            if (!depth_ok(t, k->pos[i], d + 1)) goto done;
            child = json_object();
            if (!child) {
                nomem(t);
                goto done;
            }
            if (json_object_setn_new_nocheck(at, kpart(k, i), k->len[i], child)) {
                nomem(t);
                goto done;
            }
            if (!meta_put(t, child, 0, 0)) goto done;
            d++;
        } else if (json_is_array(child)) {
            if (!(meta_flags(t, child) & M_AOT)) {
                fail_at(t, k->pos[i], ANNEAL_ERR_FORMAT, "cannot add tables to static array '%.*s'",
                        kshow(k, i), kpart(k, i));
                goto done;
            }
            // Sub-tables belong to the last element of an array of tables.
            child = json_array_get(child, json_array_size(child) - 1);
            d += 2;
        } else if (json_is_object(child)) {
            if (meta_flags(t, child) & M_FROZEN) {
                fail_at(t, k->pos[i], ANNEAL_ERR_FORMAT, "cannot add tables to inline table '%.*s'",
                        kshow(k, i), kpart(k, i));
                goto done;
            }
            d++;
        } else {
            fail_at(t, k->pos[i], ANNEAL_ERR_FORMAT, "key '%.*s' is already %s, not a table",
                    kshow(k, i), kpart(k, i), kind(child));
            goto done;
        }
        at = child;
    }
    int last = k->n - 1;
    json_t *child = json_object_getn(at, kpart(k, last), k->len[last]);
    uint32_t sec = ++t->next_section;
    if (!aot) {
        if (!child) {
            if (!depth_ok(t, k->pos[last], d + 1)) goto done;
            child = json_object();
            if (!child || json_object_setn_new_nocheck(at, kpart(k, last), k->len[last], child)) {
                nomem(t);
                goto done;
            }
            if (!meta_put(t, child, M_EXPLICIT, sec)) goto done;
        } else if (json_is_object(child) &&
                   !(meta_flags(t, child) & (M_EXPLICIT | M_DOTTED | M_FROZEN))) {
            meta_get(t, child)->flags |= M_EXPLICIT;
        } else {
            fail_at(t, start, ANNEAL_ERR_FORMAT, "%s '%.*s' is already defined",
                    json_is_object(child) ? "table" : "key", kshow(k, last), kpart(k, last));
            goto done;
        }
        *tbl = child;
        *depth = d + 1;
    } else {
        if (!depth_ok(t, k->pos[last], d + 2)) goto done;
        if (!child) {
            child = json_array();
            if (!child || json_object_setn_new_nocheck(at, kpart(k, last), k->len[last], child)) {
                nomem(t);
                goto done;
            }
            if (!meta_put(t, child, M_AOT, 0)) goto done;
        } else if (!json_is_array(child) || !(meta_flags(t, child) & M_AOT)) {
            fail_at(t, start, ANNEAL_ERR_FORMAT, "cannot append to '%.*s': it is already %s",
                    kshow(k, last), kpart(k, last),
                    json_is_array(child) ? "a static array" : kind(child));
            goto done;
        }
        json_t *elem = json_object();
        if (!elem || json_array_append_new(child, elem)) {
            nomem(t);
            goto done;
        }
        if (!meta_put(t, elem, M_EXPLICIT, sec)) goto done;
        *tbl = elem;
        *depth = d + 2;
    }
    ok = true;
done:
    anneal_free(k->b.p);
    anneal_free(k);
    return ok;
}

// Whole-input checks first, so the grammar below can trust every byte is valid UTF-8 and
// every CR starts a CRLF.
static bool check_bytes(tp *t) {
    for (size_t i = 0; i < t->n;) {
        uint8_t c = (uint8_t)t->s[i];
        if (c < 0x80) {
            if (c == '\r' && (i + 1 >= t->n || t->s[i + 1] != '\n'))
                return fail_at(t, i, ANNEAL_ERR_FORMAT,
                               "a carriage return not followed by a newline");
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = anneal_utf8_decode((const uint8_t *)t->s + i, t->n - i, &cp);
        if (k == 0) return fail_at(t, i, ANNEAL_ERR_FORMAT, "invalid UTF-8");
        i += k;
    }
    return true;
}

void *anneal_toml_parse(const char *text, size_t len, const char *what, anneal_err *err) {
    tp t = {.s = text ? text : "", .n = text ? len : 0, .what = what ? what : "toml", .err = err};
    if (t.n > TOML_MAX_BYTES) {
        anneal_err_set(err, ANNEAL_ERR_LIMIT, "%s: larger than the 16 MiB a TOML file may have",
                       t.what);
        return NULL;
    }
    if (!check_bytes(&t)) return NULL;
    if (t.n >= 3 && !memcmp(t.s, "\xEF\xBB\xBF", 3)) t.p = 3;
    json_t *root = json_object();
    if (!root) {
        nomem(&t);
        return NULL;
    }
    bool ok = meta_put(&t, root, M_EXPLICIT, 0);
    json_t *tbl = root;
    int depth = 1;
    uint32_t section = 0;
    while (ok) {
        skip_ws(&t);
        if (at_eof(&t)) break;
        int c = cur(&t);
        if (c == '#' || is_newline(&t)) {
            ok = expect_eol(&t);
        } else if (c == '[') {
            ok = parse_header(&t, root, &tbl, &depth) && expect_eol(&t);
            section = t.next_section;
        } else {
            ok = parse_keyval(&t, tbl, section, depth) && expect_eol(&t);
        }
    }
    anneal_free(t.meta);
    anneal_free(t.tmp.p);
    if (!ok) {
        json_decref(root);
        return NULL;
    }
    return root;
}
