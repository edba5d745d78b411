// anneal train: training llama-family models in F32 on the CPU. The trainer's forward is
// the engine's graph (same tensor names, same GGUF layout) over a whole [batch, seq] with
// saved activations, plus backward ops; AdamW, the learning-rate schedule, gradient
// clipping and accumulation; checkpoints that the engine loads unchanged.
#ifndef ANNEAL_TRAIN_H
#define ANNEAL_TRAIN_H

#include "anneal/base.h"
#include "anneal/gguf.h"
#include "anneal/lineage.h"
#include "anneal/model.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- parameters ------------------------------------------------------------------------
// One tensor of the model. Every parameter lives in one F32 array (and its gradient at the
// same offset in a second one), in the order `anneal init` writes them, back to back (so
// attn_q/k/v and ffn_gate/up are each one contiguous matrix).
typedef struct anneal_train_param {
    char name[64];    // GGUF tensor name: "token_embd.weight", "blk.0.attn_q.weight", ...
    uint32_t n_dims;  // 1 or 2
    int64_t dims[2];  // GGUF order, innermost first: [n_in, n_out] for a matrix
    size_t offset, n; // floats into params / grads
    bool trainable;   // false: gradients are not computed and the optimizer leaves it alone
    bool decay;       // AdamW weight decay applies (matrices by default, not norms)
} anneal_train_param;

// Row-major views into params (or grads): a matrix [n_out][n_in].
typedef struct anneal_train_layer {
    float *attn_norm;     // [n_embd]
    float *wq, *wk, *wv;  // [q_dim][n_embd], [kv_dim][n_embd], [kv_dim][n_embd]
    float *wo;            // [n_embd][q_dim]
    float *ffn_norm;      // [n_embd]
    float *w_gate, *w_up; // [n_ff][n_embd]
    float *w_down;        // [n_embd][n_ff]
} anneal_train_layer;

typedef struct anneal_train_model {
    anneal_model_config cfg;
    int32_t q_dim, kv_dim;
    float *params, *grads; // [n_params] each, 64-byte aligned
    size_t n_params;
    anneal_train_param *list; // [n_list]
    size_t n_list;
    // Views: w.* into params, g.* into grads. output == tok_embd when tied.
    struct {
        float *tok_embd, *out_norm, *output; // [n_vocab][n_embd], [n_embd], [n_vocab][n_embd]
        anneal_train_layer *layers;          // [n_layer]
    } w, g;
    double *rope_inv_freq; // [n_rot/2] as the engine computes them
    float *rope_factors;   // [n_rot/2] rope_freqs.weight when the model has one, else NULL
} anneal_train_model;

// A model of cfg's shape with every parameter 0 (llama, no attention biases; rope_freqs
// tensors are not created). Free with anneal_train_model_free.
anneal_status anneal_train_model_new(const anneal_model_config *cfg, anneal_train_model **out,
                                     anneal_err *err);
// The weights of a loaded engine model, dequantized to F32 (any weight type the engine
// reads). qwen2-style attention biases are ANNEAL_ERR_UNSUPPORTED.
anneal_status anneal_train_model_from(const anneal_model *m, anneal_train_model **out,
                                      anneal_err *err);
void anneal_train_model_free(anneal_train_model *tm);
// The parameter named `name`; NULL when absent.
anneal_train_param *anneal_train_model_find(anneal_train_model *tm, const char *name);
// Writes the model as an F32 GGUF the engine loads: the <arch>.* keys from cfg,
// every tokenizer.* key of vocab (may be NULL), extra keys (may be NULL: called with the
// writer before the tensors are added), and lineage (may be NULL). Atomic.
typedef anneal_status (*anneal_train_keys_fn)(void *ctx, anneal_gguf_writer *w, anneal_err *err);
anneal_status anneal_train_model_save(const anneal_train_model *tm, const char *path,
                                      const anneal_gguf *vocab, anneal_train_keys_fn keys,
                                      void *keys_ctx, const anneal_lineage *lin, anneal_err *err);

// ---- forward and backward --------------------------------------------------------------
// The loss over a batch: given logits [n_rows][n_vocab] and targets [n_rows], returns the
// sum of the per-row losses and writes d(scale * sum)/d(logits) into dlogits (which may
// alias logits; NULL = no gradient wanted). The default is cross-entropy; distillation
// plugs its own here. row0 is the first row's index in the batch (for callers that keep
// per-row data such as teacher logits). Called on thread ith of nth with rows split by
// anneal_split; the partial sums are added in thread order, so results are deterministic.
typedef double (*anneal_train_loss_fn)(void *ctx, int64_t row0, int64_t n_rows, int32_t n_vocab,
                                       const float *logits, const int32_t *targets, float scale,
                                       float *dlogits);

typedef struct anneal_train_ctx anneal_train_ctx;
// Work memory for batches of n_batch sequences of n_seq tokens (activations of every layer
// are kept for the backward pass) and a pool of n_threads (0 = anneal_thread_count()).
// Results are deterministic for a given thread count.
anneal_status anneal_train_ctx_new(anneal_train_model *tm, int32_t n_batch, int32_t n_seq,
                                   int32_t n_threads, anneal_train_ctx **out, anneal_err *err);
void anneal_train_ctx_free(anneal_train_ctx *c);
int anneal_train_ctx_threads(const anneal_train_ctx *c);
// Replaces the loss (NULL restores cross-entropy).
void anneal_train_ctx_set_loss(anneal_train_ctx *c, anneal_train_loss_fn fn, void *ctx);
// Forward over tokens [n_batch][n_seq] (positions 0..n_seq-1 in each row) and the loss
// against targets (same shape; a negative target is ignored); *loss = the mean over the
// counted targets. With backward, the gradient of grad_scale * mean loss is ADDED to
// tm->grads (zero them first with anneal_train_zero_grads; accumulation over micro-batches
// passes grad_scale = 1/n_micro). Token ids out of range are ANNEAL_ERR_RANGE.
anneal_status anneal_train_step(anneal_train_ctx *c, const int32_t *tokens, const int32_t *targets,
                                bool backward, float grad_scale, double *loss, anneal_err *err);
// The logits [n_batch * n_seq][n_vocab] of the last step (overwritten by its backward).
const float *anneal_train_logits(const anneal_train_ctx *c);
void anneal_train_zero_grads(anneal_train_ctx *c);

// ---- optimizer ---------------------------------------------------------------------------
typedef struct anneal_adamw_params {
    float beta1, beta2, eps, weight_decay; // decoupled decay, applied as p *= 1 - lr * wd
} anneal_adamw_params;
anneal_adamw_params anneal_adamw_default(void); // 0.9, 0.95, 1e-8, 0.1

typedef struct anneal_adamw {
    anneal_adamw_params p;
    int64_t step; // updates done
    float *m, *v; // [n_params]
} anneal_adamw;
anneal_status anneal_adamw_new(const anneal_train_model *tm, const anneal_adamw_params *p,
                               anneal_adamw **out, anneal_err *err);
void anneal_adamw_free(anneal_adamw *o);
// One update of every trainable parameter with learning rate lr (bias-corrected as
// PyTorch's AdamW does; weight decay only on params with decay set).
void anneal_adamw_update(anneal_adamw *o, anneal_train_ctx *c, float lr);

// L2 norm of all trainable gradients (deterministic: fixed chunks summed in order).
double anneal_train_grad_norm(anneal_train_ctx *c);
// Scales every gradient by s.
void anneal_train_grad_scale(anneal_train_ctx *c, float s);
// Clips to max_norm as torch.nn.utils.clip_grad_norm_ (scale max_norm / (norm + 1e-6) when
// the norm exceeds max_norm; max_norm <= 0 = no clipping); returns the norm before clipping.
double anneal_train_clip(anneal_train_ctx *c, double max_norm);

// Linear warmup to lr over `warmup` steps (step s gets lr * (s + 1) / warmup), then cosine
// decay to min_lr at `total` steps, min_lr after.
typedef struct anneal_lr_schedule {
    double lr, min_lr;
    int64_t warmup, total;
} anneal_lr_schedule;
double anneal_lr_at(const anneal_lr_schedule *s, int64_t step);

// ---- OpenBLAS ---------------------------------------------------------------------------
// The large matrix products run through OpenBLAS's sgemm. Debian 12's OpenBLAS 0.3.21 does
// not know some recent CPUs and falls back to its SSE3 "Prescott" kernels (5x slower);
// OPENBLAS_CORETYPE, read when the library loads, overrides the choice.
const char *anneal_blas_core(void); // openblas_get_corename()
// The core type OpenBLAS should be told to use on this CPU when the one it picked lacks the
// CPU's vector units (SkylakeX with AVX-512, Haswell with AVX2), else NULL.
const char *anneal_blas_better_core(void);

// ---- the training loop ------------------------------------------------------------------
typedef struct anneal_trainer_opts {
    const char *out_dir;   // checkpoints, metrics.jsonl, loss.svg
    const char *init_from; // model GGUF to start from (weights, config, vocabulary)
    bool resume;           // continue from out_dir's last good checkpoint
    // data: token ids (the caller tokenizes or reads shards)
    const int32_t *train_tokens, *val_tokens;
    size_t n_train_tokens, n_val_tokens;
    int32_t n_seq, n_batch, accum;
    int64_t steps;
    anneal_lr_schedule sched;
    anneal_adamw_params adamw;
    double clip; // <= 0: none
    uint64_t seed;
    int32_t threads;
    int64_t val_every, val_batches, ckpt_every, log_every;
    int32_t keep;                      // checkpoints kept (>= 1)
    const char *command, *config_json; // for the lineage and the checkpoint
    const anneal_lineage_parent *parents;
    size_t n_parents;
    // Hooks: after each micro-step's backward has accumulated and before clipping
    // (data-parallel all-reduce of tm->grads), and the loss (distillation).
    void (*after_backward)(void *ctx, anneal_train_model *tm);
    void *hook_ctx;
    anneal_train_loss_fn loss;
    void *loss_ctx;
    // Called with each training micro-batch's tokens [n_batch][n_seq] (under MPI this rank's
    // share, n_batch / anneal_mpi_size() rows) before its step (may be NULL): distillation
    // runs the teacher here. When set, validation reports
    // cross-entropy (the hook does not see validation batches); otherwise it uses `loss`.
    anneal_status (*loss_batch)(void *loss_ctx, const int32_t *tokens, int32_t n_batch,
                                int32_t n_seq, anneal_err *err);
    // Called between a checkpoint's model file and its optimizer state (may be NULL);
    // tests end the process there to prove the previous checkpoint stays the last good one.
    void (*between_ckpt_files)(void *ctx, int64_t step);
    bool quiet; // no progress output
    // LoRA (NULL: full training): adapters over the base (init_from, frozen) are trained
    // alone; checkpoints hold the frozen base as model.gguf plus adapter.gguf (llama.cpp's
    // adapter layout) and adapter.bin (adapters and their AdamW moments), see docs/training.md.
    const struct anneal_lora_params *lora;
} anneal_trainer_opts;

typedef struct anneal_trainer_result {
    int64_t step;      // steps done (including those before a resume)
    int64_t steps_run; // steps done by this call (0: the checkpoint was already there)
    double last_loss, last_val_loss;
    double tokens_per_s;  // over this run's steps
    char last_ckpt[4224]; // path of the last checkpoint's model GGUF
} anneal_trainer_result;

// Runs (or resumes) training. The model comes from o->init_from or, on resume, from the
// checkpoint. Writes checkpoints out_dir/ckpt-NNNNNNNN/{model.gguf,optim.bin}, updates
// out_dir/latest last, appends metrics to out_dir/metrics.jsonl and redraws out_dir/loss.svg.
// Resuming a checkpoint that already reached o->steps does nothing (steps_run = 0).
anneal_status anneal_trainer_run(const anneal_trainer_opts *o, anneal_trainer_result *res,
                                 anneal_err *err);

// The last good checkpoint in dir: *step and the checkpoint directory's path. Reads
// `latest`, verifies both files' checksums, and falls back to older checkpoints when the
// latest is damaged. ANNEAL_ERR_NOT_FOUND when there is none.
anneal_status anneal_ckpt_find(const char *dir, int64_t *step, char *path, size_t cap,
                               anneal_err *err);

// ---- data parallel over MPI ------------------------------------------------------------
// `mpirun -np N anneal train ...`: every rank draws the same global batches (same seed, same
// data), computes the gradient of its own contiguous share of each batch's sequences (rank r
// takes rows [r*B/N, (r+1)*B/N)), and the gradients are summed over ranks and divided by N
// before clipping and AdamW, so each rank applies the single-process update of the whole
// batch. Rank 0 alone writes checkpoints, metrics and progress. Without these calls (or
// outside mpirun) rank is 0 and size 1 and nothing touches MPI.

// Under an MPI launch (OMPI_COMM_WORLD_SIZE in the environment) initialises MPI once; a
// process that already initialised MPI itself is adopted; otherwise does nothing.
anneal_status anneal_mpi_init(anneal_err *err);
int anneal_mpi_rank(void); // 0 when MPI is not in use
int anneal_mpi_size(void); // 1 when MPI is not in use
// tm->grads = (sum over ranks of tm->grads) / size, in place on every rank.
anneal_status anneal_mpi_allreduce_grads(anneal_train_model *tm, anneal_err *err);
// *v = the mean of *v over ranks.
anneal_status anneal_mpi_mean(double *v, anneal_err *err);
anneal_status anneal_mpi_barrier(anneal_err *err);
// Ends MPI use: MPI_Finalize when status is 0, else MPI_Abort(status) so that ranks waiting
// in a collective for a failed one do not hang (does not return then). Nothing without MPI.
void anneal_mpi_finish(int status);

// ---- knowledge distillation (src/train/distill.c) ---------------------------------
// anneal distill: knowledge distillation for the trainer. The teacher (any GGUF the engine
// loads, quantized or not) runs the engine's batched forward on each micro-batch's token
// windows; the student's loss is alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) *
// cross-entropy on the data (or KL(student_T || teacher_T) with reverse set).
typedef struct anneal_distill_params {
    double temperature; // T > 0: both distributions are softmax(logits / T)
    double alpha;       // weight of the KL term in [0, 1]; 1 - alpha weighs cross-entropy
    bool reverse;       // KL(student_T || teacher_T) (mode-seeking) instead of the forward KL
} anneal_distill_params;

// ANNEAL_ERR_INVALID_ARG naming the bad value when T or alpha is out of range.
anneal_status anneal_distill_params_check(const anneal_distill_params *p, anneal_err *err);

// The loss over rows: student logits [n_rows][n_vocab] against teacher logits (same shape)
// and targets. Returns the sum over rows with target >= 0 of
//   alpha * T^2 * KL + (1 - alpha) * CE
// (rows with a negative target count nothing and get a zero gradient) and, with dlogits
// (may alias logits), writes scale * d(row loss)/d(logits). With alpha == 0 this is the
// trainer's own cross-entropy, bit for bit. *kl_sum (may be NULL) gets the sum of the KL
// terms (without alpha and T^2).
double anneal_distill_loss_rows(const anneal_distill_params *p, const float *teacher,
                                const float *logits, const int32_t *targets, int64_t n_rows,
                                int32_t n_vocab, float scale, float *dlogits, double *kl_sum);

// A teacher and work memory for micro-batches of n_batch sequences of n_seq tokens.
typedef struct anneal_distill anneal_distill;
// Loads the teacher from teacher_path and checks that it shares the student's vocabulary:
// the same number of logits (student_n_vocab) and, when both files carry
// tokenizer.ggml.tokens, the same token strings (student may be NULL to skip that).
// n_threads = 0: anneal_thread_count().
anneal_status anneal_distill_new(const char *teacher_path, const anneal_gguf *student,
                                 int32_t student_n_vocab, const anneal_distill_params *p,
                                 int32_t n_batch, int32_t n_seq, int32_t n_threads,
                                 anneal_distill **out, anneal_err *err);
void anneal_distill_free(anneal_distill *d);
const anneal_model_config *anneal_distill_teacher_config(const anneal_distill *d);
// Runs the teacher on tokens [n_batch][n_seq] (each row its own sequence from position 0)
// and keeps its logits for the loss. The trainer's loss_batch hook.
anneal_status anneal_distill_teacher(void *d, const int32_t *tokens, int32_t n_batch, int32_t n_seq,
                                     anneal_err *err);
// The anneal_train_loss_fn over the rows of the last anneal_distill_teacher call.
double anneal_distill_loss(void *d, int64_t row0, int64_t n_rows, int32_t n_vocab,
                           const float *logits, const int32_t *targets, float scale,
                           float *dlogits);
// The teacher's logits [n_batch * n_seq][n_vocab] of the last anneal_distill_teacher call.
const float *anneal_distill_teacher_logits(const anneal_distill *d);
// Plugs d into a trainer: loss, loss_ctx and loss_batch.
void anneal_distill_plug(anneal_distill *d, anneal_trainer_opts *o);

// ---- LoRA adapters (src/train/lora.c) ----------------------------------------------
// anneal LoRA training: low-rank adapters over a trainer model's matrices (base weights
// frozen), their gradients, AdamW on them, and saving them as a GGUF LoRA adapter in
// llama.cpp's layout (docs/training.md "LoRA"). Applying adapters is in anneal/model.h.
// Target matrices of every layer.
enum {
    ANNEAL_LORA_Q = 1 << 0,    // attn_q
    ANNEAL_LORA_K = 1 << 1,    // attn_k
    ANNEAL_LORA_V = 1 << 2,    // attn_v
    ANNEAL_LORA_O = 1 << 3,    // attn_output
    ANNEAL_LORA_GATE = 1 << 4, // ffn_gate
    ANNEAL_LORA_UP = 1 << 5,   // ffn_up
    ANNEAL_LORA_DOWN = 1 << 6, // ffn_down
};
// "q,k,v,o,gate,up,down" (any subset, any order) to a mask; an unknown or empty name is
// ANNEAL_ERR_INVALID_ARG naming it.
anneal_status anneal_lora_targets_parse(const char *list, uint32_t *mask, anneal_err *err);

typedef struct anneal_lora_params {
    int32_t rank;     // r >= 1
    float alpha;      // scale s = alpha / rank
    uint32_t targets; // ANNEAL_LORA_* mask
    uint64_t seed;    // A's initialisation
} anneal_lora_params;

typedef struct anneal_lora_train anneal_lora_train;
// Adapters for tm's target matrices: A uniform in +-1/sqrt(n_in) (PEFT's default), B = 0, so
// training starts at the base model. Keeps a copy of each target's base weights, marks every
// parameter of tm frozen (trainable = false) except the targets, whose gradient dW is what
// the adapters' gradients are computed from (their own optimizer step is never taken).
anneal_status anneal_lora_train_new(anneal_train_model *tm, const anneal_lora_params *p,
                                    anneal_lora_train **out, anneal_err *err);
void anneal_lora_train_free(anneal_lora_train *lt);
// Writes W = W0 + s * B.A into each target of tm (call before every forward).
void anneal_lora_train_compose(anneal_lora_train *lt);
// Adds dA = s * B^T.dW and dB = s * dW.A^T from tm->grads (after a backward; W enters the
// forward linearly, so these are the exact gradients of A and B).
void anneal_lora_train_grads(anneal_lora_train *lt);
void anneal_lora_train_zero_grads(anneal_lora_train *lt);
// One AdamW update of every A and B (bias-corrected as PyTorch's; decay on all of them).
void anneal_lora_train_adamw(anneal_lora_train *lt, const anneal_adamw_params *p, float lr);
// Number of adapter parameters (all A and B), and the arrays holding them and their
// gradients: per target in layer order, A [r][n_in] then B [n_out][r].
size_t anneal_lora_train_n_params(const anneal_lora_train *lt);
// The adapters' whole training state (the trainer clips grads and checkpoints the rest):
// params, grads and AdamW's moments m, v ([n] floats each) and its update count.
typedef struct anneal_lora_state {
    float *params, *grads, *m, *v;
    int64_t *step;
    size_t n;
} anneal_lora_state;
anneal_lora_state anneal_lora_train_state(anneal_lora_train *lt);
// Writes the base weights W0 back into each target of tm (checkpoints save the frozen base;
// anneal_lora_train_compose restores W afterwards).
void anneal_lora_train_base(anneal_lora_train *lt);
float *anneal_lora_train_params(anneal_lora_train *lt);
const float *anneal_lora_train_grad(const anneal_lora_train *lt);
// Writes the adapter GGUF (F32 lora_a [n_in, r] and lora_b [r, n_out] per target, keys
// general.architecture, general.type = adapter, adapter.type = lora, adapter.lora.alpha),
// with lineage when lin is given. Atomic.
anneal_status anneal_lora_train_save(const anneal_lora_train *lt, const char *path,
                                     const anneal_lineage *lin, anneal_err *err);

#ifdef __cplusplus
}
#endif
#endif
