// GGUF reader: maps a file (or borrows a buffer), checks every field against the bytes that
// remain before using it, and exposes key/values and tensor infos as views into the file.
#include "anneal/gguf.h"

#include "anneal/tensor.h"
#include "model/gguf_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Arrays of arrays are legal GGUF; the cap keeps recursion (and hostile files) bounded.
#define MAX_DEPTH 8

struct anneal_gguf {
    anneal_map map; // owned mapping; zeroed when the caller lent the bytes
    const uint8_t *base;
    uint64_t size;
    uint32_t version;
    uint64_t alignment;
    uint64_t meta_size;   // header + key/values + tensor infos, before padding
    uint64_t data_offset; // meta_size rounded up to the alignment
    uint64_t n_kv;
    anneal_gguf_kv *kvs;
    uint64_t n_tensors;
    anneal_gguf_tensor *tensors;
    gguf_index kv_idx, t_idx; // key -> kvs[i], name -> tensors[i]
    anneal_arena arena;       // string-array views and nested array values
};

// ---- little-endian decoding -------------------------------------------------------

static uint16_t le16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) {
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static const char *const TYPE_NAMES[ANNEAL_GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64",
};

const char *anneal_gguf_type_name(anneal_gguf_type t) {
    return (unsigned)t < ANNEAL_GGUF_TYPE_COUNT ? TYPE_NAMES[t] : "?";
}

// Decodes one scalar of type t at p (gguf_scalar_size[t] bytes) into v.
static void decode_scalar(uint32_t t, const uint8_t *p, anneal_gguf_value *v) {
    v->type = (anneal_gguf_type)t;
    switch (t) {
    case ANNEAL_GGUF_UINT8:
        v->u64 = p[0];
        break;
    case ANNEAL_GGUF_INT8:
        v->i64 = (int8_t)p[0];
        break;
    case ANNEAL_GGUF_UINT16:
        v->u64 = le16(p);
        break;
    case ANNEAL_GGUF_INT16:
        v->i64 = (int16_t)le16(p);
        break;
    case ANNEAL_GGUF_UINT32:
        v->u64 = le32(p);
        break;
    case ANNEAL_GGUF_INT32:
        v->i64 = (int32_t)le32(p);
        break;
    case ANNEAL_GGUF_UINT64:
        v->u64 = le64(p);
        break;
    case ANNEAL_GGUF_INT64:
        v->i64 = (int64_t)le64(p);
        break;
    case ANNEAL_GGUF_BOOL:
        v->b = p[0] != 0;
        break;
    case ANNEAL_GGUF_FLOAT32: {
        uint32_t bits = le32(p);
        float f;
        memcpy(&f, &bits, 4);
        v->f64 = f;
        break;
    }
    case ANNEAL_GGUF_FLOAT64: {
        uint64_t bits = le64(p);
        memcpy(&v->f64, &bits, 8);
        break;
    }
    default:
        break;
    }
}

static bool str_eq(anneal_gguf_str a, const char *b, uint64_t blen) {
    return a.len == blen && (blen == 0 || memcmp(a.ptr, b, blen) == 0);
}

// ---- the cursor ---------------------------------------------------------------------

typedef struct rd {
    const uint8_t *p;
    uint64_t size, pos;
    anneal_err *err;
    anneal_arena *arena;
    char where[200]; // "key 'x': " or "tensor 'y': ", prefixed to messages
} rd;

// Printable form of bytes for messages: ASCII kept, others \xNN, long ones cut with "...".
__attribute__((format(printf, 4, 5))) static anneal_status
fail(rd *r, anneal_status st, uint64_t off, const char *fmt, ...) {
    char msg[ANNEAL_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return anneal_err_set(r->err, st, "at offset %" PRIu64 ": %s%s", off, r->where, msg);
}

static uint64_t remain(const rd *r) {
    return r->size - r->pos;
}

static anneal_status need(rd *r, uint64_t n, const char *what) {
    if (n > remain(r))
        return fail(r, ANNEAL_ERR_FORMAT, r->pos,
                    "%s needs %" PRIu64 " bytes but the file ends after %" PRIu64
                    " (file size %" PRIu64 ")",
                    what, n, remain(r), r->size);
    return ANNEAL_OK;
}

static anneal_status get_u32(rd *r, const char *what, uint32_t *out) {
    anneal_status st = need(r, 4, what);
    if (st) return st;
    *out = le32(r->p + r->pos);
    r->pos += 4;
    return ANNEAL_OK;
}

static anneal_status get_u64(rd *r, const char *what, uint64_t *out) {
    anneal_status st = need(r, 8, what);
    if (st) return st;
    *out = le64(r->p + r->pos);
    r->pos += 8;
    return ANNEAL_OK;
}

static anneal_status get_str(rd *r, const char *what, anneal_gguf_str *out) {
    uint64_t off = r->pos, len;
    anneal_status st = get_u64(r, what, &len);
    if (st) return st;
    if (len > remain(r))
        return fail(r, ANNEAL_ERR_FORMAT, off,
                    "%s length %" PRIu64 " runs past the end of the file (%" PRIu64
                    " bytes remain)",
                    what, len, remain(r));
    out->ptr = (const char *)(r->p + r->pos);
    out->len = len;
    r->pos += len;
    return ANNEAL_OK;
}

static anneal_status get_value(rd *r, uint32_t type, int depth, anneal_gguf_value *v);

static anneal_status get_array(rd *r, int depth, anneal_gguf_value *v) {
    uint64_t off = r->pos;
    if (depth >= MAX_DEPTH)
        return fail(r, ANNEAL_ERR_LIMIT, off, "arrays nested more than %d deep", MAX_DEPTH);
    uint32_t elem;
    uint64_t n;
    anneal_status st = get_u32(r, "array element type", &elem);
    if (!st) st = get_u64(r, "array length", &n);
    if (st) return st;
    if (elem >= ANNEAL_GGUF_TYPE_COUNT)
        return fail(r, ANNEAL_ERR_FORMAT, off,
                    "array element type %" PRIu32 " is not a GGUF type (0..12)", elem);
    // The smallest encoding of one element bounds n before anything is allocated.
    uint64_t min_size = gguf_is_scalar(elem)         ? gguf_scalar_size[elem]
                        : elem == ANNEAL_GGUF_STRING ? 8
                                                     : 12;
    if (n > remain(r) / min_size)
        return fail(r, ANNEAL_ERR_FORMAT, off + 4,
                    "array of %" PRIu64 " %s elements cannot fit in the %" PRIu64
                    " bytes that remain",
                    n, anneal_gguf_type_name((anneal_gguf_type)elem), remain(r));
    v->type = ANNEAL_GGUF_ARRAY;
    v->arr.elem = (anneal_gguf_type)elem;
    v->arr.n = n;
    v->arr.data = NULL;
    v->arr.strs = NULL;
    v->arr.vals = NULL;
    if (gguf_is_scalar(elem)) {
        v->arr.data = r->p + r->pos;
        if (elem == ANNEAL_GGUF_BOOL) {
            for (uint64_t i = 0; i < n; i++)
                if (r->p[r->pos + i] > 1)
                    return fail(r, ANNEAL_ERR_FORMAT, r->pos + i,
                                "bool array element %" PRIu64 " is %u (must be 0 or 1)", i,
                                r->p[r->pos + i]);
        }
        r->pos += n * min_size;
        return ANNEAL_OK;
    }
    if (n == 0) return ANNEAL_OK;
    if (elem == ANNEAL_GGUF_STRING) {
        anneal_gguf_str *strs =
            anneal_arena_alloc(r->arena, n * sizeof *strs, _Alignof(anneal_gguf_str));
        if (!strs)
            return fail(r, ANNEAL_ERR_NOMEM, off, "out of memory for %" PRIu64 " strings", n);
        for (uint64_t i = 0; i < n; i++) {
            char what[64];
            snprintf(what, sizeof what, "string %" PRIu64 " of the array", i);
            if ((st = get_str(r, what, &strs[i]))) return st;
        }
        v->arr.strs = strs;
        return ANNEAL_OK;
    }
    anneal_gguf_value *vals =
        anneal_arena_alloc(r->arena, n * sizeof *vals, _Alignof(anneal_gguf_value));
    if (!vals)
        return fail(r, ANNEAL_ERR_NOMEM, off, "out of memory for %" PRIu64 " nested arrays", n);
    for (uint64_t i = 0; i < n; i++)
        if ((st = get_value(r, elem, depth + 1, &vals[i]))) return st;
    v->arr.vals = vals;
    return ANNEAL_OK;
}

static anneal_status get_value(rd *r, uint32_t type, int depth, anneal_gguf_value *v) {
    if (gguf_is_scalar(type)) {
        anneal_status st =
            need(r, gguf_scalar_size[type], anneal_gguf_type_name((anneal_gguf_type)type));
        if (st) return st;
        const uint8_t *p = r->p + r->pos;
        if (type == ANNEAL_GGUF_BOOL && p[0] > 1)
            return fail(r, ANNEAL_ERR_FORMAT, r->pos, "bool value is %u (must be 0 or 1)", p[0]);
        decode_scalar(type, p, v);
        r->pos += gguf_scalar_size[type];
        return ANNEAL_OK;
    }
    if (type == ANNEAL_GGUF_STRING) {
        v->type = ANNEAL_GGUF_STRING;
        return get_str(r, "string", &v->str);
    }
    return get_array(r, depth, v);
}

// ---- indexes ------------------------------------------------------------------------

static gguf_names kv_names(const anneal_gguf *g) {
    return (gguf_names){g->kvs, sizeof(anneal_gguf_kv), offsetof(anneal_gguf_kv, key.ptr),
                        offsetof(anneal_gguf_kv, key.len)};
}

static gguf_names tensor_names(const anneal_gguf *g) {
    return (gguf_names){g->tensors, sizeof(anneal_gguf_tensor),
                        offsetof(anneal_gguf_tensor, name.ptr),
                        offsetof(anneal_gguf_tensor, name.len)};
}

static uint64_t find_kv(const anneal_gguf *g, const char *s, uint64_t n) {
    return gguf_index_find(&g->kv_idx, kv_names(g), s, n);
}

static uint64_t find_tensor(const anneal_gguf *g, const char *s, uint64_t n) {
    return gguf_index_find(&g->t_idx, tensor_names(g), s, n);
}

// ---- parsing ------------------------------------------------------------------------

static void set_where(rd *r, const char *kind, anneal_gguf_str name) {
    char q[128];
    gguf_quote(q, sizeof q, name.ptr, name.len);
    snprintf(r->where, sizeof r->where, "%s '%s': ", kind, q);
}

static anneal_status parse_header(rd *r, anneal_gguf *g, uint64_t *n_tensors, uint64_t *n_kv) {
    if (r->size < 4)
        return fail(r, ANNEAL_ERR_FORMAT, 0,
                    "file is %" PRIu64 " bytes, too short for the GGUF magic", r->size);
    if (memcmp(r->p, "GGUF", 4) != 0) {
        char q[64];
        gguf_quote(q, sizeof q, (const char *)r->p, 4);
        return fail(r, ANNEAL_ERR_FORMAT, 0, "bad magic '%s' (expected 'GGUF')", q);
    }
    r->pos = 4;
    anneal_status st = get_u32(r, "version", &g->version);
    if (st) return st;
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xFFFF) == 0)
            return fail(r, ANNEAL_ERR_UNSUPPORTED, 4,
                        "version 0x%08" PRIx32
                        " looks byte-swapped: big-endian GGUF is not supported",
                        g->version);
        return fail(r, ANNEAL_ERR_UNSUPPORTED, 4,
                    "GGUF version %" PRIu32 " is not supported (need 2 or 3)", g->version);
    }
    if ((st = get_u64(r, "tensor count", n_tensors))) return st;
    if ((st = get_u64(r, "key/value count", n_kv))) return st;
    // Smallest encodings: a key/value is 8 (key length) + 4 (type) + 1 bytes; a tensor info
    // 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes.
    if (*n_kv > remain(r) / 13)
        return fail(r, ANNEAL_ERR_FORMAT, 16,
                    "%" PRIu64 " key/values cannot fit in the %" PRIu64 " bytes that remain", *n_kv,
                    remain(r));
    if (*n_tensors > remain(r) / 24 || *n_kv * 13 > remain(r) - *n_tensors * 24)
        return fail(r, ANNEAL_ERR_FORMAT, 8,
                    "%" PRIu64 " tensors and %" PRIu64 " key/values cannot fit in the %" PRIu64
                    " bytes that remain",
                    *n_tensors, *n_kv, remain(r));
    return ANNEAL_OK;
}

static anneal_status parse_kvs(rd *r, anneal_gguf *g) {
    if (g->n_kv) g->kvs = anneal_calloc(g->n_kv, sizeof *g->kvs);
    if ((g->n_kv && !g->kvs) || !gguf_index_build(&g->kv_idx, kv_names(g), 0, g->n_kv))
        return fail(r, ANNEAL_ERR_NOMEM, 16, "out of memory for %" PRIu64 " key/values", g->n_kv);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        anneal_gguf_kv *kv = &g->kvs[i];
        uint64_t off = r->pos;
        r->where[0] = '\0';
        char what[48];
        snprintf(what, sizeof what, "key %" PRIu64, i);
        anneal_status st = get_str(r, what, &kv->key);
        if (st) return st;
        if (kv->key.len == 0) return fail(r, ANNEAL_ERR_FORMAT, off, "key %" PRIu64 " is empty", i);
        set_where(r, "key", kv->key);
        uint64_t prev = find_kv(g, kv->key.ptr, kv->key.len);
        if (prev != GGUF_INDEX_NONE)
            return fail(r, ANNEAL_ERR_FORMAT, off,
                        "duplicate key (key/values %" PRIu64 " and %" PRIu64 ")", prev, i);
        uint64_t toff = r->pos;
        uint32_t type;
        if ((st = get_u32(r, "value type", &type))) return st;
        if (type >= ANNEAL_GGUF_TYPE_COUNT)
            return fail(r, ANNEAL_ERR_FORMAT, toff,
                        "value type %" PRIu32 " is not a GGUF type (0..12)", type);
        uint64_t voff = r->pos;
        if ((st = get_value(r, type, 0, &kv->value))) return st;
        if (str_eq(kv->key, "general.alignment", 17)) {
            if (type != ANNEAL_GGUF_UINT32)
                return fail(r, ANNEAL_ERR_FORMAT, toff, "must be u32, not %s",
                            anneal_gguf_type_name((anneal_gguf_type)type));
            uint64_t a = kv->value.u64;
            if (a == 0 || (a & (a - 1)) != 0)
                return fail(r, ANNEAL_ERR_FORMAT, voff,
                            "alignment %" PRIu64 " is not a power of two", a);
            g->alignment = a;
        }
        if (!gguf_index_add(&g->kv_idx, kv_names(g), i + 1)) // sized above: never grows
            return fail(r, ANNEAL_ERR_NOMEM, off, "out of memory indexing the key");
    }
    r->where[0] = '\0';
    return ANNEAL_OK;
}

typedef struct extent {
    uint64_t begin, end, idx;
} extent;

static int cmp_extent(const void *a, const void *b) {
    const extent *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

// Reads one tensor info; *info_off gets the file offset of its offset field (for messages).
static anneal_status parse_tensor(rd *r, anneal_gguf *g, uint64_t i, uint64_t *info_off) {
    anneal_gguf_tensor *t = &g->tensors[i];
    uint64_t off = r->pos;
    r->where[0] = '\0';
    char what[48];
    snprintf(what, sizeof what, "name of tensor %" PRIu64, i);
    anneal_status st = get_str(r, what, &t->name);
    if (st) return st;
    set_where(r, "tensor", t->name);
    uint64_t prev = find_tensor(g, t->name.ptr, t->name.len);
    if (prev != GGUF_INDEX_NONE)
        return fail(r, ANNEAL_ERR_FORMAT, off,
                    "duplicate tensor name (tensors %" PRIu64 " and %" PRIu64 ")", prev, i);
    uint64_t doff = r->pos;
    if ((st = get_u32(r, "n_dims", &t->n_dims))) return st;
    if (t->n_dims > ANNEAL_GGUF_MAX_DIMS)
        return fail(r, ANNEAL_ERR_FORMAT, doff, "n_dims is %" PRIu32 " (at most %d)", t->n_dims,
                    ANNEAL_GGUF_MAX_DIMS);
    uint64_t n_elems = 1;
    for (uint32_t d = 0; d < ANNEAL_GGUF_MAX_DIMS; d++) {
        t->dims[d] = 1;
        if (d >= t->n_dims) continue;
        uint64_t eoff = r->pos;
        if ((st = get_u64(r, "dimension", &t->dims[d]))) return st;
        if (t->dims[d] > (uint64_t)INT64_MAX)
            return fail(r, ANNEAL_ERR_FORMAT, eoff,
                        "dimension %" PRIu32 " is %" PRIu64 " (more than 2^63-1)", d, t->dims[d]);
        if (__builtin_mul_overflow(n_elems, t->dims[d], &n_elems) || n_elems > (uint64_t)INT64_MAX)
            return fail(
                r, ANNEAL_ERR_FORMAT, eoff,
                "element count overflows: the product of the dimensions is more than 2^63-1");
    }
    uint64_t type_off = r->pos;
    if ((st = get_u32(r, "tensor type", &t->type))) return st;
    *info_off = r->pos;
    if ((st = get_u64(r, "tensor offset", &t->offset))) return st;
    const anneal_type_info *ti = anneal_type_get(t->type);
    if (ti) {
        if (t->dims[0] % ti->block_size != 0)
            return fail(r, ANNEAL_ERR_FORMAT, type_off,
                        "row length %" PRIu64 " is not a multiple of the %s block size %" PRIu32,
                        t->dims[0], ti->name, ti->block_size);
        if (anneal_type_nbytes(t->type, n_elems, &t->nbytes) != ANNEAL_OK)
            return fail(r, ANNEAL_ERR_FORMAT, type_off,
                        "size in bytes of %" PRIu64 " %s elements overflows", n_elems, ti->name);
    }
    if (t->offset % g->alignment != 0)
        return fail(r, ANNEAL_ERR_FORMAT, *info_off,
                    "data offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                    t->offset, g->alignment);
    if (!gguf_index_add(&g->t_idx, tensor_names(g), i + 1)) // sized up front: never grows
        return fail(r, ANNEAL_ERR_NOMEM, off, "out of memory indexing the tensor name");
    return ANNEAL_OK;
}

static anneal_status parse_tensors(rd *r, anneal_gguf *g) {
    if (g->n_tensors) g->tensors = anneal_calloc(g->n_tensors, sizeof *g->tensors);
    uint64_t *info_off = anneal_calloc(g->n_tensors ? g->n_tensors : 1, sizeof(uint64_t));
    extent *ext = anneal_calloc(g->n_tensors ? g->n_tensors : 1, sizeof(extent));
    anneal_status st = ANNEAL_OK;
    if ((g->n_tensors && !g->tensors) || !info_off || !ext ||
        !gguf_index_build(&g->t_idx, tensor_names(g), 0, g->n_tensors)) {
        st = fail(r, ANNEAL_ERR_NOMEM, 8, "out of memory for %" PRIu64 " tensors", g->n_tensors);
        goto out;
    }
    for (uint64_t i = 0; i < g->n_tensors && !st; i++)
        st = parse_tensor(r, g, i, &info_off[i]);
    if (st) goto out;
    r->where[0] = '\0';
    g->meta_size = r->pos;
    uint64_t pad = (g->alignment - g->meta_size % g->alignment) % g->alignment;
    g->data_offset = g->meta_size + pad;
    if (g->n_tensors && g->data_offset > r->size) {
        st = fail(r, ANNEAL_ERR_FORMAT, g->meta_size,
                  "the data section should start at %" PRIu64 ", past the end of the file (%" PRIu64
                  " bytes)",
                  g->data_offset, r->size);
        goto out;
    }
    uint64_t n_ext = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        anneal_gguf_tensor *t = &g->tensors[i];
        if (!anneal_type_get(t->type)) continue; // unknown size: refused when used, not here
        uint64_t room = r->size - g->data_offset;
        if (t->offset > room || t->nbytes > room - t->offset) {
            set_where(r, "tensor", t->name);
            st = fail(r, ANNEAL_ERR_FORMAT, info_off[i],
                      "data at %" PRIu64 " + %" PRIu64
                      " bytes runs past the end of the file (%" PRIu64
                      " bytes, data section at %" PRIu64 ")",
                      t->offset, t->nbytes, r->size, g->data_offset);
            goto out;
        }
        t->data = r->p + g->data_offset + t->offset;
        if (t->nbytes) ext[n_ext++] = (extent){t->offset, t->offset + t->nbytes, i};
    }
    qsort(ext, n_ext, sizeof *ext, cmp_extent);
    for (uint64_t k = 1; k < n_ext; k++) {
        if (ext[k].begin < ext[k - 1].end) {
            const anneal_gguf_tensor *a = &g->tensors[ext[k - 1].idx], *b = &g->tensors[ext[k].idx];
            char qa[128];
            gguf_quote(qa, sizeof qa, a->name.ptr, a->name.len);
            set_where(r, "tensor", b->name);
            st = fail(r, ANNEAL_ERR_FORMAT, info_off[ext[k].idx],
                      "data [%" PRIu64 ", %" PRIu64 ") overlaps tensor '%s' [%" PRIu64 ", %" PRIu64
                      ")",
                      ext[k].begin, ext[k].end, qa, ext[k - 1].begin, ext[k - 1].end);
            goto out;
        }
    }
out:
    anneal_free(info_off);
    anneal_free(ext);
    return st;
}

static anneal_status parse(anneal_gguf *g, anneal_err *err) {
    rd r = {.p = g->base, .size = g->size, .err = err, .arena = &g->arena};
    g->alignment = ANNEAL_GGUF_DEFAULT_ALIGNMENT;
    anneal_status st = parse_header(&r, g, &g->n_tensors, &g->n_kv);
    if (!st) st = parse_kvs(&r, g);
    if (!st) st = parse_tensors(&r, g);
    return st;
}

static anneal_status open_common(anneal_gguf *g, anneal_gguf **out, anneal_err *err) {
    anneal_status st = parse(g, err);
    if (st) {
        anneal_gguf_close(g);
        return st;
    }
    *out = g;
    return ANNEAL_OK;
}

static anneal_gguf *handle_new(void) {
    anneal_gguf *g = anneal_calloc(1, sizeof *g);
    if (g) anneal_arena_init(&g->arena, 256 * 1024, 0);
    return g;
}

anneal_status anneal_gguf_open_memory(const void *data, size_t size, anneal_gguf **out,
                                      anneal_err *err) {
    *out = NULL;
    anneal_gguf *g = handle_new();
    if (!g) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory opening a GGUF buffer");
    g->base = data;
    g->size = data ? size : 0;
    return open_common(g, out, err);
}

anneal_status anneal_gguf_open(const char *path, anneal_gguf **out, anneal_err *err) {
    *out = NULL;
    anneal_gguf *g = handle_new();
    if (!g) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", path);
    anneal_status st = anneal_map_file(path, &g->map, err);
    if (st) {
        anneal_gguf_close(g);
        return st;
    }
    g->base = g->map.data;
    g->size = g->map.size;
    // Parse into a local buffer so the message can be prefixed with the path.
    anneal_err local = {0};
    st = open_common(g, out, &local);
    if (st) return anneal_err_set(err, st, "%s: %s", path, anneal_err_msg(&local));
    return ANNEAL_OK;
}

void anneal_gguf_close(anneal_gguf *g) {
    if (!g) return;
    anneal_unmap(&g->map);
    anneal_free(g->kvs);
    anneal_free(g->tensors);
    gguf_index_free(&g->kv_idx);
    gguf_index_free(&g->t_idx);
    anneal_arena_free(&g->arena);
    anneal_free(g);
}

// ---- accessors ----------------------------------------------------------------------

uint32_t anneal_gguf_version(const anneal_gguf *g) {
    return g->version;
}
uint64_t anneal_gguf_alignment(const anneal_gguf *g) {
    return g->alignment;
}
uint64_t anneal_gguf_data_offset(const anneal_gguf *g) {
    return g->data_offset;
}
uint64_t anneal_gguf_meta_size(const anneal_gguf *g) {
    return g->meta_size;
}
uint64_t anneal_gguf_file_size(const anneal_gguf *g) {
    return g->size;
}
uint64_t anneal_gguf_n_kv(const anneal_gguf *g) {
    return g->n_kv;
}
uint64_t anneal_gguf_n_tensors(const anneal_gguf *g) {
    return g->n_tensors;
}

const anneal_gguf_kv *anneal_gguf_kv_at(const anneal_gguf *g, uint64_t i) {
    return i < g->n_kv ? &g->kvs[i] : NULL;
}

const anneal_gguf_tensor *anneal_gguf_tensor_at(const anneal_gguf *g, uint64_t i) {
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const anneal_gguf_kv *anneal_gguf_find(const anneal_gguf *g, const char *key) {
    uint64_t i = find_kv(g, key, strlen(key));
    return i == GGUF_INDEX_NONE ? NULL : &g->kvs[i];
}

const anneal_gguf_tensor *anneal_gguf_find_tensor(const anneal_gguf *g, const char *name) {
    uint64_t i = find_tensor(g, name, strlen(name));
    return i == GGUF_INDEX_NONE ? NULL : &g->tensors[i];
}

static bool is_unsigned(anneal_gguf_type t) {
    return t == ANNEAL_GGUF_UINT8 || t == ANNEAL_GGUF_UINT16 || t == ANNEAL_GGUF_UINT32 ||
           t == ANNEAL_GGUF_UINT64;
}
static bool is_signed(anneal_gguf_type t) {
    return t == ANNEAL_GGUF_INT8 || t == ANNEAL_GGUF_INT16 || t == ANNEAL_GGUF_INT32 ||
           t == ANNEAL_GGUF_INT64;
}

static anneal_status lookup(const anneal_gguf *g, const char *key, const anneal_gguf_value **v,
                            anneal_err *err) {
    const anneal_gguf_kv *kv = anneal_gguf_find(g, key);
    if (!kv) return anneal_err_set(err, ANNEAL_ERR_NOT_FOUND, "key '%s' not found", key);
    *v = &kv->value;
    return ANNEAL_OK;
}

static anneal_status wrong_type(const char *key, const anneal_gguf_value *v, const char *want,
                                anneal_err *err) {
    return anneal_err_set(err, ANNEAL_ERR_FORMAT, "key '%s' is %s, expected %s", key,
                          anneal_gguf_type_name(v->type), want);
}

anneal_status anneal_gguf_get_u64(const anneal_gguf *g, const char *key, uint64_t *out,
                                  anneal_err *err) {
    const anneal_gguf_value *v = NULL;
    anneal_status st = lookup(g, key, &v, err);
    if (st) return st;
    if (is_unsigned(v->type))
        *out = v->u64;
    else if (is_signed(v->type) && v->i64 >= 0)
        *out = (uint64_t)v->i64;
    else if (is_signed(v->type))
        return anneal_err_set(err, ANNEAL_ERR_RANGE,
                              "key '%s' is %" PRId64 ", expected a value >= 0", key, v->i64);
    else
        return wrong_type(key, v, "an integer", err);
    return ANNEAL_OK;
}

anneal_status anneal_gguf_get_i64(const anneal_gguf *g, const char *key, int64_t *out,
                                  anneal_err *err) {
    const anneal_gguf_value *v = NULL;
    anneal_status st = lookup(g, key, &v, err);
    if (st) return st;
    if (is_signed(v->type))
        *out = v->i64;
    else if (is_unsigned(v->type) && v->u64 <= (uint64_t)INT64_MAX)
        *out = (int64_t)v->u64;
    else if (is_unsigned(v->type))
        return anneal_err_set(err, ANNEAL_ERR_RANGE, "key '%s' is %" PRIu64 ", more than 2^63-1",
                              key, v->u64);
    else
        return wrong_type(key, v, "an integer", err);
    return ANNEAL_OK;
}

anneal_status anneal_gguf_get_f64(const anneal_gguf *g, const char *key, double *out,
                                  anneal_err *err) {
    const anneal_gguf_value *v = NULL;
    anneal_status st = lookup(g, key, &v, err);
    if (st) return st;
    if (v->type != ANNEAL_GGUF_FLOAT32 && v->type != ANNEAL_GGUF_FLOAT64)
        return wrong_type(key, v, "f32 or f64", err);
    *out = v->f64;
    return ANNEAL_OK;
}

anneal_status anneal_gguf_get_bool(const anneal_gguf *g, const char *key, bool *out,
                                   anneal_err *err) {
    const anneal_gguf_value *v = NULL;
    anneal_status st = lookup(g, key, &v, err);
    if (st) return st;
    if (v->type != ANNEAL_GGUF_BOOL) return wrong_type(key, v, "bool", err);
    *out = v->b;
    return ANNEAL_OK;
}

anneal_status anneal_gguf_get_str(const anneal_gguf *g, const char *key, anneal_gguf_str *out,
                                  anneal_err *err) {
    const anneal_gguf_value *v = NULL;
    anneal_status st = lookup(g, key, &v, err);
    if (st) return st;
    if (v->type != ANNEAL_GGUF_STRING) return wrong_type(key, v, "str", err);
    *out = v->str;
    return ANNEAL_OK;
}

anneal_status anneal_gguf_get_arr(const anneal_gguf *g, const char *key, anneal_gguf_type elem,
                                  const anneal_gguf_value **out, anneal_err *err) {
    const anneal_gguf_value *v = NULL;
    anneal_status st = lookup(g, key, &v, err);
    if (st) return st;
    if (v->type != ANNEAL_GGUF_ARRAY) return wrong_type(key, v, "arr", err);
    if (elem != ANNEAL_GGUF_TYPE_COUNT && v->arr.elem != elem)
        return anneal_err_set(err, ANNEAL_ERR_FORMAT,
                              "key '%s' is an array of %s, expected an array of %s", key,
                              anneal_gguf_type_name(v->arr.elem), anneal_gguf_type_name(elem));
    *out = v;
    return ANNEAL_OK;
}

double anneal_gguf_arr_f64(const anneal_gguf_value *arr, uint64_t i) {
    if (arr->type != ANNEAL_GGUF_ARRAY || !gguf_is_scalar(arr->arr.elem) || i >= arr->arr.n)
        return 0.0;
    anneal_gguf_value v;
    decode_scalar(arr->arr.elem, arr->arr.data + i * gguf_scalar_size[arr->arr.elem], &v);
    if (is_unsigned(v.type)) return (double)v.u64;
    if (is_signed(v.type)) return (double)v.i64;
    if (v.type == ANNEAL_GGUF_BOOL) return v.b ? 1.0 : 0.0;
    return v.f64;
}

int64_t anneal_gguf_arr_i64(const anneal_gguf_value *arr, uint64_t i) {
    if (arr->type != ANNEAL_GGUF_ARRAY || !gguf_is_scalar(arr->arr.elem) || i >= arr->arr.n)
        return 0;
    anneal_gguf_value v;
    decode_scalar(arr->arr.elem, arr->arr.data + i * gguf_scalar_size[arr->arr.elem], &v);
    if (is_unsigned(v.type)) return v.u64 > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v.u64;
    if (is_signed(v.type)) return v.i64;
    if (v.type == ANNEAL_GGUF_BOOL) return v.b;
    // Floats: truncate toward zero, saturating (a plain cast is undefined out of range).
    if (isnan(v.f64)) return 0;
    if (v.f64 >= 9223372036854775808.0) return INT64_MAX;
    if (v.f64 < -9223372036854775808.0) return INT64_MIN;
    return (int64_t)v.f64;
}
