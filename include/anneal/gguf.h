// anneal GGUF: read (mmap, zero-copy, fully bounds-checked) and write GGUF v3 files.
// Format: magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, the key/values, the tensor
// infos, padding to general.alignment (default 32), then the data section. All integers
// little-endian. Tensor offsets are relative to the data section.
#ifndef ANNEAL_GGUF_H
#define ANNEAL_GGUF_H

#include "anneal/base.h"

#ifdef __cplusplus
extern "C" {
#endif

// Value types; the numbers are the file format's.
typedef enum anneal_gguf_type {
    ANNEAL_GGUF_UINT8 = 0,
    ANNEAL_GGUF_INT8 = 1,
    ANNEAL_GGUF_UINT16 = 2,
    ANNEAL_GGUF_INT16 = 3,
    ANNEAL_GGUF_UINT32 = 4,
    ANNEAL_GGUF_INT32 = 5,
    ANNEAL_GGUF_FLOAT32 = 6,
    ANNEAL_GGUF_BOOL = 7,
    ANNEAL_GGUF_STRING = 8,
    ANNEAL_GGUF_ARRAY = 9,
    ANNEAL_GGUF_UINT64 = 10,
    ANNEAL_GGUF_INT64 = 11,
    ANNEAL_GGUF_FLOAT64 = 12,
    ANNEAL_GGUF_TYPE_COUNT = 13,
} anneal_gguf_type;

const char *anneal_gguf_type_name(anneal_gguf_type t); // "u32", "str", ...; "?" if unknown

#define ANNEAL_GGUF_MAX_DIMS 4
#define ANNEAL_GGUF_DEFAULT_ALIGNMENT 32

// A string inside the file: not NUL-terminated, not validated as UTF-8.
typedef struct anneal_gguf_str {
    const char *ptr;
    uint64_t len;
} anneal_gguf_str;

typedef struct anneal_gguf_value anneal_gguf_value;
struct anneal_gguf_value {
    anneal_gguf_type type;
    union {
        uint64_t u64; // UINT8..UINT64 (zero-extended)
        int64_t i64;  // INT8..INT64 (sign-extended)
        double f64;   // FLOAT32 / FLOAT64
        bool b;       // BOOL
        anneal_gguf_str str;
        struct {
            anneal_gguf_type elem;         // element type
            uint64_t n;                    // element count
            const uint8_t *data;           // scalar arrays: n packed little-endian elements
                                           // in the file (possibly unaligned)
            const anneal_gguf_str *strs;   // string arrays: n strings
            const anneal_gguf_value *vals; // nested arrays: n values of type ARRAY
        } arr;
    };
};

typedef struct anneal_gguf_kv {
    anneal_gguf_str key;
    anneal_gguf_value value;
} anneal_gguf_kv;

typedef struct anneal_gguf_tensor {
    anneal_gguf_str name;
    uint32_t n_dims;                     // 0..4 as stored (ggml accepts 0: a scalar)
    uint64_t dims[ANNEAL_GGUF_MAX_DIMS]; // innermost first; unused dims are 1
    uint32_t type;                       // ggml type id; may be one we do not know
    uint64_t offset;                     // relative to the data section
    uint64_t nbytes;                     // 0 when the type is unknown
    const uint8_t *data;                 // into the mapping; NULL when the type is unknown
} anneal_gguf_tensor;

typedef struct anneal_gguf anneal_gguf; // opaque, read-only once opened

// Opens and validates a file (mmap'd; tensor data is never copied). On failure *out is
// NULL and err reads "PATH: at offset N: [key 'k': | tensor 't': ]what". Free with
// anneal_gguf_close. The handle is read-only: any number of threads may use it at once.
// Versions 2 and 3 are read. docs/formats.md lists every check.
anneal_status anneal_gguf_open(const char *path, anneal_gguf **out, anneal_err *err);
// Same over a caller's buffer, which must outlive the handle (messages have no path).
anneal_status anneal_gguf_open_memory(const void *data, size_t size, anneal_gguf **out,
                                      anneal_err *err);
void anneal_gguf_close(anneal_gguf *g);

uint32_t anneal_gguf_version(const anneal_gguf *g);
uint64_t anneal_gguf_alignment(const anneal_gguf *g);
uint64_t anneal_gguf_data_offset(const anneal_gguf *g); // file offset of the data section
// Bytes of header, key/values and tensor infos, before the padding to the data section.
// Files without tensors may end here (gguf-py writes no padding then; ggml does).
uint64_t anneal_gguf_meta_size(const anneal_gguf *g);
uint64_t anneal_gguf_file_size(const anneal_gguf *g);

uint64_t anneal_gguf_n_kv(const anneal_gguf *g);
const anneal_gguf_kv *anneal_gguf_kv_at(const anneal_gguf *g, uint64_t i);
// NULL when absent.
const anneal_gguf_kv *anneal_gguf_find(const anneal_gguf *g, const char *key);

// Typed look-ups. They return ANNEAL_ERR_NOT_FOUND when the key is absent (message names
// the key) and ANNEAL_ERR_FORMAT when it has an incompatible type. Integer getters accept
// any integer type whose value fits; the float getter accepts FLOAT32/FLOAT64.
anneal_status anneal_gguf_get_u64(const anneal_gguf *g, const char *key, uint64_t *out,
                                  anneal_err *err);
anneal_status anneal_gguf_get_i64(const anneal_gguf *g, const char *key, int64_t *out,
                                  anneal_err *err);
anneal_status anneal_gguf_get_f64(const anneal_gguf *g, const char *key, double *out,
                                  anneal_err *err);
anneal_status anneal_gguf_get_bool(const anneal_gguf *g, const char *key, bool *out,
                                   anneal_err *err);
anneal_status anneal_gguf_get_str(const anneal_gguf *g, const char *key, anneal_gguf_str *out,
                                  anneal_err *err);
// An array of the given element type (ANNEAL_GGUF_TYPE_COUNT = any element type).
anneal_status anneal_gguf_get_arr(const anneal_gguf *g, const char *key, anneal_gguf_type elem,
                                  const anneal_gguf_value **out, anneal_err *err);

// Element i of a scalar array, converted; 0 when i >= n or arr is not a scalar array.
// arr_i64 saturates u64 values above INT64_MAX and truncates floats (NaN gives 0).
double anneal_gguf_arr_f64(const anneal_gguf_value *arr, uint64_t i);
int64_t anneal_gguf_arr_i64(const anneal_gguf_value *arr, uint64_t i);

uint64_t anneal_gguf_n_tensors(const anneal_gguf *g);
const anneal_gguf_tensor *anneal_gguf_tensor_at(const anneal_gguf *g, uint64_t i);
const anneal_gguf_tensor *anneal_gguf_find_tensor(const anneal_gguf *g, const char *name);

// ---- writing ------------------------------------------------------------------
// A writer collects key/values and tensors in order, then writes the file atomically
// (anneal_atomic_*). Keys and names are copied; tensor data is borrowed until write, or
// produced during write by a fill callback (anneal_gguf_writer_add_tensor_fill).
// A failing call returns its status and also records the first failure in the writer,
// which anneal_gguf_writer_write then reports (so a sequence of calls can be checked once).
typedef struct anneal_gguf_writer anneal_gguf_writer;

anneal_gguf_writer *anneal_gguf_writer_new(void); // NULL on out of memory
void anneal_gguf_writer_free(anneal_gguf_writer *w);
// Setting an existing key replaces its value in place (order kept).
anneal_status anneal_gguf_writer_set_u32(anneal_gguf_writer *w, const char *key, uint32_t v);
anneal_status anneal_gguf_writer_set_i32(anneal_gguf_writer *w, const char *key, int32_t v);
anneal_status anneal_gguf_writer_set_u64(anneal_gguf_writer *w, const char *key, uint64_t v);
anneal_status anneal_gguf_writer_set_f32(anneal_gguf_writer *w, const char *key, float v);
anneal_status anneal_gguf_writer_set_bool(anneal_gguf_writer *w, const char *key, bool v);
anneal_status anneal_gguf_writer_set_str(anneal_gguf_writer *w, const char *key, const char *s);
// Any value, deep-copied (used to copy key/values from an open file).
anneal_status anneal_gguf_writer_set_value(anneal_gguf_writer *w, const char *key,
                                           const anneal_gguf_value *v);
// Copies every key/value of g whose key starts with prefix ("tokenizer." to give a new model
// a vocabulary), deep-copied, in g's order. Keys with a NUL byte are skipped.
anneal_status anneal_gguf_writer_copy_prefix(anneal_gguf_writer *w, const anneal_gguf *g,
                                             const char *prefix);
// ANNEAL_ERR_NOT_FOUND (not recorded in the writer) when the key is absent.
anneal_status anneal_gguf_writer_remove(anneal_gguf_writer *w, const char *key);
// Adds a tensor (dims innermost first, n_dims 0..4). nbytes must match the type's size for
// dims; the type must be known (ANNEAL_ERR_UNSUPPORTED otherwise); names must be unique
// and shorter than 64 bytes (llama.cpp's limit).
anneal_status anneal_gguf_writer_add_tensor(anneal_gguf_writer *w, const char *name, uint32_t type,
                                            uint32_t n_dims, const uint64_t *dims, const void *data,
                                            uint64_t nbytes);
// Produces bytes [offset, offset + n) of tensor tensor_index (its position among the
// writer's tensors) into buf. Asked during write, in file order, from the writing thread,
// with consecutive ranges of whole rows (a row is dims[0] elements). A status other than
// ANNEAL_OK stops the write: it fails with that status and err's message (prefixed with the
// path), and nothing is left at the path.
typedef anneal_status (*anneal_gguf_fill_fn)(void *ctx, uint64_t tensor_index, uint64_t offset,
                                             void *buf, uint64_t n, anneal_err *err);
// As add_tensor, but the nbytes of data come from fill(ctx, ...) while the file is written,
// so no tensor has to be held whole. Same checks; the bytes written are those add_tensor
// with the same data would give.
anneal_status anneal_gguf_writer_add_tensor_fill(anneal_gguf_writer *w, const char *name,
                                                 uint32_t type, uint32_t n_dims,
                                                 const uint64_t *dims, uint64_t nbytes,
                                                 anneal_gguf_fill_fn fill, void *ctx);
// The most bytes one fill call is asked for (default 16 MiB; 0 restores it): as many whole
// rows as fit, but always at least one row. Write holds one buffer of the largest such chunk.
void anneal_gguf_writer_set_fill_chunk(anneal_gguf_writer *w, uint64_t bytes);
// Copies every key/value and tensor of g, in order (tensor data borrowed from g, which
// must stay open until write). A tensor of unknown type cannot be copied
// (ANNEAL_ERR_UNSUPPORTED naming it). Copy then write reproduces a ggml or gguf-py file
// byte for byte, including whether a file without tensors is padded after its metadata.
anneal_status anneal_gguf_writer_copy(anneal_gguf_writer *w, const anneal_gguf *g);
// Writes the file atomically (version 3). Tensors are laid out in order, each at the next
// multiple of general.alignment (must be a u32 power of two; default 32), zero-padded.
// Returns the first error recorded by earlier calls, if any, else this write's status.
anneal_status anneal_gguf_writer_write(anneal_gguf_writer *w, const char *path, anneal_err *err);

#ifdef __cplusplus
}
#endif
#endif
