// Quantizing files: the tensor types each target chooses (llama.cpp's conventions), how close
// the dequantized weights stay, metadata and lineage, determinism, the streamed output, the
// errors; and `anneal init`'s flag checks, determinism and initial statistics.
#include "anneal/gguf.h"
#include "anneal/lineage.h"
#include "anneal/optimize.h"
#include "anneal/tensor.h"
#include "test.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define N_LAYER 8
#define DIM 256
#define N_VOCAB 64
#define ROWS 16 // rows of each layer matrix: small, the row length is what the rules read

static char tmp_dir[] = "/tmp/anneal_quantize_XXXXXX";

// A path in the test's directory; each call gets its own buffer (a ring of 64, ample for
// the few paths one check holds at once).
static const char *tmp_path(const char *name) {
    static char bufs[64][512];
    static int k;
    char *b = bufs[k++ % 64];
    snprintf(b, 512, "%s/%s", tmp_dir, name);
    return b;
}

// ---- a small model built with the gguf writer ---------------------------------------

typedef struct tensor_spec {
    char name[64];
    uint32_t n_dims;
    uint64_t d0, d1;
} tensor_spec;

static tensor_spec SPECS[3 + 9 * N_LAYER + 2];
static size_t N_SPECS;

static void spec(const char *name, uint64_t d0, uint64_t d1) {
    tensor_spec *s = &SPECS[N_SPECS++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->n_dims = d1 ? 2 : 1;
    s->d0 = d0;
    s->d1 = d1 ? d1 : 1;
}

static void build_specs(bool tied) {
    N_SPECS = 0;
    spec("token_embd.weight", DIM, N_VOCAB);
    const char *mats[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up"};
    for (int l = 0; l < N_LAYER; l++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        spec(name, DIM, 0);
        for (int m = 0; m < 6; m++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, mats[m]);
            spec(name, DIM, ROWS);
        }
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        spec(name, DIM, 0);
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", l);
        spec(name, 2 * DIM, ROWS);
    }
    spec("extra.weight", 96, 8); // row of 96: no K-quant fits, 32-blocks do
    spec("odd.weight", 40, 4);   // row of 40: nothing but f16 fits
    spec("output_norm.weight", DIM, 0);
    if (!tied) spec("output.weight", DIM, N_VOCAB);
}

static uint64_t rng_state;
static double rnd_normal(void) {
    // xorshift64* uniforms, Box-Muller
    double u[2];
    for (int k = 0; k < 2; k++) {
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        u[k] = ((double)((rng_state * 2685821657736338717ull) >> 11) + 1.0) * 0x1.0p-53;
    }
    return sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

static float *VALUES[sizeof SPECS / sizeof SPECS[0]]; // f32 originals of the last model built

// Writes the model in `type` (F32, F16 or BF16 weights; 1-D stay F32).
static void write_model(const char *path, uint32_t type, bool tied) {
    build_specs(tied);
    rng_state = 0x1234567890ABCDEFull;
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    anneal_gguf_writer_set_str(w, "general.architecture", "llama");
    anneal_gguf_writer_set_str(w, "general.name", "tiny test");
    anneal_gguf_writer_set_u32(w, "llama.block_count", N_LAYER);
    anneal_gguf_writer_set_u32(w, "llama.embedding_length", DIM);
    anneal_gguf_writer_set_u32(w, "llama.attention.head_count", 4);
    anneal_gguf_writer_set_u32(w, "llama.attention.head_count_kv", 4);
    anneal_gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f);
    anneal_gguf_writer_set_u32(w, "general.file_type", type == ANNEAL_TYPE_F32 ? 0 : 1);
    anneal_gguf_str toks[3] = {{"<s>", 3}, {"a", 1}, {"b c", 3}};
    anneal_gguf_value arr = {.type = ANNEAL_GGUF_ARRAY};
    arr.arr.elem = ANNEAL_GGUF_STRING;
    arr.arr.n = 3;
    arr.arr.strs = toks;
    anneal_gguf_writer_set_value(w, "tokenizer.ggml.tokens", &arr);
    // A lineage key from an earlier step, which quantize must replace.
    anneal_gguf_writer_set_str(w, "anneal.lineage.command", "anneal init ...");
    void *bufs[sizeof SPECS / sizeof SPECS[0]];
    for (size_t i = 0; i < N_SPECS; i++) {
        const tensor_spec *s = &SPECS[i];
        uint64_t n = s->d0 * s->d1;
        anneal_free(VALUES[i]);
        VALUES[i] = anneal_malloc(n * sizeof(float));
        for (uint64_t k = 0; k < n; k++)
            VALUES[i][k] = s->n_dims == 1 ? (float)(1.0 + 0.1 * rnd_normal()) : (float)rnd_normal();
        uint32_t ty = s->n_dims == 1 ? ANNEAL_TYPE_F32 : type;
        uint64_t nbytes;
        anneal_type_nbytes(ty, n, &nbytes);
        bufs[i] = anneal_malloc(nbytes);
        for (uint64_t r = 0; r < s->d1; r++)
            anneal_quantize(ty, VALUES[i] + r * s->d0, (uint8_t *)bufs[i] + r * (nbytes / s->d1),
                            (int64_t)s->d0);
        // The reference for error measurements is what the file holds.
        for (uint64_t r = 0; r < s->d1; r++)
            anneal_dequantize(ty, (uint8_t *)bufs[i] + r * (nbytes / s->d1), VALUES[i] + r * s->d0,
                              (int64_t)s->d0);
        uint64_t dims[2] = {s->d0, s->d1};
        CHECK_EQ(anneal_gguf_writer_add_tensor(w, s->name, ty, s->n_dims, dims, bufs[i], nbytes),
                 ANNEAL_OK);
    }
    anneal_err err = {0};
    CHECK_EQ(anneal_gguf_writer_write(w, path, &err), ANNEAL_OK);
    anneal_gguf_writer_free(w);
    for (size_t i = 0; i < N_SPECS; i++)
        anneal_free(bufs[i]);
}

// ---- what the convention says -------------------------------------------------------

static bool more_bits(int i, int n) { // llama.cpp's use_more_bits, written out for n = 8
    (void)n;
    return i == 0 || i == 3 || i == 6 || i == 7;
}

// The expected type of a tensor for target `t`, from the name alone.
static uint32_t expected(const char *t, const tensor_spec *s, bool tied) {
    if (s->n_dims == 1) return ANNEAL_TYPE_F32;
    const anneal_quant_target *q = anneal_quant_target_find(t);
    if (strcmp(s->name, "odd.weight") == 0)
        return q && !q->quantized ? q->base_type : ANNEAL_TYPE_F16;
    bool km = strcmp(t, "q4_K_M") == 0 || strcmp(t, "q5_K_M") == 0;
    struct {
        const char *t;
        uint32_t base, extra; // extra: the 96-element row
        bool output_q6;
    } table[] = {
        {"f32", ANNEAL_TYPE_F32, ANNEAL_TYPE_F32, false},
        {"f16", ANNEAL_TYPE_F16, ANNEAL_TYPE_F16, false},
        {"bf16", ANNEAL_TYPE_BF16, ANNEAL_TYPE_BF16, false},
        {"q8_0", ANNEAL_TYPE_Q8_0, ANNEAL_TYPE_Q8_0, false},
        {"q4_0", ANNEAL_TYPE_Q4_0, ANNEAL_TYPE_Q4_0, true},
        {"q4_1", ANNEAL_TYPE_Q4_1, ANNEAL_TYPE_Q4_1, true},
        {"q5_0", ANNEAL_TYPE_Q5_0, ANNEAL_TYPE_Q5_0, true},
        {"q4_K", ANNEAL_TYPE_Q4_K, ANNEAL_TYPE_Q5_0, false},
        {"q5_K", ANNEAL_TYPE_Q5_K, ANNEAL_TYPE_Q5_0, false},
        {"q6_K", ANNEAL_TYPE_Q6_K, ANNEAL_TYPE_Q8_0, true},
        {"q4_K_M", ANNEAL_TYPE_Q4_K, ANNEAL_TYPE_Q5_0, true},
        {"q5_K_M", ANNEAL_TYPE_Q5_K, ANNEAL_TYPE_Q5_0, true},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(table[i].t, t) != 0) continue;
        if (strcmp(s->name, "extra.weight") == 0) return table[i].extra;
        bool is_output = strcmp(s->name, "output.weight") == 0 ||
                         (tied && strcmp(s->name, "token_embd.weight") == 0);
        if (is_output && table[i].output_q6) return ANNEAL_TYPE_Q6_K;
        int layer;
        if (km && sscanf(s->name, "blk.%d.", &layer) == 1 &&
            (strstr(s->name, "attn_v") || strstr(s->name, "ffn_down")) && more_bits(layer, 8))
            return ANNEAL_TYPE_Q6_K;
        return table[i].base;
    }
    return 9999;
}

// Relative RMS error bound of each type on normal data, about 15% above the largest value
// measured on this model (f16 2.2e-4, bf16 1.7e-3, q8_0 5.6e-3, q6_K 0.0185, q5_K 0.037,
// q5_0 0.044, q4_K 0.073, q4_1 0.081, q4_0 0.088: each bit about halves the error).
static double bound(uint32_t type) {
    switch (type) {
    case ANNEAL_TYPE_F32:
        return 0;
    case ANNEAL_TYPE_F16:
        return 2.6e-4;
    case ANNEAL_TYPE_BF16:
        return 2e-3;
    case ANNEAL_TYPE_Q8_0:
        return 6.5e-3;
    case ANNEAL_TYPE_Q6_K:
        return 0.021;
    case ANNEAL_TYPE_Q5_K:
        return 0.042;
    case ANNEAL_TYPE_Q5_0:
        return 0.05;
    case ANNEAL_TYPE_Q4_K:
        return 0.083;
    case ANNEAL_TYPE_Q4_1:
        return 0.092;
    case ANNEAL_TYPE_Q4_0:
        return 0.10;
    default:
        return 0;
    }
}

static uint32_t target_file_type(const char *t) {
    const anneal_quant_target *q = anneal_quant_target_find(t);
    return q ? q->file_type : 9999;
}

// Deep equality of two values (the writer copies them; so must quantize).
static bool same_value(const anneal_gguf_value *a, const anneal_gguf_value *b) {
    if (a->type != b->type) return false;
    switch (a->type) {
    case ANNEAL_GGUF_STRING:
        return a->str.len == b->str.len && memcmp(a->str.ptr, b->str.ptr, a->str.len) == 0;
    case ANNEAL_GGUF_ARRAY:
        if (a->arr.elem != b->arr.elem || a->arr.n != b->arr.n) return false;
        for (uint64_t i = 0; i < a->arr.n; i++) {
            if (a->arr.elem == ANNEAL_GGUF_STRING) {
                anneal_gguf_value x = {.type = ANNEAL_GGUF_STRING, .str = a->arr.strs[i]};
                anneal_gguf_value y = {.type = ANNEAL_GGUF_STRING, .str = b->arr.strs[i]};
                if (!same_value(&x, &y)) return false;
            } else if (anneal_gguf_arr_f64(a, i) != anneal_gguf_arr_f64(b, i)) {
                return false;
            }
        }
        return true;
    case ANNEAL_GGUF_FLOAT32:
    case ANNEAL_GGUF_FLOAT64:
        return a->f64 == b->f64;
    default:
        return a->u64 == b->u64;
    }
}

static void check_output(const char *in, const char *out, const char *t, bool tied) {
    anneal_gguf *gi = NULL, *go = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_gguf_open(in, &gi, &err), ANNEAL_OK);
    CHECK_EQ(anneal_gguf_open(out, &go, &err), ANNEAL_OK);
    if (!gi || !go) {
        anneal_gguf_close(gi);
        anneal_gguf_close(go);
        return;
    }
    // Metadata: every key kept with its value, except file_type and the lineage.
    for (uint64_t i = 0; i < anneal_gguf_n_kv(gi); i++) {
        const anneal_gguf_kv *kv = anneal_gguf_kv_at(gi, i);
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)kv->key.len, kv->key.ptr);
        const anneal_gguf_kv *o = anneal_gguf_find(go, key);
        CHECK(o != NULL);
        if (!o || strcmp(key, "general.file_type") == 0 || strncmp(key, "anneal.lineage.", 15) == 0)
            continue;
        if (!same_value(&kv->value, &o->value)) {
            fprintf(stderr, "key %s differs for %s\n", key, t);
            CHECK(false);
        }
    }
    uint64_t v = 0;
    CHECK_EQ(anneal_gguf_get_u64(go, "general.file_type", &v, NULL), ANNEAL_OK);
    CHECK_EQ(v, target_file_type(t));
    CHECK_EQ(anneal_gguf_get_u64(go, "general.quantization_version", &v, NULL), ANNEAL_OK);
    CHECK_EQ(v, 2);
    // Lineage: the input's hash as the only parent.
    anneal_lineage *lin = NULL;
    CHECK_EQ(anneal_lineage_read(go, &lin, &err), ANNEAL_OK);
    if (lin) {
        anneal_lineage_parent p;
        anneal_lineage_parent_file(&p, "input", in, NULL);
        CHECK_EQ(lin->n_parents, 1);
        CHECK_STR(lin->parents[0].sha256, p.sha256);
        CHECK_STR(lin->parents[0].role, "input");
        CHECK_STR(lin->parents[0].path, in);
        CHECK_STR(lin->created, "2026-11-29T10:30:00Z");
        CHECK_STR(lin->command, "anneal quantize test");
        char cfg[96];
        snprintf(cfg, sizeof cfg, "{\"type\":\"%s\",\"file_type\":%u}", t, target_file_type(t));
        CHECK_STR(lin->config, cfg);
    }
    anneal_lineage_free(lin);
    // Tensors: types as the convention says; values close to the originals.
    CHECK_EQ(anneal_gguf_n_tensors(go), N_SPECS);
    for (size_t i = 0; i < N_SPECS && i < anneal_gguf_n_tensors(go); i++) {
        const anneal_gguf_tensor *to = anneal_gguf_tensor_at(go, i);
        const tensor_spec *s = &SPECS[i];
        CHECK(to->name.len == strlen(s->name) && memcmp(to->name.ptr, s->name, to->name.len) == 0);
        uint32_t want = expected(t, s, tied);
        if (to->type != want) {
            fprintf(stderr, "%s: %s is type %u, expected %u\n", t, s->name, to->type, want);
            CHECK(false);
            continue;
        }
        CHECK_EQ(to->dims[0], s->d0);
        CHECK_EQ(to->dims[1], s->d1);
        const anneal_gguf_tensor *ti = anneal_gguf_tensor_at(gi, i);
        if (to->type == ti->type) { // copied as is
            CHECK(to->nbytes == ti->nbytes && memcmp(to->data, ti->data, to->nbytes) == 0);
            continue;
        }
        double se = 0, ss = 0;
        float *row = anneal_malloc(s->d0 * sizeof(float));
        uint64_t row_bytes = to->nbytes / s->d1;
        for (uint64_t r = 0; r < s->d1; r++) {
            CHECK_EQ(anneal_dequantize(to->type, to->data + r * row_bytes, row, (int64_t)s->d0),
                     ANNEAL_OK);
            for (uint64_t k = 0; k < s->d0; k++) {
                double x = VALUES[i][r * s->d0 + k], d = row[k] - x;
                se += d * d;
                ss += x * x;
            }
        }
        anneal_free(row);
        double rel = sqrt(se / ss);
        if (!(rel <= bound(to->type))) {
            fprintf(stderr, "%s: %s relative rmse %.5f over %.5f\n", t, s->name, rel,
                    bound(to->type));
            CHECK(false);
        }
    }
    anneal_gguf_close(gi);
    anneal_gguf_close(go);
}

static anneal_status quantize(const char *in, const char *out, const char *t, int threads,
                              anneal_quantize_stats *stats, anneal_err *err) {
    anneal_quantize_opts o = {.target = t, .n_threads = threads, .command = "anneal quantize test"};
    return anneal_quantize_file(in, out, &o, stats, err);
}

static void test_every_target(void) {
    const char *in = tmp_path("model-f32.gguf");
    write_model(in, ANNEAL_TYPE_F32, false);
    size_t nt;
    const anneal_quant_target *ts = anneal_quant_targets(&nt);
    CHECK_EQ(nt, 12);
    for (size_t k = 0; k < nt; k++) {
        const char *out = tmp_path("out.gguf");
        anneal_quantize_stats st;
        anneal_err err = {0};
        CHECK_EQ(quantize(in, out, ts[k].name, 2, &st, &err), ANNEAL_OK);
        if (err.status) fprintf(stderr, "%s: %s\n", ts[k].name, err.msg);
        check_output(in, out, ts[k].name, false);
        CHECK_EQ(st.n_tensors, N_SPECS);
        CHECK_EQ(st.file_type, ts[k].file_type);
        uint64_t sum = 0;
        for (int ty = 0; ty < ANNEAL_TYPE_COUNT; ty++)
            sum += st.count_by_type[ty];
        CHECK_EQ(sum, N_SPECS);
        CHECK_EQ(st.count_by_type[ANNEAL_TYPE_F32],
                 ts[k].base_type == ANNEAL_TYPE_F32 ? N_SPECS : 2 * N_LAYER + 1);
        // Fallbacks: odd.weight for the quantized targets; extra.weight too for the K types.
        bool k_type = ts[k].base_type == ANNEAL_TYPE_Q4_K || ts[k].base_type == ANNEAL_TYPE_Q5_K ||
                      ts[k].base_type == ANNEAL_TYPE_Q6_K;
        CHECK_EQ(st.n_fallback, ts[k].quantized ? (k_type ? 2 : 1) : 0);
        CHECK(st.out_bytes > 0 && st.in_bytes > st.out_bytes / 2);
        unlink(out);
    }
    // The q4_K_M counts: attn_v and ffn_down of layers 0, 3, 6 and 7 are q6_K (8 tensors),
    // and output.weight.
    anneal_quantize_stats st;
    CHECK_EQ(quantize(in, tmp_path("m.gguf"), "Q4_K_M", 1, &st, NULL), ANNEAL_OK);
    CHECK_EQ(st.count_by_type[ANNEAL_TYPE_Q6_K], 9);
    CHECK_EQ(st.count_by_type[ANNEAL_TYPE_Q5_0], 1);
    CHECK_EQ(st.count_by_type[ANNEAL_TYPE_F16], 1);
    CHECK_EQ(st.count_by_type[ANNEAL_TYPE_Q4_K], 1 + 5 * N_LAYER + 2 * N_LAYER - 8);
    CHECK_EQ(st.n_quantized, N_SPECS - (2 * N_LAYER + 1));
    unlink(tmp_path("m.gguf"));
}

static void test_half_inputs_and_tied(void) {
    const uint32_t in_types[] = {ANNEAL_TYPE_F16, ANNEAL_TYPE_BF16};
    for (int k = 0; k < 2; k++) {
        const char *in = tmp_path("model-half.gguf");
        write_model(in, in_types[k], true);
        const char *targets[] = {"q4_K_M", "q8_0", "q4_K"};
        for (int t = 0; t < 3; t++) {
            CHECK_EQ(quantize(in, tmp_path("o.gguf"), targets[t], 3, NULL, NULL), ANNEAL_OK);
            check_output(in, tmp_path("o.gguf"), targets[t], true);
        }
        unlink(in);
    }
    unlink(tmp_path("o.gguf"));
}

static void test_deterministic(void) {
    const char *in = tmp_path("model-f32.gguf");
    CHECK_EQ(quantize(in, tmp_path("a.gguf"), "q4_K_M", 1, NULL, NULL), ANNEAL_OK);
    CHECK_EQ(quantize(in, tmp_path("b.gguf"), "q4_K_M", 3, NULL, NULL), ANNEAL_OK);
    anneal_map a = {0}, b = {0};
    CHECK_EQ(anneal_map_file(tmp_path("a.gguf"), &a, NULL), ANNEAL_OK);
    CHECK_EQ(anneal_map_file(tmp_path("b.gguf"), &b, NULL), ANNEAL_OK);
    CHECK(a.size == b.size && a.size > 0 && memcmp(a.data, b.data, a.size) == 0);
    anneal_unmap(&a);
    anneal_unmap(&b);
    unlink(tmp_path("a.gguf"));
    unlink(tmp_path("b.gguf"));
}

static void test_errors(void) {
    anneal_err err = {0};
    CHECK_EQ(quantize(tmp_path("model-f32.gguf"), tmp_path("x.gguf"), "q3_K", 1, NULL, &err),
             ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(err.msg, "unknown type 'q3_K'");
    CHECK_CONTAINS(err.msg, "q4_0, q4_1, q5_0, q4_K, q5_K, q6_K, q4_K_M, q5_K_M");
    anneal_err_clear(&err);
    CHECK_EQ(quantize(tmp_path("nope.gguf"), tmp_path("x.gguf"), "q8_0", 1, NULL, &err),
             ANNEAL_ERR_IO);
    CHECK_CONTAINS(err.msg, "nope.gguf");
    anneal_err_clear(&err);
    CHECK_EQ(quantize(tmp_path("model-f32.gguf"), tmp_path("q.gguf"), "q8_0", 1, NULL, &err),
             ANNEAL_OK);
    CHECK_EQ(quantize(tmp_path("q.gguf"), tmp_path("x.gguf"), "q4_0", 1, NULL, &err),
             ANNEAL_ERR_UNSUPPORTED);
    CHECK_CONTAINS(err.msg, "already quantized (tensor 'token_embd.weight' is q8_0)");
    CHECK(access(tmp_path("x.gguf"), F_OK) != 0);
    unlink(tmp_path("q.gguf"));
}

// ---- the streamed output -------------------------------------------------------------

typedef struct prog_log {
    size_t n_done, last_i;
    uint64_t last_done, total;
    bool in_order;
} prog_log;

static void log_progress(void *ctx, size_t i, bool tensor_done, uint64_t done, uint64_t total) {
    prog_log *p = ctx;
    if (i < p->last_i || done < p->last_done || (p->total && total != p->total))
        p->in_order = false;
    if (tensor_done && i != p->n_done) p->in_order = false; // each tensor completes once, in order
    p->n_done += tensor_done;
    p->last_i = i;
    p->last_done = done;
    p->total = total;
}

static void test_streamed_output(void) {
    // Tensors are produced chunk by chunk through the writer's fill callbacks; the file is
    // exactly what anneal_gguf_writer_write gives for the same key/values and tensors held in
    // memory (a copy of it, written again, is identical).
    prog_log p = {.in_order = true};
    anneal_quantize_opts o = {.target = "q4_K_M",
                              .n_threads = 2,
                              .command = "anneal quantize test",
                              .progress = log_progress,
                              .progress_ctx = &p};
    anneal_err err = {0};
    CHECK_EQ(anneal_quantize_file(tmp_path("model-f32.gguf"), tmp_path("s.gguf"), &o, NULL, &err),
             ANNEAL_OK);
    anneal_gguf *g = NULL;
    CHECK_EQ(anneal_gguf_open(tmp_path("s.gguf"), &g, &err), ANNEAL_OK);
    if (!g) return;
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    CHECK_EQ(anneal_gguf_writer_copy(w, g), ANNEAL_OK);
    CHECK_EQ(anneal_gguf_writer_write(w, tmp_path("w.gguf"), &err), ANNEAL_OK);
    anneal_gguf_writer_free(w);
    uint64_t data = 0;
    for (uint64_t i = 0; i < anneal_gguf_n_tensors(g); i++)
        data += anneal_gguf_tensor_at(g, i)->nbytes;
    CHECK(p.in_order);
    CHECK_EQ(p.n_done, anneal_gguf_n_tensors(g));
    CHECK_EQ(p.last_done, data);
    CHECK_EQ(p.total, data);
    anneal_gguf_close(g);
    anneal_map x = {0}, y = {0};
    CHECK_EQ(anneal_map_file(tmp_path("s.gguf"), &x, NULL), ANNEAL_OK);
    CHECK_EQ(anneal_map_file(tmp_path("w.gguf"), &y, NULL), ANNEAL_OK);
    CHECK(x.size == y.size && x.size > 0 && memcmp(x.data, y.data, x.size) == 0);
    anneal_unmap(&x);
    anneal_unmap(&y);
    unlink(tmp_path("s.gguf"));
    unlink(tmp_path("w.gguf"));
}

// ---- anneal init through the binary --------------------------------------------------

// Runs the anneal binary with args (a shell fragment); returns its exit status, stderr in
// tmp_path("err").
static int run_anneal(const char *args) {
    const char *bin = getenv("ANNEAL_BIN");
    if (!bin) return -1;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "ANNEAL_LINEAGE_TIME=2026-11-29T10:30:00Z '%s' %s >'%s' 2>'%s'", bin,
             args, tmp_path("stdout"), tmp_path("err"));
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *slurp(const char *path) {
    char *data = NULL;
    size_t size;
    if (anneal_read_file(path, 1 << 20, &data, &size, NULL)) return NULL;
    return data;
}

static void test_init_flags(void) {
    if (!getenv("ANNEAL_BIN")) {
        fprintf(stderr, "ANNEAL_BIN not set: skipping\n");
        return;
    }
    char base[1024];
    snprintf(base, sizeof base, "init --arch llama --vocab-from '%s'",
             test_shared("fixtures/vocab/ggml-vocab-llama-spm.gguf"));
    struct {
        const char *flags, *want;
        int rc;
    } cases[] = {
        {"--dim 96 --layers 2 --heads 5 --ffn 64 o.gguf", "--dim 96 is not a multiple of --heads 5",
         2},
        {"--dim 96 --layers 2 --heads 4 --kv-heads 3 --ffn 64 o.gguf",
         "--heads 4 is not a multiple of --kv-heads 3", 2},
        {"--dim 96 --layers 2 --heads 32 --ffn 64 o.gguf", "head size 3: must be even", 2},
        {"--dim 96 --layers 2 --heads 4 --ffn 64 --type q4_K o.gguf",
         "--dim 96 must be a multiple of 256 for --type q4_K", 2},
        {"--dim 256 --layers 2 --heads 4 --ffn 100 --type q4_K_M o.gguf",
         "--ffn 100 must be a multiple of 256 for --type q4_K_M", 2},
        {"--dim 96 --layers 2 --heads 4 --ffn 48 --type q8_0 o.gguf",
         "--ffn 48 must be a multiple of 32 for --type q8_0", 2},
        {"--dim 96 --layers 2 --heads 4 --ffn 64 --type q3_K o.gguf", "--type 'q3_K' is not one of",
         2},
        {"--dim 96 --layers 0 --heads 4 --ffn 64 o.gguf", "--layers '0' must be an integer", 2},
        {"--dim 96 --heads 4 --ffn 64 o.gguf", "--layers is required", 2},
        {"--dim 96 --layers 2 --heads 4 --ffn 64", "OUT.gguf is required", 2},
        {"--dim 96 --layers 2 --heads 4 --ffn 64 --seed -1 o.gguf", "--seed '-1'", 2},
        {"--dim 96 --layers 2 --heads 4 --ffn 64 --bogus 1 o.gguf", "unknown flag '--bogus'", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[2048];
        snprintf(args, sizeof args, "%s %s", base, cases[i].flags);
        CHECK_EQ(run_anneal(args), cases[i].rc);
        char *e = slurp(tmp_path("err"));
        CHECK_CONTAINS(e, cases[i].want);
        anneal_free(e);
    }
    CHECK_EQ(run_anneal("init --arch gpt2 --dim 64 --layers 1 --heads 2 --ffn 64 "
                        "--vocab-from v.gguf o.gguf"),
             2);
    char args[2048];
    snprintf(args, sizeof args,
             "init --arch llama --dim 64 --layers 1 --heads 2 --ffn 64 "
             "--vocab-from '%s' '%s'",
             tmp_path("missing.gguf"), tmp_path("o.gguf"));
    CHECK_EQ(run_anneal(args), 1);
    char *e = slurp(tmp_path("err"));
    CHECK_CONTAINS(e, "missing.gguf");
    anneal_free(e);
}

static void test_init_model(void) {
    if (!getenv("ANNEAL_BIN")) return;
    char vocab_copy[1024]; // test_shared's buffer is reused
    snprintf(vocab_copy, sizeof vocab_copy, "%s",
             test_shared("fixtures/vocab/ggml-vocab-llama-spm.gguf"));
    const char *outs[] = {"i1.gguf", "i2.gguf", "i3.gguf"};
    const char *extra[] = {"--seed 5 --threads 1", "--seed 5 --threads 3", "--seed 6 --threads 1"};
    for (int k = 0; k < 3; k++) {
        char args[2048];
        snprintf(args, sizeof args,
                 "init --arch llama --dim 64 --layers 3 --heads 4 --kv-heads 2 --ffn 96 "
                 "--vocab-from '%s' %s '%s'",
                 vocab_copy, extra[k], tmp_path(outs[k]));
        CHECK_EQ(run_anneal(args), 0);
    }
    anneal_map a = {0}, b = {0}, c = {0};
    CHECK_EQ(anneal_map_file(tmp_path("i1.gguf"), &a, NULL), ANNEAL_OK);
    CHECK_EQ(anneal_map_file(tmp_path("i2.gguf"), &b, NULL), ANNEAL_OK);
    CHECK_EQ(anneal_map_file(tmp_path("i3.gguf"), &c, NULL), ANNEAL_OK);
    // Same seed, different thread counts: the same bytes but for the command in the lineage
    // (--threads 1 vs 3: one byte), so compare the tensor data sections.
    CHECK(a.size == b.size && a.size == c.size);
    anneal_gguf *ga = NULL, *gc = NULL;
    CHECK_EQ(anneal_gguf_open(tmp_path("i1.gguf"), &ga, NULL), ANNEAL_OK);
    CHECK_EQ(anneal_gguf_open(tmp_path("i3.gguf"), &gc, NULL), ANNEAL_OK);
    if (ga && gc && a.size == b.size) {
        uint64_t off = anneal_gguf_data_offset(ga);
        CHECK(memcmp(a.data + off, b.data + off, a.size - off) == 0);
        CHECK(memcmp(a.data + off, c.data + off, a.size - off) != 0);
        CHECK_EQ(anneal_gguf_n_tensors(ga), 3 + 9 * 3);
        uint64_t v;
        CHECK_EQ(anneal_gguf_get_u64(ga, "llama.vocab_size", &v, NULL), ANNEAL_OK);
        CHECK_EQ(v, 32000);
        CHECK_EQ(anneal_gguf_get_u64(ga, "llama.attention.head_count_kv", &v, NULL), ANNEAL_OK);
        CHECK_EQ(v, 2);
        CHECK_EQ(anneal_gguf_get_u64(ga, "llama.rope.dimension_count", &v, NULL), ANNEAL_OK);
        CHECK_EQ(v, 16);
        CHECK(anneal_gguf_find(ga, "tokenizer.ggml.tokens") != NULL);
        const anneal_gguf_tensor *k = anneal_gguf_find_tensor(ga, "blk.0.attn_k.weight");
        CHECK(k && k->dims[0] == 64 && k->dims[1] == 32);
        // Statistics: std 0.02, residual projections 0.02/sqrt(2*3), norms exactly 1.
        struct {
            const char *name;
            double std;
        } st[] = {{"token_embd.weight", 0.02},
                  {"blk.1.ffn_up.weight", 0.02},
                  {"blk.2.attn_output.weight", 0.02 / sqrt(6.0)},
                  {"blk.0.ffn_down.weight", 0.02 / sqrt(6.0)},
                  {"blk.1.attn_norm.weight", 0}};
        for (size_t i = 0; i < sizeof st / sizeof st[0]; i++) {
            const anneal_gguf_tensor *t = anneal_gguf_find_tensor(ga, st[i].name);
            CHECK(t && t->type == ANNEAL_TYPE_F32);
            if (!t) continue;
            const float *x = (const float *)t->data;
            uint64_t n = t->nbytes / 4;
            double s1 = 0, s2 = 0;
            for (uint64_t j = 0; j < n; j++) {
                s1 += x[j];
                s2 += (double)x[j] * x[j];
            }
            if (st[i].std == 0) {
                CHECK_NEAR(s1, (double)n, 0);
                continue;
            }
            double mean = s1 / (double)n, sd = sqrt(s2 / (double)n - mean * mean);
            CHECK_NEAR(mean, 0, 4 * st[i].std / sqrt((double)n));
            CHECK_NEAR(sd / st[i].std, 1, 0.05);
        }
        anneal_lineage *lin = NULL;
        CHECK_EQ(anneal_lineage_read(ga, &lin, NULL), ANNEAL_OK);
        if (lin) {
            anneal_lineage_parent p;
            anneal_lineage_parent_file(&p, "vocab", vocab_copy, NULL);
            CHECK_EQ(lin->n_parents, 1);
            CHECK_STR(lin->parents[0].sha256, p.sha256);
            CHECK_STR(lin->parents[0].role, "vocab");
            CHECK_CONTAINS(lin->command, "anneal init --arch llama --dim 64");
            CHECK_CONTAINS(lin->config, "\"dim\":64,\"layers\":3,\"heads\":4,\"kv_heads\":2");
            CHECK_STR(lin->created, "2026-11-29T10:30:00Z");
        }
        anneal_lineage_free(lin);
    }
    anneal_gguf_close(ga);
    anneal_gguf_close(gc);
    // Rerunning the first command gives the same bytes, lineage included (fixed time).
    uint8_t *first = anneal_malloc(a.size ? a.size : 1);
    size_t first_size = a.size;
    if (a.size) memcpy(first, a.data, a.size);
    anneal_unmap(&a);
    anneal_unmap(&b);
    anneal_unmap(&c);
    char args[2048];
    snprintf(args, sizeof args,
             "init --arch llama --dim 64 --layers 3 --heads 4 --kv-heads 2 --ffn 96 "
             "--vocab-from '%s' %s '%s'",
             vocab_copy, extra[0], tmp_path(outs[0]));
    CHECK_EQ(run_anneal(args), 0);
    CHECK_EQ(anneal_map_file(tmp_path("i1.gguf"), &a, NULL), ANNEAL_OK);
    CHECK(a.size == first_size && memcmp(a.data, first, first_size) == 0);
    anneal_unmap(&a);
    anneal_free(first);
    // A quantized init: K types in a mix, with the vocabulary sized embedding.
    snprintf(args, sizeof args,
             "init --arch llama --dim 256 --layers 2 --heads 4 --ffn 256 --type q4_K_M --tied "
             "--vocab-from '%s' '%s'",
             vocab_copy, tmp_path("iq.gguf"));
    CHECK_EQ(run_anneal(args), 0);
    anneal_gguf *gq = NULL;
    CHECK_EQ(anneal_gguf_open(tmp_path("iq.gguf"), &gq, NULL), ANNEAL_OK);
    if (gq) {
        CHECK(anneal_gguf_find_tensor(gq, "output.weight") == NULL);
        CHECK_EQ(anneal_gguf_find_tensor(gq, "token_embd.weight")->type, ANNEAL_TYPE_Q6_K);
        CHECK_EQ(anneal_gguf_find_tensor(gq, "blk.0.attn_q.weight")->type, ANNEAL_TYPE_Q4_K);
        CHECK_EQ(anneal_gguf_find_tensor(gq, "blk.1.ffn_down.weight")->type, ANNEAL_TYPE_Q6_K);
        CHECK_EQ(anneal_gguf_find_tensor(gq, "blk.0.ffn_norm.weight")->type, ANNEAL_TYPE_F32);
        uint64_t v;
        CHECK_EQ(anneal_gguf_get_u64(gq, "general.file_type", &v, NULL), ANNEAL_OK);
        CHECK_EQ(v, 15);
    }
    anneal_gguf_close(gq);
    const char *files[] = {"i1.gguf", "i2.gguf", "i3.gguf", "iq.gguf", "stdout", "err"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        unlink(tmp_path(files[i]));
}

int main(void) {
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    setenv(ANNEAL_LINEAGE_TIME_ENV, "2026-11-29T10:30:00Z", 1);
    RUN(test_every_target);
    RUN(test_half_inputs_and_tied);
    RUN(test_deterministic);
    RUN(test_errors);
    RUN(test_streamed_output);
    RUN(test_init_flags);
    RUN(test_init_model);
    for (size_t i = 0; i < N_SPECS; i++)
        anneal_free(VALUES[i]);
    unlink(tmp_path("model-f32.gguf"));
    unlink(tmp_path("stdout"));
    unlink(tmp_path("err"));
    rmdir(tmp_dir);
    return TEST_EXIT();
}
