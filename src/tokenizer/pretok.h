// Pre-tokenizers for byte-level BPE: split text into pieces with the regex lists that
// llama.cpp selects by tokenizer.ggml.pre, before BPE merges run inside each piece.
#ifndef ANNEAL_TOKENIZER_PRETOK_H
#define ANNEAL_TOKENIZER_PRETOK_H

#include <stddef.h>
#include <stdint.h>

#include "anneal/base.h"

typedef struct tok_pretok tok_pretok; // immutable after tok_pretok_new; shareable across threads

// One piece: bytes text[off .. off+len).
typedef struct tok_span {
    uint32_t off, len;
} tok_span;

// Builds the pre-tokenizer called `name` (the value of tokenizer.ggml.pre, matched
// exactly as llama.cpp does; NULL or "" means "default", as llama.cpp falls back when the
// key is missing). The regexes are compiled once here (JIT when available).
// Unknown name -> ANNEAL_ERR_UNSUPPORTED, with a message naming it and listing the known
// names. On success *out is owned by the caller: free with tok_pretok_free.
anneal_status tok_pretok_new(const char *name, tok_pretok **out, anneal_err *err);
// Accepts NULL.
void tok_pretok_free(tok_pretok *p);
// The name this pre-tokenizer was created with ("default" for NULL or ""), e.g.
// "llama-bpe". Static storage: valid for the life of the program.
const char *tok_pretok_name(const tok_pretok *p);

// Splits text[0..len) into consecutive pieces covering all of it, in order, with no
// overlaps and no empty pieces; empty input gives 0 pieces. Invalid UTF-8 is never an
// error: each byte that does not start a valid (strict, shortest-form) UTF-8 sequence is
// split as if it were U+FFFD (a symbol), as llama.cpp does, and stays in exactly one piece
// as the original byte (see docs/pretokenizers.md).
// *spans is a growable buffer owned by the caller (NULL/0 to start; grown with
// anneal_realloc, free with anneal_free); *cap is its capacity in spans; *n is set to the
// number of pieces. Thread-safe on a shared tok_pretok (match data is per call; input with
// invalid UTF-8 costs one temporary copy). Fails with ANNEAL_ERR_LIMIT when len does not
// fit in 32 bits, ANNEAL_ERR_NOMEM on allocation failure, ANNEAL_ERR_INTERNAL if the regex
// engine reports an error (its message and the offset are in err).
anneal_status tok_pretok_split(const tok_pretok *p, const char *text, size_t len, tok_span **spans,
                               size_t *n, size_t *cap, anneal_err *err);

// Every known name, NULL-terminated, in the order docs/pretokenizers.md lists them.
const char *const *tok_pretok_names(void);

#endif
