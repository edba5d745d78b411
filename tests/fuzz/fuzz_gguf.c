// libFuzzer target for the GGUF reader and writer: parse arbitrary bytes, touch every value
// and tensor, and for any file that opens, copy it, re-read the copy and copy that again;
// the two copies must be identical (reader and writer agree on the format).
#include "anneal/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile uint64_t sink; // keeps the walks from being optimised away

static void walk(const anneal_gguf_value *v, int depth) {
    if (depth > 16) __builtin_trap(); // the reader caps nesting at 8
    switch (v->type) {
    case ANNEAL_GGUF_STRING:
        for (uint64_t i = 0; i < v->str.len; i++)
            sink += (uint8_t)v->str.ptr[i];
        break;
    case ANNEAL_GGUF_ARRAY:
        for (uint64_t i = 0; i < v->arr.n; i++) {
            if (v->arr.elem == ANNEAL_GGUF_STRING) {
                const anneal_gguf_str *s = &v->arr.strs[i];
                for (uint64_t k = 0; k < s->len; k++)
                    sink += (uint8_t)s->ptr[k];
            } else if (v->arr.elem == ANNEAL_GGUF_ARRAY) {
                walk(&v->arr.vals[i], depth + 1);
            } else {
                sink += (uint64_t)anneal_gguf_arr_i64(v, i);
                double d = anneal_gguf_arr_f64(v, i);
                sink += d == d;
            }
        }
        break;
    default:
        sink += v->u64;
        break;
    }
}

// Paths in /dev/shm when there is one: the writer fsyncs, which would dominate on a disk.
static void tmp_path(char *buf, size_t cap, const char *tag) {
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(buf, cap, "%s/fuzz_gguf.%ld.%s.gguf", dir, (long)getpid(), tag);
}

static bool copy_to(const anneal_gguf *g, const char *path) {
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    if (!w) return false;
    anneal_err err = {0};
    bool ok = anneal_gguf_writer_copy(w, g) == ANNEAL_OK &&
              anneal_gguf_writer_write(w, path, &err) == ANNEAL_OK;
    anneal_gguf_writer_free(w);
    return ok;
}

static bool same_file(const char *a, const char *b) {
    anneal_map ma, mb;
    if (anneal_map_file(a, &ma, NULL) || anneal_map_file(b, &mb, NULL)) return false;
    bool eq = ma.size == mb.size && (ma.size == 0 || memcmp(ma.data, mb.data, ma.size) == 0);
    anneal_unmap(&ma);
    anneal_unmap(&mb);
    return eq;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    anneal_gguf *g = NULL;
    anneal_err err = {0};
    if (anneal_gguf_open_memory(data, size, &g, &err) != ANNEAL_OK) {
        if (g || !strstr(err.msg, "at offset ")) __builtin_trap();
        return 0;
    }
    for (uint64_t i = 0; i < anneal_gguf_n_kv(g); i++) {
        const anneal_gguf_kv *kv = anneal_gguf_kv_at(g, i);
        walk(&kv->value, 0);
        // Keys without NUL bytes must be found by name, and find the same entry.
        if (!memchr(kv->key.ptr, 0, kv->key.len)) {
            char key[512];
            if (kv->key.len < sizeof key) {
                memcpy(key, kv->key.ptr, kv->key.len);
                key[kv->key.len] = '\0';
                if (anneal_gguf_find(g, key) != kv) __builtin_trap();
            }
        }
    }
    for (uint64_t i = 0; i < anneal_gguf_n_tensors(g); i++) {
        const anneal_gguf_tensor *t = anneal_gguf_tensor_at(g, i);
        for (uint64_t k = 0; t->data && k < t->nbytes; k += 61)
            sink += t->data[k];
        if (t->data && t->nbytes) sink += t->data[t->nbytes - 1];
    }
    char p1[256], p2[256];
    tmp_path(p1, sizeof p1, "a");
    tmp_path(p2, sizeof p2, "b");
    if (copy_to(g, p1)) {
        anneal_gguf *g2 = NULL;
        if (anneal_gguf_open(p1, &g2, &err) != ANNEAL_OK) __builtin_trap();
        if (anneal_gguf_n_kv(g2) != anneal_gguf_n_kv(g) ||
            anneal_gguf_n_tensors(g2) != anneal_gguf_n_tensors(g))
            __builtin_trap();
        if (!copy_to(g2, p2) || !same_file(p1, p2)) __builtin_trap();
        anneal_gguf_close(g2);
    }
    unlink(p1);
    unlink(p2);
    anneal_gguf_close(g);
    return 0;
}
