// Tokenizer internals shared by vocab.c (load, tables), encode.c (SPM and byte-level BPE)
// and decode.c (pieces, streaming): the tokenizer struct, its hash tables and helpers.
#ifndef ANNEAL_TOKENIZER_INTERNAL_H
#define ANNEAL_TOKENIZER_INTERNAL_H

#include "anneal/tokenizer.h"
#include "tokenizer/pretok.h"

#include <string.h>

// Per-token flags (tok_flags).
enum {
    TOK_F_MERGEABLE = 1 << 0,    // may be the result of a merge (normal, user-defined, unused);
                                 // SentencePiece's "pieces_" set
    TOK_F_MATCH_ALWAYS = 1 << 1, // user-defined: split out of raw text on every encode
    TOK_F_MATCH_PARSE = 1 << 2,  // control / unknown: split out only with PARSE_SPECIAL
    TOK_F_HIDDEN = 1 << 3,       // decoded as "" unless `special`
};

// Text -> id map slot: open addressing, linear probing; id < 0 marks an empty slot.
typedef struct tok_text_slot {
    uint32_t hash; // low 32 bits of the 64-bit text hash, checked before comparing bytes
    int32_t id;
} tok_text_slot;

// (left id, right id) -> merge. Two layouts: vocabularies below 65535 tokens pack the pair
// into one 32-bit key with a 32-bit value (8-byte slots: the table stays in L2 cache);
// larger ones use 16-byte slots. `prio` orders merges, lower first: SPM maps the merged
// token's score to an order-reversed integer, byte-level BPE uses the merge rank.
typedef struct tok_pair_small {
    uint32_t key; // a << 16 | b; UINT32_MAX = empty
    uint32_t val; // SPM: merged id (prio in tok_prio); BPE: rank (merged in merge_result)
} tok_pair_small;

typedef struct tok_pair_wide {
    uint32_t a, b; // a == UINT32_MAX marks an empty slot
    int32_t merged;
    uint32_t prio;
} tok_pair_wide;

// Code point -> id of the single-character mergeable token (SPM initial symbols).
typedef struct tok_cp_slot {
    uint32_t cp; // UINT32_MAX = empty
    int32_t id;
} tok_cp_slot;

struct anneal_tokenizer {
    anneal_arena arena; // everything below lives here, except pretok
    anneal_tok_kind kind;
    char *pre;          // pre-tokenizer name ("default" for SPM)
    tok_pretok *pretok; // byte-level BPE only

    int32_t n_vocab;
    const char **text;  // [n_vocab] vocabulary text, NUL-terminated copies
    uint32_t *text_len; // [n_vocab]
    float *score;       // [n_vocab]
    uint8_t *type;      // [n_vocab] anneal_tok_type
    uint8_t *flags;     // [n_vocab] TOK_F_*
    const char **piece; // [n_vocab] decoded bytes (special rendering), not NUL-terminated
    uint32_t *piece_len;
    size_t max_piece; // longest piece in bytes

    tok_text_slot *tmap;
    uint32_t tmap_mask;
    bool pair_small;        // which layout pmap has
    tok_pair_small *pmap_s; // [pmap_mask + 1] when pair_small
    tok_pair_wide *pmap_w;  // [pmap_mask + 1] otherwise
    uint32_t pmap_mask;
    uint32_t *tok_prio;    // SPM: [n_vocab] merge priority of each token
    int32_t *merge_result; // BPE: [n_merges] id each merge produces
    tok_cp_slot *cmap;
    uint32_t cmap_mask;
    int32_t ascii_id[128]; // SPM: id of each ASCII char (' ' -> id of "▁"), -1 if none
    int32_t space_id;      // SPM: id of "▁", -1 if none
    int32_t byte_id[256];  // SPM: "<0xNN>" ids; BPE: id of the byte's mapped character

    // Special-token matching: bit 0 = some MATCH_ALWAYS token starts with this byte,
    // bit 1 = some MATCH_PARSE token does. Lengths (bytes) of special tokens, longest first.
    uint8_t special_first[256];
    uint8_t special_any; // OR of special_first
    uint32_t *special_lens;
    uint32_t n_special_lens;

    int32_t bos, eos, unk, pad;
    bool add_bos, add_eos, add_space_prefix, ignore_merges;
    bool has_unused; // SPM: some token is UNUSED (resegmented after merging)
    bool split_ws;   // SPM: no mergeable token has "▁" right after another character
};

static inline uint32_t tok_pair_hash(uint32_t a, uint32_t b) {
    uint64_t k = ((uint64_t)a << 32 | b) * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(k >> 32) ^ (uint32_t)k;
}

// Id of the token whose text is exactly s[0..n), any type; -1 if none.
static inline int32_t tok_lookup(const anneal_tokenizer *t, const char *s, size_t n) {
    uint64_t h = anneal_hash64(s, n);
    uint32_t i = (uint32_t)(h >> 32) & t->tmap_mask, h32 = (uint32_t)h;
    for (;;) {
        const tok_text_slot *e = &t->tmap[i];
        if (e->id < 0) return -1;
        if (e->hash == h32 && t->text_len[e->id] == n && memcmp(t->text[e->id], s, n) == 0)
            return e->id;
        i = (i + 1) & t->tmap_mask;
    }
}

// The merge of ids (a, b): true with the merged id and its priority.
// `spm` must equal t->kind == ANNEAL_TOK_SPM (a parameter so callers can make it constant).
static inline bool tok_pair_get(const anneal_tokenizer *t, int32_t a, int32_t b, int32_t *merged,
                                uint32_t *prio, bool spm) {
    uint32_t i = tok_pair_hash((uint32_t)a, (uint32_t)b) & t->pmap_mask;
    if (t->pair_small) {
        uint32_t key = (uint32_t)a << 16 | (uint32_t)b;
        for (;;) {
            const tok_pair_small *e = &t->pmap_s[i];
            if (e->key == key) {
                if (spm) {
                    *merged = (int32_t)e->val;
                    *prio = t->tok_prio[e->val];
                } else {
                    *merged = t->merge_result[e->val];
                    *prio = e->val;
                }
                return true;
            }
            if (e->key == UINT32_MAX) return false;
            i = (i + 1) & t->pmap_mask;
        }
    }
    for (;;) {
        const tok_pair_wide *e = &t->pmap_w[i];
        if (e->a == (uint32_t)a && e->b == (uint32_t)b) {
            *merged = e->merged;
            *prio = e->prio;
            return true;
        }
        if (e->a == UINT32_MAX) return false;
        i = (i + 1) & t->pmap_mask;
    }
}

static inline uint32_t tok_cp_hash(uint32_t cp) {
    return (cp * 0x9E3779B1u) >> 7;
}

// Id of the mergeable single-character token for code point cp; -1 if none.
static inline int32_t tok_cp_lookup(const anneal_tokenizer *t, uint32_t cp) {
    uint32_t i = tok_cp_hash(cp) & t->cmap_mask;
    for (;;) {
        const tok_cp_slot *e = &t->cmap[i];
        if (e->cp == cp) return e->id;
        if (e->cp == UINT32_MAX) return -1;
        i = (i + 1) & t->cmap_mask;
    }
}

// GPT-2's byte <-> printable code point map (bytes_to_unicode).
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp); // -1 when cp is not in the map

// Orders SPM scores as merge priorities: a higher score gives a lower priority value.
static inline uint32_t tok_score_prio(float score) {
    uint32_t u;
    memcpy(&u, &score, 4);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u); // monotonic float -> uint32
    return ~u;
}

#endif
