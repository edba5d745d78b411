// Vocabulary training: byte-level BPE ("gpt2") and SentencePiece-style BPE ("llama") learned
// from word counts with incremental pair counts and a lazy max-heap, written as GGUF keys.
#include "anneal/lineage.h"
#include "tokenizer/tok_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TR_MAX_VOCAB (1u << 21) // tokens per vocabulary
#define TR_MAX_INPUT (1u << 30) // bytes per add call
#define TR_MAX_WORD 1024u       // longer words are counted but not merged (quadratic cost)
#define TR_MAX_SPECIAL 256u     // bytes per special token
#define TR_MAX_WORDS (1u << 30) // distinct words
#define TR_NONE UINT32_MAX

static const char SPACE[] = "\xE2\x96\x81"; // U+2581, SentencePiece's escaped space

// ---- string map: open addressing over indices into a caller's array of tr_str ----------
typedef struct tr_str {
    const char *p;
    uint32_t len;
} tr_str;

typedef struct smap {
    uint32_t *slot; // index + 1; 0 = empty
    uint32_t *hash; // low 32 bits of each entry's hash, checked before the bytes
    uint32_t mask, n;
} smap;

static void smap_free(smap *m) {
    anneal_free(m->slot);
    anneal_free(m->hash);
    *m = (smap){0};
}

// Entry i of an array of structs that start with a tr_str.
static inline const tr_str *at(const void *base, size_t stride, uint32_t i) {
    return (const tr_str *)((const char *)base + (size_t)i * stride);
}

// Index of s[0..n) (hash h), or TR_NONE; *where gets the slot to insert at when absent.
static uint32_t smap_find(const smap *m, const void *base, size_t stride, const char *s, uint32_t n,
                          uint64_t h, uint32_t *where) {
    uint32_t i = (uint32_t)(h >> 32) & m->mask;
    for (;;) {
        uint32_t v = m->slot[i];
        if (!v) {
            if (where) *where = i;
            return TR_NONE;
        }
        const tr_str *e = at(base, stride, v - 1);
        if (m->hash[i] == (uint32_t)h && e->len == n && memcmp(e->p, s, n) == 0) return v - 1;
        i = (i + 1) & m->mask;
    }
}

// Makes room for one more entry (the table stays at most half full).
static bool smap_reserve(smap *m, const void *base, size_t stride) {
    if (m->slot && (m->n + 1) * 2 <= m->mask + 1) return true;
    uint32_t size = m->slot ? (m->mask + 1) * 2 : 1024;
    uint32_t *slot = anneal_calloc(size, sizeof *slot), *hash = anneal_malloc(size * sizeof *hash);
    if (!slot || !hash) {
        anneal_free(slot);
        anneal_free(hash);
        return false;
    }
    for (uint32_t i = 0; m->slot && i <= m->mask; i++) {
        if (!m->slot[i]) continue;
        const tr_str *e = at(base, stride, m->slot[i] - 1);
        uint32_t j = (uint32_t)(anneal_hash64(e->p, e->len) >> 32) & (size - 1);
        while (slot[j])
            j = (j + 1) & (size - 1);
        slot[j] = m->slot[i];
        hash[j] = m->hash[i];
    }
    anneal_free(m->slot);
    anneal_free(m->hash);
    m->slot = slot, m->hash = hash, m->mask = size - 1;
    return true;
}

static void smap_put(smap *m, uint32_t where, uint64_t h, uint32_t idx) {
    m->slot[where] = idx + 1;
    m->hash[where] = (uint32_t)h;
    m->n++;
}

// ---- trainer state ----------------------------------------------------------------------
typedef struct tr_word {
    tr_str s;       // the word's bytes (SPM: with spaces escaped as U+2581)
    uint64_t count; // occurrences
    uint32_t off;   // its symbols: sym[off .. off + n) once the merge phase starts
    uint32_t n;
} tr_word;

typedef struct tr_tok {
    tr_str s; // raw bytes (BPE) or UTF-8 with U+2581 (SPM)
} tr_tok;

typedef struct tr_pair {
    int32_t a, b;
    int64_t count;   // sum of the counts of the words it occurs in, once per occurrence
    int64_t queued;  // count of its newest heap entry; -1 when it has none
    uint32_t *words; // words that may hold the pair (a superset: stale entries are skipped)
    uint32_t n_words, cap_words;
    uint32_t stamp; // last merge step that changed count
    bool blocked;   // its text is a special token's: never merged
} tr_pair;

typedef struct tr_heap_ent {
    int64_t count;
    uint32_t pair;
} tr_heap_ent;

typedef struct tr_merge {
    int32_t a, b, result;
} tr_merge;

struct anneal_tokenizer_trainer {
    anneal_tok_kind kind;
    uint32_t vocab_size, min_frequency;
    double coverage;
    void (*progress)(void *, uint32_t, uint32_t);
    void *progress_ctx;
    char *pre;          // BPE pre-tokenizer name
    tok_pretok *pretok; // BPE
    tr_str *special;    // all special tokens, defaults first, in id order
    uint32_t n_special, n_default_special;
    uint64_t *special_next; // per special: next occurrence at or after the scan position

    anneal_arena arena; // word and token texts, special texts
    tr_word *words;
    uint32_t n_words, cap_words;
    smap wmap;
    anneal_tokenizer_train_stats stats;
    bool prefix_next; // SPM: the next text fragment gets the space prefix
    bool finished;

    char *buf; // scratch: escaped text, concatenations
    size_t buf_cap;
    tok_span *spans;
    size_t span_cap;

    // Merge phase.
    tr_tok *toks;
    uint32_t n_toks, cap_toks;
    smap tmap;
    uint32_t n_base; // BPE: 256 bytes; SPM: character tokens (ids below are characters)
    int32_t *sym;
    tr_pair *pairs;
    uint32_t n_pairs, cap_pairs;
    uint32_t *pmap; // (a, b) -> pair index + 1
    uint32_t pmap_mask;
    tr_heap_ent *heap;
    uint32_t n_heap, cap_heap;
    uint32_t *touched;
    uint32_t n_touched, cap_touched;
    uint32_t *wseen; // per word: last step it was updated
    tr_merge *merges;
    uint32_t n_merges, cap_merges;
    uint32_t step;
    uint32_t *cand; // per symbol of the word being updated (SPM candidates)
    uint8_t *fresh; // per symbol: made in this step
    uint32_t scratch_cap;
};

static anneal_status nomem(anneal_err *err) {
    return anneal_err_set(err, ANNEAL_ERR_NOMEM, "tokenizer training: out of memory");
}

// Grows *p (elements of size sz, capacity *cap) to hold at least need.
static bool grow(void *pp, uint32_t *cap, uint32_t need, size_t sz) {
    if (need <= *cap) return true;
    uint64_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    if (c > UINT32_MAX) c = UINT32_MAX;
    void *n = anneal_realloc_array(*(void **)pp, (size_t)c, sz);
    if (!n) return false;
    *(void **)pp = n;
    *cap = (uint32_t)c;
    return true;
}

static bool buf_reserve(anneal_tokenizer_trainer *tr, size_t n) {
    if (n <= tr->buf_cap) return true;
    size_t c = n < 4096 ? 4096 : n + n / 2;
    char *p = anneal_realloc(tr->buf, c);
    if (!p) return false;
    tr->buf = p, tr->buf_cap = c;
    return true;
}

// ---- options ----------------------------------------------------------------------------
static bool valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = anneal_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (!l) return false;
        i += l;
    }
    return true;
}

// True when s is the text of a base token: a byte's printable character (BPE), or "▁" or
// "<0xNN>" (SPM).
static bool is_base_text(anneal_tok_kind kind, const char *s, size_t n) {
    if (kind == ANNEAL_TOK_SPM) {
        if (n == 3 && memcmp(s, SPACE, 3) == 0) return true;
        return n == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' &&
               strchr("0123456789ABCDEF", s[3]) && strchr("0123456789ABCDEF", s[4]) && s[3] && s[4];
    }
    uint32_t cp;
    size_t l = anneal_utf8_decode((const uint8_t *)s, n, &cp);
    return l == n && tok_cp_to_byte(cp) >= 0;
}

void anneal_tokenizer_trainer_free(anneal_tokenizer_trainer *tr) {
    if (!tr) return;
    tok_pretok_free(tr->pretok);
    anneal_free(tr->pre);
    anneal_free(tr->special);
    anneal_free(tr->special_next);
    anneal_arena_free(&tr->arena);
    anneal_free(tr->words);
    smap_free(&tr->wmap);
    anneal_free(tr->buf);
    anneal_free(tr->spans);
    anneal_free(tr->toks);
    smap_free(&tr->tmap);
    anneal_free(tr->sym);
    for (uint32_t i = 0; i < tr->n_pairs; i++)
        anneal_free(tr->pairs[i].words);
    anneal_free(tr->pairs);
    anneal_free(tr->pmap);
    anneal_free(tr->heap);
    anneal_free(tr->touched);
    anneal_free(tr->wseen);
    anneal_free(tr->merges);
    anneal_free(tr->cand);
    anneal_free(tr->fresh);
    anneal_free(tr);
}

anneal_status anneal_tokenizer_trainer_new(const anneal_tokenizer_train_opts *o,
                                           anneal_tokenizer_trainer **out, anneal_err *err) {
    *out = NULL;
    if (!o) return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "tokenizer training: no options");
    if (o->kind != ANNEAL_TOK_BPE && o->kind != ANNEAL_TOK_SPM)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "tokenizer training: unknown vocabulary kind %d", (int)o->kind);
    if (o->n_specials && !o->specials)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "tokenizer training: specials is NULL");
    if (o->n_specials > TR_MAX_VOCAB)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "specials: %zu tokens (limit %u)",
                              o->n_specials, TR_MAX_VOCAB);
    double cov = o->character_coverage == 0 ? 0.9995 : o->character_coverage;
    if (!(cov > 0 && cov <= 1))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "character_coverage %g is outside (0, 1]", o->character_coverage);
    bool spm = o->kind == ANNEAL_TOK_SPM;
    static const char *const bpe_defaults[] = {"<|endoftext|>"};
    static const char *const spm_defaults[] = {"<unk>", "<s>", "</s>"};
    const char *const *defs = spm ? spm_defaults : bpe_defaults;
    uint32_t n_def = spm ? 3 : 1;
    uint64_t n_special = n_def + (uint64_t)o->n_specials;
    // The smallest vocabulary: specials, the 256 byte tokens, and for SPM the "▁" character.
    uint64_t base = n_special + 256 + (spm ? 1 : 0);
    if (o->vocab_size < base || o->vocab_size > TR_MAX_VOCAB)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "vocab_size %u is outside %" PRIu64 "..%u (%" PRIu64
                              " special tokens + 256 byte tokens%s)",
                              o->vocab_size, base, TR_MAX_VOCAB, n_special,
                              spm ? " + the space character" : "");

    anneal_tokenizer_trainer *tr = anneal_calloc(1, sizeof *tr);
    if (!tr) return nomem(err);
    anneal_arena_init(&tr->arena, 1 << 20, 0);
    tr->kind = o->kind;
    tr->vocab_size = o->vocab_size;
    tr->min_frequency = o->min_frequency ? o->min_frequency : 2;
    tr->coverage = cov;
    tr->progress = o->progress;
    tr->progress_ctx = o->progress_ctx;
    tr->prefix_next = true;
    anneal_status st = ANNEAL_OK;
    tr->special = anneal_calloc((size_t)n_special, sizeof *tr->special);
    tr->special_next = anneal_calloc((size_t)n_special, sizeof *tr->special_next);
    if (!tr->special || !tr->special_next) {
        st = nomem(err);
        goto fail;
    }
    for (uint64_t i = 0; i < n_special; i++) {
        const char *s = i < n_def ? defs[i] : o->specials[i - n_def];
        size_t n = s ? strlen(s) : 0;
        size_t k = i - n_def; // index among the caller's specials
        if (!s || n == 0) {
            st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "specials[%zu] is empty", k);
            goto fail;
        }
        if (n > TR_MAX_SPECIAL || !valid_utf8(s, n)) {
            st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "specials[%zu] '%.64s' is %s", k, s,
                                n > TR_MAX_SPECIAL ? "longer than 256 bytes" : "not valid UTF-8");
            goto fail;
        }
        if (is_base_text(o->kind, s, n)) {
            st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                "specials[%zu] '%s' is the text of a %s token", k, s,
                                spm ? "space or byte" : "byte");
            goto fail;
        }
        for (uint64_t j = 0; j < i; j++)
            if (tr->special[j].len == n && memcmp(tr->special[j].p, s, n) == 0) {
                st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                    "specials[%zu] '%s' is given twice%s", k, s,
                                    j < n_def ? " (it is a default special token)" : "");
                goto fail;
            }
        char *c = anneal_arena_strndup(&tr->arena, s, n);
        if (!c) {
            st = nomem(err);
            goto fail;
        }
        tr->special[i] = (tr_str){c, (uint32_t)n};
    }
    tr->n_special = (uint32_t)n_special;
    tr->n_default_special = n_def;
    if (!spm) {
        const char *pre = o->pre && *o->pre ? o->pre : "gpt-2";
        if ((st = tok_pretok_new(pre, &tr->pretok, err))) goto fail;
        tr->pre = anneal_strndup(pre, strlen(pre));
        if (!tr->pre) {
            st = nomem(err);
            goto fail;
        }
    }
    *out = tr;
    return ANNEAL_OK;
fail:
    anneal_tokenizer_trainer_free(tr);
    return st;
}

// ---- counting words ---------------------------------------------------------------------
static anneal_status count_word(anneal_tokenizer_trainer *tr, const char *s, size_t n,
                                anneal_err *err) {
    tr->stats.words++;
    uint64_t h = anneal_hash64(s, n);
    uint32_t where;
    if (!smap_reserve(&tr->wmap, tr->words, sizeof *tr->words)) return nomem(err);
    uint32_t i = smap_find(&tr->wmap, tr->words, sizeof *tr->words, s, (uint32_t)n, h, &where);
    if (i != TR_NONE) {
        tr->words[i].count++;
        return ANNEAL_OK;
    }
    if (tr->n_words >= TR_MAX_WORDS)
        return anneal_err_set(err, ANNEAL_ERR_LIMIT,
                              "tokenizer training: more than %u distinct words", TR_MAX_WORDS);
    if (!grow(&tr->words, &tr->cap_words, tr->n_words + 1, sizeof *tr->words)) return nomem(err);
    char *c = anneal_arena_alloc(&tr->arena, n, 1);
    if (!c) return nomem(err);
    memcpy(c, s, n);
    tr->words[tr->n_words] = (tr_word){{c, (uint32_t)n}, 1, 0, 0};
    smap_put(&tr->wmap, where, h, tr->n_words++);
    return ANNEAL_OK;
}

// SPM: spaces become "▁" (one more in front when `prefix`); words are a run of "▁" plus
// what follows up to the next "▁" or line break, and runs of line breaks. The encoder
// merges within such runs too (it splits before each "▁" run), so no learned token ever
// holds a character followed by "▁", which keeps its fast per-word path.
static anneal_status spm_fragment(anneal_tokenizer_trainer *tr, const char *text, size_t len,
                                  bool prefix, anneal_err *err) {
    if (!buf_reserve(tr, 3 * len + 3)) return nomem(err);
    char *b = tr->buf;
    size_t n = 0;
    if (prefix) memcpy(b, SPACE, 3), n = 3;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ')
            memcpy(b + n, SPACE, 3), n += 3;
        else
            b[n++] = text[i];
    }
    const uint8_t *u = (const uint8_t *)b;
    size_t start = 0;
    int prev = -1; // class of the previous character: 0 other, 1 space, 2 line break
    for (size_t i = 0; i < n;) {
        uint32_t cp = 0;
        size_t l = anneal_utf8_decode(u + i, n - i, &cp);
        if (!l) l = 1, cp = 0xFFFD;
        int cls = cp == 0x2581 ? 1 : (cp == '\n' || cp == '\r') ? 2 : 0;
        bool cut = prev >= 0 && ((cls == 1 && prev != 1) || ((cls == 2) != (prev == 2)));
        if (cut) {
            anneal_status st = count_word(tr, b + start, i - start, err);
            if (st) return st;
            start = i;
        }
        prev = cls;
        i += l;
    }
    if (n > start) return count_word(tr, b + start, n - start, err);
    return ANNEAL_OK;
}

static anneal_status bpe_fragment(anneal_tokenizer_trainer *tr, const char *text, size_t len,
                                  anneal_err *err) {
    size_t n = 0;
    anneal_status st = tok_pretok_split(tr->pretok, text, len, &tr->spans, &n, &tr->span_cap, err);
    for (size_t i = 0; i < n && !st; i++)
        st = count_word(tr, text + tr->spans[i].off, tr->spans[i].len, err);
    return st;
}

static anneal_status fragment(anneal_tokenizer_trainer *tr, const char *text, size_t len,
                              anneal_err *err) {
    if (len == 0) return ANNEAL_OK; // the encoder skips empty fragments (and keeps the prefix)
    if (tr->kind == ANNEAL_TOK_SPM) {
        bool prefix = tr->prefix_next;
        tr->prefix_next = false;
        return spm_fragment(tr, text, len, prefix, err);
    }
    return bpe_fragment(tr, text, len, err);
}

anneal_status anneal_tokenizer_trainer_add(anneal_tokenizer_trainer *tr, const char *text,
                                           size_t len, bool doc_start, anneal_err *err) {
    if (tr->finished)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "tokenizer training: text added after finish");
    if (!text && len)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "trainer_add: text is NULL");
    if (len > TR_MAX_INPUT)
        return anneal_err_set(err, ANNEAL_ERR_LIMIT,
                              "trainer_add: %zu bytes in one call (limit %u)", len, TR_MAX_INPUT);
    if (doc_start) tr->prefix_next = true;
    tr->stats.bytes += len;
    // Special tokens are cut out so that no merge learns across or inside them. Each
    // special's next occurrence is remembered, so the text is scanned once per special.
    for (uint32_t k = 0; k < tr->n_special; k++)
        tr->special_next[k] = UINT64_MAX; // not searched yet
    size_t pos = 0;
    while (pos < len) {
        size_t best = len, best_len = 0;
        for (uint32_t k = 0; k < tr->n_special; k++) {
            const tr_str *s = &tr->special[k];
            if (tr->special_next[k] == UINT64_MAX || tr->special_next[k] < pos) {
                const char *f =
                    s->len <= len - pos ? memmem(text + pos, len - pos, s->p, s->len) : NULL;
                tr->special_next[k] = f ? (uint64_t)(f - text) : len;
            }
            size_t at_k = (size_t)tr->special_next[k];
            if (at_k < len && (at_k < best || (at_k == best && s->len > best_len)))
                best = at_k, best_len = s->len;
        }
        anneal_status st = fragment(tr, text + pos, best - pos, err);
        if (st) return st;
        if (best_len) tr->prefix_next = true; // the encoder adds the prefix after a special
        pos = best + best_len;
        if (best_len == 0) break;
    }
    return ANNEAL_OK;
}

// ---- merge phase: tokens, pairs, heap ---------------------------------------------------
// The id of the token with text s[0..n) (kept, not copied), made when absent (*existed
// says which); TR_NONE when out of memory.
static uint32_t intern(anneal_tokenizer_trainer *tr, const char *s, uint32_t n, bool *existed) {
    *existed = false;
    if (!smap_reserve(&tr->tmap, tr->toks, sizeof *tr->toks)) return TR_NONE;
    uint64_t h = anneal_hash64(s, n);
    uint32_t where = 0;
    uint32_t id = smap_find(&tr->tmap, tr->toks, sizeof *tr->toks, s, n, h, &where);
    if (id != TR_NONE) {
        *existed = true;
        return id;
    }
    if (!grow(&tr->toks, &tr->cap_toks, tr->n_toks + 1, sizeof *tr->toks)) return TR_NONE;
    tr->toks[tr->n_toks].s = (tr_str){s, n};
    smap_put(&tr->tmap, where, h, tr->n_toks);
    return tr->n_toks++;
}

static uint32_t find_token(const anneal_tokenizer_trainer *tr, const char *s, uint32_t n) {
    return smap_find(&tr->tmap, tr->toks, sizeof *tr->toks, s, n, anneal_hash64(s, n), NULL);
}

static inline uint32_t pair_slot(uint32_t mask, int32_t a, int32_t b) {
    return tok_pair_hash((uint32_t)a, (uint32_t)b) & mask;
}

static bool pmap_grow(anneal_tokenizer_trainer *tr) {
    if (tr->pmap && tr->pmap_mask >= (1u << 30)) return false; // 2^31 slots at most
    uint32_t size = tr->pmap ? (tr->pmap_mask + 1) * 2 : 1u << 16;
    uint32_t *m = anneal_calloc(size, sizeof *m);
    if (!m) return false;
    for (uint32_t i = 0; i < tr->n_pairs; i++) {
        uint32_t j = pair_slot(size - 1, tr->pairs[i].a, tr->pairs[i].b);
        while (m[j])
            j = (j + 1) & (size - 1);
        m[j] = i + 1;
    }
    anneal_free(tr->pmap);
    tr->pmap = m, tr->pmap_mask = size - 1;
    return true;
}

// The pair (a, b), made with count 0 when absent; TR_NONE when out of memory.
static uint32_t get_pair(anneal_tokenizer_trainer *tr, int32_t a, int32_t b) {
    uint32_t j = pair_slot(tr->pmap_mask, a, b);
    for (;;) {
        uint32_t v = tr->pmap[j];
        if (!v) break;
        if (tr->pairs[v - 1].a == a && tr->pairs[v - 1].b == b) return v - 1;
        j = (j + 1) & tr->pmap_mask;
    }
    if ((tr->n_pairs + 1) * 2 > tr->pmap_mask + 1) {
        if (!pmap_grow(tr)) return TR_NONE;
        return get_pair(tr, a, b);
    }
    if (!grow(&tr->pairs, &tr->cap_pairs, tr->n_pairs + 1, sizeof *tr->pairs)) return TR_NONE;
    tr->pairs[tr->n_pairs] = (tr_pair){.a = a, .b = b, .queued = -1, .stamp = TR_NONE};
    tr->pmap[j] = tr->n_pairs + 1;
    return tr->n_pairs++;
}

static uint32_t lookup_pair(const anneal_tokenizer_trainer *tr, int32_t a, int32_t b) {
    uint32_t j = pair_slot(tr->pmap_mask, a, b);
    for (;;) {
        uint32_t v = tr->pmap[j];
        if (!v) return TR_NONE;
        if (tr->pairs[v - 1].a == a && tr->pairs[v - 1].b == b) return v - 1;
        j = (j + 1) & tr->pmap_mask;
    }
}

// Heap order: the higher count first, then the smaller (left id, right id).
static inline bool ent_before(const anneal_tokenizer_trainer *tr, tr_heap_ent x, tr_heap_ent y) {
    if (x.count != y.count) return x.count > y.count;
    const tr_pair *p = &tr->pairs[x.pair], *q = &tr->pairs[y.pair];
    if (p->a != q->a) return p->a < q->a;
    return p->b < q->b;
}

static void heap_down(anneal_tokenizer_trainer *tr, uint32_t i) {
    tr_heap_ent e = tr->heap[i];
    for (;;) {
        uint32_t l = 2 * i + 1;
        if (l >= tr->n_heap) break;
        uint32_t m = l;
        if (l + 1 < tr->n_heap && ent_before(tr, tr->heap[l + 1], tr->heap[l])) m = l + 1;
        if (!ent_before(tr, tr->heap[m], e)) break;
        tr->heap[i] = tr->heap[m];
        i = m;
    }
    tr->heap[i] = e;
}

static bool heap_push(anneal_tokenizer_trainer *tr, uint32_t pair) {
    if (!grow(&tr->heap, &tr->cap_heap, tr->n_heap + 1, sizeof *tr->heap)) return false;
    tr_heap_ent e = {tr->pairs[pair].count, pair};
    tr->pairs[pair].queued = e.count;
    uint32_t i = tr->n_heap++;
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!ent_before(tr, e, tr->heap[p])) break;
        tr->heap[i] = tr->heap[p];
        i = p;
    }
    tr->heap[i] = e;
    return true;
}

static tr_heap_ent heap_pop(anneal_tokenizer_trainer *tr) {
    tr_heap_ent top = tr->heap[0];
    tr->heap[0] = tr->heap[--tr->n_heap];
    if (tr->n_heap) heap_down(tr, 0);
    return top;
}

// The most frequent pair that may be merged (TR_NONE when none reaches min_frequency).
// Entries are lazy: a pair's count only grows through a new entry, so an entry whose count
// is stale is either older than the pair's newest one (dropped) or too high (re-queued
// with the current count).
static uint32_t best_pair(anneal_tokenizer_trainer *tr, bool *oom) {
    while (tr->n_heap) {
        tr_heap_ent e = heap_pop(tr);
        tr_pair *p = &tr->pairs[e.pair];
        if (p->blocked || e.count != p->queued) continue;
        if (p->count == e.count) {
            if (p->count < (int64_t)tr->min_frequency) return TR_NONE;
            p->queued = -1;
            return e.pair;
        }
        p->queued = -1;
        if (p->count >= (int64_t)tr->min_frequency && !heap_push(tr, e.pair)) {
            *oom = true;
            return TR_NONE;
        }
    }
    return TR_NONE;
}

// Adds delta to the pair (a, b); `fresh` pairs (next to a symbol made in this step) also
// record word w.
static bool pair_add(anneal_tokenizer_trainer *tr, int32_t a, int32_t b, int64_t delta, bool fresh,
                     uint32_t w) {
    uint32_t i = get_pair(tr, a, b);
    if (i == TR_NONE) return false;
    tr_pair *p = &tr->pairs[i];
    p->count += delta;
    if (p->stamp != tr->step) {
        p->stamp = tr->step;
        if (!grow(&tr->touched, &tr->cap_touched, tr->n_touched + 1, sizeof *tr->touched))
            return false;
        tr->touched[tr->n_touched++] = i;
    }
    if (fresh && (p->n_words == 0 || p->words[p->n_words - 1] != w)) {
        if (!grow(&p->words, &p->cap_words, p->n_words + 1, sizeof *p->words)) return false;
        p->words[p->n_words++] = w;
    }
    return true;
}

// ---- applying a merge to one word -------------------------------------------------------
static bool scratch_reserve(anneal_tokenizer_trainer *tr, uint32_t n) {
    if (n <= tr->scratch_cap) return true;
    uint32_t *c = anneal_realloc_array(tr->cand, n, sizeof *c);
    if (c) tr->cand = c;
    uint8_t *f = anneal_realloc(tr->fresh, n);
    if (f) tr->fresh = f;
    if (!c || !f) return false;
    tr->scratch_cap = n;
    return true;
}

// True when the texts of tokens a and b joined are the text t[0..tn).
static inline bool joins_to(const anneal_tokenizer_trainer *tr, int32_t a, int32_t b, const char *t,
                            uint32_t tn) {
    if (a < 0 || b < 0) return false;
    const tr_str *x = &tr->toks[a].s, *y = &tr->toks[b].s;
    return x->len + y->len == tn && memcmp(x->p, t, x->len) == 0 &&
           memcmp(y->p, t + x->len, y->len) == 0;
}

// SPM: the merged token whose text is a's and b's joined, or TR_NONE.
static uint32_t spm_join(anneal_tokenizer_trainer *tr, int32_t a, int32_t b) {
    if (a < 0 || b < 0) return TR_NONE;
    const tr_str *x = &tr->toks[a].s, *y = &tr->toks[b].s;
    size_t n = (size_t)x->len + y->len;
    if (!buf_reserve(tr, n)) return TR_NONE;
    memcpy(tr->buf, x->p, x->len);
    memcpy(tr->buf + x->len, y->p, y->len);
    uint32_t id = find_token(tr, tr->buf, (uint32_t)n);
    return id != TR_NONE && id >= tr->n_base ? id : TR_NONE;
}

// SPM: runs the encoder's merge loop on the symbols s[0..n) now that token t exists. Before
// this step no adjacent pair joined to a token (the loop had run to its end with the older
// tokens), so the first candidates are the pairs that make t; each merge may enable pairs
// that make older tokens, and those go first, as the encoder takes the highest score
// (the oldest token) and the leftmost pair on ties. Returns the new symbol count.
static uint32_t spm_apply(anneal_tokenizer_trainer *tr, int32_t *s, uint32_t n, uint32_t t) {
    uint32_t *cand = tr->cand;
    const tr_str *ts = &tr->toks[t].s;
    for (uint32_t i = 0; i + 1 < n; i++)
        cand[i] = joins_to(tr, s[i], s[i + 1], ts->p, ts->len) ? t : TR_NONE;
    if (n) cand[n - 1] = TR_NONE;
    for (;;) {
        uint32_t best = TR_NONE, bi = 0;
        for (uint32_t i = 0; i + 1 < n; i++)
            if (cand[i] < best) best = cand[i], bi = i;
        if (best == TR_NONE) break;
        s[bi] = (int32_t)best;
        tr->fresh[bi] = 1;
        memmove(s + bi + 1, s + bi + 2, (n - bi - 2) * sizeof *s);
        memmove(cand + bi + 1, cand + bi + 2, (n - bi - 2) * sizeof *cand);
        memmove(tr->fresh + bi + 1, tr->fresh + bi + 2, n - bi - 2);
        n--;
        cand[n - 1] = TR_NONE;
        if (bi > 0) cand[bi - 1] = spm_join(tr, s[bi - 1], s[bi]);
        if (bi + 1 < n) cand[bi] = spm_join(tr, s[bi], s[bi + 1]);
    }
    return n;
}

// BPE: replaces each (a, b), leftmost first, by m. Returns the new symbol count.
static uint32_t bpe_apply(anneal_tokenizer_trainer *tr, int32_t *s, uint32_t n, int32_t a,
                          int32_t b, int32_t m) {
    uint32_t o = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            s[o] = m;
            tr->fresh[o++] = 1;
            i++;
        } else {
            s[o] = s[i];
            tr->fresh[o++] = 0;
        }
    }
    return o;
}

// Re-segments word w for the merge of pair (a, b) into token m (SPM: every pair making m),
// moving its pair counts from the old segmentation to the new one.
static anneal_status update_word(anneal_tokenizer_trainer *tr, uint32_t w, int32_t a, int32_t b,
                                 int32_t m, anneal_err *err) {
    tr_word *wd = &tr->words[w];
    int32_t *s = tr->sym + wd->off;
    uint32_t n = wd->n;
    bool spm = tr->kind == ANNEAL_TOK_SPM;
    const tr_str *ms = &tr->toks[m].s;
    bool hit = false;
    for (uint32_t i = 0; i + 1 < n && !hit; i++)
        hit = spm ? joins_to(tr, s[i], s[i + 1], ms->p, ms->len) : s[i] == a && s[i + 1] == b;
    if (!hit) return ANNEAL_OK; // a stale entry of the pair's word list
    int64_t c = (int64_t)wd->count;
    for (uint32_t i = 0; i + 1 < n; i++)
        if (s[i] >= 0 && s[i + 1] >= 0 && !pair_add(tr, s[i], s[i + 1], -c, false, w))
            return nomem(err);
    memset(tr->fresh, 0, n);
    n = spm ? spm_apply(tr, s, n, (uint32_t)m) : bpe_apply(tr, s, n, a, b, m);
    wd->n = n;
    for (uint32_t i = 0; i + 1 < n; i++)
        if (s[i] >= 0 && s[i + 1] >= 0 &&
            !pair_add(tr, s[i], s[i + 1], c, tr->fresh[i] || tr->fresh[i + 1], w))
            return nomem(err);
    return ANNEAL_OK;
}

// Updates every word listed for pair p (once each in this step), then forgets the list.
static anneal_status update_pair_words(anneal_tokenizer_trainer *tr, uint32_t p, int32_t a,
                                       int32_t b, int32_t m, anneal_err *err) {
    // The list may grow while words are updated (a word can make the pair again only in
    // SPM's cascade, which never re-forms an existing pair), so it is detached first.
    uint32_t *list = tr->pairs[p].words, n = tr->pairs[p].n_words;
    tr->pairs[p].words = NULL;
    tr->pairs[p].n_words = tr->pairs[p].cap_words = 0;
    anneal_status st = ANNEAL_OK;
    for (uint32_t i = 0; i < n && !st; i++) {
        uint32_t w = list[i];
        if (tr->wseen[w] == tr->step) continue;
        tr->wseen[w] = tr->step;
        st = update_word(tr, w, a, b, m, err);
    }
    anneal_free(list);
    return st;
}

// ---- the merge phase --------------------------------------------------------------------
// The text a token is written with: BPE maps each byte to its printable character.
static size_t out_text(const anneal_tokenizer_trainer *tr, const tr_str *s, char *out) {
    if (tr->kind == ANNEAL_TOK_SPM) {
        memcpy(out, s->p, s->len);
        return s->len;
    }
    size_t k = 0;
    for (uint32_t i = 0; i < s->len; i++)
        k += anneal_utf8_encode(tok_byte_to_cp((uint8_t)s->p[i]), out + k);
    return k;
}

static bool is_special_text(const anneal_tokenizer_trainer *tr, const char *s, size_t n) {
    for (uint32_t k = 0; k < tr->n_special; k++)
        if (tr->special[k].len == n && memcmp(tr->special[k].p, s, n) == 0) return true;
    return false;
}

typedef struct cp_count {
    uint32_t cp;
    uint64_t count;
} cp_count;

static int cmp_cp_count(const void *x, const void *y) {
    const cp_count *a = x, *b = y;
    if (a->count != b->count) return a->count > b->count ? -1 : 1;
    return a->cp < b->cp ? -1 : a->cp > b->cp;
}

// SPM: counts characters over the words and makes tokens for the most frequent ones
// (always "▁"), until `coverage` of all occurrences is reached or `room` tokens are made.
static anneal_status spm_alphabet(anneal_tokenizer_trainer *tr, uint32_t room, anneal_err *err) {
    uint32_t cap = 1024, n = 0;
    cp_count *cc = anneal_calloc(cap, sizeof *cc);
    uint32_t *map = anneal_malloc(2 * cap * sizeof *map); // cp hash -> index + 1
    anneal_status st = ANNEAL_OK;
    if (!cc || !map) {
        st = nomem(err);
        goto done;
    }
    memset(map, 0, 2 * cap * sizeof *map);
    uint64_t total = 0;
    for (uint32_t w = 0; w < tr->n_words; w++) {
        const uint8_t *u = (const uint8_t *)tr->words[w].s.p;
        uint32_t len = tr->words[w].s.len;
        for (uint32_t i = 0; i < len;) {
            uint32_t cp;
            size_t l = anneal_utf8_decode(u + i, len - i, &cp);
            if (!l) { // invalid bytes always go to byte fallback
                i++;
                continue;
            }
            i += (uint32_t)l;
            total += tr->words[w].count;
            uint32_t j = tok_cp_hash(cp) & (2 * cap - 1);
            while (map[j] && cc[map[j] - 1].cp != cp)
                j = (j + 1) & (2 * cap - 1);
            if (map[j]) {
                cc[map[j] - 1].count += tr->words[w].count;
                continue;
            }
            if (n + 1 > cap) {
                // Double both tables and rehash.
                uint32_t nc = cap * 2;
                cp_count *c2 = anneal_realloc_array(cc, nc, sizeof *c2);
                if (c2) cc = c2;
                uint32_t *m2 = anneal_calloc(2 * (size_t)nc, sizeof *m2);
                if (!c2 || !m2) {
                    anneal_free(m2);
                    st = nomem(err);
                    goto done;
                }
                anneal_free(map);
                map = m2, cap = nc;
                for (uint32_t k = 0; k < n; k++) {
                    uint32_t q = tok_cp_hash(cc[k].cp) & (2 * cap - 1);
                    while (map[q])
                        q = (q + 1) & (2 * cap - 1);
                    map[q] = k + 1;
                }
                j = tok_cp_hash(cp) & (2 * cap - 1);
                while (map[j])
                    j = (j + 1) & (2 * cap - 1);
            }
            cc[n] = (cp_count){cp, tr->words[w].count};
            map[j] = ++n;
        }
    }
    qsort(cc, n, sizeof *cc, cmp_cp_count);
    // "▁" first, then by frequency (ties: smaller code point).
    char u8[4];
    bool existed;
    if (intern(tr, SPACE, 3, &existed) == TR_NONE) {
        st = nomem(err);
        goto done;
    }
    uint64_t covered = 0;
    uint32_t dropped = 0;
    for (uint32_t k = 0; k < n; k++) {
        if (cc[k].cp == 0x2581) {
            covered += cc[k].count;
            continue;
        }
        if (tr->n_toks >= room || (total && (double)covered / (double)total >= tr->coverage)) {
            dropped++;
            continue;
        }
        covered += cc[k].count;
        size_t l = anneal_utf8_encode(cc[k].cp, u8);
        char *c = anneal_arena_alloc(&tr->arena, l, 1);
        if (c) memcpy(c, u8, l);
        if (!c || intern(tr, c, (uint32_t)l, &existed) == TR_NONE) {
            st = nomem(err);
            goto done;
        }
    }
    tr->stats.n_chars_dropped = dropped;
done:
    anneal_free(cc);
    anneal_free(map);
    return st;
}

// Splits every word into its first symbols (bytes, or character tokens with -1 for a
// character without one), counts the pairs and fills the heap.
static anneal_status setup_symbols(anneal_tokenizer_trainer *tr, anneal_err *err) {
    uint64_t total = 0;
    for (uint32_t w = 0; w < tr->n_words; w++)
        if (tr->words[w].s.len <= TR_MAX_WORD) total += tr->words[w].s.len;
    if (total > INT32_MAX)
        return anneal_err_set(
            err, ANNEAL_ERR_LIMIT,
            "tokenizer training: %" PRIu64 " bytes of distinct words (limit 2 GiB)", total);
    tr->sym = anneal_malloc((total ? (size_t)total : 1) * sizeof *tr->sym);
    tr->wseen = anneal_malloc((tr->n_words ? tr->n_words : 1) * sizeof *tr->wseen);
    if (!tr->sym || !tr->wseen || !pmap_grow(tr) || !scratch_reserve(tr, TR_MAX_WORD + 1))
        return nomem(err);
    memset(tr->wseen, 0xFF, (tr->n_words ? tr->n_words : 1) * sizeof *tr->wseen);
    tr->step = 0;
    uint32_t off = 0;
    bool spm = tr->kind == ANNEAL_TOK_SPM;
    for (uint32_t w = 0; w < tr->n_words; w++) {
        tr_word *wd = &tr->words[w];
        wd->off = off;
        wd->n = 0;
        if (wd->s.len > TR_MAX_WORD) {
            tr->stats.long_words += wd->count;
            continue;
        }
        int32_t *s = tr->sym + off;
        const uint8_t *u = (const uint8_t *)wd->s.p;
        uint32_t n = 0;
        for (uint32_t i = 0; i < wd->s.len;) {
            if (!spm) {
                s[n++] = u[i++];
                continue;
            }
            uint32_t cp;
            size_t l = anneal_utf8_decode(u + i, wd->s.len - i, &cp);
            if (!l) l = 1;
            uint32_t id = find_token(tr, wd->s.p + i, (uint32_t)l);
            s[n++] = id == TR_NONE ? -1 : (int32_t)id;
            i += (uint32_t)l;
        }
        wd->n = n;
        off += n;
        for (uint32_t i = 0; i + 1 < n; i++)
            if (s[i] >= 0 && s[i + 1] >= 0 &&
                !pair_add(tr, s[i], s[i + 1], (int64_t)wd->count, true, w))
                return nomem(err);
    }
    for (uint32_t i = 0; i < tr->n_pairs; i++)
        if (tr->pairs[i].count >= (int64_t)tr->min_frequency && !heap_push(tr, i))
            return nomem(err);
    tr->n_touched = 0;
    return ANNEAL_OK;
}

// Learns merges until the vocabulary has `target` tokens (base included) or no pair is
// frequent enough.
static anneal_status learn(anneal_tokenizer_trainer *tr, uint32_t target, anneal_err *err) {
    bool spm = tr->kind == ANNEAL_TOK_SPM;
    uint32_t want = target > tr->n_toks ? target - tr->n_toks : 0, every = want / 200 + 1;
    uint32_t made = 0;
    while (tr->n_toks < target) {
        bool oom = false;
        uint32_t p = best_pair(tr, &oom);
        if (oom) return nomem(err);
        if (p == TR_NONE) break;
        int32_t a = tr->pairs[p].a, b = tr->pairs[p].b;
        const tr_str *x = &tr->toks[a].s, *y = &tr->toks[b].s;
        uint32_t n = x->len + y->len;
        char *c = anneal_arena_alloc(&tr->arena, n, 1);
        if (!c || !buf_reserve(tr, 2 * (size_t)n)) return nomem(err);
        memcpy(c, x->p, x->len);
        memcpy(c + x->len, y->p, y->len);
        tr_str joined = {c, n};
        if (is_special_text(tr, tr->buf, out_text(tr, &joined, tr->buf))) {
            tr->pairs[p].blocked = true; // the loader would see two tokens with one text
            continue;
        }
        // Byte-level BPE may reach an existing token through another split: a new merge,
        // no new token (as Hugging Face's trainer does). In SPM that cannot happen (the pair
        // would have merged as that token already); if it did, the pair is dropped.
        bool existed;
        uint32_t m = intern(tr, c, n, &existed);
        if (m == TR_NONE) return nomem(err);
        if (existed && spm) {
            tr->pairs[p].blocked = true;
            continue;
        }
        if (!grow(&tr->merges, &tr->cap_merges, tr->n_merges + 1, sizeof *tr->merges))
            return nomem(err);
        tr->merges[tr->n_merges++] = (tr_merge){a, b, (int32_t)m};
        tr->step++;
        tr->n_touched = 0;
        anneal_status st = ANNEAL_OK;
        if (spm) {
            // Every pair that makes m merges now, at m's score.
            const tr_str *ms = &tr->toks[m].s;
            const uint8_t *u = (const uint8_t *)ms->p;
            for (uint32_t k = 0; k < ms->len && !st;) {
                uint32_t cp;
                size_t l = anneal_utf8_decode(u + k, ms->len - k, &cp);
                k += l ? (uint32_t)l : 1;
                if (k >= ms->len) break;
                uint32_t l_id = find_token(tr, ms->p, k);
                uint32_t r_id = l_id == TR_NONE ? TR_NONE : find_token(tr, ms->p + k, ms->len - k);
                if (r_id == TR_NONE) continue;
                uint32_t q = lookup_pair(tr, (int32_t)l_id, (int32_t)r_id);
                if (q != TR_NONE)
                    st = update_pair_words(tr, q, (int32_t)l_id, (int32_t)r_id, (int32_t)m, err);
            }
        } else {
            st = update_pair_words(tr, p, a, b, (int32_t)m, err);
        }
        if (st) return st;
        for (uint32_t i = 0; i < tr->n_touched; i++) {
            tr_pair *q = &tr->pairs[tr->touched[i]];
            if (!q->blocked && q->count > q->queued && q->count >= (int64_t)tr->min_frequency &&
                !heap_push(tr, tr->touched[i]))
                return nomem(err);
        }
        made++;
        if (tr->progress && made % every == 0) tr->progress(tr->progress_ctx, made, want);
    }
    if (tr->progress) tr->progress(tr->progress_ctx, want, want);
    return ANNEAL_OK;
}

// ---- output -------------------------------------------------------------------------------
static anneal_status set_strs(anneal_gguf_writer *w, const char *key, const anneal_gguf_str *s,
                              uint64_t n) {
    anneal_gguf_value v = {.type = ANNEAL_GGUF_ARRAY};
    v.arr.elem = ANNEAL_GGUF_STRING;
    v.arr.n = n;
    v.arr.strs = s;
    return anneal_gguf_writer_set_value(w, key, &v);
}

static anneal_status set_scalars(anneal_gguf_writer *w, const char *key, anneal_gguf_type elem,
                                 const void *data, uint64_t n) {
    anneal_gguf_value v = {.type = ANNEAL_GGUF_ARRAY};
    v.arr.elem = elem;
    v.arr.n = n;
    v.arr.data = data;
    return anneal_gguf_writer_set_value(w, key, &v);
}

// Writes the vocabulary: BPE as bytes, merged tokens, specials (GPT-2's order); SPM as
// specials, byte tokens, merged pieces by decreasing score, characters (SentencePiece's).
static anneal_status write_vocab(anneal_tokenizer_trainer *tr, anneal_gguf_writer *w,
                                 anneal_err *err) {
    bool spm = tr->kind == ANNEAL_TOK_SPM;
    uint32_t nv = tr->n_special + (spm ? 256 : 0) + tr->n_toks;
    anneal_gguf_str *text = anneal_calloc(nv, sizeof *text);
    int32_t *type = anneal_calloc(nv, sizeof *type);
    float *score = anneal_calloc(nv, sizeof *score);
    anneal_gguf_str *merges = anneal_calloc(tr->n_merges ? tr->n_merges : 1, sizeof *merges);
    anneal_arena ar;
    anneal_arena_init(&ar, 1 << 20, 0);
    anneal_status st = ANNEAL_OK;
    if (!text || !type || !score || !merges) goto oom;
    uint32_t id = 0;
#define PUT_TOKEN(str, ty, sc)                                                                     \
    do {                                                                                           \
        text[id] = (str);                                                                          \
        type[id] = (ty);                                                                           \
        score[id] = (sc);                                                                          \
        id++;                                                                                      \
    } while (0)
    // Internal token i as written (BPE text mapped to printable characters).
    anneal_gguf_str *tok_out = anneal_calloc(tr->n_toks ? tr->n_toks : 1, sizeof *tok_out);
    if (!tok_out) goto oom;
    for (uint32_t i = 0; i < tr->n_toks; i++) {
        const tr_str *s = &tr->toks[i].s;
        char *o = anneal_arena_alloc(&ar, spm ? s->len : 2 * (size_t)s->len, 1);
        if (!o && s->len) {
            anneal_free(tok_out);
            goto oom;
        }
        tok_out[i] = (anneal_gguf_str){o, out_text(tr, s, o)};
    }
    if (spm) {
        for (uint32_t k = 0; k < tr->n_special; k++)
            PUT_TOKEN(((anneal_gguf_str){tr->special[k].p, tr->special[k].len}),
                      k == 0 ? ANNEAL_TOK_TYPE_UNKNOWN : ANNEAL_TOK_TYPE_CONTROL, 0.0f);
        for (int b = 0; b < 256; b++) {
            char *o = anneal_arena_alloc(&ar, 7, 1);
            if (!o) {
                anneal_free(tok_out);
                goto oom;
            }
            snprintf(o, 7, "<0x%02X>", b);
            PUT_TOKEN(((anneal_gguf_str){o, 6}), ANNEAL_TOK_TYPE_BYTE, 0.0f);
        }
        // Scores: merge i gets -i, so the encoder (highest score first) merges in the
        // learned order; characters come after with lower scores (they are never merged).
        for (uint32_t i = tr->n_base; i < tr->n_toks; i++)
            PUT_TOKEN(tok_out[i], ANNEAL_TOK_TYPE_NORMAL, -(float)(i - tr->n_base));
        for (uint32_t i = 0; i < tr->n_base; i++)
            PUT_TOKEN(tok_out[i], ANNEAL_TOK_TYPE_NORMAL, -(float)(tr->n_toks - tr->n_base + i));
    } else {
        for (uint32_t i = 0; i < tr->n_toks; i++)
            PUT_TOKEN(tok_out[i], ANNEAL_TOK_TYPE_NORMAL, 0.0f);
        for (uint32_t k = 0; k < tr->n_special; k++)
            PUT_TOKEN(((anneal_gguf_str){tr->special[k].p, tr->special[k].len}),
                      ANNEAL_TOK_TYPE_CONTROL, 0.0f);
        for (uint32_t i = 0; i < tr->n_merges; i++) {
            const anneal_gguf_str *l = &tok_out[tr->merges[i].a], *r = &tok_out[tr->merges[i].b];
            char *o = anneal_arena_alloc(&ar, (size_t)(l->len + r->len + 1), 1);
            if (!o) {
                anneal_free(tok_out);
                goto oom;
            }
            memcpy(o, l->ptr, (size_t)l->len);
            o[l->len] = ' ';
            memcpy(o + l->len + 1, r->ptr, (size_t)r->len);
            merges[i] = (anneal_gguf_str){o, l->len + r->len + 1};
        }
    }
#undef PUT_TOKEN
    anneal_free(tok_out);

    char name[64];
    snprintf(name, sizeof name, "anneal-%s-%u", spm ? "spm-bpe" : "bpe", nv);
    anneal_gguf_writer_set_str(w, "general.architecture", "llama");
    anneal_gguf_writer_set_str(w, "general.name", name);
    anneal_gguf_writer_set_str(w, "tokenizer.ggml.model", spm ? "llama" : "gpt2");
    anneal_gguf_writer_set_str(w, "tokenizer.ggml.pre", spm ? "default" : tr->pre);
    set_strs(w, "tokenizer.ggml.tokens", text, nv);
    if (spm) set_scalars(w, "tokenizer.ggml.scores", ANNEAL_GGUF_FLOAT32, score, nv);
    set_scalars(w, "tokenizer.ggml.token_type", ANNEAL_GGUF_INT32, type, nv);
    if (!spm) set_strs(w, "tokenizer.ggml.merges", merges, tr->n_merges);
    uint32_t bos = spm ? 1 : tr->n_toks, eos = spm ? 2 : tr->n_toks;
    anneal_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", bos);
    anneal_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", eos);
    if (spm) anneal_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    anneal_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", spm);
    st = anneal_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false);
    if (spm && !st) st = anneal_gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", true);
    if (st) anneal_err_set(err, st, "tokenizer training: setting the vocabulary keys failed");
    tr->stats.n_vocab = nv;
    goto done;
oom:
    st = nomem(err);
done:
    anneal_free(text);
    anneal_free(type);
    anneal_free(score);
    anneal_free(merges);
    anneal_arena_free(&ar);
    return st;
}

anneal_status anneal_tokenizer_trainer_finish(anneal_tokenizer_trainer *tr, anneal_gguf_writer *w,
                                              anneal_tokenizer_train_stats *stats,
                                              anneal_err *err) {
    if (tr->finished)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "tokenizer training: finish called twice on one trainer");
    if (!w) return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "tokenizer training: no writer");
    tr->finished = true;
    uint64_t t0 = anneal_time_ns();
    bool spm = tr->kind == ANNEAL_TOK_SPM;
    tr->stats.unique_words = tr->n_words;
    // Internal token budget: BPE bytes and merged tokens; SPM characters and merged pieces.
    uint32_t target = tr->vocab_size - tr->n_special - (spm ? 256 : 0);
    anneal_status st = ANNEAL_OK;
    if (spm) {
        if ((st = spm_alphabet(tr, target, err))) return st;
    } else {
        char *bytes = anneal_arena_alloc(&tr->arena, 256, 1);
        if (!bytes) return nomem(err);
        for (int b = 0; b < 256; b++) {
            bytes[b] = (char)b;
            bool existed;
            if (intern(tr, bytes + b, 1, &existed) == TR_NONE) return nomem(err);
        }
    }
    tr->n_base = tr->n_toks;
    if ((st = setup_symbols(tr, err)) || (st = learn(tr, target, err)) ||
        (st = write_vocab(tr, w, err)))
        return st;
    for (uint32_t i = 0; i < tr->n_words; i++)
        tr->stats.tokens += (uint64_t)tr->words[i].n * tr->words[i].count;
    tr->stats.n_merges = tr->n_merges;
    tr->stats.n_chars = tr->n_base;
    tr->stats.merge_seconds = (double)(anneal_time_ns() - t0) / 1e9;
    if (stats) *stats = tr->stats;
    return ANNEAL_OK;
}

// ---- lineage config -------------------------------------------------------------------
typedef struct jbuf {
    char *p;
    size_t n, cap;
    bool oom;
} jbuf;

static void jput(jbuf *j, const char *s, size_t n) {
    if (j->oom) return;
    if (j->n + n + 1 > j->cap) {
        size_t c = (j->n + n + 1) * 2;
        char *p = anneal_realloc(j->p, c);
        if (!p) {
            j->oom = true;
            return;
        }
        j->p = p, j->cap = c;
    }
    memcpy(j->p + j->n, s, n);
    j->n += n;
    j->p[j->n] = 0;
}

static void jputs(jbuf *j, const char *s) {
    jput(j, s, strlen(s));
}

// A JSON string literal of valid UTF-8 s[0..n).
static void jstr(jbuf *j, const char *s, size_t n) {
    jput(j, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        if (c == '"' || c == '\\') {
            e[0] = '\\', e[1] = (char)c;
            jput(j, e, 2);
        } else if (c < 0x20) {
            snprintf(e, sizeof e, "\\u%04x", c);
            jput(j, e, 6);
        } else {
            jput(j, s + i, 1);
        }
    }
    jput(j, "\"", 1);
}

// The training options as a JSON object (anneal.lineage.config). Caller frees; NULL on OOM.
static char *config_json(const anneal_tokenizer_trainer *tr) {
    jbuf j = {0};
    char num[64];
    bool spm = tr->kind == ANNEAL_TOK_SPM;
    jputs(&j, spm ? "{\"type\":\"spm-bpe\"" : "{\"type\":\"bpe\"");
    snprintf(num, sizeof num, ",\"vocab_size\":%u,\"min_frequency\":%u", tr->vocab_size,
             tr->min_frequency);
    jputs(&j, num);
    if (spm) {
        snprintf(num, sizeof num, ",\"character_coverage\":%.17g", tr->coverage);
        jputs(&j, num);
    } else {
        jputs(&j, ",\"pre\":");
        jstr(&j, tr->pre, strlen(tr->pre));
    }
    jputs(&j, ",\"specials\":[");
    for (uint32_t k = tr->n_default_special; k < tr->n_special; k++) {
        if (k > tr->n_default_special) jputs(&j, ",");
        jstr(&j, tr->special[k].p, tr->special[k].len);
    }
    jputs(&j, "]}");
    if (j.oom) {
        anneal_free(j.p);
        return NULL;
    }
    return j.p;
}

anneal_status anneal_tokenizer_trainer_write(anneal_tokenizer_trainer *tr, const char *path,
                                             const struct anneal_lineage *lin,
                                             anneal_tokenizer_train_stats *stats, anneal_err *err) {
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    if (!w) return nomem(err);
    char *config = NULL;
    anneal_status st = anneal_tokenizer_trainer_finish(tr, w, stats, err);
    if (!st) {
        anneal_lineage l = lin ? *lin : (anneal_lineage){0};
        if (!l.config) {
            config = config_json(tr);
            if (!config) st = nomem(err);
            l.config = config;
        }
        if (!st) st = anneal_lineage_set(w, &l, err);
    }
    if (!st) st = anneal_gguf_writer_write(w, path, err);
    anneal_free(config);
    anneal_gguf_writer_free(w);
    return st;
}
