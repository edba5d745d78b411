// Tensor element types: block sizes, fp16/bf16 conversion (exhaustive), dequantization of
// hand-packed blocks, quantization error bounds, every SIMD level against the reference
// dot, and the tiled matmul.
#include "anneal/tensor.h"
#include "test.h"

#include <float.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float urand(void) {
    return (float)(rnd() >> 40) / (float)(1 << 24);
} // [0, 1)
// Roughly normal (Irwin-Hall), with a rare 8x outlier as real weights have.
static float nrand(void) {
    float s = urand() + urand() + urand() + urand() - 2.0f;
    return (rnd() % 97 == 0) ? 8 * s : s;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static const uint32_t DOT_TYPES[] = {
    ANNEAL_TYPE_F32,  ANNEAL_TYPE_F16,  ANNEAL_TYPE_BF16, ANNEAL_TYPE_Q4_0, ANNEAL_TYPE_Q4_1,
    ANNEAL_TYPE_Q5_0, ANNEAL_TYPE_Q8_0, ANNEAL_TYPE_Q4_K, ANNEAL_TYPE_Q5_K, ANNEAL_TYPE_Q6_K};
#define N_DOT_TYPES (sizeof DOT_TYPES / sizeof DOT_TYPES[0])

static void test_block_sizes(void) {
    CHECK_EQ(sizeof(anneal_block_q4_0), anneal_type_get(ANNEAL_TYPE_Q4_0)->type_size);
    CHECK_EQ(sizeof(anneal_block_q4_1), anneal_type_get(ANNEAL_TYPE_Q4_1)->type_size);
    CHECK_EQ(sizeof(anneal_block_q5_0), anneal_type_get(ANNEAL_TYPE_Q5_0)->type_size);
    CHECK_EQ(sizeof(anneal_block_q8_0), anneal_type_get(ANNEAL_TYPE_Q8_0)->type_size);
    CHECK_EQ(sizeof(anneal_block_q4_K), anneal_type_get(ANNEAL_TYPE_Q4_K)->type_size);
    CHECK_EQ(sizeof(anneal_block_q5_K), anneal_type_get(ANNEAL_TYPE_Q5_K)->type_size);
    CHECK_EQ(sizeof(anneal_block_q6_K), anneal_type_get(ANNEAL_TYPE_Q6_K)->type_size);
    CHECK_EQ(sizeof(anneal_block_q8_K), anneal_type_get(ANNEAL_TYPE_Q8_K)->type_size);
    CHECK_EQ(anneal_vec_dot_type(ANNEAL_TYPE_Q4_0), ANNEAL_TYPE_Q8_0);
    CHECK_EQ(anneal_vec_dot_type(ANNEAL_TYPE_Q6_K), ANNEAL_TYPE_Q8_K);
    CHECK_EQ(anneal_vec_dot_type(ANNEAL_TYPE_F16), ANNEAL_TYPE_F32);
    CHECK_EQ(anneal_vec_dot_type(ANNEAL_TYPE_Q2_K), ANNEAL_TYPE_COUNT);
    CHECK(anneal_vec_dot_ref(ANNEAL_TYPE_Q2_K) == NULL);
    CHECK(anneal_vec_dot_get(ANNEAL_TYPE_IQ4_NL) == NULL);
    CHECK(anneal_vec_dot_get(9999) == NULL);
}

// The straightforward decoding of binary16: sign * 2^(e-15) * 1.m, subnormals 2^-14 * 0.m.
static float fp16_decode_plain(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 0)
        v = ldexpf((float)m, -24);
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexpf((float)(1024 + m), e - 25);
    return s ? -v : v;
}

static void test_fp16_exhaustive(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = anneal_fp16_to_f32((anneal_fp16)h), r = fp16_decode_plain((uint16_t)h);
        bool nan = ((h >> 10) & 31) == 31 && (h & 1023);
        if (nan) {
            // NaN stays NaN with its sign, and survives the round trip as a NaN.
            anneal_fp16 back = anneal_f32_to_fp16(f);
            if (!isnan(f) || (signbit(f) != 0) != ((h >> 15) != 0) || (back & 0x7c00) != 0x7c00 ||
                !(back & 1023) || (back & 0x8000) != (h & 0x8000))
                bad++;
            continue;
        }
        if (f32_bits(f) != f32_bits(r) || anneal_f32_to_fp16(f) != h) bad++;
        // Halfway to the next larger magnitude: ties go to the even code, and one f32 ulp
        // either side goes to the nearer code.
        if ((h & 0x7fff) < 0x7c00) {
            uint16_t up = (uint16_t)(h + 1);
            double lo = fp16_decode_plain((uint16_t)h), hi = fp16_decode_plain(up);
            if ((h & 0x7fff) == 0x7bff) hi = (h & 0x8000) ? -65536.0 : 65536.0; // Inf's slot
            float mid = (float)((lo + hi) / 2);
            if ((double)mid != (lo + hi) / 2) bad++;
            uint16_t even = (h & 1) ? up : (uint16_t)h;
            if (anneal_f32_to_fp16(mid) != even) bad++;
            if (anneal_f32_to_fp16(nextafterf(mid, 0)) != h) bad++;
            if (anneal_f32_to_fp16(nextafterf(mid, (h & 0x8000) ? -INFINITY : INFINITY)) != up)
                bad++;
        }
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(anneal_f32_to_fp16(1e10f), 0x7c00);
    CHECK_EQ(anneal_f32_to_fp16(-1e10f), 0xfc00);
    CHECK_EQ(anneal_f32_to_fp16(65519.99f), 0x7bff);
    CHECK_EQ(anneal_f32_to_fp16(-0.0f), 0x8000);
    CHECK_EQ(anneal_f32_to_fp16(1e-30f), 0x0000);
    CHECK_EQ(anneal_f32_to_fp16(-FLT_TRUE_MIN), 0x8000);
    CHECK_EQ(anneal_f32_to_fp16(0x1p-25f), 0x0000);        // tie between 0 and 2^-24: even
    CHECK_EQ(anneal_f32_to_fp16(0x1.000002p-25f), 0x0001); // just above the tie
    CHECK_EQ(anneal_f32_to_fp16(1.0f), 0x3c00);
    CHECK_EQ(anneal_f32_to_fp16(0.1f), 0x2e66);
    CHECK(isnan(anneal_fp16_to_f32(anneal_f32_to_fp16(NAN))));
}

static void test_bf16_exhaustive(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = anneal_bf16_to_f32((anneal_bf16)h);
        uint32_t bits = h << 16;
        float r;
        memcpy(&r, &bits, 4);
        bool nan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        if (nan) {
            anneal_bf16 back = anneal_f32_to_bf16(f);
            if (!isnan(f) || (back & 0x7f80) != 0x7f80 || !(back & 0x7f) ||
                (back & 0x8000) != (h & 0x8000))
                bad++;
            continue;
        }
        if (f32_bits(f) != f32_bits(r) || anneal_f32_to_bf16(f) != h) bad++;
        if ((h & 0x7fff) < 0x7f80) {
            uint16_t up = (uint16_t)(h + 1);
            double lo = anneal_bf16_to_f32((anneal_bf16)h);
            double hi = (h & 0x7fff) == 0x7f7f ? ((h & 0x8000) ? -0x1p128 : 0x1p128)
                                               : anneal_bf16_to_f32(up);
            double mid = (lo + hi) / 2;
            if ((h & 0x7fff) == 0x7f7f) {
                // The tie with the Inf slot is not an f32; the largest f32 below it rounds down.
                if (anneal_f32_to_bf16(h & 0x8000 ? -FLT_MAX : FLT_MAX) != up) bad++;
                continue;
            }
            float midf = (float)mid;
            uint16_t even = (h & 1) ? up : (uint16_t)h;
            if (anneal_f32_to_bf16(midf) != even) bad++;
            if (anneal_f32_to_bf16(nextafterf(midf, 0)) != h) bad++;
            if (anneal_f32_to_bf16(nextafterf(midf, (h & 0x8000) ? -INFINITY : INFINITY)) != up)
                bad++;
        }
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(anneal_f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ(anneal_f32_to_bf16(-0.0f), 0x8000);
    CHECK_EQ(anneal_f32_to_bf16(INFINITY), 0x7f80);
    CHECK(isnan(anneal_bf16_to_f32(anneal_f32_to_bf16(NAN))));
}

static void put16(anneal_fp16 *dst, float v) {
    *dst = anneal_f32_to_fp16(v);
}

// Each block is packed here from chosen codes by the layout rules, then dequantized by the
// library; expected values come from the format's formula over the chosen codes.
static void test_dequant_q4_0_q4_1_q5_0_q8_0(void) {
    float y[64];
    anneal_block_q4_0 b0 = {0};
    put16(&b0.d, 0.5f);
    for (int j = 0; j < 16; j++)
        b0.qs[j] = (uint8_t)(j | (15 - j) << 4);
    CHECK_EQ(anneal_dequantize(ANNEAL_TYPE_Q4_0, &b0, y, 32), ANNEAL_OK);
    for (int j = 0; j < 16; j++) {
        CHECK_EQ(f32_bits(y[j]), f32_bits(0.5f * (float)(j - 8)));
        CHECK_EQ(f32_bits(y[j + 16]), f32_bits(0.5f * (float)(7 - j)));
    }
    CHECK(y[0] == -4.0f && y[15] == 3.5f && y[16] == 3.5f && y[31] == -4.0f);

    anneal_block_q4_1 b1 = {0};
    put16(&b1.d, 0.25f);
    put16(&b1.m, -1.0f);
    for (int j = 0; j < 16; j++)
        b1.qs[j] = (uint8_t)((j * 3 % 16) | (j * 5 % 16) << 4);
    CHECK_EQ(anneal_dequantize(ANNEAL_TYPE_Q4_1, &b1, y, 32), ANNEAL_OK);
    for (int j = 0; j < 16; j++) {
        CHECK(y[j] == 0.25f * (float)(j * 3 % 16) - 1.0f);
        CHECK(y[j + 16] == 0.25f * (float)(j * 5 % 16) - 1.0f);
    }

    anneal_block_q5_0 b5 = {0};
    put16(&b5.d, 2.0f);
    int codes[32];
    uint32_t qh = 0;
    for (int e = 0; e < 32; e++) {
        codes[e] = (e * 11 + 3) % 32;
        qh |= (uint32_t)(codes[e] >> 4) << e;
    }
    for (int j = 0; j < 16; j++)
        b5.qs[j] = (uint8_t)((codes[j] & 15) | (codes[j + 16] & 15) << 4);
    for (int k = 0; k < 4; k++)
        b5.qh[k] = (uint8_t)(qh >> (8 * k));
    CHECK_EQ(anneal_dequantize(ANNEAL_TYPE_Q5_0, &b5, y, 32), ANNEAL_OK);
    for (int e = 0; e < 32; e++)
        CHECK(y[e] == 2.0f * (float)(codes[e] - 16));
    CHECK(y[0] == -26.0f); // code 3

    anneal_block_q8_0 b8[2] = {{0}};
    put16(&b8[0].d, 0.125f);
    put16(&b8[1].d, -0.0f);
    for (int j = 0; j < 32; j++)
        b8[0].qs[j] = b8[1].qs[j] = (int8_t)(j * 8 - 128);
    CHECK_EQ(anneal_dequantize(ANNEAL_TYPE_Q8_0, b8, y, 64), ANNEAL_OK);
    for (int j = 0; j < 32; j++)
        CHECK(y[j] == 0.125f * (float)(j * 8 - 128));
    CHECK(y[0] == -16.0f);
    for (int j = 32; j < 64; j++)
        CHECK(y[j] == 0.0f);
}

// Packs 6-bit scales/mins into the 12-byte Q4_K/Q5_K layout (as the header documents).
static void pack_k_scales(const int sc[8], const int m[8], uint8_t s[12]) {
    memset(s, 0, 12);
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)((sc[j] & 63) | (sc[j + 4] >> 4) << 6);
        s[j + 4] = (uint8_t)((m[j] & 63) | (m[j + 4] >> 4) << 6);
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | (m[j + 4] & 15) << 4);
    }
}

static void test_dequant_k(void) {
    static float y[256];
    const int sc[8] = {1, 2, 63, 40, 17, 33, 5, 62}, m[8] = {0, 3, 63, 10, 48, 1, 31, 20};
    int L[256];

    anneal_block_q4_K k4;
    memset(&k4, 0, sizeof k4);
    put16(&k4.d, 1.0f);
    put16(&k4.dmin, 0.5f);
    pack_k_scales(sc, m, k4.scales);
    for (int e = 0; e < 256; e++)
        L[e] = (e * 5 + 3) % 16;
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            k4.qs[32 * c + l] = (uint8_t)(L[64 * c + l] | L[64 * c + 32 + l] << 4);
    CHECK_EQ(anneal_dequantize(ANNEAL_TYPE_Q4_K, &k4, y, 256), ANNEAL_OK);
    for (int e = 0; e < 256; e++)
        CHECK(y[e] == 1.0f * (float)(sc[e / 32] * L[e]) - 0.5f * (float)m[e / 32]);
    CHECK(y[0] == 3.0f);              // sc 1, code 3, min 0
    CHECK(y[32] == 2 * 3 - 1.5f);     // sub-block 1: sc 2, code (160+3)%16 = 3, m 3
    CHECK(y[255] == 62 * 14 - 10.0f); // code (1275+3)%16 = 14, sc 62, minus 0.5*20

    anneal_block_q5_K k5;
    memset(&k5, 0, sizeof k5);
    put16(&k5.d, 0.25f);
    put16(&k5.dmin, 2.0f);
    pack_k_scales(sc, m, k5.scales);
    for (int e = 0; e < 256; e++)
        L[e] = (e * 13 + 7) % 32;
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            k5.qs[32 * c + l] = (uint8_t)((L[64 * c + l] & 15) | (L[64 * c + 32 + l] & 15) << 4);
            k5.qh[l] |= (uint8_t)((L[64 * c + l] >> 4) << (2 * c) | (L[64 * c + 32 + l] >> 4)
                                                                        << (2 * c + 1));
        }
    CHECK_EQ(anneal_dequantize(ANNEAL_TYPE_Q5_K, &k5, y, 256), ANNEAL_OK);
    for (int e = 0; e < 256; e++)
        CHECK(y[e] == 0.25f * (float)(sc[e / 32] * L[e]) - 2.0f * (float)m[e / 32]);

    anneal_block_q6_K k6;
    memset(&k6, 0, sizeof k6);
    put16(&k6.d, 0.5f);
    for (int j = 0; j < 16; j++)
        k6.scales[j] = (int8_t)(j == 0 ? -128 : j == 1 ? 127 : j * 9 - 70);
    for (int e = 0; e < 256; e++)
        L[e] = (e * 37 + 1) % 64;
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const int *Lh = L + 128 * h;
            k6.ql[64 * h + l] = (uint8_t)((Lh[l] & 15) | (Lh[l + 64] & 15) << 4);
            k6.ql[64 * h + l + 32] = (uint8_t)((Lh[l + 32] & 15) | (Lh[l + 96] & 15) << 4);
            k6.qh[32 * h + l] = (uint8_t)(Lh[l] >> 4 | (Lh[l + 32] >> 4) << 2 |
                                          (Lh[l + 64] >> 4) << 4 | (Lh[l + 96] >> 4) << 6);
        }
    CHECK_EQ(anneal_dequantize(ANNEAL_TYPE_Q6_K, &k6, y, 256), ANNEAL_OK);
    for (int e = 0; e < 256; e++)
        CHECK(y[e] == 0.5f * (float)k6.scales[e / 16] * (float)(L[e] - 32));
    CHECK(y[0] == 0.5f * -128 * (1 - 32));

    anneal_block_q8_K k8;
    memset(&k8, 0, sizeof k8);
    k8.d = 0.25f;
    for (int e = 0; e < 256; e++)
        k8.qs[e] = (int8_t)(e - 128);
    CHECK_EQ(anneal_dequantize(ANNEAL_TYPE_Q8_K, &k8, y, 256), ANNEAL_OK);
    for (int e = 0; e < 256; e++)
        CHECK(y[e] == 0.25f * (float)(e - 128));

    anneal_fp16 h[3] = {0x3c00, 0x8001, 0x7bff};
    CHECK_EQ(anneal_dequantize(ANNEAL_TYPE_F16, h, y, 3), ANNEAL_OK);
    CHECK(y[0] == 1.0f && y[1] == -0x1p-24f && y[2] == 65504.0f);
    anneal_bf16 b[2] = {0x3f80, 0xc040};
    CHECK_EQ(anneal_dequantize(ANNEAL_TYPE_BF16, b, y, 2), ANNEAL_OK);
    CHECK(y[0] == 1.0f && y[1] == -3.0f);

    CHECK_EQ(anneal_dequantize(ANNEAL_TYPE_Q4_K, &k4, y, 255), ANNEAL_ERR_INVALID_ARG);
    CHECK_EQ(anneal_quantize(ANNEAL_TYPE_Q4_0, y, &k4, 33), ANNEAL_ERR_INVALID_ARG);
    CHECK_EQ(anneal_quantize(ANNEAL_TYPE_Q2_K, y, &k4, 256), ANNEAL_ERR_UNSUPPORTED);
    CHECK_EQ(anneal_dequantize(ANNEAL_TYPE_IQ4_NL, &k4, y, 32), ANNEAL_ERR_UNSUPPORTED);
}

static size_t row_bytes(uint32_t type, int64_t n) {
    uint64_t b = 0;
    anneal_type_nbytes(type, (uint64_t)n, &b);
    return (size_t)b;
}

// Relative RMSE of quantize -> dequantize on n values of roughly normal data.
static double roundtrip_rmse(uint32_t type, const float *x, int64_t n) {
    void *q = malloc(row_bytes(type, n));
    float *y = malloc((size_t)n * sizeof(float));
    CHECK_EQ(anneal_quantize(type, x, q, n), ANNEAL_OK);
    CHECK_EQ(anneal_dequantize(type, q, y, n), ANNEAL_OK);
    double se = 0, sx = 0;
    for (int64_t i = 0; i < n; i++) {
        se += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        sx += (double)x[i] * x[i];
    }
    free(q);
    free(y);
    return sqrt(se / sx);
}

static void test_quantize_error(void) {
    enum { N = 8192 };
    static float x[N], y[N];
    for (int i = 0; i < N; i++)
        x[i] = nrand();
    // Thresholds sit ~15-20% above what these algorithms give on this data, far below
    // what a broken quantizer (wrong rounding, lost scale bits, wrong nibble order) gives.
    struct {
        uint32_t type;
        double max_rmse;
    } cases[] = {
        {ANNEAL_TYPE_F16, 2.4e-4}, {ANNEAL_TYPE_BF16, 1.9e-3}, {ANNEAL_TYPE_Q8_0, 0.0095},
        {ANNEAL_TYPE_Q8_K, 0.021}, {ANNEAL_TYPE_Q6_K, 0.029},  {ANNEAL_TYPE_Q5_K, 0.054},
        {ANNEAL_TYPE_Q5_0, 0.074}, {ANNEAL_TYPE_Q4_K, 0.102},  {ANNEAL_TYPE_Q4_1, 0.112},
        {ANNEAL_TYPE_Q4_0, 0.145},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        double r = roundtrip_rmse(cases[c].type, x, N);
        fprintf(stderr, "  %-5s rel rmse %.5f\n", anneal_type_get(cases[c].type)->name, r);
        CHECK(r < cases[c].max_rmse);
    }
    // Zeros stay zeros, exactly.
    static float z[512];
    static uint8_t q[2048];
    const uint32_t zt[] = {ANNEAL_TYPE_Q4_0, ANNEAL_TYPE_Q4_1, ANNEAL_TYPE_Q5_0, ANNEAL_TYPE_Q8_0,
                           ANNEAL_TYPE_Q4_K, ANNEAL_TYPE_Q5_K, ANNEAL_TYPE_Q6_K, ANNEAL_TYPE_Q8_K};
    for (size_t t = 0; t < sizeof zt / sizeof zt[0]; t++) {
        CHECK_EQ(anneal_quantize(zt[t], z, q, 512), ANNEAL_OK);
        CHECK_EQ(anneal_dequantize(zt[t], q, y, 512), ANNEAL_OK);
        int nz = 0;
        for (int i = 0; i < 512; i++)
            nz += y[i] != 0;
        CHECK_EQ(nz, 0);
    }
    (void)y;
}

// Byte offsets of the fp16 scale fields of one block, and which of them are "min" terms
// (to build the error bound below); -1 ends a list.
static void scale_fields(uint32_t type, int off[3], bool is_min[3]) {
    off[0] = off[1] = off[2] = -1;
    is_min[0] = is_min[1] = is_min[2] = false;
    switch (type) {
    case ANNEAL_TYPE_Q4_1:
    case ANNEAL_TYPE_Q4_K:
    case ANNEAL_TYPE_Q5_K:
        off[0] = 0, off[1] = 2, is_min[1] = true;
        break;
    case ANNEAL_TYPE_Q6_K:
        off[0] = 208;
        break;
    case ANNEAL_TYPE_Q4_0:
    case ANNEAL_TYPE_Q5_0:
    case ANNEAL_TYPE_Q8_0:
        off[0] = 0;
        break;
    default:
        break;
    }
}

enum { MODE_RANDOM, MODE_ZERO, MODE_MAX, MODE_TINY, N_MODES };

// A weight row: random (or edge-valued) code bytes with the scale fields set per mode.
static void make_weights(uint32_t type, int64_t n, uint8_t *row, int mode) {
    const anneal_type_info *ti = anneal_type_get(type);
    size_t nbytes = row_bytes(type, n);
    if (type == ANNEAL_TYPE_F32 || type == ANNEAL_TYPE_F16 || type == ANNEAL_TYPE_BF16) {
        for (int64_t i = 0; i < n; i++) {
            float v = mode == MODE_ZERO   ? 0
                      : mode == MODE_MAX  ? ((i & 1) ? 65504.f : -65504.f)
                      : mode == MODE_TINY ? ((i & 1) ? -0x1p-24f : 0x1p-20f)
                                          : nrand();
            if (mode == MODE_TINY && i % 3 == 0) v = -0.0f;
            if (type == ANNEAL_TYPE_F32)
                memcpy(row + 4 * i, &v, 4);
            else if (type == ANNEAL_TYPE_F16)
                ((anneal_fp16 *)row)[i] = anneal_f32_to_fp16(v);
            else
                ((anneal_bf16 *)row)[i] = anneal_f32_to_bf16(v);
        }
        return;
    }
    for (size_t i = 0; i < nbytes; i++)
        row[i] = mode == MODE_ZERO  ? 0
                 : mode == MODE_MAX ? ((i / 7) & 1 ? 0xff : 0x80)
                                    : (uint8_t)rnd();
    int off[3];
    bool is_min[3];
    scale_fields(type, off, is_min);
    for (int64_t b = 0; b < n / ti->block_size; b++) {
        for (int f = 0; f < 3 && off[f] >= 0; f++) {
            anneal_fp16 v;
            if (mode == MODE_ZERO)
                v = 0;
            else if (mode == MODE_MAX)
                v = (b + f) & 1 ? 0x7bff : 0xfbff;
            else if (mode == MODE_TINY)
                v = (anneal_fp16[]){0x0001, 0x8001, 0x8000, 0x03ff}[(b + f) % 4];
            else
                v = anneal_f32_to_fp16(nrand() * 0.05f);
            memcpy(row + (size_t)b * ti->type_size + (size_t)off[f], &v, 2);
        }
    }
}

// Activations in the type the dot expects: quantized with anneal_quantize (so codes and
// bsums are what the engine will produce), or raw f32.
static void make_acts(uint32_t type, int64_t n, uint8_t *row, float *tmp, int mode) {
    for (int64_t i = 0; i < n; i++)
        tmp[i] = mode == MODE_ZERO ? 0 : mode == MODE_MAX ? ((i % 3) ? 1000.f : -1000.f) : nrand();
    CHECK_EQ(anneal_quantize(anneal_vec_dot_type(type), tmp, row, n), ANNEAL_OK);
}

// Sum over i of |w_i| |a_i|, where for types with a min term |w_i| counts the scale part
// and the min part separately (the kernels compute those as separate sums).
static double abs_dot(uint32_t type, int64_t n, const uint8_t *w, const uint8_t *a) {
    float *wd = malloc((size_t)n * 4), *wm = malloc((size_t)n * 4), *ad = malloc((size_t)n * 4);
    uint8_t *copy = malloc(row_bytes(type, n));
    int off[3];
    bool is_min[3];
    scale_fields(type, off, is_min);
    const anneal_type_info *ti = anneal_type_get(type);
    memcpy(copy, w, row_bytes(type, n));
    for (int64_t b = 0; b < n / ti->block_size; b++)
        for (int f = 0; f < 3 && off[f] >= 0; f++)
            if (is_min[f]) memset(copy + (size_t)b * ti->type_size + (size_t)off[f], 0, 2);
    anneal_dequantize(type, copy, wd, n);
    memcpy(copy, w, row_bytes(type, n));
    for (int64_t b = 0; b < n / ti->block_size; b++)
        for (int f = 0; f < 3 && off[f] >= 0; f++)
            if (!is_min[f]) memset(copy + (size_t)b * ti->type_size + (size_t)off[f], 0, 2);
    bool has_min = off[1] >= 0 && is_min[1];
    if (has_min) anneal_dequantize(type, copy, wm, n);
    anneal_dequantize(anneal_vec_dot_type(type), a, ad, n);
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (fabs(wd[i]) + (has_min ? fabs(wm[i]) : 0)) * fabs(ad[i]);
    free(wd);
    free(wm);
    free(ad);
    free(copy);
    return s;
}

// Every SIMD level against the reference. Tolerance: the reference sums blocks in double
// and the integer parts of both are exact, so the only difference is the SIMD float
// accumulation: at most (adds per lane) * 2^-24 * sum|w||a|; sizes here keep that under
// ~70 adds per lane, so 1e-5 * sum|w||a| bounds it, plus 1e-30 for an all-zero row.
static void test_simd_vs_ref(void) {
    const int64_t qsizes[] = {32, 64, 96, 160, 224, 512, 1056};
    const int64_t ksizes[] = {256, 512, 768, 1280, 1792};
    const int64_t fsizes[] = {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 47, 64, 67, 255, 1000, 1027};
    size_t maxb = 1 << 16;
    uint8_t *w = malloc(maxb), *a = malloc(maxb * 4);
    float *tmp = malloc(maxb * 4);
    int compared = 0;
    for (int lv = ANNEAL_KERNELS_AVX2; lv <= ANNEAL_KERNELS_AVX512; lv++) {
        if (!anneal_vec_dot_at(ANNEAL_TYPE_Q4_0, (anneal_kernel_level)lv)) {
            fprintf(stderr, "  level %d: not on this CPU, skipped\n", lv);
            continue;
        }
        for (size_t t = 0; t < N_DOT_TYPES; t++) {
            uint32_t type = DOT_TYPES[t];
            anneal_vec_dot_fn ref = anneal_vec_dot_ref(type),
                              fn = anneal_vec_dot_at(type, (anneal_kernel_level)lv);
            CHECK(ref && fn);
            if (!ref || !fn) continue;
            const int64_t *sizes = fsizes;
            size_t ns = sizeof fsizes / sizeof fsizes[0];
            if (anneal_type_get(type)->block_size == 32)
                sizes = qsizes, ns = sizeof qsizes / sizeof qsizes[0];
            if (anneal_type_get(type)->block_size == 256)
                sizes = ksizes, ns = sizeof ksizes / sizeof ksizes[0];
            for (size_t si = 0; si < ns; si++) {
                for (int mode = 0; mode < N_MODES; mode++) {
                    for (int rep = 0; rep < (mode == MODE_RANDOM ? 3 : 1); rep++) {
                        int64_t n = sizes[si];
                        make_weights(type, n, w, mode);
                        make_acts(type, n, a, tmp, mode == MODE_TINY ? MODE_RANDOM : mode);
                        float r = -1, s = -2;
                        ref(n, &r, w, a);
                        fn(n, &s, w, a);
                        double tol = 1e-5 * abs_dot(type, n, w, a) + 1e-30;
                        if (!(fabs((double)r - s) <= tol)) {
                            fprintf(stderr,
                                    "  %s level %d n=%lld mode %d: simd %.9g ref %.9g tol %.3g\n",
                                    anneal_type_get(type)->name, lv, (long long)n, mode, s, r, tol);
                            test_failures++;
                        }
                        if (mode == MODE_ZERO) CHECK(s == 0 && r == 0);
                        compared++;
                    }
                }
            }
        }
    }
    fprintf(stderr, "  %d comparisons\n", compared);
    free(w);
    free(a);
    free(tmp);
}

static void test_dot_matches_dequant(void) {
    // The reference dot equals the dot of the dequantized rows (computed in double), so
    // the block formulas inside the dots agree with dequantize.
    enum { N = 1024 };
    static uint8_t w[N * 4], a[N * 4 + 512];
    static float tmp[N], wd[N], ad[N];
    for (size_t t = 0; t < N_DOT_TYPES; t++) {
        uint32_t type = DOT_TYPES[t];
        make_weights(type, N, w, MODE_RANDOM);
        make_acts(type, N, a, tmp, MODE_RANDOM);
        anneal_dequantize(type, w, wd, N);
        anneal_dequantize(anneal_vec_dot_type(type), a, ad, N);
        double s = 0;
        for (int i = 0; i < N; i++)
            s += (double)wd[i] * ad[i];
        float r;
        anneal_vec_dot_ref(type)(N, &r, w, a);
        CHECK_NEAR(r, s, 1e-5 * abs_dot(type, N, w, a) + 1e-30);
    }
}

static void test_matmul(void) {
    enum { NIN = 512, NOUT = 37, NTOK = 6 };
    const uint32_t types[] = {ANNEAL_TYPE_Q4_0, ANNEAL_TYPE_Q4_K, ANNEAL_TYPE_F16,
                              ANNEAL_TYPE_Q6_K};
    uint8_t *w = malloc(row_bytes(ANNEAL_TYPE_F32, NIN) * NOUT);
    uint8_t *a = malloc(row_bytes(ANNEAL_TYPE_F32, NIN) * NTOK);
    float *tmp = malloc(NIN * sizeof(float)), *y = malloc(NOUT * NTOK * sizeof(float));
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        uint32_t type = types[t], at = anneal_vec_dot_type(type);
        size_t wr = row_bytes(type, NIN), ar = row_bytes(at, NIN);
        for (int r = 0; r < NOUT; r++)
            make_weights(type, NIN, w + r * wr, MODE_RANDOM);
        for (int k = 0; k < NTOK; k++)
            make_acts(type, NIN, a + k * ar, tmp, MODE_RANDOM);
        for (int i = 0; i < NOUT * NTOK; i++)
            y[i] = NAN;
        for (int ith = 0; ith < 3; ith++)
            CHECK_EQ(anneal_matmul(type, w, NIN, NOUT, a, NTOK, y, ith, 3), ANNEAL_OK);
        anneal_vec_dot_fn fn = anneal_vec_dot_get(type);
        int bad = 0;
        for (int k = 0; k < NTOK; k++)
            for (int r = 0; r < NOUT; r++) {
                float e;
                fn(NIN, &e, w + r * wr, a + k * ar);
                if (f32_bits(e) != f32_bits(y[k * NOUT + r])) bad++;
            }
        CHECK_EQ(bad, 0);
    }
    CHECK_EQ(anneal_matmul(ANNEAL_TYPE_Q4_0, w, NIN, NOUT, a, NTOK, y, 3, 3),
             ANNEAL_ERR_INVALID_ARG);
    CHECK_EQ(anneal_matmul(ANNEAL_TYPE_Q4_0, w, 100, NOUT, a, NTOK, y, 0, 1),
             ANNEAL_ERR_INVALID_ARG);
    CHECK_EQ(anneal_matmul(ANNEAL_TYPE_Q2_K, w, NIN, NOUT, a, NTOK, y, 0, 1),
             ANNEAL_ERR_UNSUPPORTED);
    // More threads than rows: the extra threads do nothing and succeed.
    CHECK_EQ(anneal_matmul(ANNEAL_TYPE_Q4_0, w, NIN, 2, a, 1, y, 4, 5), ANNEAL_OK);
    free(w);
    free(a);
    free(tmp);
    free(y);
}

// ANNEAL_KERNELS=ref (set before first use in main) caps the level used by _get, while
// _at still reaches every level the CPU has.
static void test_forced_level(void) {
    CHECK_EQ(anneal_kernels_level(), ANNEAL_KERNELS_REF);
    CHECK(anneal_vec_dot_get(ANNEAL_TYPE_Q4_K) == anneal_vec_dot_ref(ANNEAL_TYPE_Q4_K));
    const anneal_cpu *c = anneal_cpu_get();
    if (c->avx2 && c->fma && c->f16c)
        CHECK(anneal_vec_dot_at(ANNEAL_TYPE_Q4_K, ANNEAL_KERNELS_AVX2) !=
              anneal_vec_dot_ref(ANNEAL_TYPE_Q4_K));
    CHECK(anneal_vec_dot_at(ANNEAL_TYPE_Q4_K, (anneal_kernel_level)7) == NULL);
}

int main(void) {
    setenv("ANNEAL_KERNELS", "ref", 1);
    RUN(test_block_sizes);
    RUN(test_fp16_exhaustive);
    RUN(test_bf16_exhaustive);
    RUN(test_dequant_q4_0_q4_1_q5_0_q8_0);
    RUN(test_dequant_k);
    RUN(test_quantize_error);
    RUN(test_simd_vs_ref);
    RUN(test_dot_matches_dequant);
    RUN(test_matmul);
    RUN(test_forced_level);
    return TEST_EXIT();
}
