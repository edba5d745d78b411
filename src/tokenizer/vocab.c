// Vocabulary: reads tokenizer.ggml.* from a GGUF file, validates it, and builds the tables
// the encoders run on (text -> id map, pair -> merge table, code point map, decoded pieces).
#include "tokenizer/tok_build.h"
#include "tokenizer/tok_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define TOK_MAX_TOKENS (1u << 30)
#define TOK_MAX_TOKEN_BYTES (1u << 16)

// ---- GPT-2 byte <-> code point map ----------------------------------------------------
// Printable Latin-1 bytes stand for themselves; the 68 others (0-32, 127-160, 173) map, in
// byte order, to U+0100 and up, so every byte has a visible, non-space character.
uint32_t tok_byte_to_cp(uint8_t b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    if (b <= 32) return 256u + b;
    if (b <= 160) return 256u + 33u + (uint32_t)(b - 127);
    return 256u + 67u; // 173
}

int tok_cp_to_byte(uint32_t cp) {
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255))
        return (int)cp;
    if (cp < 256 || cp >= 256 + 68) return -1;
    uint32_t n = cp - 256;
    if (n < 33) return (int)n;
    if (n < 67) return (int)(127 + n - 33);
    return 173;
}

// ---- helpers ----------------------------------------------------------------------------
static uint32_t pow2_at_least(uint64_t n) {
    uint64_t p = 16;
    while (p < n)
        p <<= 1;
    return (uint32_t)p;
}

// Byte length of the UTF-8 character starting at s[0] (1 for invalid lead bytes), clipped to n.
static size_t char_len(const uint8_t *s, size_t n) {
    uint32_t cp;
    size_t l = anneal_utf8_decode(s, n, &cp);
    return l ? l : 1;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// The byte a "<0xNN>" token stands for, or -1.
static int byte_token_value(const char *s, size_t n) {
    if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static int32_t lookup_mergeable(const anneal_tokenizer *t, const char *s, size_t n) {
    int32_t id = tok_lookup(t, s, n);
    return id >= 0 && (t->flags[id] & TOK_F_MERGEABLE) ? id : -1;
}

// Allocates an empty pair table for n pairs (at most half full).
static bool pair_alloc(anneal_tokenizer *t, uint64_t n) {
    uint32_t size = pow2_at_least(n * 2);
    t->pair_small = t->n_vocab < 65535;
    size_t slot = t->pair_small ? sizeof(tok_pair_small) : sizeof(tok_pair_wide);
    void *p = anneal_arena_alloc(&t->arena, (size_t)size * slot, 64);
    if (!p) return false;
    memset(p, 0xFF, (size_t)size * slot);
    if (t->pair_small)
        t->pmap_s = p;
    else
        t->pmap_w = p;
    t->pmap_mask = size - 1;
    return true;
}

// Adds a -> b => merged; `val` is what a small slot keeps (SPM: merged id, BPE: rank).
// The first insertion of a pair wins (BPE: the lowest rank).
static void pair_insert(anneal_tokenizer *t, int32_t a, int32_t b, int32_t merged, uint32_t prio,
                        uint32_t val) {
    uint32_t i = tok_pair_hash((uint32_t)a, (uint32_t)b) & t->pmap_mask;
    if (t->pair_small) {
        uint32_t key = (uint32_t)a << 16 | (uint32_t)b;
        for (;;) {
            tok_pair_small *e = &t->pmap_s[i];
            if (e->key == UINT32_MAX) {
                *e = (tok_pair_small){key, val};
                return;
            }
            if (e->key == key) return;
            i = (i + 1) & t->pmap_mask;
        }
    }
    for (;;) {
        tok_pair_wide *e = &t->pmap_w[i];
        if (e->a == UINT32_MAX) {
            *e = (tok_pair_wide){(uint32_t)a, (uint32_t)b, merged, prio};
            return;
        }
        if (e->a == (uint32_t)a && e->b == (uint32_t)b) return;
        i = (i + 1) & t->pmap_mask;
    }
}

static anneal_status nomem(anneal_err *err, const char *what) {
    return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory building the tokenizer", what);
}

// ---- table builders ---------------------------------------------------------------------
static anneal_status build_text_map(anneal_tokenizer *t, const char *what, anneal_err *err) {
    uint32_t size = pow2_at_least((uint64_t)t->n_vocab * 2);
    t->tmap = anneal_arena_alloc(&t->arena, (size_t)size * sizeof *t->tmap, 64);
    if (!t->tmap) return nomem(err, what);
    memset(t->tmap, 0xFF, (size_t)size * sizeof *t->tmap);
    t->tmap_mask = size - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t n = t->text_len[id];
        if (n == 0) continue; // an empty token can never be matched; decode still works
        uint64_t h = anneal_hash64(t->text[id], n);
        uint32_t i = (uint32_t)(h >> 32) & t->tmap_mask;
        for (;;) {
            tok_text_slot *e = &t->tmap[i];
            if (e->id < 0) {
                e->hash = (uint32_t)h;
                e->id = id;
                break;
            }
            if (e->hash == (uint32_t)h && t->text_len[e->id] == n &&
                memcmp(t->text[e->id], t->text[id], n) == 0)
                return anneal_err_set(err, ANNEAL_ERR_FORMAT,
                                      "%s: tokenizer.ggml.tokens[%d] '%.*s' duplicates token %d",
                                      what, id, (int)(n > 64 ? 64 : n), t->text[id], e->id);
            i = (i + 1) & t->tmap_mask;
        }
    }
    return ANNEAL_OK;
}

// SPM: single characters -> ids, "<0xNN>" ids, and every (left, right) split of a
// mergeable token whose halves are both mergeable tokens.
static anneal_status build_spm_tables(anneal_tokenizer *t, const char *what, anneal_err *err) {
    uint32_t n_single = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!(t->flags[id] & TOK_F_MERGEABLE) || t->text_len[id] == 0) continue;
        if (char_len((const uint8_t *)t->text[id], t->text_len[id]) == t->text_len[id]) n_single++;
    }
    uint32_t csize = pow2_at_least((uint64_t)n_single * 2);
    t->cmap = anneal_arena_alloc(&t->arena, (size_t)csize * sizeof *t->cmap, 64);
    if (!t->cmap) return nomem(err, what);
    memset(t->cmap, 0xFF, (size_t)csize * sizeof *t->cmap);
    t->cmap_mask = csize - 1;
    for (int i = 0; i < 128; i++)
        t->ascii_id[i] = -1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const uint8_t *s = (const uint8_t *)t->text[id];
        size_t n = t->text_len[id];
        if (!(t->flags[id] & TOK_F_MERGEABLE) || n == 0) continue;
        uint32_t cp;
        if (anneal_utf8_decode(s, n, &cp) != n) continue;
        if (cp < 128) t->ascii_id[cp] = id;
        uint32_t i = tok_cp_hash(cp) & t->cmap_mask;
        while (t->cmap[i].cp != UINT32_MAX)
            i = (i + 1) & t->cmap_mask;
        t->cmap[i] = (tok_cp_slot){cp, id};
    }
    t->space_id = lookup_mergeable(t, "\xE2\x96\x81", 3);
    t->ascii_id[' '] = t->space_id; // spaces are escaped as U+2581 before merging

    for (int b = 0; b < 256; b++) {
        char name[7];
        static const char hex[] = "0123456789ABCDEF";
        name[0] = '<', name[1] = '0', name[2] = 'x', name[3] = hex[b >> 4], name[4] = hex[b & 15];
        name[5] = '>', name[6] = 0;
        t->byte_id[b] = tok_lookup(t, name, 6);
    }

    // Words can be merged separately unless a token continues a character with "▁".
    t->split_ws = true;
    for (int32_t id = 0; id < t->n_vocab && t->split_ws; id++) {
        const char *s = t->text[id];
        size_t n = t->text_len[id];
        if (!(t->flags[id] & TOK_F_MERGEABLE)) continue;
        for (size_t k = char_len((const uint8_t *)s, n); k + 3 <= n;
             k += char_len((const uint8_t *)s + k, n - k)) {
            if (memcmp(s + k, "\xE2\x96\x81", 3) == 0 &&
                !(k >= 3 && memcmp(s + k - 3, "\xE2\x96\x81", 3) == 0)) {
                t->split_ws = false;
                break;
            }
        }
    }

    t->tok_prio = anneal_arena_alloc(&t->arena, (size_t)t->n_vocab * sizeof *t->tok_prio, 64);
    if (!t->tok_prio) return nomem(err, what);
    for (int32_t id = 0; id < t->n_vocab; id++)
        t->tok_prio[id] = tok_score_prio(t->score[id]);

    // Two passes: count the pairs, then fill a table at most half full.
    uint64_t n_pairs = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && !pair_alloc(t, n_pairs)) return nomem(err, what);
        for (int32_t id = 0; id < t->n_vocab; id++) {
            const char *s = t->text[id];
            size_t n = t->text_len[id];
            if (!(t->flags[id] & TOK_F_MERGEABLE) || n < 2) continue;
            for (size_t k = char_len((const uint8_t *)s, n); k < n;
                 k += char_len((const uint8_t *)s + k, n - k)) {
                int32_t a = lookup_mergeable(t, s, k);
                if (a < 0) continue;
                int32_t b = lookup_mergeable(t, s + k, n - k);
                if (b < 0) continue;
                if (pass == 0)
                    n_pairs++;
                else
                    pair_insert(t, a, b, id, t->tok_prio[id], (uint32_t)id);
            }
        }
    }
    return ANNEAL_OK;
}

static anneal_status build_bpe_tables(anneal_tokenizer *t, const tok_source *src, const char *what,
                                      anneal_err *err) {
    for (int b = 0; b < 256; b++) {
        char u[4];
        size_t n = anneal_utf8_encode(tok_byte_to_cp((uint8_t)b), u);
        t->byte_id[b] = tok_lookup(t, u, n);
    }
    t->merge_result = anneal_arena_alloc(
        &t->arena, (size_t)(src->n_merges ? src->n_merges : 1) * sizeof(int32_t), 64);
    if (!t->merge_result || !pair_alloc(t, src->n_merges)) return nomem(err, what);

    char *cat = NULL;
    size_t cat_cap = 0;
    anneal_status st = ANNEAL_OK;
    for (uint32_t i = 0; i < src->n_merges && !st; i++) {
        const char *s = src->merges[i].ptr;
        size_t n = src->merges[i].len;
        const char *sp = n > 1 ? memchr(s + 1, ' ', n - 1) : NULL;
        if (!sp || sp + 1 == s + n) {
            st = anneal_err_set(
                err, ANNEAL_ERR_FORMAT,
                "%s: tokenizer.ggml.merges[%u] '%.*s' is not two tokens separated by a space", what,
                i, (int)(n > 64 ? 64 : n), s);
            break;
        }
        size_t la = (size_t)(sp - s), lb = n - la - 1;
        if (la + lb > cat_cap) {
            cat_cap = (la + lb) * 2;
            char *p = anneal_realloc(cat, cat_cap);
            if (!p) {
                st = nomem(err, what);
                break;
            }
            cat = p;
        }
        memcpy(cat, s, la);
        memcpy(cat + la, sp + 1, lb);
        int32_t a = tok_lookup(t, s, la), b = tok_lookup(t, sp + 1, lb),
                m = tok_lookup(t, cat, la + lb);
        const char *bad = a < 0 ? s : b < 0 ? sp + 1 : m < 0 ? cat : NULL;
        size_t bad_len = a < 0 ? la : b < 0 ? lb : la + lb;
        if (bad) {
            st = anneal_err_set(
                err, ANNEAL_ERR_FORMAT,
                "%s: tokenizer.ggml.merges[%u] '%.*s' references '%.*s', which is not "
                "in tokenizer.ggml.tokens",
                what, i, (int)(n > 64 ? 64 : n), s, (int)(bad_len > 64 ? 64 : bad_len), bad);
            break;
        }
        t->merge_result[i] = m;
        pair_insert(t, a, b, m, i, i);
    }
    anneal_free(cat);
    return st;
}

// Special-token matching: first-byte filter and the distinct lengths, longest first.
static anneal_status build_special(anneal_tokenizer *t, const char *what, anneal_err *err) {
    uint32_t n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->flags[id] & (TOK_F_MATCH_ALWAYS | TOK_F_MATCH_PARSE) && t->text_len[id]) n++;
    t->special_lens = anneal_arena_alloc(&t->arena, (size_t)(n ? n : 1) * sizeof(uint32_t), 4);
    if (!t->special_lens) return nomem(err, what);
    t->n_special_lens = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        uint8_t f = t->flags[id];
        uint32_t len = t->text_len[id];
        if (!(f & (TOK_F_MATCH_ALWAYS | TOK_F_MATCH_PARSE)) || !len) continue;
        t->special_first[(uint8_t)t->text[id][0]] |= (f & TOK_F_MATCH_ALWAYS) ? 1 : 2;
        t->special_any |= (f & TOK_F_MATCH_ALWAYS) ? 1 : 2;
        uint32_t j = 0;
        while (j < t->n_special_lens && t->special_lens[j] > len)
            j++;
        if (j < t->n_special_lens && t->special_lens[j] == len) continue;
        memmove(t->special_lens + j + 1, t->special_lens + j,
                (t->n_special_lens - j) * sizeof(uint32_t));
        t->special_lens[j] = len;
        t->n_special_lens++;
    }
    return ANNEAL_OK;
}

// Decoded bytes of each token, rendered as with `special` on (HIDDEN says when to drop it).
static anneal_status build_pieces(anneal_tokenizer *t, size_t total, const char *what,
                                  anneal_err *err) {
    char *blob = anneal_arena_alloc(&t->arena, total ? total : 1, 1);
    t->piece = anneal_arena_alloc(&t->arena, (size_t)t->n_vocab * sizeof *t->piece, 8);
    t->piece_len = anneal_arena_alloc(&t->arena, (size_t)t->n_vocab * sizeof *t->piece_len, 4);
    if (!blob || !t->piece || !t->piece_len) return nomem(err, what);
    size_t pos = 0;
    t->max_piece = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const uint8_t *s = (const uint8_t *)t->text[id];
        size_t n = t->text_len[id];
        char *o = blob + pos;
        size_t k = 0;
        uint8_t ty = t->type[id];
        int byte = ty == ANNEAL_TOK_TYPE_BYTE ? byte_token_value((const char *)s, n) : -1;
        bool raw = ty == ANNEAL_TOK_TYPE_USER_DEFINED || ty == ANNEAL_TOK_TYPE_CONTROL ||
                   ty == ANNEAL_TOK_TYPE_UNKNOWN || (ty == ANNEAL_TOK_TYPE_BYTE && byte < 0);
        if (byte >= 0) {
            o[k++] = (char)byte;
        } else if (raw) {
            memcpy(o, s, n);
            k = n;
        } else if (t->kind == ANNEAL_TOK_SPM) {
            for (size_t i = 0; i < n;) {
                if (i + 3 <= n && s[i] == 0xE2 && s[i + 1] == 0x96 && s[i + 2] == 0x81) {
                    o[k++] = ' ';
                    i += 3;
                } else {
                    o[k++] = (char)s[i++];
                }
            }
        } else {
            // Byte-level: each mapped character back to its byte; anything else verbatim.
            for (size_t i = 0; i < n;) {
                uint32_t cp;
                size_t l = anneal_utf8_decode(s + i, n - i, &cp);
                int b = l ? tok_cp_to_byte(cp) : -1;
                if (b >= 0) {
                    o[k++] = (char)b;
                    i += l;
                } else {
                    size_t c = l ? l : 1;
                    memcpy(o + k, s + i, c);
                    k += c;
                    i += c;
                }
            }
        }
        t->piece[id] = o;
        t->piece_len[id] = (uint32_t)k;
        if (k > t->max_piece) t->max_piece = k;
        pos += k;
    }
    return ANNEAL_OK;
}

static anneal_status special_id(int64_t v, int64_t def, const char *key, int32_t n_vocab,
                                const char *what, int32_t *out, anneal_err *err) {
    if (v == TOK_ID_ABSENT) {
        *out = def >= 0 && def < n_vocab ? (int32_t)def : -1;
        return ANNEAL_OK;
    }
    if (v < 0 || v >= n_vocab)
        return anneal_err_set(err, ANNEAL_ERR_RANGE,
                              "%s: %s = %" PRId64 " is outside the vocabulary (0..%d)", what, key,
                              v, n_vocab - 1);
    *out = (int32_t)v;
    return ANNEAL_OK;
}

// Pre-tokenizers whose vocabularies llama.cpp runs with ignore_merges (a whole piece that
// is a token is taken as is) and add_bos on by default.
static bool pre_is_llama3_like(const char *pre) {
    static const char *const names[] = {"llama3",  "llama-v3", "llama-bpe",
                                        "falcon3", "tekken",   NULL};
    for (int i = 0; names[i]; i++)
        if (strcmp(pre, names[i]) == 0) return true;
    return false;
}

anneal_status tok_build(const tok_source *src, anneal_tokenizer **out, anneal_err *err) {
    *out = NULL;
    const char *what = src->what ? src->what : "vocabulary";
    if (src->kind != ANNEAL_TOK_SPM && src->kind != ANNEAL_TOK_BPE)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s: unknown tokenizer kind %d", what,
                              (int)src->kind);
    if (src->n_tokens == 0)
        return anneal_err_set(err, ANNEAL_ERR_FORMAT, "%s: tokenizer.ggml.tokens is empty", what);
    if (src->n_tokens > TOK_MAX_TOKENS)
        return anneal_err_set(err, ANNEAL_ERR_LIMIT,
                              "%s: tokenizer.ggml.tokens has %u entries (limit %u)", what,
                              src->n_tokens, TOK_MAX_TOKENS);

    anneal_tokenizer *t = anneal_calloc(1, sizeof *t);
    if (!t) return nomem(err, what);
    anneal_arena_init(&t->arena, 1 << 20, 0);
    t->kind = src->kind;
    t->n_vocab = (int32_t)src->n_tokens;
    anneal_status st = ANNEAL_OK;

    // Token texts, NUL-terminated, in one block.
    uint64_t total = 0;
    for (uint32_t i = 0; i < src->n_tokens; i++) {
        if (src->tokens[i].len > TOK_MAX_TOKEN_BYTES) {
            st = anneal_err_set(err, ANNEAL_ERR_LIMIT,
                                "%s: tokenizer.ggml.tokens[%u] is %" PRIu64 " bytes (limit %u)",
                                what, i, src->tokens[i].len, TOK_MAX_TOKEN_BYTES);
            goto fail;
        }
        total += src->tokens[i].len + 1;
    }
    size_t nv = (size_t)t->n_vocab;
    char *blob = anneal_arena_alloc(&t->arena, (size_t)total, 1);
    t->text = anneal_arena_alloc(&t->arena, nv * sizeof *t->text, 8);
    t->text_len = anneal_arena_alloc(&t->arena, nv * sizeof *t->text_len, 4);
    t->score = anneal_arena_alloc(&t->arena, nv * sizeof *t->score, 4);
    t->type = anneal_arena_alloc(&t->arena, nv, 1);
    t->flags = anneal_arena_alloc(&t->arena, nv, 1);
    if (!blob || !t->text || !t->text_len || !t->score || !t->type || !t->flags) {
        st = nomem(err, what);
        goto fail;
    }
    for (uint32_t i = 0; i < src->n_tokens; i++) {
        size_t n = (size_t)src->tokens[i].len;
        if (n) memcpy(blob, src->tokens[i].ptr, n);
        blob[n] = 0;
        t->text[i] = blob;
        t->text_len[i] = (uint32_t)n;
        blob += n + 1;
        t->score[i] = src->scores ? src->scores[i] : 0.0f;
        int32_t ty = src->types ? src->types[i] : ANNEAL_TOK_TYPE_NORMAL;
        if (ty < 0 || ty > ANNEAL_TOK_TYPE_BYTE) ty = ANNEAL_TOK_TYPE_UNDEFINED;
        t->type[i] = (uint8_t)ty;
        uint8_t f = 0;
        switch (ty) {
        case ANNEAL_TOK_TYPE_NORMAL:
            f = TOK_F_MERGEABLE;
            break;
        case ANNEAL_TOK_TYPE_USER_DEFINED:
            f = TOK_F_MERGEABLE | TOK_F_MATCH_ALWAYS;
            break;
        case ANNEAL_TOK_TYPE_UNUSED:
            f = TOK_F_MERGEABLE | TOK_F_HIDDEN;
            t->has_unused = true;
            break;
        case ANNEAL_TOK_TYPE_CONTROL:
        case ANNEAL_TOK_TYPE_UNKNOWN:
            f = TOK_F_MATCH_PARSE | TOK_F_HIDDEN;
            break;
        case ANNEAL_TOK_TYPE_BYTE:
            f = 0;
            break;
        default:
            f = TOK_F_HIDDEN;
            break;
        }
        t->flags[i] = f;
    }

    if ((st = build_text_map(t, what, err))) goto fail;

    bool spm = t->kind == ANNEAL_TOK_SPM;
    const char *pre = src->pre && *src->pre ? src->pre : "default";
    t->pre = anneal_arena_strndup(&t->arena, pre, strlen(pre));
    if (!t->pre) {
        st = nomem(err, what);
        goto fail;
    }
    if ((st = special_id(src->bos, spm ? 1 : -1, "tokenizer.ggml.bos_token_id", t->n_vocab, what,
                         &t->bos, err)) ||
        (st = special_id(src->eos, spm ? 2 : -1, "tokenizer.ggml.eos_token_id", t->n_vocab, what,
                         &t->eos, err)) ||
        (st = special_id(src->unk, spm ? 0 : -1, "tokenizer.ggml.unknown_token_id", t->n_vocab,
                         what, &t->unk, err)) ||
        (st = special_id(src->pad, -1, "tokenizer.ggml.padding_token_id", t->n_vocab, what, &t->pad,
                         err)))
        goto fail;

    if (spm) {
        t->add_bos = src->add_bos >= 0 ? src->add_bos : true;
        t->add_eos = src->add_eos >= 0 ? src->add_eos : false;
        t->add_space_prefix = src->add_space_prefix >= 0 ? src->add_space_prefix : true;
        if ((st = build_spm_tables(t, what, err))) goto fail;
    } else {
        bool l3 = pre_is_llama3_like(pre);
        t->ignore_merges = l3;
        t->add_bos = src->add_bos >= 0 ? src->add_bos : (l3 || strcmp(pre, "chameleon") == 0);
        t->add_eos = src->add_eos >= 0 ? src->add_eos : false;
        t->add_space_prefix = false; // byte-level BPE encodes spaces itself
        t->space_id = -1;
        if ((st = build_bpe_tables(t, src, what, err))) goto fail;
        if ((st = tok_pretok_new(pre, &t->pretok, err))) goto fail;
    }
    if ((st = build_special(t, what, err))) goto fail;
    if ((st = build_pieces(t, (size_t)total, what, err))) goto fail;
    *out = t;
    return ANNEAL_OK;
fail:
    anneal_tokenizer_free(t);
    return st;
}

void anneal_tokenizer_free(anneal_tokenizer *t) {
    if (!t) return;
    tok_pretok_free(t->pretok);
    anneal_arena_free(&t->arena);
    anneal_free(t);
}

// ---- loading from GGUF ------------------------------------------------------------------
static anneal_status opt_bool(const anneal_gguf *g, const char *key, int *out, anneal_err *err) {
    *out = -1;
    if (!anneal_gguf_find(g, key)) return ANNEAL_OK;
    bool b;
    anneal_status st = anneal_gguf_get_bool(g, key, &b, err);
    if (!st) *out = b;
    return st;
}

static anneal_status opt_id(const anneal_gguf *g, const char *key, int64_t *out, anneal_err *err) {
    *out = TOK_ID_ABSENT;
    if (!anneal_gguf_find(g, key)) return ANNEAL_OK;
    return anneal_gguf_get_i64(g, key, out, err);
}

// A numeric array of exactly n elements (the same count as the tokens), or absent.
static anneal_status opt_numeric_arr(const anneal_gguf *g, const char *key, uint64_t n,
                                     const anneal_gguf_value **out, anneal_err *err) {
    *out = NULL;
    if (!anneal_gguf_find(g, key)) return ANNEAL_OK;
    const anneal_gguf_value *v;
    anneal_status st = anneal_gguf_get_arr(g, key, ANNEAL_GGUF_TYPE_COUNT, &v, err);
    if (st) return st;
    anneal_gguf_type e = v->arr.elem;
    if (e == ANNEAL_GGUF_STRING || e == ANNEAL_GGUF_ARRAY || e == ANNEAL_GGUF_BOOL ||
        e >= ANNEAL_GGUF_TYPE_COUNT)
        return anneal_err_set(err, ANNEAL_ERR_FORMAT,
                              "key '%s' is an array of %s, expected numbers", key,
                              anneal_gguf_type_name(e));
    if (v->arr.n != n)
        return anneal_err_set(err, ANNEAL_ERR_FORMAT,
                              "key '%s' has %" PRIu64
                              " entries but tokenizer.ggml.tokens has %" PRIu64,
                              key, v->arr.n, n);
    *out = v;
    return ANNEAL_OK;
}

anneal_status anneal_tokenizer_load(const anneal_gguf *g, anneal_tokenizer **out, anneal_err *err) {
    *out = NULL;
    tok_source src = {0};
    src.what = "vocabulary";
    anneal_gguf_str model, pre = {0};
    anneal_status st = anneal_gguf_get_str(g, "tokenizer.ggml.model", &model, err);
    if (st) return st;
    if (model.len == 5 && memcmp(model.ptr, "llama", 5) == 0) {
        src.kind = ANNEAL_TOK_SPM;
    } else if (model.len == 4 && memcmp(model.ptr, "gpt2", 4) == 0) {
        src.kind = ANNEAL_TOK_BPE;
    } else {
        return anneal_err_set(err, ANNEAL_ERR_UNSUPPORTED,
                              "tokenizer.ggml.model '%.*s' is not supported (known: llama, gpt2)",
                              (int)(model.len > 64 ? 64 : model.len), model.ptr);
    }
    if (anneal_gguf_find(g, "tokenizer.ggml.pre") &&
        (st = anneal_gguf_get_str(g, "tokenizer.ggml.pre", &pre, err)))
        return st;

    const anneal_gguf_value *tokens, *scores = NULL, *types = NULL, *merges = NULL;
    if ((st = anneal_gguf_get_arr(g, "tokenizer.ggml.tokens", ANNEAL_GGUF_STRING, &tokens, err)))
        return st;
    if (tokens->arr.n > TOK_MAX_TOKENS)
        return anneal_err_set(err, ANNEAL_ERR_LIMIT,
                              "tokenizer.ggml.tokens has %" PRIu64 " entries (limit %u)",
                              tokens->arr.n, TOK_MAX_TOKENS);
    uint64_t n = tokens->arr.n;
    if ((st = opt_numeric_arr(g, "tokenizer.ggml.scores", n, &scores, err)) ||
        (st = opt_numeric_arr(g, "tokenizer.ggml.token_type", n, &types, err)))
        return st;
    if (src.kind == ANNEAL_TOK_BPE) {
        if ((st =
                 anneal_gguf_get_arr(g, "tokenizer.ggml.merges", ANNEAL_GGUF_STRING, &merges, err)))
            return st;
        if (merges->arr.n > UINT32_MAX / 4)
            return anneal_err_set(err, ANNEAL_ERR_LIMIT,
                                  "tokenizer.ggml.merges has %" PRIu64 " entries", merges->arr.n);
        src.n_merges = (uint32_t)merges->arr.n;
        src.merges = merges->arr.strs;
    }
    if ((st = opt_id(g, "tokenizer.ggml.bos_token_id", &src.bos, err)) ||
        (st = opt_id(g, "tokenizer.ggml.eos_token_id", &src.eos, err)) ||
        (st = opt_id(g, "tokenizer.ggml.unknown_token_id", &src.unk, err)) ||
        (st = opt_id(g, "tokenizer.ggml.padding_token_id", &src.pad, err)) ||
        (st = opt_bool(g, "tokenizer.ggml.add_bos_token", &src.add_bos, err)) ||
        (st = opt_bool(g, "tokenizer.ggml.add_eos_token", &src.add_eos, err)) ||
        (st = opt_bool(g, "tokenizer.ggml.add_space_prefix", &src.add_space_prefix, err)))
        return st;

    char *pre_name = anneal_strndup(pre.ptr ? pre.ptr : "", (size_t)pre.len);
    float *sc = scores ? anneal_malloc((size_t)n * sizeof(float)) : NULL;
    int32_t *ty = types ? anneal_malloc((size_t)n * sizeof(int32_t)) : NULL;
    if (!pre_name || (scores && !sc) || (types && !ty)) {
        st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory loading the vocabulary");
    } else {
        for (uint64_t i = 0; i < n; i++) {
            if (sc) sc[i] = (float)anneal_gguf_arr_f64(scores, i);
            if (ty) {
                int64_t v = anneal_gguf_arr_i64(types, i);
                ty[i] = v < INT32_MIN || v > INT32_MAX ? -1 : (int32_t)v;
            }
        }
        src.pre = pre_name;
        src.n_tokens = (uint32_t)n;
        src.tokens = tokens->arr.strs;
        src.scores = sc;
        src.types = ty;
        st = tok_build(&src, out, err);
    }
    anneal_free(pre_name);
    anneal_free(sc);
    anneal_free(ty);
    return st;
}

// ---- accessors --------------------------------------------------------------------------
anneal_tok_kind anneal_tokenizer_kind(const anneal_tokenizer *t) {
    return t->kind;
}
const char *anneal_tokenizer_pre(const anneal_tokenizer *t) {
    return t->pre;
}
int32_t anneal_tokenizer_n_vocab(const anneal_tokenizer *t) {
    return t->n_vocab;
}
anneal_token anneal_tokenizer_bos(const anneal_tokenizer *t) {
    return t->bos;
}
anneal_token anneal_tokenizer_eos(const anneal_tokenizer *t) {
    return t->eos;
}
anneal_token anneal_tokenizer_unk(const anneal_tokenizer *t) {
    return t->unk;
}
anneal_token anneal_tokenizer_pad(const anneal_tokenizer *t) {
    return t->pad;
}
bool anneal_tokenizer_add_bos(const anneal_tokenizer *t) {
    return t->add_bos;
}
bool anneal_tokenizer_add_eos(const anneal_tokenizer *t) {
    return t->add_eos;
}
bool anneal_tokenizer_add_space_prefix(const anneal_tokenizer *t) {
    return t->add_space_prefix;
}
size_t anneal_tokenizer_max_piece(const anneal_tokenizer *t) {
    return t->max_piece;
}

const char *anneal_tokenizer_token_text(const anneal_tokenizer *t, anneal_token id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->text_len[id];
    return t->text[id];
}

anneal_tok_type anneal_tokenizer_token_type(const anneal_tokenizer *t, anneal_token id) {
    if (id < 0 || id >= t->n_vocab) return ANNEAL_TOK_TYPE_UNDEFINED;
    return (anneal_tok_type)t->type[id];
}

float anneal_tokenizer_token_score(const anneal_tokenizer *t, anneal_token id) {
    if (id < 0 || id >= t->n_vocab) return 0.0f;
    return t->score[id];
}

anneal_token anneal_tokenizer_find(const anneal_tokenizer *t, const char *text, size_t len) {
    if (!text || len == 0) return -1;
    return tok_lookup(t, text, len);
}
