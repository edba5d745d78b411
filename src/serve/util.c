// Small helpers of the server: the response string builder, JSON string escaping with
// UTF-8 repair, and request ids.
#include "serve_internal.h"

#include <math.h>
#include <stdio.h>
#include <sys/random.h>

void sb_free(sb *b) {
    anneal_free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static bool sb_reserve(sb *b, size_t extra) {
    if (b->oom) return false;
    size_t need;
    if (!anneal_add_ok(b->len, extra + 1, &need)) {
        b->oom = true;
        return false;
    }
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = anneal_realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void sb_put(sb *b, const char *s, size_t n) {
    if (!sb_reserve(b, n)) return;
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void sb_puts(sb *b, const char *s) {
    sb_put(b, s, strlen(s));
}

void sb_printf(sb *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        sb_put(b, tmp, (size_t)n);
        return;
    }
    if (!sb_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

bool serve_utf8_valid(const char *s, size_t n) {
    const uint8_t *u = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = anneal_utf8_decode(u + i, n - i, &cp);
        if (!k) return false;
        i += k;
    }
    return true;
}

void sb_json_str(sb *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    const uint8_t *u = (const uint8_t *)s;
    sb_put(b, "\"", 1);
    size_t run = 0; // bytes copied verbatim, flushed in one append
    for (size_t i = 0; i < n;) {
        uint8_t c = u[i];
        const char *esc = NULL;
        char ubuf[7];
        size_t k = 1;
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\n') esc = "\\n";
        else if (c == '\r') esc = "\\r";
        else if (c == '\t') esc = "\\t";
        else if (c < 0x20 || c == 0x7f) {
            memcpy(ubuf, "\\u00", 4);
            ubuf[4] = hex[c >> 4];
            ubuf[5] = hex[c & 15];
            ubuf[6] = '\0';
            esc = ubuf;
        } else if (c >= 0x80) {
            uint32_t cp;
            k = anneal_utf8_decode(u + i, n - i, &cp);
            if (!k) {
                esc = "\xEF\xBF\xBD"; // U+FFFD for an invalid byte
                k = 1;
            }
        }
        if (esc) {
            sb_put(b, s + i - run, run);
            run = 0;
            sb_puts(b, esc);
        } else {
            run += k;
        }
        i += k;
    }
    sb_put(b, s + n - run, run);
    sb_put(b, "\"", 1);
}

void sb_json_float(sb *b, double v) {
    if (isnan(v)) sb_puts(b, "null");
    else if (isinf(v)) sb_puts(b, v < 0 ? "-9999.0" : "9999.0");
    else sb_printf(b, "%.9g", v);
}

void api_new_id(char *out, size_t cap, const char *prefix) {
    uint8_t r[12];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        uint64_t t = anneal_time_ns() ^ (uint64_t)(uintptr_t)out;
        for (size_t i = 0; i < sizeof r; i++)
            r[i] = (uint8_t)(anneal_hash64(&t, sizeof t) >> (8 * (i % 8))) ^ (uint8_t)i;
    }
    char hex[25];
    anneal_hex(r, sizeof r, hex);
    snprintf(out, cap, "%s%s", prefix, hex);
}
