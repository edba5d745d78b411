// anneal tensor: element types (ggml's numbering, as GGUF files carry them), their block
// layouts, fp16/bf16 conversion, and the quantize / dequantize / dot kernels.
#ifndef ANNEAL_TENSOR_H
#define ANNEAL_TENSOR_H

#include "anneal/base.h"

#ifdef __cplusplus
extern "C" {
#endif

// Type ids are the file format's; gaps are ids retired by the format.
typedef enum anneal_type {
    ANNEAL_TYPE_F32 = 0,
    ANNEAL_TYPE_F16 = 1,
    ANNEAL_TYPE_Q4_0 = 2,
    ANNEAL_TYPE_Q4_1 = 3,
    ANNEAL_TYPE_Q5_0 = 6,
    ANNEAL_TYPE_Q5_1 = 7,
    ANNEAL_TYPE_Q8_0 = 8,
    ANNEAL_TYPE_Q8_1 = 9,
    ANNEAL_TYPE_Q2_K = 10,
    ANNEAL_TYPE_Q3_K = 11,
    ANNEAL_TYPE_Q4_K = 12,
    ANNEAL_TYPE_Q5_K = 13,
    ANNEAL_TYPE_Q6_K = 14,
    ANNEAL_TYPE_Q8_K = 15,
    ANNEAL_TYPE_IQ2_XXS = 16,
    ANNEAL_TYPE_IQ2_XS = 17,
    ANNEAL_TYPE_IQ3_XXS = 18,
    ANNEAL_TYPE_IQ1_S = 19,
    ANNEAL_TYPE_IQ4_NL = 20,
    ANNEAL_TYPE_IQ3_S = 21,
    ANNEAL_TYPE_IQ2_S = 22,
    ANNEAL_TYPE_IQ4_XS = 23,
    ANNEAL_TYPE_I8 = 24,
    ANNEAL_TYPE_I16 = 25,
    ANNEAL_TYPE_I32 = 26,
    ANNEAL_TYPE_I64 = 27,
    ANNEAL_TYPE_F64 = 28,
    ANNEAL_TYPE_IQ1_M = 29,
    ANNEAL_TYPE_BF16 = 30,
    ANNEAL_TYPE_TQ1_0 = 34,
    ANNEAL_TYPE_TQ2_0 = 35,
    ANNEAL_TYPE_MXFP4 = 39,
    ANNEAL_TYPE_COUNT = 40,
} anneal_type;

typedef struct anneal_type_info {
    const char *name;    // "f32", "q4_K", ... as llama.cpp names them
    uint32_t block_size; // elements per block
    uint32_t type_size;  // bytes per block
} anneal_type_info;

// NULL for ids this build does not know.
const anneal_type_info *anneal_type_get(uint32_t type);
// Parses a type name, case-insensitive ("q4_k" == "Q4_K"); ANNEAL_ERR_NOT_FOUND otherwise.
anneal_status anneal_type_from_name(const char *name, uint32_t *out);
// Bytes of `n_elems` elements; ANNEAL_ERR_FORMAT when n_elems is not a multiple of the
// block size, ANNEAL_ERR_UNSUPPORTED for unknown types, ANNEAL_ERR_RANGE on overflow.
anneal_status anneal_type_nbytes(uint32_t type, uint64_t n_elems, uint64_t *out);

// CPU features found at run time; kernels are chosen from these, never at compile time.
typedef struct anneal_cpu {
    bool avx2, fma, f16c;
    bool avx512f, avx512bw, avx512vl, avx512vnni, avx512bf16;
    bool avx_vnni;
} anneal_cpu;
const anneal_cpu *anneal_cpu_get(void);
// Space-separated names of the features present ("avx2 fma avx512f ...").
void anneal_cpu_describe(char *buf, size_t cap);

// ---- block layouts -------------------------------------------------------------
// These structs ARE the GGUF/ggml on-disk format: byte-for-byte, little-endian, no
// padding. Half-precision fields hold IEEE binary16 bits.
typedef uint16_t anneal_fp16;
typedef uint16_t anneal_bf16;

#define ANNEAL_QK 32    // elements per block of the legacy quants (Q4_0, Q4_1, Q5_0, Q8_0)
#define ANNEAL_QK_K 256 // elements per K-quant super-block

typedef struct anneal_block_q4_0 {
    anneal_fp16 d;             // x = d * (q - 8)
    uint8_t qs[ANNEAL_QK / 2]; // byte j: low nibble = element j, high nibble = element j+16
} anneal_block_q4_0;

typedef struct anneal_block_q4_1 {
    anneal_fp16 d, m;          // x = d * q + m
    uint8_t qs[ANNEAL_QK / 2]; // nibbles as in Q4_0
} anneal_block_q4_1;

typedef struct anneal_block_q5_0 {
    anneal_fp16 d;             // x = d * (q - 16), q = nibble | (high bit << 4)
    uint8_t qh[4];             // bit j of this little-endian u32 = 5th bit of element j
    uint8_t qs[ANNEAL_QK / 2]; // low nibbles as in Q4_0
} anneal_block_q5_0;

typedef struct anneal_block_q8_0 {
    anneal_fp16 d; // x = d * q
    int8_t qs[ANNEAL_QK];
} anneal_block_q8_0;

// Sub-block j (32 elements) of Q4_K/Q5_K: x = d*sc[j]*q - dmin*m[j], where the 6-bit
// sc[j], m[j] are packed in scales[12]: for j < 4, sc = scales[j] & 63 and
// m = scales[j+4] & 63; for j >= 4, sc = (scales[j+4] & 15) | (scales[j-4] >> 6) << 4 and
// m = (scales[j+4] >> 4) | (scales[j] >> 6) << 4.
typedef struct anneal_block_q4_K {
    anneal_fp16 d, dmin;
    uint8_t scales[12];
    uint8_t qs[ANNEAL_QK_K / 2]; // per 64 elements 32 bytes: low nibbles first 32, high next 32
} anneal_block_q4_K;

typedef struct anneal_block_q5_K {
    anneal_fp16 d, dmin;
    uint8_t scales[12];          // as in Q4_K
    uint8_t qh[ANNEAL_QK_K / 8]; // element 32*k + l has its 5th bit in bit k of qh[l]
    uint8_t qs[ANNEAL_QK_K / 2]; // low nibbles, laid out as in Q4_K
} anneal_block_q5_K;

// x = d * scales[e/16] * (q - 32), q 6 bits. Per 128 elements (64 ql bytes, 32 qh bytes):
// element l (l < 32): ql[l] low, element l+32: ql[l+32] low, l+64: ql[l] high, l+96:
// ql[l+32] high; the top two bits of l, l+32, l+64, l+96 are qh[l] bits 0-1, 2-3, 4-5, 6-7.
typedef struct anneal_block_q6_K {
    uint8_t ql[ANNEAL_QK_K / 2];
    uint8_t qh[ANNEAL_QK_K / 4];
    int8_t scales[ANNEAL_QK_K / 16];
    anneal_fp16 d;
} anneal_block_q6_K;

// The activation type of K-quant dots: x = d * q, bsums[k] = sum of q[16k .. 16k+16).
typedef struct anneal_block_q8_K {
    float d;
    int8_t qs[ANNEAL_QK_K];
    int16_t bsums[ANNEAL_QK_K / 16];
} anneal_block_q8_K;

_Static_assert(sizeof(anneal_block_q4_0) == 18, "q4_0 block size");
_Static_assert(sizeof(anneal_block_q4_1) == 20, "q4_1 block size");
_Static_assert(sizeof(anneal_block_q5_0) == 22, "q5_0 block size");
_Static_assert(sizeof(anneal_block_q8_0) == 34, "q8_0 block size");
_Static_assert(sizeof(anneal_block_q4_K) == 144, "q4_K block size");
_Static_assert(sizeof(anneal_block_q5_K) == 176, "q5_K block size");
_Static_assert(sizeof(anneal_block_q6_K) == 210, "q6_K block size");
_Static_assert(sizeof(anneal_block_q8_K) == 292, "q8_K block size");

// ---- half precision ------------------------------------------------------------
// f32 -> f16/bf16 round to nearest, ties to even; overflow gives Inf; NaN stays a (quiet)
// NaN with its sign; f16 subnormals are produced and read exactly.
float anneal_fp16_to_f32(anneal_fp16 h);
anneal_fp16 anneal_f32_to_fp16(float f);
float anneal_bf16_to_f32(anneal_bf16 h);
anneal_bf16 anneal_f32_to_bf16(float f);

// ---- kernels -------------------------------------------------------------------
// Supported element types: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K, and
// Q8_K (quantize/dequantize only: it is an activation type). Rows hold n elements, n a
// multiple of the type's block size; other n give ANNEAL_ERR_INVALID_ARG.

// y[0..n) = the dequantized row.
anneal_status anneal_dequantize(uint32_t type, const void *row, float *y, int64_t n);
// row = x[0..n) in `type` (reference algorithms: the K-quants search their scales and
// mins as llama.cpp does without an importance matrix). Float types convert.
anneal_status anneal_quantize(uint32_t type, const float *x, void *row, int64_t n);
// Rows [share of thread ith of nth] of an n_rows x n matrix: row r of x (at x + r*n) into
// row r of `out` (rows of anneal_type_nbytes(type, n) bytes). Results are identical to
// anneal_quantize's, which uses SIMD for the activation types Q8_0 and Q8_K (bit-for-bit
// the reference algorithm, NaN and Inf included).
anneal_status anneal_quantize_rows(uint32_t type, const float *x, void *out, int64_t n,
                                   int64_t n_rows, int ith, int nth);

// The type a weight type's dot wants its activations in: Q8_0 for Q4_0, Q4_1, Q5_0 and
// Q8_0; Q8_K for Q4_K, Q5_K and Q6_K; F32 for F32, F16 and BF16 (activations stay exact).
// ANNEAL_TYPE_COUNT for types without a dot.
uint32_t anneal_vec_dot_type(uint32_t type);

// *out = dot of one weight row (type) with one activation row (anneal_vec_dot_type), n
// elements. Activation codes must lie in [-127, 127], which anneal_quantize guarantees
// (the SIMD kernels use a sign trick that cannot represent -(-128)); weight codes may be
// anything.
typedef void (*anneal_vec_dot_fn)(int64_t n, float *out, const void *w, const void *a);

typedef enum anneal_kernel_level {
    ANNEAL_KERNELS_REF = 0,    // plain C, the truth
    ANNEAL_KERNELS_AVX2 = 1,   // needs avx2, fma, f16c
    ANNEAL_KERNELS_AVX512 = 2, // needs the above plus avx512f, avx512bw, avx512vl, avx512vnni
} anneal_kernel_level;

// The level in use: the best this CPU has, capped by env ANNEAL_KERNELS=ref|avx2|avx512
// (read once; a level the CPU lacks falls back to the best one below it).
anneal_kernel_level anneal_kernels_level(void);
// Best kernel for this CPU (at anneal_kernels_level()); NULL for types without a dot.
anneal_vec_dot_fn anneal_vec_dot_get(uint32_t type);
// Plain-C kernel; NULL for types without a dot.
anneal_vec_dot_fn anneal_vec_dot_ref(uint32_t type);
// The kernel of exactly `level`, NULL when the CPU lacks the level or the type has no dot
// (tests and benchmarks compare levels with this). Types without a kernel of their own
// at a level get the best lower level's.
anneal_vec_dot_fn anneal_vec_dot_at(uint32_t type, anneal_kernel_level level);

// y[t * n_out + r] = dot(W row r, A row t) for r < n_out, t < n_tok. W: n_out rows of n_in
// elements of `wtype`, contiguous; A: n_tok rows of n_in elements of
// anneal_vec_dot_type(wtype), contiguous. Thread ith of nth (0 <= ith < nth) computes a
// contiguous share of the rows r for every t (shares start at multiples of 32 rows, so
// they are even to within 32 rows), so nth threads calling it with the same arguments
// cover Y once with no overlap. At the AVX-512 level, quantized weights run as a tiled GEMM
// for batches of 8 or more activation rows (32 weight rows x 6 activation rows per
// register tile) and as matrix-vector kernels taking 4 weight rows per pass below that;
// F32/F16/BF16 weights run 4 x 4 FMA tiles. Lower levels run the dots, each weight row
// read once per group of 4 activation rows. Results are within float-accumulation
// rounding of the reference dots, never depend on ith/nth, and a row's result does not
// depend on the batch it came in (among batches on the same side of 8); see
// docs/kernels.md for the bound.
anneal_status anneal_matmul(uint32_t wtype, const void *w, int64_t n_in, int64_t n_out,
                            const void *a, int64_t n_tok, float *y, int ith, int nth);
// As anneal_matmul with the kernels of exactly `level` (tests and benchmarks);
// ANNEAL_ERR_UNSUPPORTED when the CPU lacks the level.
anneal_status anneal_matmul_at(anneal_kernel_level level, uint32_t wtype, const void *w,
                               int64_t n_in, int64_t n_out, const void *a, int64_t n_tok, float *y,
                               int ith, int nth);
// As anneal_quantize_rows at exactly `level` (ANNEAL_ERR_UNSUPPORTED if the CPU lacks it).
anneal_status anneal_quantize_rows_at(anneal_kernel_level level, uint32_t type, const float *x,
                                      void *out, int64_t n, int64_t n_rows, int ith, int nth);

#ifdef __cplusplus
}
#endif
#endif
