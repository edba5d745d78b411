// Allocation wrappers (overflow-checked, never abort) and the arena allocator.
#include "anneal/base.h"

#include <stdlib.h>
#include <string.h>

void *anneal_malloc(size_t size) { return malloc(size ? size : 1); }

void *anneal_calloc(size_t n, size_t size) {
    size_t total;
    if (!anneal_mul_ok(n, size, &total)) return NULL;
    return calloc(total ? total : 1, 1);
}

void *anneal_realloc(void *p, size_t size) { return realloc(p, size ? size : 1); }

void *anneal_realloc_array(void *p, size_t n, size_t size) {
    size_t total;
    if (!anneal_mul_ok(n, size, &total)) return NULL;
    return anneal_realloc(p, total);
}

void *anneal_aligned_alloc(size_t align, size_t size) {
    void *p = NULL;
    if (align < sizeof(void *)) align = sizeof(void *);
    if (posix_memalign(&p, align, size ? size : 1) != 0) return NULL;
    return p;
}

char *anneal_strndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void anneal_free(void *p) { free(p); }

struct anneal_arena_chunk {
    anneal_arena_chunk *next;
    size_t size; // usable bytes after the header
    size_t pos;
    _Alignas(64) unsigned char data[];
};

void anneal_arena_init(anneal_arena *a, size_t chunk_size, size_t cap) {
    a->head = NULL;
    a->chunk_size = chunk_size ? chunk_size : 64 * 1024;
    a->used = 0;
    a->cap = cap;
}

void *anneal_arena_alloc(anneal_arena *a, size_t size, size_t align) {
    if (align == 0) align = 1;
    if (align > 4096 || (align & (align - 1))) return NULL;
    if (a->cap && (size > a->cap || a->used > a->cap - size)) return NULL;
    anneal_arena_chunk *c = a->head;
    if (c) {
        uintptr_t base = (uintptr_t)c->data;
        size_t start = ((base + c->pos + align - 1) & ~(uintptr_t)(align - 1)) - base;
        if (start <= c->size && size <= c->size - start) {
            c->pos = start + size;
            a->used += size;
            return c->data + start;
        }
    }
    size_t need;
    if (!anneal_add_ok(size, align, &need)) return NULL;
    size_t csize = need > a->chunk_size ? need : a->chunk_size;
    size_t total;
    if (!anneal_add_ok(sizeof(anneal_arena_chunk), csize, &total)) return NULL;
    c = anneal_aligned_alloc(64, total);
    if (!c) return NULL;
    c->size = csize;
    c->next = a->head;
    a->head = c;
    uintptr_t base = (uintptr_t)c->data;
    size_t start = ((base + align - 1) & ~(uintptr_t)(align - 1)) - base;
    c->pos = start + size;
    a->used += size;
    return c->data + start;
}

void *anneal_arena_calloc(anneal_arena *a, size_t n, size_t size, size_t align) {
    size_t total;
    if (!anneal_mul_ok(n, size, &total)) return NULL;
    void *p = anneal_arena_alloc(a, total, align);
    if (p) memset(p, 0, total);
    return p;
}

char *anneal_arena_strndup(anneal_arena *a, const char *s, size_t n) {
    size_t total;
    if (!anneal_add_ok(n, 1, &total)) return NULL;
    char *d = anneal_arena_alloc(a, total, 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void anneal_arena_reset(anneal_arena *a) {
    anneal_arena_chunk *c = a->head;
    if (!c) return;
    // Keep the oldest chunk (the last in the list); it is usually the default size.
    anneal_arena_chunk *keep = c;
    while (keep->next) keep = keep->next;
    while (c != keep) {
        anneal_arena_chunk *next = c->next;
        anneal_free(c);
        c = next;
    }
    keep->pos = 0;
    a->head = keep;
    a->used = 0;
}

void anneal_arena_free(anneal_arena *a) {
    anneal_arena_chunk *c = a->head;
    while (c) {
        anneal_arena_chunk *next = c->next;
        anneal_free(c);
        c = next;
    }
    a->head = NULL;
    a->used = 0;
}
