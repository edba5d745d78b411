// anneal tokenizer: vocabularies from GGUF metadata (tokenizer.ggml.*), SentencePiece-style
// BPE ("llama") and byte-level BPE ("gpt2") with pre-tokenizers, special tokens, decoding
// and streaming detokenization.
#ifndef ANNEAL_TOKENIZER_H
#define ANNEAL_TOKENIZER_H

#include "anneal/base.h"
#include "anneal/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef int32_t anneal_token;

typedef enum anneal_tok_kind {
    ANNEAL_TOK_SPM = 1, // tokenizer.ggml.model = "llama"
    ANNEAL_TOK_BPE = 2, // tokenizer.ggml.model = "gpt2"
} anneal_tok_kind;

// Token types; the numbers are tokenizer.ggml.token_type's.
typedef enum anneal_tok_type {
    ANNEAL_TOK_TYPE_UNDEFINED = 0,
    ANNEAL_TOK_TYPE_NORMAL = 1,
    ANNEAL_TOK_TYPE_UNKNOWN = 2,
    ANNEAL_TOK_TYPE_CONTROL = 3,
    ANNEAL_TOK_TYPE_USER_DEFINED = 4,
    ANNEAL_TOK_TYPE_UNUSED = 5,
    ANNEAL_TOK_TYPE_BYTE = 6,
} anneal_tok_type;

typedef struct anneal_tokenizer anneal_tokenizer; // immutable after load; thread-safe to use

// Builds a tokenizer from a GGUF file's metadata: tokenizer.ggml.model ("llama" | "gpt2"),
// .tokens, .scores, .token_type, .merges (gpt2), .pre (gpt2; absent = "default"), the
// bos/eos/unknown/padding token ids and add_bos_token / add_eos_token / add_space_prefix.
// Everything is validated (array lengths, ids in range, merges naming known tokens,
// duplicate texts, a known pre-tokenizer) and errors name the key and index at fault.
// The tokenizer copies what it needs and does not keep `g`. Free with anneal_tokenizer_free.
anneal_status anneal_tokenizer_load(const anneal_gguf *g, anneal_tokenizer **out, anneal_err *err);
void anneal_tokenizer_free(anneal_tokenizer *t); // accepts NULL

anneal_tok_kind anneal_tokenizer_kind(const anneal_tokenizer *t);
const char *anneal_tokenizer_pre(const anneal_tokenizer *t); // pre-tokenizer name in use
int32_t anneal_tokenizer_n_vocab(const anneal_tokenizer *t);
// Special ids; -1 when the vocabulary has none. Absent keys default as llama.cpp does for
// "llama" vocabularies (BOS 1, EOS 2, UNK 0); "gpt2" ones have none by default.
anneal_token anneal_tokenizer_bos(const anneal_tokenizer *t);
anneal_token anneal_tokenizer_eos(const anneal_tokenizer *t);
anneal_token anneal_tokenizer_unk(const anneal_tokenizer *t);
anneal_token anneal_tokenizer_pad(const anneal_tokenizer *t);
// tokenizer.ggml.add_bos_token; default true for "llama" and llama3-style "gpt2" ones.
bool anneal_tokenizer_add_bos(const anneal_tokenizer *t);
bool anneal_tokenizer_add_eos(const anneal_tokenizer *t); // tokenizer.ggml.add_eos_token
// SPM: tokenizer.ggml.add_space_prefix (default true). Always false for byte-level BPE.
bool anneal_tokenizer_add_space_prefix(const anneal_tokenizer *t);
// The raw token text as stored in the vocabulary (▁ / Ġ escapes kept), NUL-terminated;
// NULL (and *len 0) if out of range. `len` may be NULL.
const char *anneal_tokenizer_token_text(const anneal_tokenizer *t, anneal_token id, size_t *len);
// UNDEFINED for an id out of range.
anneal_tok_type anneal_tokenizer_token_type(const anneal_tokenizer *t, anneal_token id);
float anneal_tokenizer_token_score(const anneal_tokenizer *t, anneal_token id); // 0 if out of range
// Looks up a token by its exact vocabulary text; -1 if absent.
anneal_token anneal_tokenizer_find(const anneal_tokenizer *t, const char *text, size_t len);
// The longest piece (anneal_tokenizer_piece with special = true) in bytes.
size_t anneal_tokenizer_max_piece(const anneal_tokenizer *t);

enum {
    ANNEAL_TOK_ADD_SPECIAL = 1 << 0,   // add BOS/EOS as the vocabulary's add_*_token say
    ANNEAL_TOK_PARSE_SPECIAL = 1 << 1, // text like "<|im_end|>" becomes that control token
};

// Encodes len bytes of text (need not be NUL-terminated; at most 2^30 bytes per call).
// Invalid UTF-8 is never rejected: SPM encodes each invalid byte through byte fallback
// (<0xNN>), byte-level BPE encodes bytes anyway.
// Special tokens: user-defined tokens are always split out of the text (as llama.cpp and
// Hugging Face do); control and unknown-type tokens only with ANNEAL_TOK_PARSE_SPECIAL.
// The leftmost match wins, the longest at that position. SPM adds the space prefix before
// the first text fragment and after every special token, as llama.cpp does.
// Writes up to cap ids and sets *n_ids to the full count; returns ANNEAL_ERR_RANGE (the
// first cap ids are written) when cap is too small, so callers can retry with *n_ids.
// Uses per-thread scratch memory that is kept between calls (no allocation per call in
// the steady state); safe to call from many threads on one tokenizer.
anneal_status anneal_tokenizer_encode(const anneal_tokenizer *t, const char *text, size_t len,
                                      unsigned flags, anneal_token *ids, size_t cap, size_t *n_ids,
                                      anneal_err *err);

// The bytes one token stands for (▁ -> ' ', byte tokens -> the byte, byte-level BPE
// mapped back to bytes, user-defined tokens verbatim). Control, unknown-type and unused
// tokens give "" unless `special` is true (then their text). No leading space is stripped.
// Writes up to cap bytes (no NUL); returns the full length (may exceed cap), or -1 for a
// bad id.
int64_t anneal_tokenizer_piece(const anneal_tokenizer *t, anneal_token id, bool special, char *out,
                               size_t cap);

// Decodes ids to the exact bytes they stand for (the pieces concatenated, no UTF-8 repair).
// When the vocabulary adds a space prefix (SPM), one leading space is removed from the
// first piece that produces any text (hidden BOS/control tokens do not count), so
// decode(encode(x)) == x for text without special tokens, with or without BOS.
// Sets *len to the full length and writes up to cap bytes, plus a NUL when it fits;
// ANNEAL_ERR_RANGE when cap is too small; ANNEAL_ERR_INVALID_ARG for a bad id.
anneal_status anneal_tokenizer_decode(const anneal_tokenizer *t, const anneal_token *ids, size_t n,
                                      bool special, char *out, size_t cap, size_t *len,
                                      anneal_err *err);

// Streaming detokenization: feed ids one at a time, get text that is safe to print. Bytes
// of an incomplete UTF-8 sequence are held back until the sequence completes (or is shown
// invalid, then emitted as U+FFFD, one per maximal ill-formed subpart). The leading-space
// rule is decode's. Caller owns the struct (no allocation; nothing to free).
typedef struct anneal_detok {
    const anneal_tokenizer *t;
    bool special;    // print control tokens
    bool first;      // strip the SentencePiece leading space from the next non-empty piece
    uint8_t held[8]; // pending bytes of an incomplete UTF-8 sequence (at most 3)
    size_t n_held;
} anneal_detok;
void anneal_detok_init(anneal_detok *d, const anneal_tokenizer *t, bool special);
// Appends the printable text produced by `id` to out (up to cap); returns the byte count
// written, or -1 for a bad id or when cap is too small (then nothing changes: retry with
// more room). cap >= 3 * (anneal_tokenizer_max_piece(t) + 3) is always enough.
int64_t anneal_detok_push(anneal_detok *d, anneal_token id, char *out, size_t cap);
// Ends the stream: held bytes become one U+FFFD. Returns bytes written (0 or 3), -1 if
// cap < 3 while bytes are held.
int64_t anneal_detok_flush(anneal_detok *d, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
