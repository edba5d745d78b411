// Kernel dispatch: per-type tables of reference and SIMD kernels, the run-time choice of
// level (CPU features, capped by ANNEAL_KERNELS), and the row-level public API.
#include "tensor/kernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <strings.h>

#define NLEVELS 3

// A NULL entry above the reference means "no kernel of its own: use the level below".
static const anneal_vec_dot_fn DOTS[ANNEAL_TYPE_COUNT][NLEVELS] = {
    [ANNEAL_TYPE_F32] = {tensor_dot_f32_ref, tensor_dot_f32_avx2, tensor_dot_f32_avx512},
    [ANNEAL_TYPE_F16] = {tensor_dot_f16_ref, tensor_dot_f16_avx2, tensor_dot_f16_avx512},
    [ANNEAL_TYPE_BF16] = {tensor_dot_bf16_ref, tensor_dot_bf16_avx2, tensor_dot_bf16_avx512},
    [ANNEAL_TYPE_Q4_0] = {tensor_dot_q4_0_ref, tensor_dot_q4_0_avx2, tensor_dot_q4_0_avx512},
    [ANNEAL_TYPE_Q4_1] = {tensor_dot_q4_1_ref, tensor_dot_q4_1_avx2, NULL},
    [ANNEAL_TYPE_Q5_0] = {tensor_dot_q5_0_ref, tensor_dot_q5_0_avx2, NULL},
    [ANNEAL_TYPE_Q8_0] = {tensor_dot_q8_0_ref, tensor_dot_q8_0_avx2, tensor_dot_q8_0_avx512},
    [ANNEAL_TYPE_Q4_K] = {tensor_dot_q4_K_ref, tensor_dot_q4_K_avx2, tensor_dot_q4_K_avx512},
    [ANNEAL_TYPE_Q5_K] = {tensor_dot_q5_K_ref, tensor_dot_q5_K_avx2, NULL},
    [ANNEAL_TYPE_Q6_K] = {tensor_dot_q6_K_ref, tensor_dot_q6_K_avx2, NULL},
};

static anneal_kernel_level g_cpu_level, g_level;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void choose_level(void) {
    const anneal_cpu *c = anneal_cpu_get();
    g_cpu_level = ANNEAL_KERNELS_REF;
    if (c->avx2 && c->fma && c->f16c) {
        g_cpu_level = ANNEAL_KERNELS_AVX2;
        if (c->avx512f && c->avx512bw && c->avx512vl && c->avx512vnni)
            g_cpu_level = ANNEAL_KERNELS_AVX512;
    }
    g_level = g_cpu_level;
    const char *env = getenv("ANNEAL_KERNELS");
    if (!env || !*env) return;
    static const char *const names[NLEVELS] = {"ref", "avx2", "avx512"};
    for (int l = 0; l < NLEVELS; l++) {
        if (strcasecmp(env, names[l]) == 0) {
            if ((anneal_kernel_level)l > g_cpu_level)
                ANNEAL_WARN("ANNEAL_KERNELS=%s: this CPU lacks it, using %s", env,
                            names[g_cpu_level]);
            else
                g_level = (anneal_kernel_level)l;
            return;
        }
    }
    ANNEAL_WARN("ANNEAL_KERNELS=%s: not one of ref, avx2, avx512; using %s", env,
                names[g_cpu_level]);
}

anneal_kernel_level anneal_kernels_level(void) {
    pthread_once(&g_once, choose_level);
    return g_level;
}

anneal_vec_dot_fn anneal_vec_dot_at(uint32_t type, anneal_kernel_level level) {
    pthread_once(&g_once, choose_level);
    if (type >= ANNEAL_TYPE_COUNT || !DOTS[type][0]) return NULL;
    if ((int)level < 0 || level > g_cpu_level) return NULL;
    for (int l = (int)level; l > 0; l--)
        if (DOTS[type][l]) return DOTS[type][l];
    return DOTS[type][0];
}

anneal_vec_dot_fn anneal_vec_dot_get(uint32_t type) {
    return anneal_vec_dot_at(type, anneal_kernels_level());
}

anneal_vec_dot_fn anneal_vec_dot_ref(uint32_t type) {
    return type < ANNEAL_TYPE_COUNT ? DOTS[type][0] : NULL;
}

uint32_t anneal_vec_dot_type(uint32_t type) {
    switch (type) {
    case ANNEAL_TYPE_F32:
    case ANNEAL_TYPE_F16:
    case ANNEAL_TYPE_BF16:
        return ANNEAL_TYPE_F32;
    case ANNEAL_TYPE_Q4_0:
    case ANNEAL_TYPE_Q4_1:
    case ANNEAL_TYPE_Q5_0:
    case ANNEAL_TYPE_Q8_0:
        return ANNEAL_TYPE_Q8_0;
    case ANNEAL_TYPE_Q4_K:
    case ANNEAL_TYPE_Q5_K:
    case ANNEAL_TYPE_Q6_K:
        return ANNEAL_TYPE_Q8_K;
    default:
        return ANNEAL_TYPE_COUNT;
    }
}

// Types with a quantizer/dequantizer here, and n valid for them.
static anneal_status check_row(uint32_t type, int64_t n) {
    switch (type) {
    case ANNEAL_TYPE_F32:
    case ANNEAL_TYPE_F16:
    case ANNEAL_TYPE_BF16:
    case ANNEAL_TYPE_Q4_0:
    case ANNEAL_TYPE_Q4_1:
    case ANNEAL_TYPE_Q5_0:
    case ANNEAL_TYPE_Q8_0:
    case ANNEAL_TYPE_Q4_K:
    case ANNEAL_TYPE_Q5_K:
    case ANNEAL_TYPE_Q6_K:
    case ANNEAL_TYPE_Q8_K:
        break;
    default:
        return ANNEAL_ERR_UNSUPPORTED;
    }
    if (n < 0 || n % anneal_type_get(type)->block_size != 0) return ANNEAL_ERR_INVALID_ARG;
    return ANNEAL_OK;
}

anneal_status anneal_dequantize(uint32_t type, const void *row, float *y, int64_t n) {
    anneal_status st = check_row(type, n);
    if (st != ANNEAL_OK) return st;
    switch (type) {
    case ANNEAL_TYPE_F32:
        memcpy(y, row, (size_t)n * sizeof(float));
        break;
    case ANNEAL_TYPE_F16:
        for (int64_t i = 0; i < n; i++)
            y[i] = anneal_fp16_to_f32(((const anneal_fp16 *)row)[i]);
        break;
    case ANNEAL_TYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            y[i] = anneal_bf16_to_f32(((const anneal_bf16 *)row)[i]);
        break;
    case ANNEAL_TYPE_Q4_0:
        tensor_dequantize_q4_0_ref(row, y, n);
        break;
    case ANNEAL_TYPE_Q4_1:
        tensor_dequantize_q4_1_ref(row, y, n);
        break;
    case ANNEAL_TYPE_Q5_0:
        tensor_dequantize_q5_0_ref(row, y, n);
        break;
    case ANNEAL_TYPE_Q8_0:
        tensor_dequantize_q8_0_ref(row, y, n);
        break;
    case ANNEAL_TYPE_Q4_K:
        tensor_dequantize_q4_K_ref(row, y, n);
        break;
    case ANNEAL_TYPE_Q5_K:
        tensor_dequantize_q5_K_ref(row, y, n);
        break;
    case ANNEAL_TYPE_Q6_K:
        tensor_dequantize_q6_K_ref(row, y, n);
        break;
    default:
        tensor_dequantize_q8_K_ref(row, y, n);
        break;
    }
    return ANNEAL_OK;
}

// One row at `level` (checked by the callers).
static void quantize_row(anneal_kernel_level level, uint32_t type, const float *x, void *row,
                         int64_t n) {
    switch (type) {
    case ANNEAL_TYPE_F32:
        memcpy(row, x, (size_t)n * sizeof(float));
        break;
    case ANNEAL_TYPE_F16:
        for (int64_t i = 0; i < n; i++)
            ((anneal_fp16 *)row)[i] = anneal_f32_to_fp16(x[i]);
        break;
    case ANNEAL_TYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            ((anneal_bf16 *)row)[i] = anneal_f32_to_bf16(x[i]);
        break;
    case ANNEAL_TYPE_Q4_0:
        tensor_quantize_q4_0_ref(x, row, n);
        break;
    case ANNEAL_TYPE_Q4_1:
        tensor_quantize_q4_1_ref(x, row, n);
        break;
    case ANNEAL_TYPE_Q5_0:
        tensor_quantize_q5_0_ref(x, row, n);
        break;
    case ANNEAL_TYPE_Q8_0:
        if (level == ANNEAL_KERNELS_AVX512)
            tensor_quantize_q8_0_avx512(x, row, n);
        else
            tensor_quantize_q8_0_ref(x, row, n);
        break;
    case ANNEAL_TYPE_Q4_K:
        tensor_quantize_q4_K_ref(x, row, n);
        break;
    case ANNEAL_TYPE_Q5_K:
        tensor_quantize_q5_K_ref(x, row, n);
        break;
    case ANNEAL_TYPE_Q6_K:
        tensor_quantize_q6_K_ref(x, row, n);
        break;
    default:
        if (level == ANNEAL_KERNELS_AVX512)
            tensor_quantize_q8_K_avx512(x, row, n);
        else
            tensor_quantize_q8_K_ref(x, row, n);
        break;
    }
}

anneal_status anneal_quantize(uint32_t type, const float *x, void *row, int64_t n) {
    anneal_status st = check_row(type, n);
    if (st != ANNEAL_OK) return st;
    quantize_row(anneal_kernels_level(), type, x, row, n);
    return ANNEAL_OK;
}

anneal_status anneal_quantize_rows_at(anneal_kernel_level level, uint32_t type, const float *x,
                                      void *out, int64_t n, int64_t n_rows, int ith, int nth) {
    anneal_status st = check_row(type, n);
    if (st != ANNEAL_OK) return st;
    if (n_rows < 0 || nth < 1 || ith < 0 || ith >= nth) return ANNEAL_ERR_INVALID_ARG;
    pthread_once(&g_once, choose_level);
    if ((int)level < 0 || level > g_cpu_level) return ANNEAL_ERR_UNSUPPORTED;
    uint64_t rb;
    if (anneal_type_nbytes(type, (uint64_t)n, &rb) != ANNEAL_OK) return ANNEAL_ERR_INVALID_ARG;
    int64_t r0, r1;
    anneal_split(n_rows, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++)
        quantize_row(level, type, x + r * n, (uint8_t *)out + (uint64_t)r * rb, n);
    return ANNEAL_OK;
}

anneal_status anneal_quantize_rows(uint32_t type, const float *x, void *out, int64_t n,
                                   int64_t n_rows, int ith, int nth) {
    return anneal_quantize_rows_at(anneal_kernels_level(), type, x, out, n, n_rows, ith, nth);
}

// Groups of this many activation rows share one pass over the weights: a weight row is
// fetched from memory once and re-read from L1/L2 for the rest of the group.
#define TOK_GROUP 4
// Batches of at least this many activation rows go through the repacked GEMM tiles;
// smaller ones use the matrix-vector kernels (measured crossover: repacking a tile costs
// about as much as 6-8 rows of matrix-vector work).
#define GEMM_MIN_TOK 8
// Thread shares start at multiples of this many rows (the GEMM tile height), so no thread
// but the last runs a partial tile.
#define ROW_ALIGN 32

// Start of thread i's share of n rows: n*i/nth rounded to the nearest multiple of
// ROW_ALIGN (monotonic in i, so shares are contiguous and never overlap).
static int64_t share_start(int64_t n, int i, int nth) {
    if (i >= nth) return n;
    int64_t b = (int64_t)((__int128)n * i / nth);
    b = (b + ROW_ALIGN / 2) / ROW_ALIGN * ROW_ALIGN;
    return b < n ? b : n;
}

anneal_status anneal_matmul_at(anneal_kernel_level level, uint32_t wtype, const void *w,
                               int64_t n_in, int64_t n_out, const void *a, int64_t n_tok, float *y,
                               int ith, int nth) {
    if (!anneal_vec_dot_ref(wtype)) return ANNEAL_ERR_UNSUPPORTED;
    anneal_vec_dot_fn dot = anneal_vec_dot_at(wtype, level);
    if (!dot) return ANNEAL_ERR_UNSUPPORTED;
    if (nth < 1 || ith < 0 || ith >= nth || n_out < 0 || n_tok < 0) return ANNEAL_ERR_INVALID_ARG;
    uint64_t wrow, arow;
    if (n_in < 0 || anneal_type_nbytes(wtype, (uint64_t)n_in, &wrow) != ANNEAL_OK ||
        anneal_type_nbytes(anneal_vec_dot_type(wtype), (uint64_t)n_in, &arow) != ANNEAL_OK)
        return ANNEAL_ERR_INVALID_ARG;
    int64_t r0 = share_start(n_out, ith, nth), r1 = share_start(n_out, ith + 1, nth);
    if (r0 >= r1 || n_tok == 0) return ANNEAL_OK;
    if (level == ANNEAL_KERNELS_AVX512 && n_in > 0) {
        if (tensor_matmul_float_avx512(wtype, w, wrow, n_in, n_out, r0, r1, a, n_tok, y))
            return ANNEAL_OK;
        if (n_tok >= GEMM_MIN_TOK &&
            tensor_gemm_avx512(wtype, w, wrow, n_in, n_out, r0, r1, a, arow, n_tok, y))
            return ANNEAL_OK;
        if (n_tok < GEMM_MIN_TOK &&
            tensor_gemv_avx512(wtype, w, wrow, n_in, n_out, r0, r1, a, arow, n_tok, y))
            return ANNEAL_OK;
    }
    const uint8_t *wb = w, *ab = a;
    for (int64_t t0 = 0; t0 < n_tok; t0 += TOK_GROUP) {
        int64_t t1 = t0 + TOK_GROUP < n_tok ? t0 + TOK_GROUP : n_tok;
        for (int64_t r = r0; r < r1; r++)
            for (int64_t t = t0; t < t1; t++)
                dot(n_in, &y[t * n_out + r], wb + (uint64_t)r * wrow, ab + (uint64_t)t * arow);
    }
    return ANNEAL_OK;
}

anneal_status anneal_matmul(uint32_t wtype, const void *w, int64_t n_in, int64_t n_out,
                            const void *a, int64_t n_tok, float *y, int ith, int nth) {
    return anneal_matmul_at(anneal_kernels_level(), wtype, w, n_in, n_out, a, n_tok, y, ith, nth);
}
