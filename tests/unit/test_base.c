// Tests for src/base: status names, error buffer, arena, files, UTF-8, SHA-256, JSON, threads.
#include "anneal/base.h"
#include "test.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_status_and_err(void) {
    CHECK_STR(anneal_status_str(ANNEAL_OK), "ok");
    CHECK_STR(anneal_status_str(ANNEAL_ERR_FORMAT), "format error");
    CHECK_STR(anneal_status_str((anneal_status)999), "unknown status");
    // The numbers are ABI: pin them.
    CHECK_EQ(ANNEAL_ERR_NOMEM, 1);
    CHECK_EQ(ANNEAL_ERR_LIMIT, 8);
    CHECK_EQ(ANNEAL_ERR_INTERNAL, 9);
    anneal_err e = {0};
    CHECK_STR(anneal_err_msg(&e), "ok");
    CHECK_EQ(anneal_err_set(&e, ANNEAL_ERR_FORMAT, "first at offset %d", 12), ANNEAL_ERR_FORMAT);
    CHECK_EQ(anneal_err_set(&e, ANNEAL_ERR_IO, "second"), ANNEAL_ERR_IO);
    CHECK_EQ(e.status, ANNEAL_ERR_FORMAT);
    CHECK_STR(anneal_err_msg(&e), "first at offset 12");
    anneal_err_clear(&e);
    CHECK_EQ(e.status, ANNEAL_OK);
    CHECK_EQ(anneal_err_set(NULL, ANNEAL_ERR_IO, "no buffer"), ANNEAL_ERR_IO);
}

static void test_alloc(void) {
    CHECK(anneal_calloc(SIZE_MAX / 2, 4) == NULL);
    CHECK(anneal_realloc_array(NULL, SIZE_MAX / 8, 16) == NULL);
    size_t out;
    CHECK(!anneal_mul_ok(SIZE_MAX, 2, &out));
    CHECK(anneal_mul_ok(1000, 1000, &out) && out == 1000000);
    void *p = anneal_aligned_alloc(64, 100);
    CHECK(p && ((uintptr_t)p & 63) == 0);
    anneal_free(p);
    char *s = anneal_strndup("hello world", 5);
    CHECK_STR(s, "hello");
    anneal_free(s);
    anneal_free(NULL);
}

static void test_arena(void) {
    anneal_arena a;
    anneal_arena_init(&a, 256, 0);
    uint8_t *first = anneal_arena_alloc(&a, 10, 1);
    CHECK(first != NULL);
    for (int i = 0; i < 1000; i++) {
        size_t align = (size_t)1 << (i % 7);
        uint8_t *p = anneal_arena_alloc(&a, (size_t)(i % 50) + 1, align);
        CHECK(p != NULL && ((uintptr_t)p % align) == 0);
        memset(p, 0xAB, (size_t)(i % 50) + 1);
    }
    uint8_t *big = anneal_arena_alloc(&a, 10000, 64); // larger than a chunk
    CHECK(big && ((uintptr_t)big & 63) == 0);
    memset(big, 1, 10000);
    CHECK(anneal_arena_alloc(&a, 8, 3) == NULL); // not a power of two
    char *d = anneal_arena_strndup(&a, "abcdef", 3);
    CHECK_STR(d, "abc");
    anneal_arena_reset(&a);
    CHECK_EQ(a.used, 0);
    CHECK(anneal_arena_alloc(&a, 16, 8) != NULL);
    anneal_arena_free(&a);

    anneal_arena capped;
    anneal_arena_init(&capped, 64, 100);
    CHECK(anneal_arena_alloc(&capped, 60, 1) != NULL);
    CHECK(anneal_arena_alloc(&capped, 60, 1) == NULL); // past the cap
    CHECK(anneal_arena_alloc(&capped, 40, 1) != NULL);
    CHECK(anneal_arena_calloc(&capped, SIZE_MAX, 2, 1) == NULL);
    anneal_arena_free(&capped);
}

static void test_files(void) {
    char path[512], missing[512];
    snprintf(path, sizeof path, "%s/data.bin", test_tmpdir());
    snprintf(missing, sizeof missing, "%s/nope/data.bin", test_tmpdir());
    anneal_err e = {0};
    CHECK_EQ(anneal_write_file_atomic(path, "hello", 5, &e), ANNEAL_OK);
    anneal_map m;
    CHECK_EQ(anneal_map_file(path, &m, &e), ANNEAL_OK);
    CHECK_EQ(m.size, 5);
    CHECK(m.data && memcmp(m.data, "hello", 5) == 0);
    anneal_unmap(&m);
    CHECK(m.data == NULL);

    // Replacing is atomic: a failed write leaves the old content and no temp file.
    anneal_atomic_file f;
    CHECK_EQ(anneal_atomic_open(&f, path, &e), ANNEAL_OK);
    CHECK_EQ(anneal_atomic_write(&f, "new content", 11, &e), ANNEAL_OK);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s", f.tmp_path);
    CHECK(access(tmp, F_OK) == 0);
    anneal_atomic_abort(&f);
    CHECK(access(tmp, F_OK) != 0);
    char *data;
    size_t size;
    CHECK_EQ(anneal_read_file(path, 1 << 20, &data, &size, &e), ANNEAL_OK);
    CHECK_EQ(size, 5);
    CHECK_STR(data, "hello");
    anneal_free(data);

    CHECK_EQ(anneal_atomic_open(&f, path, &e), ANNEAL_OK);
    CHECK_EQ(anneal_atomic_write(&f, "new content", 11, &e), ANNEAL_OK);
    CHECK_EQ(anneal_atomic_commit(&f, &e), ANNEAL_OK);
    CHECK_EQ(anneal_read_file(path, 1 << 20, &data, &size, &e), ANNEAL_OK);
    CHECK_STR(data, "new content");
    anneal_free(data);

    // Size cap, exactly at and just past it.
    CHECK_EQ(anneal_read_file(path, 11, &data, &size, &e), ANNEAL_OK);
    anneal_free(data);
    CHECK_EQ(anneal_read_file(path, 10, &data, &size, &e), ANNEAL_ERR_LIMIT);
    CHECK(data == NULL);
    CHECK_CONTAINS(e.msg, "limit");
    anneal_err_clear(&e);

    CHECK_EQ(anneal_map_file(missing, &m, &e), ANNEAL_ERR_IO);
    CHECK_CONTAINS(e.msg, "nope/data.bin");
    anneal_err_clear(&e);
    CHECK_EQ(anneal_write_file_atomic(missing, "x", 1, &e), ANNEAL_ERR_IO);
    anneal_err_clear(&e);
    CHECK_EQ(anneal_map_file(test_tmpdir(), &m, &e), ANNEAL_ERR_IO); // a directory
    CHECK_CONTAINS(e.msg, "not a regular file");
    anneal_err_clear(&e);

    char empty[512];
    snprintf(empty, sizeof empty, "%s/empty", test_tmpdir());
    CHECK_EQ(anneal_write_file_atomic(empty, "", 0, &e), ANNEAL_OK);
    CHECK_EQ(anneal_map_file(empty, &m, &e), ANNEAL_OK);
    CHECK(m.data == NULL && m.size == 0);
    unlink(empty);
    unlink(path);
}

static void test_utf8(void) {
    uint32_t cp = 0;
    CHECK_EQ(anneal_utf8_decode((const uint8_t *)"A", 1, &cp), 1);
    CHECK_EQ(cp, 'A');
    CHECK_EQ(anneal_utf8_decode((const uint8_t *)"\xC3\xA9", 2, &cp), 2);
    CHECK_EQ(cp, 0xE9);
    CHECK_EQ(anneal_utf8_decode((const uint8_t *)"\xF0\x9F\xA6\x99", 4, &cp), 4); // llama emoji
    CHECK_EQ(cp, 0x1F999);
    CHECK_EQ(anneal_utf8_decode((const uint8_t *)"\xC0\x80", 2, &cp), 0);         // overlong
    CHECK_EQ(anneal_utf8_decode((const uint8_t *)"\xED\xA0\x80", 3, &cp), 0);     // surrogate
    CHECK_EQ(anneal_utf8_decode((const uint8_t *)"\xF4\x90\x80\x80", 4, &cp), 0); // > U+10FFFF
    CHECK_EQ(anneal_utf8_decode((const uint8_t *)"\xF0\x9F\xA6", 3, &cp), 0);     // cut off
    CHECK_EQ(anneal_utf8_decode((const uint8_t *)"\x80", 1, &cp), 0);
    CHECK(anneal_utf8_incomplete((const uint8_t *)"\xF0\x9F\xA6", 3));
    CHECK(anneal_utf8_incomplete((const uint8_t *)"\xE2", 1));
    CHECK(!anneal_utf8_incomplete((const uint8_t *)"\xF0\x41", 2));
    CHECK(!anneal_utf8_incomplete((const uint8_t *)"\xE0\x80", 2)); // would be overlong
    CHECK(!anneal_utf8_incomplete((const uint8_t *)"A", 1));
    char buf[4];
    CHECK_EQ(anneal_utf8_encode(0x2581, buf), 3);
    CHECK(memcmp(buf, "\xE2\x96\x81", 3) == 0);
    CHECK_EQ(anneal_utf8_encode(0xD800, buf), 0);
    CHECK_EQ(anneal_utf8_encode(0x110000, buf), 0);
    // Every code point round-trips.
    int bad = 0;
    for (uint32_t c = 0; c <= 0x10FFFF; c++) {
        size_t n = anneal_utf8_encode(c, buf);
        if (c >= 0xD800 && c <= 0xDFFF) {
            bad += n != 0;
            continue;
        }
        uint32_t back;
        if (n == 0 || anneal_utf8_decode((const uint8_t *)buf, n, &back) != n || back != c) bad++;
    }
    CHECK_EQ(bad, 0);
}

static void test_sha256(void) {
    uint8_t d[32];
    char hex[65];
    CHECK_EQ(anneal_sha256_buf("abc", 3, d), ANNEAL_OK);
    anneal_hex(d, 32, hex);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK_EQ(anneal_sha256_buf("", 0, d), ANNEAL_OK);
    anneal_hex(d, 32, hex);
    CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    // Streaming in pieces equals one shot.
    anneal_sha256 h;
    CHECK_EQ(anneal_sha256_init(&h), ANNEAL_OK);
    const char *msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    for (size_t i = 0; i < strlen(msg); i += 7)
        anneal_sha256_update(&h, msg + i, strlen(msg) - i < 7 ? strlen(msg) - i : 7);
    anneal_sha256_final(&h, d);
    anneal_hex(d, 32, hex);
    CHECK_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char path[512];
    snprintf(path, sizeof path, "%s/abc.txt", test_tmpdir());
    CHECK_EQ(anneal_write_file_atomic(path, "abc", 3, NULL), ANNEAL_OK);
    uint8_t f[32];
    CHECK_EQ(anneal_sha256_file(path, f, NULL), ANNEAL_OK);
    CHECK_EQ(anneal_sha256_buf("abc", 3, d), ANNEAL_OK);
    CHECK(memcmp(f, d, 32) == 0);
    unlink(path);
    CHECK(anneal_ct_equal("secret", "secret", 6));
    CHECK(!anneal_ct_equal("secret", "secreT", 6));
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

// Chi-square of counts over `n` buckets against a uniform expectation.
static double chi_square(const uint32_t *count, size_t n, size_t total) {
    double expect = (double)total / (double)n, chi = 0;
    for (size_t i = 0; i < n; i++)
        chi += (count[i] - expect) * (count[i] - expect) / expect;
    return chi;
}

static void test_hash64(void) {
    // Fixed vectors (also computed by an independent Python version of the algorithm).
    CHECK_EQ(anneal_hash64("", 0), 0x0a3f46e79293b578ull);
    CHECK_EQ(anneal_hash64("a", 1), 0x939b6fa9740d20c2ull);
    CHECK_EQ(anneal_hash64("abc", 3), 0x24b7a9ca8ff9d637ull);
    CHECK_EQ(anneal_hash64("12345678", 8), 0x99f71361d5204aa2ull);
    CHECK_EQ(anneal_hash64("123456789", 9), 0xa2712c720c9c6cb1ull);
    CHECK_EQ(anneal_hash64("general.alignment", 17), 0x3d9fa96175f4f7f8ull);
    CHECK_EQ(anneal_hash64("tokenizer.ggml.tokens", 21), 0x9749330fc29c332dull);
    // Length counts, not just bytes; alignment of the input does not matter.
    CHECK(anneal_hash64("a\0", 2) != anneal_hash64("a", 1));
    CHECK(anneal_hash64("\0\0\0\0\0\0\0\0", 8) != anneal_hash64("", 0));
    char buf[40];
    memcpy(buf + 3, "tokenizer.ggml.tokens", 21);
    CHECK_EQ(anneal_hash64(buf + 3, 21), 0x9749330fc29c332dull);

    // Distribution: 65536 similar keys (tensor-like names), no 64-bit collisions, and the
    // low bits (gguf index slot) and the high bits (tokenizer slot) both spread evenly over
    // 1024 buckets. For uniform buckets chi-square is 1023 +- 45; 1300 is over 6 sigma.
    enum { N = 65536, B = 1024 };
    uint64_t *h = anneal_malloc(N * sizeof *h);
    uint32_t *lo = anneal_calloc(B, sizeof *lo), *hi = anneal_calloc(B, sizeof *hi);
    CHECK(h && lo && hi);
    if (!h || !lo || !hi) goto out;
    static const char *const names[4] = {"attn_q", "attn_k", "ffn_up", "ffn_down"};
    for (int i = 0; i < N; i++) {
        int n = snprintf(buf, sizeof buf, "blk.%d.%s.weight", i / 4, names[i % 4]);
        h[i] = anneal_hash64(buf, (size_t)n);
        lo[h[i] & (B - 1)]++;
        hi[h[i] >> 54]++;
    }
    double chi_lo = chi_square(lo, B, N), chi_hi = chi_square(hi, B, N);
    CHECK(chi_lo < 1300);
    CHECK(chi_hi < 1300);
    qsort(h, N, sizeof *h, cmp_u64);
    int dups = 0;
    for (int i = 1; i < N; i++)
        dups += h[i] == h[i - 1];
    CHECK_EQ(dups, 0);

    // Avalanche: flipping any one input bit of a 16-byte key flips about half the output
    // bits, on average over keys (32 of 64; a weak mix shows as a low mean).
    uint8_t key[16];
    double mean_min = 64, mean_max = 0;
    for (int bit = 0; bit < 128; bit++) {
        long flipped = 0;
        for (int k = 0; k < 256; k++) {
            for (int j = 0; j < 16; j++)
                key[j] = (uint8_t)(k * 31 + j * 7);
            uint64_t a = anneal_hash64(key, 16);
            key[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            flipped += __builtin_popcountll(a ^ anneal_hash64(key, 16));
        }
        double mean = flipped / 256.0;
        if (mean < mean_min) mean_min = mean;
        if (mean > mean_max) mean_max = mean;
    }
    CHECK(mean_min > 29.0);
    CHECK(mean_max < 35.0);
out:
    anneal_free(h);
    anneal_free(lo);
    anneal_free(hi);
}

static void test_json(void) {
    anneal_err e = {0};
    json_t *v = anneal_json_parse("{\"a\": [1, 2, 3]}", 16, "inline", &e);
    CHECK(v != NULL);
    CHECK_EQ(json_array_size(json_object_get(v, "a")), 3);
    json_decref(v);
    v = anneal_json_parse("{\"a\": 1,\n \"b\": }", 16, "body.json", &e);
    CHECK(v == NULL);
    CHECK_EQ(e.status, ANNEAL_ERR_FORMAT);
    CHECK_CONTAINS(e.msg, "body.json: invalid JSON at line 2");
    anneal_err_clear(&e);
    v = anneal_json_parse("{\"a\": 1, \"a\": 2}", 16, "dup", &e);
    CHECK(v == NULL); // duplicate keys are refused
    anneal_err_clear(&e);

    char path[512];
    snprintf(path, sizeof path, "%s/str.json", test_tmpdir());
    FILE *f = fopen(path, "w");
    anneal_json_write_str(f, "a\"b\\\n\x01\xC3\xA9\xFF", 9);
    fclose(f);
    char *data;
    size_t size;
    CHECK_EQ(anneal_read_file(path, 4096, &data, &size, &e), ANNEAL_OK);
    CHECK_STR(data, "\"a\\\"b\\\\\\n\\u0001\xC3\xA9\\ufffd\"");
    v = anneal_json_parse(data, size, "written", &e);
    CHECK(v && json_is_string(v));
    json_decref(v);
    anneal_free(data);
    unlink(path);
}

static void test_threads_time(void) {
    int n = anneal_thread_count();
    CHECK(n >= 1);
    setenv("ANNEAL_THREADS", "3", 1);
    CHECK_EQ(anneal_thread_count(), 3);
    anneal_log_set_level(ANNEAL_LOG_ERROR); // the bad value below warns
    setenv("ANNEAL_THREADS", "zero", 1);
    CHECK_EQ(anneal_thread_count(), n);
    unsetenv("ANNEAL_THREADS");
    uint64_t t0 = anneal_time_ns();
    usleep(2000);
    uint64_t t1 = anneal_time_ns();
    CHECK(t1 - t0 >= 2000000);
    char buf[32];
    anneal_time_utc(buf, sizeof buf);
    CHECK_EQ(strlen(buf), 20);
    CHECK(buf[10] == 'T' && buf[19] == 'Z');
    anneal_log_level l;
    CHECK_EQ(anneal_log_level_parse("WARN", &l), ANNEAL_OK);
    CHECK_EQ(l, ANNEAL_LOG_WARN);
    CHECK_EQ(anneal_log_level_parse("loud", &l), ANNEAL_ERR_INVALID_ARG);
}

static void test_log_json(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/log.txt", test_tmpdir());
    fflush(stderr);
    int saved = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
    anneal_log_set_level(ANNEAL_LOG_INFO);
    anneal_log_set_json(true);
    anneal_log(ANNEAL_LOG_INFO, "req-42", "loaded \"%s\"", "model.gguf");
    anneal_log(ANNEAL_LOG_DEBUG, NULL, "hidden");
    anneal_log_set_json(false);
    anneal_log(ANNEAL_LOG_WARN, NULL, "plain");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char *data;
    size_t size;
    CHECK_EQ(anneal_read_file(path, 4096, &data, &size, NULL), ANNEAL_OK);
    char *nl = strchr(data, '\n');
    CHECK(nl != NULL);
    if (nl) {
        json_t *v = anneal_json_parse(data, (size_t)(nl - data), "log line", NULL);
        CHECK(v != NULL);
        CHECK_STR(json_string_value(json_object_get(v, "level")), "info");
        CHECK_STR(json_string_value(json_object_get(v, "req")), "req-42");
        CHECK_STR(json_string_value(json_object_get(v, "msg")), "loaded \"model.gguf\"");
        json_decref(v);
        CHECK_CONTAINS(nl + 1, " warn plain\n");
        CHECK(strstr(data, "hidden") == NULL);
    }
    anneal_free(data);
    unlink(path);
}

typedef struct pool_job {
    int64_t n;
    int64_t *out;         // out[i] = i * 3 for every i, written by whichever thread owns i
    _Atomic int64_t calls; // fn invocations in this run
} pool_job;

static void pool_fill(void *arg, int ith, int nth) {
    pool_job *j = arg;
    int64_t lo, hi;
    anneal_split(j->n, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) j->out[i] += i * 3;
    atomic_fetch_add(&j->calls, 1);
}

static void test_pool(void) {
    int64_t lo, hi, total = 0;
    for (int ith = 0; ith < 3; ith++) {
        anneal_split(10, ith, 3, &lo, &hi);
        CHECK_EQ(hi - lo, ith == 0 ? 4 : 3);
        total += hi - lo;
    }
    CHECK_EQ(total, 10);
    anneal_split(2, 2, 3, &lo, &hi); // more threads than work: empty share
    CHECK_EQ(hi - lo, 0);

    const int sizes[] = {1, 2, 4, 7};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        anneal_pool *p = NULL;
        CHECK_EQ(anneal_pool_new(sizes[k], &p, NULL), ANNEAL_OK);
        CHECK_EQ(anneal_pool_size(p), sizes[k]);
        pool_job j = {.n = 1001};
        j.out = anneal_calloc((size_t)j.n, sizeof *j.out);
        // Many back-to-back runs: each element gets i*3 once per run, never twice or zero.
        const int runs = sizes[k] <= 2 ? 2000 : 200; // oversubscribed pools spin slowly
        for (int r = 0; r < runs; r++) anneal_pool_run(p, pool_fill, &j);
        int wrong = 0;
        for (int64_t i = 0; i < j.n; i++) wrong += j.out[i] != i * 3 * runs;
        CHECK_EQ(wrong, 0);
        CHECK_EQ(atomic_load(&j.calls), (int64_t)runs * sizes[k]);
        anneal_free(j.out);
        anneal_pool_free(p);
    }
    anneal_err e = {0};
    anneal_pool *p = NULL;
    CHECK_EQ(anneal_pool_new(0, &p, &e), ANNEAL_ERR_INVALID_ARG);
    CHECK(p == NULL);
    CHECK_CONTAINS(e.msg, "thread count 0");
    anneal_pool_free(NULL);
    anneal_pool_run(NULL, pool_fill, &(pool_job){.n = 0}); // no pool: runs inline
}

int main(void) {
    RUN(test_status_and_err);
    RUN(test_alloc);
    RUN(test_arena);
    RUN(test_files);
    RUN(test_utf8);
    RUN(test_sha256);
    RUN(test_hash64);
    RUN(test_json);
    RUN(test_threads_time);
    RUN(test_log_json);
    RUN(test_pool);
    rmdir(test_tmpdir());
    return TEST_EXIT();
}
