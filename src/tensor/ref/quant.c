// Reference quantizers and dequantizers of the GGUF block formats (plain C, the truth).
// The algorithms are the widely used ones (llama.cpp's reference quantizers without an
// importance matrix), so files we write have the quality users know.
#include "tensor/kernels.h"

#define GROUP_MAX_EPS 1e-15f

static float clampf(float v, float lo, float hi) {
    return fminf(hi, fmaxf(lo, v));
}

// Element with the largest magnitude, with its sign (the symmetric formats map it to -nmax
// so the extra negative code is used).
static float signed_absmax(const float *x, int n, float *amax_out) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    if (amax_out) *amax_out = amax;
    return max;
}

void tensor_quantize_q4_0_ref(const float *x, anneal_block_q4_0 *y, int64_t k) {
    for (int64_t i = 0; i < k / ANNEAL_QK; i++, x += ANNEAL_QK) {
        float max = signed_absmax(x, ANNEAL_QK, NULL);
        float d = max / -8, id = d != 0 ? 1.0f / d : 0;
        y[i].d = anneal_f32_to_fp16(d);
        for (int j = 0; j < ANNEAL_QK / 2; j++) {
            // Truncation after +8.5 rounds to nearest; clamping first keeps NaN/Inf defined.
            int q0 = (int)clampf(x[j] * id + 8.5f, 0, 15);
            int q1 = (int)clampf(x[j + 16] * id + 8.5f, 0, 15);
            y[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

void tensor_quantize_q4_1_ref(const float *x, anneal_block_q4_1 *y, int64_t k) {
    for (int64_t i = 0; i < k / ANNEAL_QK; i++, x += ANNEAL_QK) {
        float min = x[0], max = x[0];
        for (int j = 1; j < ANNEAL_QK; j++) {
            min = fminf(min, x[j]);
            max = fmaxf(max, x[j]);
        }
        float d = (max - min) / 15, id = d != 0 ? 1.0f / d : 0;
        y[i].d = anneal_f32_to_fp16(d);
        y[i].m = anneal_f32_to_fp16(min);
        for (int j = 0; j < ANNEAL_QK / 2; j++) {
            int q0 = (int)clampf((x[j] - min) * id + 0.5f, 0, 15);
            int q1 = (int)clampf((x[j + 16] - min) * id + 0.5f, 0, 15);
            y[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

void tensor_quantize_q5_0_ref(const float *x, anneal_block_q5_0 *y, int64_t k) {
    for (int64_t i = 0; i < k / ANNEAL_QK; i++, x += ANNEAL_QK) {
        float max = signed_absmax(x, ANNEAL_QK, NULL);
        float d = max / -16, id = d != 0 ? 1.0f / d : 0;
        y[i].d = anneal_f32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < ANNEAL_QK / 2; j++) {
            int q0 = (int)clampf(x[j] * id + 16.5f, 0, 31);
            int q1 = (int)clampf(x[j + 16] * id + 16.5f, 0, 31);
            y[i].qs[j] = (uint8_t)((q0 & 15) | (q1 & 15) << 4);
            qh |= (uint32_t)(q0 >> 4) << j | (uint32_t)(q1 >> 4) << (j + 16);
        }
        for (int b = 0; b < 4; b++)
            y[i].qh[b] = (uint8_t)(qh >> (8 * b));
    }
}

void tensor_quantize_q8_0_ref(const float *x, anneal_block_q8_0 *y, int64_t k) {
    for (int64_t i = 0; i < k / ANNEAL_QK; i++, x += ANNEAL_QK) {
        float amax;
        signed_absmax(x, ANNEAL_QK, &amax);
        float d = amax / 127, id = d != 0 ? 1.0f / d : 0;
        y[i].d = anneal_f32_to_fp16(d);
        for (int j = 0; j < ANNEAL_QK; j++)
            y[i].qs[j] = (int8_t)clampf(roundf(x[j] * id), -127, 127);
    }
}

void tensor_quantize_q8_K_ref(const float *x, anneal_block_q8_K *y, int64_t k) {
    for (int64_t i = 0; i < k / ANNEAL_QK_K; i++, x += ANNEAL_QK_K) {
        float amax;
        float max = signed_absmax(x, ANNEAL_QK_K, &amax);
        memset(y[i].bsums, 0, sizeof y[i].bsums);
        if (amax == 0 || !isfinite(amax)) {
            y[i].d = amax == 0 ? 0 : amax;
            memset(y[i].qs, 0, sizeof y[i].qs);
            continue;
        }
        float iscale = -127.f / max;
        for (int j = 0; j < ANNEAL_QK_K; j++) {
            int v = tensor_nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
            y[i].bsums[j / 16] = (int16_t)(y[i].bsums[j / 16] + y[i].qs[j]);
        }
        y[i].d = 1 / iscale;
    }
}

// Scale search for symmetric codes in [-nmax, nmax): start from the absmax mapping, then
// try 18 nearby scales and keep the one with the least weighted squared error (weights
// x^2). Returns the scale; L receives codes offset by nmax.
static float make_qx_quants(int n, int nmax, const float *x, uint8_t *L) {
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0;
    }
    float best_scale = 0, best = 0;
    for (int is = 0; is <= 18; is++) {
        // is == 0 is the plain absmax scale; 1..18 are -0.9 .. +0.9 in steps of 0.1.
        float step = is == 0 ? 0 : (float)(is <= 9 ? is - 10 : is - 9);
        float iscale = -(nmax + 0.1f * step) / max;
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = tensor_nearest_int(iscale * x[i]);
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        bool better = is == 0 ? true : (suml2 > 0 && sumlx * sumlx > best * suml2);
        if (!better) continue;
        for (int i = 0; i < n; i++) {
            int l = tensor_nearest_int(iscale * x[i]);
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            L[i] = (uint8_t)(nmax + l);
        }
        best_scale = suml2 > 0 ? sumlx / suml2 : 0;
        best = best_scale * sumlx;
    }
    return best_scale;
}

// Scale and min search for asymmetric codes in [0, nmax]: least-squares fit of scale and
// min for each of nstep+1 candidate code assignments (iscale = (nmax + rmin + rdelta*is) /
// (max - min)), weighted; the best fit wins. Returns the scale, *the_min = -min >= 0.
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep) {
    float min = x[0], max = x[0];
    float sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_err = 0;
    for (int i = 0; i < n; i++) {
        int l = tensor_nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        float diff = scale * L[i] + min - x[i];
        best_err += weights[i] * diff * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = tensor_nearest_int(iscale * (x[i] - min));
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0)) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            float diff = this_scale * Laux[i] + this_min - x[i];
            err += weights[i] * diff * diff;
        }
        if (err < best_err) {
            memcpy(L, Laux, (size_t)n);
            best_err = err;
            scale = this_scale;
            min = this_min;
        }
    }
    *the_min = -min;
    return scale;
}

// Shared by Q4_K and Q5_K: per-sub-block scale/min search, 6-bit quantization of those
// against the block's d/dmin, then the final codes L[256] in [0, nmax] under the stored
// (rounded) scales. Writes d, dmin and scales[12].
static void quantize_k_scales(const float *x, int nmax, float rmin, int nstep, anneal_fp16 *d_out,
                              anneal_fp16 *dmin_out, uint8_t scales_out[12],
                              uint8_t L[ANNEAL_QK_K]) {
    float scales[8], mins[8], weights[32];
    uint8_t Laux[32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++)
            sum_x2 += xs[l] * xs[l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            weights[l] = av_x + fabsf(xs[l]);
        scales[j] =
            make_qkx2_quants(32, nmax, xs, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0;
    float inv_min = max_min > 0 ? 63.f / max_min : 0;
    memset(scales_out, 0, 12);
    for (int j = 0; j < 8; j++) {
        int ls = tensor_nearest_int(inv_scale * scales[j]);
        int lm = tensor_nearest_int(inv_min * mins[j]);
        ls = ls < 0 ? 0 : ls > 63 ? 63 : ls;
        lm = lm < 0 ? 0 : lm > 63 ? 63 : lm;
        if (j < 4) {
            scales_out[j] = (uint8_t)ls;
            scales_out[j + 4] = (uint8_t)lm;
        } else {
            scales_out[j + 4] = (uint8_t)((ls & 15) | (lm & 15) << 4);
            scales_out[j - 4] |= (uint8_t)((ls >> 4) << 6);
            scales_out[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d_out = anneal_f32_to_fp16(max_scale / 63.f);
    *dmin_out = anneal_f32_to_fp16(max_min / 63.f);
    float d = anneal_fp16_to_f32(*d_out), dmin = anneal_fp16_to_f32(*dmin_out);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        tensor_scale_min_k4(j, scales_out, &sc, &m);
        float ds = d * sc;
        if (ds == 0) continue; // keeps the search's codes; they dequantize to -dmin*m anyway
        float dm = dmin * m;
        for (int l = 0; l < 32; l++) {
            int q = tensor_nearest_int((x[32 * j + l] + dm) / ds);
            L[32 * j + l] = (uint8_t)(q < 0 ? 0 : q > nmax ? nmax : q);
        }
    }
}

void tensor_quantize_q4_K_ref(const float *x, anneal_block_q4_K *y, int64_t k) {
    uint8_t L[ANNEAL_QK_K];
    for (int64_t i = 0; i < k / ANNEAL_QK_K; i++, x += ANNEAL_QK_K) {
        quantize_k_scales(x, 15, -1.f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
        for (int j = 0; j < ANNEAL_QK_K; j += 64)
            for (int l = 0; l < 32; l++)
                y[i].qs[j / 2 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 4);
    }
}

void tensor_quantize_q5_K_ref(const float *x, anneal_block_q5_K *y, int64_t k) {
    uint8_t L[ANNEAL_QK_K];
    for (int64_t i = 0; i < k / ANNEAL_QK_K; i++, x += ANNEAL_QK_K) {
        quantize_k_scales(x, 31, -0.5f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int j = 0; j < ANNEAL_QK_K; j += 64) {
            int bit = j / 32; // chunk j/64 owns qh bits 2*(j/64) (low half) and +1 (high half)
            for (int l = 0; l < 32; l++) {
                int l1 = L[j + l], l2 = L[j + l + 32];
                y[i].qh[l] |= (uint8_t)((l1 >> 4) << bit | (l2 >> 4) << (bit + 1));
                y[i].qs[j / 2 + l] = (uint8_t)((l1 & 15) | (l2 & 15) << 4);
            }
        }
    }
}

void tensor_quantize_q6_K_ref(const float *x, anneal_block_q6_K *y, int64_t k) {
    uint8_t L[ANNEAL_QK_K];
    float scales[16];
    for (int64_t i = 0; i < k / ANNEAL_QK_K; i++, x += ANNEAL_QK_K) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < 16; ib++) {
            scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            if (fabsf(scales[ib]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        if (!(max_abs_scale >= GROUP_MAX_EPS)) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float iscale = -128.f / max_scale;
        y[i].d = anneal_f32_to_fp16(1 / iscale);
        for (int ib = 0; ib < 16; ib++) {
            int s = tensor_nearest_int(iscale * scales[ib]);
            y[i].scales[ib] = (int8_t)(s > 127 ? 127 : s < -128 ? -128 : s);
        }
        float d = anneal_fp16_to_f32(y[i].d);
        for (int j = 0; j < 16; j++) {
            float ds = d * y[i].scales[j];
            if (ds == 0) continue;
            for (int l = 0; l < 16; l++) {
                int q = tensor_nearest_int(x[16 * j + l] / ds);
                q = q < -32 ? -32 : q > 31 ? 31 : q;
                L[16 * j + l] = (uint8_t)(q + 32);
            }
        }
        for (int j = 0; j < ANNEAL_QK_K; j += 128) {
            uint8_t *ql = y[i].ql + j / 2, *qh = y[i].qh + j / 4;
            const uint8_t *Lj = L + j;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lj[l] & 15) | (Lj[l + 64] & 15) << 4);
                ql[l + 32] = (uint8_t)((Lj[l + 32] & 15) | (Lj[l + 96] & 15) << 4);
                qh[l] = (uint8_t)(Lj[l] >> 4 | (Lj[l + 32] >> 4) << 2 | (Lj[l + 64] >> 4) << 4 |
                                  (Lj[l + 96] >> 4) << 6);
            }
        }
    }
}

void tensor_dequantize_q4_0_ref(const anneal_block_q4_0 *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / ANNEAL_QK; i++, y += ANNEAL_QK) {
        float d = anneal_fp16_to_f32(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * ((x[i].qs[j] & 15) - 8);
            y[j + 16] = d * ((x[i].qs[j] >> 4) - 8);
        }
    }
}

void tensor_dequantize_q4_1_ref(const anneal_block_q4_1 *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / ANNEAL_QK; i++, y += ANNEAL_QK) {
        float d = anneal_fp16_to_f32(x[i].d), m = anneal_fp16_to_f32(x[i].m);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (x[i].qs[j] & 15) + m;
            y[j + 16] = d * (x[i].qs[j] >> 4) + m;
        }
    }
}

void tensor_dequantize_q5_0_ref(const anneal_block_q5_0 *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / ANNEAL_QK; i++, y += ANNEAL_QK) {
        float d = anneal_fp16_to_f32(x[i].d);
        uint32_t qh = (uint32_t)x[i].qh[0] | (uint32_t)x[i].qh[1] << 8 |
                      (uint32_t)x[i].qh[2] << 16 | (uint32_t)x[i].qh[3] << 24;
        for (int j = 0; j < 16; j++) {
            int q0 = (x[i].qs[j] & 15) | (int)((qh >> j) & 1) << 4;
            int q1 = (x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = d * (q0 - 16);
            y[j + 16] = d * (q1 - 16);
        }
    }
}

void tensor_dequantize_q8_0_ref(const anneal_block_q8_0 *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / ANNEAL_QK; i++, y += ANNEAL_QK) {
        float d = anneal_fp16_to_f32(x[i].d);
        for (int j = 0; j < ANNEAL_QK; j++)
            y[j] = d * x[i].qs[j];
    }
}

void tensor_dequantize_q4_K_ref(const anneal_block_q4_K *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / ANNEAL_QK_K; i++) {
        float d = anneal_fp16_to_f32(x[i].d), dmin = anneal_fp16_to_f32(x[i].dmin);
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            tensor_scale_min_k4(j, x[i].scales, &sc, &m);
            float ds = d * sc, dm = dmin * m;
            const uint8_t *q = x[i].qs + 32 * (j / 2);
            int shift = 4 * (j & 1);
            for (int l = 0; l < 32; l++)
                *y++ = ds * ((q[l] >> shift) & 15) - dm;
        }
    }
}

void tensor_dequantize_q5_K_ref(const anneal_block_q5_K *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / ANNEAL_QK_K; i++) {
        float d = anneal_fp16_to_f32(x[i].d), dmin = anneal_fp16_to_f32(x[i].dmin);
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            tensor_scale_min_k4(j, x[i].scales, &sc, &m);
            float ds = d * sc, dm = dmin * m;
            const uint8_t *q = x[i].qs + 32 * (j / 2);
            int shift = 4 * (j & 1);
            for (int l = 0; l < 32; l++) {
                int v = ((q[l] >> shift) & 15) | ((x[i].qh[l] >> j) & 1) << 4;
                *y++ = ds * v - dm;
            }
        }
    }
}

void tensor_dequantize_q6_K_ref(const anneal_block_q6_K *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / ANNEAL_QK_K; i++, y += ANNEAL_QK_K) {
        float d = anneal_fp16_to_f32(x[i].d);
        for (int e = 0; e < ANNEAL_QK_K; e++) {
            int half = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
            const uint8_t *ql = x[i].ql + 64 * half, *qh = x[i].qh + 32 * half;
            int lo = quarter & 1 ? ql[l + 32] : ql[l];
            lo = quarter >= 2 ? lo >> 4 : lo & 15;
            int hi = (qh[l] >> (2 * quarter)) & 3;
            y[e] = d * x[i].scales[e / 16] * ((lo | hi << 4) - 32);
        }
    }
}

void tensor_dequantize_q8_K_ref(const anneal_block_q8_K *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / ANNEAL_QK_K; i++, y += ANNEAL_QK_K)
        for (int j = 0; j < ANNEAL_QK_K; j++)
            y[j] = x[i].d * x[i].qs[j];
}
