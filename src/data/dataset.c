// Dataset directories: a writer that builds OUTDIR in a temporary sibling directory and
// renames it into place with a manifest (inputs, config, counts, outputs with SHA-256), and a
// verifier that re-hashes everything the manifest lists. docs/data.md, "Versioning and
// manifests", is the specification.
#include "anneal/data.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MANIFEST "manifest.json"
#define MANIFEST_MAX ((size_t)256 << 20)
#define BUF_CAP ((size_t)1 << 20)

// ---- small helpers --------------------------------------------------------------------

static char *join(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *p = anneal_malloc(na + nb + 2);
    if (!p) return NULL;
    memcpy(p, a, na);
    p[na] = '/';
    memcpy(p + na + 1, b, nb + 1);
    return p;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(const char *path) {
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static void fsync_parent(const char *path) {
    char *copy = anneal_strndup(path, strlen(path));
    if (!copy) return;
    char *slash = strrchr(copy, '/');
    if (slash == copy)
        slash[1] = 0;
    else if (slash)
        *slash = 0;
    else
        strcpy(copy, ".");
    fsync_path(copy);
    anneal_free(copy);
}

// A relative path inside a dataset: no leading '/', no empty, "." or ".." component.
static bool safe_relpath(const char *p) {
    if (!*p || *p == '/') return false;
    const char *s = p;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return false;
        if (!e) break;
        s = e + 1;
        if (!*s) return false;
    }
    return true;
}

static bool is_hex64(const char *s) {
    if (strlen(s) != 64) return false;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

// Recursively lists the regular files under root as paths relative to it, sorted by bytes.
// Entries that are neither files nor directories are listed too (verify reports them).
typedef struct path_list {
    char **v;
    size_t n, cap;
} path_list;

static void path_list_free(path_list *l) {
    for (size_t i = 0; i < l->n; i++)
        anneal_free(l->v[i]);
    anneal_free(l->v);
    memset(l, 0, sizeof *l);
}

static bool path_list_add(path_list *l, char *p) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **v = anneal_realloc_array(l->v, cap, sizeof *v);
        if (!v) return false;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = p;
    return true;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static anneal_status walk(const char *root, const char *rel, path_list *out, path_list *dirs,
                          anneal_err *err) {
    char *dir = rel ? join(root, rel) : anneal_strndup(root, strlen(root));
    if (!dir) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", root);
    DIR *d = opendir(dir);
    if (!d) {
        anneal_status st =
            anneal_err_set(err, ANNEAL_ERR_IO, "%s: cannot list: %s", dir, strerror(errno));
        anneal_free(dir);
        return st;
    }
    anneal_status st = ANNEAL_OK;
    if (dirs && !path_list_add(dirs, anneal_strndup(dir, strlen(dir))))
        st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", dir);
    struct dirent *e;
    while (st == ANNEAL_OK && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char *r = rel ? join(rel, e->d_name) : anneal_strndup(e->d_name, strlen(e->d_name));
        char *full = r ? join(root, r) : NULL;
        struct stat sb;
        if (!r || !full) {
            st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", dir);
        } else if (lstat(full, &sb) != 0) {
            st = anneal_err_set(err, ANNEAL_ERR_IO, "%s: cannot stat: %s", full, strerror(errno));
        } else if (S_ISDIR(sb.st_mode)) {
            st = walk(root, r, out, dirs, err);
        } else if (path_list_add(out, r)) {
            r = NULL;
        } else {
            st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", dir);
        }
        anneal_free(r);
        anneal_free(full);
    }
    closedir(d);
    anneal_free(dir);
    if (st == ANNEAL_OK && !rel) qsort(out->v, out->n, sizeof *out->v, cmp_str);
    return st;
}

// SHA-256 and size of a file; with do_fsync also flushes it to disk.
static anneal_status hash_file(const char *path, bool do_fsync, uint8_t digest[32], uint64_t *size,
                               anneal_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return anneal_err_set(err, ANNEAL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t *buf = anneal_malloc(BUF_CAP);
    anneal_sha256 h;
    if (!buf || anneal_sha256_init(&h) != ANNEAL_OK) {
        anneal_free(buf);
        close(fd);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", path);
    }
    uint64_t total = 0;
    anneal_status st = ANNEAL_OK;
    for (;;) {
        ssize_t n = read(fd, buf, BUF_CAP);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            st = anneal_err_set(err, ANNEAL_ERR_IO, "%s: read failed at byte %" PRIu64 ": %s", path,
                                total, strerror(errno));
            break;
        }
        if (n == 0) break;
        anneal_sha256_update(&h, buf, (size_t)n);
        total += (uint64_t)n;
    }
    if (st == ANNEAL_OK && do_fsync && fsync(fd) != 0)
        st = anneal_err_set(err, ANNEAL_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    close(fd);
    anneal_free(buf);
    if (st) {
        anneal_sha256_free(&h);
        return st;
    }
    anneal_sha256_final(&h, digest);
    *size = total;
    return ANNEAL_OK;
}

// ---- buffered output files -------------------------------------------------------------

typedef struct outfile {
    int fd;
    char *path; // full path in the temporary directory
    uint8_t *buf;
    size_t len;
    uint64_t written;
} outfile;

static anneal_status mkdirs_under(const char *root, const char *rel, anneal_err *err) {
    // Creates every directory of rel's parent under root.
    char *p = join(root, rel);
    if (!p) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", root);
    size_t base = strlen(root) + 1;
    for (char *s = p + base; (s = strchr(s, '/')); s++) {
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            anneal_status st = anneal_err_set(err, ANNEAL_ERR_IO, "%s: cannot create directory: %s",
                                              p, strerror(errno));
            anneal_free(p);
            return st;
        }
        *s = '/';
    }
    anneal_free(p);
    return ANNEAL_OK;
}

static anneal_status outfile_open(outfile *f, const char *root, const char *rel, anneal_err *err) {
    memset(f, 0, sizeof *f);
    f->fd = -1;
    anneal_status st = mkdirs_under(root, rel, err);
    if (st) return st;
    f->path = join(root, rel);
    f->buf = anneal_malloc(BUF_CAP);
    if (!f->path || !f->buf) {
        anneal_free(f->path);
        anneal_free(f->buf);
        f->path = NULL;
        f->buf = NULL;
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", rel);
    }
    f->fd = open(f->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (f->fd < 0) {
        st = anneal_err_set(err, ANNEAL_ERR_IO, "%s: cannot create: %s", f->path, strerror(errno));
        anneal_free(f->path);
        anneal_free(f->buf);
        f->path = NULL;
        f->buf = NULL;
        return st;
    }
    return ANNEAL_OK;
}

static anneal_status outfile_flush(outfile *f, anneal_err *err) {
    const uint8_t *p = f->buf;
    size_t n = f->len;
    while (n > 0) {
        ssize_t w = write(f->fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0)
            return anneal_err_set(err, ANNEAL_ERR_IO, "%s: write failed at byte %" PRIu64 ": %s",
                                  f->path, f->written, strerror(errno));
        p += w;
        n -= (size_t)w;
        f->written += (uint64_t)w;
    }
    f->len = 0;
    return ANNEAL_OK;
}

static anneal_status outfile_write(outfile *f, const void *data, size_t n, anneal_err *err) {
    const uint8_t *p = data;
    while (n > 0) {
        if (f->len == BUF_CAP) {
            anneal_status st = outfile_flush(f, err);
            if (st) return st;
        }
        size_t k = BUF_CAP - f->len < n ? BUF_CAP - f->len : n;
        memcpy(f->buf + f->len, p, k);
        f->len += k;
        p += k;
        n -= k;
    }
    return ANNEAL_OK;
}

// Flushes and closes (data reaches the disk at commit, which fsyncs every file).
static anneal_status outfile_close(outfile *f, anneal_err *err) {
    if (f->fd < 0) return ANNEAL_OK;
    anneal_status st = outfile_flush(f, err);
    if (close(f->fd) != 0 && st == ANNEAL_OK)
        st = anneal_err_set(err, ANNEAL_ERR_IO, "%s: close failed: %s", f->path, strerror(errno));
    f->fd = -1;
    anneal_free(f->path);
    anneal_free(f->buf);
    f->path = NULL;
    f->buf = NULL;
    return st;
}

static void outfile_discard(outfile *f) {
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    anneal_free(f->path);
    anneal_free(f->buf);
    f->path = NULL;
    f->buf = NULL;
}

// ---- writer -------------------------------------------------------------------------------

struct anneal_dataset_file {
    anneal_dataset_writer *w;
    outfile f;
    anneal_dataset_file *next, *prev;
};

struct anneal_dataset_writer {
    char *outdir, *tmpdir, *step;
    unsigned flags;
    uint64_t docs_max_bytes;
    outfile docs, removed;
    uint32_t docs_index; // number of the open docs file
    uint64_t n_docs, n_removed;
    char *line; // one JSON line being built
    size_t line_len, line_cap;
    anneal_dataset_file *files; // open extra files
    bool committed, aborted;
    anneal_err err; // first failure; sticky
};

static anneal_status sticky(anneal_dataset_writer *w, anneal_err *err) {
    return anneal_err_set(err, w->err.status, "%s", w->err.msg);
}

anneal_status anneal_dataset_create(const char *outdir, const char *step, unsigned flags,
                                    anneal_dataset_writer **out, anneal_err *err) {
    *out = NULL;
    if (!step || !*step || strlen(step) > 64)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "dataset step name must be 1-64 "
                              "characters of [a-z0-9_-]");
    for (const char *s = step; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                  "dataset step name '%s' must be "
                                  "characters of [a-z0-9_-]",
                                  step);
    size_t n = outdir ? strlen(outdir) : 0;
    while (n > 1 && outdir[n - 1] == '/')
        n--;
    if (n == 0 || (n == 1 && outdir[0] == '/'))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "dataset output directory '%s' is "
                              "not usable",
                              outdir ? outdir : "");
    anneal_dataset_writer *w = anneal_calloc(1, sizeof *w);
    if (!w) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", outdir);
    w->docs.fd = w->removed.fd = -1;
    w->flags = flags;
    w->docs_max_bytes = ANNEAL_DATASET_DOCS_MAX_BYTES;
    w->outdir = anneal_strndup(outdir, n);
    w->step = anneal_strndup(step, strlen(step));
    w->tmpdir = anneal_malloc(n + 64);
    if (!w->outdir || !w->step || !w->tmpdir) {
        anneal_dataset_writer_free(w);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", outdir);
    }
    struct stat sb;
    if (lstat(w->outdir, &sb) == 0 && !(flags & ANNEAL_DATASET_REPLACE)) {
        anneal_status st =
            anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                           "%s: already exists (refusing "
                           "to overwrite it; replace it explicitly or choose another "
                           "output directory)",
                           w->outdir);
        anneal_dataset_writer_free(w);
        return st;
    }
    // The name says what it is: an interrupted run leaves "OUTDIR.tmp-*", never "OUTDIR".
    for (int attempt = 0;; attempt++) {
        uint64_t r = anneal_time_ns() ^ ((uint64_t)getpid() << 32) ^
                     (uint64_t)attempt * 0x9E3779B97F4A7C15ull;
        r = anneal_hash64(&r, sizeof r);
        snprintf(w->tmpdir, n + 64, "%s.tmp-%ld-%08" PRIx32, w->outdir, (long)getpid(),
                 (uint32_t)r);
        if (mkdir(w->tmpdir, 0755) == 0) break;
        if (errno != EEXIST || attempt == 100) {
            anneal_status st = anneal_err_set(err, ANNEAL_ERR_IO, "%s: cannot create directory: %s",
                                              w->tmpdir, strerror(errno));
            w->tmpdir[0] = 0;
            anneal_dataset_writer_free(w);
            return st;
        }
    }
    *out = w;
    return ANNEAL_OK;
}

void anneal_dataset_set_docs_max_bytes(anneal_dataset_writer *w, uint64_t max_bytes) {
    w->docs_max_bytes = max_bytes ? max_bytes : ANNEAL_DATASET_DOCS_MAX_BYTES;
}

const char *anneal_dataset_tmpdir(const anneal_dataset_writer *w) {
    return w->tmpdir;
}

static bool writable(anneal_dataset_writer *w, anneal_err *err, anneal_status *st) {
    if (w->err.status) {
        *st = sticky(w, err);
        return false;
    }
    if (w->committed || w->aborted) {
        *st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s: the dataset was already %s",
                             w->outdir, w->committed ? "committed" : "aborted");
        return false;
    }
    return true;
}

// ---- JSON lines -----------------------------------------------------------------------------

static bool line_reserve(anneal_dataset_writer *w, size_t more) {
    size_t need;
    if (!anneal_add_ok(w->line_len, more, &need)) return false;
    if (need <= w->line_cap) return true;
    size_t cap = w->line_cap ? w->line_cap : 4096;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = anneal_realloc(w->line, cap);
    if (!p) return false;
    w->line = p;
    w->line_cap = cap;
    return true;
}

static bool put(anneal_dataset_writer *w, const char *s, size_t n) {
    if (!line_reserve(w, n)) return false;
    memcpy(w->line + w->line_len, s, n);
    w->line_len += n;
    return true;
}

// A JSON string literal; invalid UTF-8 bytes become U+FFFD (as anneal_json_write_str).
// Reserves per 4 KiB of input (at most 6 output bytes per input byte), not for the whole text.
static bool put_str(anneal_dataset_writer *w, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    if (!put(w, "\"", 1)) return false;
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        size_t end = n - i > 4096 ? i + 4096 : n;
        if (!line_reserve(w, (end - i) * 6 + 16)) return false;
        char *o = w->line + w->line_len;
        while (i < end) {
            uint8_t c = p[i];
            if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
                *o++ = (char)c;
                i++;
                continue;
            }
            if (c < 0x80) {
                *o++ = '\\';
                switch (c) {
                case '"':
                    *o++ = '"';
                    break;
                case '\\':
                    *o++ = '\\';
                    break;
                case '\n':
                    *o++ = 'n';
                    break;
                case '\r':
                    *o++ = 'r';
                    break;
                case '\t':
                    *o++ = 't';
                    break;
                default:
                    *o++ = 'u';
                    *o++ = '0';
                    *o++ = '0';
                    *o++ = hex[c >> 4];
                    *o++ = hex[c & 15];
                }
                i++;
                continue;
            }
            uint32_t cp;
            size_t k = anneal_utf8_decode(p + i, n - i, &cp); // may end up to 3 bytes past `end`
            if (k == 0) {
                memcpy(o, "\\ufffd", 6);
                o += 6;
                i++;
            } else {
                memcpy(o, p + i, k);
                o += k;
                i += k;
            }
        }
        w->line_len = (size_t)(o - w->line);
    }
    return put(w, "\"", 1);
}

// A caller's JSON value on one line: raw line breaks can only be whitespace between tokens
// in valid JSON, so they become spaces.
static bool put_raw_json(anneal_dataset_writer *w, const char *s, size_t n) {
    size_t start = w->line_len;
    if (!put(w, s, n)) return false;
    for (size_t i = start; i < w->line_len; i++)
        if (w->line[i] == '\n' || w->line[i] == '\r') w->line[i] = ' ';
    return true;
}

static anneal_status doc_line(anneal_dataset_writer *w, const anneal_doc *doc, bool with_text,
                              const char *reason, const char *detail, anneal_err *err) {
    w->line_len = 0;
    const char *src = doc->source ? doc->source : "";
    bool ok =
        put(w, "{\"id\":", 6) && put_str(w, doc->id ? doc->id : "", doc->id ? doc->id_len : 0);
    if (ok && with_text)
        ok = put(w, ",\"text\":", 8) &&
             put_str(w, doc->text ? doc->text : "", doc->text ? doc->len : 0);
    ok = ok && put(w, ",\"source\":", 10) && put_str(w, src, strlen(src));
    if (with_text) {
        ok = ok && put(w, ",\"meta\":", 8) &&
             (doc->meta && doc->meta_len ? put_raw_json(w, doc->meta, doc->meta_len)
                                         : put(w, "{}", 2));
    } else {
        ok = ok && put(w, ",\"reason\":", 10) && put_str(w, reason, strlen(reason)) &&
             put(w, ",\"detail\":", 10) &&
             (detail && *detail ? put_raw_json(w, detail, strlen(detail)) : put(w, "null", 4));
    }
    ok = ok && put(w, "}\n", 2);
    if (!ok)
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory for a document line",
                              w->outdir);
    return ANNEAL_OK;
}

anneal_status anneal_dataset_write_doc(anneal_dataset_writer *w, const anneal_doc *doc,
                                       anneal_err *err) {
    anneal_status st;
    if (!writable(w, err, &st)) return st;
    st = doc_line(w, doc, true, NULL, NULL, &w->err);
    // A new file before a line that would take the open one past the limit (never empty).
    if (!st && w->docs.fd >= 0 && w->docs.written + w->docs.len > 0 &&
        w->docs.written + w->docs.len + w->line_len > w->docs_max_bytes) {
        st = outfile_close(&w->docs, &w->err);
        w->docs_index++;
    }
    if (!st && w->docs.fd < 0) {
        char rel[32];
        snprintf(rel, sizeof rel, "docs/%05" PRIu32 ".jsonl", w->docs_index);
        st = outfile_open(&w->docs, w->tmpdir, rel, &w->err);
    }
    if (!st) st = outfile_write(&w->docs, w->line, w->line_len, &w->err);
    if (st) return sticky(w, err);
    w->n_docs++;
    return ANNEAL_OK;
}

anneal_status anneal_dataset_write_removed(anneal_dataset_writer *w, const anneal_doc *doc,
                                           const char *reason, const char *detail_json,
                                           anneal_err *err) {
    anneal_status st;
    if (!writable(w, err, &st)) return st;
    if (!reason || !*reason)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s: a removed document needs a reason",
                              w->outdir);
    st = doc_line(w, doc, false, reason, detail_json, &w->err);
    if (!st && w->removed.fd < 0)
        st = outfile_open(&w->removed, w->tmpdir, "removed.jsonl", &w->err);
    if (!st) st = outfile_write(&w->removed, w->line, w->line_len, &w->err);
    if (st) return sticky(w, err);
    w->n_removed++;
    return ANNEAL_OK;
}

void anneal_dataset_stats(const anneal_dataset_writer *w, uint64_t *docs, uint64_t *removed) {
    if (docs) *docs = w->n_docs;
    if (removed) *removed = w->n_removed;
}

static bool reserved_path(const char *rel) {
    return strcmp(rel, MANIFEST) == 0 || strcmp(rel, "removed.jsonl") == 0 ||
           strncmp(rel, "docs/", 5) == 0 || strcmp(rel, "docs") == 0;
}

anneal_status anneal_dataset_open_file(anneal_dataset_writer *w, const char *relpath,
                                       anneal_dataset_file **out, anneal_err *err) {
    *out = NULL;
    anneal_status st;
    if (!writable(w, err, &st)) return st;
    if (!relpath || !safe_relpath(relpath) || reserved_path(relpath))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "%s: '%s' is not a usable output path "
                              "(relative, no '.' or '..' parts, not manifest.json, removed.jsonl "
                              "or under docs/)",
                              w->outdir, relpath ? relpath : "");
    anneal_dataset_file *f = anneal_calloc(1, sizeof *f);
    if (!f) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", w->outdir);
    st = outfile_open(&f->f, w->tmpdir, relpath, err);
    if (st) {
        anneal_free(f);
        return st;
    }
    f->w = w;
    f->next = w->files;
    if (w->files) w->files->prev = f;
    w->files = f;
    *out = f;
    return ANNEAL_OK;
}

anneal_status anneal_dataset_file_write(anneal_dataset_file *f, const void *data, size_t n,
                                        anneal_err *err) {
    anneal_dataset_writer *w = f->w;
    if (w->err.status) return sticky(w, err);
    if (outfile_write(&f->f, data, n, &w->err)) return sticky(w, err);
    return ANNEAL_OK;
}

static void unlink_file(anneal_dataset_file *f) {
    anneal_dataset_writer *w = f->w;
    if (f->prev)
        f->prev->next = f->next;
    else
        w->files = f->next;
    if (f->next) f->next->prev = f->prev;
}

anneal_status anneal_dataset_file_close(anneal_dataset_file *f, anneal_err *err) {
    if (!f) return ANNEAL_OK;
    anneal_dataset_writer *w = f->w;
    unlink_file(f);
    anneal_status st = w->err.status ? ANNEAL_OK : outfile_close(&f->f, &w->err);
    outfile_discard(&f->f);
    anneal_free(f);
    if (st || w->err.status) return sticky(w, err);
    return ANNEAL_OK;
}

anneal_status anneal_dataset_write_file(anneal_dataset_writer *w, const char *relpath,
                                        const void *data, size_t n, anneal_err *err) {
    anneal_dataset_file *f = NULL;
    anneal_status st = anneal_dataset_open_file(w, relpath, &f, err);
    if (st) return st;
    st = anneal_dataset_file_write(f, data, n, err);
    anneal_status st2 = anneal_dataset_file_close(f, err);
    return st ? st : st2;
}

anneal_status anneal_dataset_mkdir(anneal_dataset_writer *w, const char *relpath, char *path,
                                   size_t cap, anneal_err *err) {
    if (cap) path[0] = 0;
    anneal_status st;
    if (!writable(w, err, &st)) return st;
    if (!relpath || !safe_relpath(relpath) || reserved_path(relpath))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "%s: '%s' is not a usable output "
                              "directory",
                              w->outdir, relpath ? relpath : "");
    int n = snprintf(path, cap, "%s/%s", w->tmpdir, relpath);
    if (n < 0 || (size_t)n >= cap) {
        if (cap) path[0] = 0;
        return anneal_err_set(err, ANNEAL_ERR_RANGE,
                              "%s: the path of '%s' needs %d bytes, the "
                              "buffer has %zu",
                              w->outdir, relpath, n + 1, cap);
    }
    char *probe = join(relpath, "x");
    if (!probe) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", w->outdir);
    st = mkdirs_under(w->tmpdir, probe, err);
    anneal_free(probe);
    if (st) path[0] = 0;
    return st;
}

// ---- commit ---------------------------------------------------------------------------------

static json_t *file_entry(const char *path, uint64_t bytes, const uint8_t digest[32]) {
    char hex[65];
    anneal_hex(digest, 32, hex);
    json_t *o = json_object();
    if (!o) return NULL;
    if (json_object_set_new(o, "path", json_string(path)) ||
        json_object_set_new(o, "bytes", json_integer((json_int_t)bytes)) ||
        json_object_set_new(o, "sha256", json_string(hex))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static anneal_status parse_object(const char *text, const char *what, const char *outdir,
                                  json_t **out, anneal_err *err) {
    if (!text) {
        *out = json_object();
        return *out ? ANNEAL_OK : anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    }
    char label[64];
    snprintf(label, sizeof label, "dataset %s", what);
    *out = anneal_json_parse(text, strlen(text), label, err);
    if (!*out) return ANNEAL_ERR_INVALID_ARG;
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s: the %s must be a JSON object",
                              outdir, what);
    }
    return ANNEAL_OK;
}

static anneal_status build_manifest(anneal_dataset_writer *w, const anneal_manifest_info *info,
                                    const path_list *files, char **text, anneal_err *err) {
    json_t *m = json_object(), *inputs = json_array(), *outputs = json_array();
    json_t *config = NULL, *counts = NULL;
    anneal_status st = ANNEAL_OK;
    if (!m || !inputs || !outputs) st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    if (!st) st = parse_object(info ? info->config_json : NULL, "config", w->outdir, &config, err);
    if (!st) st = parse_object(info ? info->counts_json : NULL, "counts", w->outdir, &counts, err);
    if (!st && info && info->parent && !is_hex64(info->parent))
        st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                            "%s: parent version '%s' is not 64 "
                            "lowercase hex digits",
                            w->outdir, info->parent);
    for (size_t i = 0; !st && info && i < info->n_inputs; i++) {
        const anneal_manifest_input *in = &info->inputs[i];
        uint8_t digest[32];
        uint64_t bytes = in->bytes;
        if (!in->path || !*in->path) {
            st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s: input %zu has no path", w->outdir,
                                i);
            break;
        }
        if (in->hashed)
            memcpy(digest, in->sha256, 32);
        else
            st = hash_file(in->path, false, digest, &bytes, err);
        json_t *e = st ? NULL : file_entry(in->path, bytes, digest);
        if (!st && (!e || json_array_append_new(inputs, e)))
            st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; !st && i < files->n; i++) {
        uint8_t digest[32];
        uint64_t bytes;
        char *full = join(w->tmpdir, files->v[i]);
        if (!full) st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
        if (!st) st = hash_file(full, true, digest, &bytes, err);
        anneal_free(full);
        json_t *e = st ? NULL : file_entry(files->v[i], bytes, digest);
        if (!st && (!e || json_array_append_new(outputs, e)))
            st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    }
    if (!st) {
        bool bad =
            json_object_set_new(m, "format", json_string("anneal-dataset")) ||
            json_object_set_new(m, "format_version", json_integer(ANNEAL_DATASET_FORMAT_VERSION)) ||
            json_object_set_new(m, "step", json_string(w->step)) ||
            json_object_set_new(m, "tool", json_string("anneal " ANNEAL_VERSION)) ||
            json_object_set_new(m, "parent",
                                info && info->parent ? json_string(info->parent) : json_null()) ||
            json_object_set(m, "inputs", inputs) || json_object_set(m, "config", config) ||
            json_object_set(m, "counts", counts) || json_object_set(m, "outputs", outputs);
        char *s = bad ? NULL : json_dumps(m, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (!s) {
            st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
        } else {
            size_t n = strlen(s);
            *text = anneal_malloc(n + 2);
            if (*text) {
                memcpy(*text, s, n);
                memcpy(*text + n, "\n", 2);
            } else {
                st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
            }
            free(s);
        }
    }
    json_decref(m);
    json_decref(inputs);
    json_decref(outputs);
    json_decref(config);
    json_decref(counts);
    return st;
}

// Puts tmp at outdir. Without replace, an existing outdir is refused; with it, the old
// directory is removed only once the new one is in place.
static anneal_status swap_into_place(anneal_dataset_writer *w, anneal_err *err) {
    struct stat sb;
    bool exists = lstat(w->outdir, &sb) == 0;
    if (exists && !(w->flags & ANNEAL_DATASET_REPLACE))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "%s: already exists (refusing to "
                              "overwrite it)",
                              w->outdir);
    if (!exists) {
        if (renameat2(AT_FDCWD, w->tmpdir, AT_FDCWD, w->outdir, RENAME_NOREPLACE) == 0)
            return ANNEAL_OK;
        if (errno != EINVAL && errno != ENOSYS)
            return anneal_err_set(err, ANNEAL_ERR_IO, "%s: cannot rename %s into place: %s",
                                  w->outdir, w->tmpdir, strerror(errno));
        if (rename(w->tmpdir, w->outdir) == 0) return ANNEAL_OK;
        return anneal_err_set(err, ANNEAL_ERR_IO, "%s: cannot rename %s into place: %s", w->outdir,
                              w->tmpdir, strerror(errno));
    }
    // Replacing: only a dataset directory (one with a manifest), never an arbitrary one.
    char *man = join(w->outdir, MANIFEST);
    bool is_dataset = man && S_ISDIR(sb.st_mode) && access(man, F_OK) == 0;
    anneal_free(man);
    if (!is_dataset)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "%s: exists and is not a dataset "
                              "directory (no manifest.json), so it is not replaced",
                              w->outdir);
    if (renameat2(AT_FDCWD, w->tmpdir, AT_FDCWD, w->outdir, RENAME_EXCHANGE) == 0) {
        remove_tree(w->tmpdir); // now holds the old dataset
        return ANNEAL_OK;
    }
    if (errno != EINVAL && errno != ENOSYS)
        return anneal_err_set(err, ANNEAL_ERR_IO, "%s: cannot swap in %s: %s", w->outdir, w->tmpdir,
                              strerror(errno));
    // No atomic exchange on this file system: move the old one aside first.
    size_t n = strlen(w->outdir) + 64;
    char *old = anneal_malloc(n);
    if (!old) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    snprintf(old, n, "%s.old-%ld", w->outdir, (long)getpid());
    anneal_status st = ANNEAL_OK;
    if (rename(w->outdir, old) != 0) {
        st = anneal_err_set(err, ANNEAL_ERR_IO, "%s: cannot move aside to %s: %s", w->outdir, old,
                            strerror(errno));
    } else if (rename(w->tmpdir, w->outdir) != 0) {
        st = anneal_err_set(err, ANNEAL_ERR_IO, "%s: cannot rename %s into place: %s", w->outdir,
                            w->tmpdir, strerror(errno));
        rename(old, w->outdir); // put the old one back
    } else {
        remove_tree(old);
    }
    anneal_free(old);
    return st;
}

anneal_status anneal_dataset_commit(anneal_dataset_writer *w, const anneal_manifest_info *info,
                                    char version_hex[65], anneal_err *err) {
    if (version_hex) version_hex[0] = 0;
    anneal_status st;
    if (!writable(w, err, &st)) {
        if (!w->committed) anneal_dataset_abort(w);
        return st;
    }
    if (w->files) {
        anneal_err_set(&w->err, ANNEAL_ERR_INVALID_ARG,
                       "%s: an output file is still open "
                       "(close it before commit)",
                       w->outdir);
        st = sticky(w, err);
        anneal_dataset_abort(w);
        return st;
    }
    st = outfile_close(&w->docs, &w->err);
    if (!st) st = outfile_close(&w->removed, &w->err);
    path_list files = {0}, dirs = {0};
    char *text = NULL;
    if (!st) st = walk(w->tmpdir, NULL, &files, &dirs, &w->err);
    if (!st) st = build_manifest(w, info, &files, &text, &w->err);
    if (!st) {
        char *mp = join(w->tmpdir, MANIFEST);
        outfile mf;
        st = mp ? outfile_open(&mf, w->tmpdir, MANIFEST, &w->err)
                : anneal_err_set(&w->err, ANNEAL_ERR_NOMEM, "out of memory");
        if (!st) {
            st = outfile_write(&mf, text, strlen(text), &w->err);
            if (!st) st = outfile_flush(&mf, &w->err);
            if (!st && fsync(mf.fd) != 0)
                st = anneal_err_set(&w->err, ANNEAL_ERR_IO, "%s: fsync failed: %s", mp,
                                    strerror(errno));
            if (st)
                outfile_discard(&mf);
            else
                st = outfile_close(&mf, &w->err);
        }
        anneal_free(mp);
    }
    for (size_t i = 0; !st && i < dirs.n; i++)
        fsync_path(dirs.v[i]);
    uint8_t digest[32];
    if (!st && anneal_sha256_buf(text, strlen(text), digest) != ANNEAL_OK)
        st = anneal_err_set(&w->err, ANNEAL_ERR_NOMEM, "out of memory");
    if (!st) st = swap_into_place(w, &w->err);
    path_list_free(&files);
    path_list_free(&dirs);
    anneal_free(text);
    if (st) {
        st = sticky(w, err);
        anneal_dataset_abort(w);
        return st;
    }
    fsync_parent(w->outdir);
    w->committed = true;
    if (version_hex) anneal_hex(digest, 32, version_hex);
    return ANNEAL_OK;
}

void anneal_dataset_abort(anneal_dataset_writer *w) {
    if (!w || w->committed || w->aborted) return;
    while (w->files) {
        anneal_dataset_file *f = w->files;
        unlink_file(f);
        outfile_discard(&f->f);
        anneal_free(f);
    }
    outfile_discard(&w->docs);
    outfile_discard(&w->removed);
    if (w->tmpdir && w->tmpdir[0]) remove_tree(w->tmpdir);
    w->aborted = true;
}

void anneal_dataset_writer_free(anneal_dataset_writer *w) {
    if (!w) return;
    anneal_dataset_abort(w);
    anneal_free(w->outdir);
    anneal_free(w->tmpdir);
    anneal_free(w->step);
    anneal_free(w->line);
    anneal_free(w);
}

// ---- reading back ---------------------------------------------------------------------------

anneal_status anneal_dataset_version(const char *dir, char hex[65], anneal_err *err) {
    hex[0] = 0;
    char *p = join(dir, MANIFEST);
    if (!p) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    struct stat sb;
    anneal_status st;
    if (stat(p, &sb) != 0) {
        st = anneal_err_set(err, errno == ENOENT ? ANNEAL_ERR_NOT_FOUND : ANNEAL_ERR_IO,
                            "%s: no readable manifest.json (not a dataset directory, or an "
                            "interrupted run): %s",
                            dir, strerror(errno));
    } else {
        uint8_t digest[32];
        uint64_t bytes;
        st = hash_file(p, false, digest, &bytes, err);
        if (!st) anneal_hex(digest, 32, hex);
    }
    anneal_free(p);
    return st;
}

const char *anneal_dataset_problem_name(anneal_dataset_problem_kind kind) {
    switch (kind) {
    case ANNEAL_DSP_MISSING:
        return "missing";
    case ANNEAL_DSP_EXTRA:
        return "extra";
    case ANNEAL_DSP_CHANGED:
        return "changed";
    case ANNEAL_DSP_INPUT_MISSING:
        return "input_missing";
    case ANNEAL_DSP_INPUT_CHANGED:
        return "input_changed";
    }
    return "?";
}

static anneal_status add_problem(anneal_dataset_report *r, anneal_dataset_problem_kind kind,
                                 const char *path, const char *detail, anneal_err *err) {
    anneal_dataset_problem *p =
        anneal_realloc_array(r->problems, r->n_problems + 1, sizeof *r->problems);
    if (!p) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    r->problems = p;
    p = &r->problems[r->n_problems];
    p->kind = kind;
    p->path = anneal_strndup(path, strlen(path));
    p->detail = anneal_strndup(detail, strlen(detail));
    if (!p->path || !p->detail) {
        anneal_free(p->path);
        anneal_free(p->detail);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    }
    r->n_problems++;
    if (kind != ANNEAL_DSP_INPUT_MISSING) r->ok = false;
    return ANNEAL_OK;
}

void anneal_dataset_report_free(anneal_dataset_report *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_problems; i++) {
        anneal_free(r->problems[i].path);
        anneal_free(r->problems[i].detail);
    }
    anneal_free(r->problems);
    anneal_free(r->step);
    memset(r, 0, sizeof *r);
}

#define MERR(...) anneal_err_set(err, ANNEAL_ERR_FORMAT, __VA_ARGS__)

static bool only_keys(json_t *o, const char *const *keys, size_t n, const char **bad) {
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        size_t i = 0;
        while (i < n && strcmp(k, keys[i]) != 0)
            i++;
        if (i == n) {
            *bad = k;
            return false;
        }
    }
    return true;
}

// One {path, bytes, sha256} entry; `outputs` also requires a safe relative path.
static anneal_status check_entry(const char *mp, const char *list, size_t i, json_t *e, bool output,
                                 anneal_err *err) {
    static const char *const keys[] = {"path", "bytes", "sha256"};
    const char *bad;
    if (!json_is_object(e)) return MERR("%s: key '%s[%zu]': must be an object", mp, list, i);
    if (!only_keys(e, keys, 3, &bad))
        return MERR("%s: key '%s[%zu].%s': unknown key", mp, list, i, bad);
    json_t *p = json_object_get(e, "path"), *b = json_object_get(e, "bytes"),
           *h = json_object_get(e, "sha256");
    if (!json_is_string(p) || !*json_string_value(p))
        return MERR("%s: key '%s[%zu].path': must be a non-empty string", mp, list, i);
    if (output &&
        (!safe_relpath(json_string_value(p)) || strcmp(json_string_value(p), MANIFEST) == 0))
        return MERR("%s: key '%s[%zu].path': '%s' is not a relative path inside the dataset", mp,
                    list, i, json_string_value(p));
    if (!json_is_integer(b) || json_integer_value(b) < 0)
        return MERR("%s: key '%s[%zu].bytes': must be an integer >= 0", mp, list, i);
    if (!json_is_string(h) || !is_hex64(json_string_value(h)))
        return MERR("%s: key '%s[%zu].sha256': must be 64 lowercase hex digits", mp, list, i);
    return ANNEAL_OK;
}

static anneal_status check_manifest(const char *mp, json_t *m, anneal_err *err) {
    static const char *const keys[] = {"format", "format_version", "step",   "tool",   "parent",
                                       "inputs", "config",         "counts", "outputs"};
    if (!json_is_object(m)) return MERR("%s: the manifest must be a JSON object", mp);
    const char *bad;
    if (!only_keys(m, keys, 9, &bad)) return MERR("%s: key '%s': unknown key", mp, bad);
    for (size_t i = 0; i < 9; i++)
        if (!json_object_get(m, keys[i])) return MERR("%s: key '%s': missing", mp, keys[i]);
    json_t *v = json_object_get(m, "format");
    if (!json_is_string(v) || strcmp(json_string_value(v), "anneal-dataset") != 0)
        return MERR("%s: key 'format': must be \"anneal-dataset\"", mp);
    v = json_object_get(m, "format_version");
    if (!json_is_integer(v)) return MERR("%s: key 'format_version': must be an integer", mp);
    if (json_integer_value(v) != ANNEAL_DATASET_FORMAT_VERSION)
        return anneal_err_set(err, ANNEAL_ERR_UNSUPPORTED,
                              "%s: key 'format_version': version %" JSON_INTEGER_FORMAT
                              " is not supported (need %d)",
                              mp, json_integer_value(v), ANNEAL_DATASET_FORMAT_VERSION);
    if (!json_is_string(json_object_get(m, "step")))
        return MERR("%s: key 'step': must be a string", mp);
    if (!json_is_string(json_object_get(m, "tool")))
        return MERR("%s: key 'tool': must be a string", mp);
    v = json_object_get(m, "parent");
    if (!json_is_null(v) && !(json_is_string(v) && is_hex64(json_string_value(v))))
        return MERR("%s: key 'parent': must be null or 64 lowercase hex digits", mp);
    if (!json_is_object(json_object_get(m, "config")))
        return MERR("%s: key 'config': must be an object", mp);
    if (!json_is_object(json_object_get(m, "counts")))
        return MERR("%s: key 'counts': must be an object", mp);
    static const char *const lists[2] = {"inputs", "outputs"};
    for (int l = 0; l < 2; l++) {
        json_t *a = json_object_get(m, lists[l]);
        if (!json_is_array(a)) return MERR("%s: key '%s': must be an array", mp, lists[l]);
        size_t i;
        json_t *e;
        const char *prev = NULL;
        json_array_foreach(a, i, e) {
            anneal_status st = check_entry(mp, lists[l], i, e, l == 1, err);
            if (st) return st;
            const char *p = json_string_value(json_object_get(e, "path"));
            if (l == 1 && prev && strcmp(prev, p) >= 0)
                return MERR("%s: key 'outputs[%zu].path': '%s' is not after '%s' (outputs are "
                            "sorted by path, without duplicates)",
                            mp, i, p, prev);
            prev = p;
        }
    }
    return ANNEAL_OK;
}

// Compares a file with its manifest entry; *why is set when they differ, "" when equal,
// NULL when the file does not exist.
static anneal_status compare_file(const char *path, json_t *e, char *why, size_t cap, bool *missing,
                                  anneal_err *err) {
    why[0] = 0;
    *missing = false;
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            *missing = true;
            return ANNEAL_OK;
        }
        return anneal_err_set(err, ANNEAL_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    }
    uint64_t want_bytes = (uint64_t)json_integer_value(json_object_get(e, "bytes"));
    if (!S_ISREG(sb.st_mode)) {
        snprintf(why, cap, "not a regular file");
        return ANNEAL_OK;
    }
    if ((uint64_t)sb.st_size != want_bytes) {
        snprintf(why, cap, "size is %" PRIu64 " bytes, the manifest says %" PRIu64,
                 (uint64_t)sb.st_size, want_bytes);
        return ANNEAL_OK;
    }
    uint8_t digest[32];
    uint64_t bytes;
    anneal_status st = hash_file(path, false, digest, &bytes, err);
    if (st) return st;
    char hex[65];
    anneal_hex(digest, 32, hex);
    const char *want = json_string_value(json_object_get(e, "sha256"));
    if (strcmp(hex, want) != 0)
        snprintf(why, cap, "SHA-256 is %.16s..., the manifest says %.16s...", hex, want);
    return ANNEAL_OK;
}

anneal_status anneal_dataset_verify(const char *dir, anneal_dataset_report *r, anneal_err *err) {
    memset(r, 0, sizeof *r);
    r->ok = true;
    char *mp = join(dir, MANIFEST);
    if (!mp) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    char *text = NULL;
    size_t len = 0;
    anneal_status st;
    struct stat sb;
    if (stat(mp, &sb) != 0) {
        st = anneal_err_set(err, errno == ENOENT ? ANNEAL_ERR_NOT_FOUND : ANNEAL_ERR_IO,
                            "%s: no readable manifest.json (not a dataset directory, or an "
                            "interrupted run): %s",
                            dir, strerror(errno));
        anneal_free(mp);
        return st;
    }
    st = anneal_read_file(mp, MANIFEST_MAX, &text, &len, err);
    json_t *m = st ? NULL : anneal_json_parse(text, len, mp, err);
    if (!st && !m) st = ANNEAL_ERR_FORMAT;
    if (!st) st = check_manifest(mp, m, err);
    if (!st) {
        uint8_t digest[32];
        if (anneal_sha256_buf(text, len, digest) != ANNEAL_OK)
            st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
        anneal_hex(digest, 32, r->version);
        const char *step = json_string_value(json_object_get(m, "step"));
        r->step = anneal_strndup(step, strlen(step));
        if (!r->step) st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    }
    json_t *outputs = st ? NULL : json_object_get(m, "outputs");
    json_t *inputs = st ? NULL : json_object_get(m, "inputs");
    char why[256];
    size_t i;
    json_t *e;
    if (!st) {
        r->n_outputs = json_array_size(outputs);
        r->n_inputs = json_array_size(inputs);
        json_array_foreach(outputs, i, e) {
            const char *rel = json_string_value(json_object_get(e, "path"));
            char *full = join(dir, rel);
            bool missing;
            st = full ? compare_file(full, e, why, sizeof why, &missing, err)
                      : anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
            anneal_free(full);
            if (!st && missing)
                st = add_problem(r, ANNEAL_DSP_MISSING, rel,
                                 "listed in the manifest but not present", err);
            else if (!st && why[0])
                st = add_problem(r, ANNEAL_DSP_CHANGED, rel, why, err);
            if (st) break;
        }
    }
    path_list files = {0};
    if (!st) st = walk(dir, NULL, &files, NULL, err);
    for (size_t k = 0; !st && k < files.n; k++) {
        if (strcmp(files.v[k], MANIFEST) == 0) continue;
        // outputs are sorted: binary search
        size_t lo = 0, hi = json_array_size(outputs);
        bool found = false;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            int c = strcmp(json_string_value(json_object_get(json_array_get(outputs, mid), "path")),
                           files.v[k]);
            if (c == 0) {
                found = true;
                break;
            }
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (!found)
            st = add_problem(r, ANNEAL_DSP_EXTRA, files.v[k], "present but not in the manifest",
                             err);
    }
    path_list_free(&files);
    if (!st) {
        json_array_foreach(inputs, i, e) {
            const char *p = json_string_value(json_object_get(e, "path"));
            bool missing;
            st = compare_file(p, e, why, sizeof why, &missing, err);
            if (!st && missing)
                st = add_problem(r, ANNEAL_DSP_INPUT_MISSING, p, "no longer present (not checked)",
                                 err);
            else if (!st && why[0])
                st = add_problem(r, ANNEAL_DSP_INPUT_CHANGED, p, why, err);
            if (st) break;
        }
    }
    json_decref(m);
    anneal_free(text);
    anneal_free(mp);
    if (st) {
        anneal_dataset_report_free(r);
        r->ok = false;
    }
    return st;
}
