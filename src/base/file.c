// Files: read-only mmap, whole-file reads with a cap, and crash-safe atomic writes.
#include "anneal/base.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

anneal_status anneal_map_file(const char *path, anneal_map *out, anneal_err *err) {
    out->data = NULL;
    out->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return anneal_err_set(err, ANNEAL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return anneal_err_set(err, ANNEAL_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return anneal_err_set(err, ANNEAL_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return ANNEAL_OK;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return anneal_err_set(err, ANNEAL_ERR_IO, "%s: cannot mmap: %s", path, strerror(e));
    out->data = p;
    out->size = (size_t)st.st_size;
    return ANNEAL_OK;
}

void anneal_unmap(anneal_map *m) {
    if (!m) return;
    if (m->data) munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

anneal_status anneal_read_file(const char *path, size_t max_size, char **data, size_t *size,
                               anneal_err *err) {
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return anneal_err_set(err, ANNEAL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    // Reads up to max_size + 1 bytes: one byte past the cap proves the file is too big.
    size_t cap = max_size < 4096 ? max_size + 1 : 4096, n = 0;
    char *buf = anneal_malloc(cap + 1);
    anneal_status st = ANNEAL_OK;
    while (buf) {
        if (n == cap) {
            size_t ncap = cap > max_size / 2 ? max_size + 1 : cap * 2;
            char *nb = anneal_realloc(buf, ncap + 1);
            if (!nb) {
                anneal_free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap = ncap;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n > max_size) {
            st = anneal_err_set(err, ANNEAL_ERR_LIMIT, "%s: larger than the %zu-byte limit", path, max_size);
            break;
        }
        if (r == 0) {
            if (ferror(f)) st = anneal_err_set(err, ANNEAL_ERR_IO, "%s: read failed at byte %zu", path, n);
            break;
        }
    }
    fclose(f);
    if (!buf) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory reading", path);
    if (st != ANNEAL_OK) {
        anneal_free(buf);
        return st;
    }
    buf[n] = '\0';
    *data = buf;
    *size = n;
    return ANNEAL_OK;
}

anneal_status anneal_atomic_open(anneal_atomic_file *f, const char *path, anneal_err *err) {
    memset(f, 0, sizeof *f);
    f->fd = -1;
    size_t n = strlen(path);
    f->path = anneal_strndup(path, n);
    f->tmp_path = anneal_malloc(n + 32);
    if (!f->path || !f->tmp_path) {
        anneal_atomic_abort(f);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(f->tmp_path, n + 32, "%s.tmp.%ld", path, (long)getpid());
    f->fd = open(f->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f->fd < 0) {
        int e = errno;
        anneal_err_set(err, ANNEAL_ERR_IO, "%s: cannot create: %s", f->tmp_path, strerror(e));
        anneal_atomic_abort(f);
        return ANNEAL_ERR_IO;
    }
    return ANNEAL_OK;
}

anneal_status anneal_atomic_write(anneal_atomic_file *f, const void *data, size_t size,
                                  anneal_err *err) {
    const uint8_t *p = data;
    while (size > 0) {
        ssize_t w = write(f->fd, p, size);
        if (w < 0) {
            if (errno == EINTR) continue;
            return anneal_err_set(err, ANNEAL_ERR_IO, "%s: write failed at byte %llu: %s",
                                  f->tmp_path, (unsigned long long)f->written, strerror(errno));
        }
        p += w;
        size -= (size_t)w;
        f->written += (uint64_t)w;
    }
    return ANNEAL_OK;
}

static void fsync_dir_of(const char *path) {
    char *copy = anneal_strndup(path, strlen(path));
    if (!copy) return;
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    anneal_free(copy);
}

anneal_status anneal_atomic_commit(anneal_atomic_file *f, anneal_err *err) {
    anneal_status st = ANNEAL_OK;
    if (fsync(f->fd) != 0)
        st = anneal_err_set(err, ANNEAL_ERR_IO, "%s: fsync failed: %s", f->tmp_path, strerror(errno));
    if (close(f->fd) != 0 && st == ANNEAL_OK)
        st = anneal_err_set(err, ANNEAL_ERR_IO, "%s: close failed: %s", f->tmp_path, strerror(errno));
    f->fd = -1;
    if (st == ANNEAL_OK && rename(f->tmp_path, f->path) != 0)
        st = anneal_err_set(err, ANNEAL_ERR_IO, "%s: cannot rename to %s: %s", f->tmp_path, f->path,
                            strerror(errno));
    if (st != ANNEAL_OK) {
        anneal_atomic_abort(f);
        return st;
    }
    fsync_dir_of(f->path);
    anneal_free(f->path);
    anneal_free(f->tmp_path);
    f->path = f->tmp_path = NULL;
    return ANNEAL_OK;
}

void anneal_atomic_abort(anneal_atomic_file *f) {
    if (!f) return;
    if (f->fd > 0) close(f->fd);
    f->fd = -1;
    if (f->tmp_path) unlink(f->tmp_path);
    anneal_free(f->path);
    anneal_free(f->tmp_path);
    f->path = f->tmp_path = NULL;
}

anneal_status anneal_write_file_atomic(const char *path, const void *data, size_t size,
                                       anneal_err *err) {
    anneal_atomic_file f;
    anneal_status st = anneal_atomic_open(&f, path, err);
    if (st != ANNEAL_OK) return st;
    st = anneal_atomic_write(&f, data, size, err);
    if (st != ANNEAL_OK) {
        anneal_atomic_abort(&f);
        return st;
    }
    return anneal_atomic_commit(&f, err);
}
