// Tests for the sampler (exact penalties, filter sets, seeded draws, chi-square fit,
// logprobs, non-finite logits, parameter checks) and the stop-string matcher.
#include "anneal/generate.h"
#include "generate/gen_internal.h"
#include "test.h"

#include <float.h>

static anneal_sampler *make(anneal_sampler_params p, int32_t n_vocab) {
    anneal_sampler *s = NULL;
    anneal_err err = {0};
    anneal_status st = anneal_sampler_new(&p, n_vocab, &s, &err);
    if (st) fprintf(stderr, "sampler_new: %s\n", anneal_err_msg(&err));
    CHECK_EQ(st, ANNEAL_OK);
    return s;
}

static int32_t sample1(anneal_sampler *s, const float *logits) {
    anneal_sample out;
    anneal_err err = {0};
    CHECK_EQ(anneal_sampler_sample(s, logits, &out, &err), ANNEAL_OK);
    return out.token;
}

static void random_logits(float *l, int32_t n, uint64_t *rs) {
    for (int32_t i = 0; i < n; i++) l[i] = (float)((double)(test_rand(rs) >> 11) * 0x1.0p-53 * 20.0 - 10.0);
}

// ---- greedy, top-k ---------------------------------------------------------------------

static void test_greedy_argmax_ties_low_id(void) {
    anneal_sampler_params p = anneal_sampler_params_default();
    p.temperature = 0;
    anneal_sampler *s = make(p, 4);
    float l[4] = {1, 5, 3, 5};
    CHECK_EQ(sample1(s, l), 1);
    // Penalties apply before the argmax: token 1 seen once, 5 / 2 = 2.5 < 5.
    anneal_sampler_free(s);
    p.repetition_penalty = 2.0f;
    s = make(p, 4);
    CHECK_EQ(anneal_sampler_accept(s, 1, NULL), ANNEAL_OK);
    CHECK_EQ(sample1(s, l), 3);
    anneal_sampler_free(s);
}

static void test_top_k1_equals_greedy(void) {
    anneal_sampler_params g = anneal_sampler_params_neutral();
    g.temperature = 0;
    anneal_sampler_params k1 = anneal_sampler_params_neutral();
    k1.top_k = 1;
    k1.seed = 99;
    anneal_sampler *sg = make(g, 1000), *sk = make(k1, 1000);
    static float l[1000];
    uint64_t rs = 7;
    for (int round = 0; round < 50; round++) {
        random_logits(l, 1000, &rs);
        int32_t a = sample1(sg, l), b = sample1(sk, l);
        CHECK_EQ(a, b);
        int32_t best = 0;
        for (int32_t i = 1; i < 1000; i++)
            if (l[i] > l[best]) best = i;
        CHECK_EQ(a, best);
    }
    anneal_sampler_free(sg);
    anneal_sampler_free(sk);
}

static int cmp_ref(const void *pa, const void *pb) {
    const float *a = pa, *b = pb; // {logit, id} pairs
    if (a[0] != b[0]) return a[0] > b[0] ? -1 : 1;
    return a[1] < b[1] ? -1 : a[1] > b[1];
}

static void test_top_k_set(void) {
    enum { V = 5000, K = 37 };
    anneal_sampler_params p = anneal_sampler_params_neutral();
    p.top_k = K;
    anneal_sampler *s = make(p, V);
    static float l[V], ref[V][2], vals[V];
    static int32_t ids[V];
    uint64_t rs = 11;
    for (int round = 0; round < 5; round++) {
        random_logits(l, V, &rs);
        for (int i = 0; i < 50; i++) l[i * 7] = 3.25f; // ties, decided by id
        for (int i = 0; i < V; i++) {
            ref[i][0] = l[i];
            ref[i][1] = (float)i;
        }
        qsort(ref, V, sizeof ref[0], cmp_ref);
        int32_t n = 0;
        CHECK_EQ(gen_candidates(s, l, ids, vals, &n, NULL), ANNEAL_OK);
        CHECK_EQ(n, K);
        static int in_set[V];
        memset(in_set, 0, sizeof in_set);
        for (int i = 0; i < n; i++) in_set[ids[i]] = 1;
        for (int i = 0; i < K; i++) CHECK(in_set[(int)ref[i][1]]);
    }
    anneal_sampler_free(s);
}

// ---- top-p, min-p ----------------------------------------------------------------------

// Probabilities 0.25, 0.1, 0.5, 0.15 for tokens 0..3: sorted 0.5 (2), 0.25 (0), 0.15 (3), 0.1 (1).
static const float P4[4] = {0.25f, 0.1f, 0.5f, 0.15f};

static void log4(float *l) {
    for (int i = 0; i < 4; i++) l[i] = logf(P4[i]);
}

static void test_top_p_minimal_prefix(void) {
    float l[4], vals[4];
    int32_t ids[4], n = 0;
    log4(l);
    struct {
        float p;
        int n;
        int32_t ids[4];
    } cases[] = {
        {0.4f, 1, {2}},          // 0.5 >= 0.4
        {0.5f, 1, {2}},          // 0.5 >= 0.5 (exact: weights 1, 0.5, 0.3, 0.2 of 2.0)
        {0.7f, 2, {2, 0}},       // 0.75 >= 0.7
        {0.8f, 3, {2, 0, 3}},    // 0.9 >= 0.8
        {0.95f, 4, {2, 0, 3, 1}},
        {1.0f, 4, {0, 1, 2, 3}}, // off: id order, untouched
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        anneal_sampler_params p = anneal_sampler_params_neutral();
        p.top_p = cases[c].p;
        anneal_sampler *s = make(p, 4);
        CHECK_EQ(gen_candidates(s, l, ids, vals, &n, NULL), ANNEAL_OK);
        CHECK_EQ(n, cases[c].n);
        for (int i = 0; i < n && i < cases[c].n; i++) CHECK_EQ(ids[i], cases[c].ids[i]);
        anneal_sampler_free(s);
    }
}

// Top-p over a large vocabulary exercises the chunked partial sort against a full sort.
static void test_top_p_large_matches_full_sort(void) {
    enum { V = 6000 };
    static float l[V], ref[V][2], vals[V];
    static int32_t ids[V];
    // Uniform logits: each weight is exactly 1, so top_p 0.5 keeps exactly 3000, by id.
    anneal_sampler_params p = anneal_sampler_params_neutral();
    p.top_p = 0.5f;
    anneal_sampler *s = make(p, V);
    for (int i = 0; i < V; i++) l[i] = 0;
    int32_t n = 0;
    CHECK_EQ(gen_candidates(s, l, ids, vals, &n, NULL), ANNEAL_OK);
    CHECK_EQ(n, 3000);
    for (int i = 0; i < n; i++)
        if (ids[i] != i) {
            CHECK_EQ(ids[i], i);
            break;
        }
    anneal_sampler_free(s);

    uint64_t rs = 5;
    float tps[] = {0.3f, 0.9f, 0.99f, 0.001f};
    for (int t = 0; t < 4; t++) {
        p.top_p = tps[t];
        s = make(p, V);
        for (int i = 0; i < V; i++) l[i] = (float)((double)(test_rand(&rs) >> 11) * 0x1.0p-53 * 4.0);
        for (int i = 0; i < V; i++) {
            ref[i][0] = l[i];
            ref[i][1] = (float)i;
        }
        qsort(ref, V, sizeof ref[0], cmp_ref);
        double mx = ref[0][0], total = 0, cum = 0;
        for (int i = 0; i < V; i++) total += exp((double)ref[i][0] - mx);
        int want = V;
        for (int i = 0; i < V; i++) {
            cum += exp((double)ref[i][0] - mx);
            if (cum >= tps[t] * total) {
                want = i + 1;
                break;
            }
        }
        CHECK_EQ(gen_candidates(s, l, ids, vals, &n, NULL), ANNEAL_OK);
        CHECK_EQ(n, want);
        // The kept set is the sorted prefix (the histogram leaves it partly unsorted).
        static int in_set[V];
        memset(in_set, 0, sizeof in_set);
        for (int i = 0; i < n; i++) in_set[ids[i]] = 1;
        int missing = 0;
        for (int i = 0; i < want; i++) missing += !in_set[(int)ref[i][1]];
        CHECK_EQ(missing, 0);
        anneal_sampler_free(s);
    }
}

static void test_min_p(void) {
    float l[4], vals[4];
    int32_t ids[4], n = 0;
    log4(l);
    struct {
        float m;
        int n;
        int32_t ids[4];
    } cases[] = {
        {0.25f, 3, {0, 2, 3}}, // keep p >= 0.125: drops 0.1
        {0.4f, 2, {0, 2}},     // keep p >= 0.2
        {0.9f, 1, {2}},        // only the max
        {0.1f, 4, {0, 1, 2, 3}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        anneal_sampler_params p = anneal_sampler_params_neutral();
        p.min_p = cases[c].m;
        anneal_sampler *s = make(p, 4);
        CHECK_EQ(gen_candidates(s, l, ids, vals, &n, NULL), ANNEAL_OK);
        CHECK_EQ(n, cases[c].n);
        for (int i = 0; i < n && i < cases[c].n; i++) CHECK_EQ(ids[i], cases[c].ids[i]);
        anneal_sampler_free(s);
    }
}

// ---- penalties -------------------------------------------------------------------------

static void test_penalties_exact(void) {
    anneal_sampler_params p = anneal_sampler_params_neutral();
    p.repetition_penalty = 2.0f;
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    p.penalty_last_n = -1;
    anneal_sampler *s = make(p, 5);
    int32_t hist[] = {0, 0, 1, 4};
    for (int i = 0; i < 4; i++) CHECK_EQ(anneal_sampler_accept(s, hist[i], NULL), ANNEAL_OK);
    float l[5] = {2.0f, -1.5f, 3.0f, 0.5f, 0.0f};
    gen_apply_penalties(s, l);
    // token 0: 2/2 - (2*0.5 + 0.25); token 1: -1.5*2 - (0.5 + 0.25); token 4: 0 - 0.75.
    CHECK(l[0] == -0.25f);
    CHECK(l[1] == -3.75f);
    CHECK(l[2] == 3.0f);
    CHECK(l[3] == 0.5f);
    CHECK(l[4] == -0.75f);
    // Reset forgets the history.
    anneal_sampler_reset(s);
    float l2[5] = {2.0f, -1.5f, 3.0f, 0.5f, 0.0f};
    gen_apply_penalties(s, l2);
    CHECK(l2[0] == 2.0f && l2[1] == -1.5f && l2[4] == 0.0f);
    // Penalized logits are what gen_candidates returns (neutral filters keep id order).
    CHECK_EQ(anneal_sampler_accept(s, 2, NULL), ANNEAL_OK);
    float vals[5];
    int32_t ids[5], n = 0;
    float l3[5] = {2.0f, -1.5f, 3.0f, 0.5f, 0.0f};
    CHECK_EQ(gen_candidates(s, l3, ids, vals, &n, NULL), ANNEAL_OK);
    CHECK_EQ(n, 5);
    CHECK(vals[2] == 3.0f / 2.0f - 0.75f);
    CHECK(l3[2] == 3.0f); // input untouched
    anneal_sampler_free(s);
}

static void test_penalty_window(void) {
    anneal_sampler_params p = anneal_sampler_params_neutral();
    p.repetition_penalty = 2.0f;
    p.penalty_last_n = 2;
    anneal_sampler *s = make(p, 3);
    CHECK_EQ(anneal_sampler_accept(s, 0, NULL), ANNEAL_OK);
    CHECK_EQ(anneal_sampler_accept(s, 0, NULL), ANNEAL_OK);
    CHECK_EQ(anneal_sampler_accept(s, 1, NULL), ANNEAL_OK); // window: 0, 1
    float l[3] = {4, 4, 4};
    gen_apply_penalties(s, l);
    CHECK(l[0] == 2 && l[1] == 2 && l[2] == 4);
    CHECK_EQ(anneal_sampler_accept(s, 1, NULL), ANNEAL_OK); // window: 1, 1
    float m[3] = {4, 4, 4};
    gen_apply_penalties(s, m);
    CHECK(m[0] == 4 && m[1] == 2 && m[2] == 4);
    anneal_sampler_free(s);

    p.penalty_last_n = 0; // history ignored
    s = make(p, 3);
    CHECK_EQ(anneal_sampler_accept(s, 0, NULL), ANNEAL_OK);
    float z[3] = {4, 4, 4};
    gen_apply_penalties(s, z);
    CHECK(z[0] == 4);
    anneal_err err = {0};
    CHECK_EQ(anneal_sampler_accept(s, 3, &err), ANNEAL_ERR_RANGE);
    CHECK_CONTAINS(err.msg, "token 3");
    anneal_sampler_free(s);
}

// ---- seeded draws ----------------------------------------------------------------------

static void draw_seq(uint64_t seed, int32_t *out, int n) {
    anneal_sampler_params p = anneal_sampler_params_neutral();
    p.seed = seed;
    anneal_sampler *s = make(p, 64);
    float l[64];
    for (int i = 0; i < 64; i++) l[i] = (float)(i % 7) * 0.25f;
    for (int i = 0; i < n; i++) out[i] = sample1(s, l);
    anneal_sampler_free(s);
}

static void test_seed_reproducible(void) {
    int32_t a[40], b[40], c[40];
    draw_seq(42, a, 40);
    draw_seq(42, b, 40);
    draw_seq(43, c, 40);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
    // Pinned: the same seed and logits give these tokens on every machine and compiler.
    static const int32_t golden[10] = {6, 25, 44, 60, 62, 48, 46, 54, 48, 38};
    for (int i = 0; i < 10; i++) CHECK_EQ(a[i], golden[i]);
    // Reset restarts the stream.
    anneal_sampler_params p = anneal_sampler_params_neutral();
    p.seed = 42;
    anneal_sampler *s = make(p, 64);
    float l[64];
    for (int i = 0; i < 64; i++) l[i] = (float)(i % 7) * 0.25f;
    for (int i = 0; i < 5; i++) sample1(s, l);
    anneal_sampler_reset(s);
    for (int i = 0; i < 10; i++) CHECK_EQ(sample1(s, l), a[i]);
    anneal_sampler_free(s);
}

// Pearson chi-square of `draws` samples against probabilities q[4]; 3 degrees of freedom.
static double chi2_4(anneal_sampler *s, const float *l, const double *q, int draws) {
    int cnt[4] = {0};
    for (int i = 0; i < draws; i++) {
        int32_t t = sample1(s, l);
        if (t >= 0 && t < 4) cnt[t]++;
    }
    double x = 0;
    for (int i = 0; i < 4; i++) {
        double e = q[i] * draws;
        x += (cnt[i] - e) * (cnt[i] - e) / e;
    }
    return x;
}

static void test_distribution_chi_square(void) {
    // 16.27 is the 0.999 quantile of chi-square with 3 degrees of freedom; the seeds are
    // fixed, so the statistic is one number and the test cannot flake.
    float l[4] = {logf(0.1f), logf(0.2f), logf(0.3f), logf(0.4f)};
    anneal_sampler_params p = anneal_sampler_params_neutral();
    p.seed = 1234;
    anneal_sampler *s = make(p, 4);
    double q1[4] = {0.1, 0.2, 0.3, 0.4};
    double x = chi2_4(s, l, q1, 20000);
    fprintf(stderr, "  chi2 (T=1) = %.3f\n", x);
    CHECK(x < 16.27);
    anneal_sampler_free(s);
    // Temperature 2: p ~ q^(1/2).
    p.temperature = 2.0f;
    s = make(p, 4);
    double q2[4], z = 0;
    for (int i = 0; i < 4; i++) z += (q2[i] = sqrt(q1[i]));
    for (int i = 0; i < 4; i++) q2[i] /= z;
    x = chi2_4(s, l, q2, 20000);
    fprintf(stderr, "  chi2 (T=2) = %.3f\n", x);
    CHECK(x < 16.27);
    // The T=1 counts would not fit the T=2 distribution: the test can tell them apart.
    anneal_sampler_free(s);
    p.temperature = 1.0f;
    s = make(p, 4);
    CHECK(chi2_4(s, l, q2, 20000) > 100);
    anneal_sampler_free(s);
}

// ---- logprobs --------------------------------------------------------------------------

static void test_logprobs(void) {
    enum { V = 300 };
    static float l[V];
    uint64_t rs = 3;
    random_logits(l, V, &rs);
    anneal_sampler_params p = anneal_sampler_params_default();
    p.logprobs = true;
    p.n_logprobs = 20;
    p.repetition_penalty = 1.5f; // logprobs are raw: penalties must not show in them
    p.seed = 8;
    anneal_sampler *s = make(p, V);
    double mx = -1e30, sum = 0;
    for (int i = 0; i < V; i++) mx = l[i] > mx ? l[i] : mx;
    for (int i = 0; i < V; i++) sum += exp((double)l[i] - mx);
    double lse = mx + log(sum);
    for (int round = 0; round < 20; round++) {
        anneal_sample out;
        CHECK_EQ(anneal_sampler_sample(s, l, &out, NULL), ANNEAL_OK);
        CHECK_NEAR(out.logprob, (double)l[out.token] - lse, 1e-5);
        CHECK_EQ(out.n_top, 20);
        double mass = 0;
        for (int i = 0; i < out.n_top; i++) {
            mass += exp(out.top[i].logprob);
            CHECK_NEAR(out.top[i].logprob, (double)l[out.top[i].token] - lse, 1e-5);
            if (i > 0) CHECK(out.top[i].logprob <= out.top[i - 1].logprob);
        }
        CHECK(mass <= 1.0 + 1e-6);
        // The top entry is the argmax.
        int32_t best = 0;
        for (int i = 1; i < V; i++)
            if (l[i] > l[best]) best = i;
        CHECK_EQ(out.top[0].token, best);
        CHECK_EQ(anneal_sampler_accept(s, out.token, NULL), ANNEAL_OK);
    }
    anneal_sampler_free(s);

    // All four tokens reported: the mass is 1.
    float l4[4];
    log4(l4);
    p = anneal_sampler_params_neutral();
    p.logprobs = true;
    p.n_logprobs = 4;
    s = make(p, 4);
    anneal_sample out;
    CHECK_EQ(anneal_sampler_sample(s, l4, &out, NULL), ANNEAL_OK);
    double mass = 0;
    for (int i = 0; i < 4; i++) mass += exp(out.top[i].logprob);
    CHECK_NEAR(mass, 1.0, 1e-6);
    CHECK_EQ(out.top[0].token, 2);
    CHECK_EQ(out.top[1].token, 0);
    CHECK_EQ(out.top[2].token, 3);
    CHECK_EQ(out.top[3].token, 1);
    CHECK_NEAR(out.top[0].logprob, log(0.5), 1e-6);
    anneal_sampler_free(s);
    // Not asked for: no logprobs, and no vocabulary-wide pass to compute them.
    s = make(anneal_sampler_params_neutral(), 4);
    CHECK_EQ(anneal_sampler_sample(s, l4, &out, NULL), ANNEAL_OK);
    CHECK(isnan(out.logprob));
    CHECK_EQ(out.n_top, 0);
    anneal_sampler_free(s);
}

// ---- non-finite logits -----------------------------------------------------------------

static void test_nonfinite_logits(void) {
    anneal_sampler_params p = anneal_sampler_params_neutral();
    p.logprobs = true;
    p.n_logprobs = 2;
    anneal_sampler *s = make(p, 4);
    float l[4] = {NAN, 1.0f, NAN, 0.0f};
    for (int i = 0; i < 200; i++) {
        anneal_sample out;
        CHECK_EQ(anneal_sampler_sample(s, l, &out, NULL), ANNEAL_OK);
        CHECK(out.token == 1 || out.token == 3);
        CHECK(isfinite(out.logprob));
    }
    // One +inf logit takes all the mass; two share it.
    float inf1[4] = {0.0f, INFINITY, 5.0f, -INFINITY};
    anneal_sample out;
    CHECK_EQ(anneal_sampler_sample(s, inf1, &out, NULL), ANNEAL_OK);
    CHECK_EQ(out.token, 1);
    CHECK_NEAR(out.logprob, 0.0, 1e-7);
    float inf2[4] = {INFINITY, 0.0f, INFINITY, NAN};
    int seen[4] = {0};
    for (int i = 0; i < 200; i++) {
        CHECK_EQ(anneal_sampler_sample(s, inf2, &out, NULL), ANNEAL_OK);
        seen[out.token]++;
        CHECK_NEAR(out.logprob, -log(2.0), 1e-6);
    }
    CHECK(seen[0] > 0 && seen[2] > 0 && seen[1] == 0 && seen[3] == 0);
    // Nothing finite: a status, not a crash.
    float bad[4] = {NAN, -INFINITY, NAN, -INFINITY};
    anneal_err err = {0};
    CHECK_EQ(anneal_sampler_sample(s, bad, &out, &err), ANNEAL_ERR_RANGE);
    CHECK_CONTAINS(err.msg, "NaN or -inf");
    anneal_sampler_free(s);
    // Greedy with +inf and a penalty below 1 (which would push FLT_MAX to +inf) still works.
    p.temperature = 0;
    p.repetition_penalty = 0.5f;
    s = make(p, 4);
    CHECK_EQ(anneal_sampler_accept(s, 2, NULL), ANNEAL_OK);
    CHECK_EQ(sample1(s, inf2), 0);
    p.temperature = 0.7f;
    anneal_sampler_free(s);
    s = make(p, 4);
    CHECK_EQ(anneal_sampler_accept(s, 2, NULL), ANNEAL_OK);
    for (int i = 0; i < 50; i++) {
        int32_t t = sample1(s, inf2);
        CHECK(t == 0 || t == 2);
    }
    anneal_sampler_free(s);
    // A denormal temperature (1 / T = inf) behaves as a very cold, valid distribution.
    p = anneal_sampler_params_neutral();
    p.temperature = 1e-40f;
    s = make(p, 4);
    float l4[4] = {0.5f, 2.0f, 1.0f, -3.0f};
    for (int i = 0; i < 20; i++) CHECK_EQ(sample1(s, l4), 1);
    anneal_sampler_free(s);
}

// ---- parameter validation --------------------------------------------------------------

static void expect_invalid(anneal_sampler_params p, const char *field, const char *range) {
    anneal_err err = {0};
    anneal_sampler *s = NULL;
    CHECK_EQ(anneal_sampler_new(&p, 10, &s, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK(s == NULL);
    CHECK_CONTAINS(err.msg, field);
    CHECK_CONTAINS(err.msg, range);
}

static void test_invalid_params(void) {
    anneal_sampler_params d = anneal_sampler_params_default(), p;
    CHECK_EQ(anneal_sampler_params_validate(&d, NULL), ANNEAL_OK);
    p = d, p.temperature = -0.1f, expect_invalid(p, "temperature", "[0, 100]");
    p = d, p.temperature = NAN, expect_invalid(p, "temperature = nan", "[0, 100]");
    p = d, p.temperature = INFINITY, expect_invalid(p, "temperature", "[0, 100]");
    p = d, p.top_p = 0, expect_invalid(p, "top_p = 0", "(0, 1]");
    p = d, p.top_p = 1.5f, expect_invalid(p, "top_p", "(0, 1]");
    p = d, p.min_p = NAN, expect_invalid(p, "min_p", "[0, 1]");
    p = d, p.min_p = -0.5f, expect_invalid(p, "min_p", "[0, 1]");
    p = d, p.top_k = -1, expect_invalid(p, "top_k = -1", ">= 0");
    p = d, p.repetition_penalty = 0, expect_invalid(p, "repetition_penalty", "(0, 10]");
    p = d, p.frequency_penalty = 2.5f, expect_invalid(p, "frequency_penalty", "[-2, 2]");
    p = d, p.presence_penalty = -3, expect_invalid(p, "presence_penalty", "[-2, 2]");
    p = d, p.penalty_last_n = -2, expect_invalid(p, "penalty_last_n", "[-1, 1048576]");
    p = d, p.logprobs = true, p.n_logprobs = 21, expect_invalid(p, "n_logprobs = 21", "[0, 20]");
    p = d, p.n_logprobs = 3, expect_invalid(p, "n_logprobs = 3", "needs logprobs = true");
    anneal_err err = {0};
    anneal_sampler *s = NULL;
    CHECK_EQ(anneal_sampler_new(&d, 0, &s, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(err.msg, "n_vocab");
    // top_k beyond the vocabulary is simply off.
    p = anneal_sampler_params_neutral();
    p.top_k = 1000;
    s = make(p, 4);
    float l[4], vals[4];
    int32_t ids[4], n = 0;
    log4(l);
    CHECK_EQ(gen_candidates(s, l, ids, vals, &n, NULL), ANNEAL_OK);
    CHECK_EQ(n, 4);
    anneal_sampler_free(s);
}

// ---- stop strings ----------------------------------------------------------------------

static anneal_stop *mkstop(const char *const *stops, size_t n, int64_t max_tokens) {
    anneal_stop *m = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_stop_new(stops, n, max_tokens, &m, &err), ANNEAL_OK);
    return m;
}

// Feeds one piece; checks the emitted bytes and the finish reason.
#define FEED(m, piece, want, fin)                                                               \
    do {                                                                                        \
        anneal_stop_result r_;                                                                  \
        CHECK_EQ(anneal_stop_feed(m, piece, strlen(piece), &r_, NULL), ANNEAL_OK);              \
        char got_[512];                                                                         \
        snprintf(got_, sizeof got_, "%.*s", (int)r_.emit_len, r_.emit);                         \
        CHECK_STR(got_, want);                                                                  \
        CHECK_EQ(r_.finish, fin);                                                               \
    } while (0)

static void test_stop_holdback(void) {
    const char *st[] = {"###"};
    anneal_stop *m = mkstop(st, 1, 0);
    FEED(m, "Hello", "Hello", ANNEAL_FINISH_NONE);
    FEED(m, " #", " ", ANNEAL_FINISH_NONE);
    FEED(m, "#", "", ANNEAL_FINISH_NONE);
    FEED(m, "x", "##x", ANNEAL_FINISH_NONE); // not a stop after all: released
    FEED(m, "##", "", ANNEAL_FINISH_NONE);
    FEED(m, "#end", "", ANNEAL_FINISH_STOP);
    anneal_stop_result r;
    anneal_err err = {0};
    CHECK_EQ(anneal_stop_feed(m, "more", 4, &r, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(err.msg, "after generation finished");
    CHECK_EQ(anneal_stop_end(m, &r, NULL), ANNEAL_OK);
    CHECK_EQ(r.emit_len, 0);
    CHECK_EQ(r.finish, ANNEAL_FINISH_STOP);
    CHECK_EQ(r.stop_index, 0);
    CHECK_EQ(r.n_tokens, 6);
    // Reset: a fresh request.
    anneal_stop_reset(m);
    FEED(m, "a#", "a", ANNEAL_FINISH_NONE);
    CHECK_EQ(anneal_stop_end(m, &r, NULL), ANNEAL_OK);
    CHECK_EQ(r.emit_len, 1);
    CHECK(r.emit[0] == '#');
    CHECK_EQ(r.finish, ANNEAL_FINISH_END);
    anneal_stop_free(m);
}

static void test_stop_spanning_and_overlap(void) {
    const char *s1[] = {"</s>"};
    anneal_stop *m = mkstop(s1, 1, 0);
    FEED(m, "abc<", "abc", ANNEAL_FINISH_NONE);
    FEED(m, "/", "", ANNEAL_FINISH_NONE);
    FEED(m, "s", "", ANNEAL_FINISH_NONE);
    FEED(m, ">tail", "", ANNEAL_FINISH_STOP);
    anneal_stop_free(m);

    // Two candidates in flight; the one that completes first wins.
    const char *s2[] = {"abcd", "bce"};
    m = mkstop(s2, 2, 0);
    FEED(m, "ab", "", ANNEAL_FINISH_NONE);
    FEED(m, "c", "", ANNEAL_FINISH_NONE);
    anneal_stop_result r;
    CHECK_EQ(anneal_stop_feed(m, "e", 1, &r, NULL), ANNEAL_OK);
    CHECK_EQ(r.finish, ANNEAL_FINISH_STOP);
    CHECK_EQ(r.stop_index, 1);
    CHECK_EQ(r.emit_len, 1);
    CHECK(r.emit[0] == 'a');
    anneal_stop_free(m);

    // Self-overlapping stop: "aaab" must still match "aab" (KMP fallback, not a restart).
    const char *s3[] = {"aab"};
    m = mkstop(s3, 1, 0);
    FEED(m, "a", "", ANNEAL_FINISH_NONE);
    FEED(m, "a", "", ANNEAL_FINISH_NONE);
    FEED(m, "a", "a", ANNEAL_FINISH_NONE);
    FEED(m, "b", "", ANNEAL_FINISH_STOP);
    anneal_stop_free(m);

    // Completed by the same byte: the longer (earlier-starting) stop wins.
    const char *s4[] = {"b", "ab"};
    m = mkstop(s4, 2, 0);
    CHECK_EQ(anneal_stop_feed(m, "xab", 3, &r, NULL), ANNEAL_OK);
    CHECK_EQ(r.stop_index, 1);
    CHECK_EQ(r.emit_len, 1);
    anneal_stop_free(m);

    // Earliest end wins even when another stop started earlier.
    const char *s5[] = {"abcd", "bc"};
    m = mkstop(s5, 2, 0);
    CHECK_EQ(anneal_stop_feed(m, "zabcd", 5, &r, NULL), ANNEAL_OK);
    CHECK_EQ(r.stop_index, 1);
    CHECK_EQ(r.emit_len, 2);
    anneal_stop_free(m);
}

// Emits of any split of a text concatenate to the emits of the whole text at once.
static void test_stop_split_invariance(void) {
    const char *stops[] = {"abca", "cc", "bab", "aaaa"};
    char text[300];
    uint64_t rs = 77;
    for (int round = 0; round < 100; round++) {
        size_t n = 50 + test_rand(&rs) % 200;
        for (size_t i = 0; i < n; i++) text[i] = "abc"[test_rand(&rs) % 3];
        // Reference: the earliest end over all stops, longest first on ties.
        long best_end = -1, best_len = 0;
        int best_idx = -1;
        for (int j = 0; j < 4; j++) {
            size_t L = strlen(stops[j]);
            for (size_t e = L; e <= n; e++)
                if (memcmp(text + e - L, stops[j], L) == 0) {
                    if (best_end < 0 || (long)e < best_end ||
                        ((long)e == best_end && (long)L > best_len)) {
                        best_end = (long)e;
                        best_len = (long)L;
                        best_idx = j;
                    }
                    break;
                }
        }
        anneal_stop *m = mkstop(stops, 4, 0);
        char out[300];
        size_t outn = 0, pos = 0;
        anneal_stop_result r = {0};
        while (pos < n && r.finish == ANNEAL_FINISH_NONE) {
            size_t k = 1 + test_rand(&rs) % 6;
            if (k > n - pos) k = n - pos;
            CHECK_EQ(anneal_stop_feed(m, text + pos, k, &r, NULL), ANNEAL_OK);
            memcpy(out + outn, r.emit, r.emit_len);
            outn += r.emit_len;
            pos += k;
        }
        if (r.finish == ANNEAL_FINISH_NONE) {
            CHECK_EQ(anneal_stop_end(m, &r, NULL), ANNEAL_OK);
            memcpy(out + outn, r.emit, r.emit_len);
            outn += r.emit_len;
        }
        if (best_idx < 0) {
            CHECK_EQ(r.finish, ANNEAL_FINISH_END);
            CHECK_EQ(outn, n);
            CHECK(memcmp(out, text, n) == 0);
        } else {
            CHECK_EQ(r.finish, ANNEAL_FINISH_STOP);
            CHECK_EQ(r.stop_index, best_idx);
            CHECK_EQ(outn, best_end - best_len);
            CHECK(memcmp(out, text, outn) == 0);
        }
        anneal_stop_free(m);
    }
}

static void test_stop_max_tokens_utf8_limits(void) {
    const char *zz[] = {"zz"};
    anneal_stop *m = mkstop(zz, 1, 3);
    FEED(m, "a", "a", ANNEAL_FINISH_NONE);
    FEED(m, "z", "", ANNEAL_FINISH_NONE);
    FEED(m, "b", "zb", ANNEAL_FINISH_LENGTH); // the held "z" is released at the limit
    anneal_stop_free(m);
    m = mkstop(zz, 1, 2);
    FEED(m, "z", "", ANNEAL_FINISH_NONE);
    FEED(m, "z!", "", ANNEAL_FINISH_STOP); // a stop on the last allowed token wins
    anneal_stop_free(m);

    // UTF-8: an incomplete sequence is held until it completes or generation ends.
    m = mkstop(NULL, 0, 0);
    FEED(m, "h\xC3", "h", ANNEAL_FINISH_NONE);
    FEED(m, "\xA9!", "\xC3\xA9!", ANNEAL_FINISH_NONE);
    FEED(m, "\xE2\x82", "", ANNEAL_FINISH_NONE);
    FEED(m, "\xAC", "\xE2\x82\xAC", ANNEAL_FINISH_NONE);
    FEED(m, "\xF0\x9F", "", ANNEAL_FINISH_NONE);
    anneal_stop_result r;
    CHECK_EQ(anneal_stop_end(m, &r, NULL), ANNEAL_OK);
    CHECK_EQ(r.emit_len, 2);
    CHECK_EQ(r.finish, ANNEAL_FINISH_END);
    anneal_stop_free(m);
    m = mkstop(NULL, 0, 0);
    FEED(m, "\xFF", "\xFF", ANNEAL_FINISH_NONE); // invalid, not incomplete: passed on
    // A piece longer than the buffer grows it once.
    static char big[5000];
    memset(big, 'q', sizeof big);
    anneal_stop_result rb;
    CHECK_EQ(anneal_stop_feed(m, big, sizeof big, &rb, NULL), ANNEAL_OK);
    CHECK_EQ(rb.emit_len, sizeof big);
    CHECK(memcmp(rb.emit, big, sizeof big) == 0);
    anneal_stop_free(m);

    anneal_err err = {0};
    const char *bad[] = {"ok", ""};
    CHECK_EQ(anneal_stop_new(bad, 2, 0, &m, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(err.msg, "stop[1] is empty");
    static char longs[ANNEAL_STOP_MAX_LEN + 2];
    memset(longs, 'x', ANNEAL_STOP_MAX_LEN + 1);
    const char *lg[] = {longs};
    anneal_err_clear(&err);
    CHECK_EQ(anneal_stop_new(lg, 1, 0, &m, &err), ANNEAL_ERR_LIMIT);
    CHECK_CONTAINS(err.msg, "stop[0]");
    anneal_err_clear(&err);
    CHECK_EQ(anneal_stop_new(bad, 1, -5, &m, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(err.msg, "max_tokens = -5");
    anneal_err_clear(&err);
    CHECK_EQ(anneal_stop_new(bad, ANNEAL_STOP_MAX_STRINGS + 1, 0, &m, &err), ANNEAL_ERR_LIMIT);
}

int main(void) {
    RUN(test_greedy_argmax_ties_low_id);
    RUN(test_top_k1_equals_greedy);
    RUN(test_top_k_set);
    RUN(test_top_p_minimal_prefix);
    RUN(test_top_p_large_matches_full_sort);
    RUN(test_min_p);
    RUN(test_penalties_exact);
    RUN(test_penalty_window);
    RUN(test_seed_reproducible);
    RUN(test_distribution_chi_square);
    RUN(test_logprobs);
    RUN(test_nonfinite_logits);
    RUN(test_invalid_params);
    RUN(test_stop_holdback);
    RUN(test_stop_spanning_and_overlap);
    RUN(test_stop_split_invariance);
    RUN(test_stop_max_tokens_utf8_limits);
    return TEST_EXIT();
}
