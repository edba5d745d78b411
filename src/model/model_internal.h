// Internals shared by the model loader (model.c), the paged KV cache (kv.c), the ops
// (ops.c) and the batched forward pass (forward.c).
#ifndef ANNEAL_MODEL_INTERNAL_H
#define ANNEAL_MODEL_INTERNAL_H

#include "anneal/model.h"
#include "anneal/tensor.h"

// One weight bound to the mapping: never copied.
typedef struct model_weight {
    const anneal_gguf_tensor *t; // NULL when an optional tensor is absent
    const void *data;            // t->data
    uint32_t type;               // t->type
    uint64_t row_bytes;          // bytes of one row (dims[0] elements)
} model_weight;

typedef struct model_layer {
    model_weight attn_norm;    // F32 [n_embd]
    model_weight wq, wk, wv;   // [n_embd] -> [n_head*head_dim], [kv_dim], [kv_dim]
    model_weight bq, bk, bv;   // F32 biases (qwen2), absent for llama
    model_weight wo;           // [n_head*head_dim] -> [n_embd]
    model_weight ffn_norm;     // F32 [n_embd]
    model_weight w_gate, w_up; // [n_embd] -> [n_ff]
    model_weight w_down;       // [n_ff] -> [n_embd]
} model_layer;

// A weight replaced by a private, LoRA-merged copy (lora.c); data is anneal_aligned_alloc'd.
typedef struct model_lora_buf {
    const anneal_gguf_tensor *t;
    void *data;
} model_lora_buf;

struct anneal_model {
    anneal_gguf *g;
    anneal_model_config cfg;
    model_weight tok_embd; // [n_embd] x n_vocab rows
    model_weight out_norm; // F32 [n_embd]
    model_weight output;   // [n_embd] x n_vocab rows; == tok_embd when tied
    model_layer *layers;   // [n_layer]
    double *rope_inv_freq; // [n_rot/2] radians per position for pair i, scaling applied
    uint64_t bytes_per_token;
    model_lora_buf *lora_bufs; // [n_lora_bufs] merged weights, freed with the model
    int32_t n_lora_bufs, n_lora; // n_lora: adapters applied
};

// Frees the merged copies (lora.c).
void model_lora_free(anneal_model *m);

// The paged cache. Per layer, K and V each hold n_blocks blocks of block_size rows of
// kv_dim elements: row (layer, block, slot) at ((layer*n_blocks + block)*block_size + slot).
struct anneal_kv {
    int32_t n_layer, kv_dim, block_size, n_blocks, max_seqs, max_len, max_seq_blocks;
    uint32_t type;      // ANNEAL_TYPE_F16 or ANNEAL_TYPE_F32
    size_t elem_size;   // 2 or 4
    uint8_t *k, *v;     // [n_layer][n_blocks][block_size][kv_dim]
    int32_t *free_list; // stack of free physical blocks, n_free of them
    int32_t n_free;
    int32_t *ref;       // [n_blocks] sequences whose table holds the block (0 = free);
                        // a shared block is always full, so no forward writes into it
    int32_t *table;   // [max_seqs][max_seq_blocks] logical -> physical block
    int32_t *len;     // [max_seqs] positions stored
    int32_t *n_held;  // [max_seqs] blocks held
    int32_t *scratch; // [2*max_seqs] per-call bookkeeping for anneal_forward
};

// Address of row (layer, physical block, slot) of K or V.
static inline void *kv_row(const anneal_kv *kv, const uint8_t *base, int32_t layer, int32_t block,
                           int32_t slot) {
    size_t row = ((size_t)layer * (size_t)kv->n_blocks + (size_t)block) * (size_t)kv->block_size +
                 (size_t)slot;
    return (void *)(base + row * (size_t)kv->kv_dim * kv->elem_size);
}

// Physical block of position pos of sequence seq (pos < the blocks it holds * block_size).
static inline int32_t kv_block_of(const anneal_kv *kv, int32_t seq, int32_t pos) {
    return kv->table[(size_t)seq * (size_t)kv->max_seq_blocks + (size_t)(pos / kv->block_size)];
}

// Takes blocks so that seq can hold new_len positions; the caller checked there are
// enough free blocks. Sets the length.
void kv_grow(anneal_kv *kv, int32_t seq, int32_t new_len);
// Blocks seq needs beyond what it holds to reach new_len positions.
int32_t kv_blocks_needed(const anneal_kv *kv, int32_t seq, int32_t new_len);

// ---- ops (ops.c) -----------------------------------------------------------------------
// y = x / sqrt(mean(x^2) + eps) * w, n elements (y may alias x).
void ops_rmsnorm(float *y, const float *x, const float *w, int32_t n, float eps);
// Rotates one head vector x[head_dim] in place for position pos: pairs (2i, 2i+1) for NORM,
// (i, i + n_rot/2) for NEOX, i < n_rot/2, by angle pos * inv_freq[i]; cs holds
// cos, sin interleaved for the n_rot/2 pairs (ops_rope_cache fills it).
void ops_rope_cache(float *cs, const double *inv_freq, int32_t n_rot, int32_t pos);
void ops_rope_apply(float *x, const float *cs, int32_t n_rot, anneal_rope_type type);
// Fills inv_freq[n_rot/2] from the config (base, llama3 scaling) and, when given, the
// rope_freqs.weight factors (each frequency divided by its factor).
void ops_rope_freqs(double *inv_freq, const anneal_model_config *cfg, const float *factors);
// Attention kernels for a cache row type (F16 or F32), the best the CPU has at
// anneal_kernels_level(). g query heads of head_dim hd share one K/V row:
//   kdot: out[h*os] = dot(K row, q + h*hd)            for h < g
//   vacc: acc[h*hd + i] += w[h*ws] * V row[i]         for h < g, i < hd
//   exps: x[i] = exp(x[i] - m) for i < n, returns their sum (x[i] <= m)
typedef struct ops_attn_kernels {
    void (*kdot)(int32_t hd, int32_t g, const void *k, const float *q, float *out, int32_t os);
    void (*vacc)(int32_t hd, int32_t g, const void *v, const float *w, int32_t ws, float *acc);
    float (*exps)(float *x, int32_t n, float m);
} ops_attn_kernels;
ops_attn_kernels ops_attn_get(uint32_t type);
// The kernels of a given level (REF = plain C), for tests; plain C when the CPU lacks it.
ops_attn_kernels ops_attn_at(uint32_t type, anneal_kernel_level level);
// y[i] = silu(g[i]) * u[i] (y may alias g), the best kernel at anneal_kernels_level().
void ops_swiglu(float *y, const float *g, const float *u, int32_t n);

#endif
