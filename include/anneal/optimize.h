// anneal optimize: quantizing model files (llama.cpp's tensor-type conventions, including the
// Q4_K_M / Q5_K_M mixes), tensor by tensor through the GGUF writer's fill callbacks, so that
// a model never has to be held in memory whole. docs/quantize.md describes the rules.
#ifndef ANNEAL_OPTIMIZE_H
#define ANNEAL_OPTIMIZE_H

#include "anneal/base.h"
#include "anneal/gguf.h"
#include "anneal/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- targets ------------------------------------------------------------------------
// A target names what a model is converted to: a single type or a llama.cpp mix.
typedef struct anneal_quant_target {
    const char *name;   // "q4_K_M", as accepted on the command line (case-insensitive)
    uint32_t file_type; // llama_ftype number written to general.file_type
    uint32_t base_type; // anneal_type of most 2-D weights
    bool mix;           // true: llama.cpp's per-tensor rules; false: every weight base_type
    bool quantized;     // base_type is a block-quantized type
} anneal_quant_target;

// The targets, in the order `anneal quantize --help` lists them; *n gets the count.
const anneal_quant_target *anneal_quant_targets(size_t *n);
// Case-insensitive look-up; NULL when unknown.
const anneal_quant_target *anneal_quant_target_find(const char *name);
// "f32, f16, ..., q5_K_M" (every target name) into buf.
void anneal_quant_target_list(char *buf, size_t cap);

// The facts about a model that the rules look at.
typedef struct anneal_quant_model {
    uint32_t n_layer; // llama.block_count (0 when unknown)
    bool is_70b;      // llama.cpp's LLM_TYPE_70B: 80 layers with grouped-query attention
} anneal_quant_model;

// One tensor as the rules see it.
typedef struct anneal_quant_tensor {
    const char *name;
    uint32_t n_dims;
    uint64_t dims[ANNEAL_GGUF_MAX_DIMS]; // innermost first
    uint32_t type;                       // its type now
} anneal_quant_tensor;

// Chooses the output type of each of the n tensors (in file order, as llama.cpp counts
// layers) for target t into types[i]; fallback[i] (may be NULL) is set when the chosen type
// did not fit the row length and a fallback was used. Tensors that are not quantized
// (1-D, norms, not ending in "weight") keep their type, except that a float target converts
// 2-D weights to its float type. Never fails.
void anneal_quant_plan(const anneal_quant_target *t, const anneal_quant_model *m,
                       const anneal_quant_tensor *ts, size_t n, uint32_t *types, bool *fallback);

// The plan anneal_quantize_file follows for g: types[i] (and fallback[i], may be NULL) for
// each of its anneal_gguf_n_tensors(g) tensors, the layer count and the 70B test read from
// its metadata. ANNEAL_ERR_FORMAT for a tensor name holding a NUL byte.
anneal_status anneal_quant_plan_file(const anneal_gguf *g, const anneal_quant_target *t,
                                     uint32_t *types, bool *fallback, anneal_err *err);

// ---- quantizing a file --------------------------------------------------------------
// Called as each chunk of output tensor i is produced (in file order, from the calling
// thread): done bytes of tensor data so far out of total; tensor_done on the last chunk of
// tensor i. A tensor without data (a zero dimension) has no chunks and is not reported.
typedef void (*anneal_quantize_progress_fn)(void *ctx, size_t i, bool tensor_done, uint64_t done,
                                            uint64_t total);

typedef struct anneal_quantize_opts {
    const char *target;                   // a target name
    int n_threads;                        // <= 0: anneal_thread_count()
    const char *command;                  // recorded as anneal.lineage.command (NULL = "")
    anneal_quantize_progress_fn progress; // may be NULL; i indexes the input's tensors
    void *progress_ctx;
} anneal_quantize_opts;

typedef struct anneal_quantize_stats {
    uint64_t in_bytes, out_bytes;              // file sizes
    uint64_t n_tensors, n_quantized;           // all tensors; those converted to another type
    uint64_t n_fallback;                       // tensors whose row length forced a fallback type
    uint64_t count_by_type[ANNEAL_TYPE_COUNT]; // output tensors per type
    uint32_t file_type;
    double seconds;
} anneal_quantize_stats;

// Reads in_path (F32/F16/BF16 weights), writes out_path with the target's tensor types, every
// key/value copied (general.file_type and general.quantization_version set, earlier
// anneal.lineage.* replaced by this step's, with the input's SHA-256 as parent "input").
// Errors: ANNEAL_ERR_INVALID_ARG for an unknown target (the message lists the valid ones),
// ANNEAL_ERR_UNSUPPORTED when a 2-D weight is already quantized (naming it), I/O and format
// errors from reading and writing. stats may be NULL.
anneal_status anneal_quantize_file(const char *in_path, const char *out_path,
                                   const anneal_quantize_opts *opts, anneal_quantize_stats *stats,
                                   anneal_err *err);

#ifdef __cplusplus
}
#endif
#endif
