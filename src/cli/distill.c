// `anneal distill`: `anneal train` with a teacher: the student learns from the teacher's
// softened distribution (KL at temperature T) mixed with cross-entropy on the data.
#include "cli/cli.h"
#include "cli/cli_train.h"

#include "anneal/train.h"
#include "anneal/lineage.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *HELP =
    "usage: anneal distill --teacher T.gguf --out DIR (--student S.gguf | --init SHAPE)\n"
    "                      (--data FILE... | --shards PATH...) [flags]\n"
    "Trains the student with loss = alpha * T^2 * KL(teacher_T || student_T)\n"
    "                             + (1 - alpha) * cross-entropy on the data,\n"
    "where _T is the softmax of the logits divided by the temperature. The teacher (any GGUF\n"
    "the engine loads, quantized ones included) runs on every micro-batch's sequences; it must\n"
    "have the student's vocabulary. Validation reports the student's cross-entropy.\n"
    "\n"
    "distillation:\n"
    "  --teacher FILE       the teacher model\n"
    "  --student FILE       start the student from this model (same as --init-from)\n"
    "  --init SHAPE         a new random student (as anneal train; the vocabulary comes from\n"
    "                       the teacher unless --vocab-from says otherwise)\n"
    "  --temperature T      softmax temperature, > 0 (2)\n"
    "  --alpha A            weight of the KL term in [0, 1] (0.5); 0 = plain training\n"
    "  --reverse-kl         KL(student_T || teacher_T) (mode-seeking) instead\n"
    "\n"
    "Every other flag is anneal train's (see anneal train --help): data, steps, batch, lr,\n"
    "schedule, checkpoints (--resume continues a distillation; give the same teacher),\n"
    "--config, --json. Exit status: 0 ok, 1 failure, 2 usage error.\n";

typedef struct distill_cli {
    anneal_distill_params p;
    const char *teacher;
    anneal_distill *d;
    anneal_lineage_parent *parents;
    char *config;
} distill_cli;

static bool parse_num(const char *s, double *out) {
    if (!s || !*s) return false;
    char *end;
    double v = strtod(s, &end);
    if (*end || !isfinite(v)) return false;
    *out = v;
    return true;
}

// Loads the teacher against the student's vocabulary, plugs its loss in, and adds the
// teacher to the lineage and the distillation settings to the recorded config.
static anneal_status setup(void *ctx, const char *model_path, anneal_trainer_opts *to,
                           anneal_err *err) {
    distill_cli *dc = ctx;
    anneal_gguf *g;
    anneal_status st = anneal_gguf_open(model_path, &g, err);
    if (st) return st;
    const anneal_gguf_tensor *emb = anneal_gguf_find_tensor(g, "token_embd.weight");
    int32_t n_vocab = emb && emb->n_dims >= 2 ? (int32_t)emb->dims[1] : 0;
    st = anneal_distill_new(dc->teacher, g, n_vocab, &dc->p, to->n_batch / anneal_mpi_size(),
                            to->n_seq, to->threads, &dc->d, err);
    anneal_gguf_close(g);
    if (st) return st;
    if (!to->quiet) {
        const anneal_model_config *tc = anneal_distill_teacher_config(dc->d);
        fprintf(stderr, "teacher: %s (dim %d, %d layers); T %g, alpha %g, %s KL\n", dc->teacher,
                (int)tc->n_embd, (int)tc->n_layer, dc->p.temperature, dc->p.alpha,
                dc->p.reverse ? "reverse" : "forward");
    }
    anneal_distill_plug(dc->d, to);

    dc->parents = anneal_calloc(to->n_parents + 1, sizeof *dc->parents);
    if (!dc->parents) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    if (to->n_parents) memcpy(dc->parents, to->parents, to->n_parents * sizeof *dc->parents);
    if ((st = anneal_lineage_parent_file(&dc->parents[to->n_parents], "teacher", dc->teacher, err)))
        return st;
    to->parents = dc->parents;
    to->n_parents++;

    json_t *j = to->config_json ? json_loads(to->config_json, 0, NULL) : NULL;
    if (!j) j = json_object();
    json_object_set_new(j, "teacher", json_string(dc->teacher));
    json_object_set_new(j, "temperature", json_real(dc->p.temperature));
    json_object_set_new(j, "alpha", json_real(dc->p.alpha));
    json_object_set_new(j, "reverse_kl", json_boolean(dc->p.reverse));
    dc->config = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!dc->config) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    to->config_json = dc->config;
    return ANNEAL_OK;
}

int cmd_distill(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (cli_is_help(argv[i])) {
            fputs(HELP, stdout);
            return CLI_OK;
        }
    distill_cli dc = {.p = {.temperature = 2.0, .alpha = 0.5, .reverse = false}};
    // argv for anneal train: the distillation flags taken out, --student as --init-from, and
    // the teacher as --vocab-from for --init when none is given.
    char **targv = anneal_calloc((size_t)argc + 3, sizeof *targv);
    if (!targv) {
        anneal_err e = {0};
        anneal_err_set(&e, ANNEAL_ERR_NOMEM, "out of memory");
        return cli_fail("distill", &e);
    }
    int n = 0, rc = CLI_OK;
    bool init = false, vocab = false, start = false;
    targv[n++] = "train";
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = strcmp(a, "--teacher") == 0 || strcmp(a, "--temperature") == 0 ||
                     strcmp(a, "--alpha") == 0 || strcmp(a, "--student") == 0;
        if (takes && !v) {
            rc = cli_usage_error("distill", "%s needs a value", a);
            break;
        }
        if (strcmp(a, "--teacher") == 0) {
            dc.teacher = v;
            i++;
        } else if (strcmp(a, "--temperature") == 0) {
            if (!parse_num(v, &dc.p.temperature) || !(dc.p.temperature > 0))
                rc = cli_usage_error("distill", "--temperature '%s' must be a number > 0", v);
            i++;
        } else if (strcmp(a, "--alpha") == 0) {
            if (!parse_num(v, &dc.p.alpha) || dc.p.alpha < 0 || dc.p.alpha > 1)
                rc = cli_usage_error("distill", "--alpha '%s' must be a number in [0, 1]", v);
            i++;
        } else if (strcmp(a, "--reverse-kl") == 0) {
            dc.p.reverse = true;
        } else if (strcmp(a, "--student") == 0) {
            targv[n++] = "--init-from";
            targv[n++] = argv[++i];
            start = true;
        } else {
            init |= strcmp(a, "--init") == 0;
            vocab |= strcmp(a, "--vocab-from") == 0;
            start |= strcmp(a, "--init") == 0 || strcmp(a, "--init-from") == 0 ||
                     strcmp(a, "--resume") == 0 || strcmp(a, "--config") == 0;
            targv[n++] = argv[i];
        }
    }
    if (!rc && !dc.teacher) rc = cli_usage_error("distill", "--teacher MODEL.gguf is required");
    if (!rc && !start)
        rc = cli_usage_error("distill", "give the student: --student FILE or --init SHAPE");
    if (rc) {
        anneal_free(targv);
        return rc;
    }
    if (init && !vocab) {
        targv[n++] = "--vocab-from";
        targv[n++] = (char *)dc.teacher;
    }
    targv[n] = NULL;
    cli_train_plugin plug = {
        .name = "distill", .argc = argc, .argv = argv, .setup = setup, .ctx = &dc};
    rc = cli_train_run(n, targv, &plug);
    anneal_distill_free(dc.d);
    anneal_free(dc.parents);
    free(dc.config); // jansson's json_dumps
    anneal_free(targv);
    return rc;
}
