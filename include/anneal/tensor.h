// anneal tensor: element types (ggml's numbering, as GGUF files carry them) and their
// block layouts. Kernels come with the inference engine.
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

#ifdef __cplusplus
}
#endif
#endif
