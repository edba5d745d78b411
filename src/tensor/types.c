// Element type table: names and block layouts of every ggml type id GGUF files use.
#include "anneal/tensor.h"

#include <strings.h>

static const anneal_type_info TYPES[ANNEAL_TYPE_COUNT] = {
    [ANNEAL_TYPE_F32] = {"f32", 1, 4},
    [ANNEAL_TYPE_F16] = {"f16", 1, 2},
    [ANNEAL_TYPE_Q4_0] = {"q4_0", 32, 18},
    [ANNEAL_TYPE_Q4_1] = {"q4_1", 32, 20},
    [ANNEAL_TYPE_Q5_0] = {"q5_0", 32, 22},
    [ANNEAL_TYPE_Q5_1] = {"q5_1", 32, 24},
    [ANNEAL_TYPE_Q8_0] = {"q8_0", 32, 34},
    [ANNEAL_TYPE_Q8_1] = {"q8_1", 32, 36},
    [ANNEAL_TYPE_Q2_K] = {"q2_K", 256, 84},
    [ANNEAL_TYPE_Q3_K] = {"q3_K", 256, 110},
    [ANNEAL_TYPE_Q4_K] = {"q4_K", 256, 144},
    [ANNEAL_TYPE_Q5_K] = {"q5_K", 256, 176},
    [ANNEAL_TYPE_Q6_K] = {"q6_K", 256, 210},
    [ANNEAL_TYPE_Q8_K] = {"q8_K", 256, 292},
    [ANNEAL_TYPE_IQ2_XXS] = {"iq2_xxs", 256, 66},
    [ANNEAL_TYPE_IQ2_XS] = {"iq2_xs", 256, 74},
    [ANNEAL_TYPE_IQ3_XXS] = {"iq3_xxs", 256, 98},
    [ANNEAL_TYPE_IQ1_S] = {"iq1_s", 256, 50},
    [ANNEAL_TYPE_IQ4_NL] = {"iq4_nl", 32, 18},
    [ANNEAL_TYPE_IQ3_S] = {"iq3_s", 256, 110},
    [ANNEAL_TYPE_IQ2_S] = {"iq2_s", 256, 82},
    [ANNEAL_TYPE_IQ4_XS] = {"iq4_xs", 256, 136},
    [ANNEAL_TYPE_I8] = {"i8", 1, 1},
    [ANNEAL_TYPE_I16] = {"i16", 1, 2},
    [ANNEAL_TYPE_I32] = {"i32", 1, 4},
    [ANNEAL_TYPE_I64] = {"i64", 1, 8},
    [ANNEAL_TYPE_F64] = {"f64", 1, 8},
    [ANNEAL_TYPE_IQ1_M] = {"iq1_m", 256, 56},
    [ANNEAL_TYPE_BF16] = {"bf16", 1, 2},
    [ANNEAL_TYPE_TQ1_0] = {"tq1_0", 256, 54},
    [ANNEAL_TYPE_TQ2_0] = {"tq2_0", 256, 66},
    [ANNEAL_TYPE_MXFP4] = {"mxfp4", 32, 17},
};

const anneal_type_info *anneal_type_get(uint32_t type) {
    if (type >= ANNEAL_TYPE_COUNT || TYPES[type].name == NULL) return NULL;
    return &TYPES[type];
}

anneal_status anneal_type_from_name(const char *name, uint32_t *out) {
    for (uint32_t t = 0; t < ANNEAL_TYPE_COUNT; t++) {
        if (TYPES[t].name && strcasecmp(TYPES[t].name, name) == 0) {
            *out = t;
            return ANNEAL_OK;
        }
    }
    return ANNEAL_ERR_NOT_FOUND;
}

anneal_status anneal_type_nbytes(uint32_t type, uint64_t n_elems, uint64_t *out) {
    const anneal_type_info *ti = anneal_type_get(type);
    if (!ti) return ANNEAL_ERR_UNSUPPORTED;
    if (n_elems % ti->block_size != 0) return ANNEAL_ERR_FORMAT;
    uint64_t blocks = n_elems / ti->block_size;
    if (__builtin_mul_overflow(blocks, (uint64_t)ti->type_size, out)) return ANNEAL_ERR_RANGE;
    return ANNEAL_OK;
}
