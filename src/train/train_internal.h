// Internals of the trainer shared by the ops (ops_backward.c), the model's forward and
// backward (model_train.c), the optimizer (optim.c), checkpoints (checkpoint.c) and the
// loop (trainer.c). The ops work on row-major F32 rows; callers split rows over threads.
#ifndef ANNEAL_TRAIN_INTERNAL_H
#define ANNEAL_TRAIN_INTERNAL_H

#include "anneal/train.h"
#include "model/model_internal.h"

// Element-wise loops compiled twice, for AVX2 and for the baseline, chosen when the program
// loads (GCC also vectorizes them at -O3 strength; clang vectorizes at -O2).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TR_VEC __attribute__((target_clones("avx2", "default"), optimize("O3")))
#elif defined(__x86_64__) && defined(__clang__) && !__has_feature(address_sanitizer)
#define TR_VEC __attribute__((target_clones("avx2", "default")))
#else
#define TR_VEC
#endif

// ---- element-wise helpers ----------------------------------------------------------------
// y[i] = exp(x[i]) for i < n (y may alias x); x clamped to [-87.3, 88.7], so no inf/NaN
// for finite x. AVX2+FMA when the CPU has it (a few ulp), else libm.
void tr_vexp(float *y, const float *x, int64_t n);

// ---- RMSNorm: y = x * r * w with r = 1 / sqrt(mean(x^2) + eps), per row of n ----------
void tr_rmsnorm_fwd(float *y, float *r, const float *x, const float *w, int64_t rows, int32_t n,
                    float eps);
// dx += dL/dx; dw += dL/dw (dw may be NULL: weight frozen).
void tr_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w,
                    const float *r, int64_t rows, int32_t n);

// ---- RoPE over rows of n_heads heads of hd values; row t has position t % n_seq ---------
// cs: [n_seq][n_rot] cos/sin pairs (ops_rope_cache). inverse rotates back (the backward of
// the rotation, which is orthogonal).
void tr_rope(float *x, int64_t row0, int64_t rows, int32_t stride, int32_t n_heads, int32_t hd,
             const float *cs, int32_t n_seq, int32_t n_rot, anneal_rope_type type, bool inverse);

// ---- SwiGLU: h = silu(g) * u -----------------------------------------------------------
void tr_swiglu_fwd(float *h, const float *g, const float *u, int64_t n);
// dg = dh * u * silu'(g), du = dh * silu(g) (written, not added).
void tr_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u,
                   int64_t n);

// ---- cross-entropy over rows of n_vocab logits ----------------------------------------
// Returns the sum of -log softmax(row)[target] over rows with target >= 0; with dlogits
// (may alias logits) writes scale * (softmax - onehot), zero rows for ignored targets.
double tr_xent(const float *logits, const int32_t *targets, int64_t rows, int32_t n_vocab,
               float scale, float *dlogits);

// ---- causal attention of one sequence and one kv head ---------------------------------
// q: the first of the group's g query heads of row 0 (rows q_stride apart, heads hd apart),
// k, v: the kv head of row 0 (rows kv_stride apart). P: [g][T][T] softmax probabilities
// (saved for backward), o: the output heads (rows o_stride apart). S = scale * q k^T,
// masked above the diagonal.
void tr_attn_fwd(const float *q, const float *k, const float *v, float *P, float *o, int32_t T,
                 int32_t hd, int32_t g, int32_t q_stride, int32_t kv_stride, int32_t o_stride,
                 float scale);
// Writes dq (like q) and dk, dv (like k, summed over the group) from dout (like o); dS:
// [T][T] scratch.
// Query rows are processed in blocks of tr_attn_block (64; tests lower it to cover the
// blocking), each block against only the keys it can see.
extern int tr_attn_block;
void tr_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                 const float *v, const float *P, float *dS, int32_t T, int32_t hd, int32_t g,
                 int32_t q_stride, int32_t kv_stride, int32_t o_stride, float scale);

// ---- matrix products (OpenBLAS sgemm on one thread; callers split the work) --------------
// Row-major; ld* are row strides. W: [n_out][n_in] contiguous unless ldw says otherwise.
// y[rows][n_out] = x[rows][n_in] W^T.
void tr_mm_fwd(float *y, int32_t ldy, const float *x, int32_t ldx, const float *w, int64_t rows,
               int32_t n_in, int32_t n_out);
// dx[rows][n_in] = beta dx + dy[rows][n_out] W (W's rows ldw apart: a block of columns of
// a wider matrix may be passed).
void tr_mm_bwd_x(float *dx, int32_t lddx, const float *dy, int32_t lddy, const float *w,
                 int32_t ldw, int64_t rows, int32_t n_in, int32_t n_out, float beta);
// dW[n_out][n_in] (rows lddw apart) += dy^T x over `rows` rows (dy: n_out columns of rows
// lddy apart; x: n_in columns of rows ldx apart).
void tr_mm_bwd_w(float *dw, int32_t lddw, const float *dy, int32_t lddy, const float *x,
                 int32_t ldx, int64_t rows, int32_t n_in, int32_t n_out);

// The context's model, pool and [n_threads] doubles of scratch for partial sums.
anneal_train_model *tr_ctx_model(anneal_train_ctx *c);
anneal_pool *tr_ctx_pool(anneal_train_ctx *c);
double *tr_ctx_part(anneal_train_ctx *c);

// Makes OpenBLAS single-threaded (our pool splits the work) once per process.
void tr_blas_init(void);

#endif
