// GGUF reader and writer: exact values from the vocabulary fixtures, byte-for-byte round
// trips, every value type, and hand-made bad files with the offsets their errors must name.
#include "anneal/gguf.h"
#include "anneal/tensor.h"
#include "test.h"

#include <unistd.h>

static const char *FIXTURES[] = {
    "fixtures/vocab/ggml-vocab-llama-spm.gguf",
    "fixtures/vocab/ggml-vocab-phi-3.gguf",
    "fixtures/vocab/ggml-vocab-gpt-2.gguf",
    "fixtures/vocab/ggml-vocab-deepseek-llm.gguf",
};

static bool str_is(anneal_gguf_str s, const char *want) {
    return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

// ---- a tiny byte builder for hand-made files ------------------------------------------

typedef struct buf {
    uint8_t d[8192];
    size_t n;
} buf;

static void put(buf *b, const void *p, size_t n) {
    memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void put_u32(buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, x, 4);
}
static void put_u64(buf *b, uint64_t v) {
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}
static void put_str(buf *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void put_header(buf *b, uint64_t n_tensors, uint64_t n_kv) {
    b->n = 0;
    put(b, "GGUF", 4);
    put_u32(b, 3);
    put_u64(b, n_tensors);
    put_u64(b, n_kv);
}
static void put_pad(buf *b, size_t align) {
    while (b->n % align)
        b->d[b->n++] = 0;
}

// Opens b; expects status `want` and a message containing `needle` (NULL: expects success).
static void expect_bad(const buf *b, anneal_status want, const char *needle) {
    anneal_gguf *g = NULL;
    anneal_err err = {0};
    anneal_status st = anneal_gguf_open_memory(b->d, b->n, &g, &err);
    CHECK_EQ(st, want);
    CHECK(g == NULL);
    CHECK_CONTAINS(err.msg, needle);
    anneal_gguf_close(g);
}

// ---- fixtures -------------------------------------------------------------------------

static void test_llama_spm(void) {
    anneal_gguf *g = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_gguf_open(test_shared(FIXTURES[0]), &g, &err), ANNEAL_OK);
    if (!g) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    CHECK_EQ(anneal_gguf_version(g), 3);
    CHECK_EQ(anneal_gguf_n_kv(g), 22);
    CHECK_EQ(anneal_gguf_n_tensors(g), 0);
    CHECK_EQ(anneal_gguf_alignment(g), 32);
    CHECK_EQ(anneal_gguf_file_size(g), 723869);
    CHECK_EQ(anneal_gguf_meta_size(g), 723869);
    CHECK_EQ(anneal_gguf_data_offset(g), 723872);
    CHECK(str_is(anneal_gguf_kv_at(g, 0)->key, "general.architecture"));
    CHECK(anneal_gguf_kv_at(g, 22) == NULL);

    anneal_gguf_str s;
    CHECK_EQ(anneal_gguf_get_str(g, "general.architecture", &s, &err), ANNEAL_OK);
    CHECK(str_is(s, "llama"));
    CHECK_EQ(anneal_gguf_get_str(g, "tokenizer.ggml.model", &s, &err), ANNEAL_OK);
    CHECK(str_is(s, "llama"));
    uint64_t u = 0;
    CHECK_EQ(anneal_gguf_get_u64(g, "tokenizer.ggml.bos_token_id", &u, &err), ANNEAL_OK);
    CHECK_EQ(u, 1);
    CHECK_EQ(anneal_gguf_get_u64(g, "tokenizer.ggml.eos_token_id", &u, &err), ANNEAL_OK);
    CHECK_EQ(u, 2);
    CHECK_EQ(anneal_gguf_get_u64(g, "llama.vocab_size", &u, &err), ANNEAL_OK);
    CHECK_EQ(u, 32000);
    int64_t i = 0;
    CHECK_EQ(anneal_gguf_get_i64(g, "llama.context_length", &i, &err), ANNEAL_OK);
    CHECK_EQ(i, 4096);
    double f = 0;
    CHECK_EQ(anneal_gguf_get_f64(g, "llama.attention.layer_norm_rms_epsilon", &f, &err), ANNEAL_OK);
    CHECK_EQ(f, (double)1e-5f);
    bool b = false;
    CHECK_EQ(anneal_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, &err), ANNEAL_OK);
    CHECK(b);
    CHECK_EQ(anneal_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b, &err), ANNEAL_OK);
    CHECK(!b);

    const anneal_gguf_value *tok = NULL, *scores = NULL, *types = NULL;
    CHECK_EQ(anneal_gguf_get_arr(g, "tokenizer.ggml.tokens", ANNEAL_GGUF_STRING, &tok, &err),
             ANNEAL_OK);
    CHECK_EQ(tok->arr.n, 32000);
    CHECK(str_is(tok->arr.strs[0], "<unk>"));
    CHECK(str_is(tok->arr.strs[1], "<s>"));
    CHECK(str_is(tok->arr.strs[2], "</s>"));
    CHECK(str_is(tok->arr.strs[3], "<0x00>"));
    CHECK_EQ(anneal_gguf_get_arr(g, "tokenizer.ggml.scores", ANNEAL_GGUF_FLOAT32, &scores, &err),
             ANNEAL_OK);
    CHECK_EQ(scores->arr.n, 32000);
    CHECK_EQ(anneal_gguf_arr_f64(scores, 0), 0.0);
    CHECK_EQ(anneal_gguf_get_arr(g, "tokenizer.ggml.token_type", ANNEAL_GGUF_INT32, &types, &err),
             ANNEAL_OK);
    CHECK_EQ(anneal_gguf_arr_i64(types, 0), 2);
    CHECK_EQ(anneal_gguf_arr_i64(types, 1), 3);
    CHECK_EQ(anneal_gguf_arr_i64(types, 3), 6);
    CHECK_EQ(anneal_gguf_arr_f64(types, 2), 3.0);

    // Errors name the key.
    anneal_err e2 = {0};
    CHECK_EQ(anneal_gguf_get_u64(g, "no.such.key", &u, &e2), ANNEAL_ERR_NOT_FOUND);
    CHECK_CONTAINS(e2.msg, "no.such.key");
    anneal_err e3 = {0};
    CHECK_EQ(anneal_gguf_get_u64(g, "general.name", &u, &e3), ANNEAL_ERR_FORMAT);
    CHECK_CONTAINS(e3.msg, "general.name");
    anneal_err e4 = {0};
    CHECK_EQ(anneal_gguf_get_arr(g, "tokenizer.ggml.tokens", ANNEAL_GGUF_INT32, &tok, &e4),
             ANNEAL_ERR_FORMAT);
    CHECK_CONTAINS(e4.msg, "array of str");
    CHECK(anneal_gguf_find(g, "general.name") != NULL);
    CHECK(anneal_gguf_find(g, "general.nam") == NULL);
    CHECK(anneal_gguf_find_tensor(g, "token_embd.weight") == NULL);
    anneal_gguf_close(g);
}

static void test_other_fixtures(void) {
    struct {
        const char *file;
        uint64_t n_kv, n_tokens;
        const char *arch, *tok5;
        uint64_t bos, eos;
    } cases[] = {
        {FIXTURES[1], 26, 32064, "phi3", "<0x02>", 1, 32000},
        {FIXTURES[2], 16, 50257, "gpt2", "&", 50256, 50256},
        {FIXTURES[3], 23, 102400, "llama", "&", 100000, 100001},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        anneal_gguf *g = NULL;
        anneal_err err = {0};
        CHECK_EQ(anneal_gguf_open(test_shared(cases[c].file), &g, &err), ANNEAL_OK);
        if (!g) continue;
        CHECK_EQ(anneal_gguf_n_kv(g), cases[c].n_kv);
        CHECK_EQ(anneal_gguf_n_tensors(g), 0);
        anneal_gguf_str s;
        CHECK_EQ(anneal_gguf_get_str(g, "general.architecture", &s, &err), ANNEAL_OK);
        CHECK(str_is(s, cases[c].arch));
        const anneal_gguf_value *tok = NULL;
        CHECK_EQ(anneal_gguf_get_arr(g, "tokenizer.ggml.tokens", ANNEAL_GGUF_STRING, &tok, &err),
                 ANNEAL_OK);
        if (tok) {
            CHECK_EQ(tok->arr.n, cases[c].n_tokens);
            CHECK(str_is(tok->arr.strs[5], cases[c].tok5));
        }
        uint64_t u = 0;
        CHECK_EQ(anneal_gguf_get_u64(g, "tokenizer.ggml.bos_token_id", &u, &err), ANNEAL_OK);
        CHECK_EQ(u, cases[c].bos);
        CHECK_EQ(anneal_gguf_get_u64(g, "tokenizer.ggml.eos_token_id", &u, &err), ANNEAL_OK);
        CHECK_EQ(u, cases[c].eos);
        anneal_gguf_close(g);
    }
    // Merges (BPE vocabularies) are string arrays too.
    anneal_gguf *g = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_gguf_open(test_shared(FIXTURES[2]), &g, &err), ANNEAL_OK);
    const anneal_gguf_value *m = NULL;
    if (g) {
        CHECK_EQ(anneal_gguf_get_arr(g, "tokenizer.ggml.merges", ANNEAL_GGUF_STRING, &m, &err),
                 ANNEAL_OK);
        CHECK_EQ(m->arr.n, 50000);
        CHECK(str_is(m->arr.strs[2], "h e"));
        CHECK(str_is(m->arr.strs[0], "\xc4\xa0 t"));
    }
    anneal_gguf_close(g);
}

// ---- bad files ------------------------------------------------------------------------

static void test_bad_header(void) {
    buf b = {0};
    put(&b, "GGU", 3);
    expect_bad(&b, ANNEAL_ERR_FORMAT, "at offset 0: file is 3 bytes");
    b.n = 0;
    put(&b, "GGML", 4);
    put_u32(&b, 3);
    expect_bad(&b, ANNEAL_ERR_FORMAT, "at offset 0: bad magic 'GGML'");
    put_header(&b, 0, 0);
    b.n = 10; // truncated inside the tensor count
    expect_bad(&b, ANNEAL_ERR_FORMAT, "at offset 8: tensor count needs 8 bytes");
    put_header(&b, 0, 0);
    b.d[4] = 1;
    expect_bad(&b, ANNEAL_ERR_UNSUPPORTED, "at offset 4: GGUF version 1 is not supported");
    b.d[4] = 0;
    b.d[7] = 3;
    expect_bad(&b, ANNEAL_ERR_UNSUPPORTED, "at offset 4: version 0x03000000 looks byte-swapped");
    put_header(&b, 0, 1ull << 40);
    expect_bad(&b, ANNEAL_ERR_FORMAT, "at offset 16: 1099511627776 key/values cannot fit");
    put_header(&b, 1ull << 62, 0);
    expect_bad(&b, ANNEAL_ERR_FORMAT, "at offset 8: 4611686018427387904 tensors");
    // Version 2 has the same layout and is accepted.
    put_header(&b, 0, 0);
    b.d[4] = 2;
    anneal_gguf *g = NULL;
    CHECK_EQ(anneal_gguf_open_memory(b.d, b.n, &g, NULL), ANNEAL_OK);
    if (g) CHECK_EQ(anneal_gguf_version(g), 2);
    anneal_gguf_close(g);
    // Empty input.
    CHECK_EQ(anneal_gguf_open_memory(NULL, 0, &g, NULL), ANNEAL_ERR_FORMAT);
}

static void test_bad_kvs(void) {
    buf b = {0};
    // A u8 array claiming 2^60 elements: rejected before allocating anything.
    put_header(&b, 0, 1);
    put_str(&b, "big");             // 24..35
    put_u32(&b, ANNEAL_GGUF_ARRAY); // 35
    put_u32(&b, ANNEAL_GGUF_UINT8); // 39
    put_u64(&b, 1ull << 60);        // 43
    put_u64(&b, 0);
    expect_bad(&b, ANNEAL_ERR_FORMAT, "at offset 43: key 'big': array of 1152921504606846976 u8");
    // A string array of 2^40 strings.
    put_header(&b, 0, 1);
    put_str(&b, "big");
    put_u32(&b, ANNEAL_GGUF_ARRAY);
    put_u32(&b, ANNEAL_GGUF_STRING);
    put_u64(&b, 1ull << 40);
    put_u64(&b, 0);
    expect_bad(&b, ANNEAL_ERR_FORMAT, "at offset 43: key 'big': array of 1099511627776 str");
    // String length past the end.
    put_header(&b, 0, 1);
    put_str(&b, "name");             // 24..36
    put_u32(&b, ANNEAL_GGUF_STRING); // 36
    put_u64(&b, 1000);               // 40
    put(&b, "abc", 3);
    expect_bad(&b, ANNEAL_ERR_FORMAT, "at offset 40: key 'name': string length 1000 runs past");
    // Key length past the end.
    put_header(&b, 0, 1);
    put_u64(&b, 0xFFFFFFFFFFFFull);
    put_u32(&b, 0);
    put_u32(&b, 0);
    expect_bad(&b, ANNEAL_ERR_FORMAT, "at offset 24: key 0 length 281474976710655 runs past");
    // Bad value type.
    put_header(&b, 0, 1);
    put_str(&b, "k");
    put_u32(&b, 13); // 33
    put_u32(&b, 0);
    expect_bad(&b, ANNEAL_ERR_FORMAT, "at offset 33: key 'k': value type 13 is not a GGUF type");
    // Duplicate key.
    put_header(&b, 0, 2);
    put_str(&b, "a.b");
    put_u32(&b, ANNEAL_GGUF_UINT8);
    b.d[b.n++] = 7; // 24 + 11 + 4 + 1 = 40
    put_str(&b, "a.b");
    put_u32(&b, ANNEAL_GGUF_UINT8);
    b.d[b.n++] = 8;
    expect_bad(&b, ANNEAL_ERR_FORMAT,
               "at offset 40: key 'a.b': duplicate key (key/values 0 and 1)");
    // Empty key.
    put_header(&b, 0, 1);
    put_u64(&b, 0);
    put_u32(&b, ANNEAL_GGUF_UINT8);
    b.d[b.n++] = 0;
    expect_bad(&b, ANNEAL_ERR_FORMAT, "at offset 24: key 0 is empty");
    // Bool that is neither 0 nor 1.
    put_header(&b, 0, 1);
    put_str(&b, "flag");
    put_u32(&b, ANNEAL_GGUF_BOOL);
    b.d[b.n++] = 2; // at 40
    expect_bad(&b, ANNEAL_ERR_FORMAT, "at offset 40: key 'flag': bool value is 2");
    // Alignment: wrong type, zero, not a power of two.
    put_header(&b, 0, 1);
    put_str(&b, "general.alignment"); // 24..49
    put_u32(&b, ANNEAL_GGUF_UINT64);  // 49
    put_u64(&b, 64);
    expect_bad(&b, ANNEAL_ERR_FORMAT,
               "at offset 49: key 'general.alignment': must be u32, not u64");
    put_header(&b, 0, 1);
    put_str(&b, "general.alignment");
    put_u32(&b, ANNEAL_GGUF_UINT32);
    put_u32(&b, 48); // 53
    expect_bad(&b, ANNEAL_ERR_FORMAT,
               "at offset 53: key 'general.alignment': alignment 48 is not a power of two");
    put_header(&b, 0, 1);
    put_str(&b, "general.alignment");
    put_u32(&b, ANNEAL_GGUF_UINT32);
    put_u32(&b, 0);
    expect_bad(&b, ANNEAL_ERR_FORMAT, "alignment 0 is not a power of two");
    // Nesting deeper than the cap.
    put_header(&b, 0, 1);
    put_str(&b, "deep");
    put_u32(&b, ANNEAL_GGUF_ARRAY);
    for (int d = 0; d < 9; d++) {
        put_u32(&b, ANNEAL_GGUF_ARRAY);
        put_u64(&b, 1);
    }
    put_u64(&b, 0);
    expect_bad(&b, ANNEAL_ERR_LIMIT, "arrays nested more than 8 deep");
    // Bad array element type.
    put_header(&b, 0, 1);
    put_str(&b, "arr");
    put_u32(&b, ANNEAL_GGUF_ARRAY); // 35
    put_u32(&b, 77);                // 39
    put_u64(&b, 0);
    expect_bad(&b, ANNEAL_ERR_FORMAT, "at offset 39: key 'arr': array element type 77");
    // A key with unprintable bytes is quoted safely in messages.
    put_header(&b, 0, 1);
    put_str(&b, "k\n\x01");
    put_u32(&b, 99);
    expect_bad(&b, ANNEAL_ERR_FORMAT, "key 'k\\x0a\\x01'");
}

// One tensor info: name, dims, type, offset.
static void put_tensor(buf *b, const char *name, uint32_t n_dims, const uint64_t *dims,
                       uint32_t type, uint64_t offset) {
    put_str(b, name);
    put_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++)
        put_u64(b, dims[i]);
    put_u32(b, type);
    put_u64(b, offset);
}

static void test_bad_tensors(void) {
    buf b = {0};
    uint64_t d4[] = {4};
    // Offset past the end of the file: info at 24, name 8+1, n_dims 4, dim 8, type 4 -> offset
    // field at 49.
    put_header(&b, 1, 0);
    put_tensor(&b, "t", 1, d4, ANNEAL_TYPE_F32, 64);
    put_pad(&b, 32);
    memset(b.d + b.n, 0, 16);
    b.n += 16;
    expect_bad(&b, ANNEAL_ERR_FORMAT,
               "at offset 49: tensor 't': data at 64 + 16 bytes runs past the end");
    // Misaligned offset.
    put_header(&b, 1, 0);
    put_tensor(&b, "t", 1, d4, ANNEAL_TYPE_F32, 8);
    put_pad(&b, 32);
    b.n += 64;
    expect_bad(&b, ANNEAL_ERR_FORMAT,
               "at offset 49: tensor 't': data offset 8 is not a multiple of the alignment 32");
    // Dimension product overflow: the second dimension (at 45) pushes it past 2^63-1.
    uint64_t dbig[] = {1ull << 40, 1ull << 30};
    put_header(&b, 1, 0);
    put_tensor(&b, "t", 2, dbig, ANNEAL_TYPE_F32, 0);
    expect_bad(&b, ANNEAL_ERR_FORMAT, "at offset 45: tensor 't': element count overflows");
    uint64_t dneg[] = {1ull << 63};
    put_header(&b, 1, 0);
    put_tensor(&b, "t", 1, dneg, ANNEAL_TYPE_F32, 0);
    expect_bad(&b, ANNEAL_ERR_FORMAT,
               "at offset 37: tensor 't': dimension 0 is 9223372036854775808");
    // Bytes overflow: 2^62 f32 elements.
    uint64_t dbytes[] = {1ull << 62};
    put_header(&b, 1, 0);
    put_tensor(&b, "t", 1, dbytes, ANNEAL_TYPE_F32, 0);
    expect_bad(&b, ANNEAL_ERR_FORMAT,
               "at offset 45: tensor 't': size in bytes of 4611686018427387904 f32");
    // Too many dims (n_dims at 33).
    uint64_t d5[] = {1, 1, 1, 1, 1};
    put_header(&b, 1, 0);
    put_tensor(&b, "t", 5, d5, ANNEAL_TYPE_F32, 0);
    expect_bad(&b, ANNEAL_ERR_FORMAT, "at offset 33: tensor 't': n_dims is 5 (at most 4)");
    // Row not a multiple of the block size.
    uint64_t d33[] = {33, 2};
    put_header(&b, 1, 0);
    put_tensor(&b, "t", 2, d33, ANNEAL_TYPE_Q4_0, 0);
    expect_bad(&b, ANNEAL_ERR_FORMAT, "row length 33 is not a multiple of the q4_0 block size 32");
    // Duplicate tensor names (second info at 24 + 33 = 57).
    put_header(&b, 2, 0);
    put_tensor(&b, "t", 1, d4, ANNEAL_TYPE_F32, 0);
    put_tensor(&b, "t", 1, d4, ANNEAL_TYPE_F32, 32);
    put_pad(&b, 32);
    b.n += 64;
    expect_bad(&b, ANNEAL_ERR_FORMAT,
               "at offset 57: tensor 't': duplicate tensor name (tensors 0 and 1)");
    // Overlap: b starts inside a.
    uint64_t d16[] = {16};
    put_header(&b, 2, 0);
    put_tensor(&b, "a", 1, d16, ANNEAL_TYPE_F32, 0); // 64 bytes
    put_tensor(&b, "b", 1, d4, ANNEAL_TYPE_F32, 32); // offset field at 57 + 25 = 82
    put_pad(&b, 32);
    b.n += 128;
    expect_bad(&b, ANNEAL_ERR_FORMAT,
               "at offset 82: tensor 'b': data [32, 48) overlaps tensor 'a' [0, 64)");
    // Tensors but the file ends before the data section.
    put_header(&b, 1, 0);
    put_tensor(&b, "t", 1, d4, ANNEAL_TYPE_F32, 0); // ends at 57
    expect_bad(&b, ANNEAL_ERR_FORMAT, "at offset 57: the data section should start at 64");
    // Truncated inside the tensor infos.
    put_header(&b, 1, 0);
    put_tensor(&b, "t", 2, d33, ANNEAL_TYPE_F32, 0);
    b.n = 50;
    expect_bad(&b, ANNEAL_ERR_FORMAT,
               "at offset 45: tensor 't': dimension needs 8 bytes but the file ends after 5");
}

static void test_unknown_type_and_zero_dims(void) {
    buf b = {0};
    uint64_t d4[] = {4};
    put_header(&b, 3, 0);
    put_tensor(&b, "mystery", 1, d4, 99, 0);
    put_tensor(&b, "scalar", 0, NULL, ANNEAL_TYPE_F32, 0);
    put_tensor(&b, "vec", 1, d4, ANNEAL_TYPE_F32, 32);
    put_pad(&b, 32);
    size_t data = b.n;
    for (int i = 0; i < 48; i++)
        b.d[b.n++] = (uint8_t)i;
    anneal_gguf *g = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_gguf_open_memory(b.d, b.n, &g, &err), ANNEAL_OK);
    if (!g) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    CHECK_EQ(anneal_gguf_data_offset(g), data);
    const anneal_gguf_tensor *t = anneal_gguf_find_tensor(g, "mystery");
    CHECK(t && t->type == 99 && t->nbytes == 0 && t->data == NULL);
    t = anneal_gguf_find_tensor(g, "scalar");
    CHECK(t && t->n_dims == 0 && t->dims[0] == 1 && t->nbytes == 4 && t->data == b.d + data);
    t = anneal_gguf_find_tensor(g, "vec");
    CHECK(t && t->nbytes == 16 && t->data == b.d + data + 32 && t->data[0] == 32);
    CHECK_EQ(anneal_gguf_tensor_at(g, 2)->offset, 32);
    CHECK(anneal_gguf_tensor_at(g, 3) == NULL);
    anneal_gguf_close(g);
}

// ---- writing and round trips ----------------------------------------------------------

static bool files_equal(const char *a, const char *b) {
    anneal_map ma, mb;
    if (anneal_map_file(a, &ma, NULL) || anneal_map_file(b, &mb, NULL)) return false;
    bool eq = ma.size == mb.size && (ma.size == 0 || memcmp(ma.data, mb.data, ma.size) == 0);
    if (!eq) {
        size_t i = 0;
        while (i < ma.size && i < mb.size && ma.data[i] == mb.data[i])
            i++;
        fprintf(stderr, "  %s (%zu bytes) and %s (%zu bytes) differ at byte %zu\n", a, ma.size, b,
                mb.size, i);
    }
    anneal_unmap(&ma);
    anneal_unmap(&mb);
    return eq;
}

static bool mem_equals_file(const void *p, size_t n, const char *path) {
    anneal_map m;
    if (anneal_map_file(path, &m, NULL)) return false;
    bool eq = m.size == n && memcmp(m.data, p, n) == 0;
    if (!eq) {
        size_t i = 0;
        while (i < n && i < m.size && m.data[i] == ((const uint8_t *)p)[i])
            i++;
        fprintf(stderr, "  %s: %zu bytes vs %zu expected, first difference at byte %zu\n", path,
                m.size, n, i);
    }
    anneal_unmap(&m);
    return eq;
}

// Opens src, copies everything into a writer, writes dst.
static anneal_status copy_file(const char *src, const char *dst, anneal_err *err) {
    anneal_gguf *g = NULL;
    anneal_status st = anneal_gguf_open(src, &g, err);
    if (st) return st;
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    st = anneal_gguf_writer_copy(w, g);
    if (!st)
        st = anneal_gguf_writer_write(w, dst, err);
    else
        anneal_err_set(err, st, "copy failed");
    anneal_gguf_writer_free(w);
    anneal_gguf_close(g);
    return st;
}

static void test_fixture_round_trip(void) {
    char out[512];
    for (size_t i = 0; i < sizeof FIXTURES / sizeof FIXTURES[0]; i++) {
        snprintf(out, sizeof out, "%s/copy-%zu.gguf", test_tmpdir(), i);
        char src[4096];
        snprintf(src, sizeof src, "%s", test_shared(FIXTURES[i]));
        anneal_err err = {0};
        CHECK_EQ(copy_file(src, out, &err), ANNEAL_OK);
        if (err.status) fprintf(stderr, "  %s\n", err.msg);
        CHECK(files_equal(src, out));
        unlink(out);
    }
}

// Scalars and arrays of every type, including arrays of arrays of strings and u16s.
static void set_every_type(anneal_gguf_writer *w) {
    CHECK_EQ(anneal_gguf_writer_set_str(w, "general.architecture", "llama"), ANNEAL_OK);
    anneal_gguf_value v;
    for (int t = 0; t < ANNEAL_GGUF_TYPE_COUNT; t++) {
        if (t == ANNEAL_GGUF_STRING || t == ANNEAL_GGUF_ARRAY) continue;
        memset(&v, 0, sizeof v);
        v.type = (anneal_gguf_type)t;
        switch (t) {
        case ANNEAL_GGUF_UINT8:
            v.u64 = 200;
            break;
        case ANNEAL_GGUF_INT8:
            v.i64 = -100;
            break;
        case ANNEAL_GGUF_UINT16:
            v.u64 = 65000;
            break;
        case ANNEAL_GGUF_INT16:
            v.i64 = -32000;
            break;
        case ANNEAL_GGUF_UINT32:
            v.u64 = 4000000000u;
            break;
        case ANNEAL_GGUF_INT32:
            v.i64 = -2000000000;
            break;
        case ANNEAL_GGUF_FLOAT32:
            v.f64 = 0.25;
            break;
        case ANNEAL_GGUF_BOOL:
            v.b = true;
            break;
        case ANNEAL_GGUF_UINT64:
            v.u64 = UINT64_MAX;
            break;
        case ANNEAL_GGUF_INT64:
            v.i64 = INT64_MIN;
            break;
        case ANNEAL_GGUF_FLOAT64:
            v.f64 = -1.5e300;
            break;
        }
        char key[32];
        snprintf(key, sizeof key, "test.scalar.%s", anneal_gguf_type_name(v.type));
        CHECK_EQ(anneal_gguf_writer_set_value(w, key, &v), ANNEAL_OK);
        // Arrays of the same type: three elements, raw little-endian bytes.
        uint8_t raw[24];
        for (int k = 0; k < 24; k++)
            raw[k] = (uint8_t)(k * 37 + t);
        if (t == ANNEAL_GGUF_BOOL) raw[0] = 1, raw[1] = 0, raw[2] = 1;
        anneal_gguf_value a = {.type = ANNEAL_GGUF_ARRAY};
        a.arr.elem = (anneal_gguf_type)t;
        a.arr.n = 3;
        a.arr.data = raw;
        snprintf(key, sizeof key, "test.array.%s", anneal_gguf_type_name(v.type));
        CHECK_EQ(anneal_gguf_writer_set_value(w, key, &a), ANNEAL_OK);
    }
    anneal_gguf_str strs[3] = {{"a", 1}, {"", 0}, {"\xe2\x96\x81hello\0x", 9}};
    anneal_gguf_value sa = {.type = ANNEAL_GGUF_ARRAY};
    sa.arr.elem = ANNEAL_GGUF_STRING;
    sa.arr.n = 3;
    sa.arr.strs = strs;
    CHECK_EQ(anneal_gguf_writer_set_value(w, "test.array.str", &sa), ANNEAL_OK);
    uint8_t u16s[4] = {1, 0, 2, 0};
    anneal_gguf_value inner[3] = {sa, {.type = ANNEAL_GGUF_ARRAY}, {.type = ANNEAL_GGUF_ARRAY}};
    inner[1].arr.elem = ANNEAL_GGUF_UINT16;
    inner[1].arr.n = 2;
    inner[1].arr.data = u16s;
    inner[2].arr.elem = ANNEAL_GGUF_ARRAY; // an empty array of arrays
    anneal_gguf_value outer = {.type = ANNEAL_GGUF_ARRAY};
    outer.arr.elem = ANNEAL_GGUF_ARRAY;
    outer.arr.n = 3;
    outer.arr.vals = inner;
    anneal_gguf_value outer2 = {.type = ANNEAL_GGUF_ARRAY};
    outer2.arr.elem = ANNEAL_GGUF_ARRAY;
    outer2.arr.n = 1;
    outer2.arr.vals = &outer;
    CHECK_EQ(anneal_gguf_writer_set_value(w, "test.nested", &outer2), ANNEAL_OK);
}

static void check_every_type(const anneal_gguf *g) {
    anneal_err err = {0};
    uint64_t u;
    int64_t i;
    double f;
    bool b;
    CHECK_EQ(anneal_gguf_get_u64(g, "test.scalar.u8", &u, &err), ANNEAL_OK);
    CHECK_EQ(u, 200);
    CHECK_EQ(anneal_gguf_get_i64(g, "test.scalar.i8", &i, &err), ANNEAL_OK);
    CHECK_EQ(i, -100);
    CHECK_EQ(anneal_gguf_get_u64(g, "test.scalar.u16", &u, &err), ANNEAL_OK);
    CHECK_EQ(u, 65000);
    CHECK_EQ(anneal_gguf_get_i64(g, "test.scalar.i16", &i, &err), ANNEAL_OK);
    CHECK_EQ(i, -32000);
    CHECK_EQ(anneal_gguf_get_u64(g, "test.scalar.u32", &u, &err), ANNEAL_OK);
    CHECK_EQ(u, 4000000000u);
    CHECK_EQ(anneal_gguf_get_i64(g, "test.scalar.i32", &i, &err), ANNEAL_OK);
    CHECK_EQ(i, -2000000000);
    CHECK_EQ(anneal_gguf_get_f64(g, "test.scalar.f32", &f, &err), ANNEAL_OK);
    CHECK_EQ(f, 0.25);
    CHECK_EQ(anneal_gguf_get_bool(g, "test.scalar.bool", &b, &err), ANNEAL_OK);
    CHECK(b);
    CHECK_EQ(anneal_gguf_get_u64(g, "test.scalar.u64", &u, &err), ANNEAL_OK);
    CHECK(u == UINT64_MAX);
    CHECK_EQ(anneal_gguf_get_i64(g, "test.scalar.i64", &i, &err), ANNEAL_OK);
    CHECK(i == INT64_MIN);
    CHECK_EQ(anneal_gguf_get_f64(g, "test.scalar.f64", &f, &err), ANNEAL_OK);
    CHECK(f == -1.5e300);
    // Range errors of the integer getters.
    anneal_err e1 = {0};
    CHECK_EQ(anneal_gguf_get_u64(g, "test.scalar.i8", &u, &e1), ANNEAL_ERR_RANGE);
    anneal_err e2 = {0};
    CHECK_EQ(anneal_gguf_get_i64(g, "test.scalar.u64", &i, &e2), ANNEAL_ERR_RANGE);
    CHECK_CONTAINS(e2.msg, "test.scalar.u64");

    const anneal_gguf_value *a = NULL;
    CHECK_EQ(anneal_gguf_get_arr(g, "test.array.i16", ANNEAL_GGUF_INT16, &a, &err), ANNEAL_OK);
    if (a) {
        // raw bytes k*37+3: element 1 = bytes 77, 114 -> 0x724d
        CHECK_EQ(anneal_gguf_arr_i64(a, 1), 0x724d);
    }
    CHECK_EQ(anneal_gguf_get_arr(g, "test.array.bool", ANNEAL_GGUF_BOOL, &a, &err), ANNEAL_OK);
    if (a) {
        CHECK_EQ(anneal_gguf_arr_i64(a, 0), 1);
        CHECK_EQ(anneal_gguf_arr_i64(a, 1), 0);
    }
    CHECK_EQ(anneal_gguf_get_arr(g, "test.array.str", ANNEAL_GGUF_STRING, &a, &err), ANNEAL_OK);
    if (a) {
        CHECK_EQ(a->arr.n, 3);
        CHECK(str_is(a->arr.strs[0], "a"));
        CHECK_EQ(a->arr.strs[1].len, 0);
        CHECK_EQ(a->arr.strs[2].len, 9);
        CHECK(memcmp(a->arr.strs[2].ptr, "\xe2\x96\x81hello\0x", 9) == 0);
    }
    CHECK_EQ(anneal_gguf_get_arr(g, "test.nested", ANNEAL_GGUF_ARRAY, &a, &err), ANNEAL_OK);
    if (a) {
        CHECK_EQ(a->arr.n, 1);
        const anneal_gguf_value *o = &a->arr.vals[0];
        CHECK_EQ(o->type, ANNEAL_GGUF_ARRAY);
        CHECK_EQ(o->arr.elem, ANNEAL_GGUF_ARRAY);
        CHECK_EQ(o->arr.n, 3);
        CHECK_EQ(o->arr.vals[0].arr.elem, ANNEAL_GGUF_STRING);
        CHECK(str_is(o->arr.vals[0].arr.strs[0], "a"));
        CHECK_EQ(o->arr.vals[1].arr.elem, ANNEAL_GGUF_UINT16);
        CHECK_EQ(anneal_gguf_arr_i64(&o->arr.vals[1], 1), 2);
        CHECK_EQ(o->arr.vals[2].arr.elem, ANNEAL_GGUF_ARRAY);
        CHECK_EQ(o->arr.vals[2].arr.n, 0);
    }
}

static void test_every_type_round_trip(void) {
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s/types1.gguf", test_tmpdir());
    snprintf(p2, sizeof p2, "%s/types2.gguf", test_tmpdir());
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    set_every_type(w);
    anneal_err err = {0};
    CHECK_EQ(anneal_gguf_writer_write(w, p1, &err), ANNEAL_OK);
    anneal_gguf_writer_free(w);
    anneal_gguf *g = NULL;
    CHECK_EQ(anneal_gguf_open(p1, &g, &err), ANNEAL_OK);
    if (!g) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    CHECK_EQ(anneal_gguf_n_kv(g), 1 + 2 * 11 + 2);
    check_every_type(g);
    // ggml pads after the metadata even without tensors; so does a fresh writer.
    CHECK_EQ(anneal_gguf_file_size(g), anneal_gguf_data_offset(g));
    anneal_gguf_close(g);
    CHECK_EQ(copy_file(p1, p2, &err), ANNEAL_OK);
    CHECK(files_equal(p1, p2));
    unlink(p1);
    unlink(p2);
}

// Tensors of several types, laid out the way ggml and gguf-py do.
static void test_tensors_round_trip(void) {
    static uint8_t data[4][4096];
    for (int t = 0; t < 4; t++)
        for (int k = 0; k < 4096; k++)
            data[t][k] = (uint8_t)(k * 7 + t + 1);
    struct {
        const char *name;
        uint32_t type, n_dims;
        uint64_t dims[4], nbytes;
    } ts[] = {
        {"token_embd.weight", ANNEAL_TYPE_Q4_0, 2, {64, 3}, 6 * 18},
        {"norm.weight", ANNEAL_TYPE_F32, 1, {7}, 28},
        {"blk.0.ffn.weight", ANNEAL_TYPE_Q4_K, 2, {256, 2}, 288},
        {"x.f16", ANNEAL_TYPE_F16, 3, {3, 1, 5}, 30},
        {"x.q8_0", ANNEAL_TYPE_Q8_0, 1, {32}, 34},
        {"x.bf16", ANNEAL_TYPE_BF16, 4, {2, 2, 2, 2}, 32},
        {"x.i8", ANNEAL_TYPE_I8, 1, {1}, 1},
        {"x.empty", ANNEAL_TYPE_F32, 2, {0, 4}, 0},
        {"x.q6_k", ANNEAL_TYPE_Q6_K, 1, {256}, 210},
    };
    size_t nt = sizeof ts / sizeof ts[0];
    for (uint32_t align = 32; align <= 64; align *= 2) {
        anneal_gguf_writer *w = anneal_gguf_writer_new();
        CHECK_EQ(anneal_gguf_writer_set_str(w, "general.architecture", "llama"), ANNEAL_OK);
        if (align != 32)
            CHECK_EQ(anneal_gguf_writer_set_u32(w, "general.alignment", align), ANNEAL_OK);
        for (size_t i = 0; i < nt; i++)
            CHECK_EQ(anneal_gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims,
                                                   ts[i].dims, data[i % 4], ts[i].nbytes),
                     ANNEAL_OK);
        char p1[512], p2[512];
        snprintf(p1, sizeof p1, "%s/t1.gguf", test_tmpdir());
        snprintf(p2, sizeof p2, "%s/t2.gguf", test_tmpdir());
        anneal_err err = {0};
        CHECK_EQ(anneal_gguf_writer_write(w, p1, &err), ANNEAL_OK);
        anneal_gguf_writer_free(w);
        anneal_gguf *g = NULL;
        CHECK_EQ(anneal_gguf_open(p1, &g, &err), ANNEAL_OK);
        if (!g) {
            fprintf(stderr, "  %s\n", err.msg);
            return;
        }
        CHECK_EQ(anneal_gguf_alignment(g), align);
        CHECK_EQ(anneal_gguf_n_tensors(g), nt);
        CHECK_EQ(anneal_gguf_data_offset(g) % align, 0);
        uint64_t expect_off = 0;
        for (size_t i = 0; i < nt; i++) {
            const anneal_gguf_tensor *t = anneal_gguf_tensor_at(g, i);
            CHECK(str_is(t->name, ts[i].name));
            CHECK_EQ(t->type, ts[i].type);
            CHECK_EQ(t->n_dims, ts[i].n_dims);
            for (uint32_t d = 0; d < 4; d++)
                CHECK_EQ(t->dims[d], d < ts[i].n_dims ? ts[i].dims[d] : 1);
            CHECK_EQ(t->offset, expect_off);
            CHECK_EQ(t->nbytes, ts[i].nbytes);
            CHECK(t->nbytes == 0 || memcmp(t->data, data[i % 4], t->nbytes) == 0);
            expect_off += (t->nbytes + align - 1) / align * align;
        }
        CHECK_EQ(anneal_gguf_file_size(g), anneal_gguf_data_offset(g) + expect_off);
        CHECK(anneal_gguf_find_tensor(g, "x.q8_0") == anneal_gguf_tensor_at(g, 4));
        anneal_gguf_close(g);
        CHECK_EQ(copy_file(p1, p2, &err), ANNEAL_OK);
        CHECK(files_equal(p1, p2));
        unlink(p1);
        unlink(p2);
    }
}

// A file laid out by hand the way gguf-py writes one (two tensors, padding after each),
// and a ggml-style one without tensors (padded): copies must be byte-identical.
static void test_foreign_layouts(void) {
    static buf b;
    put_header(&b, 2, 2);
    put_str(&b, "general.architecture");
    put_u32(&b, ANNEAL_GGUF_STRING);
    put_str(&b, "llama");
    put_str(&b, "general.alignment");
    put_u32(&b, ANNEAL_GGUF_UINT32);
    put_u32(&b, 16);
    uint64_t d5[] = {5}, d32[] = {32};
    put_tensor(&b, "a", 1, d5, ANNEAL_TYPE_F32, 0);    // 20 bytes -> padded to 32
    put_tensor(&b, "b", 1, d32, ANNEAL_TYPE_Q8_0, 32); // 34 bytes -> padded to 48
    put_pad(&b, 16);
    for (int i = 0; i < 20; i++)
        b.d[b.n++] = (uint8_t)(i + 1);
    put_pad(&b, 16);
    for (int i = 0; i < 34; i++)
        b.d[b.n++] = (uint8_t)(0x80 + i);
    put_pad(&b, 16);
    char p[512];
    snprintf(p, sizeof p, "%s/foreign.gguf", test_tmpdir());
    anneal_gguf *g = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_gguf_open_memory(b.d, b.n, &g, &err), ANNEAL_OK);
    if (!g) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    CHECK_EQ(anneal_gguf_writer_copy(w, g), ANNEAL_OK);
    CHECK_EQ(anneal_gguf_writer_write(w, p, &err), ANNEAL_OK);
    CHECK(mem_equals_file(b.d, b.n, p));
    anneal_gguf_writer_free(w);
    anneal_gguf_close(g);

    put_header(&b, 0, 1);
    put_str(&b, "general.name");
    put_u32(&b, ANNEAL_GGUF_STRING);
    put_str(&b, "x");
    put_pad(&b, 32);
    CHECK_EQ(anneal_gguf_open_memory(b.d, b.n, &g, &err), ANNEAL_OK);
    w = anneal_gguf_writer_new();
    CHECK_EQ(anneal_gguf_writer_copy(w, g), ANNEAL_OK);
    CHECK_EQ(anneal_gguf_writer_write(w, p, &err), ANNEAL_OK);
    CHECK(mem_equals_file(b.d, b.n, p));
    anneal_gguf_writer_free(w);
    anneal_gguf_close(g);
    unlink(p);
}

static void test_writer_errors(void) {
    char p[512];
    snprintf(p, sizeof p, "%s/bad.gguf", test_tmpdir());
    uint64_t d4[] = {4};
    float f[4] = {0};
    // A copy of a tensor whose type we do not know cannot be written.
    buf b = {0};
    put_header(&b, 1, 0);
    put_tensor(&b, "mystery", 1, d4, 99, 0);
    put_pad(&b, 32);
    anneal_gguf *g = NULL;
    CHECK_EQ(anneal_gguf_open_memory(b.d, b.n, &g, NULL), ANNEAL_OK);
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    CHECK_EQ(anneal_gguf_writer_copy(w, g), ANNEAL_ERR_UNSUPPORTED);
    anneal_err err = {0};
    CHECK_EQ(anneal_gguf_writer_write(w, p, &err), ANNEAL_ERR_UNSUPPORTED);
    CHECK_CONTAINS(err.msg, "tensor 'mystery': type 99 is unknown");
    CHECK(access(p, F_OK) != 0);
    anneal_gguf_writer_free(w);
    anneal_gguf_close(g);

    w = anneal_gguf_writer_new();
    CHECK_EQ(anneal_gguf_writer_add_tensor(w, "t", ANNEAL_TYPE_F32, 1, d4, f, 15),
             ANNEAL_ERR_INVALID_ARG);
    CHECK_EQ(anneal_gguf_writer_add_tensor(w, "t", ANNEAL_TYPE_F32, 1, d4, f, 16), ANNEAL_OK);
    CHECK_EQ(anneal_gguf_writer_add_tensor(w, "t", ANNEAL_TYPE_F32, 1, d4, f, 16),
             ANNEAL_ERR_INVALID_ARG);
    err = (anneal_err){0};
    CHECK_EQ(anneal_gguf_writer_write(w, p, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(err.msg, "tensor 't': 15 bytes given, f32 dims need 16");
    anneal_gguf_writer_free(w);

    w = anneal_gguf_writer_new();
    CHECK_EQ(anneal_gguf_writer_set_u64(w, "general.alignment", 64), ANNEAL_OK);
    err = (anneal_err){0};
    CHECK_EQ(anneal_gguf_writer_write(w, p, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(err.msg, "general.alignment' must be a u32 power of two");
    CHECK_EQ(anneal_gguf_writer_set_u32(w, "general.alignment", 64),
             ANNEAL_OK); // replaces in place
    CHECK_EQ(anneal_gguf_writer_set_str(w, "", "x"), ANNEAL_ERR_INVALID_ARG);
    anneal_gguf_writer_free(w);

    w = anneal_gguf_writer_new();
    anneal_gguf_value v = {.type = ANNEAL_GGUF_UINT8, .u64 = 256};
    CHECK_EQ(anneal_gguf_writer_set_value(w, "k", &v), ANNEAL_ERR_RANGE);
    uint64_t q[] = {33};
    CHECK_EQ(anneal_gguf_writer_add_tensor(w, "q", ANNEAL_TYPE_Q4_0, 1, q, f, 18),
             ANNEAL_ERR_INVALID_ARG);
    CHECK_EQ(anneal_gguf_writer_add_tensor(
                 w, "0123456789012345678901234567890123456789012345678901234567890123",
                 ANNEAL_TYPE_F32, 1, d4, f, 16),
             ANNEAL_ERR_INVALID_ARG);
    anneal_gguf_writer_free(w);

    // Key order is insertion order; set replaces in place; remove closes the gap.
    w = anneal_gguf_writer_new();
    CHECK_EQ(anneal_gguf_writer_set_u32(w, "a", 1), ANNEAL_OK);
    CHECK_EQ(anneal_gguf_writer_set_i32(w, "b", -2), ANNEAL_OK);
    CHECK_EQ(anneal_gguf_writer_set_f32(w, "c", 3.5f), ANNEAL_OK);
    CHECK_EQ(anneal_gguf_writer_set_bool(w, "d", true), ANNEAL_OK);
    CHECK_EQ(anneal_gguf_writer_set_u32(w, "a", 7), ANNEAL_OK);
    CHECK_EQ(anneal_gguf_writer_remove(w, "b"), ANNEAL_OK);
    CHECK_EQ(anneal_gguf_writer_remove(w, "b"), ANNEAL_ERR_NOT_FOUND);
    for (int i = 0; i < 100; i++) {
        char key[16];
        snprintf(key, sizeof key, "many.%d", i);
        CHECK_EQ(anneal_gguf_writer_set_u64(w, key, (uint64_t)i), ANNEAL_OK);
    }
    err = (anneal_err){0};
    CHECK_EQ(anneal_gguf_writer_write(w, p, &err), ANNEAL_OK);
    anneal_gguf_writer_free(w);
    CHECK_EQ(anneal_gguf_open(p, &g, &err), ANNEAL_OK);
    if (g) {
        CHECK_EQ(anneal_gguf_n_kv(g), 103);
        CHECK(str_is(anneal_gguf_kv_at(g, 0)->key, "a"));
        CHECK(str_is(anneal_gguf_kv_at(g, 1)->key, "c"));
        CHECK(str_is(anneal_gguf_kv_at(g, 2)->key, "d"));
        CHECK(str_is(anneal_gguf_kv_at(g, 102)->key, "many.99"));
        uint64_t u = 0;
        CHECK_EQ(anneal_gguf_get_u64(g, "a", &u, NULL), ANNEAL_OK);
        CHECK_EQ(u, 7);
        CHECK_EQ(anneal_gguf_get_u64(g, "many.57", &u, NULL), ANNEAL_OK);
        CHECK_EQ(u, 57);
        CHECK(anneal_gguf_find(g, "b") == NULL);
    }
    anneal_gguf_close(g);
    unlink(p);
}

// ---- tensors filled by a callback -----------------------------------------------------

#define MAX_CALLS 64

typedef struct fill_src {
    const uint8_t *data[16]; // tensor i's bytes
    int fail_tensor;         // -1: never fail
    int fail_call;           // fail on this call (0-based) into fail_tensor
    bool fail_silent;        // fail without setting err
    int n_calls;
    struct {
        uint64_t i, off, n;
    } calls[MAX_CALLS];
} fill_src;

static anneal_status src_fill(void *ctx, uint64_t i, uint64_t off, void *dst, uint64_t n,
                              anneal_err *err) {
    fill_src *s = ctx;
    int k = s->n_calls++;
    if (k < MAX_CALLS) {
        s->calls[k].i = i;
        s->calls[k].off = off;
        s->calls[k].n = n;
    }
    if ((int)i == s->fail_tensor && s->fail_call-- == 0)
        return s->fail_silent ? ANNEAL_ERR_IO
                              : anneal_err_set(err, ANNEAL_ERR_IO, "boom in tensor %d", (int)i);
    memcpy(dst, s->data[i] + off, (size_t)n);
    return ANNEAL_OK;
}

static const struct {
    const char *name;
    uint32_t type, n_dims;
    uint64_t dims[4], nbytes;
} FILL_TS[] = {
    {"token_embd.weight", ANNEAL_TYPE_Q4_0, 2, {64, 3}, 6 * 18}, // rows of 36 bytes
    {"norm.weight", ANNEAL_TYPE_F32, 1, {7}, 28},                // one row
    {"x.f16", ANNEAL_TYPE_F16, 3, {3, 1, 5}, 30},                // 5 rows of 6 bytes
    {"x.empty", ANNEAL_TYPE_F32, 2, {0, 4}, 0},
    {"x.q6_k", ANNEAL_TYPE_Q6_K, 2, {256, 2}, 420}, // 2 rows of 210 bytes
};
#define N_FILL (sizeof FILL_TS / sizeof FILL_TS[0])

// A writer with FILL_TS: tensors whose bit is set in fill_mask come from src_fill.
static anneal_gguf_writer *fill_writer(fill_src *src, unsigned fill_mask, uint64_t chunk) {
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    anneal_gguf_writer_set_str(w, "general.name", "fill");
    anneal_gguf_writer_set_u32(w, "general.alignment", 64);
    if (chunk) anneal_gguf_writer_set_fill_chunk(w, chunk);
    for (size_t i = 0; i < N_FILL; i++) {
        anneal_status st;
        if (fill_mask & (1u << i))
            st = anneal_gguf_writer_add_tensor_fill(w, FILL_TS[i].name, FILL_TS[i].type,
                                                    FILL_TS[i].n_dims, FILL_TS[i].dims,
                                                    FILL_TS[i].nbytes, src_fill, src);
        else
            st = anneal_gguf_writer_add_tensor(w, FILL_TS[i].name, FILL_TS[i].type,
                                               FILL_TS[i].n_dims, FILL_TS[i].dims, src->data[i],
                                               FILL_TS[i].nbytes);
        CHECK_EQ(st, ANNEAL_OK);
    }
    return w;
}

static void test_fill_tensors(void) {
    static uint8_t data[N_FILL][512];
    fill_src src = {.fail_tensor = -1};
    for (size_t t = 0; t < N_FILL; t++) {
        for (int k = 0; k < 512; k++)
            data[t][k] = (uint8_t)(k * 13 + t * 5 + 1);
        src.data[t] = data[t];
    }
    char ref[512], out[512];
    snprintf(ref, sizeof ref, "%s/fill-ref.gguf", test_tmpdir());
    snprintf(out, sizeof out, "%s/fill.gguf", test_tmpdir());
    anneal_err err = {0};
    anneal_gguf_writer *w = fill_writer(&src, 0, 0);
    CHECK_EQ(anneal_gguf_writer_write(w, ref, &err), ANNEAL_OK);
    anneal_gguf_writer_free(w);

    // Every tensor filled, or some: the same bytes as from memory, whatever the chunk size.
    const unsigned masks[] = {0x1F, 0x15, 0x0A};
    const uint64_t chunks[] = {1, 40, 250, 0};
    for (size_t m = 0; m < 3; m++)
        for (size_t c = 0; c < 4; c++) {
            src.n_calls = 0;
            w = fill_writer(&src, masks[m], chunks[c]);
            CHECK_EQ(anneal_gguf_writer_write(w, out, &err), ANNEAL_OK);
            anneal_gguf_writer_free(w);
            CHECK(files_equal(ref, out));
            unlink(out);
        }

    // The calls: whole rows, in order, as many rows as fit the chunk (at least one), the empty
    // tensor never asked for.
    src.n_calls = 0;
    w = fill_writer(&src, 0x1F, 40);
    CHECK_EQ(anneal_gguf_writer_write(w, out, &err), ANNEAL_OK);
    anneal_gguf_writer_free(w);
    static const uint64_t want40[][3] = {{0, 0, 36}, {0, 36, 36}, {0, 72, 36},  {1, 0, 28},
                                         {2, 0, 30}, {4, 0, 210}, {4, 210, 210}};
    CHECK_EQ(src.n_calls, 7);
    for (int k = 0; k < 7 && k < src.n_calls; k++) {
        CHECK_EQ(src.calls[k].i, want40[k][0]);
        CHECK_EQ(src.calls[k].off, want40[k][1]);
        CHECK_EQ(src.calls[k].n, want40[k][2]);
    }
    CHECK(files_equal(ref, out));
    unlink(out);

    // A failing callback stops the write with its message; nothing appears at the path, and
    // a file already there is left as it was.
    for (int silent = 0; silent < 2; silent++) {
        src.fail_tensor = 4;
        src.fail_call = 1;
        src.fail_silent = silent;
        w = fill_writer(&src, 0x1F, 40);
        anneal_err_clear(&err);
        CHECK_EQ(anneal_gguf_writer_write(w, out, &err), ANNEAL_ERR_IO);
        CHECK_CONTAINS(err.msg, out);
        CHECK_CONTAINS(err.msg, silent ? "tensor 'x.q6_k': filling bytes [210, 420) failed"
                                       : "boom in tensor 4");
        CHECK(access(out, F_OK) != 0);
        src.fail_call = 1;
        anneal_err_clear(&err);
        CHECK_EQ(anneal_gguf_writer_write(w, ref, &err), ANNEAL_ERR_IO);
        anneal_gguf_writer_free(w);
    }
    src.fail_tensor = -1;
    w = fill_writer(&src, 0, 0);
    CHECK_EQ(anneal_gguf_writer_write(w, out, &err), ANNEAL_OK); // the reference, unchanged
    anneal_gguf_writer_free(w);
    CHECK(files_equal(ref, out));
    // No temporary file is left behind either.
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q '[.]tmp[.]'", test_tmpdir());
    CHECK(system(cmd) != 0);

    // The same checks as add_tensor, and a NULL callback.
    w = anneal_gguf_writer_new();
    uint64_t d = 33;
    CHECK_EQ(
        anneal_gguf_writer_add_tensor_fill(w, "q", ANNEAL_TYPE_Q8_0, 1, &d, 34, src_fill, &src),
        ANNEAL_ERR_INVALID_ARG);
    anneal_err_clear(&err);
    CHECK_EQ(anneal_gguf_writer_write(w, out, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(err.msg, "tensor 'q': dims do not fit whole q8_0 blocks");
    anneal_gguf_writer_free(w);
    w = anneal_gguf_writer_new();
    d = 4;
    CHECK_EQ(anneal_gguf_writer_add_tensor_fill(w, "f", ANNEAL_TYPE_F32, 1, &d, 16, NULL, NULL),
             ANNEAL_ERR_INVALID_ARG);
    anneal_err_clear(&err);
    CHECK_EQ(anneal_gguf_writer_write(w, out, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(err.msg, "tensor 'f': NULL fill callback");
    anneal_gguf_writer_free(w);
    unlink(ref);
    unlink(out);
}

int main(void) {
    RUN(test_llama_spm);
    RUN(test_other_fixtures);
    RUN(test_bad_header);
    RUN(test_bad_kvs);
    RUN(test_bad_tensors);
    RUN(test_unknown_type_and_zero_dims);
    RUN(test_fixture_round_trip);
    RUN(test_every_type_round_trip);
    RUN(test_tensors_round_trip);
    RUN(test_foreign_layouts);
    RUN(test_writer_errors);
    RUN(test_fill_tensors);
    rmdir(test_tmpdir());
    return TEST_EXIT();
}
