// Token sampler: penalties -> top-k -> top-p -> min-p -> temperature -> softmax -> draw,
// with a seeded xoshiro256** stream, raw-distribution logprobs and no per-token allocation.
#include "anneal/generate.h"
#include "generate/gen_internal.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// No fused multiply-add contraction, so every platform rounds the same way (GCC already
// keeps contraction off in ISO C mode and does not know this pragma).
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

// Top-p histogram resolution: buckets of equal width in logit space below the max.
#define TOP_P_BUCKETS 1024

// One candidate: kept together so selection moves 8 bytes, not two parallel arrays.
typedef struct cand {
    float logit;
    int32_t id;
} cand;

struct anneal_sampler {
    anneal_sampler_params p;
    int32_t n_vocab;
    uint64_t rng[4];      // xoshiro256** state
    cand *c;              // [n_vocab] working candidates
    double *w;            // [n_vocab] unnormalized probabilities during the draw
    uint16_t *bk;         // [n_vocab] top-p histogram bucket of each candidate
    double bucket_mass[TOP_P_BUCKETS];
    uint32_t *count;      // [n_vocab] occurrences of each token in the penalty window
    int32_t *present;     // [n_vocab] distinct tokens with count > 0, in no order
    int32_t *present_pos; // [n_vocab] index of a token in `present`, or -1
    int32_t n_present;
    int32_t *ring;        // [penalty_last_n] the window, when penalty_last_n > 0
    int32_t ring_len, ring_head;
};

// ---- parameters -------------------------------------------------------------------------

anneal_sampler_params anneal_sampler_params_default(void) {
    anneal_sampler_params p = {
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repetition_penalty = 1.0f,
        .frequency_penalty = 0.0f,
        .presence_penalty = 0.0f,
        .penalty_last_n = 64,
        .seed = 0,
        .logprobs = false,
        .n_logprobs = 0,
    };
    return p;
}

anneal_sampler_params anneal_sampler_params_neutral(void) {
    anneal_sampler_params p = anneal_sampler_params_default();
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    return p;
}

// lo_open / hi_open say whether each end of [lo, hi] is excluded.
static anneal_status check_float(const char *name, float v, float lo, bool lo_open, float hi,
                                 bool hi_open, anneal_err *err) {
    bool ok = !isnan(v) && (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
    if (ok) return ANNEAL_OK;
    return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "sampler: %s = %g is outside %c%g, %g%c",
                          name, (double)v, lo_open ? '(' : '[', (double)lo, (double)hi,
                          hi_open ? ')' : ']');
}

anneal_status anneal_sampler_params_validate(const anneal_sampler_params *p, anneal_err *err) {
    if (!p) return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "sampler: params is NULL");
    anneal_status st;
    if ((st = check_float("temperature", p->temperature, 0, false, 100, false, err))) return st;
    if (p->top_k < 0)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "sampler: top_k = %d is negative; allowed >= 0 (0 = off)",
                              (int)p->top_k);
    if ((st = check_float("top_p", p->top_p, 0, true, 1, false, err))) return st;
    if ((st = check_float("min_p", p->min_p, 0, false, 1, false, err))) return st;
    if ((st = check_float("repetition_penalty", p->repetition_penalty, 0, true, 10, false, err)))
        return st;
    if ((st = check_float("frequency_penalty", p->frequency_penalty, -2, false, 2, false, err)))
        return st;
    if ((st = check_float("presence_penalty", p->presence_penalty, -2, false, 2, false, err)))
        return st;
    if (p->penalty_last_n < -1 || p->penalty_last_n > ANNEAL_SAMPLER_MAX_LAST_N)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "sampler: penalty_last_n = %d is outside [-1, %d] (-1 = all)",
                              (int)p->penalty_last_n, ANNEAL_SAMPLER_MAX_LAST_N);
    if (p->n_logprobs < 0 || p->n_logprobs > ANNEAL_SAMPLER_MAX_LOGPROBS)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "sampler: n_logprobs = %d is outside [0, %d]", (int)p->n_logprobs,
                              ANNEAL_SAMPLER_MAX_LOGPROBS);
    if (p->n_logprobs > 0 && !p->logprobs)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "sampler: n_logprobs = %d needs logprobs = true", (int)p->n_logprobs);
    return ANNEAL_OK;
}

// ---- PRNG: splitmix64 seeds xoshiro256** (both public-domain algorithms) -------------------

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4]) {
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static void seed_rng(anneal_sampler *s) {
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
}

double gen_uniform(anneal_sampler *s) {
    // The top 53 bits give every double in [0, 1) on a 2^-53 grid, the same on every machine.
    return (double)(xoshiro_next(s->rng) >> 11) * 0x1.0p-53;
}

// ---- exp ------------------------------------------------------------------------------

// e^x for x <= 0 (and -inf), in plain float arithmetic: Cody-Waite reduction to
// r in [-ln2/2, ln2/2] and a degree-6 Taylor polynomial (relative error < 2e-7).
// Ours rather than libm's so that the draw gives the same tokens with every C library,
// and branch-free so the vocabulary-wide loops vectorize.
static inline float exp_neg(float x) {
    float xc = x < -87.0f ? -87.0f : x;
    // Round x*log2(e) to nearest with the 1.5 * 2^23 trick (no rint: keeps loops vectorizable).
    float k = (xc * 1.44269504f + 12582912.0f) - 12582912.0f;
    float r = xc - k * 0.693145752f; // ln2 split in a high part exact in float
    r = r - k * 1.42860677e-6f;      // and the low remainder
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t e = (int32_t)k + 127; // k in [-126, 0]: a normal power of two
    uint32_t bits = (uint32_t)e << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < -87.0f ? 0.0f : p * scale;
}

// ---- lifetime and history -------------------------------------------------------------------

anneal_status anneal_sampler_new(const anneal_sampler_params *params, int32_t n_vocab,
                                 anneal_sampler **out, anneal_err *err) {
    if (!out) return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "sampler: out is NULL");
    *out = NULL;
    anneal_status st = anneal_sampler_params_validate(params, err);
    if (st) return st;
    if (n_vocab < 1)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "sampler: n_vocab = %d, must be >= 1",
                              (int)n_vocab);
    anneal_sampler *s = anneal_calloc(1, sizeof *s);
    if (!s) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "sampler: out of memory");
    s->p = *params;
    s->n_vocab = n_vocab;
    size_t n = (size_t)n_vocab;
    s->c = anneal_calloc(n, sizeof *s->c);
    s->w = anneal_calloc(n, sizeof *s->w);
    s->bk = anneal_calloc(n, sizeof *s->bk);
    s->count = anneal_calloc(n, sizeof *s->count);
    s->present = anneal_calloc(n, sizeof *s->present);
    s->present_pos = anneal_calloc(n, sizeof *s->present_pos);
    if (params->penalty_last_n > 0)
        s->ring = anneal_calloc((size_t)params->penalty_last_n, sizeof *s->ring);
    if (!s->c || !s->w || !s->bk || !s->count || !s->present || !s->present_pos ||
        (params->penalty_last_n > 0 && !s->ring)) {
        anneal_sampler_free(s);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM,
                              "sampler: out of memory for n_vocab = %d", (int)n_vocab);
    }
    for (size_t i = 0; i < n; i++) s->present_pos[i] = -1;
    seed_rng(s);
    *out = s;
    return ANNEAL_OK;
}

void anneal_sampler_free(anneal_sampler *s) {
    if (!s) return;
    anneal_free(s->c);
    anneal_free(s->w);
    anneal_free(s->bk);
    anneal_free(s->count);
    anneal_free(s->present);
    anneal_free(s->present_pos);
    anneal_free(s->ring);
    anneal_free(s);
}

const anneal_sampler_params *anneal_sampler_params_of(const anneal_sampler *s) {
    return s ? &s->p : NULL;
}

void anneal_sampler_reset(anneal_sampler *s) {
    if (!s) return;
    for (int32_t i = 0; i < s->n_present; i++) {
        int32_t t = s->present[i];
        s->count[t] = 0;
        s->present_pos[t] = -1;
    }
    s->n_present = 0;
    s->ring_len = 0;
    s->ring_head = 0;
    seed_rng(s);
}

static void count_add(anneal_sampler *s, int32_t t) {
    if (s->count[t]++ == 0) {
        s->present_pos[t] = s->n_present;
        s->present[s->n_present++] = t;
    }
}

static void count_remove(anneal_sampler *s, int32_t t) {
    if (--s->count[t] == 0) {
        // Swap-remove keeps `present` dense, so penalties cost O(distinct tokens).
        int32_t at = s->present_pos[t];
        int32_t last = s->present[--s->n_present];
        s->present[at] = last;
        s->present_pos[last] = at;
        s->present_pos[t] = -1;
    }
}

anneal_status anneal_sampler_accept(anneal_sampler *s, int32_t token, anneal_err *err) {
    if (!s) return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "sampler: NULL sampler");
    if (token < 0 || token >= s->n_vocab)
        return anneal_err_set(err, ANNEAL_ERR_RANGE,
                              "sampler: accepted token %d is outside [0, %d)", (int)token,
                              (int)s->n_vocab);
    int32_t last_n = s->p.penalty_last_n;
    if (last_n == 0) return ANNEAL_OK;
    if (last_n > 0) {
        if (s->ring_len == last_n)
            count_remove(s, s->ring[s->ring_head]);
        else
            s->ring_len++;
        s->ring[s->ring_head] = token;
        s->ring_head = s->ring_head + 1 == last_n ? 0 : s->ring_head + 1;
    }
    count_add(s, token);
    return ANNEAL_OK;
}

// ---- the steps --------------------------------------------------------------------------

// Strict total order: higher logit first, then lower id. Every candidate set therefore
// has exactly one top-k, independent of the selection algorithm.
static inline bool before(cand a, cand b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

static int cmp_cand(const void *pa, const void *pb) {
    cand a = *(const cand *)pa, b = *(const cand *)pb;
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

static inline void swap_cand(cand *a, cand *b) {
    cand t = *a;
    *a = *b;
    *b = t;
}

// Rearranges c[0..n) so that c[0..k) hold the k first candidates under `before` (in no
// particular order). Quickselect with a median-of-three pivot; after too many rounds it
// sorts the remaining range instead, which bounds the worst case at O(n log n).
static void select_top(cand *c, size_t n, size_t k) {
    if (k == 0 || k >= n) return;
    size_t lo = 0, hi = n - 1; // the k-th element (index k-1) lies in [lo, hi]
    int budget = 64;
    while (lo < hi) {
        if (budget-- == 0) {
            qsort(c + lo, hi - lo + 1, sizeof *c, cmp_cand);
            return;
        }
        size_t mid = lo + (hi - lo) / 2;
        if (before(c[mid], c[lo])) swap_cand(&c[mid], &c[lo]);
        if (before(c[hi], c[lo])) swap_cand(&c[hi], &c[lo]);
        if (before(c[hi], c[mid])) swap_cand(&c[hi], &c[mid]);
        // The median of three becomes the pivot, parked at hi for a Lomuto partition.
        swap_cand(&c[mid], &c[hi]);
        cand pivot = c[hi];
        size_t store = lo;
        for (size_t i = lo; i < hi; i++)
            if (before(c[i], pivot)) swap_cand(&c[i], &c[store++]);
        swap_cand(&c[store], &c[hi]);
        if (store == k - 1) return;
        if (store > k - 1)
            hi = store - 1;
        else
            lo = store + 1;
    }
}

static bool penalties_off(const anneal_sampler_params *p) {
    return p->repetition_penalty == 1.0f && p->frequency_penalty == 0.0f &&
           p->presence_penalty == 0.0f;
}

// The penalty of one token seen `count` (> 0) times: CTRL-style repetition (shrink toward
// less likely: divide a positive logit, multiply a negative one), then OpenAI-style
// frequency and presence terms.
static inline float penalize(const anneal_sampler_params *p, float l, uint32_t count) {
    if (p->repetition_penalty != 1.0f)
        l = l > 0 ? l / p->repetition_penalty : l * p->repetition_penalty;
    l -= (float)count * p->frequency_penalty + p->presence_penalty;
    return l > FLT_MAX ? FLT_MAX : l; // a penalty below 1 can push FLT_MAX to +inf
}

void gen_apply_penalties(const anneal_sampler *s, float *logits) {
    if (penalties_off(&s->p)) return;
    for (int32_t i = 0; i < s->n_present; i++) {
        int32_t t = s->present[i];
        logits[t] = penalize(&s->p, logits[t], s->count[t]);
    }
}

// Copies logits into the candidate array with NaN -> -inf and +inf -> FLT_MAX, so every
// later difference (l - max) is a number. Returns false when nothing is above -inf.
static bool load_candidates(anneal_sampler *s, const float *logits, float *max_out) {
    float mx = -INFINITY;
    for (int32_t i = 0; i < s->n_vocab; i++) {
        float l = logits[i];
        if (isnan(l)) l = -INFINITY;
        else if (l > FLT_MAX) l = FLT_MAX;
        mx = l > mx ? l : mx;
        s->c[i].logit = l;
        s->c[i].id = i;
    }
    *max_out = mx;
    return mx > -INFINITY;
}

static void penalize_candidates(anneal_sampler *s) {
    if (penalties_off(&s->p)) return;
    // Candidates are still in id order here, so c[t] is token t.
    for (int32_t i = 0; i < s->n_present; i++) {
        int32_t t = s->present[i];
        s->c[t].logit = penalize(&s->p, s->c[t].logit, s->count[t]);
    }
}

static float max_logit(const cand *c, size_t n) {
    float m = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (c[i].logit > m) m = c[i].logit;
    return m;
}

// Keeps the top_k first candidates (under `before`, in no order). Large sets are first cut
// down with a count histogram over TOP_P_BUCKETS logit buckets: a bucket is monotone in
// the logit, so the top k lie in the buckets up to the one where the count reaches k, and
// only those go through the quickselect.
static size_t top_k_filter(anneal_sampler *s, size_t n, size_t k) {
    cand *c = s->c;
    if (n >= 1024 && n / 4 > k) {
        float mx = max_logit(c, n), mn = mx;
        for (size_t i = 0; i < n; i++)
            if (c[i].logit > -INFINITY && c[i].logit < mn) mn = c[i].logit;
        float range = mx - mn;
        if (range > 0 && range <= FLT_MAX) {
            uint32_t count[TOP_P_BUCKETS] = {0};
            float scale = (float)TOP_P_BUCKETS / range;
            for (size_t i = 0; i < n; i++) {
                float d = mx - c[i].logit;
                d = d < range ? d : range;
                int32_t b = (int32_t)(d * scale);
                count[b < TOP_P_BUCKETS - 1 ? b : TOP_P_BUCKETS - 1]++;
            }
            int32_t cross = 0;
            size_t cum = count[0];
            while (cum < k) cum += count[++cross];
            size_t m = 0;
            for (size_t i = 0; i < n; i++) {
                float d = mx - c[i].logit;
                d = d < range ? d : range;
                int32_t b = (int32_t)(d * scale);
                b = b < TOP_P_BUCKETS - 1 ? b : TOP_P_BUCKETS - 1;
                if (b <= cross) c[m++] = c[i];
            }
            n = m;
        }
    }
    select_top(c, n, k);
    return k;
}

// Keeps the shortest run of most likely candidates whose probability mass reaches top_p
// (at least one), without sorting the vocabulary: a histogram of the candidates' mass in
// TOP_P_BUCKETS equal-width logit buckets below the max finds the bucket where the running
// mass crosses top_p; everything above it is kept unsorted and only that bucket is sorted.
// Cost: two passes over the candidates plus a sort of one bucket. Small sets just sort.
static size_t top_p_filter(anneal_sampler *s, size_t n, double top_p) {
    cand *c = s->c;
    float mx = max_logit(c, n), mn = mx;
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        float l = c[i].logit;
        total += exp_neg(l - mx);
        if (l > -INFINITY && l < mn) mn = l;
    }
    double target = top_p * total;
    size_t front = 0, end = n;
    double cum = 0;
    if (n > 256) {
        // Below max - 88 every weight is 0 in float: those share the last bucket.
        float range = mx - mn < 88.0f ? mx - mn : 88.0f;
        float scale = range > 0 ? (float)TOP_P_BUCKETS / range : 0.0f;
        double *mass = s->bucket_mass;
        memset(mass, 0, sizeof s->bucket_mass);
        for (size_t i = 0; i < n; i++) {
            float d = mx - c[i].logit;
            d = d < range ? d : range; // also maps +inf (from -inf logits) to the end
            int32_t b = (int32_t)(d * scale);
            b = b < TOP_P_BUCKETS - 1 ? b : TOP_P_BUCKETS - 1;
            s->bk[i] = (uint16_t)b;
            mass[b] += exp_neg(-d);
        }
        int32_t cross = 0;
        while (cross < TOP_P_BUCKETS - 1 && cum + mass[cross] < target) cum += mass[cross++];
        // Partition: buckets above the crossing one first, then the crossing bucket.
        for (size_t i = 0; i < n; i++)
            if (s->bk[i] < cross) {
                swap_cand(&c[i], &c[front]);
                uint16_t t = s->bk[i];
                s->bk[i] = s->bk[front];
                s->bk[front++] = t;
            }
        end = front;
        for (size_t i = front; i < n; i++)
            if (s->bk[i] == cross) swap_cand(&c[i], &c[end++]);
    }
    qsort(c + front, end - front, sizeof *c, cmp_cand);
    for (size_t i = front; i < end; i++) {
        cum += exp_neg(c[i].logit - mx);
        if (cum >= target) return i + 1;
    }
    return end > 0 ? end : 1;
}

// Keeps candidates with p >= min_p * p_max, i.e. logit - max >= log(min_p); order kept.
static size_t min_p_filter(anneal_sampler *s, size_t n, double min_p) {
    cand *c = s->c;
    double mx = max_logit(c, n);
    double thr = log(min_p);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if ((double)c[i].logit - mx >= thr) c[kept++] = c[i];
    return kept;
}

// Penalties and filters on the loaded candidates; *n_out = how many are left in s->c.
static anneal_status run_filters(anneal_sampler *s, size_t *n_out, anneal_err *err) {
    penalize_candidates(s);
    size_t n = (size_t)s->n_vocab;
    if (s->p.temperature == 0.0f) {
        // Greedy: the argmax, ties to the lowest id (the scan keeps the first maximum).
        size_t best = 0;
        for (size_t i = 1; i < n; i++)
            if (s->c[i].logit > s->c[best].logit) best = i;
        s->c[0] = s->c[best];
        *n_out = 1;
    } else {
        if (s->p.top_k > 0 && (size_t)s->p.top_k < n) {
            n = top_k_filter(s, n, (size_t)s->p.top_k);
        }
        if (s->p.top_p < 1.0f) n = top_p_filter(s, n, s->p.top_p);
        if (s->p.min_p > 0.0f) n = min_p_filter(s, n, s->p.min_p);
        *n_out = n;
    }
    if (max_logit(s->c, *n_out) == -INFINITY)
        return anneal_err_set(err, ANNEAL_ERR_RANGE,
                              "sampler: every logit is -inf after penalties");
    return ANNEAL_OK;
}

anneal_status gen_candidates(anneal_sampler *s, const float *logits, int32_t *ids, float *vals,
                             int32_t *n, anneal_err *err) {
    size_t k = 0;
    float mx;
    if (!load_candidates(s, logits, &mx))
        return anneal_err_set(err, ANNEAL_ERR_RANGE,
                              "sampler: all %d logits are NaN or -inf", (int)s->n_vocab);
    anneal_status st = run_filters(s, &k, err);
    if (st) return st;
    for (size_t i = 0; i < k; i++) {
        ids[i] = s->c[i].id;
        vals[i] = s->c[i].logit;
    }
    *n = (int32_t)k;
    return ANNEAL_OK;
}

// Temperature, softmax and one draw over c[0..n): p_i ~ exp((l_i - max) / T) in float,
// summed in double in candidate order, then the first i whose running sum exceeds u * total.
static int32_t draw(anneal_sampler *s, size_t n) {
    const cand *c = s->c;
    if (n == 1) return c[0].id;
    float mx = max_logit(c, n);
    float inv_t = 1.0f / s->p.temperature;
    inv_t = inv_t <= FLT_MAX ? inv_t : FLT_MAX; // a denormal T: keep 0 * inv_t a number
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        s->w[i] = exp_neg((c[i].logit - mx) * inv_t);
        total += s->w[i];
    }
    double u = gen_uniform(s) * total;
    double cum = 0;
    size_t last = 0;
    for (size_t i = 0; i < n; i++) {
        if (s->w[i] <= 0) continue;
        cum += s->w[i];
        last = i;
        if (u < cum) return c[i].id;
    }
    return c[last].id; // rounding left u just past the sum: the last token with mass
}

// Raw logprobs from the freshly loaded (sanitized, not yet penalized) candidates, which
// are still in id order: log-softmax normalizer and the n most likely tokens.
static void raw_logprobs(const anneal_sampler *s, float mx, anneal_sample *out) {
    int32_t nv = s->n_vocab, ntop = s->p.n_logprobs;
    const cand *c = s->c;
    cand top[ANNEAL_SAMPLER_MAX_LOGPROBS];
    int32_t have = 0;
    double sum = 0;
    for (int32_t i = 0; i < nv; i++) sum += exp_neg(c[i].logit - mx);
    for (int32_t i = 0; i < nv && ntop > 0; i++) {
        cand x = c[i];
        if (have < ntop || before(x, top[have - 1])) {
            int32_t j = have < ntop ? have++ : ntop - 1;
            while (j > 0 && before(x, top[j - 1])) {
                top[j] = top[j - 1];
                j--;
            }
            top[j] = x;
        }
    }
    // (l - max) - log(sum), not l - (max + log(sum)): near FLT_MAX the latter loses log(sum).
    double log_sum = log(sum);
    out->logprob = (float)log_sum; // the caller turns this into the chosen token's logprob
    out->n_top = have;
    for (int32_t i = 0; i < have; i++) {
        out->top[i].token = top[i].id;
        out->top[i].logprob = (float)((double)(top[i].logit - mx) - log_sum);
    }
}

anneal_status anneal_sampler_sample(anneal_sampler *s, const float *logits, anneal_sample *out,
                                    anneal_err *err) {
    if (!s || !logits || !out)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "sampler: sample needs a sampler, logits and out");
    float raw_max = 0;
    if (!load_candidates(s, logits, &raw_max))
        return anneal_err_set(err, ANNEAL_ERR_RANGE,
                              "sampler: all %d logits are NaN or -inf", (int)s->n_vocab);
    out->logprob = NAN;
    out->n_top = 0;
    if (s->p.logprobs) raw_logprobs(s, raw_max, out);
    size_t n = 0;
    anneal_status st = run_filters(s, &n, err);
    if (st) return st;
    int32_t tok = draw(s, n);
    out->token = tok;
    if (s->p.logprobs) {
        float lc = logits[tok]; // finite or FLT_MAX-clamped: the draw never picks -inf/NaN
        lc = lc > FLT_MAX ? FLT_MAX : lc;
        out->logprob = (float)((double)(lc - raw_max) - (double)out->logprob);
    }
    return ANNEAL_OK;
}
