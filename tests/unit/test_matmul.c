// anneal_matmul at every kernel level against the reference dots: odd shapes (n_out not a
// multiple of the tile, n_tok 1..9, 31, 131), several thread splits, edge values, and the
// promise that a result depends neither on the split nor on the batch it was computed in.
#include "anneal/tensor.h"
#include "test.h"

static uint64_t seed = 0x243f6a8885a308d3ull;
static float frand(void) { // [-1, 1)
    return (float)(test_rand(&seed) >> 40) / (float)(1 << 23) - 1.0f;
}

static size_t row_bytes(uint32_t type, int64_t n) {
    uint64_t b = 0;
    anneal_type_nbytes(type, (uint64_t)n, &b);
    return (size_t)b;
}

enum { VAL_RANDOM, VAL_EXTREME, VAL_ZERO };

// Float data that quantizes to the interesting codes: random with outliers, or +-max
// values (every code at its extreme, scales large), or zeros.
static void fill(float *x, int64_t n, int mode, float scale) {
    for (int64_t i = 0; i < n; i++) {
        if (mode == VAL_ZERO)
            x[i] = 0;
        else if (mode == VAL_EXTREME)
            x[i] = (test_rand(&seed) & 1 ? 1 : -1) * scale;
        else
            x[i] = frand() * scale * (test_rand(&seed) % 50 == 0 ? 8 : 1);
    }
}

// Byte offsets of the scale (d) and min fields of a block, -1 if none.
static void scale_fields(uint32_t type, int *d_off, int *m_off) {
    *d_off = *m_off = -1;
    switch (type) {
    case ANNEAL_TYPE_Q4_1:
    case ANNEAL_TYPE_Q4_K:
    case ANNEAL_TYPE_Q5_K:
        *d_off = 0, *m_off = 2;
        break;
    default:
        break;
    }
}

// Per element |scale part of w| + |min part of w| (out[0..n)): the kernels sum the two
// parts separately, so sum_i out[i]*|a[i]| bounds every partial sum they form.
static void abs_weights(uint32_t type, int64_t n, const uint8_t *w, float *out) {
    const anneal_type_info *ti = anneal_type_get(type);
    size_t rb = row_bytes(type, n);
    float *wm = malloc((size_t)n * 4);
    uint8_t *copy = malloc(rb);
    int d_off, m_off;
    scale_fields(type, &d_off, &m_off);
    memcpy(copy, w, rb);
    for (int64_t b = 0; m_off >= 0 && b < n / ti->block_size; b++)
        memset(copy + (size_t)b * ti->type_size + (size_t)m_off, 0, 2);
    anneal_dequantize(type, copy, out, n);
    if (m_off >= 0) {
        memcpy(copy, w, rb);
        for (int64_t b = 0; b < n / ti->block_size; b++)
            memset(copy + (size_t)b * ti->type_size + (size_t)d_off, 0, 2);
        anneal_dequantize(type, copy, wm, n);
    }
    for (int64_t i = 0; i < n; i++)
        out[i] = fabsf(out[i]) + (m_off >= 0 ? fabsf(wm[i]) : 0);
    free(wm);
    free(copy);
}

typedef struct {
    int64_t n_out, n_tok;
} shape;

static const shape SHAPES[] = {{1, 1},  {5, 2},  {17, 3}, {16, 4},  {37, 5},  {33, 6},
                               {50, 7}, {19, 8}, {40, 9}, {45, 31}, {35, 131}};

static void check_type(uint32_t type, int64_t n_in, int mode, int *compared) {
    uint32_t at = anneal_vec_dot_type(type);
    const anneal_type_info *ti = anneal_type_get(type);
    size_t wr = row_bytes(type, n_in), ar = row_bytes(at, n_in);
    enum { MAX_OUT = 50, MAX_TOK = 131 };
    uint8_t *w = malloc(wr * MAX_OUT), *a = malloc(ar * MAX_TOK);
    float *x = malloc((size_t)n_in * 4);
    float *ref = malloc(sizeof(float) * MAX_OUT * MAX_TOK);
    double *tol = malloc(sizeof(double) * MAX_OUT * MAX_TOK);
    float *y = malloc(sizeof(float) * MAX_OUT * MAX_TOK),
          *y1 = malloc(sizeof(float) * MAX_OUT * MAX_TOK);
    for (int r = 0; r < MAX_OUT; r++) {
        fill(x, n_in, mode, mode == VAL_EXTREME ? 60000.f : 1.f + r % 3);
        if (mode == VAL_RANDOM && r == 3) fill(x, n_in, VAL_ZERO, 0);
        anneal_quantize(type, x, w + r * wr, n_in);
    }
    for (int t = 0; t < MAX_TOK; t++) {
        fill(x, n_in, mode, mode == VAL_EXTREME ? 1e4f : 0.5f + t % 4);
        anneal_quantize(at, x, a + t * ar, n_in);
    }
    anneal_vec_dot_fn rdot = anneal_vec_dot_ref(type);
    float *wabs = malloc(sizeof(float) * (size_t)n_in * MAX_OUT);
    float *aabs = malloc(sizeof(float) * (size_t)n_in * MAX_TOK);
    for (int r = 0; r < MAX_OUT; r++)
        abs_weights(type, n_in, w + r * wr, wabs + r * n_in);
    for (int t = 0; t < MAX_TOK; t++) {
        anneal_dequantize(at, a + t * ar, aabs + t * n_in, n_in);
        for (int64_t i = 0; i < n_in; i++)
            aabs[t * n_in + i] = fabsf(aabs[t * n_in + i]);
    }
    // Float accumulation: at most 3 roundings per 32 elements (scale product, FMA, min FMA)
    // plus 8, each at most 2^-24 of a partial sum bounded by sum|w||a|; allow 4 per 32.
    double rounds = (double)n_in / 8 + 8;
    for (int t = 0; t < MAX_TOK; t++)
        for (int r = 0; r < MAX_OUT; r++) {
            rdot(n_in, &ref[t * MAX_OUT + r], w + r * wr, a + t * ar);
            double s = 0;
            for (int64_t i = 0; i < n_in; i++)
                s += (double)wabs[r * n_in + i] * aabs[t * n_in + i];
            tol[t * MAX_OUT + r] = rounds * 0x1p-24 * s + 1e-30;
        }
    free(wabs);
    free(aabs);
    for (int lv = ANNEAL_KERNELS_REF; lv <= ANNEAL_KERNELS_AVX512; lv++) {
        if (!anneal_vec_dot_at(type, (anneal_kernel_level)lv)) continue;
        for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++) {
            int64_t n_out = SHAPES[si].n_out, n_tok = SHAPES[si].n_tok;
            // The reference level is the reference dot itself: small shapes suffice.
            if (lv == ANNEAL_KERNELS_REF && n_out * n_tok > 200) continue;
            for (int nth = 1; nth <= 3; nth++) {
                for (int64_t i = 0; i < n_out * n_tok; i++)
                    y[i] = NAN;
                for (int ith = 0; ith < nth; ith++)
                    CHECK_EQ(anneal_matmul_at((anneal_kernel_level)lv, type, w, n_in, n_out, a,
                                              n_tok, y, ith, nth),
                             ANNEAL_OK);
                int bad = 0, split = 0;
                for (int64_t t = 0; t < n_tok; t++)
                    for (int64_t r = 0; r < n_out; r++) {
                        float v = y[t * n_out + r], e = ref[t * MAX_OUT + r];
                        double tl = tol[t * MAX_OUT + r];
                        if (!(fabs((double)v - e) <= tl)) {
                            if (bad++ < 3)
                                fprintf(stderr,
                                        "  %s n_in %lld level %d shape %lldx%lld nth %d mode %d "
                                        "[t%lld r%lld]: %.9g ref %.9g tol %.3g\n",
                                        ti->name, (long long)n_in, lv, (long long)n_out,
                                        (long long)n_tok, nth, mode, (long long)t, (long long)r, v,
                                        e, tl);
                        }
                        if (mode == VAL_ZERO && v != 0) bad++;
                        if (nth > 1 && memcmp(&v, &y1[t * n_out + r], 4) != 0) split++;
                        (*compared)++;
                    }
                CHECK_EQ(bad, 0);
                CHECK_EQ(split, 0); // the split among threads never changes a bit
                if (nth == 1) memcpy(y1, y, sizeof(float) * (size_t)(n_out * n_tok));
            }
        }
        // A token's result does not depend on the batch it came in, among batches that take
        // the same path (here: 131 tokens vs the first 9 of them).
        if (lv == ANNEAL_KERNELS_REF) continue;
        CHECK_EQ(
            anneal_matmul_at((anneal_kernel_level)lv, type, w, n_in, MAX_OUT, a, MAX_TOK, y, 0, 1),
            ANNEAL_OK);
        CHECK_EQ(anneal_matmul_at((anneal_kernel_level)lv, type, w, n_in, MAX_OUT, a, 9, y1, 0, 1),
                 ANNEAL_OK);
        CHECK(memcmp(y, y1, sizeof(float) * MAX_OUT * 9) == 0);
        // And the small-batch path: 5 tokens vs the first one alone.
        CHECK_EQ(anneal_matmul_at((anneal_kernel_level)lv, type, w, n_in, MAX_OUT, a, 5, y, 0, 1),
                 ANNEAL_OK);
        CHECK_EQ(anneal_matmul_at((anneal_kernel_level)lv, type, w, n_in, MAX_OUT, a, 1, y1, 0, 1),
                 ANNEAL_OK);
        CHECK(memcmp(y, y1, sizeof(float) * MAX_OUT) == 0);
    }
    free(w);
    free(a);
    free(x);
    free(ref);
    free(tol);
    free(y);
    free(y1);
}

static void test_matmul_vs_ref(void) {
    const uint32_t types[] = {
        ANNEAL_TYPE_Q4_0, ANNEAL_TYPE_Q4_1, ANNEAL_TYPE_Q5_0, ANNEAL_TYPE_Q8_0, ANNEAL_TYPE_Q4_K,
        ANNEAL_TYPE_Q5_K, ANNEAL_TYPE_Q6_K, ANNEAL_TYPE_F16,  ANNEAL_TYPE_F32,  ANNEAL_TYPE_BF16};
    int compared = 0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        uint32_t type = types[i];
        uint32_t bs = anneal_type_get(type)->block_size;
        // One block, an odd block count, and several 256-element repacking chunks.
        int64_t sizes[3] = {bs == 256  ? 768
                            : bs == 32 ? 160
                                       : 67,
                            bs == 256 ? 1280 : 544, bs == 1 ? 5 : bs};
        for (int s = 0; s < 3; s++)
            check_type(type, sizes[s], VAL_RANDOM, &compared);
        check_type(type, sizes[0], VAL_EXTREME, &compared);
        check_type(type, sizes[0], VAL_ZERO, &compared);
    }
    fprintf(stderr, "  %d outputs compared\n", compared);
}

static void test_matmul_args(void) {
    static uint8_t w[4096], a[4096];
    float y[64];
    CHECK_EQ(anneal_matmul(ANNEAL_TYPE_Q4_0, w, 64, 2, a, 1, y, 1, 1), ANNEAL_ERR_INVALID_ARG);
    CHECK_EQ(anneal_matmul(ANNEAL_TYPE_Q4_0, w, 100, 2, a, 1, y, 0, 1), ANNEAL_ERR_INVALID_ARG);
    CHECK_EQ(anneal_matmul(ANNEAL_TYPE_Q4_0, w, 64, -1, a, 1, y, 0, 1), ANNEAL_ERR_INVALID_ARG);
    CHECK_EQ(anneal_matmul(ANNEAL_TYPE_Q2_K, w, 256, 2, a, 1, y, 0, 1), ANNEAL_ERR_UNSUPPORTED);
    CHECK_EQ(anneal_matmul_at((anneal_kernel_level)9, ANNEAL_TYPE_Q4_0, w, 64, 2, a, 1, y, 0, 1),
             ANNEAL_ERR_UNSUPPORTED);
    // Empty shapes and more threads than rows succeed and write nothing.
    y[0] = 7;
    CHECK_EQ(anneal_matmul(ANNEAL_TYPE_Q4_0, w, 64, 0, a, 5, y, 0, 1), ANNEAL_OK);
    CHECK_EQ(anneal_matmul(ANNEAL_TYPE_Q4_0, w, 64, 2, a, 0, y, 0, 1), ANNEAL_OK);
    CHECK_EQ(anneal_matmul(ANNEAL_TYPE_Q4_0, w, 64, 2, a, 5, y, 1, 5), ANNEAL_OK);
    CHECK(y[0] == 7);
    CHECK_EQ(anneal_matmul(ANNEAL_TYPE_Q4_0, w, 0, 2, a, 5, y, 0, 1), ANNEAL_OK);
}

// The SIMD activation quantizers give the reference's bytes for every input: random rows
// at several scales, exact rounding ties (k + 0.5 after scaling), +-0, subnormals, Inf, NaN
// (with payloads), and rows whose largest magnitude appears with both signs.
static void test_quantize_rows_exact(void) {
    enum { N = 1024, ROWS = 40 };
    float *x = malloc(sizeof(float) * N * ROWS);
    uint8_t *r = malloc(1300 * ROWS), *s = malloc(1300 * ROWS);
    for (int row = 0; row < ROWS; row++) {
        float *xr = x + row * N;
        float scale = ldexpf(1, (row % 12) * 6 - 40);
        for (int i = 0; i < N; i++)
            xr[i] = frand() * scale;
        switch (row % 8) {
        case 1: // ties: amax 127 makes id = 1, so k + 0.5 stays a tie
            for (int i = 0; i < N; i++)
                xr[i] = (float)((int)(test_rand(&seed) % 254) - 127) + (i % 3 ? 0.5f : 0);
            for (int i = 0; i < N; i += 32)
                xr[i] = 127;
            break;
        case 2:
            for (int i = 0; i < N; i++)
                xr[i] = i % 5 ? 0.0f : -0.0f;
            break;
        case 3:
            for (int i = 0; i < N; i++)
                xr[i] = ldexpf(frand(), -130);
            break;
        case 4:
            xr[7] = INFINITY;
            xr[300] = -INFINITY;
            break;
        case 5: {
            uint32_t nan_bits = 0x7fc01234u | (uint32_t)(row & 1) << 31;
            for (int i = 3; i < N; i += 97)
                memcpy(&xr[i], &nan_bits, 4);
            xr[5] = NAN;
            break;
        }
        case 6:
            for (int i = 0; i < N; i += 16) {
                xr[i] = -3 * scale;
                xr[i + 9] = 3 * scale;
            }
            break;
        default:
            break;
        }
    }
    const uint32_t types[] = {ANNEAL_TYPE_Q8_0, ANNEAL_TYPE_Q8_K, ANNEAL_TYPE_Q4_0};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        size_t rb = row_bytes(types[t], N);
        memset(r, 0xaa, rb * ROWS);
        memset(s, 0x55, rb * ROWS);
        CHECK_EQ(anneal_quantize_rows_at(ANNEAL_KERNELS_REF, types[t], x, r, N, ROWS, 0, 1),
                 ANNEAL_OK);
        for (int lv = ANNEAL_KERNELS_AVX2; lv <= ANNEAL_KERNELS_AVX512; lv++) {
            if (anneal_quantize_rows_at((anneal_kernel_level)lv, types[t], x, s, N, ROWS, 0, 1) ==
                ANNEAL_ERR_UNSUPPORTED)
                continue;
            for (int ith = 0; ith < 3; ith++)
                CHECK_EQ(anneal_quantize_rows_at((anneal_kernel_level)lv, types[t], x, s, N, ROWS,
                                                 ith, 3),
                         ANNEAL_OK);
            int bad = 0;
            for (int row = 0; row < ROWS; row++)
                if (memcmp(r + row * rb, s + row * rb, rb) != 0) {
                    if (bad++ < 3)
                        fprintf(stderr, "  %s level %d row %d differs\n",
                                anneal_type_get(types[t])->name, lv, row);
                }
            CHECK_EQ(bad, 0);
        }
        // anneal_quantize (the active level) agrees too.
        for (int row = 0; row < ROWS; row++)
            CHECK_EQ(anneal_quantize(types[t], x + row * N, s + row * rb, N), ANNEAL_OK);
        CHECK(memcmp(r, s, rb * ROWS) == 0);
    }
    CHECK_EQ(anneal_quantize_rows(ANNEAL_TYPE_Q8_0, x, s, 33, 1, 0, 1), ANNEAL_ERR_INVALID_ARG);
    CHECK_EQ(anneal_quantize_rows(ANNEAL_TYPE_Q8_0, x, s, 32, 1, 2, 2), ANNEAL_ERR_INVALID_ARG);
    CHECK_EQ(anneal_quantize_rows(ANNEAL_TYPE_Q2_K, x, s, 256, 1, 0, 1), ANNEAL_ERR_UNSUPPORTED);
    free(x);
    free(r);
    free(s);
}

int main(void) {
    RUN(test_matmul_vs_ref);
    RUN(test_matmul_args);
    RUN(test_quantize_rows_exact);
    return TEST_EXIT();
}
