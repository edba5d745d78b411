// `anneal data`: the data pipeline's steps (ingest, clean, pii, dedup, audit, shard), dataset
// verification and whole pipelines (`data run`).
#include "cli/cli.h"

#include "anneal/data.h"

#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *HELP =
    "usage: anneal data <step> [options] INPUT... -o OUTDIR\n"
    "       anneal data pii --text TEXT | anneal data pii -      (redact one string)\n"
    "       anneal data verify DIR [--json]\n"
    "       anneal data run PIPELINE.json|.toml [--replace] [--json]\n"
    "       anneal data audit --print-lexicon\n"
    "\n"
    "steps:\n"
    "  ingest   read files (txt, jsonl, csv, tsv, html; .gz, .zst; directories) into a dataset\n"
    "  clean    Unicode NFKC, control characters, whitespace, HTML remnants, boilerplate\n"
    "           lines, then the Gopher/C4/FineWeb quality filters\n"
    "  pii      redact e-mail addresses, phone numbers, IPs, card numbers, IBANs, US SSNs\n"
    "  dedup    drop exact and near duplicates (MinHash LSH)\n"
    "  audit    demographic term groups and their co-occurrence with sentiment (PMI)\n"
    "  shard    tokenize into token shards with a train/validation split\n"
    "\n"
    "INPUT is a file, a directory (read recursively) or a dataset directory of an earlier\n"
    "step. Each step writes OUTDIR with manifest.json, docs/, report.json and report.md;\n"
    "it appears only when complete.\n"
    "\n"
    "options:\n"
    "  -o, --output DIR      the dataset directory to write (required)\n"
    "  --config FILE         the step's configuration (JSON); flags below override it\n"
    "  --replace             replace OUTDIR if it exists (once the new one is complete)\n"
    "  -t, --threads N       worker threads (dedup)\n"
    "  --json                print the result as JSON on stdout\n"
    "  -q, --quiet           no progress and no per-record messages\n"
    "reader:\n"
    "  --text-field NAME     JSON lines: the text field (default text)\n"
    "  --id-field NAME       JSON lines and CSV: the id field (default id)\n"
    "  --column NAME|N       CSV/TSV: the text column, by header name or 1-based number\n"
    "  --no-header           CSV/TSV: the first row is data (needs a numeric --column)\n"
    "  --unit file|paragraph|line  plain text: what one document is (default file)\n"
    "  --max-doc-bytes N     larger records are skipped and reported (default 33554432)\n"
    "pii:     --text TEXT    redact TEXT and print it (or - : stdin); no dataset\n"
    "dedup:   --bands N --rows N --ngram N --seed N  --spill-dir DIR\n"
    "audit:   --lexicon FILE (edited term lists; --print-lexicon shows the default)\n"
    "shard:   --tokenizer FILE (GGUF vocabulary or model, required) --val-fraction X\n"
    "         (default 0.1) --seed N --shard-bytes N\n"
    "\n"
    "Exit status: 0 written; 3 written, but some input records were skipped (listed in\n"
    "report.json); 1 failed (nothing written); 2 usage error. docs/data.md has the details.\n";

#define MAX_SKIP_LINES 20
#define MAX_CONFIG_BYTES ((size_t)16 << 20)

typedef struct data_ui {
    bool quiet, tty, bar_open;
    uint64_t skips_printed;
} data_ui;

static void ui_skip(void *user, const char *path, uint64_t line, anneal_skip_reason reason,
                    const char *message) {
    data_ui *ui = user;
    if (ui->quiet) return;
    if (ui->bar_open) {
        fputc('\n', stderr);
        ui->bar_open = false;
    }
    if (ui->skips_printed < MAX_SKIP_LINES)
        fprintf(stderr, "anneal data: %s:%llu: skipped (%s): %s\n", path, (unsigned long long)line,
                anneal_skip_reason_name(reason), message);
    else if (ui->skips_printed == MAX_SKIP_LINES)
        fprintf(stderr, "anneal data: more records skipped: see report.json\n");
    ui->skips_printed++;
}

static void ui_progress(void *user, const char *step, uint64_t docs, uint64_t bytes,
                        uint64_t total, bool done) {
    data_ui *ui = user;
    if (ui->quiet) return;
    if (!ui->tty && !done) return;
    int pct = total ? (int)(100.0 * (double)bytes / (double)total) : 100;
    if (pct > 100 || done) pct = 100;
    char bar[31];
    for (int k = 0; k < 30; k++)
        bar[k] = k < pct * 30 / 100 ? '#' : '.';
    bar[30] = '\0';
    if (ui->tty)
        fprintf(stderr, "\r  %-7s [%s] %3d%%  %.1f MB  %llu documents\033[K", step, bar, pct,
                (double)bytes / 1e6, (unsigned long long)docs);
    else
        fprintf(stderr, "  %-7s %.1f MB  %llu documents\n", step, (double)bytes / 1e6,
                (unsigned long long)docs);
    ui->bar_open = ui->tty && !done;
    if (ui->tty && done) fputc('\n', stderr);
}

// Sets cfg[section][key] (section NULL: cfg[key]) to v, taking ownership of v.
static int set_key(json_t *cfg, const char *section, const char *key, json_t *v) {
    json_t *obj = cfg;
    if (section) {
        obj = json_object_get(cfg, section);
        if (!obj) {
            obj = json_object();
            json_object_set_new(cfg, section, obj);
        }
        if (!json_is_object(obj)) {
            json_decref(v);
            return cli_usage_error("data", "the config's '%s' is not an object", section);
        }
    }
    json_object_set_new(obj, key, v);
    return CLI_OK;
}

static int print_result(const char *step, const char *outdir, const anneal_data_step_result *r,
                        bool as_json) {
    if (as_json) {
        json_t *j = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I}", "step", step, "output", outdir,
                              "version", r->version, "documents_in", (json_int_t)r->docs_in,
                              "documents_out", (json_int_t)r->docs_out, "removed",
                              (json_int_t)r->removed, "skipped", (json_int_t)r->skipped);
        json_dumpf(j, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(j);
    } else {
        printf("%s: %s  version %s\n  %llu documents in, %llu out, %llu removed, %llu input "
               "records skipped\n",
               step, outdir, r->version, (unsigned long long)r->docs_in,
               (unsigned long long)r->docs_out, (unsigned long long)r->removed,
               (unsigned long long)r->skipped);
    }
    return r->skipped ? 3 : CLI_OK;
}

static int pii_text(const char *text, const char *config_path) {
    anneal_err err = {0};
    char *owned = NULL;
    size_t len = 0;
    if (strcmp(text, "-") == 0) {
        owned = cli_read_stdin(&len, &err);
        if (!owned) return cli_fail("data pii", &err);
        text = owned;
    } else {
        len = strlen(text);
    }
    anneal_pii_config cfg = anneal_pii_config_default();
    json_t *root = NULL;
    if (config_path) {
        char *buf = NULL;
        size_t n = 0;
        anneal_status st = anneal_read_file(config_path, MAX_CONFIG_BYTES, &buf, &n, &err);
        if (!st) {
            root = anneal_json_parse(buf, n, config_path, &err);
            json_t *p = root ? json_object_get(root, "pii") : NULL;
            if (!root) st = err.status;
            else st = anneal_pii_config_from_json(p ? p : root, config_path, &cfg, &err);
        }
        anneal_free(buf);
        if (st) {
            json_decref(root);
            anneal_free(owned);
            return cli_fail("data pii", &err);
        }
    }
    char *out = NULL;
    size_t out_len = 0, cap = 0;
    anneal_status st = anneal_pii_redact(&cfg, text, len, &out, &out_len, &cap, NULL, &err);
    if (!st) {
        fwrite(out, 1, out_len, stdout);
        if (!owned) fputc('\n', stdout);
    }
    anneal_free(out);
    anneal_free(owned);
    json_decref(root);
    return st ? cli_fail("data pii", &err) : CLI_OK;
}

static int verify(int argc, char **argv) {
    const char *dir = NULL;
    bool as_json = false;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs("usage: anneal data verify DIR [--json]\nRe-checks the SHA-256 and size of "
                  "every output the manifest lists, finds missing and extra files, and\n"
                  "re-checks the inputs that still exist. Exit 0 when all match, 1 otherwise.\n",
                  stdout);
            return CLI_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            as_json = true;
        } else if (argv[i][0] == '-') {
            return cli_usage_error("data verify", "unknown flag '%s'", argv[i]);
        } else if (dir) {
            return cli_usage_error("data verify", "one directory at a time");
        } else {
            dir = argv[i];
        }
    }
    if (!dir) return cli_usage_error("data verify", "no dataset directory given");
    anneal_err err = {0};
    anneal_dataset_report r;
    if (anneal_dataset_verify(dir, &r, &err)) return cli_fail("data verify", &err);
    if (as_json) {
        json_t *probs = json_array();
        for (size_t i = 0; i < r.n_problems; i++)
            json_array_append_new(probs, json_pack("{s:s,s:s,s:s}", "kind",
                                                   anneal_dataset_problem_name(r.problems[i].kind),
                                                   "path", r.problems[i].path, "detail",
                                                   r.problems[i].detail));
        json_t *j = json_pack("{s:s,s:s,s:s,s:b,s:I,s:I,s:o}", "dataset", dir, "version",
                              r.version, "step", r.step ? r.step : "", "ok", r.ok, "outputs",
                              (json_int_t)r.n_outputs, "inputs", (json_int_t)r.n_inputs,
                              "problems", probs);
        json_dumpf(j, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(j);
    } else {
        for (size_t i = 0; i < r.n_problems; i++)
            printf("%s: %s: %s\n", anneal_dataset_problem_name(r.problems[i].kind),
                   r.problems[i].path, r.problems[i].detail);
        printf("%s: %s (version %s, %zu outputs, %zu inputs)\n", dir,
               r.ok ? "ok" : "FAILED", r.version, r.n_outputs, r.n_inputs);
    }
    int rc = r.ok ? CLI_OK : CLI_FAIL;
    anneal_dataset_report_free(&r);
    return rc;
}

static int run_pipeline(int argc, char **argv) {
    const char *file = NULL;
    bool as_json = false, replace = false, quiet = false;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs("usage: anneal data run PIPELINE.json|PIPELINE.toml [--replace] [--json] [-q]\n"
                  "Runs the steps a pipeline file lists, each on the output of the one before;\n"
                  "a .toml file is read as TOML, any other as JSON. docs/data.md (\"Pipelines\")\n"
                  "describes the file.\n",
                  stdout);
            return CLI_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            as_json = true;
        } else if (strcmp(argv[i], "--replace") == 0) {
            replace = true;
        } else if (strcmp(argv[i], "-q") == 0 || strcmp(argv[i], "--quiet") == 0) {
            quiet = true;
        } else if (argv[i][0] == '-') {
            return cli_usage_error("data run", "unknown flag '%s'", argv[i]);
        } else if (file) {
            return cli_usage_error("data run", "one pipeline file at a time");
        } else {
            file = argv[i];
        }
    }
    if (!file) return cli_usage_error("data run", "no pipeline file given");
    anneal_err err = {0};
    char *text = NULL;
    size_t len = 0;
    if (anneal_read_file(file, MAX_CONFIG_BYTES, &text, &len, &err)) return cli_fail("data run", &err);
    data_ui ui = {.quiet = quiet, .tty = isatty(2) != 0};
    anneal_data_pipeline_result res;
    anneal_status st = anneal_data_pipeline_run(text, len, file, replace, ui_progress, ui_skip,
                                                &ui, &res, &err);
    anneal_free(text);
    if (st) return cli_fail("data run", &err);
    for (size_t i = 0; i < res.n_steps; i++)
        if (!as_json) printf("%s\n", res.steps[i].dir);
    anneal_data_step_result total = {0};
    memcpy(total.version, res.version, sizeof total.version);
    for (size_t i = 0; i < res.n_steps; i++) {
        total.skipped += res.steps[i].result.skipped;
        total.removed += res.steps[i].result.removed;
    }
    if (res.n_steps) {
        total.docs_in = res.steps[0].result.docs_in;
        total.docs_out = res.steps[res.n_steps - 1].result.docs_out;
    }
    int rc = print_result("run", res.output, &total, as_json);
    anneal_data_pipeline_result_free(&res);
    return rc;
}

int cmd_data(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) {
        fputs(HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "verify") == 0) return verify(argc - 1, argv + 1);
    if (strcmp(sub, "run") == 0) return run_pipeline(argc - 1, argv + 1);
    anneal_data_step step;
    if (anneal_data_step_parse(sub, &step, NULL))
        return cli_usage_error("data", "unknown step '%s' (see anneal data --help)", sub);

    const char *outdir = NULL, *config_path = NULL, *pii_arg = NULL, *spill = NULL;
    bool as_json = false, replace = false, quiet = false, print_lexicon = false;
    long threads = 0;
    const char **inputs = anneal_calloc((size_t)argc, sizeof *inputs);
    json_t *cfg = json_object(), *flags = json_object();
    if (!inputs || !cfg || !flags) {
        anneal_free(inputs);
        json_decref(cfg);
        json_decref(flags);
        fprintf(stderr, "anneal data: out of memory\n");
        return CLI_FAIL;
    }
    size_t n_inputs = 0;
    int rc = CLI_OK;
    // Flags are collected into `flags` as {section: {key: value}} and merged over the file.
    for (int i = 2; i < argc && rc == CLI_OK; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        long n = 0;
#define NEED_VAL                                                                                   \
    if (!val) {                                                                                    \
        rc = cli_usage_error("data", "%s needs a value", a);                                       \
        break;                                                                                     \
    }                                                                                              \
    i++
#define NEED_INT(lo, hi)                                                                           \
    NEED_VAL;                                                                                      \
    if (!cli_parse_long(val, lo, hi, &n)) {                                                        \
        rc = cli_usage_error("data", "%s: expected an integer from %ld to %ld, got '%s'", a,      \
                             (long)(lo), (long)(hi), val);                                         \
        break;                                                                                     \
    }
        if (cli_is_help(a)) {
            fputs(HELP, stdout);
            rc = -1;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            NEED_VAL;
            outdir = val;
        } else if (strcmp(a, "--config") == 0) {
            NEED_VAL;
            config_path = val;
        } else if (strcmp(a, "--replace") == 0) {
            replace = true;
        } else if (strcmp(a, "--json") == 0) {
            as_json = true;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            quiet = true;
        } else if (strcmp(a, "-t") == 0 || strcmp(a, "--threads") == 0) {
            NEED_INT(1, 1024);
            threads = n;
        } else if (strcmp(a, "--text-field") == 0 || strcmp(a, "--id-field") == 0 ||
                   strcmp(a, "--column") == 0) {
            NEED_VAL;
            const char *key = a[2] == 't' ? "text_field" : a[2] == 'i' ? "id_field" : "column";
            rc = set_key(flags, "reader", key, json_string(val));
        } else if (strcmp(a, "--no-header") == 0) {
            rc = set_key(flags, "reader", "header", json_false());
        } else if (strcmp(a, "--unit") == 0) {
            NEED_VAL;
            rc = set_key(flags, "reader", "unit", json_string(val));
        } else if (strcmp(a, "--max-doc-bytes") == 0) {
            NEED_INT(1, 1L << 32);
            rc = set_key(flags, "reader", "max_doc_bytes", json_integer(n));
        } else if (step == ANNEAL_STEP_PII && strcmp(a, "--text") == 0) {
            NEED_VAL;
            pii_arg = val;
        } else if (step == ANNEAL_STEP_PII && strcmp(a, "-") == 0) {
            pii_arg = "-";
        } else if (step == ANNEAL_STEP_DEDUP &&
                   (strcmp(a, "--bands") == 0 || strcmp(a, "--rows") == 0 ||
                    strcmp(a, "--ngram") == 0 || strcmp(a, "--seed") == 0)) {
            NEED_INT(0, 1L << 31);
            rc = set_key(flags, "dedup", a + 2, json_integer(n));
        } else if (step == ANNEAL_STEP_DEDUP && strcmp(a, "--spill-dir") == 0) {
            NEED_VAL;
            spill = val;
        } else if (step == ANNEAL_STEP_AUDIT && strcmp(a, "--lexicon") == 0) {
            NEED_VAL;
            rc = set_key(flags, NULL, "lexicon", json_string(val));
        } else if (step == ANNEAL_STEP_AUDIT && strcmp(a, "--print-lexicon") == 0) {
            print_lexicon = true;
        } else if (step == ANNEAL_STEP_SHARD && strcmp(a, "--tokenizer") == 0) {
            NEED_VAL;
            rc = set_key(flags, NULL, "tokenizer", json_string(val));
        } else if (step == ANNEAL_STEP_SHARD && strcmp(a, "--val-fraction") == 0) {
            NEED_VAL;
            char *end = NULL;
            double x = strtod(val, &end);
            if (!end || *end || end == val || !(x >= 0 && x <= 1))
                rc = cli_usage_error("data", "--val-fraction: expected 0..1, got '%s'", val);
            else
                rc = set_key(flags, NULL, "val_fraction", json_real(x));
        } else if (step == ANNEAL_STEP_SHARD &&
                   (strcmp(a, "--seed") == 0 || strcmp(a, "--shard-bytes") == 0)) {
            NEED_INT(0, LONG_MAX);
            rc = set_key(flags, NULL, strcmp(a, "--seed") == 0 ? "seed" : "shard_bytes",
                         json_integer(n));
        } else if (a[0] == '-' && a[1]) {
            rc = cli_usage_error("data", "unknown flag '%s' for %s", a, sub);
        } else {
            inputs[n_inputs++] = a;
        }
#undef NEED_VAL
#undef NEED_INT
    }
    anneal_err err = {0};
    if (rc != CLI_OK) goto out;
    if (print_lexicon) {
        fputs(anneal_audit_default_lexicon(), stdout);
        goto out;
    }
    if (pii_arg) {
        if (n_inputs || outdir) {
            rc = cli_usage_error("data pii", "--text takes no inputs and no -o");
            goto out;
        }
        rc = pii_text(pii_arg, config_path);
        goto out;
    }
    if (!n_inputs) {
        rc = cli_usage_error("data", "%s: no inputs given", sub);
        goto out;
    }
    if (!outdir) {
        rc = cli_usage_error("data", "%s: no output directory (-o OUTDIR)", sub);
        goto out;
    }
    if (config_path) {
        char *buf = NULL;
        size_t len = 0;
        if (anneal_read_file(config_path, MAX_CONFIG_BYTES, &buf, &len, &err)) {
            rc = cli_fail("data", &err);
            goto out;
        }
        json_t *file_cfg = anneal_json_parse(buf, len, config_path, &err);
        anneal_free(buf);
        if (!file_cfg) {
            rc = cli_fail("data", &err);
            goto out;
        }
        if (!json_is_object(file_cfg)) {
            json_decref(file_cfg);
            rc = cli_usage_error("data", "%s: expected a JSON object", config_path);
            goto out;
        }
        json_decref(cfg);
        cfg = file_cfg;
    }
    const char *key;
    json_t *v;
    json_object_foreach(flags, key, v) {
        json_t *cur = json_object_get(cfg, key);
        if (json_is_object(v) && json_is_object(cur)) json_object_update(cur, v);
        else json_object_set(cfg, key, v);
    }
    char *cfg_text = json_dumps(cfg, JSON_COMPACT);
    data_ui ui = {.quiet = quiet, .tty = isatty(2) != 0};
    anneal_data_step_options o = {.step = step,
                                  .config_json = cfg_text,
                                  .config_what = config_path ? config_path : "flags",
                                  .inputs = inputs,
                                  .n_inputs = n_inputs,
                                  .outdir = outdir,
                                  .replace = replace,
                                  .threads = (int)threads,
                                  .spill_dir = spill,
                                  .on_skip = ui_skip,
                                  .progress = ui_progress,
                                  .user = &ui};
    anneal_data_step_result res;
    anneal_status st = anneal_data_step_run(&o, &res, &err);
    free(cfg_text);
    if (ui.bar_open) fputc('\n', stderr);
    rc = st ? cli_fail("data", &err) : print_result(sub, outdir, &res, as_json);
out:
    anneal_free(inputs);
    json_decref(cfg);
    json_decref(flags);
    return rc < 0 ? CLI_OK : rc;
}
