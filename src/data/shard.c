// Token shards: a fixed 128-byte header (magic, version, dtype, vocab, EOS, counts, payload
// SHA-256, CRC-32) then little-endian tokens; a streaming writer and a validating mmap reader.
// The layout is specified in docs/formats.md, "Token shards".
#include "anneal/data.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define HDR_SIZE ANNEAL_SHARD_HEADER_SIZE
#define OFF_VERSION 8
#define OFF_TOKEN_BYTES 12
#define OFF_VOCAB 16
#define OFF_EOS 20
#define OFF_NTOK 24
#define OFF_NDOC 32
#define OFF_SHA 40
#define OFF_RESERVED 72
#define OFF_CRC 124

static const char shard_magic[8] = {'A', 'N', 'N', 'S', 'H', 'A', 'R', 'D'};

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p) {
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static uint32_t header_crc(const uint8_t *h) {
    return (uint32_t)crc32(0L, h, OFF_CRC);
}

uint32_t anneal_shard_token_bytes(uint32_t vocab_size) {
    return vocab_size <= 65536 ? 2 : 4;
}

// ---- reader -----------------------------------------------------------------------------

// Every message starts "WHAT: at offset N: ".
#define FAIL(st, off, ...) fail(err, st, what, (uint64_t)(off), __VA_ARGS__)
__attribute__((format(printf, 5, 6))) static anneal_status
fail(anneal_err *err, anneal_status st, const char *what, uint64_t off, const char *fmt, ...) {
    char msg[ANNEAL_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return anneal_err_set(err, st, "%s: at offset %" PRIu64 ": %s", what, off, msg);
}

static anneal_status validate(anneal_shard *s, const uint8_t *d, size_t size, const char *what,
                              anneal_err *err) {
    if (size < HDR_SIZE)
        return FAIL(ANNEAL_ERR_FORMAT, 0,
                    "file is %zu bytes, shorter than the %d-byte shard header", size, HDR_SIZE);
    if (memcmp(d, shard_magic, 8) != 0) {
        char m[9];
        for (int i = 0; i < 8; i++)
            m[i] = d[i] >= 0x20 && d[i] < 0x7F ? (char)d[i] : '?';
        m[8] = 0;
        return FAIL(ANNEAL_ERR_FORMAT, 0, "bad magic '%s' (expected 'ANNSHARD')", m);
    }
    uint32_t version = get32(d + OFF_VERSION);
    if (version != ANNEAL_SHARD_VERSION)
        return FAIL(ANNEAL_ERR_UNSUPPORTED, OFF_VERSION,
                    "shard format version %" PRIu32 " is not supported (need %d)", version,
                    ANNEAL_SHARD_VERSION);
    uint32_t crc = get32(d + OFF_CRC), want = header_crc(d);
    if (crc != want)
        return FAIL(ANNEAL_ERR_FORMAT, OFF_CRC,
                    "header CRC-32 is 0x%08" PRIx32 " but bytes 0-123 "
                    "give 0x%08" PRIx32 " (the header is corrupt)",
                    crc, want);
    uint32_t tb = get32(d + OFF_TOKEN_BYTES), vocab = get32(d + OFF_VOCAB),
             eos = get32(d + OFF_EOS);
    uint64_t n_tok = get64(d + OFF_NTOK), n_doc = get64(d + OFF_NDOC);
    if (vocab == 0 || vocab > (uint32_t)INT32_MAX)
        return FAIL(ANNEAL_ERR_FORMAT, OFF_VOCAB, "vocab size %" PRIu32 " is not in 1..%d", vocab,
                    INT32_MAX);
    if (tb != anneal_shard_token_bytes(vocab))
        return FAIL(ANNEAL_ERR_FORMAT, OFF_TOKEN_BYTES,
                    "token size is %" PRIu32 " bytes but vocab "
                    "size %" PRIu32 " needs %" PRIu32,
                    tb, vocab, anneal_shard_token_bytes(vocab));
    if (eos >= vocab)
        return FAIL(ANNEAL_ERR_FORMAT, OFF_EOS,
                    "EOS id %" PRIu32 " is not below the vocab size %" PRIu32, eos, vocab);
    for (size_t i = OFF_RESERVED; i < OFF_CRC; i++)
        if (d[i] != 0)
            return FAIL(ANNEAL_ERR_FORMAT, i, "reserved header byte is 0x%02x (must be 0)", d[i]);
    uint64_t payload = size - HDR_SIZE;
    if (n_tok > payload / tb || n_tok * tb != payload)
        return FAIL(ANNEAL_ERR_FORMAT, OFF_NTOK,
                    "%" PRIu64 " tokens of %" PRIu32 " bytes do not "
                    "match the %" PRIu64 " payload bytes after the header (file size %zu)",
                    n_tok, tb, payload, size);
    if (n_doc > n_tok)
        return FAIL(ANNEAL_ERR_FORMAT, OFF_NDOC,
                    "%" PRIu64 " documents but only %" PRIu64 " tokens", n_doc, n_tok);
    // Token range and EOS count first: a corrupted token is then named by its own offset.
    const uint8_t *p = d + HDR_SIZE;
    uint64_t eos_seen = 0, bad = n_tok;
    // One branch-free pass per token size; the first bad token is looked up only on failure.
    if (tb == 2) {
        uint32_t over = 0;
        for (uint64_t i = 0; i < n_tok; i++) {
            uint32_t t = (uint32_t)p[2 * i] | (uint32_t)p[2 * i + 1] << 8;
            over |= t >= vocab;
            eos_seen += t == eos;
        }
        if (over) bad = 0;
    } else {
        uint32_t over = 0;
        for (uint64_t i = 0; i < n_tok; i++) {
            uint32_t t = get32(p + 4 * i);
            over |= t >= vocab;
            eos_seen += t == eos;
        }
        if (over) bad = 0;
    }
    for (uint64_t i = bad; i < n_tok; i++) {
        uint32_t t = tb == 2 ? (uint32_t)p[2 * i] | (uint32_t)p[2 * i + 1] << 8 : get32(p + 4 * i);
        if (t >= vocab)
            return FAIL(ANNEAL_ERR_FORMAT, HDR_SIZE + i * tb,
                        "token %" PRIu64 " is %" PRIu32 ", not below the vocab size %" PRIu32, i, t,
                        vocab);
    }
    if (n_tok > 0) {
        uint64_t last = n_tok - 1;
        uint32_t t =
            tb == 2 ? (uint32_t)p[2 * last] | (uint32_t)p[2 * last + 1] << 8 : get32(p + 4 * last);
        if (t != eos)
            return FAIL(ANNEAL_ERR_FORMAT, HDR_SIZE + last * tb,
                        "the last token is %" PRIu32 ", not the EOS id %" PRIu32
                        " (every document ends with EOS)",
                        t, eos);
    }
    if (eos_seen != n_doc)
        return FAIL(ANNEAL_ERR_FORMAT, OFF_NDOC,
                    "header says %" PRIu64 " documents but the "
                    "payload holds %" PRIu64 " EOS tokens",
                    n_doc, eos_seen);
    uint8_t digest[32];
    if (anneal_sha256_buf(p, (size_t)payload, digest) != ANNEAL_OK)
        return FAIL(ANNEAL_ERR_NOMEM, OFF_SHA, "cannot compute SHA-256");
    if (memcmp(digest, d + OFF_SHA, 32) != 0) {
        char got[65], want_hex[65];
        anneal_hex(digest, 32, got);
        anneal_hex(d + OFF_SHA, 32, want_hex);
        return FAIL(ANNEAL_ERR_FORMAT, OFF_SHA,
                    "payload bytes [%d, %zu) hash to %.16s..., not "
                    "the header's SHA-256 %.16s... (the tokens are corrupt)",
                    HDR_SIZE, size, got, want_hex);
    }
    s->tokens = p;
    s->n_tokens = n_tok;
    s->n_docs = n_doc;
    s->vocab_size = vocab;
    s->eos_id = (int32_t)eos;
    s->token_bytes = tb;
    memcpy(s->sha256, d + OFF_SHA, 32);
    return ANNEAL_OK;
}

anneal_status anneal_shard_open_memory(const void *data, size_t size, const char *what,
                                       anneal_shard *out, anneal_err *err) {
    memset(out, 0, sizeof *out);
    anneal_shard s = {0};
    anneal_status st = validate(&s, data, size, what ? what : "shard", err);
    if (st == ANNEAL_OK) *out = s;
    return st;
}

anneal_status anneal_shard_open(const char *path, anneal_shard *out, anneal_err *err) {
    memset(out, 0, sizeof *out);
    anneal_map m;
    anneal_status st = anneal_map_file(path, &m, err);
    if (st) return st;
    anneal_shard s = {0};
    static const uint8_t empty[1] = {0};
    st = validate(&s, m.data ? m.data : empty, m.size, path, err);
    if (st) {
        anneal_unmap(&m);
        return st;
    }
    s.map = m;
    *out = s;
    return ANNEAL_OK;
}

void anneal_shard_close(anneal_shard *s) {
    if (!s) return;
    anneal_unmap(&s->map);
    memset(s, 0, sizeof *s);
}

size_t anneal_shard_read(const anneal_shard *s, uint64_t start, size_t n, int32_t *out) {
    if (start >= s->n_tokens) return 0;
    if (n > s->n_tokens - start) n = (size_t)(s->n_tokens - start);
    for (size_t i = 0; i < n; i++)
        out[i] = anneal_shard_token(s, start + i);
    return n;
}

// ---- writer -----------------------------------------------------------------------------

#define WBUF_BYTES (1u << 20)

struct anneal_shard_writer {
    char *dir, *prefix;
    uint32_t vocab, eos, tb;
    uint64_t max_tokens;  // per shard
    anneal_atomic_file f; // the open shard (f.fd >= 0)
    bool open;
    anneal_sha256 sha;
    uint64_t n_tok, n_doc; // of the open shard
    uint8_t *buf;
    size_t buf_len;
    size_t n_shards;
    uint64_t total_tokens, total_docs;
    anneal_status failed; // sticky: after a failure every call returns it
    anneal_err err;
};

anneal_status anneal_shard_writer_new(const char *dir, const char *prefix, uint32_t vocab_size,
                                      int32_t eos_id, uint64_t max_bytes, anneal_shard_writer **out,
                                      anneal_err *err) {
    *out = NULL;
    if (vocab_size == 0 || vocab_size > (uint32_t)INT32_MAX)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "shard writer: vocab size %" PRIu32 " is not in 1..%d", vocab_size,
                              INT32_MAX);
    if (eos_id < 0 || (uint32_t)eos_id >= vocab_size)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "shard writer: EOS id %" PRId32
                              " is not below the vocab size %" PRIu32,
                              eos_id, vocab_size);
    if (!prefix || !*prefix || strchr(prefix, '/'))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "shard writer: prefix '%s' must be a "
                              "non-empty name without '/'",
                              prefix ? prefix : "");
    anneal_shard_writer *w = anneal_calloc(1, sizeof *w);
    if (!w) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "shard writer: out of memory");
    w->dir = anneal_strndup(dir, strlen(dir));
    w->prefix = anneal_strndup(prefix, strlen(prefix));
    w->buf = anneal_malloc(WBUF_BYTES);
    if (!w->dir || !w->prefix || !w->buf) {
        anneal_shard_writer_free(w);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "shard writer: out of memory");
    }
    w->vocab = vocab_size;
    w->eos = (uint32_t)eos_id;
    w->tb = anneal_shard_token_bytes(vocab_size);
    if (max_bytes == 0) max_bytes = ANNEAL_SHARD_DEFAULT_MAX_BYTES;
    w->max_tokens = max_bytes > HDR_SIZE ? (max_bytes - HDR_SIZE) / w->tb : 1;
    if (w->max_tokens == 0) w->max_tokens = 1;
    w->f.fd = -1;
    *out = w;
    return ANNEAL_OK;
}

static anneal_status writer_fail(anneal_shard_writer *w, anneal_err *err) {
    if (!w->failed) w->failed = w->err.status ? w->err.status : ANNEAL_ERR_INTERNAL;
    return anneal_err_set(err, w->failed, "%s", anneal_err_msg(&w->err));
}

static anneal_status flush_buf(anneal_shard_writer *w) {
    if (w->buf_len == 0) return ANNEAL_OK;
    anneal_sha256_update(&w->sha, w->buf, w->buf_len);
    anneal_status st = anneal_atomic_write(&w->f, w->buf, w->buf_len, &w->err);
    w->buf_len = 0;
    return st;
}

static anneal_status open_shard(anneal_shard_writer *w) {
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s-%05zu.bin", w->dir, w->prefix, w->n_shards);
    if (n < 0 || (size_t)n >= sizeof path)
        return anneal_err_set(&w->err, ANNEAL_ERR_INVALID_ARG, "%s: shard path too long", w->dir);
    anneal_status st = anneal_atomic_open(&w->f, path, &w->err);
    if (st) return st;
    if (anneal_sha256_init(&w->sha) != ANNEAL_OK) {
        anneal_atomic_abort(&w->f);
        return anneal_err_set(&w->err, ANNEAL_ERR_NOMEM, "%s: cannot start SHA-256", path);
    }
    uint8_t zero[HDR_SIZE] = {0};
    st = anneal_atomic_write(&w->f, zero, HDR_SIZE, &w->err); // the real header comes last
    if (st) {
        anneal_sha256_free(&w->sha);
        anneal_atomic_abort(&w->f);
        return st;
    }
    w->open = true;
    w->n_tok = w->n_doc = 0;
    return ANNEAL_OK;
}

static anneal_status close_shard(anneal_shard_writer *w) {
    anneal_status st = flush_buf(w);
    uint8_t h[HDR_SIZE] = {0};
    memcpy(h, shard_magic, 8);
    put32(h + OFF_VERSION, ANNEAL_SHARD_VERSION);
    put32(h + OFF_TOKEN_BYTES, w->tb);
    put32(h + OFF_VOCAB, w->vocab);
    put32(h + OFF_EOS, w->eos);
    put64(h + OFF_NTOK, w->n_tok);
    put64(h + OFF_NDOC, w->n_doc);
    anneal_sha256_final(&w->sha, h + OFF_SHA);
    put32(h + OFF_CRC, header_crc(h));
    w->open = false;
    if (st == ANNEAL_OK && pwrite(w->f.fd, h, HDR_SIZE, 0) != HDR_SIZE)
        st = anneal_err_set(&w->err, ANNEAL_ERR_IO, "%s: cannot write the header: %s",
                            w->f.tmp_path, strerror(errno));
    if (st == ANNEAL_OK)
        st = anneal_atomic_commit(&w->f, &w->err);
    else
        anneal_atomic_abort(&w->f);
    if (st) return st;
    w->n_shards++;
    return ANNEAL_OK;
}

anneal_status anneal_shard_writer_add(anneal_shard_writer *w, const int32_t *tokens, size_t n,
                                      anneal_err *err) {
    if (w->failed) return writer_fail(w, err);
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= w->vocab || (uint32_t)tokens[i] == w->eos)
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                  "shard writer: token %zu of "
                                  "document %" PRIu64 " is %" PRId32 " (must be in 0..%" PRIu32
                                  " and not the EOS id %" PRIu32 ")",
                                  i, w->total_docs, tokens[i], w->vocab - 1, w->eos);
    // Roll between documents: a document is never split, one longer than a shard gets its own.
    if (w->open && w->n_tok > 0 && w->n_tok + n + 1 > w->max_tokens && close_shard(w))
        return writer_fail(w, err);
    if (!w->open && open_shard(w)) return writer_fail(w, err);
    for (size_t i = 0; i <= n; i++) {
        uint32_t t = i < n ? (uint32_t)tokens[i] : w->eos;
        if (w->buf_len + w->tb > WBUF_BYTES && flush_buf(w)) return writer_fail(w, err);
        if (w->tb == 2) {
            w->buf[w->buf_len] = (uint8_t)t;
            w->buf[w->buf_len + 1] = (uint8_t)(t >> 8);
        } else {
            put32(w->buf + w->buf_len, t);
        }
        w->buf_len += w->tb;
    }
    w->n_tok += n + 1;
    w->n_doc++;
    w->total_tokens += n + 1;
    w->total_docs++;
    return ANNEAL_OK;
}

anneal_status anneal_shard_writer_finish(anneal_shard_writer *w, anneal_err *err) {
    if (w->failed) return writer_fail(w, err);
    if (w->open && close_shard(w)) return writer_fail(w, err);
    return ANNEAL_OK;
}

void anneal_shard_writer_stats(const anneal_shard_writer *w, size_t *n_shards, uint64_t *n_tokens,
                               uint64_t *n_docs) {
    if (n_shards) *n_shards = w->n_shards;
    if (n_tokens) *n_tokens = w->total_tokens;
    if (n_docs) *n_docs = w->total_docs;
}

void anneal_shard_writer_free(anneal_shard_writer *w) {
    if (!w) return;
    if (w->open) {
        anneal_sha256_free(&w->sha);
        anneal_atomic_abort(&w->f);
    }
    anneal_free(w->dir);
    anneal_free(w->prefix);
    anneal_free(w->buf);
    anneal_free(w);
}

// ---- train/validation split -------------------------------------------------------------

bool anneal_split_is_val(const char *key, size_t len, double val_fraction, uint64_t seed) {
    if (!(val_fraction > 0)) return false; // also NaN
    if (val_fraction >= 1) return true;
    uint8_t seed_le[8], digest[32];
    put64(seed_le, seed);
    anneal_sha256 h;
    if (anneal_sha256_init(&h) != ANNEAL_OK) return false;
    anneal_sha256_update(&h, seed_le, 8);
    anneal_sha256_update(&h, key, len);
    anneal_sha256_final(&h, digest);
    uint64_t v = get64(digest);
    // floor(val_fraction * 2^64), exact for doubles in (0, 1)
    uint64_t threshold = (uint64_t)ldexp(val_fraction, 64);
    return v < threshold;
}
