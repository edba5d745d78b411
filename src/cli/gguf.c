// `anneal gguf`: show a GGUF file's metadata, lineage and tensor table (text or JSON), or
// verify it.
#include "cli/cli.h"

#include "anneal/gguf.h"
#include "anneal/lineage.h"
#include "anneal/tensor.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

static const char *HELP =
    "usage: anneal gguf <subcommand> FILE [flags]\n"
    "Inspects and checks GGUF model and vocabulary files.\n"
    "\n"
    "subcommands:\n"
    "  show FILE [--json] [--all]   metadata, then the tensor table\n"
    "  verify FILE                  full validation; one summary line\n"
    "\n"
    "`anneal gguf <subcommand> --help` for details. Exit status: 0 ok, 1 invalid\n"
    "or unreadable file, 2 usage error.\n";

static const char *HELP_SHOW =
    "usage: anneal gguf show FILE [--json] [--all]\n"
    "Prints the header, every key/value (type and value), the anneal.lineage.* keys parsed\n"
    "(when the file has them: each parent's role, SHA-256 and path, the command, config,\n"
    "tool and creation time) and the tensor table (name, type, dims innermost first, offset\n"
    "within the data section, bytes).\n"
    "Long arrays show their first elements and \"... (N items)\", long strings are cut.\n"
    "\n"
    "  --json   one JSON document instead of text (arrays cut the same way, marked\n"
    "           \"truncated\": true; \"lineage\" is an object, or null without lineage)\n"
    "  --all    every array element and the whole of every string\n";

static const char *HELP_VERIFY =
    "usage: anneal gguf verify FILE\n"
    "Validates the whole file (header, every key/value, tensor infos, alignment, that every\n"
    "tensor lies inside the file and none overlap) and prints one line. Exit 0 when valid,\n"
    "1 with the error (byte offset and what) when not.\n";

// Text limits when --all is not given.
#define SHOW_ARRAY_ITEMS 8
#define SHOW_STR_BYTES 80
#define SHOW_ELEM_STR_BYTES 40

// Writes s as a double-quoted string, escaped (so a hostile file cannot drive the terminal),
// cut after `max` bytes (0 = all).
static void put_str(FILE *f, const char *s, uint64_t len, uint64_t max) {
    fputc('"', f);
    size_t done = cli_put_escaped(f, s, (size_t)len, (size_t)max, CLI_ESC_DQUOTE | CLI_ESC_C1);
    if (done < len)
        fprintf(f, "...\" (%" PRIu64 " bytes)", len);
    else
        fputc('"', f);
}

// A key or tensor name: bare when it is plain printable ASCII (the usual case), padded to
// `width`; quoted and escaped otherwise.
static void put_name(FILE *f, anneal_gguf_str name, int width, bool all) {
    bool plain = name.len > 0 && (all || name.len <= SHOW_STR_BYTES);
    for (uint64_t i = 0; plain && i < name.len; i++)
        plain = name.ptr[i] > 0x20 && name.ptr[i] < 0x7F && name.ptr[i] != '"';
    if (plain) {
        fprintf(f, "%-*.*s", width, (int)name.len, name.ptr);
        return;
    }
    put_str(f, name.ptr, name.len, all ? 0 : SHOW_STR_BYTES);
}

static void put_scalar(FILE *f, const anneal_gguf_value *v, bool json) {
    switch (v->type) {
    case ANNEAL_GGUF_UINT8:
    case ANNEAL_GGUF_UINT16:
    case ANNEAL_GGUF_UINT32:
    case ANNEAL_GGUF_UINT64:
        fprintf(f, "%" PRIu64, v->u64);
        break;
    case ANNEAL_GGUF_INT8:
    case ANNEAL_GGUF_INT16:
    case ANNEAL_GGUF_INT32:
    case ANNEAL_GGUF_INT64:
        fprintf(f, "%" PRId64, v->i64);
        break;
    case ANNEAL_GGUF_BOOL:
        fputs(v->b ? "true" : "false", f);
        break;
    case ANNEAL_GGUF_FLOAT32:
    case ANNEAL_GGUF_FLOAT64:
        if (!isfinite(v->f64))
            fputs(json ? "null" : isnan(v->f64) ? "nan" : v->f64 > 0 ? "inf" : "-inf", f);
        else
            fprintf(f, v->type == ANNEAL_GGUF_FLOAT32 ? "%.9g" : "%.17g", v->f64);
        break;
    default:
        break;
    }
}

// One scalar element of a packed array, decoded as a value.
static anneal_gguf_value elem_at(const anneal_gguf_value *arr, uint64_t i) {
    anneal_gguf_value v = {.type = arr->arr.elem};
    switch (arr->arr.elem) {
    case ANNEAL_GGUF_FLOAT32:
    case ANNEAL_GGUF_FLOAT64:
        v.f64 = anneal_gguf_arr_f64(arr, i);
        break;
    case ANNEAL_GGUF_BOOL:
        v.b = anneal_gguf_arr_i64(arr, i) != 0;
        break;
    case ANNEAL_GGUF_UINT64: {
        uint64_t bits = 0;
        for (int k = 7; k >= 0; k--)
            bits = bits << 8 | arr->arr.data[i * 8 + (uint64_t)k];
        v.u64 = bits;
        break;
    }
    case ANNEAL_GGUF_UINT8:
    case ANNEAL_GGUF_UINT16:
    case ANNEAL_GGUF_UINT32:
        v.u64 = (uint64_t)anneal_gguf_arr_i64(arr, i);
        break;
    default:
        v.i64 = anneal_gguf_arr_i64(arr, i);
        break;
    }
    return v;
}

static void put_array(FILE *f, const anneal_gguf_value *v, bool all, bool json);

static void put_value(FILE *f, const anneal_gguf_value *v, bool all, bool json, uint64_t str_max) {
    if (v->type == ANNEAL_GGUF_STRING) {
        if (json)
            anneal_json_write_str(f, v->str.ptr, (size_t)v->str.len);
        else
            put_str(f, v->str.ptr, v->str.len, all ? 0 : str_max);
    } else if (v->type == ANNEAL_GGUF_ARRAY) {
        put_array(f, v, all, json);
    } else {
        put_scalar(f, v, json);
    }
}

static void put_array(FILE *f, const anneal_gguf_value *v, bool all, bool json) {
    uint64_t n = v->arr.n, shown = all || n <= SHOW_ARRAY_ITEMS ? n : SHOW_ARRAY_ITEMS;
    fputc('[', f);
    for (uint64_t i = 0; i < shown; i++) {
        if (i) fputs(", ", f);
        if (v->arr.elem == ANNEAL_GGUF_STRING) {
            anneal_gguf_value s = {.type = ANNEAL_GGUF_STRING, .str = v->arr.strs[i]};
            put_value(f, &s, all, json, SHOW_ELEM_STR_BYTES);
        } else if (v->arr.elem == ANNEAL_GGUF_ARRAY) {
            put_array(f, &v->arr.vals[i], all, json);
        } else {
            anneal_gguf_value e = elem_at(v, i);
            put_scalar(f, &e, json);
        }
    }
    if (shown < n && !json) fprintf(f, ", ... (%" PRIu64 " items)", n);
    fputc(']', f);
}

// "u32", "str", "arr[str,32000]", "arr[arr,3]".
static void type_desc(char *buf, size_t cap, const anneal_gguf_value *v) {
    if (v->type == ANNEAL_GGUF_ARRAY)
        snprintf(buf, cap, "arr[%s,%" PRIu64 "]", anneal_gguf_type_name(v->arr.elem), v->arr.n);
    else
        snprintf(buf, cap, "%s", anneal_gguf_type_name(v->type));
}

static void put_dims(FILE *f, const anneal_gguf_tensor *t) {
    fputc('[', f);
    for (uint32_t d = 0; d < t->n_dims; d++)
        fprintf(f, "%s%" PRIu64, d ? ", " : "", t->dims[d]);
    fputc(']', f);
}

// A value read from the file, escaped.
static void put_plain(FILE *f, const char *s) {
    cli_put_escaped(f, s, strlen(s), 0, CLI_ESC_C1);
}

// The lineage section: nothing when the file has no anneal.lineage.* key, the reason when
// the keys are malformed (the file is still valid GGUF, so this is not an error).
static void show_lineage_text(const anneal_gguf *g) {
    anneal_lineage *lin = NULL;
    anneal_err err = {0};
    anneal_status st = anneal_lineage_read(g, &lin, &err);
    if (st == ANNEAL_ERR_NOT_FOUND) return;
    if (st) {
        const char *msg = anneal_err_msg(&err);
        if (strncmp(msg, "lineage: ", 9) == 0) msg += 9;
        fputs("\nlineage: unreadable: ", stdout);
        put_plain(stdout, msg);
        fputc('\n', stdout);
        return;
    }
    printf("\nlineage:\n");
    if (lin->n_parents == 0) printf("  parents  (none)\n");
    for (size_t i = 0; i < lin->n_parents; i++) {
        const anneal_lineage_parent *p = &lin->parents[i];
        printf("  parent   %-8s sha256:%s  ", p->role, p->sha256);
        put_plain(stdout, p->path);
        fputc('\n', stdout);
    }
    const char *names[] = {"command", "config", "tool", "created"};
    const char *vals[] = {lin->command, lin->config, lin->tool, lin->created};
    for (int k = 0; k < 4; k++) {
        printf("  %-8s ", names[k]);
        put_plain(stdout, vals[k]);
        fputc('\n', stdout);
    }
    anneal_lineage_free(lin);
}

static void put_json_str(FILE *f, const char *s) {
    anneal_json_write_str(f, s, strlen(s));
}

// "lineage": null without lineage keys, {"error": ...} when they are malformed.
static void show_lineage_json(const anneal_gguf *g) {
    anneal_lineage *lin = NULL;
    anneal_err err = {0};
    anneal_status st = anneal_lineage_read(g, &lin, &err);
    fputs(",\n \"lineage\": ", stdout);
    if (st == ANNEAL_ERR_NOT_FOUND) {
        fputs("null", stdout);
        return;
    }
    if (st) {
        fputs("{\"error\": ", stdout);
        put_json_str(stdout, anneal_err_msg(&err));
        fputc('}', stdout);
        return;
    }
    fputs("{\"parents\": [", stdout);
    for (size_t i = 0; i < lin->n_parents; i++) {
        const anneal_lineage_parent *p = &lin->parents[i];
        fputs(i ? ", {\"role\": " : "{\"role\": ", stdout);
        put_json_str(stdout, p->role);
        fputs(", \"sha256\": ", stdout);
        put_json_str(stdout, p->sha256);
        fputs(", \"path\": ", stdout);
        put_json_str(stdout, p->path);
        fputc('}', stdout);
    }
    fputs("], \"command\": ", stdout);
    put_json_str(stdout, lin->command);
    // The config is a JSON object: embedded as one when it parses as one, else as a string.
    fputs(", \"config\": ", stdout);
    json_t *cfg = json_loads(lin->config, 0, NULL);
    if (json_is_object(cfg))
        fputs(lin->config, stdout);
    else
        put_json_str(stdout, lin->config);
    json_decref(cfg);
    fputs(", \"tool\": ", stdout);
    put_json_str(stdout, lin->tool);
    fputs(", \"created\": ", stdout);
    put_json_str(stdout, lin->created);
    fputc('}', stdout);
    anneal_lineage_free(lin);
}

static void show_text(const char *path, const anneal_gguf *g, bool all) {
    uint64_t nk = anneal_gguf_n_kv(g), nt = anneal_gguf_n_tensors(g);
    printf("%s: GGUF v%" PRIu32 ", %" PRIu64 " key/values, %" PRIu64 " tensors, alignment %" PRIu64
           ", data section at %" PRIu64 ", file size %" PRIu64 "\n",
           path, anneal_gguf_version(g), nk, nt, anneal_gguf_alignment(g),
           anneal_gguf_data_offset(g), anneal_gguf_file_size(g));
    printf("\nmetadata (%" PRIu64 "):\n", nk);
    for (uint64_t i = 0; i < nk; i++) {
        const anneal_gguf_kv *kv = anneal_gguf_kv_at(g, i);
        char type[48];
        type_desc(type, sizeof type, &kv->value);
        fputs("  ", stdout);
        put_name(stdout, kv->key, 40, all);
        printf(" %-16s = ", type);
        put_value(stdout, &kv->value, all, false, SHOW_STR_BYTES);
        fputc('\n', stdout);
    }
    show_lineage_text(g);
    printf("\ntensors (%" PRIu64 "):\n", nt);
    if (nt)
        printf("  %5s  %-40s %-18s %14s %14s  %s\n", "#", "name", "type", "offset", "bytes",
               "dims");
    for (uint64_t i = 0; i < nt; i++) {
        const anneal_gguf_tensor *t = anneal_gguf_tensor_at(g, i);
        const anneal_type_info *ti = anneal_type_get(t->type);
        char type[40];
        if (ti)
            snprintf(type, sizeof type, "%s", ti->name);
        else
            snprintf(type, sizeof type, "type %" PRIu32 " (unknown)", t->type);
        printf("  %5" PRIu64 "  ", i);
        put_name(stdout, t->name, 40, all);
        printf(" %-18s %14" PRIu64 " ", type, t->offset);
        if (ti)
            printf("%14" PRIu64 "  ", t->nbytes);
        else
            printf("%14s  ", "?");
        put_dims(stdout, t);
        fputc('\n', stdout);
    }
}

static void show_json(const char *path, const anneal_gguf *g, bool all) {
    uint64_t nk = anneal_gguf_n_kv(g), nt = anneal_gguf_n_tensors(g);
    fputs("{\"file\": ", stdout);
    anneal_json_write_str(stdout, path, strlen(path));
    printf(", \"version\": %" PRIu32 ", \"alignment\": %" PRIu64 ", \"data_offset\": %" PRIu64
           ", \"file_size\": %" PRIu64 ",\n \"metadata\": [",
           anneal_gguf_version(g), anneal_gguf_alignment(g), anneal_gguf_data_offset(g),
           anneal_gguf_file_size(g));
    for (uint64_t i = 0; i < nk; i++) {
        const anneal_gguf_kv *kv = anneal_gguf_kv_at(g, i);
        const anneal_gguf_value *v = &kv->value;
        fputs(i ? ",\n  {\"key\": " : "\n  {\"key\": ", stdout);
        anneal_json_write_str(stdout, kv->key.ptr, (size_t)kv->key.len);
        printf(", \"type\": \"%s\"", anneal_gguf_type_name(v->type));
        if (v->type == ANNEAL_GGUF_ARRAY) {
            printf(", \"elem\": \"%s\", \"n\": %" PRIu64, anneal_gguf_type_name(v->arr.elem),
                   v->arr.n);
            if (!all && v->arr.n > SHOW_ARRAY_ITEMS) fputs(", \"truncated\": true", stdout);
        }
        fputs(", \"value\": ", stdout);
        put_value(stdout, v, all, true, 0);
        fputc('}', stdout);
    }
    fputs(nk ? "\n ]" : "]", stdout);
    show_lineage_json(g);
    fputs(",\n \"tensors\": [", stdout);
    for (uint64_t i = 0; i < nt; i++) {
        const anneal_gguf_tensor *t = anneal_gguf_tensor_at(g, i);
        const anneal_type_info *ti = anneal_type_get(t->type);
        fputs(i ? ",\n  {\"name\": " : "\n  {\"name\": ", stdout);
        anneal_json_write_str(stdout, t->name.ptr, (size_t)t->name.len);
        if (ti)
            printf(", \"type\": \"%s\"", ti->name);
        else
            fputs(", \"type\": null", stdout);
        printf(", \"type_id\": %" PRIu32 ", \"dims\": ", t->type);
        put_dims(stdout, t);
        printf(", \"offset\": %" PRIu64, t->offset);
        if (ti)
            printf(", \"nbytes\": %" PRIu64 "}", t->nbytes);
        else
            fputs(", \"nbytes\": null}", stdout);
    }
    fputs(nt ? "\n ]}\n" : "]}\n", stdout);
}

static int cmd_show(int argc, char **argv) {
    const char *path = NULL;
    bool json = false, all = false;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(HELP_SHOW, stdout);
            return CLI_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--all") == 0) {
            all = true;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return cli_usage_error("gguf show", "unknown flag '%s'", argv[i]);
        } else if (path) {
            return cli_usage_error("gguf show", "one FILE only (got '%s' and '%s')", path, argv[i]);
        } else {
            path = argv[i];
        }
    }
    if (!path) return cli_usage_error("gguf show", "missing FILE");
    anneal_gguf *g = NULL;
    anneal_err err = {0};
    if (anneal_gguf_open(path, &g, &err)) return cli_fail("gguf", &err);
    if (json)
        show_json(path, g, all);
    else
        show_text(path, g, all);
    anneal_gguf_close(g);
    return fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
}

static int cmd_verify(int argc, char **argv) {
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(HELP_VERIFY, stdout);
            return CLI_OK;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return cli_usage_error("gguf verify", "unknown flag '%s'", argv[i]);
        } else if (path) {
            return cli_usage_error("gguf verify", "one FILE only (got '%s' and '%s')", path,
                                   argv[i]);
        } else {
            path = argv[i];
        }
    }
    if (!path) return cli_usage_error("gguf verify", "missing FILE");
    anneal_gguf *g = NULL;
    anneal_err err = {0};
    if (anneal_gguf_open(path, &g, &err)) return cli_fail("gguf", &err);
    uint64_t nt = anneal_gguf_n_tensors(g), data = 0, unknown = 0;
    for (uint64_t i = 0; i < nt; i++) {
        const anneal_gguf_tensor *t = anneal_gguf_tensor_at(g, i);
        if (anneal_type_get(t->type))
            data += t->nbytes;
        else
            unknown++;
    }
    printf("%s: ok: GGUF v%" PRIu32 ", %" PRIu64 " key/values, %" PRIu64 " tensors (%" PRIu64
           " bytes of data), alignment %" PRIu64,
           path, anneal_gguf_version(g), anneal_gguf_n_kv(g), nt, data, anneal_gguf_alignment(g));
    if (unknown) printf("; %" PRIu64 " tensors of unknown type (sizes not checked)", unknown);
    fputc('\n', stdout);
    anneal_gguf_close(g);
    return CLI_OK;
}

int cmd_gguf(int argc, char **argv) {
    if (argc < 2) {
        fputs(HELP, stderr);
        return CLI_USAGE;
    }
    if (cli_is_help(argv[1])) {
        fputs(HELP, stdout);
        return CLI_OK;
    }
    if (strcmp(argv[1], "show") == 0) return cmd_show(argc - 1, argv + 1);
    if (strcmp(argv[1], "verify") == 0) return cmd_verify(argc - 1, argv + 1);
    return cli_usage_error("gguf", "unknown subcommand '%s'", argv[1]);
}
