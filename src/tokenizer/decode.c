// Decoding: token pieces, whole-sequence decode (byte exact) and streaming detokenization
// that only ever emits complete, valid UTF-8.
#include "tokenizer/tok_internal.h"

// The piece of `id` as decode sees it: NULL/0 for a hidden token.
static const char *piece_of(const anneal_tokenizer *t, anneal_token id, bool special, size_t *len) {
    if (!special && (t->flags[id] & TOK_F_HIDDEN)) {
        *len = 0;
        return "";
    }
    *len = t->piece_len[id];
    return t->piece[id];
}

int64_t anneal_tokenizer_piece(const anneal_tokenizer *t, anneal_token id, bool special, char *out,
                               size_t cap) {
    if (id < 0 || id >= t->n_vocab) return -1;
    size_t n;
    const char *p = piece_of(t, id, special, &n);
    if (out && cap) memcpy(out, p, n < cap ? n : cap);
    return (int64_t)n;
}

anneal_status anneal_tokenizer_decode(const anneal_tokenizer *t, const anneal_token *ids, size_t n,
                                      bool special, char *out, size_t cap, size_t *len,
                                      anneal_err *err) {
    *len = 0;
    if (!ids && n) return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "decode: ids is NULL");
    bool strip = t->add_space_prefix;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        anneal_token id = ids[i];
        if (id < 0 || id >= t->n_vocab)
            return anneal_err_set(
                err, ANNEAL_ERR_INVALID_ARG,
                "decode: token id %d at index %zu is outside the vocabulary (0..%d)", id, i,
                t->n_vocab - 1);
        size_t l;
        const char *p = piece_of(t, id, special, &l);
        if (l == 0) continue;
        if (strip) {
            if (*p == ' ') p++, l--;
            strip = false;
        }
        if (out && total < cap) memcpy(out + total, p, l < cap - total ? l : cap - total);
        total += l;
    }
    *len = total;
    if (total > cap)
        return anneal_err_set(err, ANNEAL_ERR_RANGE,
                              "decode: %zu bytes do not fit in a buffer of %zu", total, cap);
    if (out && total < cap) out[total] = 0;
    return ANNEAL_OK;
}

// ---- streaming ----------------------------------------------------------------------------
void anneal_detok_init(anneal_detok *d, const anneal_tokenizer *t, bool special) {
    d->t = t;
    d->special = special;
    d->first = t->add_space_prefix;
    d->n_held = 0;
    memset(d->held, 0, sizeof d->held);
}

// Writer that fails (without side effects on the detok state) when out is full.
typedef struct sink {
    char *out;
    size_t cap, n;
    bool full;
} sink;

static inline void put(sink *k, const void *p, size_t n) {
    if (k->full || n > k->cap - k->n) {
        k->full = true;
        return;
    }
    memcpy(k->out + k->n, p, n);
    k->n += n;
}

static const char REPLACEMENT[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

// Emits the complete sequences of held[0..nh) followed by p[0..l); invalid bytes become one
// U+FFFD per maximal ill-formed subpart; a trailing incomplete sequence goes to new_held.
static void drain(const uint8_t *held, size_t nh, const uint8_t *p, size_t l, sink *k,
                  uint8_t *new_held, size_t *n_new_held) {
    size_t m = nh + l, i = 0;
    *n_new_held = 0;
    while (i < m && !k->full) {
        if (i >= nh) {
            // Fast path: a run of ASCII straight from the piece.
            size_t j = i;
            while (j < m && p[j - nh] < 0x80)
                j++;
            if (j > i) {
                put(k, p + (i - nh), j - i);
                i = j;
                continue;
            }
        }
        uint8_t tmp[4];
        size_t avail = m - i < 4 ? m - i : 4;
        for (size_t q = 0; q < avail; q++)
            tmp[q] = i + q < nh ? held[i + q] : p[i + q - nh];
        uint32_t cp;
        size_t cl = anneal_utf8_decode(tmp, avail, &cp);
        if (cl) {
            put(k, tmp, cl);
            i += cl;
            continue;
        }
        if (avail < 4 && anneal_utf8_incomplete(tmp, avail)) {
            memcpy(new_held, tmp, avail); // the end of the stream so far: wait for more
            *n_new_held = avail;
            return;
        }
        size_t sub = 1;
        for (size_t q = avail; q > 1; q--) {
            if (anneal_utf8_incomplete(tmp, q)) {
                sub = q;
                break;
            }
        }
        put(k, REPLACEMENT, 3);
        i += sub;
    }
}

int64_t anneal_detok_push(anneal_detok *d, anneal_token id, char *out, size_t cap) {
    const anneal_tokenizer *t = d->t;
    if (id < 0 || id >= t->n_vocab) return -1;
    size_t l;
    const char *p = piece_of(t, id, d->special, &l);
    bool first = d->first;
    if (l && first) {
        if (*p == ' ') p++, l--;
        first = false;
    }
    sink k = {out, cap, 0, false};
    uint8_t held[sizeof d->held];
    size_t nh = 0;
    drain(d->held, d->n_held, (const uint8_t *)p, l, &k, held, &nh);
    if (k.full) return -1;
    d->first = first;
    memcpy(d->held, held, nh);
    d->n_held = nh;
    return (int64_t)k.n;
}

int64_t anneal_detok_flush(anneal_detok *d, char *out, size_t cap) {
    if (d->n_held == 0) return 0;
    if (cap < 3) return -1;
    memcpy(out, REPLACEMENT, 3);
    d->n_held = 0;
    return 3;
}
