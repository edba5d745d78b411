// Encoding: special-token splitting, SentencePiece-style BPE (merge by score) and
// byte-level BPE (merge by rank), both on one merge engine with an indexed binary heap.
#include "tokenizer/tok_internal.h"

#include <pthread.h>

#define TOK_MAX_INPUT (1u << 30) // bytes per encode call; work buffers hold 3x for ▁ escapes

// A symbol: a run of bytes of the work buffer that is one token (or one character that
// is not a token). Merging absorbs the right neighbour into the left one.
typedef struct tok_sym {
    int32_t id;        // token id, -1 for a character that is no mergeable token
    uint32_t off, len; // bytes in the work buffer; len 0 once absorbed
    int32_t prev, next;
    int32_t hpos; // index of this symbol's candidate pair (it, next) in the heap; -1 if none
    int32_t ev;   // merge event that produced it (UNUSED resegmentation); -1 if none
} tok_sym;

// Candidate merge of symbol `left` (low 32 bits of key) with its right neighbour. Keys are
// unique: priority (lower first) in the high bits, then the left position (leftmost first).
typedef struct tok_cand {
    uint64_t key;
    int32_t merged;
} tok_cand;

// One merge, kept only when the vocabulary has UNUSED tokens (SentencePiece splits such a
// result back into the pieces it was made from).
typedef struct tok_event {
    int32_t left_id, right_id, left_ev, right_ev;
    uint32_t left_len;
} tok_event;

typedef struct tok_reseg {
    int32_t id, ev;
    uint32_t off, len;
} tok_reseg;

// Per-thread work memory, reused across calls so steady-state encoding does not allocate.
typedef struct tok_scratch {
    char *buf;
    size_t buf_cap;
    tok_sym *sym;
    tok_cand *heap;
    tok_event *ev;
    tok_reseg *stack;
    size_t sym_cap; // capacity of sym, heap, ev and stack
    tok_span *spans;
    size_t span_cap;
} tok_scratch;

// Scratch beyond this many symbols is released after the call that needed it.
#define TOK_SCRATCH_KEEP (1u << 18)

static void scratch_release_big(tok_scratch *s) {
    anneal_free(s->sym);
    anneal_free(s->heap);
    anneal_free(s->ev);
    anneal_free(s->stack);
    anneal_free(s->buf);
    s->sym = NULL, s->heap = NULL, s->ev = NULL, s->stack = NULL, s->buf = NULL;
    s->sym_cap = 0, s->buf_cap = 0;
}

static void scratch_destroy(void *p) {
    tok_scratch *s = p;
    if (!s) return;
    scratch_release_big(s);
    anneal_free(s->spans);
    anneal_free(s);
}

static pthread_key_t scratch_key;
static bool scratch_key_ok;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static _Thread_local tok_scratch *tls_scratch;

static void scratch_key_init(void) {
    scratch_key_ok = pthread_key_create(&scratch_key, scratch_destroy) == 0;
}

static tok_scratch *scratch_get(void) {
    if (tls_scratch) return tls_scratch;
    pthread_once(&scratch_once, scratch_key_init);
    tok_scratch *s = anneal_calloc(1, sizeof *s);
    if (!s) return NULL;
    if (scratch_key_ok) pthread_setspecific(scratch_key, s); // frees it at thread exit
    tls_scratch = s;
    return s;
}

static bool scratch_reserve(tok_scratch *s, size_t n_sym, size_t n_buf) {
    if (n_buf > s->buf_cap) {
        size_t cap = n_buf < 4096 ? 4096 : n_buf + n_buf / 2;
        char *p = anneal_realloc(s->buf, cap);
        if (!p) return false;
        s->buf = p, s->buf_cap = cap;
    }
    if (n_sym > s->sym_cap) {
        size_t cap = n_sym < 1024 ? 1024 : n_sym + n_sym / 2;
        tok_sym *a = anneal_realloc_array(s->sym, cap, sizeof *a);
        if (a) s->sym = a;
        tok_cand *b = anneal_realloc_array(s->heap, cap, sizeof *b);
        if (b) s->heap = b;
        tok_event *c = anneal_realloc_array(s->ev, cap, sizeof *c);
        if (c) s->ev = c;
        tok_reseg *d = anneal_realloc_array(s->stack, cap, sizeof *d);
        if (d) s->stack = d;
        if (!a || !b || !c || !d) return false;
        s->sym_cap = cap;
    }
    return true;
}

// ---- output ---------------------------------------------------------------------------
typedef struct tok_out {
    anneal_token *ids;
    size_t cap, n;
} tok_out;

static inline void emit(tok_out *o, int32_t id) {
    if (o->n < o->cap) o->ids[o->n] = id;
    o->n++;
}

// A character that is no token: its bytes as <0xNN> tokens when the vocabulary has them
// all, else the unknown token (nothing when there is none).
static void emit_unknown(const anneal_tokenizer *t, const char *bytes, size_t n, tok_out *o) {
    bool all = t->kind == ANNEAL_TOK_SPM;
    for (size_t i = 0; i < n && all; i++)
        all = t->byte_id[(uint8_t)bytes[i]] >= 0;
    if (all) {
        for (size_t i = 0; i < n; i++)
            emit(o, t->byte_id[(uint8_t)bytes[i]]);
    } else if (t->unk >= 0) {
        emit(o, t->unk);
    }
}

// ---- indexed binary heap (min on key) ------------------------------------------------
typedef struct tok_heap {
    tok_cand *a;
    uint32_t n;
    tok_sym *sym;
} tok_heap;

static inline void h_place(tok_heap *h, uint32_t i, tok_cand c) {
    h->a[i] = c;
    h->sym[(uint32_t)c.key].hpos = (int32_t)i;
}

static void h_up(tok_heap *h, uint32_t i, tok_cand c) {
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (h->a[p].key <= c.key) break;
        h_place(h, i, h->a[p]);
        i = p;
    }
    h_place(h, i, c);
}

static void h_down(tok_heap *h, uint32_t i, tok_cand c) {
    for (;;) {
        uint32_t l = 2 * i + 1;
        if (l >= h->n) break;
        uint32_t m = l;
        if (l + 1 < h->n && h->a[l + 1].key < h->a[l].key) m = l + 1;
        if (h->a[m].key >= c.key) break;
        h_place(h, i, h->a[m]);
        i = m;
    }
    h_place(h, i, c);
}

static void h_remove(tok_heap *h, int32_t left) {
    uint32_t i = (uint32_t)h->sym[left].hpos;
    h->sym[left].hpos = -1;
    uint64_t gone = h->a[i].key;
    if (i == --h->n) return;
    tok_cand last = h->a[h->n];
    if (last.key < gone)
        h_up(h, i, last);
    else
        h_down(h, i, last);
}

// Inserts or replaces the candidate of symbol `left`.
static void h_set(tok_heap *h, int32_t left, tok_cand c) {
    int32_t pos = h->sym[left].hpos;
    if (pos < 0) {
        h_up(h, h->n++, c);
    } else if (c.key < h->a[pos].key) {
        h_up(h, (uint32_t)pos, c);
    } else {
        h_down(h, (uint32_t)pos, c);
    }
}

// ---- the merge engine -------------------------------------------------------------------
// The engine's functions take `spm` as a constant at every call and are always inlined,
// so the SPM and byte-level encoders each get their own specialised copy.
#define TOK_INLINE static inline __attribute__((always_inline))

// The merge of adjacent symbols l and r as a candidate; false when their concatenation is
// not a mergeable token.
TOK_INLINE bool find_merge(const anneal_tokenizer *t, const tok_sym *sym, const char *buf,
                           int32_t l, int32_t r, tok_cand *c, bool spm) {
    int32_t a = sym[l].id, b = sym[r].id;
    uint32_t prio;
    int32_t merged;
    if (a >= 0 && b >= 0) {
        if (!tok_pair_get(t, a, b, &merged, &prio, spm)) return false;
    } else {
        // A character outside the vocabulary can still start or end a longer token (SPM
        // only; byte-level merges never involve non-tokens): look the text up.
        if (!spm) return false;
        merged = tok_lookup(t, buf + sym[l].off, (size_t)sym[l].len + sym[r].len);
        if (merged < 0 || !(t->flags[merged] & TOK_F_MERGEABLE)) return false;
        prio = t->tok_prio[merged];
    }
    c->key = (uint64_t)prio << 32 | (uint32_t)l;
    c->merged = merged;
    return true;
}

#define TOK_SMALL 24 // up to this many symbols a linear scan beats the heap

static inline void apply_merge(tok_scratch *s, int32_t l, int32_t r, int32_t merged,
                               bool log_events, uint32_t *n_ev) {
    tok_sym *sym = s->sym;
    if (log_events) {
        s->ev[*n_ev] = (tok_event){sym[l].id, sym[r].id, sym[l].ev, sym[r].ev, sym[l].len};
        sym[l].ev = (int32_t)(*n_ev)++;
    }
    sym[l].id = merged;
    sym[l].len += sym[r].len;
    sym[r].len = 0;
    int32_t nx = sym[r].next;
    sym[l].next = nx;
    if (nx >= 0) sym[nx].prev = l;
}

// merge_all for short runs: candidate keys in a small array, the best found by a scan.
TOK_INLINE void merge_small(const anneal_tokenizer *t, tok_scratch *s, uint32_t n, bool log_events,
                            bool spm) {
    tok_sym *sym = s->sym;
    uint64_t key[TOK_SMALL];
    int32_t merged[TOK_SMALL];
    tok_cand c;
    for (uint32_t i = 0; i < n; i++) {
        key[i] = UINT64_MAX;
        if (i + 1 < n && find_merge(t, sym, s->buf, (int32_t)i, (int32_t)i + 1, &c, spm))
            key[i] = c.key, merged[i] = c.merged;
    }
    uint32_t n_ev = 0;
    for (;;) {
        uint64_t best = UINT64_MAX;
        uint32_t bi = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (key[i] < best) best = key[i], bi = i;
        }
        if (best == UINT64_MAX) break;
        int32_t l = (int32_t)bi, r = sym[l].next;
        apply_merge(s, l, r, merged[l], log_events, &n_ev);
        key[r] = UINT64_MAX;
        int32_t nx = sym[l].next, p = sym[l].prev;
        key[l] = UINT64_MAX;
        if (nx >= 0 && find_merge(t, sym, s->buf, l, nx, &c, spm))
            key[l] = c.key, merged[l] = c.merged;
        if (p >= 0) {
            key[p] = UINT64_MAX;
            if (find_merge(t, sym, s->buf, p, l, &c, spm)) key[p] = c.key, merged[p] = c.merged;
        }
    }
}

// Merges sym[0..n) (a linked list in order) until no adjacent pair forms a token, always
// taking the best candidate: lowest priority value, leftmost on ties.
TOK_INLINE void merge_all(const anneal_tokenizer *t, tok_scratch *s, uint32_t n, bool log_events,
                          bool spm) {
    if (n <= TOK_SMALL) {
        merge_small(t, s, n, log_events, spm);
        return;
    }
    tok_sym *sym = s->sym;
    tok_heap h = {s->heap, 0, sym};
    for (uint32_t i = 0; i + 1 < n; i++) {
        tok_cand c;
        if (find_merge(t, sym, s->buf, (int32_t)i, (int32_t)i + 1, &c, spm)) {
            sym[i].hpos = (int32_t)h.n;
            h.a[h.n++] = c;
        }
    }
    for (uint32_t i = h.n / 2; i-- > 0;)
        h_down(&h, i, h.a[i]);
    uint32_t n_ev = 0;
    while (h.n) {
        tok_cand top = h.a[0];
        int32_t l = (int32_t)(uint32_t)top.key, r = sym[l].next;
        h_remove(&h, l);
        if (sym[r].hpos >= 0) h_remove(&h, r);
        apply_merge(s, l, r, top.merged, log_events, &n_ev);
        int32_t nx = sym[l].next;
        tok_cand c;
        if (nx >= 0 && find_merge(t, sym, s->buf, l, nx, &c, spm)) h_set(&h, l, c);
        int32_t p = sym[l].prev;
        if (p >= 0) {
            if (find_merge(t, sym, s->buf, p, l, &c, spm))
                h_set(&h, p, c);
            else if (sym[p].hpos >= 0)
                h_remove(&h, p);
        }
    }
}

// SentencePiece gives UNUSED pieces back as the pieces they were merged from.
static void emit_resegmented(const anneal_tokenizer *t, tok_scratch *s, const tok_sym *y,
                             tok_out *o) {
    tok_reseg *st = s->stack;
    size_t top = 0;
    st[top++] = (tok_reseg){y->id, y->ev, y->off, y->len};
    while (top) {
        tok_reseg x = st[--top];
        if (x.id < 0) {
            emit_unknown(t, s->buf + x.off, x.len, o);
        } else if (x.ev >= 0 && t->type[x.id] == ANNEAL_TOK_TYPE_UNUSED) {
            const tok_event *e = &s->ev[x.ev];
            st[top++] =
                (tok_reseg){e->right_id, e->right_ev, x.off + e->left_len, x.len - e->left_len};
            st[top++] = (tok_reseg){e->left_id, e->left_ev, x.off, e->left_len};
        } else {
            emit(o, x.id);
        }
    }
}

// ---- SentencePiece-style BPE ----------------------------------------------------------
// Merges and emits the symbols sym[0..n) of one segment.
static void spm_segment(const anneal_tokenizer *t, tok_scratch *s, uint32_t n, tok_out *o) {
    if (n == 0) return;
    tok_sym *sym = s->sym;
    sym[n - 1].next = -1;
    merge_all(t, s, n, t->has_unused, true);
    for (int32_t i = 0; i >= 0; i = sym[i].next) {
        const tok_sym *y = &sym[i];
        if (y->id < 0)
            emit_unknown(t, s->buf + y->off, y->len, o);
        else if (t->has_unused && y->ev >= 0 && t->type[y->id] == ANNEAL_TOK_TYPE_UNUSED)
            emit_resegmented(t, s, y, o);
        else
            emit(o, y->id);
    }
}

// One raw-text fragment: spaces become U+2581 (and one is put in front when `prefix`),
// one symbol per UTF-8 character (per byte where the UTF-8 is invalid), then merges by score.
// When no token has "▁" right after another character (t->split_ws), no merge can join a
// character to a following "▁", so each word (a run of "▁" plus what follows up to the
// next "▁") is merged on its own: the same result, with small heaps that stay in cache.
static void spm_fragment(const anneal_tokenizer *t, tok_scratch *s, const char *text, size_t len,
                         bool prefix, tok_out *o) {
    char *buf = s->buf;
    tok_sym *sym = s->sym;
    uint32_t n = 0, pos = 0;
    bool prev_ws = false;
    if (prefix) {
        memcpy(buf, "\xE2\x96\x81", 3);
        sym[n++] = (tok_sym){t->space_id, 0, 3, -1, 1, -1, -1};
        pos = 3;
        prev_ws = true;
    }
    const uint8_t *u = (const uint8_t *)text;
    for (size_t i = 0; i < len;) {
        uint8_t c = u[i];
        int32_t id;
        uint32_t l;
        bool ws;
        if (c < 0x80) {
            id = t->ascii_id[c];
            ws = c == ' ';
            if (ws) {
                memcpy(buf + pos, "\xE2\x96\x81", 3);
                l = 3;
            } else {
                buf[pos] = (char)c;
                l = 1;
            }
            i++;
        } else {
            uint32_t cp = 0;
            size_t cl = anneal_utf8_decode(u + i, len - i, &cp);
            if (cl) {
                id = tok_cp_lookup(t, cp);
            } else {
                cl = 1;
                id = -1;
            }
            ws = cl == 3 && cp == 0x2581; // a literal "▁" is a space once escaped
            memcpy(buf + pos, u + i, cl);
            l = (uint32_t)cl;
            i += cl;
        }
        if (ws && !prev_ws && n && t->split_ws) {
            spm_segment(t, s, n, o);
            n = 0;
        }
        prev_ws = ws;
        sym[n] = (tok_sym){id, pos, l, (int32_t)n - 1, (int32_t)n + 1, -1, -1};
        n++;
        pos += l;
    }
    spm_segment(t, s, n, o);
}

// ---- byte-level BPE -------------------------------------------------------------------
static void bpe_word(const anneal_tokenizer *t, tok_scratch *s, const char *w, uint32_t n,
                     tok_out *o) {
    const uint8_t *u = (const uint8_t *)w;
    if (n == 1) {
        int32_t id = t->byte_id[u[0]];
        if (id >= 0)
            emit(o, id);
        else if (t->unk >= 0)
            emit(o, t->unk);
        return;
    }
    if (t->ignore_merges) {
        // llama3-style vocabularies take a piece that is itself a token as is.
        size_t k = 0;
        for (uint32_t i = 0; i < n; i++)
            k += anneal_utf8_encode(tok_byte_to_cp(u[i]), s->buf + k);
        int32_t id = tok_lookup(t, s->buf, k);
        if (id >= 0) {
            emit(o, id);
            return;
        }
    }
    tok_sym *sym = s->sym;
    for (uint32_t i = 0; i < n; i++)
        sym[i] = (tok_sym){t->byte_id[u[i]], i, 1, (int32_t)i - 1, (int32_t)i + 1, -1, -1};
    sym[n - 1].next = -1;
    merge_all(t, s, n, false, false);
    for (int32_t i = 0; i >= 0; i = sym[i].next) {
        if (sym[i].id >= 0)
            emit(o, sym[i].id);
        else if (t->unk >= 0)
            emit(o, t->unk);
    }
}

static anneal_status bpe_fragment(const anneal_tokenizer *t, tok_scratch *s, const char *text,
                                  size_t len, tok_out *o, anneal_err *err) {
    size_t n_spans = 0;
    anneal_status st =
        tok_pretok_split(t->pretok, text, len, &s->spans, &n_spans, &s->span_cap, err);
    if (st) return st;
    for (size_t i = 0; i < n_spans; i++)
        bpe_word(t, s, text + s->spans[i].off, s->spans[i].len, o);
    return ANNEAL_OK;
}

// ---- special tokens ----------------------------------------------------------------------
// The leftmost special token in text[from..len) that `mask` enables (1: user-defined,
// 2: control/unknown), longest at that position. False when there is none.
static bool find_special(const anneal_tokenizer *t, const char *text, size_t len, size_t from,
                         unsigned mask, size_t *mpos, size_t *mlen, int32_t *mid) {
    const uint8_t *u = (const uint8_t *)text;
    uint8_t want =
        (uint8_t)(((mask & 1) ? TOK_F_MATCH_ALWAYS : 0) | ((mask & 2) ? TOK_F_MATCH_PARSE : 0));
    for (size_t p = from; p < len; p++) {
        if (!(t->special_first[u[p]] & mask)) continue;
        for (uint32_t j = 0; j < t->n_special_lens; j++) {
            size_t l = t->special_lens[j];
            if (l > len - p) continue;
            int32_t id = tok_lookup(t, text + p, l);
            if (id >= 0 && (t->flags[id] & want)) {
                *mpos = p, *mlen = l, *mid = id;
                return true;
            }
        }
    }
    return false;
}

anneal_status anneal_tokenizer_encode(const anneal_tokenizer *t, const char *text, size_t len,
                                      unsigned flags, anneal_token *ids, size_t cap, size_t *n_ids,
                                      anneal_err *err) {
    *n_ids = 0;
    if (!text && len) return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "encode: text is NULL");
    if (!ids && cap) return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "encode: ids is NULL");
    if (len > TOK_MAX_INPUT)
        return anneal_err_set(err, ANNEAL_ERR_LIMIT,
                              "encode: input of %zu bytes (limit %u per call)", len, TOK_MAX_INPUT);
    tok_scratch *s = scratch_get();
    // SPM symbols: one per byte at most, plus the space prefixes (one per fragment; at most
    // one fragment per input byte). The work buffer holds the text with spaces escaped.
    if (!s || !scratch_reserve(s, len + 2, 3 * len + 6))
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "encode: out of memory for %zu bytes of input",
                              len);

    tok_out o = {ids, cap, 0};
    anneal_status st = ANNEAL_OK;
    if ((flags & ANNEAL_TOK_ADD_SPECIAL) && t->add_bos && t->bos >= 0) emit(&o, t->bos);

    unsigned mask = 1 | ((flags & ANNEAL_TOK_PARSE_SPECIAL) ? 2 : 0);
    bool any_special = (t->special_any & mask) != 0;

    bool prev_special = true; // SPM: a space prefix goes before the first text fragment
    size_t pos = 0;
    while (pos < len && !st) {
        size_t mpos = len, mlen = 0;
        int32_t mid = -1;
        bool found = any_special && find_special(t, text, len, pos, mask, &mpos, &mlen, &mid);
        if (mpos > pos) {
            if (t->kind == ANNEAL_TOK_SPM) {
                spm_fragment(t, s, text + pos, mpos - pos, t->add_space_prefix && prev_special, &o);
            } else {
                st = bpe_fragment(t, s, text + pos, mpos - pos, &o, err);
            }
            prev_special = false;
        }
        if (found) {
            emit(&o, mid);
            prev_special = true; // llama.cpp puts a space prefix after every special token
        }
        pos = found ? mpos + mlen : len;
    }
    if ((flags & ANNEAL_TOK_ADD_SPECIAL) && t->add_eos && t->eos >= 0) emit(&o, t->eos);
    if (s->sym_cap > TOK_SCRATCH_KEEP) scratch_release_big(s);
    if (st) return st;
    *n_ids = o.n;
    if (o.n > cap)
        return anneal_err_set(err, ANNEAL_ERR_RANGE,
                              "encode: %zu ids do not fit in a buffer of %zu", o.n, cap);
    return ANNEAL_OK;
}
