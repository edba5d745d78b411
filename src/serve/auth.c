// API keys and per-key rate limits: a keys file of "ID KEY [rpm=N] [tpm=N]" lines, Bearer
// tokens checked against the SHA-256 of every key in constant time (CRYPTO_memcmp via
// anneal_ct_equal), and token buckets for requests and tokens per minute. Secrets are never
// logged; the key id is.
#include "serve_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

#define AUTH_MAX_FILE (1 << 20)
#define AUTH_MAX_KEYS 10000
#define AUTH_MAX_HEADER 4096

// ---- token buckets ------------------------------------------------------------------------

void tb_init(tbucket *b, double per_minute, uint64_t now_ns) {
    b->rate = per_minute / 60.0;
    b->burst = per_minute;
    b->level = per_minute;
    b->last_ns = now_ns;
}

static void refill(tbucket *b, uint64_t now_ns) {
    if (now_ns > b->last_ns) {
        b->level += b->rate * (double)(now_ns - b->last_ns) / 1e9;
        if (b->level > b->burst) b->level = b->burst;
    }
    b->last_ns = now_ns;
}

bool tb_take(tbucket *b, double n, uint64_t now_ns, double *retry_s) {
    if (b->rate <= 0) return true;
    refill(b, now_ns);
    double want = n < b->burst ? n : b->burst;
    if (b->level >= want) {
        b->level -= n;
        return true;
    }
    *retry_s = (want - b->level) / b->rate;
    return false;
}

void tb_charge(tbucket *b, double n, uint64_t now_ns) {
    if (b->rate <= 0) return;
    refill(b, now_ns);
    b->level -= n;
}

// ---- keys ------------------------------------------------------------------------------------

static bool parse_limit(const char *tok, const char *name, int32_t *out) {
    size_t n = strlen(name);
    if (strncmp(tok, name, n) || tok[n] != '=') return false;
    char *end;
    long v = strtol(tok + n + 1, &end, 10);
    if (*end || v < 0 || v > INT32_MAX || end == tok + n + 1) return false;
    *out = (int32_t)v;
    return true;
}

static anneal_status parse_keys(auth *a, const char *path, const char *text, anneal_err *err) {
    int line = 0;
    uint64_t now = anneal_time_ns();
    for (const char *p = text; *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        line++;
        char buf[1024];
        if (len >= sizeof buf) return anneal_err_set(err, ANNEAL_ERR_FORMAT, "%s:%d: line too long", path, line);
        memcpy(buf, p, len);
        buf[len] = '\0';
        p += len + (eol ? 1 : 0);
        char *hash = strchr(buf, '#');
        if (hash) *hash = '\0';
        char *save = NULL, *id = strtok_r(buf, " \t\r", &save);
        if (!id) continue;
        char *key = strtok_r(NULL, " \t\r", &save);
        if (!key)
            return anneal_err_set(err, ANNEAL_ERR_FORMAT, "%s:%d: expected \"ID KEY [rpm=N] [tpm=N]\"", path, line);
        if (strlen(id) >= sizeof a->keys[0].id)
            return anneal_err_set(err, ANNEAL_ERR_FORMAT, "%s:%d: key id longer than %zu bytes", path, line,
                                  sizeof a->keys[0].id - 1);
        if (strlen(key) < 8)
            return anneal_err_set(err, ANNEAL_ERR_FORMAT, "%s:%d: key '%s' is shorter than 8 characters", path,
                                  line, id);
        int32_t rpm = a->rpm, tpm = a->tpm;
        for (char *t; (t = strtok_r(NULL, " \t\r", &save));)
            if (!parse_limit(t, "rpm", &rpm) && !parse_limit(t, "tpm", &tpm))
                return anneal_err_set(err, ANNEAL_ERR_FORMAT, "%s:%d: unknown field '%.40s' (rpm=N or tpm=N)",
                                      path, line, t);
        for (size_t i = 0; i < a->n_keys; i++)
            if (!strcmp(a->keys[i].id, id))
                return anneal_err_set(err, ANNEAL_ERR_FORMAT, "%s:%d: duplicate key id '%s'", path, line, id);
        if (a->n_keys == AUTH_MAX_KEYS)
            return anneal_err_set(err, ANNEAL_ERR_LIMIT, "%s: more than %d keys", path, AUTH_MAX_KEYS);
        auth_key *k = anneal_realloc_array(a->keys, a->n_keys + 1, sizeof *k);
        if (!k) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory for keys");
        a->keys = k;
        k = &a->keys[a->n_keys++];
        memset(k, 0, sizeof *k);
        snprintf(k->id, sizeof k->id, "%s", id);
        anneal_sha256_buf(key, strlen(key), k->digest);
        tb_init(&k->req, rpm, now);
        tb_init(&k->tok, tpm, now);
        memset(buf, 0, sizeof buf); // do not leave the secret on the stack
    }
    if (a->n_keys == 0) return anneal_err_set(err, ANNEAL_ERR_FORMAT, "%s: no keys", path);
    return ANNEAL_OK;
}

anneal_status auth_init(auth *a, const char *keys_path, int32_t rpm, int32_t tpm, anneal_err *err) {
    memset(a, 0, sizeof *a);
    pthread_mutex_init(&a->mu, NULL);
    a->rpm = rpm;
    a->tpm = tpm;
    uint64_t now = anneal_time_ns();
    snprintf(a->anon.id, sizeof a->anon.id, "anonymous");
    tb_init(&a->anon.req, rpm, now);
    tb_init(&a->anon.tok, tpm, now);
    if (!keys_path || !*keys_path) return ANNEAL_OK;
    char *text = NULL;
    size_t size = 0;
    anneal_status st = anneal_read_file(keys_path, AUTH_MAX_FILE, &text, &size, err);
    if (!st && strlen(text) != size)
        st = anneal_err_set(err, ANNEAL_ERR_FORMAT, "%s: contains a NUL byte", keys_path);
    if (!st) st = parse_keys(a, keys_path, text, err);
    if (text) {
        memset(text, 0, size);
        anneal_free(text);
    }
    if (st) auth_destroy(a);
    return st;
}

void auth_destroy(auth *a) {
    anneal_free(a->keys);
    a->keys = NULL;
    a->n_keys = 0;
    pthread_mutex_destroy(&a->mu);
}

bool auth_enabled(const auth *a) {
    return a->n_keys > 0;
}

auth_key *auth_check(auth *a, const char *header) {
    if (!auth_enabled(a)) return &a->anon;
    if (!header) return NULL;
    size_t n = strnlen(header, AUTH_MAX_HEADER);
    if (n < 7 || strncasecmp(header, "Bearer ", 7)) return NULL;
    const char *key = header + 7;
    while (*key == ' ')
        key++;
    size_t len = strnlen(key, AUTH_MAX_HEADER);
    while (len && isspace((unsigned char)key[len - 1]))
        len--;
    uint8_t d[32];
    if (anneal_sha256_buf(key, len, d)) return NULL;
    // Compare against every key so the time does not depend on which one matched.
    auth_key *found = NULL;
    for (size_t i = 0; i < a->n_keys; i++)
        if (anneal_ct_equal(d, a->keys[i].digest, sizeof d) && !found) found = &a->keys[i];
    return found;
}

bool auth_admit(auth *a, auth_key *k, double tokens, double *retry_s) {
    uint64_t now = anneal_time_ns();
    pthread_mutex_lock(&a->mu);
    double r1 = 0, r2 = 0;
    bool ok = tb_take(&k->req, 1, now, &r1);
    if (ok && !tb_take(&k->tok, tokens, now, &r2)) {
        tb_charge(&k->req, -1, now); // give the request back
        ok = false;
    }
    pthread_mutex_unlock(&a->mu);
    if (!ok) *retry_s = r1 > r2 ? r1 : r2;
    return ok;
}

void auth_charge(auth *a, auth_key *k, double tokens) {
    pthread_mutex_lock(&a->mu);
    tb_charge(&k->tok, tokens, anneal_time_ns());
    pthread_mutex_unlock(&a->mu);
}
