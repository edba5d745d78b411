// Distillation: the KL + cross-entropy loss against hand-computed values and its gradient
// against central finite differences (forward and reverse KL, several T and alpha; alpha = 0
// is the trainer's cross-entropy bit for bit), the teacher's engine logits against the
// trainer's own forward, the vocabulary check, and a tiny teacher distilled into a smaller
// student through anneal_trainer_run lowering the KL.
#include "test.h"
#include "train/train_internal.h"

#include "anneal/train.h"

#include <math.h>
#include <unistd.h>

static uint64_t rng = 0x5eed1234;

static float frand(void) { // uniform in [-1, 1)
    return (float)((double)(test_rand(&rng) >> 11) * 0x1.0p-52 - 1.0);
}

// ---- the loss ------------------------------------------------------------------------------

// Two tokens, T = 1: teacher p = (1/2, 1/2), student q = (1/4, 3/4).
static void test_known_values(void) {
    float u[2] = {0, 0}, z[2] = {0, (float)log(3.0)};
    int32_t y[1] = {1};
    double kl;
    anneal_distill_params p = {.temperature = 1, .alpha = 1, .reverse = false};
    double l = anneal_distill_loss_rows(&p, u, z, y, 1, 2, 1.0f, NULL, &kl);
    CHECK_NEAR(l, 0.5 * log(4.0 / 3.0), 1e-7); // 0.5 ln 2 + 0.5 ln(2/3)
    CHECK_NEAR(kl, 0.5 * log(4.0 / 3.0), 1e-7);
    p.reverse = true;
    l = anneal_distill_loss_rows(&p, u, z, y, 1, 2, 1.0f, NULL, &kl);
    CHECK_NEAR(l, 0.25 * log(0.5) + 0.75 * log(1.5), 1e-7);
    // T = 2 with the student's logits doubled: the same distributions, loss scaled by T^2.
    float z2[2] = {0, (float)(2 * log(3.0))};
    p = (anneal_distill_params){.temperature = 2, .alpha = 1, .reverse = false};
    l = anneal_distill_loss_rows(&p, u, z2, y, 1, 2, 1.0f, NULL, NULL);
    CHECK_NEAR(l, 4 * 0.5 * log(4.0 / 3.0), 1e-6);
    // alpha = 0.25: 0.25 * KL + 0.75 * CE with CE = -ln(3/4).
    p = (anneal_distill_params){.temperature = 1, .alpha = 0.25, .reverse = false};
    l = anneal_distill_loss_rows(&p, u, z, y, 1, 2, 1.0f, NULL, NULL);
    CHECK_NEAR(l, 0.25 * 0.5 * log(4.0 / 3.0) - 0.75 * log(0.75), 1e-7);
    // Equal logits: KL 0 and a zero KL gradient.
    float d[2];
    p = (anneal_distill_params){.temperature = 3, .alpha = 1, .reverse = true};
    l = anneal_distill_loss_rows(&p, z, z, y, 1, 2, 1.0f, d, NULL);
    CHECK_NEAR(l, 0, 1e-12);
    CHECK_NEAR(d[0], 0, 1e-7);
    CHECK_NEAR(d[1], 0, 1e-7);
}

#define ROWS 3
#define V 7
typedef struct loss_case {
    anneal_distill_params p;
    float u[ROWS * V], z[ROWS * V];
    int32_t y[ROWS];
} loss_case;

static double case_loss(loss_case *c) {
    return anneal_distill_loss_rows(&c->p, c->u, c->z, c->y, ROWS, V, 1.0f, NULL, NULL);
}

static void grad_case(bool reverse, double T, double alpha) {
    loss_case c = {.p = {.temperature = T, .alpha = alpha, .reverse = reverse}, .y = {2, -1, 6}};
    for (int i = 0; i < ROWS * V; i++) {
        c.u[i] = 3 * frand();
        c.z[i] = 3 * frand();
    }
    float an[ROWS * V], alias[ROWS * V];
    double l = anneal_distill_loss_rows(&c.p, c.u, c.z, c.y, ROWS, V, 0.5f, an, NULL);
    CHECK(isfinite(l) && l > 0);
    // dlogits aliasing logits gives the same numbers.
    memcpy(alias, c.z, sizeof alias);
    double la = anneal_distill_loss_rows(&c.p, c.u, alias, c.y, ROWS, V, 0.5f, alias, NULL);
    CHECK(la == l);
    CHECK(memcmp(alias, an, sizeof an) == 0);
    double amax = 0, worst = 0;
    for (int i = 0; i < ROWS * V; i++)
        amax = fmax(amax, fabs(an[i]));
    for (int i = 0; i < ROWS * V; i++) {
        // The step actually taken in float, so rounding of x0 +- h does not count as error.
        float x0 = c.z[i], xp = x0 + 1e-3f, xm = x0 - 1e-3f;
        c.z[i] = xp;
        double lp = case_loss(&c);
        c.z[i] = xm;
        double lm = case_loss(&c);
        c.z[i] = x0;
        double fd = 0.5 * (lp - lm) / ((double)xp - xm); // scale 0.5
        worst = fmax(worst, fabs(fd - an[i]) / amax);
        if (c.y[i / V] < 0) CHECK(an[i] == 0.0f); // an ignored row has no gradient
    }
    if (!(worst < 2e-4)) {
        fprintf(stderr, "  %s KL, T %g, alpha %g: worst relative error %.3g\n",
                reverse ? "reverse" : "forward", T, alpha, worst);
        test_failures++;
    }
}

static void test_gradients(void) {
    const double Ts[] = {0.5, 1, 2, 4}, alphas[] = {0, 0.3, 0.9, 1};
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                grad_case(r == 1, Ts[i], alphas[j]);
}

// alpha = 0 is tr_xent exactly, loss and gradient, whatever T.
static void test_alpha0_is_ce(void) {
    float u[ROWS * V], z[ROWS * V], d1[ROWS * V], d2[ROWS * V];
    int32_t y[ROWS] = {0, 4, -1};
    for (int i = 0; i < ROWS * V; i++) {
        u[i] = 4 * frand();
        z[i] = 4 * frand();
    }
    anneal_distill_params p = {.temperature = 3, .alpha = 0, .reverse = false};
    double kl;
    double a = anneal_distill_loss_rows(&p, u, z, y, ROWS, V, 0.25f, d1, &kl);
    double b = tr_xent(z, y, ROWS, V, 0.25f, d2);
    CHECK(a == b);
    CHECK(memcmp(d1, d2, sizeof d1) == 0);
    CHECK(kl > 0);
    p.reverse = true;
    CHECK(anneal_distill_loss_rows(&p, u, z, y, ROWS, V, 0.25f, NULL, NULL) == b);
}

// Logits near +-1e4: the max shift keeps every exponent finite.
static void test_stable(void) {
    float u[4] = {1e4f, -1e4f, 9990.f, 0}, z[4] = {-1e4f, 1e4f, 0, 5000.f}, d[4];
    int32_t y[1] = {0};
    for (int r = 0; r < 2; r++) {
        anneal_distill_params p = {.temperature = 0.5, .alpha = 0.5, .reverse = r == 1};
        double l = anneal_distill_loss_rows(&p, u, z, y, 1, 4, 1.0f, d, NULL);
        CHECK(isfinite(l) && l > 0);
        for (int i = 0; i < 4; i++)
            CHECK(isfinite(d[i]));
    }
}

static void test_params_check(void) {
    anneal_err err = {0};
    anneal_distill_params p = {.temperature = 0, .alpha = 0.5};
    CHECK_EQ(anneal_distill_params_check(&p, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(anneal_err_msg(&err), "temperature");
    anneal_err e2 = {0};
    p = (anneal_distill_params){.temperature = 1, .alpha = 1.5};
    CHECK_EQ(anneal_distill_params_check(&p, &e2), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(anneal_err_msg(&e2), "alpha 1.5");
    p.alpha = 1;
    CHECK_EQ(anneal_distill_params_check(&p, NULL), ANNEAL_OK);
}

// ---- the teacher and end to end --------------------------------------------------------------

static anneal_model_config tiny_cfg(int32_t n_vocab, int32_t n_embd, int32_t n_layer) {
    anneal_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    strcpy(cfg.arch, "llama");
    cfg.n_vocab = n_vocab;
    cfg.n_embd = n_embd;
    cfg.n_layer = n_layer;
    cfg.n_head = 2;
    cfg.n_head_kv = 1;
    cfg.head_dim = n_embd / 2;
    cfg.n_ff = 2 * n_embd;
    cfg.n_ctx_train = 64;
    cfg.norm_eps = 1e-5f;
    cfg.rope_freq_base = 10000.0f;
    cfg.n_rot = n_embd / 2;
    return cfg;
}

// A random model of cfg's shape saved to dir/name.
static const char *save_random(const anneal_model_config *cfg, float s, const char *name) {
    static char path[2][512];
    static int k;
    char *out = path[k++ % 2];
    snprintf(out, sizeof path[0], "%s/%s", test_tmpdir(), name);
    anneal_train_model *tm;
    anneal_err err = {0};
    CHECK_EQ(anneal_train_model_new(cfg, &tm, &err), ANNEAL_OK);
    for (size_t i = 0; i < tm->n_list; i++) {
        const anneal_train_param *p = &tm->list[i];
        for (size_t j = 0; j < p->n; j++)
            tm->params[p->offset + j] = p->n_dims == 1 ? 1.0f : s * frand();
    }
    CHECK_EQ(anneal_train_model_save(tm, out, NULL, NULL, NULL, NULL, &err), ANNEAL_OK);
    anneal_train_model_free(tm);
    return out;
}

#define B 2
#define S 8
// The student's logits on tokens [B][S] (its trainer forward) and the KL (T = 1) to the
// teacher's logits tl, per counted row.
static double kl_of(const char *student, const float *tl, const int32_t *tok) {
    anneal_err err = {0};
    anneal_model *m;
    anneal_train_model *tm;
    anneal_train_ctx *c;
    CHECK_EQ(anneal_model_load(student, &m, &err), ANNEAL_OK);
    CHECK_EQ(anneal_train_model_from(m, &tm, &err), ANNEAL_OK);
    CHECK_EQ(anneal_train_ctx_new(tm, B, S, 1, &c, &err), ANNEAL_OK);
    int32_t tgt[B * S];
    for (int i = 0; i < B * S; i++)
        tgt[i] = 0;
    double ce;
    CHECK_EQ(anneal_train_step(c, tok, tgt, false, 1.0f, &ce, &err), ANNEAL_OK);
    anneal_distill_params p = {.temperature = 1, .alpha = 1};
    double kl;
    anneal_distill_loss_rows(&p, tl, anneal_train_logits(c), tgt, B * S, tm->cfg.n_vocab, 1.0f,
                             NULL, &kl);
    anneal_train_ctx_free(c);
    anneal_train_model_free(tm);
    anneal_model_free(m);
    return kl / (B * S);
}

// The mean cross-entropy over the trainer's validation batches of val (windows at 0, S, ...).
static double val_ce(const char *model, const int32_t *val) {
    anneal_err err = {0};
    anneal_model *m;
    anneal_train_model *tm;
    anneal_train_ctx *c;
    CHECK_EQ(anneal_model_load(model, &m, &err), ANNEAL_OK);
    CHECK_EQ(anneal_train_model_from(m, &tm, &err), ANNEAL_OK);
    CHECK_EQ(anneal_train_ctx_new(tm, B, S, 1, &c, &err), ANNEAL_OK);
    double sum = 0;
    for (int k = 0; k < 2; k++) {
        int32_t tok[B * S], tgt[B * S];
        for (int i = 0; i < B * S; i++) {
            tok[i] = val[k * B * S + i];
            tgt[i] = val[k * B * S + i + 1];
        }
        double l;
        CHECK_EQ(anneal_train_step(c, tok, tgt, false, 1.0f, &l, &err), ANNEAL_OK);
        sum += l;
    }
    anneal_train_ctx_free(c);
    anneal_train_model_free(tm);
    anneal_model_free(m);
    return sum / 2;
}

// The teacher's engine logits equal the trainer's forward of the same model, so a model
// distilled from itself starts at KL 0.
static void test_teacher_logits(void) {
    anneal_model_config cfg = tiny_cfg(13, 16, 2);
    const char *path = save_random(&cfg, 0.4f, "self.gguf");
    anneal_distill_params p = {.temperature = 2, .alpha = 0.5};
    anneal_distill *d;
    anneal_err err = {0};
    CHECK_EQ(anneal_distill_new(path, NULL, 13, &p, B, S, 1, &d, &err), ANNEAL_OK);
    int32_t tok[B * S];
    for (int i = 0; i < B * S; i++)
        tok[i] = (int32_t)(test_rand(&rng) % 13);
    CHECK_EQ(anneal_distill_teacher(d, tok, B, S, &err), ANNEAL_OK);
    CHECK(kl_of(path, anneal_distill_teacher_logits(d), tok) < 1e-8);
    // A batch of another shape is refused.
    anneal_err e2 = {0};
    CHECK_EQ(anneal_distill_teacher(d, tok, 1, S, &e2), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(anneal_err_msg(&e2), "differs");
    // After a refused batch the loss has no teacher rows: NAN, not stale numbers.
    float z[13] = {0};
    int32_t y[1] = {1};
    CHECK(isnan(anneal_distill_loss(d, 0, 1, 13, z, y, 1.0f, NULL)));
    anneal_distill_free(d);
    unlink(path);
}

static void test_vocab_mismatch(void) {
    anneal_model_config cfg = tiny_cfg(13, 16, 1);
    const char *path = save_random(&cfg, 0.4f, "t13.gguf");
    anneal_distill_params p = {.temperature = 2, .alpha = 0.5};
    anneal_distill *d = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_distill_new(path, NULL, 14, &p, B, S, 1, &d, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK(d == NULL);
    CHECK_CONTAINS(anneal_err_msg(&err), "has 13 tokens in its vocabulary and the student 14");
    anneal_err e2 = {0};
    p.temperature = -1;
    CHECK_EQ(anneal_distill_new(path, NULL, 13, &p, B, S, 1, &d, &e2), ANNEAL_ERR_INVALID_ARG);
    anneal_err e3 = {0};
    p.temperature = 1;
    CHECK_EQ(anneal_distill_new("/nonexistent/t.gguf", NULL, 13, &p, B, S, 1, &d, &e3),
             ANNEAL_ERR_IO);
    unlink(path);
}

// A random teacher (dim 16, 2 layers) into a random student (dim 8, 1 layer) for 150 steps
// of anneal_trainer_run with alpha = 1: the KL to the teacher on a held-out batch falls.
static void test_end_to_end(void) {
    anneal_model_config tc = tiny_cfg(13, 16, 2), sc = tiny_cfg(13, 8, 1);
    char teacher[512], student[512], out[512];
    snprintf(teacher, sizeof teacher, "%s", save_random(&tc, 0.5f, "teacher.gguf"));
    snprintf(student, sizeof student, "%s", save_random(&sc, 0.1f, "student.gguf"));
    snprintf(out, sizeof out, "%s/run", test_tmpdir());
    int32_t data[600];
    for (int i = 0; i < 600; i++)
        data[i] = (int32_t)(test_rand(&rng) % 13);
    anneal_distill_params p = {.temperature = 2, .alpha = 1};
    anneal_distill *d;
    anneal_err err = {0};
    CHECK_EQ(anneal_distill_new(teacher, NULL, 13, &p, B, S, 1, &d, &err), ANNEAL_OK);
    anneal_trainer_opts o = {.out_dir = out,
                             .init_from = student,
                             .train_tokens = data,
                             .n_train_tokens = 500,
                             .val_tokens = data + 500,
                             .n_val_tokens = 100,
                             .n_seq = S,
                             .n_batch = B,
                             .accum = 1,
                             .steps = 150,
                             .sched = {.lr = 3e-2, .min_lr = 3e-3, .warmup = 2, .total = 150},
                             .adamw = anneal_adamw_default(),
                             .clip = 1.0,
                             .seed = 7,
                             .threads = 1,
                             .val_every = 20,
                             .val_batches = 2,
                             .ckpt_every = 0,
                             .keep = 1,
                             .quiet = true};
    anneal_distill_plug(d, &o);
    // The KL before, on held-out windows.
    int32_t tok[B * S];
    memcpy(tok, data + 500, sizeof tok);
    anneal_distill_params p1 = {.temperature = 1, .alpha = 1};
    anneal_distill *ref;
    CHECK_EQ(anneal_distill_new(teacher, NULL, 13, &p1, B, S, 1, &ref, &err), ANNEAL_OK);
    CHECK_EQ(anneal_distill_teacher(ref, tok, B, S, &err), ANNEAL_OK);
    double before = kl_of(student, anneal_distill_teacher_logits(ref), tok);
    anneal_trainer_result res;
    CHECK_EQ(anneal_trainer_run(&o, &res, &err), ANNEAL_OK);
    if (err.status) fprintf(stderr, "  %s\n", anneal_err_msg(&err));
    CHECK_EQ(res.steps_run, 150);
    CHECK(isfinite(res.last_val_loss) && res.last_val_loss > 0); // cross-entropy
    double after = kl_of(res.last_ckpt, anneal_distill_teacher_logits(ref), tok);
    // Validation reports the student's cross-entropy (2 batches of consecutive windows).
    CHECK_NEAR(res.last_val_loss, val_ce(res.last_ckpt, data + 500), 1e-6);
    fprintf(stderr, "  KL to the teacher: %.4f before, %.4f after 150 steps\n", before, after);
    CHECK(after < 0.7 * before);
    anneal_distill_free(ref);
    anneal_distill_free(d);
}

int main(void) {
    RUN(test_known_values);
    RUN(test_gradients);
    RUN(test_alpha0_is_ce);
    RUN(test_stable);
    RUN(test_params_check);
    RUN(test_teacher_logits);
    RUN(test_vocab_mismatch);
    RUN(test_end_to_end);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", test_tmpdir());
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", test_tmpdir());
    return TEST_EXIT();
}
