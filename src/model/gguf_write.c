// GGUF writer: collects key/values (in insertion order) and tensors, then streams the file
// through an atomic temp-file write with ggml's layout, so a copy of a ggml or gguf-py file
// comes out byte for byte the same. A tensor's bytes may come from the caller's memory or
// from a fill callback asked for a chunk of whole rows at a time, so a model of any size
// can be produced (converted, generated) while it is written.
#include "anneal/gguf.h"

#include "anneal/tensor.h"
#include "model/gguf_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define MAX_DEPTH 8               // same nesting cap as the reader
#define GGML_MAX_NAME 64          // ggml refuses tensor names of this many bytes or more
#define OUT_BUF_SIZE (256 * 1024) // metadata is buffered; tensor data is written straight through
#define DEFAULT_FILL_CHUNK ((uint64_t)16 << 20)

typedef struct wkv {
    char *key; // arena, NUL-terminated; may hold NUL bytes when copied from a file
    uint64_t key_len;
    anneal_gguf_value v; // deep copy in the arena
} wkv;

typedef struct wtensor {
    char *name;
    uint64_t name_len;
    uint32_t n_dims, type;
    uint64_t dims[ANNEAL_GGUF_MAX_DIMS];
    const void *data; // borrowed until write; NULL when fill gives the bytes
    uint64_t nbytes;
    anneal_gguf_fill_fn fill;
    void *fill_ctx;
} wtensor;

struct anneal_gguf_writer {
    anneal_arena arena; // keys, names and copied values; replaced values stay until free
    wkv *kvs;
    size_t n_kv, cap_kv;
    wtensor *ts;
    size_t n_t, cap_t;
    gguf_index kv_idx, t_idx; // rebuilt on growth and on removal
    bool pad_empty;      // pad after the tensor infos even when there are no tensors (ggml does)
    uint64_t fill_chunk; // most bytes one fill call is asked for (at least one row)
    anneal_err err;      // first failure of any call; write() reports it
};

static gguf_names kv_names(const anneal_gguf_writer *w) {
    return (gguf_names){w->kvs, sizeof(wkv), offsetof(wkv, key), offsetof(wkv, key_len)};
}

static gguf_names tensor_names(const anneal_gguf_writer *w) {
    return (gguf_names){w->ts, sizeof(wtensor), offsetof(wtensor, name),
                        offsetof(wtensor, name_len)};
}

// ---- lifetime -----------------------------------------------------------------------

anneal_gguf_writer *anneal_gguf_writer_new(void) {
    anneal_gguf_writer *w = anneal_calloc(1, sizeof *w);
    if (!w) return NULL;
    anneal_arena_init(&w->arena, 64 * 1024, 0);
    w->pad_empty = true;
    w->fill_chunk = DEFAULT_FILL_CHUNK;
    return w;
}

void anneal_gguf_writer_free(anneal_gguf_writer *w) {
    if (!w) return;
    anneal_arena_free(&w->arena);
    anneal_free(w->kvs);
    anneal_free(w->ts);
    gguf_index_free(&w->kv_idx);
    gguf_index_free(&w->t_idx);
    anneal_free(w);
}

// ---- key/values ---------------------------------------------------------------------

static anneal_status copy_value(anneal_gguf_writer *w, const char *key, anneal_gguf_value *dst,
                                const anneal_gguf_value *src, int depth);

static anneal_status bad(anneal_gguf_writer *w, anneal_status st, const char *key,
                         const char *what) {
    return anneal_err_set(&w->err, st, "key '%s': %s", key, what);
}

static anneal_status check_scalar(anneal_gguf_writer *w, const char *key,
                                  const anneal_gguf_value *v) {
    static const uint64_t umax[] = {[ANNEAL_GGUF_UINT8] = UINT8_MAX,
                                    [ANNEAL_GGUF_UINT16] = UINT16_MAX,
                                    [ANNEAL_GGUF_UINT32] = UINT32_MAX,
                                    [ANNEAL_GGUF_UINT64] = UINT64_MAX};
    switch (v->type) {
    case ANNEAL_GGUF_UINT8:
    case ANNEAL_GGUF_UINT16:
    case ANNEAL_GGUF_UINT32:
    case ANNEAL_GGUF_UINT64:
        if (v->u64 > umax[v->type])
            return bad(w, ANNEAL_ERR_RANGE, key, "value does not fit its type");
        return ANNEAL_OK;
    case ANNEAL_GGUF_INT8:
        if (v->i64 < INT8_MIN || v->i64 > INT8_MAX)
            return bad(w, ANNEAL_ERR_RANGE, key, "value does not fit i8");
        return ANNEAL_OK;
    case ANNEAL_GGUF_INT16:
        if (v->i64 < INT16_MIN || v->i64 > INT16_MAX)
            return bad(w, ANNEAL_ERR_RANGE, key, "value does not fit i16");
        return ANNEAL_OK;
    case ANNEAL_GGUF_INT32:
        if (v->i64 < INT32_MIN || v->i64 > INT32_MAX)
            return bad(w, ANNEAL_ERR_RANGE, key, "value does not fit i32");
        return ANNEAL_OK;
    default:
        return ANNEAL_OK;
    }
}

static anneal_status copy_bytes(anneal_gguf_writer *w, const char *key, const void *src, uint64_t n,
                                const void **out) {
    if (n == 0) {
        *out = "";
        return ANNEAL_OK;
    }
    if (!src) return bad(w, ANNEAL_ERR_INVALID_ARG, key, "NULL data for a non-empty value");
    if (n > SIZE_MAX / 2) return bad(w, ANNEAL_ERR_NOMEM, key, "value too large");
    void *d = anneal_arena_alloc(&w->arena, (size_t)n, 8);
    if (!d) return bad(w, ANNEAL_ERR_NOMEM, key, "out of memory copying the value");
    memcpy(d, src, (size_t)n);
    *out = d;
    return ANNEAL_OK;
}

static anneal_status copy_array(anneal_gguf_writer *w, const char *key, anneal_gguf_value *dst,
                                const anneal_gguf_value *src, int depth) {
    if (depth >= MAX_DEPTH) return bad(w, ANNEAL_ERR_LIMIT, key, "arrays nested more than 8 deep");
    uint32_t elem = src->arr.elem;
    uint64_t n = src->arr.n;
    if (elem >= ANNEAL_GGUF_TYPE_COUNT)
        return bad(w, ANNEAL_ERR_INVALID_ARG, key, "bad array element type");
    dst->type = ANNEAL_GGUF_ARRAY;
    dst->arr.elem = (anneal_gguf_type)elem;
    dst->arr.n = n;
    dst->arr.data = NULL;
    dst->arr.strs = NULL;
    dst->arr.vals = NULL;
    if (gguf_is_scalar(elem)) {
        if (n > UINT64_MAX / gguf_scalar_size[elem])
            return bad(w, ANNEAL_ERR_RANGE, key, "array too large");
        if (elem == ANNEAL_GGUF_BOOL && src->arr.data)
            for (uint64_t i = 0; i < n; i++)
                if (src->arr.data[i] > 1)
                    return bad(w, ANNEAL_ERR_INVALID_ARG, key, "bool element not 0 or 1");
        const void *d;
        anneal_status st = copy_bytes(w, key, src->arr.data, n * gguf_scalar_size[elem], &d);
        dst->arr.data = d;
        return st;
    }
    if (n == 0) return ANNEAL_OK;
    size_t esize = elem == ANNEAL_GGUF_STRING ? sizeof(anneal_gguf_str) : sizeof(anneal_gguf_value);
    const void *srcp =
        elem == ANNEAL_GGUF_STRING ? (const void *)src->arr.strs : (const void *)src->arr.vals;
    if (!srcp) return bad(w, ANNEAL_ERR_INVALID_ARG, key, "NULL elements for a non-empty array");
    if (n > SIZE_MAX / esize) return bad(w, ANNEAL_ERR_NOMEM, key, "array too large");
    void *arr = anneal_arena_alloc(&w->arena, (size_t)n * esize, 8);
    if (!arr) return bad(w, ANNEAL_ERR_NOMEM, key, "out of memory copying the array");
    if (elem == ANNEAL_GGUF_STRING) {
        anneal_gguf_str *strs = arr;
        for (uint64_t i = 0; i < n; i++) {
            const void *p;
            anneal_status st = copy_bytes(w, key, src->arr.strs[i].ptr, src->arr.strs[i].len, &p);
            if (st) return st;
            strs[i].ptr = p;
            strs[i].len = src->arr.strs[i].len;
        }
        dst->arr.strs = strs;
        return ANNEAL_OK;
    }
    anneal_gguf_value *vals = arr;
    for (uint64_t i = 0; i < n; i++) {
        if (src->arr.vals[i].type != ANNEAL_GGUF_ARRAY)
            return bad(w, ANNEAL_ERR_INVALID_ARG, key,
                       "element of an array of arrays is not an array");
        anneal_status st = copy_array(w, key, &vals[i], &src->arr.vals[i], depth + 1);
        if (st) return st;
    }
    dst->arr.vals = vals;
    return ANNEAL_OK;
}

static anneal_status copy_value(anneal_gguf_writer *w, const char *key, anneal_gguf_value *dst,
                                const anneal_gguf_value *src, int depth) {
    if ((unsigned)src->type >= ANNEAL_GGUF_TYPE_COUNT)
        return bad(w, ANNEAL_ERR_INVALID_ARG, key, "not a GGUF value type");
    if (src->type == ANNEAL_GGUF_ARRAY) return copy_array(w, key, dst, src, depth);
    if (src->type == ANNEAL_GGUF_STRING) {
        const void *p;
        anneal_status st = copy_bytes(w, key, src->str.ptr, src->str.len, &p);
        dst->type = ANNEAL_GGUF_STRING;
        dst->str.ptr = p;
        dst->str.len = src->str.len;
        return st;
    }
    anneal_status st = check_scalar(w, key, src);
    if (!st) *dst = *src;
    return st;
}

static anneal_status set_value(anneal_gguf_writer *w, const char *key, uint64_t key_len,
                               const anneal_gguf_value *v) {
    char shown_key[200];
    gguf_quote(shown_key, sizeof shown_key, key ? key : "", key ? key_len : 0);
    if (!key || key_len == 0) return anneal_err_set(&w->err, ANNEAL_ERR_INVALID_ARG, "empty key");
    if (!v) return bad(w, ANNEAL_ERR_INVALID_ARG, shown_key, "NULL value");
    anneal_gguf_value copy;
    anneal_status st = copy_value(w, shown_key, &copy, v, 0);
    if (st) return st;
    uint64_t at = gguf_index_find(&w->kv_idx, kv_names(w), key, key_len);
    if (at != GGUF_INDEX_NONE) {
        w->kvs[at].v = copy;
        return ANNEAL_OK;
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
        wkv *kvs = anneal_realloc_array(w->kvs, cap, sizeof *kvs);
        if (!kvs) return bad(w, ANNEAL_ERR_NOMEM, shown_key, "out of memory");
        w->kvs = kvs;
        w->cap_kv = cap;
    }
    char *k = anneal_arena_strndup(&w->arena, key, (size_t)key_len);
    if (!k) return bad(w, ANNEAL_ERR_NOMEM, shown_key, "out of memory");
    w->kvs[w->n_kv++] = (wkv){k, key_len, copy};
    if (!gguf_index_add(&w->kv_idx, kv_names(w), w->n_kv)) {
        w->n_kv--;
        return bad(w, ANNEAL_ERR_NOMEM, shown_key, "out of memory");
    }
    return ANNEAL_OK;
}

anneal_status anneal_gguf_writer_set_value(anneal_gguf_writer *w, const char *key,
                                           const anneal_gguf_value *v) {
    return set_value(w, key, key ? strlen(key) : 0, v);
}

anneal_status anneal_gguf_writer_copy_prefix(anneal_gguf_writer *w, const anneal_gguf *g,
                                             const char *prefix) {
    size_t pl = strlen(prefix);
    for (uint64_t i = 0; i < anneal_gguf_n_kv(g); i++) {
        const anneal_gguf_kv *kv = anneal_gguf_kv_at(g, i);
        if (kv->key.len < pl || memcmp(kv->key.ptr, prefix, pl) != 0 ||
            memchr(kv->key.ptr, '\0', (size_t)kv->key.len))
            continue;
        anneal_status st = set_value(w, kv->key.ptr, (size_t)kv->key.len, &kv->value);
        if (st) return st;
    }
    return ANNEAL_OK;
}

static anneal_status set_scalar(anneal_gguf_writer *w, const char *key, anneal_gguf_value v) {
    return set_value(w, key, key ? strlen(key) : 0, &v);
}

anneal_status anneal_gguf_writer_set_u32(anneal_gguf_writer *w, const char *key, uint32_t v) {
    return set_scalar(w, key, (anneal_gguf_value){.type = ANNEAL_GGUF_UINT32, .u64 = v});
}
anneal_status anneal_gguf_writer_set_i32(anneal_gguf_writer *w, const char *key, int32_t v) {
    return set_scalar(w, key, (anneal_gguf_value){.type = ANNEAL_GGUF_INT32, .i64 = v});
}
anneal_status anneal_gguf_writer_set_u64(anneal_gguf_writer *w, const char *key, uint64_t v) {
    return set_scalar(w, key, (anneal_gguf_value){.type = ANNEAL_GGUF_UINT64, .u64 = v});
}
anneal_status anneal_gguf_writer_set_f32(anneal_gguf_writer *w, const char *key, float v) {
    return set_scalar(w, key, (anneal_gguf_value){.type = ANNEAL_GGUF_FLOAT32, .f64 = v});
}
anneal_status anneal_gguf_writer_set_bool(anneal_gguf_writer *w, const char *key, bool v) {
    return set_scalar(w, key, (anneal_gguf_value){.type = ANNEAL_GGUF_BOOL, .b = v});
}
anneal_status anneal_gguf_writer_set_str(anneal_gguf_writer *w, const char *key, const char *s) {
    anneal_gguf_value v = {.type = ANNEAL_GGUF_STRING};
    v.str.ptr = s;
    v.str.len = s ? strlen(s) : 0;
    return set_scalar(w, key, v);
}

anneal_status anneal_gguf_writer_remove(anneal_gguf_writer *w, const char *key) {
    uint64_t at =
        key ? gguf_index_find(&w->kv_idx, kv_names(w), key, strlen(key)) : GGUF_INDEX_NONE;
    if (at == GGUF_INDEX_NONE) return ANNEAL_ERR_NOT_FOUND;
    memmove(&w->kvs[at], &w->kvs[at + 1], (w->n_kv - at - 1) * sizeof *w->kvs);
    w->n_kv--;
    if (!gguf_index_build(&w->kv_idx, kv_names(w), w->n_kv, w->n_kv)) {
        gguf_index_free(&w->kv_idx); // a stale index would point at moved entries
        return anneal_err_set(&w->err, ANNEAL_ERR_NOMEM, "out of memory removing key '%s'", key);
    }
    return ANNEAL_OK;
}

// ---- tensors ------------------------------------------------------------------------

static anneal_status add_tensor(anneal_gguf_writer *w, const char *name, uint64_t name_len,
                                uint32_t type, uint32_t n_dims, const uint64_t *dims,
                                const void *data, uint64_t nbytes, anneal_gguf_fill_fn fill,
                                void *fill_ctx) {
    char sn[200];
    gguf_quote(sn, sizeof sn, name ? name : "", name ? name_len : 0);
    if (!name || name_len == 0)
        return anneal_err_set(&w->err, ANNEAL_ERR_INVALID_ARG, "empty tensor name");
    if (name_len >= GGML_MAX_NAME)
        return anneal_err_set(&w->err, ANNEAL_ERR_INVALID_ARG,
                              "tensor '%s': name is %" PRIu64 " bytes (llama.cpp reads at most %d)",
                              sn, name_len, GGML_MAX_NAME - 1);
    if (gguf_index_find(&w->t_idx, tensor_names(w), name, name_len) != GGUF_INDEX_NONE)
        return anneal_err_set(&w->err, ANNEAL_ERR_INVALID_ARG, "tensor '%s': duplicate name", sn);
    if (n_dims > ANNEAL_GGUF_MAX_DIMS || (n_dims && !dims))
        return anneal_err_set(&w->err, ANNEAL_ERR_INVALID_ARG,
                              "tensor '%s': n_dims %" PRIu32 " (at most 4)", sn, n_dims);
    const anneal_type_info *ti = anneal_type_get(type);
    if (!ti)
        return anneal_err_set(&w->err, ANNEAL_ERR_UNSUPPORTED,
                              "tensor '%s': type %" PRIu32
                              " is unknown, so its size and data cannot be written",
                              sn, type);
    wtensor t = {.n_dims = n_dims,
                 .type = type,
                 .data = data,
                 .nbytes = nbytes,
                 .fill = fill,
                 .fill_ctx = fill_ctx};
    uint64_t n_elems = 1;
    for (uint32_t d = 0; d < ANNEAL_GGUF_MAX_DIMS; d++) {
        t.dims[d] = d < n_dims ? dims[d] : 1;
        if (t.dims[d] > (uint64_t)INT64_MAX ||
            __builtin_mul_overflow(n_elems, t.dims[d], &n_elems) || n_elems > (uint64_t)INT64_MAX)
            return anneal_err_set(&w->err, ANNEAL_ERR_RANGE, "tensor '%s': element count overflows",
                                  sn);
    }
    uint64_t want;
    if (t.dims[0] % ti->block_size != 0 || anneal_type_nbytes(type, n_elems, &want) != ANNEAL_OK)
        return anneal_err_set(&w->err, ANNEAL_ERR_INVALID_ARG,
                              "tensor '%s': dims do not fit whole %s blocks of %" PRIu32, sn,
                              ti->name, ti->block_size);
    if (want != nbytes)
        return anneal_err_set(&w->err, ANNEAL_ERR_INVALID_ARG,
                              "tensor '%s': %" PRIu64 " bytes given, %s dims need %" PRIu64, sn,
                              nbytes, ti->name, want);
    if (nbytes && !data && !fill)
        return anneal_err_set(&w->err, ANNEAL_ERR_INVALID_ARG, "tensor '%s': NULL data", sn);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 16;
        wtensor *ts = anneal_realloc_array(w->ts, cap, sizeof *ts);
        if (!ts) return anneal_err_set(&w->err, ANNEAL_ERR_NOMEM, "tensor '%s': out of memory", sn);
        w->ts = ts;
        w->cap_t = cap;
    }
    t.name = anneal_arena_strndup(&w->arena, name, (size_t)name_len);
    t.name_len = name_len;
    if (!t.name) return anneal_err_set(&w->err, ANNEAL_ERR_NOMEM, "tensor '%s': out of memory", sn);
    w->ts[w->n_t++] = t;
    if (!gguf_index_add(&w->t_idx, tensor_names(w), w->n_t)) {
        w->n_t--;
        return anneal_err_set(&w->err, ANNEAL_ERR_NOMEM, "tensor '%s': out of memory", sn);
    }
    return ANNEAL_OK;
}

anneal_status anneal_gguf_writer_add_tensor(anneal_gguf_writer *w, const char *name, uint32_t type,
                                            uint32_t n_dims, const uint64_t *dims, const void *data,
                                            uint64_t nbytes) {
    return add_tensor(w, name, name ? strlen(name) : 0, type, n_dims, dims, data, nbytes, NULL,
                      NULL);
}

anneal_status anneal_gguf_writer_add_tensor_fill(anneal_gguf_writer *w, const char *name,
                                                 uint32_t type, uint32_t n_dims,
                                                 const uint64_t *dims, uint64_t nbytes,
                                                 anneal_gguf_fill_fn fill, void *ctx) {
    if (!fill) {
        char sn[200];
        gguf_quote(sn, sizeof sn, name ? name : "", name ? strlen(name) : 0);
        return anneal_err_set(&w->err, ANNEAL_ERR_INVALID_ARG, "tensor '%s': NULL fill callback",
                              sn);
    }
    return add_tensor(w, name, name ? strlen(name) : 0, type, n_dims, dims, NULL, nbytes, fill,
                      ctx);
}

void anneal_gguf_writer_set_fill_chunk(anneal_gguf_writer *w, uint64_t bytes) {
    w->fill_chunk = bytes ? bytes : DEFAULT_FILL_CHUNK;
}

anneal_status anneal_gguf_writer_copy(anneal_gguf_writer *w, const anneal_gguf *g) {
    for (uint64_t i = 0; i < anneal_gguf_n_kv(g); i++) {
        const anneal_gguf_kv *kv = anneal_gguf_kv_at(g, i);
        anneal_status st = set_value(w, kv->key.ptr, kv->key.len, &kv->value);
        if (st) return st;
    }
    for (uint64_t i = 0; i < anneal_gguf_n_tensors(g); i++) {
        const anneal_gguf_tensor *t = anneal_gguf_tensor_at(g, i);
        anneal_status st = add_tensor(w, t->name.ptr, t->name.len, t->type, t->n_dims, t->dims,
                                      t->data, t->nbytes, NULL, NULL);
        if (st) return st;
    }
    // gguf-py ends a file without tensors right after the metadata; ggml pads it. Keep
    // whichever the source did so that a copy is identical.
    if (anneal_gguf_n_tensors(g) == 0)
        w->pad_empty = anneal_gguf_file_size(g) > anneal_gguf_meta_size(g);
    return ANNEAL_OK;
}

// ---- output -------------------------------------------------------------------------

typedef struct out {
    anneal_atomic_file f;
    uint8_t *buf;
    size_t n;
    anneal_status st;
    anneal_err *err;
} out;

static void flush(out *o) {
    if (o->st || o->n == 0) return;
    o->st = anneal_atomic_write(&o->f, o->buf, o->n, o->err);
    o->n = 0;
}

static void emit(out *o, const void *p, uint64_t n) {
    if (o->st) return;
    if (n >= OUT_BUF_SIZE) {
        flush(o);
        const uint8_t *b = p;
        while (n > 0 && !o->st) { // chunks keep each write(2) within size_t on any platform
            size_t k = n > (1u << 30) ? (1u << 30) : (size_t)n;
            o->st = anneal_atomic_write(&o->f, b, k, o->err);
            b += k;
            n -= k;
        }
        return;
    }
    if (o->n + n > OUT_BUF_SIZE) flush(o);
    memcpy(o->buf + o->n, p, (size_t)n);
    o->n += (size_t)n;
}

static void emit_u32(out *o, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    emit(o, b, 4);
}

static void emit_u64(out *o, uint64_t v) {
    emit_u32(o, (uint32_t)v);
    emit_u32(o, (uint32_t)(v >> 32));
}

static void emit_str(out *o, const char *s, uint64_t n) {
    emit_u64(o, n);
    emit(o, s, n);
}

static void emit_zeros(out *o, uint64_t n) {
    static const uint8_t zeros[64];
    while (n > 0) {
        uint64_t k = n > sizeof zeros ? sizeof zeros : n;
        emit(o, zeros, k);
        n -= k;
    }
}

static void emit_scalar(out *o, const anneal_gguf_value *v) {
    switch (v->type) {
    case ANNEAL_GGUF_UINT8:
    case ANNEAL_GGUF_INT8: {
        uint8_t b = (uint8_t)v->u64;
        emit(o, &b, 1);
        break;
    }
    case ANNEAL_GGUF_UINT16:
    case ANNEAL_GGUF_INT16: {
        uint8_t b[2] = {(uint8_t)v->u64, (uint8_t)(v->u64 >> 8)};
        emit(o, b, 2);
        break;
    }
    case ANNEAL_GGUF_UINT32:
    case ANNEAL_GGUF_INT32:
        emit_u32(o, (uint32_t)v->u64);
        break;
    case ANNEAL_GGUF_UINT64:
    case ANNEAL_GGUF_INT64:
        emit_u64(o, v->u64);
        break;
    case ANNEAL_GGUF_BOOL: {
        uint8_t b = v->b ? 1 : 0;
        emit(o, &b, 1);
        break;
    }
    case ANNEAL_GGUF_FLOAT32: {
        float f = (float)v->f64;
        uint32_t bits;
        memcpy(&bits, &f, 4);
        emit_u32(o, bits);
        break;
    }
    case ANNEAL_GGUF_FLOAT64: {
        uint64_t bits;
        memcpy(&bits, &v->f64, 8);
        emit_u64(o, bits);
        break;
    }
    default:
        break;
    }
}

// An array body: element type, count, elements (nested arrays repeat the body, untagged).
static void emit_array(out *o, const anneal_gguf_value *v) {
    emit_u32(o, v->arr.elem);
    emit_u64(o, v->arr.n);
    if (gguf_is_scalar(v->arr.elem)) {
        emit(o, v->arr.data, v->arr.n * gguf_scalar_size[v->arr.elem]);
    } else if (v->arr.elem == ANNEAL_GGUF_STRING) {
        for (uint64_t i = 0; i < v->arr.n; i++)
            emit_str(o, v->arr.strs[i].ptr, v->arr.strs[i].len);
    } else {
        for (uint64_t i = 0; i < v->arr.n; i++)
            emit_array(o, &v->arr.vals[i]);
    }
}

static void emit_kv(out *o, const wkv *kv) {
    emit_str(o, kv->key, kv->key_len);
    emit_u32(o, kv->v.type);
    if (kv->v.type == ANNEAL_GGUF_STRING)
        emit_str(o, kv->v.str.ptr, kv->v.str.len);
    else if (kv->v.type == ANNEAL_GGUF_ARRAY)
        emit_array(o, &kv->v);
    else
        emit_scalar(o, &kv->v);
}

static uint64_t pad_to(uint64_t n, uint64_t align) {
    return (align - n % align) % align;
}

// Bytes of one row (dims[0] elements) of t, and how many bytes one fill call is asked for:
// as many whole rows as fit the chunk size, at least one, at most the tensor.
static uint64_t row_bytes(const wtensor *t) {
    uint64_t rows = t->dims[1] * t->dims[2] * t->dims[3]; // bounded: add_tensor checked
    return rows ? t->nbytes / rows : 0;
}

static uint64_t fill_step(const wtensor *t, uint64_t chunk) {
    uint64_t row = row_bytes(t);
    if (row == 0) return 0;
    uint64_t step = chunk / row ? chunk / row * row : row;
    return step < t->nbytes ? step : t->nbytes;
}

// Tensor i's data from its fill callback, a chunk at a time through buf. A failing callback
// stops the write with its message (prefixed with the path).
static void emit_filled(out *o, const wtensor *t, uint64_t i, uint64_t step, uint8_t *buf,
                        const char *path) {
    for (uint64_t off = 0; off < t->nbytes && !o->st; off += step) {
        uint64_t n = t->nbytes - off < step ? t->nbytes - off : step;
        anneal_err ferr = {0};
        anneal_status st = t->fill(t->fill_ctx, i, off, buf, n, &ferr);
        if (st) {
            char sn[200];
            gguf_quote(sn, sizeof sn, t->name, t->name_len);
            if (ferr.status)
                o->st = anneal_err_set(o->err, st, "%s: %s", path, ferr.msg);
            else
                o->st = anneal_err_set(
                    o->err, st, "%s: tensor '%s': filling bytes [%" PRIu64 ", %" PRIu64 ") failed",
                    path, sn, off, off + n);
            return;
        }
        emit(o, buf, n);
    }
}

anneal_status anneal_gguf_writer_write(anneal_gguf_writer *w, const char *path, anneal_err *err) {
    if (w->err.status) return anneal_err_set(err, w->err.status, "%s: %s", path, w->err.msg);
    uint64_t align = ANNEAL_GGUF_DEFAULT_ALIGNMENT;
    uint64_t ai = gguf_index_find(&w->kv_idx, kv_names(w), "general.alignment", 17);
    if (ai != GGUF_INDEX_NONE) {
        const anneal_gguf_value *v = &w->kvs[ai].v;
        if (v->type != ANNEAL_GGUF_UINT32 || v->u64 == 0 || (v->u64 & (v->u64 - 1)))
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                  "%s: key 'general.alignment' must be a u32 power of two", path);
        align = v->u64;
    }
    // Offsets: each tensor at the next multiple of the alignment after the previous one.
    uint64_t *offs = anneal_calloc(w->n_t ? w->n_t : 1, sizeof *offs);
    if (!offs) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", path);
    uint64_t pos = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        offs[i] = pos;
        uint64_t end;
        if (__builtin_add_overflow(pos, w->ts[i].nbytes, &end) ||
            __builtin_add_overflow(end, pad_to(end, align), &pos)) {
            anneal_free(offs);
            return anneal_err_set(err, ANNEAL_ERR_RANGE, "%s: tensor data larger than 2^64 bytes",
                                  path);
        }
    }
    // One buffer serves every fill tensor: the largest chunk any of them is asked for.
    uint64_t fill_cap = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        uint64_t step = w->ts[i].fill ? fill_step(&w->ts[i], w->fill_chunk) : 0;
        if (step > fill_cap) fill_cap = step;
    }
    out o = {.err = err};
    o.buf = anneal_malloc(OUT_BUF_SIZE);
    uint8_t *fill_buf = NULL;
    if (fill_cap && fill_cap <= SIZE_MAX / 2) fill_buf = anneal_malloc((size_t)fill_cap);
    if (!o.buf || (fill_cap && !fill_buf)) {
        anneal_free(fill_buf);
        anneal_free(offs);
        bool buf_failed = !o.buf;
        anneal_free(o.buf);
        if (buf_failed) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", path);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM,
                              "%s: out of memory (%" PRIu64 " byte fill chunk)", path, fill_cap);
    }
    o.st = anneal_atomic_open(&o.f, path, err);
    if (!o.st) {
        emit(&o, "GGUF", 4);
        emit_u32(&o, 3);
        emit_u64(&o, w->n_t);
        emit_u64(&o, w->n_kv);
        for (size_t i = 0; i < w->n_kv; i++)
            emit_kv(&o, &w->kvs[i]);
        for (size_t i = 0; i < w->n_t; i++) {
            const wtensor *t = &w->ts[i];
            emit_str(&o, t->name, t->name_len);
            emit_u32(&o, t->n_dims);
            for (uint32_t d = 0; d < t->n_dims; d++)
                emit_u64(&o, t->dims[d]);
            emit_u32(&o, t->type);
            emit_u64(&o, offs[i]);
        }
        flush(&o);
        if (!o.st && (w->n_t > 0 || w->pad_empty)) emit_zeros(&o, pad_to(o.f.written, align));
        for (size_t i = 0; i < w->n_t && !o.st; i++) {
            const wtensor *t = &w->ts[i];
            if (t->fill)
                emit_filled(&o, t, i, fill_step(t, w->fill_chunk), fill_buf, path);
            else
                emit(&o, t->data, t->nbytes);
            emit_zeros(&o, pad_to(t->nbytes, align));
        }
        flush(&o);
    }
    if (!o.st)
        o.st = anneal_atomic_commit(&o.f, err);
    else
        anneal_atomic_abort(&o.f);
    anneal_free(fill_buf);
    anneal_free(o.buf);
    anneal_free(offs);
    return o.st;
}
