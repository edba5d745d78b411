// Reference dot products, weight row x activation row (plain C, the truth). Integer
// partial sums within a block are exact; blocks are accumulated in double so the SIMD
// kernels can be judged against a result with no rounding drift of its own.
#include "tensor/kernels.h"

void tensor_dot_f32_ref(int64_t n, float *out, const void *w, const void *a) {
    const float *x = w, *y = a;
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)x[i] * y[i];
    *out = (float)s;
}

void tensor_dot_f16_ref(int64_t n, float *out, const void *w, const void *a) {
    const anneal_fp16 *x = w;
    const float *y = a;
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)anneal_fp16_to_f32(x[i]) * y[i];
    *out = (float)s;
}

void tensor_dot_bf16_ref(int64_t n, float *out, const void *w, const void *a) {
    const anneal_bf16 *x = w;
    const float *y = a;
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)anneal_bf16_to_f32(x[i]) * y[i];
    *out = (float)s;
}

void tensor_dot_q4_0_ref(int64_t n, float *out, const void *w, const void *a) {
    const anneal_block_q4_0 *x = w;
    const anneal_block_q8_0 *y = a;
    double s = 0;
    for (int64_t i = 0; i < n / ANNEAL_QK; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++)
            sumi +=
                ((x[i].qs[j] & 15) - 8) * y[i].qs[j] + ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
        s += (double)(anneal_fp16_to_f32(x[i].d) * anneal_fp16_to_f32(y[i].d)) * sumi;
    }
    *out = (float)s;
}

void tensor_dot_q4_1_ref(int64_t n, float *out, const void *w, const void *a) {
    const anneal_block_q4_1 *x = w;
    const anneal_block_q8_0 *y = a;
    double s = 0;
    for (int64_t i = 0; i < n / ANNEAL_QK; i++) {
        int sumi = 0, suma = 0;
        for (int j = 0; j < 16; j++) {
            sumi += (x[i].qs[j] & 15) * y[i].qs[j] + (x[i].qs[j] >> 4) * y[i].qs[j + 16];
            suma += y[i].qs[j] + y[i].qs[j + 16];
        }
        float dy = anneal_fp16_to_f32(y[i].d);
        s += (double)(anneal_fp16_to_f32(x[i].d) * dy) * sumi +
             (double)(anneal_fp16_to_f32(x[i].m) * dy) * suma;
    }
    *out = (float)s;
}

void tensor_dot_q5_0_ref(int64_t n, float *out, const void *w, const void *a) {
    const anneal_block_q5_0 *x = w;
    const anneal_block_q8_0 *y = a;
    double s = 0;
    for (int64_t i = 0; i < n / ANNEAL_QK; i++) {
        uint32_t qh = (uint32_t)x[i].qh[0] | (uint32_t)x[i].qh[1] << 8 |
                      (uint32_t)x[i].qh[2] << 16 | (uint32_t)x[i].qh[3] << 24;
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            int q0 = ((x[i].qs[j] & 15) | (int)((qh >> j) & 1) << 4) - 16;
            int q1 = ((x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - 16;
            sumi += q0 * y[i].qs[j] + q1 * y[i].qs[j + 16];
        }
        s += (double)(anneal_fp16_to_f32(x[i].d) * anneal_fp16_to_f32(y[i].d)) * sumi;
    }
    *out = (float)s;
}

void tensor_dot_q8_0_ref(int64_t n, float *out, const void *w, const void *a) {
    const anneal_block_q8_0 *x = w;
    const anneal_block_q8_0 *y = a;
    double s = 0;
    for (int64_t i = 0; i < n / ANNEAL_QK; i++) {
        int sumi = 0;
        for (int j = 0; j < ANNEAL_QK; j++)
            sumi += x[i].qs[j] * y[i].qs[j];
        s += (double)(anneal_fp16_to_f32(x[i].d) * anneal_fp16_to_f32(y[i].d)) * sumi;
    }
    *out = (float)s;
}

// Q4_K/Q5_K: sum_j d*sc_j*(q.a)_j - dmin*m_j*(sum of a over sub-block j), the latter from
// the activation's bsums.
void tensor_dot_q4_K_ref(int64_t n, float *out, const void *w, const void *a) {
    const anneal_block_q4_K *x = w;
    const anneal_block_q8_K *y = a;
    double s = 0;
    for (int64_t i = 0; i < n / ANNEAL_QK_K; i++) {
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            tensor_scale_min_k4(j, x[i].scales, &sc, &m);
            const uint8_t *q = x[i].qs + 32 * (j / 2);
            const int8_t *q8 = y[i].qs + 32 * j;
            int shift = 4 * (j & 1), dot = 0;
            for (int l = 0; l < 32; l++)
                dot += ((q[l] >> shift) & 15) * q8[l];
            sumi += sc * dot;
            summ += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        float d = anneal_fp16_to_f32(x[i].d) * y[i].d,
              dmin = anneal_fp16_to_f32(x[i].dmin) * y[i].d;
        s += (double)d * sumi - (double)dmin * summ;
    }
    *out = (float)s;
}

void tensor_dot_q5_K_ref(int64_t n, float *out, const void *w, const void *a) {
    const anneal_block_q5_K *x = w;
    const anneal_block_q8_K *y = a;
    double s = 0;
    for (int64_t i = 0; i < n / ANNEAL_QK_K; i++) {
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            tensor_scale_min_k4(j, x[i].scales, &sc, &m);
            const uint8_t *q = x[i].qs + 32 * (j / 2);
            const int8_t *q8 = y[i].qs + 32 * j;
            int shift = 4 * (j & 1), dot = 0;
            for (int l = 0; l < 32; l++)
                dot += (((q[l] >> shift) & 15) | ((x[i].qh[l] >> j) & 1) << 4) * q8[l];
            sumi += sc * dot;
            summ += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        float d = anneal_fp16_to_f32(x[i].d) * y[i].d,
              dmin = anneal_fp16_to_f32(x[i].dmin) * y[i].d;
        s += (double)d * sumi - (double)dmin * summ;
    }
    *out = (float)s;
}

void tensor_dot_q6_K_ref(int64_t n, float *out, const void *w, const void *a) {
    const anneal_block_q6_K *x = w;
    const anneal_block_q8_K *y = a;
    double s = 0;
    for (int64_t i = 0; i < n / ANNEAL_QK_K; i++) {
        int sumi = 0;
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = x[i].ql + 64 * half, *qh = x[i].qh + 32 * half;
            const int8_t *q8 = y[i].qs + 128 * half;
            const int8_t *sc = x[i].scales + 8 * half;
            for (int quarter = 0; quarter < 4; quarter++) {
                int dot0 = 0, dot1 = 0;
                for (int l = 0; l < 32; l++) {
                    int lo = quarter & 1 ? ql[l + 32] : ql[l];
                    lo = quarter >= 2 ? lo >> 4 : lo & 15;
                    int q = (lo | ((qh[l] >> (2 * quarter)) & 3) << 4) - 32;
                    if (l < 16)
                        dot0 += q * q8[32 * quarter + l];
                    else
                        dot1 += q * q8[32 * quarter + l];
                }
                sumi += sc[2 * quarter] * dot0 + sc[2 * quarter + 1] * dot1;
            }
        }
        s += (double)(anneal_fp16_to_f32(x[i].d) * y[i].d) * sumi;
    }
    *out = (float)s;
}
