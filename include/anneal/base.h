// anneal base: status codes, error buffers, logging, allocation, arenas, files,
// thread count, clocks, SHA-256 and JSON helpers. Everything else builds on this.
#ifndef ANNEAL_BASE_H
#define ANNEAL_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- status codes -------------------------------------------------------------
// One enum for the whole library. Values are part of the ABI: never renumber, only append.
typedef enum anneal_status {
    ANNEAL_OK = 0,
    ANNEAL_ERR_NOMEM = 1,       // an allocation failed
    ANNEAL_ERR_IO = 2,          // open/read/write/mmap/rename failed (errno in the message)
    ANNEAL_ERR_FORMAT = 3,      // input bytes are malformed (offset in the message)
    ANNEAL_ERR_UNSUPPORTED = 4, // well-formed, but a feature or type we do not handle
    ANNEAL_ERR_INVALID_ARG = 5, // a caller passed a bad argument or flag
    ANNEAL_ERR_NOT_FOUND = 6,   // a key, tensor, token or file that does not exist
    ANNEAL_ERR_RANGE = 7,       // a value or size outside what is allowed; output buffer too small
    ANNEAL_ERR_LIMIT = 8,       // a configured cap was reached (sizes, counts, lengths)
    ANNEAL_ERR_INTERNAL = 9,    // a broken invariant of our own
} anneal_status;

// A static, human name for a status ("format error", ...). Never NULL.
const char *anneal_status_str(anneal_status s);

// ---- error buffer -------------------------------------------------------------
// Every handle embeds one; functions without a handle take an `anneal_err *` (may be NULL).
// The first failure wins: later anneal_err_set calls keep the first message.
#define ANNEAL_ERR_MSG_MAX 512
typedef struct anneal_err {
    anneal_status status;
    char msg[ANNEAL_ERR_MSG_MAX];
} anneal_err;

// Records (status, message) unless an error is already recorded; returns `s` so callers
// can write `return anneal_err_set(err, ANNEAL_ERR_FORMAT, "...")`. `err` may be NULL.
anneal_status anneal_err_set(anneal_err *err, anneal_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
anneal_status anneal_err_vset(anneal_err *err, anneal_status s, const char *fmt, va_list ap);
void anneal_err_clear(anneal_err *err);
// The message, or the status name when no message was recorded.
const char *anneal_err_msg(const anneal_err *err);

// ---- logging ------------------------------------------------------------------
typedef enum anneal_log_level {
    ANNEAL_LOG_DEBUG = 0,
    ANNEAL_LOG_INFO = 1,
    ANNEAL_LOG_WARN = 2,
    ANNEAL_LOG_ERROR = 3,
    ANNEAL_LOG_OFF = 4,
} anneal_log_level;

// Process-wide settings; defaults: INFO, plain text, stderr. ANNEAL_LOG=debug|info|warn|error|off
// and ANNEAL_LOG_FORMAT=json|text set them at the first log call.
void anneal_log_set_level(anneal_log_level level);
anneal_log_level anneal_log_get_level(void);
void anneal_log_set_json(bool json);
// Parses "debug", "info", "warn", "error", "off"; returns ANNEAL_ERR_INVALID_ARG otherwise.
anneal_status anneal_log_level_parse(const char *s, anneal_log_level *out);
// One line per call. JSON mode writes {"ts":..., "level":..., "req":..., "msg":...};
// `req` (request id) may be NULL.
void anneal_log(anneal_log_level level, const char *req, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define ANNEAL_DEBUG(...) anneal_log(ANNEAL_LOG_DEBUG, NULL, __VA_ARGS__)
#define ANNEAL_INFO(...) anneal_log(ANNEAL_LOG_INFO, NULL, __VA_ARGS__)
#define ANNEAL_WARN(...) anneal_log(ANNEAL_LOG_WARN, NULL, __VA_ARGS__)
#define ANNEAL_ERROR(...) anneal_log(ANNEAL_LOG_ERROR, NULL, __VA_ARGS__)

// ---- allocation ---------------------------------------------------------------
// Thin wrappers: NULL on failure (never abort), overflow-checked counts, free accepts NULL.
void *anneal_malloc(size_t size);
void *anneal_calloc(size_t n, size_t size);
void *anneal_realloc(void *p, size_t size);
void *anneal_realloc_array(void *p, size_t n, size_t size); // NULL on n*size overflow
void *anneal_aligned_alloc(size_t align, size_t size);      // free with anneal_free
char *anneal_strndup(const char *s, size_t n);              // always NUL-terminated
void anneal_free(void *p);
// true and *out = a*b, or false on overflow.
static inline bool anneal_mul_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool anneal_add_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

// ---- arena --------------------------------------------------------------------
// Bump allocator in chunks; freed all at once. Used for per-request and per-file memory.
typedef struct anneal_arena_chunk anneal_arena_chunk;
typedef struct anneal_arena {
    anneal_arena_chunk *head; // newest chunk
    size_t chunk_size;        // default size for new chunks
    size_t used;              // bytes handed out, all chunks
    size_t cap;               // 0 = no cap; otherwise allocations beyond cap fail
} anneal_arena;

void anneal_arena_init(anneal_arena *a, size_t chunk_size, size_t cap);
// NULL when out of memory or past the cap. `align` must be a power of two (<= 4096).
void *anneal_arena_alloc(anneal_arena *a, size_t size, size_t align);
void *anneal_arena_calloc(anneal_arena *a, size_t n, size_t size, size_t align);
char *anneal_arena_strndup(anneal_arena *a, const char *s, size_t n);
// Keeps the first chunk for reuse, frees the rest.
void anneal_arena_reset(anneal_arena *a);
void anneal_arena_free(anneal_arena *a);

// ---- files --------------------------------------------------------------------
// Read-only memory map of a whole file. Empty files map to data = NULL, size = 0.
typedef struct anneal_map {
    const uint8_t *data;
    size_t size;
} anneal_map;
anneal_status anneal_map_file(const char *path, anneal_map *out, anneal_err *err);
void anneal_unmap(anneal_map *m);

// Reads a whole file into a malloc'd buffer (NUL-terminated, not counted in *size);
// fails with ANNEAL_ERR_LIMIT past max_size. Caller frees with anneal_free.
anneal_status anneal_read_file(const char *path, size_t max_size, char **data, size_t *size,
                               anneal_err *err);

// Crash-safe writes: bytes go to "<path>.tmp.<pid>", then fsync, rename over path,
// fsync the directory. Nothing at `path` changes until commit succeeds.
typedef struct anneal_atomic_file {
    int fd;
    char *path;     // final path
    char *tmp_path; // temporary path
    uint64_t written;
} anneal_atomic_file;
anneal_status anneal_atomic_open(anneal_atomic_file *f, const char *path, anneal_err *err);
anneal_status anneal_atomic_write(anneal_atomic_file *f, const void *data, size_t size,
                                  anneal_err *err);
anneal_status anneal_atomic_commit(anneal_atomic_file *f, anneal_err *err);
// Removes the temporary file; safe after a failed write or commit, and on a zeroed struct.
void anneal_atomic_abort(anneal_atomic_file *f);
// One-shot: the whole buffer, atomically.
anneal_status anneal_write_file_atomic(const char *path, const void *data, size_t size,
                                       anneal_err *err);

// ---- threads and time ---------------------------------------------------------
// The one place that decides how many worker threads to use: ANNEAL_THREADS if set and
// valid, else the CPUs this process may run on. Always >= 1.
int anneal_thread_count(void);

// A fixed set of worker threads for fork-join parallel work. The caller of
// anneal_pool_run is thread 0; n_threads - 1 workers wait for work (spinning briefly,
// then sleeping), so a run costs microseconds, not a thread start.
typedef struct anneal_pool anneal_pool;
typedef void (*anneal_pool_fn)(void *arg, int ith, int nth);
// n_threads >= 1 (1 = no workers). Free with anneal_pool_free.
anneal_status anneal_pool_new(int n_threads, anneal_pool **out, anneal_err *err);
void anneal_pool_free(anneal_pool *p);
int anneal_pool_size(const anneal_pool *p);
// Calls fn(arg, ith, nth) once on each of the nth threads and returns when all are done.
// One run at a time per pool (not reentrant; fn must not call anneal_pool_run on p).
void anneal_pool_run(anneal_pool *p, anneal_pool_fn fn, void *arg);
// Even split of [0, n) among nth threads: thread ith gets [*lo, *hi).
static inline void anneal_split(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi) {
    int64_t q = n / nth, r = n % nth;
    *lo = ith * q + (ith < r ? ith : r);
    *hi = *lo + q + (ith < r ? 1 : 0);
}

// Monotonic clock in nanoseconds.
uint64_t anneal_time_ns(void);
// Current UTC time as "YYYY-MM-DDTHH:MM:SSZ" into buf (at least 21 bytes).
void anneal_time_utc(char *buf, size_t cap);

// ---- hashing ------------------------------------------------------------------
typedef struct anneal_sha256 {
    void *ctx; // OpenSSL EVP_MD_CTX
} anneal_sha256;
anneal_status anneal_sha256_init(anneal_sha256 *h);
void anneal_sha256_update(anneal_sha256 *h, const void *data, size_t size);
void anneal_sha256_final(anneal_sha256 *h, uint8_t out[32]); // also frees the context
void anneal_sha256_free(anneal_sha256 *h);                   // for abandoned contexts
anneal_status anneal_sha256_buf(const void *data, size_t size, uint8_t out[32]);
anneal_status anneal_sha256_file(const char *path, uint8_t out[32], anneal_err *err);
// 32 bytes to 64 lowercase hex digits plus NUL.
void anneal_hex(const uint8_t *bytes, size_t n, char *out);
// Constant-time comparison (for secrets).
bool anneal_ct_equal(const void *a, const void *b, size_t n);
// Fast 64-bit hash of a byte string for hash tables (not for secrets, and not stable across
// versions, so never stored): multiply-xorshift over 8-byte words with a full final mix, so
// high and low bits are both usable as a table index. Inline because the tokenizer's
// vocabulary lookups call it per candidate merge (out of line cost it ~2% more instructions).
static inline uint64_t anneal_hash64(const void *data, size_t n) {
    const uint8_t *p = (const uint8_t *)data;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    h = (h ^ v) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h;
}

// ---- UTF-8 --------------------------------------------------------------------
// Length (1-4) of the valid, shortest-form UTF-8 sequence at s[0..n), with its code point
// in *cp; 0 when the bytes are invalid or the sequence is cut off by n.
size_t anneal_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);
// True when s[0..n) (n >= 1) is the start of a valid sequence that needs more bytes.
bool anneal_utf8_incomplete(const uint8_t *s, size_t n);
// Writes cp (<= 0x10FFFF, not a surrogate) as UTF-8; returns 1-4, or 0 for a bad cp.
size_t anneal_utf8_encode(uint32_t cp, char out[4]);

// ---- JSON (jansson) -------------------------------------------------------------
// Parses exactly one JSON value from text (strict, UTF-8 checked). On failure the error
// names `what` (a file name or "request body") with line, column and byte position.
// Returns a jansson json_t* (as void* to keep jansson out of this header); json_decref it.
void *anneal_json_parse(const char *text, size_t len, const char *what, anneal_err *err);
// Parses a TOML 1.0 document into the jansson object the equivalent JSON would give (strict:
// duplicate keys, redefined tables, invalid UTF-8, control characters and bare CR are errors;
// dates/times, inf and nan are rejected as not representable). Errors read
// "WHAT:LINE:COL: message". Caps: 16 MiB of input, nesting depth 64. json_decref the result.
void *anneal_toml_parse(const char *text, size_t len, const char *what, anneal_err *err);
// Writes `s` (len bytes) as a JSON string literal, quotes included, into a FILE*.
// Invalid UTF-8 bytes are written as U+FFFD.
void anneal_json_write_str(void *file, const char *s, size_t len);

#ifdef __cplusplus
}
#endif
#endif
