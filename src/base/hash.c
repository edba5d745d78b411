// SHA-256 (OpenSSL libcrypto), hex encoding and constant-time comparison.
#include "anneal/base.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

anneal_status anneal_sha256_init(anneal_sha256 *h) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return ANNEAL_ERR_NOMEM;
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return ANNEAL_ERR_INTERNAL;
    }
    h->ctx = ctx;
    return ANNEAL_OK;
}

void anneal_sha256_update(anneal_sha256 *h, const void *data, size_t size) {
    if (size) EVP_DigestUpdate(h->ctx, data, size);
}

void anneal_sha256_final(anneal_sha256 *h, uint8_t out[32]) {
    unsigned int n = 32;
    EVP_DigestFinal_ex(h->ctx, out, &n);
    anneal_sha256_free(h);
}

void anneal_sha256_free(anneal_sha256 *h) {
    if (!h) return;
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
}

anneal_status anneal_sha256_buf(const void *data, size_t size, uint8_t out[32]) {
    anneal_sha256 h;
    anneal_status st = anneal_sha256_init(&h);
    if (st != ANNEAL_OK) return st;
    anneal_sha256_update(&h, data, size);
    anneal_sha256_final(&h, out);
    return ANNEAL_OK;
}

anneal_status anneal_sha256_file(const char *path, uint8_t out[32], anneal_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return anneal_err_set(err, ANNEAL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    anneal_sha256 h;
    if (anneal_sha256_init(&h) != ANNEAL_OK) {
        fclose(f);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "%s: cannot start SHA-256", path);
    }
    static _Thread_local uint8_t buf[1 << 16];
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, f)) > 0) anneal_sha256_update(&h, buf, r);
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        anneal_sha256_free(&h);
        return anneal_err_set(err, ANNEAL_ERR_IO, "%s: read failed", path);
    }
    anneal_sha256_final(&h, out);
    return ANNEAL_OK;
}

void anneal_hex(const uint8_t *bytes, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

bool anneal_ct_equal(const void *a, const void *b, size_t n) { return CRYPTO_memcmp(a, b, n) == 0; }
