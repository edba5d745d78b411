// UTF-8 decoding and encoding (strict: shortest form, no surrogates, <= U+10FFFF).
#include "anneal/base.h"

// Expected sequence length from the lead byte; 0 for bytes that cannot start one.
static size_t lead_len(uint8_t c) {
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return 2;
    if (c < 0xF0) return 3;
    if (c < 0xF5) return 4;
    return 0;
}

// Allowed range of the second byte, which rules out overlongs, surrogates and > U+10FFFF.
static void second_range(uint8_t c, uint8_t *lo, uint8_t *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (c == 0xE0) *lo = 0xA0;
    else if (c == 0xED) *hi = 0x9F;
    else if (c == 0xF0) *lo = 0x90;
    else if (c == 0xF4) *hi = 0x8F;
}

size_t anneal_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    size_t len = lead_len(s[0]);
    if (len == 0 || len > n) return 0;
    if (len == 1) {
        *cp = s[0];
        return 1;
    }
    uint8_t lo, hi;
    second_range(s[0], &lo, &hi);
    if (s[1] < lo || s[1] > hi) return 0;
    uint32_t v = s[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    *cp = v;
    return len;
}

bool anneal_utf8_incomplete(const uint8_t *s, size_t n) {
    if (n == 0) return false;
    size_t len = lead_len(s[0]);
    if (len <= n) return false;
    if (n >= 2) {
        uint8_t lo, hi;
        second_range(s[0], &lo, &hi);
        if (s[1] < lo || s[1] > hi) return false;
    }
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return false;
    return true;
}

size_t anneal_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp > 0x10FFFF) return 0;
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}
