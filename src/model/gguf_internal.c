// Internals shared by the GGUF reader and writer: scalar sizes, name index, name quoting.
#include "model/gguf_internal.h"

#include <stdio.h>
#include <string.h>

const uint8_t gguf_scalar_size[ANNEAL_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

static void entry_name(gguf_names names, uint64_t i, const char **ptr, uint64_t *len) {
    const char *entry = (const char *)names.base + i * names.stride;
    memcpy(ptr, entry + names.ptr_off, sizeof *ptr);
    memcpy(len, entry + names.len_off, sizeof *len);
}

static void put(uint64_t *slots, uint64_t mask, const char *s, uint64_t len, uint64_t i) {
    uint64_t h = anneal_hash64(s, (size_t)len) & mask;
    while (slots[h])
        h = (h + 1) & mask;
    slots[h] = i + 1;
}

bool gguf_index_build(gguf_index *idx, gguf_names names, uint64_t n, uint64_t room) {
    if (room < n) room = n;
    if (room > UINT64_MAX / 4) return false;
    uint64_t cap = 16;
    while (cap < 2 * room + 2)
        cap *= 2;
    if (cap > SIZE_MAX / sizeof(uint64_t)) return false;
    uint64_t *slots = anneal_calloc((size_t)cap, sizeof *slots);
    if (!slots) return false;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        uint64_t len;
        entry_name(names, i, &s, &len);
        put(slots, cap - 1, s, len, i);
    }
    anneal_free(idx->slots);
    idx->slots = slots;
    idx->mask = cap - 1;
    return true;
}

bool gguf_index_add(gguf_index *idx, gguf_names names, uint64_t n) {
    if (!idx->slots || 2 * n + 2 > idx->mask + 1) return gguf_index_build(idx, names, n, n);
    const char *s;
    uint64_t len;
    entry_name(names, n - 1, &s, &len);
    put(idx->slots, idx->mask, s, len, n - 1);
    return true;
}

uint64_t gguf_index_find(const gguf_index *idx, gguf_names names, const char *s, uint64_t len) {
    if (!idx->slots) return GGUF_INDEX_NONE;
    for (uint64_t h = anneal_hash64(s, (size_t)len) & idx->mask;; h = (h + 1) & idx->mask) {
        uint64_t e = idx->slots[h];
        if (!e) return GGUF_INDEX_NONE;
        const char *name;
        uint64_t name_len;
        entry_name(names, e - 1, &name, &name_len);
        if (name_len == len && (len == 0 || memcmp(name, s, (size_t)len) == 0)) return e - 1;
    }
}

void gguf_index_free(gguf_index *idx) {
    anneal_free(idx->slots);
    idx->slots = NULL;
    idx->mask = 0;
}

const char *gguf_quote(char *buf, size_t cap, const char *s, uint64_t len) {
    size_t o = 0;
    for (uint64_t i = 0; i < len; i++) {
        if (o + 8 >= cap || i >= 96) {
            snprintf(buf + o, cap - o, "...");
            return buf;
        }
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F && c != '\\' && c != '\'')
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
    }
    buf[o] = '\0';
    return buf;
}
