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

// Builds a tokenizer from a GGUF file's metadata. The tokenizer copies what it needs and
// does not keep `g`. Errors name the key at fault. Free with anneal_tokenizer_free.
anneal_status anneal_tokenizer_load(const anneal_gguf *g, anneal_tokenizer **out, anneal_err *err);
void anneal_tokenizer_free(anneal_tokenizer *t);

anneal_tok_kind anneal_tokenizer_kind(const anneal_tokenizer *t);
const char *anneal_tokenizer_pre(const anneal_tokenizer *t); // pre-tokenizer name in use
int32_t anneal_tokenizer_n_vocab(const anneal_tokenizer *t);
// Special ids; -1 when the vocabulary has none.
anneal_token anneal_tokenizer_bos(const anneal_tokenizer *t);
anneal_token anneal_tokenizer_eos(const anneal_tokenizer *t);
anneal_token anneal_tokenizer_unk(const anneal_tokenizer *t);
anneal_token anneal_tokenizer_pad(const anneal_tokenizer *t);
bool anneal_tokenizer_add_bos(const anneal_tokenizer *t); // tokenizer.ggml.add_bos_token
bool anneal_tokenizer_add_eos(const anneal_tokenizer *t); // tokenizer.ggml.add_eos_token
// The raw token text as stored in the vocabulary (▁ / Ġ escapes kept); NULL if out of range.
const char *anneal_tokenizer_token_text(const anneal_tokenizer *t, anneal_token id, size_t *len);
anneal_tok_type anneal_tokenizer_token_type(const anneal_tokenizer *t, anneal_token id);
// Looks up a token by its exact vocabulary text; -1 if absent.
anneal_token anneal_tokenizer_find(const anneal_tokenizer *t, const char *text, size_t len);

enum {
    ANNEAL_TOK_ADD_SPECIAL = 1 << 0,   // add BOS/EOS as the vocabulary's add_*_token say
    ANNEAL_TOK_PARSE_SPECIAL = 1 << 1, // text like "<|im_end|>" becomes that control token
};

// Encodes len bytes of text (need not be NUL-terminated; invalid UTF-8 is encoded through
// byte fallback or as U+FFFD pieces, never rejected). Writes up to cap ids and sets *n_ids
// to the full count; returns ANNEAL_ERR_RANGE (and writes nothing useful) when cap is too
// small, so callers can retry with *n_ids.
anneal_status anneal_tokenizer_encode(const anneal_tokenizer *t, const char *text, size_t len,
                                      unsigned flags, anneal_token *ids, size_t cap,
                                      size_t *n_ids, anneal_err *err);

// The bytes one token stands for (▁ -> ' ', byte tokens -> the byte, byte-level BPE
// mapped back to bytes). Control tokens give "" unless `special` is true.
// Writes up to cap bytes; returns the full length (may exceed cap), or -1 for a bad id.
int64_t anneal_tokenizer_piece(const anneal_tokenizer *t, anneal_token id, bool special, char *out,
                               size_t cap);

// Decodes ids to text; strips the leading space SentencePiece adds when `flags` has
// ANNEAL_TOK_ADD_SPECIAL semantics off... see docs/tokenizer.md. Sets *len to the full
// length; ANNEAL_ERR_RANGE when cap is too small; ANNEAL_ERR_INVALID_ARG for a bad id.
anneal_status anneal_tokenizer_decode(const anneal_tokenizer *t, const anneal_token *ids, size_t n,
                                      bool special, char *out, size_t cap, size_t *len,
                                      anneal_err *err);

// Streaming detokenization: feed ids one at a time, get text that is safe to print. Bytes
// of an incomplete UTF-8 sequence are held back until the sequence completes (or is shown
// invalid, then emitted as U+FFFD). Caller owns the struct; init/free pair.
typedef struct anneal_detok {
    const anneal_tokenizer *t;
    bool special;     // print control tokens
    bool first;       // strip the SentencePiece leading space on the first piece
    uint8_t held[8];  // pending bytes of an incomplete UTF-8 sequence
    size_t n_held;
} anneal_detok;
void anneal_detok_init(anneal_detok *d, const anneal_tokenizer *t, bool special);
// Appends the printable text produced by `id` to out (up to cap); returns the byte count
// written, or -1 for a bad id or when cap is too small (cap >= 256 + the longest piece is
// always enough).
int64_t anneal_detok_push(anneal_detok *d, anneal_token id, char *out, size_t cap);
// Flushes held bytes at the end of a stream (as U+FFFD); returns bytes written.
int64_t anneal_detok_flush(anneal_detok *d, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
