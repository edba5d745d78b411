// Checkpoints: DIR/ckpt-NNNNNNNN/{model.gguf, optim.bin} and DIR/latest. The model is an F32
// GGUF the engine loads; optim.bin holds AdamW's moments and the loop's state with a
// magic, a version, the SHA-256 of the model file it belongs to and a SHA-256 of itself.
// Both files are written atomically, then `latest` is replaced atomically, so a crash at
// any moment leaves the previous checkpoint identifiable and intact.
#include "train_internal.h"
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define OPT_MAGIC "ANNLOPT\0"
#define OPT_VERSION 1u
#define HDR_BYTES 128

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

// Header layout (little-endian): magic[8], u32 version, u32 0, i64 step, u64 rng,
// u64 batches drawn, u64 n_params, i64 adam step, u32 beta1, beta2, eps, wd (f32 bits),
// u8 model_sha256[32], zero padding to HDR_BYTES; then m[n_params], v[n_params] as f32;
// then the SHA-256 of everything before it.
static void encode_header(uint8_t *h, const ckpt_state *s, const anneal_adamw *o, uint64_t n_params,
                          const uint8_t model_sha[32]) {
    memset(h, 0, HDR_BYTES);
    memcpy(h, OPT_MAGIC, 8);
    put_u32(h + 8, OPT_VERSION);
    put_u64(h + 16, (uint64_t)s->step);
    put_u64(h + 24, s->rng);
    put_u64(h + 32, s->batches);
    put_u64(h + 40, n_params);
    put_u64(h + 48, (uint64_t)o->step);
    float f[4] = {o->p.beta1, o->p.beta2, o->p.eps, o->p.weight_decay};
    for (int i = 0; i < 4; i++) {
        uint32_t b;
        memcpy(&b, &f[i], 4);
        put_u32(h + 56 + 4 * i, b);
    }
    memcpy(h + 72, model_sha, 32);
}

static bool little_endian(void) {
    uint16_t x = 1;
    return *(uint8_t *)&x == 1;
}

static void ckpt_name(char *buf, size_t cap, int64_t step) {
    snprintf(buf, cap, "ckpt-%08lld", (long long)step);
}

static anneal_status join(char *out, size_t cap, const char *a, const char *b, anneal_err *err) {
    int n = snprintf(out, cap, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= cap)
        return anneal_err_set(err, ANNEAL_ERR_LIMIT, "path '%s/%s' is too long", a, b);
    return ANNEAL_OK;
}

static anneal_status fsync_dir(const char *dir, anneal_err *err) {
    FILE *f = fopen(dir, "r");
    if (!f) return anneal_err_set(err, ANNEAL_ERR_IO, "%s: %s", dir, strerror(errno));
    fsync(fileno(f));
    fclose(f);
    return ANNEAL_OK;
}

anneal_status ckpt_mkdir(const char *dir, anneal_err *err) {
    if (mkdir(dir, 0755) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) return ANNEAL_OK;
        return anneal_err_set(err, ANNEAL_ERR_IO, "%s exists and is not a directory", dir);
    }
    return anneal_err_set(err, ANNEAL_ERR_IO, "cannot create directory %s: %s", dir,
                          strerror(errno));
}

// Removes a checkpoint directory (its two files, leftover temporaries, then itself).
static void remove_ckpt(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char f[4400];
        snprintf(f, sizeof f, "%s/%s", path, e->d_name);
        unlink(f);
    }
    closedir(d);
    rmdir(path);
}

// Temporary files of an atomic write a killed run left behind: "<name>.tmp.<pid>" for the
// files we write, in dir and its checkpoint directories (one level down).
static bool our_tmp(const char *n) {
    static const char *const names[] = {"latest.tmp.",       "metrics.jsonl.tmp.", "loss.svg.tmp.",
                                        "model.gguf.tmp.",   "optim.bin.tmp.",     "init.gguf.tmp.",
                                        "adapter.gguf.tmp.", "adapter.bin.tmp."};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strncmp(n, names[i], strlen(names[i])) == 0) return true;
    return false;
}

void ckpt_clean_tmp(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (our_tmp(e->d_name)) {
            unlink(p);
        } else if (strncmp(e->d_name, "ckpt-", 5) == 0) {
            DIR *sub = opendir(p);
            struct dirent *f;
            while (sub && (f = readdir(sub)))
                if (our_tmp(f->d_name)) {
                    char q[4800];
                    snprintf(q, sizeof q, "%s/%s", p, f->d_name);
                    unlink(q);
                }
            if (sub) closedir(sub);
        }
    }
    closedir(d);
}

// Checkpoint steps found in dir, newest first (ckpt-<digits> names only). Caller frees.
static int64_t *list_ckpts(const char *dir, size_t *n) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    size_t cap = 16;
    int64_t *v = anneal_malloc(cap * sizeof *v);
    struct dirent *e;
    while (v && (e = readdir(d))) {
        const char *s = e->d_name;
        if (strncmp(s, "ckpt-", 5) != 0 || strlen(s) != 13) continue;
        char *end;
        long long step = strtoll(s + 5, &end, 10);
        if (*end || step < 0) continue;
        if (*n == cap) {
            int64_t *nv = anneal_realloc_array(v, cap * 2, sizeof *v);
            if (!nv) break;
            v = nv;
            cap *= 2;
        }
        v[(*n)++] = step;
    }
    closedir(d);
    for (size_t i = 1; i < *n; i++) // insertion sort, descending
        for (size_t j = i; j > 0 && v[j] > v[j - 1]; j--) {
            int64_t t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return v;
}

anneal_status ckpt_write(const char *dir, const ckpt_state *s, const anneal_train_model *tm,
                         const anneal_adamw *o, const ckpt_model_writer *mw, int32_t keep,
                         char *model_path, size_t cap, anneal_err *err) {
    if (!little_endian())
        return anneal_err_set(err, ANNEAL_ERR_UNSUPPORTED, "checkpoints need a little-endian host");
    char name[32], cdir[4096], mpath[4096], opath[4096], tmp[4096];
    ckpt_name(name, sizeof name, s->step);
    anneal_status st;
    if ((st = join(cdir, sizeof cdir, dir, name, err)) || (st = ckpt_mkdir(cdir, err)) ||
        (st = join(mpath, sizeof mpath, cdir, "model.gguf", err)) ||
        (st = join(opath, sizeof opath, cdir, "optim.bin", err)))
        return st;
    if ((st = mw->save(mw->ctx, tm, mpath, err))) return st;
    if (mw->between) mw->between(mw->ctx, s->step);
    uint8_t sha[32];
    if ((st = anneal_sha256_file(mpath, sha, err))) return st;

    uint8_t hdr[HDR_BYTES];
    encode_header(hdr, s, o, tm->n_params, sha);
    anneal_sha256 h;
    if ((st = anneal_sha256_init(&h))) return anneal_err_set(err, st, "sha256 unavailable");
    anneal_atomic_file f = {0};
    size_t bytes = tm->n_params * sizeof(float);
    st = anneal_atomic_open(&f, opath, err);
    if (!st) st = anneal_atomic_write(&f, hdr, sizeof hdr, err);
    anneal_sha256_update(&h, hdr, sizeof hdr);
    if (!st) st = anneal_atomic_write(&f, o->m, bytes, err);
    anneal_sha256_update(&h, o->m, bytes);
    if (!st) st = anneal_atomic_write(&f, o->v, bytes, err);
    anneal_sha256_update(&h, o->v, bytes);
    uint8_t digest[32];
    anneal_sha256_final(&h, digest);
    if (!st) st = anneal_atomic_write(&f, digest, sizeof digest, err);
    if (!st) st = anneal_atomic_commit(&f, err);
    if (st) {
        anneal_atomic_abort(&f);
        return st;
    }
    if ((st = fsync_dir(cdir, err))) return st;
    // The pointer moves only once both files are durable.
    char line[64];
    int n = snprintf(line, sizeof line, "%s\n", name);
    if ((st = join(tmp, sizeof tmp, dir, "latest", err)) ||
        (st = anneal_write_file_atomic(tmp, line, (size_t)n, err)))
        return st;
    snprintf(model_path, cap, "%s", mpath);
    // Older checkpoints beyond `keep` go; newer ones (left by a run that was resumed from
    // an earlier step) are stale and go too.
    size_t nc;
    int64_t *steps = list_ckpts(dir, &nc);
    int32_t kept = 0;
    for (size_t i = 0; steps && i < nc; i++) {
        if (steps[i] > s->step || (steps[i] <= s->step && ++kept > keep)) {
            char other[32];
            ckpt_name(other, sizeof other, steps[i]);
            remove_ckpt(dir, other);
        }
    }
    anneal_free(steps);
    return ANNEAL_OK;
}

// Checks checkpoint `name` in dir: optim.bin's magic, version, size and checksum, and that
// model.gguf has the SHA-256 it records. Fills s (and the moments when o is not NULL and
// n_params matches).
static anneal_status verify(const char *dir, const char *name, ckpt_state *s, uint64_t *n_params,
                            anneal_adamw *o, uint64_t want_np, anneal_err *err) {
    char cdir[4096], mpath[4096], opath[4096];
    anneal_status st;
    if ((st = join(cdir, sizeof cdir, dir, name, err)) ||
        (st = join(mpath, sizeof mpath, cdir, "model.gguf", err)) ||
        (st = join(opath, sizeof opath, cdir, "optim.bin", err)))
        return st;
    anneal_map m;
    if ((st = anneal_map_file(opath, &m, err))) return st;
    st = ANNEAL_ERR_FORMAT;
    const uint8_t *p = m.data;
    if (m.size < HDR_BYTES + 32 || memcmp(p, OPT_MAGIC, 8) != 0) {
        anneal_err_set(err, st, "%s: not an anneal optimizer state (bad magic or size)", opath);
        goto out;
    }
    if (get_u32(p + 8) != OPT_VERSION) {
        anneal_err_set(err, ANNEAL_ERR_UNSUPPORTED, "%s: version %u, expected %u", opath,
                       get_u32(p + 8), OPT_VERSION);
        st = ANNEAL_ERR_UNSUPPORTED;
        goto out;
    }
    uint64_t np = get_u64(p + 40);
    if (np > (SIZE_MAX - HDR_BYTES - 32) / 8 || m.size != HDR_BYTES + 8 * np + 32) {
        anneal_err_set(err, st, "%s: %zu bytes do not hold %llu parameters' moments", opath, m.size,
                       (unsigned long long)np);
        goto out;
    }
    uint8_t digest[32];
    anneal_sha256_buf(p, m.size - 32, digest);
    if (memcmp(digest, p + m.size - 32, 32) != 0) {
        anneal_err_set(err, st, "%s: checksum mismatch (damaged file)", opath);
        goto out;
    }
    uint8_t msha[32];
    if ((st = anneal_sha256_file(mpath, msha, err))) goto out;
    if (memcmp(msha, p + 72, 32) != 0) {
        st = anneal_err_set(err, ANNEAL_ERR_FORMAT,
                            "%s: its SHA-256 is not the one %s records (damaged or mixed up)",
                            mpath, opath);
        goto out;
    }
    s->step = (int64_t)get_u64(p + 16);
    s->rng = get_u64(p + 24);
    s->batches = get_u64(p + 32);
    *n_params = np;
    if (o) {
        if (np != want_np) {
            st = anneal_err_set(err, ANNEAL_ERR_FORMAT,
                                "%s holds %llu parameters' moments, the model has %llu", opath,
                                (unsigned long long)np, (unsigned long long)want_np);
            goto out;
        }
        memcpy(o->m, p + HDR_BYTES, np * 4);
        memcpy(o->v, p + HDR_BYTES + np * 4, np * 4);
        o->step = (int64_t)get_u64(p + 48);
    }
    st = ANNEAL_OK;
out:
    anneal_unmap(&m);
    return st;
}

anneal_status anneal_ckpt_find(const char *dir, int64_t *step, char *path, size_t cap,
                               anneal_err *err) {
    char lpath[4096], *text = NULL;
    size_t len;
    anneal_status st = join(lpath, sizeof lpath, dir, "latest", err);
    if (st) return st;
    ckpt_state s;
    uint64_t np;
    // The pointer first; when it is missing or names a damaged checkpoint, the newest one
    // that verifies.
    if (anneal_read_file(lpath, 256, &text, &len, NULL) == ANNEAL_OK) {
        while (len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
            text[--len] = 0;
        bool ok = strncmp(text, "ckpt-", 5) == 0 && !strchr(text, '/') &&
                  verify(dir, text, &s, &np, NULL, 0, NULL) == ANNEAL_OK;
        if (ok) {
            *step = s.step;
            snprintf(path, cap, "%s/%s", dir, text);
            anneal_free(text);
            return ANNEAL_OK;
        }
        ANNEAL_WARN("%s names '%s', which is missing or damaged; looking for an older "
                    "checkpoint",
                    lpath, text);
        anneal_free(text);
    }
    size_t n;
    int64_t *steps = list_ckpts(dir, &n);
    for (size_t i = 0; steps && i < n; i++) {
        char name[32];
        ckpt_name(name, sizeof name, steps[i]);
        anneal_err e = {0};
        if (verify(dir, name, &s, &np, NULL, 0, &e) == ANNEAL_OK) {
            *step = s.step;
            snprintf(path, cap, "%s/%s", dir, name);
            anneal_free(steps);
            return ANNEAL_OK;
        }
        ANNEAL_WARN("skipping checkpoint %s/%s: %s", dir, name, anneal_err_msg(&e));
    }
    anneal_free(steps);
    return anneal_err_set(err, ANNEAL_ERR_NOT_FOUND, "%s: no valid checkpoint to resume from", dir);
}

anneal_status ckpt_read_state(const char *ckpt_dir, ckpt_state *s, anneal_adamw *o,
                              uint64_t n_params, anneal_err *err) {
    // ckpt_dir is DIR/ckpt-N: verify again while reading (the files could change between).
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", ckpt_dir);
    char *slash = strrchr(parent, '/');
    if (!slash) return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "bad checkpoint path");
    *slash = 0;
    uint64_t np;
    return verify(parent, slash + 1, s, &np, o, n_params, err);
}
