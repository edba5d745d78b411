// anneal model: Llama-family models from GGUF (config and mmap'd weights), the paged KV
// cache, and the one batched forward pass that every caller uses (generation, serving,
// perplexity, evaluation, distillation, embeddings).
#ifndef ANNEAL_MODEL_H
#define ANNEAL_MODEL_H

#include "anneal/base.h"
#include "anneal/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- configuration ----------------------------------------------------------------
typedef enum anneal_rope_type {
    ANNEAL_ROPE_NORM = 0, // rotate adjacent pairs (2i, 2i+1): llama (Q/K permuted by converters)
    ANNEAL_ROPE_NEOX = 1, // rotate (i, i + n_rot/2): qwen2
} anneal_rope_type;

// Read from the file's metadata ("<arch>.*" keys) and validated against the tensors.
typedef struct anneal_model_config {
    char arch[16];        // general.architecture: "llama" or "qwen2"
    int32_t n_vocab;      // rows of token_embd.weight
    int32_t n_embd;       // <arch>.embedding_length
    int32_t n_layer;      // <arch>.block_count
    int32_t n_head;       // <arch>.attention.head_count
    int32_t n_head_kv;    // <arch>.attention.head_count_kv (default n_head)
    int32_t head_dim;     // <arch>.attention.key_length (default n_embd / n_head)
    int32_t n_ff;         // <arch>.feed_forward_length
    int32_t n_ctx_train;  // <arch>.context_length
    float norm_eps;       // <arch>.attention.layer_norm_rms_epsilon
    float rope_freq_base; // <arch>.rope.freq_base (default 10000)
    int32_t n_rot;        // <arch>.rope.dimension_count (default head_dim)
    anneal_rope_type rope_type;
    // Llama 3 rope scaling (<arch>.rope.scaling.type = "llama3" or a rope_freqs.weight
    // tensor); rope_scale_factor = 0 means none.
    float rope_scale_factor, rope_low_freq_factor, rope_high_freq_factor;
    int32_t rope_orig_ctx;
    bool rope_freqs;      // a rope_freqs.weight tensor divides each rope frequency (llama3)
    bool qkv_bias;        // attn_q/k/v.bias present (qwen2)
    bool tied_embeddings; // no output.weight: the output projection is token_embd.weight
} anneal_model_config;

typedef struct anneal_model anneal_model; // immutable after load; shareable across threads

// Maps the file, reads and validates the config, binds every tensor (unsupported
// architecture, missing tensors, wrong shapes or unsupported weight types give an error
// naming the key or tensor). The tokenizer is not loaded here: callers that need text
// load it from the same file with anneal_tokenizer_load(anneal_model_gguf(m), ...).
// Free with anneal_model_free.
anneal_status anneal_model_load(const char *path, anneal_model **out, anneal_err *err);
void anneal_model_free(anneal_model *m);
const anneal_model_config *anneal_model_config_of(const anneal_model *m);
const anneal_gguf *anneal_model_gguf(const anneal_model *m);
// Bytes of weights one decode step reads (every matrix once, plus one embedding row).
uint64_t anneal_model_bytes_per_token(const anneal_model *m);

// ---- LoRA adapters (docs/training.md "LoRA") -------------------------------------------
// Applies a GGUF LoRA adapter (llama.cpp's layout: general.type = adapter, adapter.type =
// lora, adapter.lora.alpha, tensors "<base tensor>.lora_a" with dims [n_in, r] and
// ".lora_b" with dims [r, n_out]) by merging W' = W + s * B.A into private copies of the
// targeted weights; s = scale * alpha / r (scale alone when alpha is 0). The mapped file
// is never written. Targets: the layer matrices attn_q/k/v/output, ffn_gate/up/down and an
// untied output.weight. Quantized weights are dequantized, summed and requantized to their
// own type row by row (approximate: the sum is rounded to that type). The whole adapter is
// checked first (general.type, adapter.type, architecture, alpha, pairs, names, shapes,
// types; messages name the file and tensor): on failure the model is unchanged. Several
// adapters stack. Call before any ctx is made and while no other thread uses m.
anneal_status anneal_model_apply_lora(anneal_model *m, const char *path, float scale,
                                      anneal_err *err);
// Applies a list "FILE[:SCALE],FILE[:SCALE]..." in order (SCALE defaults to 1; the text
// after a file's last ':' is its scale when it is a number).
anneal_status anneal_model_apply_lora_list(anneal_model *m, const char *list, anneal_err *err);
// Adapters applied so far (0 after a plain load).
int32_t anneal_model_lora_count(const anneal_model *m);
struct anneal_lineage;
// Writes the model as GGUF: every key/value and tensor of the file it was loaded from, in
// order, with the weights as they are now (merged adapters included); when lin is given its
// anneal.lineage.* keys replace the copied ones (anneal_lineage_set).
anneal_status anneal_model_write(const anneal_model *m, const char *path,
                                 const struct anneal_lineage *lin, anneal_err *err);

// ---- paged KV cache -----------------------------------------------------------------
// K and V for every layer live in fixed-size blocks of block_size positions taken from
// one pool; each sequence has a block table (logical block -> physical block). Blocks
// are taken as a sequence grows and returned when it is cleared or truncated.
typedef struct anneal_kv_params {
    int32_t block_size; // positions per block (default 16)
    int32_t n_blocks;   // blocks in the pool, shared by all sequences
    int32_t max_seqs;   // sequence ids are 0 .. max_seqs-1
    int32_t max_len;    // positions per sequence at most (<= n_ctx_train is not enforced)
    uint32_t type;      // ANNEAL_TYPE_F16 (default) or ANNEAL_TYPE_F32
} anneal_kv_params;

// Room for max_seqs sequences of n_ctx positions each.
anneal_kv_params anneal_kv_params_default(int32_t n_ctx, int32_t max_seqs);

typedef struct anneal_kv anneal_kv;
anneal_status anneal_kv_new(const anneal_model *m, const anneal_kv_params *p, anneal_kv **out,
                            anneal_err *err);
void anneal_kv_free(anneal_kv *kv);
int32_t anneal_kv_seq_len(const anneal_kv *kv, int32_t seq); // positions stored; -1 bad seq
void anneal_kv_seq_clear(anneal_kv *kv, int32_t seq);        // drop all, return its blocks
// Keep positions [0, n_pos) (n_pos <= length) and return blocks no longer needed.
// A kept partial block that another sequence shares is first copied (copy on write):
// ANNEAL_ERR_LIMIT, with nothing changed, when that needs a block and none is free.
anneal_status anneal_kv_seq_truncate(anneal_kv *kv, int32_t seq, int32_t n_pos, anneal_err *err);
// Makes the empty sequence dst start with the first n_pos positions of src (a shared
// prompt prefix) without recomputing them: src's full blocks are shared by reference
// (a block returns to the pool when no sequence holds it), a trailing partial block is
// copied into a fresh block (ANNEAL_ERR_LIMIT when none is free). Both sequences may then
// grow independently; neither writes into a shared block.
anneal_status anneal_kv_seq_share(anneal_kv *kv, int32_t dst, int32_t src, int32_t n_pos,
                                  anneal_err *err);
int32_t anneal_kv_free_blocks(const anneal_kv *kv);  // blocks no sequence holds
uint64_t anneal_kv_bytes(const anneal_kv *kv); // memory held by the pool

// ---- forward --------------------------------------------------------------------------
// A batch of tokens from one or more sequences. Each sequence's tokens in the batch must
// continue it in order: the first has pos == anneal_kv_seq_len(seq), the next pos + 1...
typedef struct anneal_batch {
    int32_t n_tokens;
    const int32_t *tokens; // [n_tokens]
    const int32_t *seq;    // [n_tokens] sequence ids
    const int32_t *pos;    // [n_tokens] positions
    const bool *output;    // [n_tokens] produce a row for this token; NULL = the last token
                           // of each sequence in the batch
} anneal_batch;

typedef enum anneal_output_kind {
    ANNEAL_OUTPUT_LOGITS = 0, // rows of n_vocab logits
    ANNEAL_OUTPUT_HIDDEN = 1, // rows of n_embd final hidden states (after the output norm)
} anneal_output_kind;

typedef struct anneal_ctx_params {
    int32_t max_batch; // tokens per forward call at most (default 512)
    int32_t n_threads; // 0 = anneal_thread_count()
    anneal_output_kind output;
} anneal_ctx_params;
anneal_ctx_params anneal_ctx_params_default(void);

// Work memory (sized once for max_batch; nothing is allocated per call) and a thread
// pool. One forward at a time per ctx; several ctx may share a model.
typedef struct anneal_ctx anneal_ctx;
anneal_status anneal_ctx_new(const anneal_model *m, const anneal_ctx_params *p, anneal_ctx **out,
                             anneal_err *err);
void anneal_ctx_free(anneal_ctx *c);

// Runs the batch through the model: appends each token's K and V to its sequence in kv
// (taking blocks as needed; ANNEAL_ERR_LIMIT when the pool or max_len runs out), and
// writes one output row per selected token, in batch order, to out (room for out_rows
// rows; ANNEAL_ERR_RANGE when they do not fit; out may be NULL when no row is selected).
// *n_out = rows written. The whole batch is checked first (token ids, sequence ids,
// positions, n_tokens <= max_batch; messages name the batch index): a rejected batch
// appends nothing. n_tokens == 0 is a no-op. One forward at a time per kv as well as per
// ctx. Prefill of many tokens and decode of many sequences are both matrix-matrix work
// over all the batch's tokens; after the last layer's attention only the selected rows
// are carried on (docs/engine.md).
anneal_status anneal_forward(anneal_ctx *c, anneal_kv *kv, const anneal_batch *b, float *out,
                             int32_t out_rows, int32_t *n_out, anneal_err *err);

#ifdef __cplusplus
}
#endif
#endif
