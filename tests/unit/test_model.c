// Model loading (config, validation errors naming each key or tensor), the paged KV
// cache's block accounting, exhaustion and truncation, and batch validation.
#include "anneal/tokenizer.h"
#include "model_fixture.h"

static char g_good[128], g_qwen[128];
static int g_n;

// Copies src to a new file with one change: a key dropped or set, or a tensor dropped or
// given another type (zero bytes of the new size).
typedef struct mut {
    const char *drop_key;
    const char *u32_key;
    uint32_t u32;
    const char *str_key;
    const char *str;
    const char *drop_tensor;
    const char *retype;
    uint32_t type;
} mut;

static const char *mutate(const char *src, const mut *mu, char *dst, size_t cap) {
    fx_path(dst, cap, "mut", ++g_n);
    anneal_gguf *g = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_gguf_open(src, &g, &err), ANNEAL_OK);
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    for (uint64_t i = 0; i < anneal_gguf_n_kv(g); i++) {
        const anneal_gguf_kv *kv = anneal_gguf_kv_at(g, i);
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)kv->key.len, kv->key.ptr);
        if (mu->drop_key && strcmp(key, mu->drop_key) == 0) continue;
        anneal_gguf_writer_set_value(w, key, &kv->value);
    }
    if (mu->u32_key) anneal_gguf_writer_set_u32(w, mu->u32_key, mu->u32);
    if (mu->str_key) anneal_gguf_writer_set_str(w, mu->str_key, mu->str);
    void *zeros = NULL;
    for (uint64_t i = 0; i < anneal_gguf_n_tensors(g); i++) {
        const anneal_gguf_tensor *t = anneal_gguf_tensor_at(g, i);
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        if (mu->drop_tensor && strcmp(name, mu->drop_tensor) == 0) continue;
        if (mu->retype && strcmp(name, mu->retype) == 0) {
            uint64_t n = 1, nb = 0;
            for (uint32_t d = 0; d < t->n_dims; d++)
                n *= t->dims[d];
            CHECK_EQ(anneal_type_nbytes(mu->type, n, &nb), ANNEAL_OK);
            zeros = calloc(1, nb);
            CHECK_EQ(
                anneal_gguf_writer_add_tensor(w, name, mu->type, t->n_dims, t->dims, zeros, nb),
                ANNEAL_OK);
            continue;
        }
        CHECK_EQ(
            anneal_gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->dims, t->data, t->nbytes),
            ANNEAL_OK);
    }
    CHECK_EQ(anneal_gguf_writer_write(w, dst, &err), ANNEAL_OK);
    anneal_gguf_writer_free(w);
    anneal_gguf_close(g);
    free(zeros);
    return dst;
}

// Loading the mutated file fails with status st and a message containing `needle`.
static void expect_fail(const char *src, mut mu, anneal_status st, const char *needle) {
    char path[128];
    mutate(src, &mu, path, sizeof path);
    anneal_model *m = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_model_load(path, &m, &err), st);
    CHECK(m == NULL);
    CHECK_CONTAINS(anneal_err_msg(&err), needle);
    CHECK_CONTAINS(anneal_err_msg(&err), path);
    unlink(path);
}

static void test_config_llama(void) {
    anneal_model *m = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_model_load(g_good, &m, &err), ANNEAL_OK);
    if (!m) return;
    const anneal_model_config *c = anneal_model_config_of(m);
    CHECK_STR(c->arch, "llama");
    CHECK_EQ(c->n_vocab, 32000);
    CHECK_EQ(c->n_embd, 64);
    CHECK_EQ(c->n_layer, 2);
    CHECK_EQ(c->n_head, 4);
    CHECK_EQ(c->n_head_kv, 2);
    CHECK_EQ(c->head_dim, 16);
    CHECK_EQ(c->n_ff, 128);
    CHECK_EQ(c->n_ctx_train, 256);
    CHECK_NEAR(c->norm_eps, 1e-5, 1e-12);
    CHECK_NEAR(c->rope_freq_base, 10000, 0);
    CHECK_EQ(c->n_rot, 16);
    CHECK_EQ(c->rope_type, ANNEAL_ROPE_NORM);
    CHECK(c->rope_scale_factor == 0 && !c->rope_freqs);
    CHECK(!c->qkv_bias && !c->tied_embeddings);
    anneal_tokenizer *tok = NULL;
    CHECK_EQ(anneal_tokenizer_load(anneal_model_gguf(m), &tok, NULL), ANNEAL_OK);
    CHECK_EQ(anneal_tokenizer_n_vocab(tok), 32000);
    anneal_tokenizer_free(tok);
    CHECK(anneal_model_gguf(m) != NULL);
    // Per layer: 2 norms + q, k, v, o + gate, up, down (F32); plus one embedding row, the
    // output norm and the output matrix.
    uint64_t layer = 4 * (2 * 64 + 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128);
    CHECK_EQ(anneal_model_bytes_per_token(m), 2 * layer + 4 * 64 + 4 * 64 + 4 * 64 * 32000);
    anneal_model_free(m);
}

static void test_config_qwen2(void) {
    anneal_model *m = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_model_load(g_qwen, &m, &err), ANNEAL_OK);
    if (!m) return;
    const anneal_model_config *c = anneal_model_config_of(m);
    CHECK_STR(c->arch, "qwen2");
    CHECK_EQ(c->rope_type, ANNEAL_ROPE_NEOX);
    CHECK_NEAR(c->rope_freq_base, 1000000, 0);
    CHECK(c->qkv_bias && c->tied_embeddings);
    anneal_model_free(m);
}

static void test_config_llama3(void) {
    fx_spec s = fx_default();
    s.llama3_keys = true;
    s.rope_freqs = true;
    s.l3_factor = 8;
    s.l3_low = 1;
    s.l3_high = 4;
    s.l3_orig = 8192;
    s.rope_base = 500000;
    char path[128];
    fx_path(path, sizeof path, "cfg", 3);
    fx_write(&s, path);
    anneal_model *m = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_model_load(path, &m, &err), ANNEAL_OK);
    if (m) {
        const anneal_model_config *c = anneal_model_config_of(m);
        CHECK_NEAR(c->rope_scale_factor, 8, 0);
        CHECK_NEAR(c->rope_low_freq_factor, 1, 0);
        CHECK_NEAR(c->rope_high_freq_factor, 4, 0);
        CHECK_EQ(c->rope_orig_ctx, 8192);
        CHECK(c->rope_freqs);
    }
    anneal_model_free(m);
    unlink(path);
}

static void test_errors(void) {
    expect_fail(g_good, (mut){.str_key = "general.architecture", .str = "gpt2"},
                ANNEAL_ERR_UNSUPPORTED, "key 'general.architecture' is 'gpt2'");
    expect_fail(g_good, (mut){.drop_key = "general.architecture"}, ANNEAL_ERR_NOT_FOUND,
                "general.architecture");
    expect_fail(g_good, (mut){.drop_key = "llama.block_count"}, ANNEAL_ERR_NOT_FOUND,
                "missing key 'llama.block_count'");
    expect_fail(g_good, (mut){.drop_key = "llama.attention.layer_norm_rms_epsilon"},
                ANNEAL_ERR_NOT_FOUND, "llama.attention.layer_norm_rms_epsilon");
    expect_fail(g_good, (mut){.str_key = "llama.embedding_length", .str = "big"}, ANNEAL_ERR_FORMAT,
                "llama.embedding_length");
    expect_fail(g_good, (mut){.drop_tensor = "blk.1.ffn_up.weight"}, ANNEAL_ERR_NOT_FOUND,
                "missing tensor 'blk.1.ffn_up.weight'");
    expect_fail(g_good, (mut){.drop_tensor = "token_embd.weight"}, ANNEAL_ERR_NOT_FOUND,
                "missing tensor 'token_embd.weight'");
    expect_fail(g_good, (mut){.drop_tensor = "output_norm.weight"}, ANNEAL_ERR_NOT_FOUND,
                "missing tensor 'output_norm.weight'");
    // head_count_kv 1: attn_k has 32 rows where 1 * 16 are expected.
    expect_fail(g_good, (mut){.u32_key = "llama.attention.head_count_kv", .u32 = 1},
                ANNEAL_ERR_FORMAT,
                "tensor 'blk.0.attn_k.weight' has 32 rows, expected n_head_kv * head_dim = 16");
    expect_fail(g_good, (mut){.u32_key = "llama.attention.head_count", .u32 = 5}, ANNEAL_ERR_FORMAT,
                "llama.attention.head_count = 5 does not divide");
    expect_fail(g_good, (mut){.u32_key = "llama.attention.head_count_kv", .u32 = 3},
                ANNEAL_ERR_FORMAT, "llama.attention.head_count_kv = 3 does not divide");
    expect_fail(g_good, (mut){.u32_key = "llama.feed_forward_length", .u32 = 96}, ANNEAL_ERR_FORMAT,
                "tensor 'blk.0.ffn_gate.weight' has 128 rows, expected n_ff = 96");
    expect_fail(g_good, (mut){.u32_key = "llama.block_count", .u32 = 3}, ANNEAL_ERR_NOT_FOUND,
                "missing tensor 'blk.2.attn_norm.weight'");
    expect_fail(g_good, (mut){.retype = "blk.0.ffn_gate.weight", .type = ANNEAL_TYPE_Q5_1},
                ANNEAL_ERR_UNSUPPORTED,
                "tensor 'blk.0.ffn_gate.weight' has type q5_1, which has no kernel");
    expect_fail(g_good, (mut){.retype = "blk.1.attn_norm.weight", .type = ANNEAL_TYPE_F16},
                ANNEAL_ERR_UNSUPPORTED, "tensor 'blk.1.attn_norm.weight' is f16");
    expect_fail(g_good, (mut){.str_key = "llama.rope.scaling.type", .str = "yarn"},
                ANNEAL_ERR_UNSUPPORTED, "key 'llama.rope.scaling.type' is 'yarn'");
    expect_fail(g_good, (mut){.str_key = "llama.rope.scaling.type", .str = "llama3"},
                ANNEAL_ERR_NOT_FOUND, "missing key 'llama.rope.scaling.factor'");
    expect_fail(g_good, (mut){.u32_key = "llama.attention.value_length", .u32 = 8},
                ANNEAL_ERR_UNSUPPORTED, "llama.attention.value_length = 8");
    expect_fail(g_good, (mut){.u32_key = "llama.rope.dimension_count", .u32 = 7}, ANNEAL_ERR_FORMAT,
                "llama.rope.dimension_count = 7 is odd");
    expect_fail(g_qwen, (mut){.drop_tensor = "blk.0.attn_q.bias"}, ANNEAL_ERR_NOT_FOUND,
                "missing tensor 'blk.0.attn_q.bias'");
    {
        // The model itself needs no tokenizer; loading one from the file names the key.
        char path[128];
        mutate(g_good, &(mut){.drop_key = "tokenizer.ggml.model"}, path, sizeof path);
        anneal_model *m = NULL;
        anneal_tokenizer *tok = NULL;
        anneal_err err = {0};
        CHECK_EQ(anneal_model_load(path, &m, &err), ANNEAL_OK);
        if (m) CHECK_EQ(anneal_tokenizer_load(anneal_model_gguf(m), &tok, &err), ANNEAL_ERR_NOT_FOUND);
        CHECK(tok == NULL);
        CHECK_CONTAINS(anneal_err_msg(&err), "tokenizer.ggml.model");
        anneal_model_free(m);
        unlink(path);
    }
    anneal_model *m = (anneal_model *)1;
    anneal_err err = {0};
    CHECK_EQ(anneal_model_load("/nonexistent/model.gguf", &m, &err), ANNEAL_ERR_IO);
    CHECK(m == NULL);
    anneal_model_free(NULL);
}

// ---- kv cache ------------------------------------------------------------------------------

static anneal_model *g_model;

typedef struct run {
    anneal_ctx *c;
    anneal_kv *kv;
    float *out;
} run;

static anneal_status step(run *r, int32_t seq, int n, anneal_err *err) {
    int32_t tok[16], sq[16], pos[16];
    int32_t start = anneal_kv_seq_len(r->kv, seq);
    for (int i = 0; i < n; i++)
        tok[i] = 100 + i, sq[i] = seq, pos[i] = start + i;
    anneal_batch b = {.n_tokens = n, .tokens = tok, .seq = sq, .pos = pos};
    int32_t n_out = 0;
    return anneal_forward(r->c, r->kv, &b, r->out, 1, &n_out, err);
}

static run run_new(int32_t block_size, int32_t n_blocks, int32_t max_len) {
    run r = {0};
    anneal_err err = {0};
    anneal_kv_params kp = anneal_kv_params_default(max_len, 2);
    kp.block_size = block_size;
    kp.n_blocks = n_blocks;
    CHECK_EQ(anneal_kv_new(g_model, &kp, &r.kv, &err), ANNEAL_OK);
    anneal_ctx_params cp = anneal_ctx_params_default();
    cp.max_batch = 16;
    cp.n_threads = 2;
    CHECK_EQ(anneal_ctx_new(g_model, &cp, &r.c, &err), ANNEAL_OK);
    r.out = malloc(32000 * sizeof(float));
    return r;
}

static void run_free(run *r) {
    anneal_ctx_free(r->c);
    anneal_kv_free(r->kv);
    free(r->out);
}

static void test_kv_params(void) {
    anneal_kv_params p = anneal_kv_params_default(100, 3);
    CHECK_EQ(p.block_size, 16);
    CHECK_EQ(p.n_blocks, 21); // 3 sequences x ceil(100 / 16)
    CHECK_EQ(p.max_seqs, 3);
    CHECK_EQ(p.max_len, 100);
    CHECK_EQ(p.type, ANNEAL_TYPE_F16);
    anneal_kv *kv = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_kv_new(g_model, &p, &kv, &err), ANNEAL_OK);
    // K and V: 2 layers x 21 blocks x 16 positions x (2 heads x 16) x 2 bytes, twice.
    CHECK_EQ(anneal_kv_bytes(kv), 2ull * 2 * 21 * 16 * 32 * 2);
    CHECK_EQ(anneal_kv_free_blocks(kv), 21);
    CHECK_EQ(anneal_kv_seq_len(kv, 0), 0);
    CHECK_EQ(anneal_kv_seq_len(kv, 3), -1);
    CHECK_EQ(anneal_kv_seq_len(kv, -1), -1);
    anneal_kv_free(kv);
    anneal_kv_free(NULL);

    anneal_kv_params bad = p;
    bad.block_size = 0;
    CHECK_EQ(anneal_kv_new(g_model, &bad, &kv, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(anneal_err_msg(&err), "block_size 0");
    bad = p;
    bad.type = ANNEAL_TYPE_Q8_0;
    anneal_err_clear(&err);
    CHECK_EQ(anneal_kv_new(g_model, &bad, &kv, &err), ANNEAL_ERR_UNSUPPORTED);
    bad = p;
    bad.n_blocks = 0;
    anneal_err_clear(&err);
    CHECK_EQ(anneal_kv_new(g_model, &bad, &kv, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK(kv == NULL);
}

// Blocks of 4 positions, 5 in the pool, two sequences.
static void test_kv_accounting(void) {
    run r = run_new(4, 5, 40);
    anneal_err err = {0};
    CHECK_EQ(step(&r, 0, 5, &err), ANNEAL_OK); // seq 0: 5 positions, 2 blocks
    CHECK_EQ(anneal_kv_free_blocks(r.kv), 3);
    CHECK_EQ(step(&r, 1, 2, &err), ANNEAL_OK); // seq 1: 2 positions, 1 block
    CHECK_EQ(anneal_kv_free_blocks(r.kv), 2);
    CHECK_EQ(step(&r, 0, 3, &err), ANNEAL_OK); // seq 0: 8 positions, still 2 blocks
    CHECK_EQ(anneal_kv_free_blocks(r.kv), 2);
    CHECK_EQ(step(&r, 0, 1, &err), ANNEAL_OK); // seq 0: 9 positions, 3 blocks
    CHECK_EQ(anneal_kv_free_blocks(r.kv), 1);
    CHECK_EQ(anneal_kv_seq_len(r.kv, 0), 9);

    // Exhaustion: seq 1 would need 2 more blocks; nothing is appended.
    CHECK_EQ(step(&r, 1, 7, &err), ANNEAL_ERR_LIMIT);
    CHECK_CONTAINS(anneal_err_msg(&err),
                   "kv cache full: the batch needs 2 more blocks, 1 are free");
    CHECK_EQ(anneal_kv_seq_len(r.kv, 1), 2);
    CHECK_EQ(anneal_kv_free_blocks(r.kv), 1);
    anneal_err_clear(&err);
    CHECK_EQ(step(&r, 1, 6, &err), ANNEAL_OK); // exactly fits: 8 positions, 2 blocks
    CHECK_EQ(anneal_kv_free_blocks(r.kv), 0);

    // Truncate seq 0 to 4 positions: 1 block kept, 2 returned.
    CHECK_EQ(anneal_kv_seq_truncate(r.kv, 0, 4, &err), ANNEAL_OK);
    CHECK_EQ(anneal_kv_seq_len(r.kv, 0), 4);
    CHECK_EQ(anneal_kv_free_blocks(r.kv), 2);
    CHECK_EQ(anneal_kv_seq_truncate(r.kv, 0, 5, &err), ANNEAL_ERR_RANGE);
    CHECK_CONTAINS(anneal_err_msg(&err), "cannot truncate sequence 0 to 5 positions: it has 4");
    anneal_err_clear(&err);
    CHECK_EQ(anneal_kv_seq_truncate(r.kv, 2, 0, &err), ANNEAL_ERR_INVALID_ARG);
    anneal_err_clear(&err);
    CHECK_EQ(anneal_kv_seq_truncate(r.kv, 0, 4, &err), ANNEAL_OK); // no-op
    CHECK_EQ(anneal_kv_free_blocks(r.kv), 2);
    // Decoding continues after the truncation point.
    CHECK_EQ(step(&r, 0, 1, &err), ANNEAL_OK);
    CHECK_EQ(anneal_kv_seq_len(r.kv, 0), 5);
    CHECK_EQ(anneal_kv_free_blocks(r.kv), 1);

    anneal_kv_seq_clear(r.kv, 1);
    anneal_kv_seq_clear(r.kv, 9); // ignored
    CHECK_EQ(anneal_kv_seq_len(r.kv, 1), 0);
    CHECK_EQ(anneal_kv_free_blocks(r.kv), 3);
    anneal_kv_seq_clear(r.kv, 0);
    CHECK_EQ(anneal_kv_free_blocks(r.kv), 5);
    run_free(&r);
}

static void test_kv_max_len(void) {
    run r = run_new(4, 10, 10);
    anneal_err err = {0};
    CHECK_EQ(step(&r, 0, 9, &err), ANNEAL_OK);
    CHECK_EQ(step(&r, 0, 2, &err), ANNEAL_ERR_LIMIT);
    CHECK_CONTAINS(
        anneal_err_msg(&err),
        "batch index 1: sequence 0 would hold 11 positions, more than the cache's max_len 10");
    CHECK_EQ(anneal_kv_seq_len(r.kv, 0), 9);
    run_free(&r);
}

// ---- batch validation -----------------------------------------------------------------------

static void test_bad_batches(void) {
    run r = run_new(4, 10, 40);
    anneal_err err = {0};
    int32_t tok[3] = {1, 2, 32000}, sq[3] = {0, 0, 0}, pos[3] = {0, 1, 2};
    anneal_batch b = {.n_tokens = 3, .tokens = tok, .seq = sq, .pos = pos};
    int32_t n_out = 7;
    CHECK_EQ(anneal_forward(r.c, r.kv, &b, r.out, 1, &n_out, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(anneal_err_msg(&err), "batch index 2: token id 32000 is not in 0..31999");
    CHECK_EQ(n_out, 0);
    tok[2] = 3;

    sq[1] = 2;
    anneal_err_clear(&err);
    CHECK_EQ(anneal_forward(r.c, r.kv, &b, r.out, 1, &n_out, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(anneal_err_msg(&err), "batch index 1: sequence id 2 is not in 0..1");
    sq[1] = 0;

    pos[1] = 3;
    anneal_err_clear(&err);
    CHECK_EQ(anneal_forward(r.c, r.kv, &b, r.out, 1, &n_out, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(anneal_err_msg(&err), "batch index 1: position 3 for sequence 0, expected 1");
    pos[1] = 1;

    pos[0] = 1, pos[1] = 2, pos[2] = 3; // does not start at the sequence's end (0)
    anneal_err_clear(&err);
    CHECK_EQ(anneal_forward(r.c, r.kv, &b, r.out, 1, &n_out, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(anneal_err_msg(&err), "batch index 0: position 1 for sequence 0, expected 0");
    pos[0] = 0, pos[1] = 1, pos[2] = 2;

    // Every row asked for but room for one.
    bool outp[3] = {true, false, true};
    b.output = outp;
    anneal_err_clear(&err);
    CHECK_EQ(anneal_forward(r.c, r.kv, &b, r.out, 1, &n_out, &err), ANNEAL_ERR_RANGE);
    CHECK_CONTAINS(anneal_err_msg(&err), "selects 2 output rows but out has room for 1");
    b.output = NULL;

    b.n_tokens = 17;
    anneal_err_clear(&err);
    CHECK_EQ(anneal_forward(r.c, r.kv, &b, r.out, 1, &n_out, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(anneal_err_msg(&err), "batch of 17 tokens: not in 0..max_batch 16");
    b.n_tokens = 3;

    // None of the failures appended anything; the fixed batch runs.
    CHECK_EQ(anneal_kv_seq_len(r.kv, 0), 0);
    CHECK_EQ(anneal_kv_free_blocks(r.kv), 10);
    anneal_err_clear(&err);
    CHECK_EQ(anneal_forward(r.c, r.kv, &b, r.out, 1, &n_out, &err), ANNEAL_OK);
    CHECK_EQ(n_out, 1);
    CHECK_EQ(anneal_kv_seq_len(r.kv, 0), 3);
    // An empty batch is a no-op.
    b.n_tokens = 0;
    CHECK_EQ(anneal_forward(r.c, r.kv, &b, NULL, 0, &n_out, &err), ANNEAL_OK);
    CHECK_EQ(n_out, 0);

    anneal_ctx_params cp = anneal_ctx_params_default();
    cp.max_batch = 0;
    anneal_ctx *c = NULL;
    anneal_err_clear(&err);
    CHECK_EQ(anneal_ctx_new(g_model, &cp, &c, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(anneal_err_msg(&err), "max_batch 0");
    anneal_ctx_free(NULL);
    run_free(&r);
}

int main(void) {
    fx_spec s = fx_default();
    fx_write(&s, fx_path(g_good, sizeof g_good, "good", 0));
    fx_spec q = fx_default();
    q.arch = "qwen2";
    q.bias = true;
    q.tied = true;
    q.rope_base = 1000000;
    fx_write(&q, fx_path(g_qwen, sizeof g_qwen, "qwen", 0));
    anneal_err err = {0};
    if (anneal_model_load(g_good, &g_model, &err)) {
        fprintf(stderr, "cannot load the fixture model: %s\n", anneal_err_msg(&err));
        return 1;
    }
    RUN(test_config_llama);
    RUN(test_config_qwen2);
    RUN(test_config_llama3);
    RUN(test_errors);
    RUN(test_kv_params);
    RUN(test_kv_accounting);
    RUN(test_kv_max_len);
    RUN(test_bad_batches);
    anneal_model_free(g_model);
    unlink(g_good);
    unlink(g_qwen);
    return TEST_EXIT();
}
