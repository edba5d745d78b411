// Builds a tokenizer from in-memory vocabulary arrays: the step under anneal_tokenizer_load,
// also used by tests to make small vocabularies without writing a GGUF file.
#ifndef ANNEAL_TOKENIZER_BUILD_H
#define ANNEAL_TOKENIZER_BUILD_H

#include "anneal/tokenizer.h"

#define TOK_ID_ABSENT INT64_MIN // a special id whose key is absent (the default applies)

typedef struct tok_source {
    anneal_tok_kind kind;
    const char *pre; // BPE pre-tokenizer name; NULL or "" = "default"
    uint32_t n_tokens;
    const anneal_gguf_str *tokens; // [n_tokens]
    const float *scores;           // [n_tokens] or NULL (all 0)
    const int32_t *types;          // [n_tokens] or NULL (all NORMAL)
    uint32_t n_merges;
    const anneal_gguf_str *merges;          // [n_merges] "left right" (BPE only)
    int64_t bos, eos, unk, pad;             // TOK_ID_ABSENT when not given
    int add_bos, add_eos, add_space_prefix; // 0/1, or -1 when not given
    const char *what; // where the vocabulary came from, for error messages; may be NULL
} tok_source;

// Validates and builds. Copies everything it keeps. Errors name the field and index.
anneal_status tok_build(const tok_source *src, anneal_tokenizer **out, anneal_err *err);

#endif
