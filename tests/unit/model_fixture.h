// Tiny random llama/qwen2 GGUF models for the model and forward tests: written with the
// GGUF writer, tokenizer keys copied from the llama-spm vocab fixture (32000 tokens).
#ifndef ANNEAL_TEST_MODEL_FIXTURE_H
#define ANNEAL_TEST_MODEL_FIXTURE_H

#include "anneal/gguf.h"
#include "anneal/model.h"
#include "anneal/tensor.h"
#include "test.h"

#include <unistd.h>

#define FX_VOCAB 32000

typedef struct fx_spec {
    const char *arch; // "llama" or "qwen2"
    int32_t n_embd, n_layer, n_head, n_head_kv, n_ff;
    uint32_t wtype;     // layer matrices
    uint32_t embd_type; // token_embd.weight
    uint32_t out_type;  // output.weight (unless tied)
    bool tied, bias;
    float rope_base;  // 0 = no key (default 10000)
    bool llama3_keys; // rope.scaling.* keys
    bool rope_freqs;  // a rope_freqs.weight tensor with the llama3 factors
    float l3_factor, l3_low, l3_high;
    int32_t l3_orig;
    uint64_t seed;
} fx_spec;

static inline fx_spec fx_default(void) {
    fx_spec s = {.arch = "llama",
                 .n_embd = 64,
                 .n_layer = 2,
                 .n_head = 4,
                 .n_head_kv = 2,
                 .n_ff = 128,
                 .wtype = ANNEAL_TYPE_F32,
                 .embd_type = ANNEAL_TYPE_F32,
                 .out_type = ANNEAL_TYPE_F32,
                 .seed = 1};
    return s;
}

static inline uint64_t fx_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
// Uniform in [-1, 1).
static inline float fx_uniform(uint64_t *s) {
    return (float)((double)(fx_next(s) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

// Buffers the writer borrows until the file is written.
typedef struct fx_bufs {
    void *p[256];
    int n;
} fx_bufs;

static inline void *fx_keep(fx_bufs *b, void *p) {
    if (b->n < 256) b->p[b->n++] = p;
    return p;
}

static inline void fx_free_bufs(fx_bufs *b) {
    for (int i = 0; i < b->n; i++)
        free(b->p[i]);
    b->n = 0;
}

// Adds tensor `name` of dims [d0] or [d0, d1]: center + scale * uniform values, quantized.
static inline void fx_tensor(anneal_gguf_writer *w, fx_bufs *b, uint64_t *rng, const char *name,
                             uint32_t type, int64_t d0, int64_t d1, float center, float scale) {
    int64_t n = d0 * (d1 ? d1 : 1);
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++)
        x[i] = center + scale * fx_uniform(rng);
    uint64_t nb = 0;
    anneal_type_nbytes(type, (uint64_t)n, &nb);
    void *q = fx_keep(b, malloc(nb ? nb : 1));
    CHECK_EQ(anneal_quantize(type, x, q, n), ANNEAL_OK);
    free(x);
    uint64_t dims[2] = {(uint64_t)d0, (uint64_t)d1};
    CHECK_EQ(anneal_gguf_writer_add_tensor(w, name, type, d1 ? 2 : 1, dims, q, nb), ANNEAL_OK);
}

// Copies the tokenizer.* keys of the llama-spm fixture into w.
static inline void fx_copy_vocab(anneal_gguf_writer *w) {
    anneal_gguf *v = NULL;
    anneal_err err = {0};
    if (anneal_gguf_open(test_shared("fixtures/vocab/ggml-vocab-llama-spm.gguf"), &v, &err)) {
        fprintf(stderr, "cannot open the vocab fixture: %s\n", anneal_err_msg(&err));
        exit(1);
    }
    for (uint64_t i = 0; i < anneal_gguf_n_kv(v); i++) {
        const anneal_gguf_kv *kv = anneal_gguf_kv_at(v, i);
        if (kv->key.len > 10 && memcmp(kv->key.ptr, "tokenizer.", 10) == 0) {
            char key[256];
            snprintf(key, sizeof key, "%.*s", (int)kv->key.len, kv->key.ptr);
            CHECK_EQ(anneal_gguf_writer_set_value(w, key, &kv->value), ANNEAL_OK);
        }
    }
    anneal_gguf_close(v);
}

static inline void fx_key(char *buf, size_t cap, const fx_spec *s, const char *suffix) {
    snprintf(buf, cap, "%s.%s", s->arch, suffix);
}

// Llama 3 style frequency divisors, computed the way the converter does (the test's own
// formula, written separately from ops_rope_freqs).
static inline float fx_llama3_factor(const fx_spec *s, int32_t i, int32_t n_rot) {
    double base = s->rope_base > 0 ? s->rope_base : 10000.0;
    double f = pow(base, -2.0 * i / n_rot), wl = 2 * M_PI / f;
    double lo_wl = s->l3_orig / s->l3_low, hi_wl = s->l3_orig / s->l3_high;
    if (wl < hi_wl) return 1.0f;
    if (wl > lo_wl) return s->l3_factor;
    double smooth = (s->l3_orig / wl - s->l3_low) / (s->l3_high - s->l3_low);
    return (float)(1.0 / ((1 - smooth) / s->l3_factor + smooth));
}

// Writes the model's keys (everything but tokenizer) into w.
static inline void fx_keys(anneal_gguf_writer *w, const fx_spec *s) {
    char k[128];
    anneal_gguf_writer_set_str(w, "general.architecture", s->arch);
    anneal_gguf_writer_set_str(w, "general.name", "fixture");
    fx_key(k, sizeof k, s, "context_length");
    anneal_gguf_writer_set_u32(w, k, 256);
    fx_key(k, sizeof k, s, "embedding_length");
    anneal_gguf_writer_set_u32(w, k, (uint32_t)s->n_embd);
    fx_key(k, sizeof k, s, "block_count");
    anneal_gguf_writer_set_u32(w, k, (uint32_t)s->n_layer);
    fx_key(k, sizeof k, s, "feed_forward_length");
    anneal_gguf_writer_set_u32(w, k, (uint32_t)s->n_ff);
    fx_key(k, sizeof k, s, "attention.head_count");
    anneal_gguf_writer_set_u32(w, k, (uint32_t)s->n_head);
    fx_key(k, sizeof k, s, "attention.head_count_kv");
    anneal_gguf_writer_set_u32(w, k, (uint32_t)s->n_head_kv);
    fx_key(k, sizeof k, s, "attention.layer_norm_rms_epsilon");
    anneal_gguf_writer_set_f32(w, k, 1e-5f);
    if (s->rope_base > 0) {
        fx_key(k, sizeof k, s, "rope.freq_base");
        anneal_gguf_writer_set_f32(w, k, s->rope_base);
    }
    if (s->llama3_keys) {
        fx_key(k, sizeof k, s, "rope.scaling.type");
        anneal_gguf_writer_set_str(w, k, "llama3");
        fx_key(k, sizeof k, s, "rope.scaling.factor");
        anneal_gguf_writer_set_f32(w, k, s->l3_factor);
        fx_key(k, sizeof k, s, "rope.scaling.low_freq_factor");
        anneal_gguf_writer_set_f32(w, k, s->l3_low);
        fx_key(k, sizeof k, s, "rope.scaling.high_freq_factor");
        anneal_gguf_writer_set_f32(w, k, s->l3_high);
        fx_key(k, sizeof k, s, "rope.scaling.original_context_length");
        anneal_gguf_writer_set_u32(w, k, (uint32_t)s->l3_orig);
    }
}

// Writes the random model to path.
static inline void fx_write(const fx_spec *s, const char *path) {
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    fx_bufs b = {0};
    uint64_t rng = s->seed;
    fx_keys(w, s);
    fx_copy_vocab(w);
    int32_t E = s->n_embd, hd = s->n_embd / s->n_head, qd = s->n_head * hd, kvd = s->n_head_kv * hd;
    fx_tensor(w, &b, &rng, "token_embd.weight", s->embd_type, E, FX_VOCAB, 0, 1);
    fx_tensor(w, &b, &rng, "output_norm.weight", ANNEAL_TYPE_F32, E, 0, 1, 0.2f);
    if (!s->tied)
        fx_tensor(w, &b, &rng, "output.weight", s->out_type, E, FX_VOCAB, 0, sqrtf(3.0f / E));
    if (s->rope_freqs) {
        float *f = fx_keep(&b, malloc((size_t)hd / 2 * sizeof *f));
        for (int32_t i = 0; i < hd / 2; i++)
            f[i] = fx_llama3_factor(s, i, hd);
        uint64_t d = (uint64_t)hd / 2;
        anneal_gguf_writer_add_tensor(w, "rope_freqs.weight", ANNEAL_TYPE_F32, 1, &d, f,
                                      d * sizeof(float));
    }
    char n[96];
    for (int32_t l = 0; l < s->n_layer; l++) {
#define FXT(nm, type, d0, d1, c, sc)                                                               \
    do {                                                                                           \
        snprintf(n, sizeof n, "blk.%d." nm, (int)l);                                               \
        fx_tensor(w, &b, &rng, n, type, d0, d1, c, sc);                                            \
    } while (0)
        FXT("attn_norm.weight", ANNEAL_TYPE_F32, E, 0, 1, 0.2f);
        FXT("attn_q.weight", s->wtype, E, qd, 0, sqrtf(3.0f / E));
        FXT("attn_k.weight", s->wtype, E, kvd, 0, sqrtf(3.0f / E));
        FXT("attn_v.weight", s->wtype, E, kvd, 0, sqrtf(3.0f / E));
        if (s->bias) {
            FXT("attn_q.bias", ANNEAL_TYPE_F32, qd, 0, 0, 0.3f);
            FXT("attn_k.bias", ANNEAL_TYPE_F32, kvd, 0, 0, 0.3f);
            FXT("attn_v.bias", ANNEAL_TYPE_F32, kvd, 0, 0, 0.3f);
        }
        FXT("attn_output.weight", s->wtype, qd, E, 0, sqrtf(3.0f / qd));
        FXT("ffn_norm.weight", ANNEAL_TYPE_F32, E, 0, 1, 0.2f);
        FXT("ffn_gate.weight", s->wtype, E, s->n_ff, 0, sqrtf(3.0f / E));
        FXT("ffn_up.weight", s->wtype, E, s->n_ff, 0, sqrtf(3.0f / E));
        FXT("ffn_down.weight", s->wtype, s->n_ff, E, 0, sqrtf(3.0f / s->n_ff));
#undef FXT
    }
    anneal_err err = {0};
    anneal_status st = anneal_gguf_writer_write(w, path, &err);
    if (st) fprintf(stderr, "fixture write failed: %s\n", anneal_err_msg(&err));
    CHECK_EQ(st, ANNEAL_OK);
    anneal_gguf_writer_free(w);
    fx_free_bufs(&b);
}

// A per-process temporary path "/tmp/anneal_<tag>_<pid>_<n>.gguf" in buf.
static inline const char *fx_path(char *buf, size_t cap, const char *tag, int n) {
    snprintf(buf, cap, "/tmp/anneal_%s_%d_%d.gguf", tag, (int)getpid(), n);
    return buf;
}

#endif
