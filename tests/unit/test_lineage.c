// Lineage keys: shell quoting of the command, writing and reading back every key, the time
// override, and the errors for malformed values on both sides.
#include "anneal/gguf.h"
#include "anneal/lineage.h"
#include "test.h"

#include <stdlib.h>
#include <unistd.h>

static char tmp_dir[] = "/tmp/anneal_lineage_XXXXXX";

static const char *tmp_path(const char *name) {
    static char buf[256];
    snprintf(buf, sizeof buf, "%s/%s", tmp_dir, name);
    return buf;
}

static void test_command_quoting(void) {
    char *argv[] = {"quantize", "in file.gguf", "it's", "", "q4_K_M", "--x=a,b", "$HOME", NULL};
    char *s = anneal_lineage_command(7, argv);
    CHECK_STR(s, "anneal quantize 'in file.gguf' 'it'\\''s' '' q4_K_M --x=a,b '$HOME'");
    anneal_free(s);
    s = anneal_lineage_command(0, argv);
    CHECK_STR(s, "anneal");
    anneal_free(s);
}

static void test_time(void) {
    char buf[32];
    anneal_err err = {0};
    setenv(ANNEAL_LINEAGE_TIME_ENV, "2024-02-29T23:59:59Z", 1);
    CHECK_EQ(anneal_lineage_time(buf, sizeof buf, &err), ANNEAL_OK);
    CHECK_STR(buf, "2024-02-29T23:59:59Z");
    const char *bad[] = {"2026-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-01-01 00:00:00Z",
                         "2026-01-01T24:00:00Z", "2026-01-01T00:00:00",  "yesterday"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        anneal_err_clear(&err);
        setenv(ANNEAL_LINEAGE_TIME_ENV, bad[i], 1);
        CHECK_EQ(anneal_lineage_time(buf, sizeof buf, &err), ANNEAL_ERR_INVALID_ARG);
        CHECK_CONTAINS(err.msg, ANNEAL_LINEAGE_TIME_ENV);
    }
    unsetenv(ANNEAL_LINEAGE_TIME_ENV);
    CHECK_EQ(anneal_lineage_time(buf, sizeof buf, NULL), ANNEAL_OK);
    CHECK_EQ(strlen(buf), 20);
    CHECK(buf[10] == 'T' && buf[19] == 'Z');
}

static void test_parent_file(void) {
    const char *p = tmp_path("abc.txt");
    CHECK_EQ(anneal_write_file_atomic(p, "abc", 3, NULL), ANNEAL_OK);
    anneal_lineage_parent par;
    CHECK_EQ(anneal_lineage_parent_file(&par, "input", p, NULL), ANNEAL_OK);
    CHECK_STR(par.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK_STR(par.role, "input");
    anneal_err err = {0};
    CHECK_EQ(anneal_lineage_parent_file(&par, "input", tmp_path("missing"), &err), ANNEAL_ERR_IO);
    CHECK_CONTAINS(err.msg, "missing");
}

static void test_roundtrip(void) {
    setenv(ANNEAL_LINEAGE_TIME_ENV, "2026-11-29T10:00:00Z", 1);
    anneal_lineage_parent ps[2] = {
        {.sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
         .role = "base",
         .path = "models/base model.gguf"},
        {.sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
         .role = "dataset",
         .path = "data/v3/manifest.json"},
    };
    anneal_lineage lin = {.parents = ps,
                          .n_parents = 2,
                          .command = "anneal train --lr 3e-4",
                          .config = "{\"lr\":0.0003,\"steps\":10}",
                          .tool = "ignored",
                          .created = "ignored"};
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    anneal_gguf_writer_set_str(w, "general.architecture", "llama");
    // A stale lineage key from a parent is replaced, not duplicated.
    anneal_gguf_writer_set_str(w, ANNEAL_LINEAGE_KEY_COMMAND, "old");
    anneal_err err = {0};
    CHECK_EQ(anneal_lineage_set(w, &lin, &err), ANNEAL_OK);
    const char *path = tmp_path("lin.gguf");
    CHECK_EQ(anneal_gguf_writer_write(w, path, &err), ANNEAL_OK);
    anneal_gguf_writer_free(w);

    anneal_gguf *g = NULL;
    CHECK_EQ(anneal_gguf_open(path, &g, &err), ANNEAL_OK);
    CHECK_EQ(anneal_gguf_n_kv(g), 6);
    anneal_gguf_str s;
    CHECK_EQ(anneal_gguf_get_str(g, ANNEAL_LINEAGE_KEY_COMMAND, &s, NULL), ANNEAL_OK);
    const anneal_gguf_value *arr;
    CHECK_EQ(anneal_gguf_get_arr(g, ANNEAL_LINEAGE_KEY_PARENTS, ANNEAL_GGUF_STRING, &arr, NULL),
             ANNEAL_OK);
    CHECK_EQ(arr->arr.n, 2);
    CHECK_EQ(arr->arr.strs[0].len, 7 + 64 + 1 + 4 + 1 + 22);
    CHECK(memcmp(arr->arr.strs[0].ptr,
                 "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad base "
                 "models/base model.gguf",
                 (size_t)arr->arr.strs[0].len) == 0);

    anneal_lineage *r = NULL;
    CHECK_EQ(anneal_lineage_read(g, &r, &err), ANNEAL_OK);
    if (r) {
        CHECK_EQ(r->n_parents, 2);
        CHECK_STR(r->parents[0].sha256, ps[0].sha256);
        CHECK_STR(r->parents[0].role, "base");
        CHECK_STR(r->parents[0].path, "models/base model.gguf");
        CHECK_STR(r->parents[1].sha256, ps[1].sha256);
        CHECK_STR(r->parents[1].role, "dataset");
        CHECK_STR(r->parents[1].path, "data/v3/manifest.json");
        CHECK_STR(r->command, "anneal train --lr 3e-4");
        CHECK_STR(r->config, "{\"lr\":0.0003,\"steps\":10}");
        CHECK(strncmp(r->tool, "anneal ", 7) == 0 && strlen(r->tool) > 7); // "anneal <version>"
        CHECK_STR(r->created, "2026-11-29T10:00:00Z");
    }
    anneal_lineage_free(r);
    anneal_gguf_close(g);
    unsetenv(ANNEAL_LINEAGE_TIME_ENV);
}

static void test_set_errors(void) {
    anneal_lineage_parent p = {
        .sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        .role = "input",
        .path = "x.gguf"};
    struct {
        const char *role, *sha, *path, *command, *config, *want;
    } cases[] = {
        {"In put", NULL, NULL, NULL, NULL, "role"},
        {"", NULL, NULL, NULL, NULL, "role"},
        {NULL, "BA7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", NULL, NULL, NULL,
         "sha256"},
        {NULL, "abc", NULL, NULL, NULL, "sha256"},
        {NULL, NULL, "a\nb", NULL, NULL, "path"},
        {NULL, NULL, NULL, "anneal x\nrm -rf", NULL, "command"},
        {NULL, NULL, NULL, NULL, "[1,2]", "not a JSON object"},
        {NULL, NULL, NULL, NULL, "{\"a\":", "lineage config"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        anneal_lineage_parent q = p;
        if (cases[i].role) q.role = cases[i].role;
        if (cases[i].sha) snprintf(q.sha256, sizeof q.sha256, "%s", cases[i].sha);
        if (cases[i].path) q.path = cases[i].path;
        anneal_lineage lin = {
            .parents = &q, .n_parents = 1, .command = cases[i].command, .config = cases[i].config};
        anneal_gguf_writer *w = anneal_gguf_writer_new();
        anneal_err err = {0};
        CHECK(anneal_lineage_set(w, &lin, &err) != ANNEAL_OK);
        CHECK_CONTAINS(err.msg, cases[i].want);
        anneal_gguf_writer_free(w);
    }
    // No parents and no config are fine: an empty array and "{}".
    anneal_lineage none = {0};
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    CHECK_EQ(anneal_lineage_set(w, &none, NULL), ANNEAL_OK);
    CHECK_EQ(anneal_gguf_writer_write(w, tmp_path("none.gguf"), NULL), ANNEAL_OK);
    anneal_gguf_writer_free(w);
    anneal_gguf *g = NULL;
    anneal_lineage *r = NULL;
    CHECK_EQ(anneal_gguf_open(tmp_path("none.gguf"), &g, NULL), ANNEAL_OK);
    CHECK_EQ(anneal_lineage_read(g, &r, NULL), ANNEAL_OK);
    if (r) {
        CHECK_EQ(r->n_parents, 0);
        CHECK_STR(r->config, "{}");
        CHECK_STR(r->command, "");
    }
    anneal_lineage_free(r);
    anneal_gguf_close(g);
}

// Writes a file whose lineage keys are as given (NULL = absent) and reads it back.
static anneal_status read_crafted(const char *parent, bool parents_as_str, const char *command,
                                  anneal_err *err) {
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    anneal_gguf_writer_set_str(w, "general.name", "x");
    if (parent) {
        if (parents_as_str) {
            anneal_gguf_writer_set_str(w, ANNEAL_LINEAGE_KEY_PARENTS, parent);
        } else {
            anneal_gguf_str s = {parent, strlen(parent)};
            anneal_gguf_value v = {.type = ANNEAL_GGUF_ARRAY};
            v.arr.elem = ANNEAL_GGUF_STRING;
            v.arr.n = 1;
            v.arr.strs = &s;
            anneal_gguf_writer_set_value(w, ANNEAL_LINEAGE_KEY_PARENTS, &v);
        }
    }
    if (command) anneal_gguf_writer_set_str(w, ANNEAL_LINEAGE_KEY_COMMAND, command);
    anneal_gguf_writer_set_str(w, ANNEAL_LINEAGE_KEY_CONFIG, "{}");
    anneal_gguf_writer_set_str(w, ANNEAL_LINEAGE_KEY_TOOL, "anneal 0");
    anneal_gguf_writer_set_u32(w, ANNEAL_LINEAGE_KEY_CREATED, 7);
    anneal_gguf_writer_write(w, tmp_path("crafted.gguf"), NULL);
    anneal_gguf_writer_free(w);
    anneal_gguf *g = NULL;
    anneal_status st = anneal_gguf_open(tmp_path("crafted.gguf"), &g, err);
    anneal_lineage *r = NULL;
    if (!st) st = anneal_lineage_read(g, &r, err);
    anneal_lineage_free(r);
    anneal_gguf_close(g);
    return st;
}

static void test_read_errors(void) {
    // No lineage at all.
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    anneal_gguf_writer_set_str(w, "general.name", "x");
    anneal_gguf_writer_write(w, tmp_path("plain.gguf"), NULL);
    anneal_gguf_writer_free(w);
    anneal_gguf *g = NULL;
    anneal_lineage *r = (anneal_lineage *)1;
    anneal_err err = {0};
    CHECK_EQ(anneal_gguf_open(tmp_path("plain.gguf"), &g, NULL), ANNEAL_OK);
    CHECK_EQ(anneal_lineage_read(g, &r, &err), ANNEAL_ERR_NOT_FOUND);
    CHECK(r == NULL);
    anneal_gguf_close(g);

    const char *good = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad "
                       "input a.gguf";
    // created is a u32 in every crafted file: the first complaint is about it, unless an
    // earlier key is already wrong.
    anneal_err_clear(&err);
    CHECK_EQ(read_crafted(good, false, "c", &err), ANNEAL_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "anneal.lineage.created");
    const char *bad_parents[] = {
        "sha256:ba78 input a.gguf",
        "md5:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad input a.gguf",
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad input",
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad input ",
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad In a.gguf",
        "sha256:BA7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad input a.gguf",
    };
    for (size_t i = 0; i < sizeof bad_parents / sizeof bad_parents[0]; i++) {
        anneal_err_clear(&err);
        CHECK_EQ(read_crafted(bad_parents[i], false, "c", &err), ANNEAL_ERR_FORMAT);
        CHECK_CONTAINS(err.msg, "anneal.lineage.");
    }
    anneal_err_clear(&err);
    CHECK_EQ(read_crafted(good, true, "c", &err), ANNEAL_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "'anneal.lineage.parents' is not an array of str");
    anneal_err_clear(&err);
    CHECK_EQ(read_crafted(good, false, NULL, &err), ANNEAL_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "'anneal.lineage.command' is missing");
    anneal_err_clear(&err);
    CHECK_EQ(read_crafted(NULL, false, "c", &err), ANNEAL_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "'anneal.lineage.parents' is missing");
}

int main(void) {
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_command_quoting);
    RUN(test_time);
    RUN(test_parent_file);
    RUN(test_roundtrip);
    RUN(test_set_errors);
    RUN(test_read_errors);
    const char *files[] = {"abc.txt", "lin.gguf", "none.gguf", "crafted.gguf", "plain.gguf"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        unlink(tmp_path(files[i]));
    rmdir(tmp_dir);
    return TEST_EXIT();
}
