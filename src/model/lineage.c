// Lineage keys: writes and parses the anneal.lineage.* metadata that records each file's
// parents (by SHA-256), the command, the effective options, the tool and the UTC time.
#include "anneal/lineage.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHA_PREFIX "sha256:"
#define SHA_PREFIX_LEN 7

// ---- building -----------------------------------------------------------------------

anneal_status anneal_lineage_parent_file(anneal_lineage_parent *p, const char *role,
                                         const char *path, anneal_err *err) {
    uint8_t digest[32];
    anneal_status st = anneal_sha256_file(path, digest, err);
    if (st) return st;
    anneal_hex(digest, 32, p->sha256);
    p->role = role;
    p->path = path;
    return ANNEAL_OK;
}

// Characters a POSIX shell takes literally in a bare word.
static bool shell_safe(const char *s) {
    if (!*s) return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("_-./:=,+@%^", c)))
            return false;
    }
    return true;
}

char *anneal_lineage_command(int argc, char *const *argv) {
    size_t cap = sizeof "anneal";
    for (int i = 0; i < argc; i++) {
        size_t n = strlen(argv[i]);
        // worst case: every byte a quote ('\'' = 4 bytes), plus two quotes and a space
        if (n > (SIZE_MAX - cap) / 4 - 4) return NULL;
        cap += 4 * n + 3;
    }
    char *out = anneal_malloc(cap);
    if (!out) return NULL;
    char *p = out;
    memcpy(p, "anneal", 6);
    p += 6;
    for (int i = 0; i < argc; i++) {
        *p++ = ' ';
        const char *a = argv[i];
        if (shell_safe(a)) {
            size_t n = strlen(a);
            memcpy(p, a, n);
            p += n;
            continue;
        }
        *p++ = '\'';
        for (; *a; a++) {
            if (*a == '\'') {
                memcpy(p, "'\\''", 4); // close, escaped quote, reopen
                p += 4;
            } else {
                *p++ = *a;
            }
        }
        *p++ = '\'';
    }
    *p = '\0';
    return out;
}

static bool digits(const char *s, int n) {
    for (int i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

static int num(const char *s, int n) {
    int v = 0;
    for (int i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

// "YYYY-MM-DDTHH:MM:SSZ" with a real calendar date and time (no leap seconds).
static bool valid_time(const char *s) {
    if (strlen(s) != 20 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
        !digits(s + 8, 2) || s[10] != 'T' || !digits(s + 11, 2) || s[13] != ':' ||
        !digits(s + 14, 2) || s[16] != ':' || !digits(s + 17, 2) || s[19] != 'Z')
        return false;
    int y = num(s, 4), mo = num(s + 5, 2), d = num(s + 8, 2);
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mo < 1 || mo > 12 || d < 1) return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    int dmax = mdays[mo - 1] + (mo == 2 && leap ? 1 : 0);
    return d <= dmax && num(s + 11, 2) < 24 && num(s + 14, 2) < 60 && num(s + 17, 2) < 60;
}

anneal_status anneal_lineage_time(char *buf, size_t cap, anneal_err *err) {
    if (cap < 21) return anneal_err_set(err, ANNEAL_ERR_RANGE, "lineage time: buffer too small");
    const char *env = getenv(ANNEAL_LINEAGE_TIME_ENV);
    if (env && *env) {
        if (!valid_time(env))
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                  "%s='%.40s': expected a UTC time like 2026-01-31T12:00:00Z",
                                  ANNEAL_LINEAGE_TIME_ENV, env);
        memcpy(buf, env, 21);
        return ANNEAL_OK;
    }
    anneal_time_utc(buf, cap);
    return ANNEAL_OK;
}

static bool valid_role(const char *r) {
    size_t n = r ? strlen(r) : 0;
    if (n == 0 || n > ANNEAL_LINEAGE_ROLE_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = r[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool valid_hex64(const char *h) {
    if (strlen(h) != 64) return false;
    for (int i = 0; i < 64; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f'))) return false;
    return true;
}

static bool one_line(const char *s) {
    return !strchr(s, '\n') && !strchr(s, '\r');
}

anneal_status anneal_lineage_set(anneal_gguf_writer *w, const anneal_lineage *lin,
                                 anneal_err *err) {
    const char *config = lin->config ? lin->config : "{}";
    const char *command = lin->command ? lin->command : "";
    if (!one_line(command))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "lineage: command has a line break");
    json_t *cfg = anneal_json_parse(config, strlen(config), "lineage config", err);
    if (!cfg) return err ? err->status : ANNEAL_ERR_INVALID_ARG;
    bool is_obj = json_is_object(cfg);
    json_decref(cfg);
    if (!is_obj)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "lineage: config is not a JSON object");
    for (size_t i = 0; i < lin->n_parents; i++) {
        const anneal_lineage_parent *p = &lin->parents[i];
        if (!valid_role(p->role))
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                  "lineage: parent %zu: role must be 1-%d characters of "
                                  "[a-z0-9_-]",
                                  i, ANNEAL_LINEAGE_ROLE_MAX);
        if (!valid_hex64(p->sha256))
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                  "lineage: parent %zu: sha256 is not 64 lowercase hex digits", i);
        if (!p->path || !one_line(p->path))
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                  "lineage: parent %zu: path missing or has a line break", i);
    }

    char created[32];
    anneal_status st = anneal_lineage_time(created, sizeof created, err);
    if (st) return st;

    // The parent strings, built in one buffer.
    size_t total = 1;
    for (size_t i = 0; i < lin->n_parents; i++)
        total += SHA_PREFIX_LEN + 64 + 2 + strlen(lin->parents[i].role) +
                 strlen(lin->parents[i].path) + 1;
    char *buf = anneal_malloc(total);
    anneal_gguf_str *strs = anneal_calloc(lin->n_parents ? lin->n_parents : 1, sizeof *strs);
    if (!buf || !strs) {
        anneal_free(buf);
        anneal_free(strs);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "lineage: out of memory");
    }
    char *p = buf;
    for (size_t i = 0; i < lin->n_parents; i++) {
        int n = snprintf(p, total - (size_t)(p - buf), SHA_PREFIX "%s %s %s",
                         lin->parents[i].sha256, lin->parents[i].role, lin->parents[i].path);
        strs[i].ptr = p;
        strs[i].len = (uint64_t)n;
        p += n + 1;
    }
    anneal_gguf_value arr = {.type = ANNEAL_GGUF_ARRAY};
    arr.arr.elem = ANNEAL_GGUF_STRING;
    arr.arr.n = lin->n_parents;
    arr.arr.strs = strs;
    st = anneal_gguf_writer_set_value(w, ANNEAL_LINEAGE_KEY_PARENTS, &arr);
    if (!st) st = anneal_gguf_writer_set_str(w, ANNEAL_LINEAGE_KEY_COMMAND, command);
    if (!st) st = anneal_gguf_writer_set_str(w, ANNEAL_LINEAGE_KEY_CONFIG, config);
    if (!st) st = anneal_gguf_writer_set_str(w, ANNEAL_LINEAGE_KEY_TOOL, "anneal " ANNEAL_VERSION);
    if (!st) st = anneal_gguf_writer_set_str(w, ANNEAL_LINEAGE_KEY_CREATED, created);
    anneal_free(buf);
    anneal_free(strs);
    if (st) return anneal_err_set(err, st, "lineage: %s setting the keys", anneal_status_str(st));
    return ANNEAL_OK;
}

// ---- reading ------------------------------------------------------------------------

static anneal_status get_str(const anneal_gguf *g, const char *key, anneal_gguf_str *out,
                             anneal_err *err) {
    const anneal_gguf_kv *kv = anneal_gguf_find(g, key);
    if (!kv) return anneal_err_set(err, ANNEAL_ERR_FORMAT, "lineage: key '%s' is missing", key);
    if (kv->value.type != ANNEAL_GGUF_STRING)
        return anneal_err_set(err, ANNEAL_ERR_FORMAT, "lineage: key '%s' is %s, expected str", key,
                              anneal_gguf_type_name(kv->value.type));
    if (memchr(kv->value.str.ptr, '\0', (size_t)kv->value.str.len))
        return anneal_err_set(err, ANNEAL_ERR_FORMAT, "lineage: key '%s' holds a NUL byte", key);
    *out = kv->value.str;
    return ANNEAL_OK;
}

// Copies s to *cursor as a NUL-terminated string; returns the copy.
static char *put(char **cursor, anneal_gguf_str s) {
    char *d = *cursor;
    memcpy(d, s.ptr, (size_t)s.len);
    d[s.len] = '\0';
    *cursor += s.len + 1;
    return d;
}

// Splits "sha256:<hex> <role> <path>" into p (role and path copied to *cursor).
static bool parse_parent(anneal_gguf_str s, anneal_lineage_parent *p, char **cursor) {
    if (s.len < SHA_PREFIX_LEN + 64 + 4 || memcmp(s.ptr, SHA_PREFIX, SHA_PREFIX_LEN) != 0 ||
        memchr(s.ptr, '\0', (size_t)s.len))
        return false;
    memcpy(p->sha256, s.ptr + SHA_PREFIX_LEN, 64);
    p->sha256[64] = '\0';
    if (!valid_hex64(p->sha256) || s.ptr[SHA_PREFIX_LEN + 64] != ' ') return false;
    const char *role = s.ptr + SHA_PREFIX_LEN + 65, *end = s.ptr + s.len;
    const char *sp = memchr(role, ' ', (size_t)(end - role));
    if (!sp || sp == end - 1) return false;
    char *r = put(cursor, (anneal_gguf_str){role, (uint64_t)(sp - role)});
    if (!valid_role(r)) return false;
    p->role = r;
    p->path = put(cursor, (anneal_gguf_str){sp + 1, (uint64_t)(end - sp - 1)});
    return true;
}

anneal_status anneal_lineage_read(const anneal_gguf *g, anneal_lineage **out, anneal_err *err) {
    *out = NULL;
    static const char *const keys[] = {ANNEAL_LINEAGE_KEY_COMMAND, ANNEAL_LINEAGE_KEY_CONFIG,
                                       ANNEAL_LINEAGE_KEY_TOOL, ANNEAL_LINEAGE_KEY_CREATED};
    const anneal_gguf_kv *pkv = anneal_gguf_find(g, ANNEAL_LINEAGE_KEY_PARENTS);
    bool any = pkv != NULL;
    for (int i = 0; i < 4; i++)
        any = any || anneal_gguf_find(g, keys[i]) != NULL;
    if (!any) return anneal_err_set(err, ANNEAL_ERR_NOT_FOUND, "no anneal.lineage.* keys");
    if (!pkv)
        return anneal_err_set(err, ANNEAL_ERR_FORMAT, "lineage: key '%s' is missing",
                              ANNEAL_LINEAGE_KEY_PARENTS);
    if (pkv->value.type != ANNEAL_GGUF_ARRAY || pkv->value.arr.elem != ANNEAL_GGUF_STRING)
        return anneal_err_set(err, ANNEAL_ERR_FORMAT, "lineage: key '%s' is not an array of str",
                              ANNEAL_LINEAGE_KEY_PARENTS);
    anneal_gguf_str s[4];
    for (int i = 0; i < 4; i++) {
        anneal_status st = get_str(g, keys[i], &s[i], err);
        if (st) return st;
    }
    uint64_t n = pkv->value.arr.n;
    // One block: the struct, the parents, then every string with its NUL.
    uint64_t bytes = sizeof(anneal_lineage);
    if (n > (SIZE_MAX / 4) / sizeof(anneal_lineage_parent))
        return anneal_err_set(err, ANNEAL_ERR_FORMAT, "lineage: %llu parents",
                              (unsigned long long)n);
    bytes += n * sizeof(anneal_lineage_parent);
    for (int i = 0; i < 4; i++)
        bytes += s[i].len + 1;
    for (uint64_t i = 0; i < n; i++)
        bytes += pkv->value.arr.strs[i].len + 2;
    if (bytes > SIZE_MAX / 2)
        return anneal_err_set(err, ANNEAL_ERR_FORMAT, "lineage: values too large");
    anneal_lineage *lin = anneal_calloc(1, (size_t)bytes);
    if (!lin) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "lineage: out of memory");
    anneal_lineage_parent *parents = (anneal_lineage_parent *)(lin + 1);
    char *cursor = (char *)(parents + n);
    for (uint64_t i = 0; i < n; i++) {
        if (!parse_parent(pkv->value.arr.strs[i], &parents[i], &cursor)) {
            anneal_free(lin);
            return anneal_err_set(err, ANNEAL_ERR_FORMAT,
                                  "lineage: key '%s' element %llu is not "
                                  "\"sha256:<64 hex> <role> <path>\"",
                                  ANNEAL_LINEAGE_KEY_PARENTS, (unsigned long long)i);
        }
    }
    lin->parents = parents;
    lin->n_parents = (size_t)n;
    lin->command = put(&cursor, s[0]);
    lin->config = put(&cursor, s[1]);
    lin->tool = put(&cursor, s[2]);
    lin->created = put(&cursor, s[3]);
    *out = lin;
    return ANNEAL_OK;
}

void anneal_lineage_free(anneal_lineage *lin) {
    anneal_free(lin);
}
