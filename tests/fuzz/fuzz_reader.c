// libFuzzer target for the document reader and the cleaner. The first byte picks the file
// type (extension), the text unit and how the rest is stored (as is, properly gzip/zstd
// compressed, or as is under a .gz/.zst name); the rest is the file. Properties: the reader
// never fails on bad bytes; every document is valid UTF-8 without NUL, within the size cap,
// with a JSON object as meta; a rewound pass gives the same documents; cleaning never fails
// and cleaning the result again changes nothing.
#include "anneal/data.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

static const char *const exts[8] = {".txt",  ".jsonl", ".csv", ".tsv",
                                    ".html", ".bin",   ".md",  ".ndjson"};

static char dir[64];

static bool valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        if (s[i] == 0) return false;
        size_t k = anneal_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (k == 0) return false;
        i += k;
    }
    return true;
}

static uint64_t doc_hash(const anneal_doc *d) {
    return anneal_hash64(d->text, d->len) ^ (anneal_hash64(d->id, d->id_len) * 3) ^
           (anneal_hash64(d->meta, d->meta_len) * 7) ^
           (anneal_hash64(d->source, strlen(d->source)) * 11);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/fuzz_reader-XXXXXX");
        if (!mkdtemp(dir)) abort();
    }
    uint8_t sel = data[0];
    data++;
    size--;
    int store = (sel >> 3) % 5; // 0 as is, 1 gzip, 2 zstd, 3 raw .gz, 4 raw .zst
    char path[128];
    snprintf(path, sizeof path, "%s/in%s%s", dir, exts[sel & 7],
             store == 1 || store == 3   ? ".gz"
             : store == 2 || store == 4 ? ".zst"
                                        : "");
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (store == 1) {
        fclose(f);
        gzFile g = gzopen(path, "wb");
        if (size) gzwrite(g, data, (unsigned)size);
        gzclose(g);
    } else if (store == 2) {
        size_t cap = ZSTD_compressBound(size);
        void *z = malloc(cap);
        size_t n = ZSTD_compress(z, cap, data, size, 1);
        if (ZSTD_isError(n)) abort();
        fwrite(z, 1, n, f);
        free(z);
        fclose(f);
    } else {
        if (size) fwrite(data, 1, size, f);
        fclose(f);
    }
    anneal_reader_config cfg = anneal_reader_config_default();
    cfg.max_doc_bytes = 4096;
    cfg.txt_unit = (anneal_txt_unit)((sel >> 6) % 3);
    if (sel & 0x80) cfg.csv_column = "2";
    const char *in[1] = {path};
    anneal_reader *r = NULL;
    if (anneal_reader_open(in, 1, &cfg, &r, NULL) != ANNEAL_OK) abort();
    anneal_clean_scratch *cs = anneal_clean_scratch_new();
    anneal_clean_scratch *cs2 = anneal_clean_scratch_new();
    uint64_t hashes[2] = {0, 0}, counts[2] = {0, 0};
    for (int pass = 0; pass < 2; pass++) {
        for (;;) {
            anneal_doc d;
            bool eof;
            if (anneal_reader_next(r, &d, &eof, NULL) != ANNEAL_OK) abort();
            if (eof) break;
            if (d.len > cfg.max_doc_bytes || !valid_utf8(d.text, d.len) ||
                d.meta_len != strlen(d.meta))
                __builtin_trap();
            json_t *m = json_loadb(d.meta, d.meta_len, 0, NULL);
            if (!m || !json_is_object(m)) __builtin_trap();
            json_decref(m);
            hashes[pass] = hashes[pass] * 31 + doc_hash(&d);
            counts[pass]++;
            if (pass == 0) {
                const char *o1, *o2;
                size_t n1, n2;
                if (anneal_clean_text(cs, NULL, d.text, d.len, &o1, &n1, NULL, NULL) ||
                    anneal_clean_text(cs2, NULL, o1, n1, &o2, &n2, NULL, NULL))
                    __builtin_trap();
                if (n1 != n2 || memcmp(o1, o2, n1) != 0) __builtin_trap();
            }
        }
        if (pass == 0 && anneal_reader_rewind(r, NULL) != ANNEAL_OK) abort();
    }
    if (hashes[0] != hashes[1] || counts[0] != counts[1]) __builtin_trap();
    if (!anneal_reader_input_get(r, 0)->sha256_done &&
        anneal_reader_stats_get(r)->skipped[ANNEAL_SKIP_UNREADABLE] == 0)
        __builtin_trap();
    // The raw bytes are cleaned too, as the server's filters would see them.
    const char *o1, *o2;
    size_t n1, n2;
    if (anneal_clean_text(cs, NULL, (const char *)data, size, &o1, &n1, NULL, NULL) ||
        anneal_clean_text(cs2, NULL, o1, n1, &o2, &n2, NULL, NULL))
        __builtin_trap();
    if (n1 != n2 || memcmp(o1, o2, n1) != 0) __builtin_trap();
    anneal_clean_scratch_free(cs);
    anneal_clean_scratch_free(cs2);
    anneal_reader_free(r);
    unlink(path);
    return 0;
}
