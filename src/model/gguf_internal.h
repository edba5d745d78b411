// Internals shared by the GGUF reader (gguf.c) and writer (gguf_write.c): scalar sizes, the
// name -> entry index, and quoting names for error messages.
#ifndef ANNEAL_GGUF_INTERNAL_H
#define ANNEAL_GGUF_INTERNAL_H

#include "anneal/gguf.h"

// Bytes of one value of each GGUF type; 0 for string and array.
extern const uint8_t gguf_scalar_size[ANNEAL_GGUF_TYPE_COUNT];

static inline bool gguf_is_scalar(uint32_t t) {
    return t < ANNEAL_GGUF_TYPE_COUNT && gguf_scalar_size[t] != 0;
}

// Where an array of entries keeps its names: entry i starts at base + i * stride, with the
// name's `const char *` at ptr_off and its uint64_t byte length at len_off. (The reader's
// entries hold an anneal_gguf_str, the writer's a char * and a length: one index serves both.)
typedef struct gguf_names {
    const void *base;
    size_t stride, ptr_off, len_off;
} gguf_names;

// Name -> entry index: open addressing with linear probing over a power-of-two table kept at
// most half full; a slot holds the entry index + 1, 0 = empty. Zero-initialised = empty.
typedef struct gguf_index {
    uint64_t *slots;
    uint64_t mask;
} gguf_index;

#define GGUF_INDEX_NONE UINT64_MAX

// Replaces idx's table with a new one over the first n entries, sized for `room` entries
// (room >= n) so that adding up to `room` never grows it. False (idx unchanged) when out of
// memory.
bool gguf_index_build(gguf_index *idx, gguf_names names, uint64_t n, uint64_t room);
// Indexes entry n - 1, just appended; grows the table first when it would be over half full.
bool gguf_index_add(gguf_index *idx, gguf_names names, uint64_t n);
// Index of the entry named s[0..len), or GGUF_INDEX_NONE (also when idx has no table).
uint64_t gguf_index_find(const gguf_index *idx, gguf_names names, const char *s, uint64_t len);
void gguf_index_free(gguf_index *idx);

// Printable, single-quote-safe form of a name for messages into buf (cap >= 16): printable
// ASCII kept, other bytes (and \ and ') as \xNN, cut with "..." after 96 bytes or when
// buf is full. Returns buf.
const char *gguf_quote(char *buf, size_t cap, const char *s, uint64_t len);

#endif
