// Document reader: streams documents out of text, JSON lines, CSV/TSV and HTML files
// (optionally gzip or zstd compressed), directories and dataset directories, with bounded
// memory; bad records are reported through a callback and skipped.
#include "anneal/data.h"
#include "data/html.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

enum { FMT_TXT, FMT_JSONL, FMT_CSV, FMT_TSV, FMT_HTML, FMT_SNIFF, FMT_DATASET };
enum { COMP_NONE, COMP_GZ, COMP_ZST };

#define RAW_CAP (64 * 1024)
#define DBUF_CAP (256 * 1024)
#define SNIFF_BYTES 8192

typedef struct rinput {
    anneal_reader_input pub;
    int fmt, comp;
} rinput;

typedef struct dir_id {
    dev_t dev;
    ino_t ino;
} dir_id;

struct anneal_reader {
    anneal_reader_config cfg;
    long csv_index; // 1-based column number when csv_column is a number, else 0
    rinput *in;
    size_t n_in, cap_in;
    anneal_arena arena; // paths
    dir_id *dirs;       // directories already walked (symlink loops)
    size_t n_dirs, cap_dirs;
    anneal_reader_stats stats;
    uint64_t open_skipped[ANNEAL_SKIP_COUNT]; // found while expanding directories
    unsigned pass;

    // The file being read.
    size_t cur;
    bool open, fdone, ffail, header_done;
    int fd;
    anneal_sha256 sha;
    bool hashing;
    uint64_t raw_total;
    uint8_t *raw;
    size_t raw_len, raw_pos;
    bool raw_eof;
    z_stream zs;
    bool zs_init, z_end, gz_pending; // gz_pending: output buffer filled (gzip or zstd)
    ZSTD_DCtx *zd;
    size_t zhint;
    uint8_t *dbuf;
    size_t dlen, dpos;
    uint64_t doff; // decompressed offset of dbuf[0]
    bool deof;
    uint64_t line; // line number of dbuf[dpos], 1-based

    // Current record and document.
    char *rec;
    size_t rec_len, rec_cap;
    size_t *fields; // CSV: field start offsets in rec, plus one past the end
    size_t n_fields, cap_fields;
    char **header;
    size_t n_header;
    long text_col, id_col; // 0-based, -1 none
    char *src, *idbuf;
    size_t src_cap, id_cap;
    json_t *json, *text_val;
    char *meta_dump;
    html_ex html;
};

const char *anneal_skip_reason_name(anneal_skip_reason reason) {
    static const char *const names[ANNEAL_SKIP_COUNT] = {
        "invalid_utf8", "nul",    "bad_json",   "no_text",
        "too_large",    "binary", "unreadable", "corrupt",
    };
    return (unsigned)reason < ANNEAL_SKIP_COUNT ? names[reason] : "?";
}

anneal_reader_config anneal_reader_config_default(void) {
    anneal_reader_config c = {
        .jsonl_text_field = "text",
        .jsonl_id_field = "id",
        .csv_column = "text",
        .csv_header = true,
        .txt_unit = ANNEAL_TXT_FILE,
        .max_doc_bytes = (size_t)32 << 20,
    };
    return c;
}

// ---- reporting --------------------------------------------------------------------------

static void report(anneal_reader *r, const char *path, uint64_t line, anneal_skip_reason why,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void report(anneal_reader *r, const char *path, uint64_t line, anneal_skip_reason why,
                   const char *fmt, ...) {
    r->stats.skipped[why]++;
    r->stats.skipped_total++;
    if (r->pass > 0 || !r->cfg.on_skip) return;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->cfg.on_skip(r->cfg.skip_user, path, line, why, msg);
}

#define CUR_PATH(r) ((r)->in[(r)->cur].pub.path)

// ---- expanding inputs -------------------------------------------------------------------

static bool ends_with(const char *s, size_t n, const char *suf) {
    size_t k = strlen(suf);
    if (n < k) return false;
    for (size_t i = 0; i < k; i++) {
        char c = s[n - k + i];
        if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
        if (c != suf[i]) return false;
    }
    return true;
}

static void classify(const char *path, int *fmt, int *comp) {
    size_t n = strlen(path);
    *comp = COMP_NONE;
    if (ends_with(path, n, ".gz")) {
        *comp = COMP_GZ;
        n -= 3;
    } else if (ends_with(path, n, ".zst")) {
        *comp = COMP_ZST;
        n -= 4;
    }
    if (ends_with(path, n, ".txt") || ends_with(path, n, ".md") || ends_with(path, n, ".text"))
        *fmt = FMT_TXT;
    else if (ends_with(path, n, ".jsonl") || ends_with(path, n, ".ndjson"))
        *fmt = FMT_JSONL;
    else if (ends_with(path, n, ".csv"))
        *fmt = FMT_CSV;
    else if (ends_with(path, n, ".tsv"))
        *fmt = FMT_TSV;
    else if (ends_with(path, n, ".html") || ends_with(path, n, ".htm"))
        *fmt = FMT_HTML;
    else
        *fmt = FMT_SNIFF;
}

static anneal_status add_input(anneal_reader *r, const char *path, uint64_t size, int fmt, int comp,
                               const char *dataset, const char *version, anneal_err *err) {
    if (r->n_in == r->cap_in) {
        size_t nc = r->cap_in ? r->cap_in * 2 : 16;
        rinput *p = anneal_realloc_array(r->in, nc, sizeof *p);
        if (!p) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "reader: out of memory");
        r->in = p;
        r->cap_in = nc;
    }
    rinput *ri = &r->in[r->n_in];
    memset(ri, 0, sizeof *ri);
    ri->pub.path = anneal_arena_strndup(&r->arena, path, strlen(path));
    if (!ri->pub.path) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "reader: out of memory");
    ri->pub.size = size;
    ri->pub.dataset = dataset;
    if (version) memcpy(ri->pub.dataset_version, version, 65);
    ri->fmt = fmt;
    ri->comp = comp;
    r->n_in++;
    return ANNEAL_OK;
}

static char *join_path(anneal_reader *r, const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    bool slash = a > 0 && dir[a - 1] == '/';
    char *p = anneal_arena_alloc(&r->arena, a + b + 2, 1);
    if (!p) return NULL;
    memcpy(p, dir, a);
    if (!slash) p[a++] = '/';
    memcpy(p + a, name, b + 1);
    return p;
}

static int byte_order(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int not_hidden(const struct dirent *d) {
    return d->d_name[0] != '.';
}

// true when the directory was seen before (a symlink loop or a second path to it).
static anneal_status dir_seen(anneal_reader *r, const struct stat *st, bool *seen,
                              anneal_err *err) {
    for (size_t i = 0; i < r->n_dirs; i++) {
        if (r->dirs[i].dev == st->st_dev && r->dirs[i].ino == st->st_ino) {
            *seen = true;
            return ANNEAL_OK;
        }
    }
    if (r->n_dirs == r->cap_dirs) {
        size_t nc = r->cap_dirs ? r->cap_dirs * 2 : 16;
        dir_id *p = anneal_realloc_array(r->dirs, nc, sizeof *p);
        if (!p) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "reader: out of memory");
        r->dirs = p;
        r->cap_dirs = nc;
    }
    r->dirs[r->n_dirs++] = (dir_id){st->st_dev, st->st_ino};
    *seen = false;
    return ANNEAL_OK;
}

static void open_skip(anneal_reader *r, const char *path, anneal_skip_reason why,
                      const char *what) {
    r->open_skipped[why]++;
    report(r, path, 0, why, "%s", what);
}

static anneal_status walk(anneal_reader *r, const char *dir, int depth, anneal_err *err);

static anneal_status add_dataset(anneal_reader *r, const char *dir, anneal_err *err) {
    char *manifest = join_path(r, dir, "manifest.json");
    char *docs = join_path(r, dir, "docs");
    char *ds = anneal_arena_strndup(&r->arena, dir, strlen(dir));
    if (!manifest || !docs || !ds)
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "reader: out of memory");
    uint8_t h[32];
    char version[65] = "";
    anneal_err e2 = {0};
    if (anneal_sha256_file(manifest, h, &e2) == ANNEAL_OK) {
        anneal_hex(h, 32, version);
    } else {
        char msg[600];
        snprintf(msg, sizeof msg, "cannot read the manifest: %s", anneal_err_msg(&e2));
        open_skip(r, manifest, ANNEAL_SKIP_UNREADABLE, msg);
    }
    struct dirent **ents = NULL;
    int n = scandir(docs, &ents, not_hidden, byte_order);
    if (n < 0) {
        if (errno == ENOENT) return ANNEAL_OK; // a dataset without documents
        char msg[300];
        snprintf(msg, sizeof msg, "cannot read directory: %s", strerror(errno));
        open_skip(r, docs, ANNEAL_SKIP_UNREADABLE, msg);
        return ANNEAL_OK;
    }
    anneal_status st = ANNEAL_OK;
    for (int i = 0; i < n; i++) {
        if (!st) {
            int fmt, comp;
            classify(ents[i]->d_name, &fmt, &comp);
            if (fmt == FMT_JSONL) {
                char *p = join_path(r, docs, ents[i]->d_name);
                struct stat sb;
                if (!p)
                    st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "reader: out of memory");
                else if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode))
                    st = add_input(r, p, (uint64_t)sb.st_size, FMT_DATASET, comp, ds, version, err);
            }
        }
        free(ents[i]);
    }
    free(ents);
    return st;
}

static anneal_status add_dir(anneal_reader *r, const char *dir, int depth, anneal_err *err) {
    char *manifest = join_path(r, dir, "manifest.json");
    if (!manifest) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "reader: out of memory");
    struct stat sb;
    if (stat(manifest, &sb) == 0 && S_ISREG(sb.st_mode)) return add_dataset(r, dir, err);
    return walk(r, dir, depth, err);
}

static anneal_status walk(anneal_reader *r, const char *dir, int depth, anneal_err *err) {
    if (depth > 64) {
        open_skip(r, dir, ANNEAL_SKIP_UNREADABLE, "directories nested deeper than 64 levels");
        return ANNEAL_OK;
    }
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, not_hidden, byte_order);
    if (n < 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "cannot read directory: %s", strerror(errno));
        open_skip(r, dir, ANNEAL_SKIP_UNREADABLE, msg);
        return ANNEAL_OK;
    }
    anneal_status st = ANNEAL_OK;
    for (int i = 0; i < n; i++) {
        if (!st) {
            char *p = join_path(r, dir, ents[i]->d_name);
            struct stat sb;
            if (!p) {
                st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "reader: out of memory");
            } else if (stat(p, &sb) != 0) {
                char msg[300];
                snprintf(msg, sizeof msg, "cannot stat: %s", strerror(errno));
                open_skip(r, p, ANNEAL_SKIP_UNREADABLE, msg);
            } else if (S_ISDIR(sb.st_mode)) {
                bool seen;
                st = dir_seen(r, &sb, &seen, err);
                if (!st && !seen) st = add_dir(r, p, depth + 1, err);
            } else if (S_ISREG(sb.st_mode)) {
                int fmt, comp;
                classify(p, &fmt, &comp);
                st = add_input(r, p, (uint64_t)sb.st_size, fmt, comp, NULL, NULL, err);
            } else {
                open_skip(r, p, ANNEAL_SKIP_UNREADABLE, "not a regular file");
            }
        }
        free(ents[i]);
    }
    free(ents);
    return st;
}

static void close_file(anneal_reader *r);
static bool rec_reserve(anneal_reader *r, size_t need);

void anneal_reader_free(anneal_reader *r) {
    if (!r) return;
    close_file(r);
    anneal_free(r->in);
    anneal_free(r->dirs);
    anneal_arena_free(&r->arena);
    anneal_free(r->raw);
    anneal_free(r->dbuf);
    anneal_free(r->rec);
    anneal_free(r->fields);
    anneal_free(r->src);
    anneal_free(r->idbuf);
    html_ex_free(&r->html);
    if (r->zd) ZSTD_freeDCtx(r->zd);
    anneal_free(r);
}

anneal_status anneal_reader_open(const char *const *inputs, size_t n,
                                 const anneal_reader_config *cfg, anneal_reader **out,
                                 anneal_err *err) {
    *out = NULL;
    if (!inputs || n == 0) return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "reader: no inputs");
    anneal_reader *r = anneal_calloc(1, sizeof *r);
    if (!r) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "reader: out of memory");
    r->cfg = cfg ? *cfg : anneal_reader_config_default();
    anneal_reader_config d = anneal_reader_config_default();
    if (!r->cfg.jsonl_text_field) r->cfg.jsonl_text_field = d.jsonl_text_field;
    if (!r->cfg.jsonl_id_field) r->cfg.jsonl_id_field = d.jsonl_id_field;
    if (!r->cfg.csv_column) r->cfg.csv_column = d.csv_column;
    if (r->cfg.max_doc_bytes == 0) r->cfg.max_doc_bytes = d.max_doc_bytes;
    if ((unsigned)r->cfg.txt_unit > ANNEAL_TXT_LINE) {
        anneal_free(r);
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "reader: bad txt unit %d",
                              (int)r->cfg.txt_unit);
    }
    const char *c = r->cfg.csv_column;
    if (*c >= '0' && *c <= '9') {
        char *end;
        long v = strtol(c, &end, 10);
        if (*end || v < 1 || v > 1000000) {
            anneal_free(r);
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                  "reader: bad CSV column '%s' (a name or a number from 1)", c);
        }
        r->csv_index = v;
    } else {
        r->cfg.csv_header = true;
    }
    r->fd = -1;
    anneal_arena_init(&r->arena, 64 * 1024, 0);
    html_ex_init(&r->html, r->cfg.max_doc_bytes);
    r->raw = anneal_malloc(RAW_CAP);
    r->dbuf = anneal_malloc(DBUF_CAP);
    anneal_status st = ANNEAL_OK;
    if (!r->raw || !r->dbuf || !rec_reserve(r, 4096))
        st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "reader: out of memory");
    for (size_t i = 0; i < n && !st; i++) {
        struct stat sb;
        if (!inputs[i] || stat(inputs[i], &sb) != 0) {
            if (!inputs[i] || errno == ENOENT || errno == ENOTDIR)
                st = anneal_err_set(err, ANNEAL_ERR_NOT_FOUND, "input not found: %s",
                                    inputs[i] ? inputs[i] : "(null)");
            else
                st = anneal_err_set(err, ANNEAL_ERR_IO, "input %s: %s", inputs[i], strerror(errno));
        } else if (S_ISDIR(sb.st_mode)) {
            bool seen;
            st = dir_seen(r, &sb, &seen, err);
            if (!st && !seen) st = add_dir(r, inputs[i], 0, err);
        } else {
            int fmt, comp;
            classify(inputs[i], &fmt, &comp);
            st = add_input(r, inputs[i], (uint64_t)sb.st_size, fmt, comp, NULL, NULL, err);
        }
    }
    if (st) {
        anneal_reader_free(r);
        return st;
    }
    *out = r;
    return ANNEAL_OK;
}

// ---- raw bytes and decompression --------------------------------------------------------

static void fail_file(anneal_reader *r, anneal_skip_reason why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// The rest of the current file is unusable: report it once at the current line.
static void fail_file(anneal_reader *r, anneal_skip_reason why, const char *fmt, ...) {
    if (r->ffail) return;
    r->ffail = true;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    report(r, CUR_PATH(r), r->line, why, "%s", msg);
}

// Reads raw bytes, hashing them; 0 at end of file, -1 on a read error (reported).
static ssize_t raw_read(anneal_reader *r, uint8_t *buf, size_t cap) {
    if (r->raw_eof) return 0;
    for (;;) {
        ssize_t n = read(r->fd, buf, cap);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            if (r->hashing) {
                anneal_sha256_free(&r->sha);
                r->hashing = false;
            }
            r->raw_eof = true;
            fail_file(r, ANNEAL_SKIP_UNREADABLE, "read failed: %s", strerror(e));
            return -1;
        }
        if (n == 0) {
            r->raw_eof = true;
            if (r->hashing) {
                rinput *ri = &r->in[r->cur];
                anneal_sha256_final(&r->sha, ri->pub.sha256);
                ri->pub.sha256_done = true;
                ri->pub.size = r->raw_total;
                r->hashing = false;
            }
            return 0;
        }
        if (r->hashing) anneal_sha256_update(&r->sha, buf, (size_t)n);
        r->raw_total += (uint64_t)n;
        return n;
    }
}

// Appends decompressed bytes to dbuf (after moving the unread part to the front);
// 1 when bytes were added, 0 at the end of the data or after a failure.
static int fill(anneal_reader *r) {
    if (r->deof || r->ffail) return 0;
    if (r->dpos > 0) {
        memmove(r->dbuf, r->dbuf + r->dpos, r->dlen - r->dpos);
        r->doff += r->dpos;
        r->dlen -= r->dpos;
        r->dpos = 0;
    }
    size_t space = DBUF_CAP - r->dlen;
    if (space == 0) return 1;
    int comp = r->in[r->cur].comp;
    for (;;) {
        if (comp == COMP_NONE) {
            ssize_t n = raw_read(r, r->dbuf + r->dlen, space);
            if (n <= 0) {
                r->deof = true;
                return 0;
            }
            r->dlen += (size_t)n;
            return 1;
        }
        if (comp == COMP_GZ) {
            if (r->zs.avail_in > 0 || r->gz_pending) {
                if (r->zs.avail_in > 0) r->z_end = false;
                r->zs.next_out = r->dbuf + r->dlen;
                r->zs.avail_out = (uInt)space;
                int ret = inflate(&r->zs, Z_NO_FLUSH);
                size_t got = space - r->zs.avail_out;
                r->gz_pending = r->zs.avail_out == 0;
                if (ret == Z_STREAM_END) {
                    r->z_end = true;
                    r->gz_pending = false;
                    inflateReset(&r->zs); // a following gzip member continues the data
                } else if (ret != Z_OK && ret != Z_BUF_ERROR) {
                    fail_file(r, ANNEAL_SKIP_CORRUPT,
                              "corrupt gzip data at compressed byte %llu: %s",
                              (unsigned long long)(r->raw_total - r->zs.avail_in),
                              r->zs.msg ? r->zs.msg : "error");
                    return 0;
                }
                r->dlen += got;
                if (got > 0) return 1;
                if (ret == Z_BUF_ERROR) r->gz_pending = false;
            }
            if (r->zs.avail_in == 0) {
                ssize_t n = raw_read(r, r->raw, RAW_CAP);
                if (n < 0) return 0;
                if (n == 0) {
                    if (!r->z_end) {
                        fail_file(r, ANNEAL_SKIP_CORRUPT, "truncated gzip data");
                        return 0;
                    }
                    r->deof = true;
                    return 0;
                }
                r->zs.next_in = r->raw;
                r->zs.avail_in = (uInt)n;
            }
            continue;
        }
        // zstd: call it while input remains or its last output filled the buffer (it may
        // hold more); at the end of input the last call must have finished a frame.
        if (r->raw_pos == r->raw_len && !r->raw_eof && !r->gz_pending) {
            ssize_t n = raw_read(r, r->raw, RAW_CAP);
            if (n < 0) return 0;
            r->raw_len = (size_t)n;
            r->raw_pos = 0;
            continue;
        }
        if (r->raw_pos == r->raw_len && !r->gz_pending) {
            if (r->zhint != 0) {
                fail_file(r, ANNEAL_SKIP_CORRUPT, "truncated zstd data");
                return 0;
            }
            r->deof = true;
            return 0;
        }
        ZSTD_inBuffer in = {r->raw, r->raw_len, r->raw_pos};
        ZSTD_outBuffer o = {r->dbuf + r->dlen, space, 0};
        size_t ret = ZSTD_decompressStream(r->zd, &o, &in);
        if (ZSTD_isError(ret)) {
            fail_file(r, ANNEAL_SKIP_CORRUPT, "corrupt zstd data at compressed byte %llu: %s",
                      (unsigned long long)(r->raw_total - (r->raw_len - in.pos)),
                      ZSTD_getErrorName(ret));
            return 0;
        }
        r->raw_pos = in.pos;
        r->zhint = ret;
        r->gz_pending = o.pos == o.size;
        r->dlen += o.pos;
        if (o.pos > 0) return 1;
    }
}

static void close_file(anneal_reader *r) {
    if (!r->open) return;
    if (r->hashing) {
        anneal_sha256_free(&r->sha);
        r->hashing = false;
    }
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
    if (r->zs_init) inflateEnd(&r->zs);
    r->zs_init = false;
    if (r->json) json_decref(r->json);
    if (r->text_val) json_decref(r->text_val);
    r->json = r->text_val = NULL;
    free(r->meta_dump);
    r->meta_dump = NULL;
    for (size_t i = 0; i < r->n_header; i++)
        anneal_free(r->header[i]);
    anneal_free(r->header);
    r->header = NULL;
    r->n_header = 0;
    r->open = false;
}

// The rest of a file whose records are abandoned is still hashed, so the inputs list is
// complete after one pass.
static void drain(anneal_reader *r) {
    while (r->hashing && !r->raw_eof) {
        if (raw_read(r, r->raw, RAW_CAP) <= 0) break;
    }
}

// Opens input `r->cur`; false when it cannot be read (reported).
static bool open_file(anneal_reader *r) {
    rinput *ri = &r->in[r->cur];
    r->open = true;
    r->fdone = r->ffail = r->header_done = false;
    r->raw_total = 0;
    r->raw_len = r->raw_pos = 0;
    r->raw_eof = false;
    r->dlen = r->dpos = 0;
    r->doff = 0;
    r->deof = false;
    r->line = 1;
    r->z_end = true;
    r->gz_pending = false;
    r->zhint = 0;
    r->text_col = r->id_col = -1;
    r->fd = open(ri->pub.path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        report(r, ri->pub.path, 0, ANNEAL_SKIP_UNREADABLE, "cannot open: %s", strerror(errno));
        return false;
    }
    if (!ri->pub.sha256_done && anneal_sha256_init(&r->sha) == ANNEAL_OK) r->hashing = true;
    if (ri->comp == COMP_GZ) {
        memset(&r->zs, 0, sizeof r->zs);
        if (inflateInit2(&r->zs, 16 + MAX_WBITS) != Z_OK) {
            report(r, ri->pub.path, 0, ANNEAL_SKIP_UNREADABLE, "cannot start zlib");
            return false;
        }
        r->zs_init = true;
    } else if (ri->comp == COMP_ZST) {
        if (!r->zd) r->zd = ZSTD_createDCtx();
        if (!r->zd) {
            report(r, ri->pub.path, 0, ANNEAL_SKIP_UNREADABLE, "cannot start zstd");
            return false;
        }
        ZSTD_DCtx_reset(r->zd, ZSTD_reset_session_only);
    }
    return true;
}

// ---- records ----------------------------------------------------------------------------

static bool rec_reserve(anneal_reader *r, size_t need) {
    if (need <= r->rec_cap) return true;
    size_t nc = r->rec_cap ? r->rec_cap : 4096;
    while (nc < need)
        nc *= 2;
    char *p = anneal_realloc(r->rec, nc);
    if (!p) return false;
    r->rec = p;
    r->rec_cap = nc;
    return true;
}

static bool rec_append(anneal_reader *r, const void *p, size_t n) {
    if (!rec_reserve(r, r->rec_len + n + 1)) return false;
    memcpy(r->rec + r->rec_len, p, n);
    r->rec_len += n;
    return true;
}

// Index of the first invalid UTF-8 byte or NUL in s[0..n) (*nul tells which), or n.
static size_t utf8_check(const uint8_t *s, size_t n, bool *nul) {
    size_t i = 0;
    *nul = false;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t v;
            memcpy(&v, s + i, 8);
            if (((v | ((v - 0x0101010101010101ull) & ~v)) & 0x8080808080808080ull) == 0) {
                i += 8;
                continue;
            }
        }
        uint8_t c = s[i];
        if (c == 0) {
            *nul = true;
            return i;
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = anneal_utf8_decode(s + i, n - i, &cp);
        if (k == 0) return i;
        i += k;
    }
    return n;
}

// Reports and returns false when s is not valid UTF-8 without NUL; `off` is the file
// offset of s[0].
static bool check_text(anneal_reader *r, const char *s, size_t n, uint64_t line, uint64_t off) {
    bool nul;
    size_t bad = utf8_check((const uint8_t *)s, n, &nul);
    if (bad == n) return true;
    if (nul)
        report(r, CUR_PATH(r), line, ANNEAL_SKIP_NUL, "NUL byte at byte %llu",
               (unsigned long long)(off + bad));
    else
        report(r, CUR_PATH(r), line, ANNEAL_SKIP_INVALID_UTF8, "invalid UTF-8 at byte %llu",
               (unsigned long long)(off + bad));
    return false;
}

// One line without its '\n' (and without a '\r' before it): 1 with *p/*n set, 0 at the
// end of the data, -1 out of memory. A line longer than cap is consumed and *over set.
static int get_line(anneal_reader *r, size_t cap, const char **p, size_t *n, uint64_t *line,
                    uint64_t *off, bool *over) {
    r->rec_len = 0;
    *over = false;
    *line = r->line;
    *off = r->doff + r->dpos;
    bool any = false;
    for (;;) {
        if (r->dpos == r->dlen && !fill(r)) {
            if (!any || r->ffail) return 0;
            break;
        }
        any = true;
        const uint8_t *s = r->dbuf + r->dpos;
        size_t avail = r->dlen - r->dpos;
        const uint8_t *nl = memchr(s, '\n', avail);
        size_t take = nl ? (size_t)(nl - s) : avail;
        if (!*over) {
            if (r->rec_len + take > cap) {
                *over = true;
                r->rec_len = 0;
            } else if (nl && r->rec_len == 0) {
                r->dpos += take + 1;
                r->line++;
                *p = (const char *)s;
                *n = take;
                if (take > 0 && s[take - 1] == '\r') (*n)--;
                return 1;
            } else if (!rec_append(r, s, take)) {
                return -1;
            }
        }
        r->dpos += take;
        if (nl) {
            r->dpos++;
            break;
        }
    }
    r->line++;
    *p = r->rec;
    *n = r->rec_len;
    if (*n > 0 && r->rec[*n - 1] == '\r') (*n)--;
    return 1;
}

static bool blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\f' && s[i] != '\v')
            return false;
    return true;
}

static bool set_source(anneal_reader *r, uint64_t line) {
    const char *path = CUR_PATH(r);
    size_t need = strlen(path) + 24;
    if (need > r->src_cap) {
        char *p = anneal_realloc(r->src, need);
        if (!p) return false;
        r->src = p;
        r->src_cap = need;
    }
    snprintf(r->src, need, "%s:%llu", path, (unsigned long long)line);
    return true;
}

// A document whose id is its source.
static anneal_status emit_plain(anneal_reader *r, anneal_doc *doc, const char *text, size_t len,
                                uint64_t line, anneal_err *err) {
    if (!set_source(r, line)) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "reader: out of memory");
    doc->id = r->src;
    doc->id_len = strlen(r->src);
    doc->source = r->src;
    doc->text = text;
    doc->len = len;
    doc->meta = "{}";
    doc->meta_len = 2;
    return ANNEAL_OK;
}

static size_t bom_skip(anneal_reader *r) {
    if (r->doff == 0 && r->dpos == 0) {
        while (r->dlen < 3 && fill(r)) {
        }
        if (r->dlen >= 3 && memcmp(r->dbuf, "\xEF\xBB\xBF", 3) == 0) {
            r->dpos = 3;
            return 3;
        }
    }
    return 0;
}

#define NOMEM(err) anneal_err_set(err, ANNEAL_ERR_NOMEM, "reader: out of memory")

// ---- plain text -------------------------------------------------------------------------

static anneal_status next_txt(anneal_reader *r, anneal_doc *doc, bool *got, anneal_err *err) {
    size_t max = r->cfg.max_doc_bytes;
    if (!r->header_done) {
        r->header_done = true;
        bom_skip(r);
    }
    if (r->cfg.txt_unit == ANNEAL_TXT_FILE) {
        uint64_t off = r->doff + r->dpos;
        r->rec_len = 0;
        bool over = false;
        for (;;) {
            if (r->dpos == r->dlen && !fill(r)) break;
            size_t avail = r->dlen - r->dpos;
            if (!over && r->rec_len + avail > max) over = true;
            if (!over && !rec_append(r, r->dbuf + r->dpos, avail)) return NOMEM(err);
            r->dpos = r->dlen;
        }
        r->fdone = true;
        if (r->ffail) return ANNEAL_OK;
        if (over) {
            report(r, CUR_PATH(r), 1, ANNEAL_SKIP_TOO_LARGE, "document larger than %zu bytes", max);
            return ANNEAL_OK;
        }
        if (blank(r->rec, r->rec_len) || !check_text(r, r->rec, r->rec_len, 1, off))
            return ANNEAL_OK;
        *got = true;
        return emit_plain(r, doc, r->rec, r->rec_len, 1, err);
    }
    if (r->cfg.txt_unit == ANNEAL_TXT_LINE) {
        for (;;) {
            const char *p;
            size_t n;
            uint64_t line, off;
            bool over;
            int k = get_line(r, max, &p, &n, &line, &off, &over);
            if (k < 0) return NOMEM(err);
            if (k == 0) {
                r->fdone = true;
                return ANNEAL_OK;
            }
            if (over) {
                report(r, CUR_PATH(r), line, ANNEAL_SKIP_TOO_LARGE, "line longer than %zu bytes",
                       max);
                continue;
            }
            if (blank(p, n) || !check_text(r, p, n, line, off)) continue;
            *got = true;
            return emit_plain(r, doc, p, n, line, err);
        }
    }
    // Paragraphs: lines up to a blank line, joined with '\n'. The paragraph is built in a
    // second buffer because get_line reuses rec.
    char *para = NULL;
    size_t plen = 0, pcap = 0;
    bool in_para = false, over_para = false, bad = false;
    uint64_t pline = 0;
    anneal_status st = ANNEAL_OK;
    for (;;) {
        const char *p;
        size_t n;
        uint64_t line, off;
        bool over;
        int k = get_line(r, max, &p, &n, &line, &off, &over);
        if (k < 0) {
            st = NOMEM(err);
            break;
        }
        bool end = k == 0 || (!over && blank(p, n));
        if (!end) {
            if (!in_para) {
                in_para = true;
                pline = line;
                plen = 0;
                over_para = bad = false;
            }
            if (over || plen + (plen ? 1 : 0) + n > max) {
                over_para = true;
            } else if (!bad && !over_para) {
                if (!check_text(r, p, n, line, off)) {
                    bad = true;
                } else {
                    if (plen + n + 2 > pcap) {
                        size_t nc = pcap ? pcap * 2 : 4096;
                        while (nc < plen + n + 2)
                            nc *= 2;
                        char *q = anneal_realloc(para, nc);
                        if (!q) {
                            st = NOMEM(err);
                            break;
                        }
                        para = q;
                        pcap = nc;
                    }
                    if (plen) para[plen++] = '\n';
                    memcpy(para + plen, p, n);
                    plen += n;
                }
            }
            continue;
        }
        if (in_para) {
            in_para = false;
            if (over_para) {
                report(r, CUR_PATH(r), pline, ANNEAL_SKIP_TOO_LARGE,
                       "paragraph larger than %zu bytes", max);
            } else if (!bad) {
                // Hand the paragraph over in rec (the document buffer) and keep reading next call.
                anneal_free(r->rec);
                r->rec = para;
                r->rec_cap = pcap;
                r->rec_len = plen;
                para = NULL;
                *got = true;
                st = emit_plain(r, doc, r->rec, plen, pline, err);
                break;
            }
        }
        if (k == 0) {
            r->fdone = true;
            break;
        }
    }
    anneal_free(para);
    return st;
}

// ---- JSON lines -------------------------------------------------------------------------

static anneal_status next_jsonl(anneal_reader *r, anneal_doc *doc, bool *got, anneal_err *err) {
    bool dataset = r->in[r->cur].fmt == FMT_DATASET;
    size_t max = r->cfg.max_doc_bytes;
    size_t cap = max > (SIZE_MAX - 4096) / 2 ? SIZE_MAX : 2 * max + 4096;
    const char *tf = dataset ? "text" : r->cfg.jsonl_text_field;
    const char *idf = dataset ? "id" : r->cfg.jsonl_id_field;
    if (!r->header_done) {
        r->header_done = true;
        bom_skip(r);
    }
    for (;;) {
        if (r->json) json_decref(r->json);
        if (r->text_val) json_decref(r->text_val);
        r->json = r->text_val = NULL;
        free(r->meta_dump);
        r->meta_dump = NULL;
        const char *p;
        size_t n;
        uint64_t line, off;
        bool over;
        int k = get_line(r, cap, &p, &n, &line, &off, &over);
        if (k < 0) return NOMEM(err);
        if (k == 0) {
            r->fdone = true;
            return ANNEAL_OK;
        }
        const char *path = CUR_PATH(r);
        if (over) {
            report(r, path, line, ANNEAL_SKIP_TOO_LARGE, "line longer than %zu bytes", cap);
            continue;
        }
        if (blank(p, n) || !check_text(r, p, n, line, off)) continue;
        json_error_t je;
        json_t *root = json_loadb(p, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
        if (!root) {
            report(r, path, line, ANNEAL_SKIP_BAD_JSON, "invalid JSON at column %d: %s", je.column,
                   je.text);
            continue;
        }
        r->json = root;
        if (!json_is_object(root)) {
            report(r, path, line, ANNEAL_SKIP_BAD_JSON, "not a JSON object");
            continue;
        }
        json_t *tv = json_object_get(root, tf);
        if (!tv) {
            report(r, path, line, ANNEAL_SKIP_NO_TEXT, "no field '%s'", tf);
            continue;
        }
        if (!json_is_string(tv)) {
            report(r, path, line, ANNEAL_SKIP_NO_TEXT, "field '%s' is not a string", tf);
            continue;
        }
        size_t tlen = json_string_length(tv);
        const char *text = json_string_value(tv);
        if (tlen > max) {
            report(r, path, line, ANNEAL_SKIP_TOO_LARGE, "text larger than %zu bytes", max);
            continue;
        }
        const char *nulp = memchr(text, 0, tlen);
        if (nulp) {
            report(r, path, line, ANNEAL_SKIP_NUL, "NUL character at byte %zu of field '%s'",
                   (size_t)(nulp - text), tf);
            continue;
        }
        // id
        json_t *iv = json_object_get(root, idf);
        const char *id = NULL;
        size_t id_len = 0;
        if (iv && json_is_string(iv)) {
            id = json_string_value(iv);
            id_len = json_string_length(iv);
            if (memchr(id, 0, id_len) || id_len == 0) {
                report(r, path, line, ANNEAL_SKIP_BAD_JSON, "field '%s' is empty or holds NUL",
                       idf);
                continue;
            }
        } else if (iv && (json_is_integer(iv) || json_is_real(iv))) {
            if (r->id_cap < 64) {
                char *q = anneal_realloc(r->idbuf, 64);
                if (!q) return NOMEM(err);
                r->idbuf = q;
                r->id_cap = 64;
            }
            if (json_is_integer(iv))
                snprintf(r->idbuf, 64, "%" JSON_INTEGER_FORMAT, json_integer_value(iv));
            else
                snprintf(r->idbuf, 64, "%.17g", json_real_value(iv));
            id = r->idbuf;
            id_len = strlen(id);
        } else if (iv) {
            report(r, path, line, ANNEAL_SKIP_BAD_JSON, "field '%s' is not a string or number",
                   idf);
            continue;
        }
        if (!set_source(r, line)) return NOMEM(err);
        const char *source = r->src;
        const char *meta = "{}";
        if (dataset) {
            json_t *sv = json_object_get(root, "source");
            if (sv && json_is_string(sv) &&
                !memchr(json_string_value(sv), 0, json_string_length(sv)))
                source = json_string_value(sv);
            json_t *mv = json_object_get(root, "meta");
            if (mv && !json_is_object(mv)) {
                report(r, path, line, ANNEAL_SKIP_BAD_JSON, "field 'meta' is not an object");
                continue;
            }
            if (mv && json_object_size(mv) > 0) {
                r->meta_dump = json_dumps(mv, JSON_COMPACT | JSON_PRESERVE_ORDER);
                if (!r->meta_dump) return NOMEM(err);
                meta = r->meta_dump;
            }
        } else {
            // The other fields become meta: take the text (and id) out of the object.
            r->text_val = json_incref(tv);
            if (iv && id != r->idbuf) {
                // Keep the id string alive: reuse idbuf.
                if (id_len + 1 > r->id_cap) {
                    char *q = anneal_realloc(r->idbuf, id_len + 1);
                    if (!q) return NOMEM(err);
                    r->idbuf = q;
                    r->id_cap = id_len + 1;
                }
                memcpy(r->idbuf, id, id_len + 1);
                id = r->idbuf;
            }
            json_object_del(root, tf);
            if (iv) json_object_del(root, idf);
            if (json_object_size(root) > 0) {
                r->meta_dump = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
                if (!r->meta_dump) return NOMEM(err);
                meta = r->meta_dump;
            }
        }
        if (!id) {
            id = r->src;
            id_len = strlen(r->src);
        }
        doc->id = id;
        doc->id_len = id_len;
        doc->text = text;
        doc->len = tlen;
        doc->source = source;
        doc->meta = meta;
        doc->meta_len = strlen(meta);
        *got = true;
        return ANNEAL_OK;
    }
}

// ---- CSV and TSV ------------------------------------------------------------------------

static bool field_push(anneal_reader *r) {
    if (r->n_fields + 1 >= r->cap_fields) {
        size_t nc = r->cap_fields ? r->cap_fields * 2 : 32;
        size_t *p = anneal_realloc_array(r->fields, nc, sizeof *p);
        if (!p) return false;
        r->fields = p;
        r->cap_fields = nc;
    }
    r->fields[++r->n_fields] = r->rec_len;
    return true;
}

// One record into rec/fields (field i is rec[fields[i] .. fields[i+1])): 1, 0 at the end,
// -1 out of memory. CSV follows RFC 4180 (quotes, "" escapes, quoted newlines); TSV splits
// at tabs and newlines with no quoting. *over: larger than cap (content dropped);
// *broken: an unterminated quote at the end of the data.
static int get_record(anneal_reader *r, bool tsv, size_t cap, uint64_t *line, bool *over,
                      bool *broken) {
    char delim = tsv ? '\t' : ',';
    r->rec_len = 0;
    r->n_fields = 0;
    if (r->cap_fields < 2) {
        size_t *f = anneal_realloc_array(r->fields, 32, sizeof *f);
        if (!f) return -1;
        r->fields = f;
        r->cap_fields = 32;
    }
    r->fields[0] = 0;
    *over = *broken = false;
    *line = r->line;
    enum { F_START, F_PLAIN, F_QUOTED, F_QUOTE_END } state = F_START;
    bool any = false;
    for (;;) {
        if (r->dpos == r->dlen && !fill(r)) {
            if (!any || r->ffail) return 0;
            if (state == F_QUOTED) *broken = true;
            break;
        }
        any = true;
        char c = (char)r->dbuf[r->dpos++];
        if (c == '\n') r->line++;
        if (state == F_QUOTED) {
            if (c == '"')
                state = F_QUOTE_END;
            else if (!*over && !rec_append(r, &c, 1))
                return -1;
        } else if (state == F_QUOTE_END && c == '"') {
            state = F_QUOTED;
            if (!*over && !rec_append(r, &c, 1)) return -1;
        } else if (c == delim) {
            if (!field_push(r)) return -1;
            state = F_START;
        } else if (c == '\n') {
            break;
        } else if (c == '"' && state == F_START && !tsv) {
            state = F_QUOTED;
        } else {
            // Text after a closing quote is kept as is (lenient about `"a"b`).
            state = F_PLAIN;
            if (!*over && !rec_append(r, &c, 1)) return -1;
        }
        if (!*over && r->rec_len > cap) {
            *over = true;
            r->rec_len = 0;
            for (size_t i = 0; i <= r->n_fields; i++)
                r->fields[i] = 0;
        }
    }
    if (!field_push(r)) return -1;
    // A '\r' before the newline ends the last field of an unquoted record.
    size_t last = r->n_fields - 1;
    if (!*over && r->fields[r->n_fields] > r->fields[last] && r->rec_len > 0 &&
        r->rec[r->rec_len - 1] == '\r' && state != F_QUOTE_END) {
        r->rec_len--;
        r->fields[r->n_fields]--;
    }
    return 1;
}

static anneal_status csv_header(anneal_reader *r, bool tsv, anneal_err *err) {
    size_t cap = 1 << 20;
    uint64_t line;
    bool over, broken;
    int k = get_record(r, tsv, cap, &line, &over, &broken);
    if (k < 0) return NOMEM(err);
    const char *path = CUR_PATH(r);
    if (k == 0) {
        r->fdone = true;
        return ANNEAL_OK;
    }
    if (over || broken) {
        report(r, path, 0, over ? ANNEAL_SKIP_TOO_LARGE : ANNEAL_SKIP_CORRUPT,
               over ? "header row larger than 1 MiB" : "unterminated quote in the header row");
        r->fdone = true;
        return ANNEAL_OK;
    }
    for (size_t i = 0; i < r->n_fields; i++) {
        bool nul;
        size_t fl = r->fields[i + 1] - r->fields[i];
        size_t b = utf8_check((const uint8_t *)r->rec + r->fields[i], fl, &nul);
        if (b < fl) {
            report(r, path, 1, nul ? ANNEAL_SKIP_NUL : ANNEAL_SKIP_INVALID_UTF8,
                   "%s at byte %zu of header column %zu", nul ? "NUL byte" : "invalid UTF-8", b,
                   i + 1);
            r->fdone = true;
            return ANNEAL_OK;
        }
    }
    r->header = anneal_calloc(r->n_fields, sizeof *r->header);
    if (!r->header) return NOMEM(err);
    r->n_header = r->n_fields;
    for (size_t i = 0; i < r->n_fields; i++) {
        size_t a = r->fields[i], b = r->fields[i + 1];
        r->header[i] = anneal_strndup(r->rec + a, b - a);
        if (!r->header[i]) return NOMEM(err);
        if (r->csv_index == 0 && strcmp(r->header[i], r->cfg.csv_column) == 0 && r->text_col < 0)
            r->text_col = (long)i;
        if (strcmp(r->header[i], r->cfg.jsonl_id_field) == 0 && r->id_col < 0) r->id_col = (long)i;
    }
    if (r->csv_index == 0 && r->text_col < 0) {
        report(r, path, 1, ANNEAL_SKIP_NO_TEXT, "no column '%s' in the header", r->cfg.csv_column);
        r->fdone = true;
    }
    return ANNEAL_OK;
}

static anneal_status next_csv(anneal_reader *r, anneal_doc *doc, bool *got, anneal_err *err) {
    bool tsv = r->in[r->cur].fmt == FMT_TSV;
    size_t max = r->cfg.max_doc_bytes;
    size_t cap = max > (SIZE_MAX - 4096) / 2 ? SIZE_MAX : 2 * max + 4096;
    if (!r->header_done) {
        r->header_done = true;
        bom_skip(r);
        if (r->csv_index > 0) r->text_col = r->csv_index - 1;
        if (r->cfg.csv_header) {
            anneal_status st = csv_header(r, tsv, err);
            if (st || r->fdone) return st;
        }
    }
    free(r->meta_dump);
    r->meta_dump = NULL;
    for (;;) {
        uint64_t line;
        bool over, broken;
        int k = get_record(r, tsv, cap, &line, &over, &broken);
        if (k < 0) return NOMEM(err);
        if (k == 0) {
            r->fdone = true;
            return ANNEAL_OK;
        }
        const char *path = CUR_PATH(r);
        if (over) {
            report(r, path, line, ANNEAL_SKIP_TOO_LARGE, "record larger than %zu bytes", cap);
            continue;
        }
        if (broken) {
            report(r, path, line, ANNEAL_SKIP_CORRUPT, "unterminated quoted field");
            continue;
        }
        if (r->n_fields == 1 && r->rec_len == 0) continue; // an empty line
        if ((size_t)r->text_col >= r->n_fields) {
            report(r, path, line, ANNEAL_SKIP_NO_TEXT, "row has %zu column%s, no column %ld",
                   r->n_fields, r->n_fields == 1 ? "" : "s", r->text_col + 1);
            continue;
        }
        bool bad = false;
        for (size_t i = 0; i < r->n_fields && !bad; i++) {
            const char *f = r->rec + r->fields[i];
            size_t fl = r->fields[i + 1] - r->fields[i];
            bool nul;
            size_t b = utf8_check((const uint8_t *)f, fl, &nul);
            if (b < fl) {
                bad = true;
                report(r, path, line, nul ? ANNEAL_SKIP_NUL : ANNEAL_SKIP_INVALID_UTF8,
                       "%s at byte %zu of column %zu", nul ? "NUL byte" : "invalid UTF-8", b,
                       i + 1);
            }
        }
        if (bad) continue;
        size_t tl = r->fields[r->text_col + 1] - r->fields[r->text_col];
        if (tl > max) {
            report(r, path, line, ANNEAL_SKIP_TOO_LARGE, "text larger than %zu bytes", max);
            continue;
        }
        if (!set_source(r, line)) return NOMEM(err);
        doc->source = r->src;
        doc->id = r->src;
        doc->id_len = strlen(r->src);
        if (r->id_col >= 0 && (size_t)r->id_col < r->n_fields &&
            r->fields[r->id_col + 1] > r->fields[r->id_col]) {
            doc->id = r->rec + r->fields[r->id_col];
            doc->id_len = r->fields[r->id_col + 1] - r->fields[r->id_col];
        }
        doc->meta = "{}";
        if (r->n_header > 0) {
            json_t *m = json_object();
            if (!m) return NOMEM(err);
            for (size_t i = 0; i < r->n_fields && i < r->n_header; i++) {
                if ((long)i == r->text_col || (long)i == r->id_col) continue;
                json_t *v = json_stringn(r->rec + r->fields[i], r->fields[i + 1] - r->fields[i]);
                if (!v || json_object_set_new(m, r->header[i], v) != 0) {
                    json_decref(m);
                    return NOMEM(err);
                }
            }
            if (json_object_size(m) > 0) {
                r->meta_dump = json_dumps(m, JSON_COMPACT | JSON_PRESERVE_ORDER);
                json_decref(m);
                if (!r->meta_dump) return NOMEM(err);
                doc->meta = r->meta_dump;
            } else {
                json_decref(m);
            }
        }
        doc->meta_len = strlen(doc->meta);
        doc->text = r->rec + r->fields[r->text_col];
        doc->len = tl;
        *got = true;
        return ANNEAL_OK;
    }
}

// ---- HTML -------------------------------------------------------------------------------

static anneal_status next_html(anneal_reader *r, anneal_doc *doc, bool *got, anneal_err *err) {
    html_ex *h = &r->html;
    html_ex_reset(h);
    bom_skip(r);
    r->fdone = true;
    for (;;) {
        if (r->dpos == r->dlen && !fill(r)) break;
        const uint8_t *s = r->dbuf + r->dpos;
        size_t n = r->dlen - r->dpos;
        bool nul;
        size_t b = utf8_check(s, n, &nul);
        if (b < n && !nul && anneal_utf8_incomplete(s + b, n - b) && !r->deof) {
            // A sequence split by the buffer end: feed what is complete, read on.
            html_ex_feed(h, (const char *)s, b);
            r->dpos += b;
            size_t before = r->dlen - r->dpos;
            if (!fill(r) || r->dlen - r->dpos == before) {
                if (r->ffail) return ANNEAL_OK;
                report(r, CUR_PATH(r), 1, ANNEAL_SKIP_INVALID_UTF8, "invalid UTF-8 at byte %llu",
                       (unsigned long long)(r->doff + r->dpos));
                drain(r);
                return ANNEAL_OK;
            }
            continue;
        }
        if (b < n) {
            report(r, CUR_PATH(r), 1, nul ? ANNEAL_SKIP_NUL : ANNEAL_SKIP_INVALID_UTF8,
                   "%s at byte %llu", nul ? "NUL byte" : "invalid UTF-8",
                   (unsigned long long)(r->doff + r->dpos + b));
            drain(r);
            return ANNEAL_OK;
        }
        html_ex_feed(h, (const char *)s, n);
        r->dpos = r->dlen;
        if (h->nomem) return NOMEM(err);
    }
    if (r->ffail) return ANNEAL_OK;
    html_ex_finish(h);
    if (h->nomem) return NOMEM(err);
    if (h->overflow) {
        report(r, CUR_PATH(r), 1, ANNEAL_SKIP_TOO_LARGE, "text larger than %zu bytes",
               r->cfg.max_doc_bytes);
        return ANNEAL_OK;
    }
    if (h->len == 0) return ANNEAL_OK;
    *got = true;
    return emit_plain(r, doc, h->out, h->len, 1, err);
}

// ---- unknown extensions -----------------------------------------------------------------

// Decides whether a file of unknown type is text: no NUL and at most 30% invalid UTF-8
// bytes in its first 8 KiB.
static bool sniff_text(anneal_reader *r) {
    while (r->dlen - r->dpos < SNIFF_BYTES && fill(r)) {
    }
    if (r->ffail) return false;
    const uint8_t *s = r->dbuf + r->dpos;
    size_t n = r->dlen - r->dpos;
    if (n > SNIFF_BYTES) n = SNIFF_BYTES;
    size_t bad = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] == 0) {
            report(r, CUR_PATH(r), 0, ANNEAL_SKIP_BINARY, "binary file (NUL byte at byte %zu)", i);
            return false;
        }
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = anneal_utf8_decode(s + i, n - i, &cp);
        if (k == 0) {
            if (n == SNIFF_BYTES && anneal_utf8_incomplete(s + i, n - i)) break;
            bad++;
            k = 1;
        }
        i += k;
    }
    if (bad * 10 > n * 3) {
        report(r, CUR_PATH(r), 0, ANNEAL_SKIP_BINARY,
               "binary file (%zu of the first %zu bytes are not UTF-8)", bad, n);
        return false;
    }
    return true;
}

// ---- driving ----------------------------------------------------------------------------

anneal_status anneal_reader_next(anneal_reader *r, anneal_doc *doc, bool *eof, anneal_err *err) {
    *eof = false;
    for (;;) {
        if (!r->open) {
            if (r->cur >= r->n_in) {
                *eof = true;
                return ANNEAL_OK;
            }
            if (!open_file(r)) {
                close_file(r);
                r->cur++;
                continue;
            }
            rinput *ri = &r->in[r->cur];
            if (ri->fmt == FMT_SNIFF) {
                if (sniff_text(r)) {
                    ri->fmt = FMT_TXT;
                } else {
                    drain(r);
                    r->fdone = true;
                }
            }
        }
        bool got = false;
        anneal_status st = ANNEAL_OK;
        if (!r->fdone) {
            switch (r->in[r->cur].fmt) {
            case FMT_TXT:
                st = next_txt(r, doc, &got, err);
                break;
            case FMT_JSONL:
            case FMT_DATASET:
                st = next_jsonl(r, doc, &got, err);
                break;
            case FMT_CSV:
            case FMT_TSV:
                st = next_csv(r, doc, &got, err);
                break;
            case FMT_HTML:
                st = next_html(r, doc, &got, err);
                break;
            default:
                r->fdone = true;
                break;
            }
        }
        if (st) return st;
        if (got) {
            r->stats.docs++;
            return ANNEAL_OK;
        }
        if (r->fdone || r->ffail) {
            drain(r);
            r->stats.bytes += r->doff + r->dlen;
            close_file(r);
            r->cur++;
        }
    }
}

anneal_status anneal_reader_rewind(anneal_reader *r, anneal_err *err) {
    (void)err;
    close_file(r);
    r->cur = 0;
    r->pass++;
    memset(&r->stats, 0, sizeof r->stats);
    for (int i = 0; i < ANNEAL_SKIP_COUNT; i++) {
        r->stats.skipped[i] = r->open_skipped[i];
        r->stats.skipped_total += r->open_skipped[i];
    }
    return ANNEAL_OK;
}

const anneal_reader_stats *anneal_reader_stats_get(const anneal_reader *r) {
    return &r->stats;
}

size_t anneal_reader_input_count(const anneal_reader *r) {
    return r->n_in;
}

const anneal_reader_input *anneal_reader_input_get(const anneal_reader *r, size_t i) {
    return i < r->n_in ? &r->in[i].pub : NULL;
}
