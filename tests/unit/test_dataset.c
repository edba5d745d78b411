// Dataset directories: write and commit, manifest contents, byte-identical reruns, verify
// catching changed, missing and extra files, abort, refusing or replacing OUTDIR, and write
// failures (RLIMIT_FSIZE) that leave neither OUTDIR nor the temporary directory.
#include "anneal/data.h"
#include "test.h"

#include <dirent.h>
#include <ftw.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static char base[256];

static int rm_cb(const char *p, const struct stat *sb, int fl, struct FTW *f) {
    (void)sb;
    (void)fl;
    (void)f;
    return remove(p);
}

static void setup(void) {
    snprintf(base, sizeof base, "/tmp/anneal_test_dataset_XXXXXX");
    CHECK(mkdtemp(base) != NULL);
}

static void teardown(void) {
    nftw(base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *at(const char *rel) {
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", base, rel);
    return p[k];
}

// Entries directly in base, sorted and joined by spaces.
static const char *listing(void) {
    static char out[1024];
    char *names[64];
    int n = 0;
    DIR *d = opendir(base);
    struct dirent *e;
    while (d && (e = readdir(d)) && n < 64)
        if (e->d_name[0] != '.') names[n++] = strdup(e->d_name);
    if (d) closedir(d);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(names[j], names[i]) < 0) {
                char *t = names[i];
                names[i] = names[j];
                names[j] = t;
            }
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        if (i) strcat(out, " ");
        strcat(out, names[i]);
        free(names[i]);
    }
    return out;
}

static char *slurp(const char *path, size_t *n) {
    char *d = NULL;
    size_t len = 0;
    if (anneal_read_file(path, 1 << 26, &d, &len, NULL) != ANNEAL_OK) return NULL;
    if (n) *n = len;
    return d;
}

static void spit(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fputs(s, f);
    fclose(f);
}

static anneal_doc mkdoc(const char *id, const char *text, const char *source, const char *meta) {
    anneal_doc d = {id, strlen(id), text, strlen(text), source, meta, meta ? strlen(meta) : 0};
    return d;
}

// One complete step: three documents, one removed, a report, a shard; returns the version.
static anneal_status write_sample(const char *outdir, unsigned flags, char version[65],
                                  anneal_err *err) {
    anneal_dataset_writer *w = NULL;
    anneal_status st = anneal_dataset_create(outdir, "clean", flags, &w, err);
    if (st) return st;
    anneal_doc d1 = mkdoc("d1", "h\xc3\xa9llo\n\"x\"\x01\xff", "in.txt:1", "{\"k\":\n1}");
    anneal_doc d2 = mkdoc("d2", "second", "in.txt:3", NULL);
    anneal_doc d3 = mkdoc("d3", "gone", "in.txt:5", "{}");
    CHECK_EQ(anneal_dataset_write_doc(w, &d1, err), ANNEAL_OK);
    CHECK_EQ(anneal_dataset_write_doc(w, &d2, err), ANNEAL_OK);
    CHECK_EQ(anneal_dataset_write_removed(w, &d3, "too_short", "{\"words\": 1}", err), ANNEAL_OK);
    CHECK_EQ(anneal_dataset_write_file(w, "report.json", "{}\n", 3, err), ANNEAL_OK);
    char shards[4096];
    CHECK_EQ(anneal_dataset_mkdir(w, "shards", shards, sizeof shards, err), ANNEAL_OK);
    anneal_shard_writer *sw = NULL;
    CHECK_EQ(anneal_shard_writer_new(shards, "train", 100, 0, 0, &sw, err), ANNEAL_OK);
    int32_t toks[3] = {5, 6, 7};
    CHECK_EQ(anneal_shard_writer_add(sw, toks, 3, err), ANNEAL_OK);
    CHECK_EQ(anneal_shard_writer_finish(sw, err), ANNEAL_OK);
    anneal_shard_writer_free(sw);
    uint64_t nd, nr;
    anneal_dataset_stats(w, &nd, &nr);
    CHECK_EQ(nd, 2);
    CHECK_EQ(nr, 1);
    anneal_manifest_input in = {.path = at("input.txt")};
    anneal_manifest_info info = {.inputs = &in,
                                 .n_inputs = 1,
                                 .config_json =
                                     "{\"min_words\": 3, \"lang\": [\"en\"], \"z\": 0.5}",
                                 .counts_json = "{\"documents\": 2, \"removed\": 1}"};
    st = anneal_dataset_commit(w, &info, version, err);
    anneal_dataset_writer_free(w);
    return st;
}

static void test_write_commit(void) {
    setup();
    spit(at("input.txt"), "one\ntwo\n");
    anneal_err err = {0};
    char version[65];
    CHECK_EQ(write_sample(at("out"), 0, version, &err), ANNEAL_OK);
    CHECK_STR(listing(), "input.txt out");
    char *docs = slurp(at("out/docs/00000.jsonl"), NULL);
    CHECK_STR(docs, "{\"id\":\"d1\",\"text\":\"h\xc3\xa9llo\\n\\\"x\\\"\\u0001\\ufffd\","
                    "\"source\":\"in.txt:1\",\"meta\":{\"k\": 1}}\n"
                    "{\"id\":\"d2\",\"text\":\"second\",\"source\":\"in.txt:3\",\"meta\":{}}\n");
    anneal_free(docs);
    char *removed = slurp(at("out/removed.jsonl"), NULL);
    CHECK_STR(removed, "{\"id\":\"d3\",\"source\":\"in.txt:5\",\"reason\":\"too_short\","
                       "\"detail\":{\"words\": 1}}\n");
    anneal_free(removed);

    size_t mlen;
    char *man = slurp(at("out/manifest.json"), &mlen);
    CHECK(man != NULL);
    if (!man) return teardown();
    uint8_t digest[32];
    char hex[65];
    anneal_sha256_buf(man, mlen, digest);
    anneal_hex(digest, 32, hex);
    CHECK_STR(hex, version);
    char v2[65];
    CHECK_EQ(anneal_dataset_version(at("out"), v2, &err), ANNEAL_OK);
    CHECK_STR(v2, version);
    // the head of the manifest, byte for byte; then the parsed rest
    char head[512];
    snprintf(head, sizeof head,
             "{\n  \"format\": \"anneal-dataset\",\n  \"format_version\": 1,\n"
             "  \"step\": \"clean\",\n  \"tool\": \"anneal %s\",\n  \"parent\": null,\n"
             "  \"inputs\": [\n    {\n      \"path\": \"%s\",\n      \"bytes\": 8,\n"
             "      \"sha256\": \"",
             "0.1.0", at("input.txt"));
    CHECK(strncmp(man, head, strlen(head)) == 0);
    CHECK_CONTAINS(man, "  \"config\": {\n    \"min_words\": 3,\n    \"lang\": [\n      \"en\"\n"
                        "    ],\n    \"z\": 0.5\n  },\n  \"counts\": {\n    \"documents\": 2,\n"
                        "    \"removed\": 1\n  },\n  \"outputs\": [\n");
    CHECK(man[mlen - 1] == '\n' && man[mlen - 2] == '}');
    CHECK(strstr(man, "tmp-") == NULL);
    json_t *m = json_loads(man, 0, NULL);
    json_t *outs = json_object_get(m, "outputs");
    CHECK_EQ(json_array_size(outs), 4);
    const char *want[4] = {"docs/00000.jsonl", "removed.jsonl", "report.json",
                           "shards/train-00000.bin"};
    uint64_t sizes[4] = {0, 75, 3, 136};
    for (size_t i = 0; i < 4 && i < json_array_size(outs); i++) {
        json_t *e = json_array_get(outs, i);
        CHECK_STR(json_string_value(json_object_get(e, "path")), want[i]);
        if (i) CHECK_EQ(json_integer_value(json_object_get(e, "bytes")), sizes[i]);
    }
    // the input's hash is SHA-256("one\ntwo\n")
    uint8_t d_in[32];
    char hex_in[65];
    anneal_sha256_buf("one\ntwo\n", 8, d_in);
    anneal_hex(d_in, 32, hex_in);
    CHECK_STR(json_string_value(
                  json_object_get(json_array_get(json_object_get(m, "inputs"), 0), "sha256")),
              hex_in);
    json_decref(m);
    anneal_free(man);
    teardown();
}

// Compares two directory trees file by file.
static int same_tree(const char *a, const char *b, const char *rel) {
    char pa[1024], pb[1024];
    snprintf(pa, sizeof pa, "%s%s%s", a, rel[0] ? "/" : "", rel);
    snprintf(pb, sizeof pb, "%s%s%s", b, rel[0] ? "/" : "", rel);
    struct stat sa, sb;
    if (stat(pa, &sa) || stat(pb, &sb)) return 0;
    if (S_ISDIR(sa.st_mode)) {
        if (!S_ISDIR(sb.st_mode)) return 0;
        int files = 0;
        DIR *d = opendir(pa);
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char r[512];
            snprintf(r, sizeof r, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
            int n = same_tree(a, b, r);
            if (n < 0) {
                closedir(d);
                return -1;
            }
            files += n;
        }
        closedir(d);
        int other = 0;
        d = opendir(pb);
        while ((e = readdir(d)))
            other += e->d_name[0] != '.';
        closedir(d);
        (void)other;
        return files;
    }
    size_t na, nb;
    char *x = slurp(pa, &na), *y = slurp(pb, &nb);
    int ok = x && y && na == nb && memcmp(x, y, na) == 0;
    anneal_free(x);
    anneal_free(y);
    return ok ? 1 : -1;
}

static void test_reproducible(void) {
    setup();
    spit(at("input.txt"), "one\ntwo\n");
    anneal_err err = {0};
    char v1[65], v2[65];
    CHECK_EQ(write_sample(at("a"), 0, v1, &err), ANNEAL_OK);
    CHECK_EQ(write_sample(at("b"), 0, v2, &err), ANNEAL_OK);
    CHECK_STR(v1, v2);
    CHECK_EQ(same_tree(at("a"), at("b"), ""), 5); // 4 outputs + manifest, all identical
    teardown();
}

static void test_verify(void) {
    setup();
    spit(at("input.txt"), "one\ntwo\n");
    anneal_err err = {0};
    char v[65];
    CHECK_EQ(write_sample(at("out"), 0, v, &err), ANNEAL_OK);
    anneal_dataset_report r;
    CHECK_EQ(anneal_dataset_verify(at("out"), &r, &err), ANNEAL_OK);
    CHECK(r.ok);
    CHECK_EQ(r.n_problems, 0);
    CHECK_EQ(r.n_outputs, 4);
    CHECK_EQ(r.n_inputs, 1);
    CHECK_STR(r.version, v);
    CHECK_STR(r.step, "clean");
    anneal_dataset_report_free(&r);

    // a flipped byte, same size
    size_t n;
    char *docs = slurp(at("out/docs/00000.jsonl"), &n);
    docs[10] ^= 1;
    FILE *f = fopen(at("out/docs/00000.jsonl"), "wb");
    fwrite(docs, 1, n, f);
    fclose(f);
    CHECK_EQ(anneal_dataset_verify(at("out"), &r, &err), ANNEAL_OK);
    CHECK(!r.ok);
    CHECK_EQ(r.n_problems, 1);
    if (r.n_problems == 1) {
        CHECK_EQ(r.problems[0].kind, ANNEAL_DSP_CHANGED);
        CHECK_STR(r.problems[0].path, "docs/00000.jsonl");
        CHECK_CONTAINS(r.problems[0].detail, "SHA-256 is ");
    }
    anneal_dataset_report_free(&r);
    docs[10] ^= 1;
    f = fopen(at("out/docs/00000.jsonl"), "wb");
    fwrite(docs, 1, n - 1, f); // and one byte short
    fclose(f);
    CHECK_EQ(anneal_dataset_verify(at("out"), &r, &err), ANNEAL_OK);
    CHECK_EQ(r.n_problems, 1);
    if (r.n_problems == 1) CHECK_CONTAINS(r.problems[0].detail, "bytes, the manifest says");
    anneal_dataset_report_free(&r);
    f = fopen(at("out/docs/00000.jsonl"), "wb");
    fwrite(docs, 1, n, f);
    fclose(f);
    anneal_free(docs);

    // a deleted file, an extra file, a missing input, a changed input
    CHECK_EQ(unlink(at("out/report.json")), 0);
    spit(at("out/shards/stray.bin"), "x");
    CHECK_EQ(anneal_dataset_verify(at("out"), &r, &err), ANNEAL_OK);
    CHECK(!r.ok);
    CHECK_EQ(r.n_problems, 2);
    if (r.n_problems == 2) {
        CHECK_EQ(r.problems[0].kind, ANNEAL_DSP_MISSING);
        CHECK_STR(r.problems[0].path, "report.json");
        CHECK_EQ(r.problems[1].kind, ANNEAL_DSP_EXTRA);
        CHECK_STR(r.problems[1].path, "shards/stray.bin");
        CHECK_STR(anneal_dataset_problem_name(r.problems[1].kind), "extra");
    }
    anneal_dataset_report_free(&r);
    spit(at("out/report.json"), "{}\n");
    unlink(at("out/shards/stray.bin"));
    unlink(at("input.txt"));
    CHECK_EQ(anneal_dataset_verify(at("out"), &r, &err), ANNEAL_OK);
    CHECK(r.ok); // a missing input is reported, not a failure
    CHECK_EQ(r.n_problems, 1);
    if (r.n_problems == 1) CHECK_EQ(r.problems[0].kind, ANNEAL_DSP_INPUT_MISSING);
    anneal_dataset_report_free(&r);
    spit(at("input.txt"), "one\ntwo!\n");
    CHECK_EQ(anneal_dataset_verify(at("out"), &r, &err), ANNEAL_OK);
    CHECK(!r.ok);
    CHECK_EQ(r.n_problems, 1);
    if (r.n_problems == 1) CHECK_EQ(r.problems[0].kind, ANNEAL_DSP_INPUT_CHANGED);
    anneal_dataset_report_free(&r);

    // no manifest
    CHECK_EQ(anneal_dataset_verify(base, &r, &err), ANNEAL_ERR_NOT_FOUND);
    CHECK_CONTAINS(err.msg, "no readable manifest.json");
    teardown();
}

static void expect_manifest_error(const char *text, anneal_status want, const char *needle) {
    spit(at("m/manifest.json"), text);
    anneal_dataset_report r;
    anneal_err err = {0};
    CHECK_EQ(anneal_dataset_verify(at("m"), &r, &err), want);
    CHECK_CONTAINS(err.msg, needle);
    CHECK_EQ(r.n_problems, 0);
    anneal_dataset_report_free(&r);
}

#define H64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define MHEAD                                                                                      \
    "{\"format\": \"anneal-dataset\", \"format_version\": 1, \"step\": \"s\", "                    \
    "\"tool\": \"t\", \"parent\": null, \"inputs\": [], \"config\": {}, \"counts\": {}, "

static void test_manifest_strict(void) {
    setup();
    mkdir(at("m"), 0755);
    spit(at("m/a"), "");
    // the empty file's hash: a valid manifest
    expect_manifest_error(MHEAD
                          "\"outputs\": [{\"path\": \"a\", \"bytes\": 0, \"sha256\": "
                          "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"}]}",
                          ANNEAL_OK, "");
    expect_manifest_error(MHEAD "\"outputs\": [], \"extra\": 1}", ANNEAL_ERR_FORMAT,
                          "/m/manifest.json: key 'extra': unknown key");
    expect_manifest_error("{\"format\": \"anneal-dataset\"}", ANNEAL_ERR_FORMAT,
                          "key 'format_version': missing");
    expect_manifest_error(MHEAD
                          "\"outputs\": [{\"path\": \"a\", \"bytes\": 0, \"sha256\": \"xyz\"}]}",
                          ANNEAL_ERR_FORMAT, "key 'outputs[0].sha256': must be 64 lowercase hex");
    expect_manifest_error(
        MHEAD "\"outputs\": [{\"path\": \"../a\", \"bytes\": 0, \"sha256\": \"" H64 "\"}]}",
        ANNEAL_ERR_FORMAT, "key 'outputs[0].path': '../a' is not");
    expect_manifest_error(MHEAD "\"outputs\": [{\"path\": \"b\", \"bytes\": 0, \"sha256\": \"" H64
                                "\"}, {\"path\": \"a\", \"bytes\": -1, \"sha256\": \"" H64 "\"}]}",
                          ANNEAL_ERR_FORMAT, "key 'outputs[1].bytes': must be an integer >= 0");
    expect_manifest_error(MHEAD "\"outputs\": [{\"path\": \"b\", \"bytes\": 0, \"sha256\": \"" H64
                                "\"}, {\"path\": \"a\", \"bytes\": 0, \"sha256\": \"" H64 "\"}]}",
                          ANNEAL_ERR_FORMAT, "key 'outputs[1].path': 'a' is not after 'b'");
    expect_manifest_error(MHEAD "\"outputs\": [{\"path\": \"a\", \"size\": 0}]}", ANNEAL_ERR_FORMAT,
                          "key 'outputs[0].size': unknown key");
    expect_manifest_error(
        "{\"format\": \"anneal-dataset\", \"format_version\": 2, \"step\": \"s\", "
        "\"tool\": \"t\", \"parent\": null, \"inputs\": [], \"config\": {}, "
        "\"counts\": {}, \"outputs\": []}",
        ANNEAL_ERR_UNSUPPORTED, "key 'format_version': version 2 is not supported");
    expect_manifest_error(
        "{\"format\": \"anneal-dataset\", \"format_version\": 1, \"step\": \"s\", "
        "\"tool\": \"t\", \"parent\": \"abc\", \"inputs\": [], \"config\": {}, "
        "\"counts\": {}, \"outputs\": []}",
        ANNEAL_ERR_FORMAT, "key 'parent': must be null or 64");
    expect_manifest_error("{\"format\": ", ANNEAL_ERR_FORMAT, "invalid JSON at line 1");
    teardown();
}

static void test_abort(void) {
    setup();
    anneal_err err = {0};
    anneal_dataset_writer *w = NULL;
    CHECK_EQ(anneal_dataset_create(at("out"), "dedup", 0, &w, &err), ANNEAL_OK);
    CHECK_CONTAINS(anneal_dataset_tmpdir(w), "/out.tmp-");
    anneal_doc d = mkdoc("1", "text", "a:1", NULL);
    CHECK_EQ(anneal_dataset_write_doc(w, &d, &err), ANNEAL_OK);
    anneal_dataset_file *f = NULL;
    CHECK_EQ(anneal_dataset_open_file(w, "sub/dir/x.txt", &f, &err), ANNEAL_OK);
    CHECK_EQ(anneal_dataset_file_write(f, "abc", 3, &err), ANNEAL_OK);
    CHECK_EQ(strncmp(listing(), "out.tmp-", 8), 0); // in progress: only the temporary name
    anneal_dataset_abort(w);
    CHECK_STR(listing(), "");
    CHECK_EQ(anneal_dataset_write_doc(w, &d, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(err.msg, "already aborted");
    anneal_dataset_writer_free(w); // free after abort
    // free without commit aborts too
    CHECK_EQ(anneal_dataset_create(at("out"), "dedup", 0, &w, &err), ANNEAL_OK);
    anneal_dataset_writer_free(w);
    CHECK_STR(listing(), "");
    // paths that are not usable
    anneal_err_clear(&err);
    CHECK_EQ(anneal_dataset_create(at("out"), "Bad Step", 0, &w, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_EQ(anneal_dataset_create(at("out"), "x", 0, &w, &err), ANNEAL_OK);
    const char *bad[] = {"/abs",   "../up",         "a/../b", "manifest.json",
                         "docs/x", "removed.jsonl", "a//b",   "a/"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        anneal_err_clear(&err);
        CHECK_EQ(anneal_dataset_open_file(w, bad[i], &f, &err), ANNEAL_ERR_INVALID_ARG);
        CHECK(f == NULL);
    }
    // an open file at commit is an error, and commit cleans up
    CHECK_EQ(anneal_dataset_open_file(w, "r.md", &f, &err), ANNEAL_OK);
    anneal_err_clear(&err);
    CHECK_EQ(anneal_dataset_commit(w, NULL, NULL, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(err.msg, "still open");
    anneal_dataset_writer_free(w);
    CHECK_STR(listing(), "");
    teardown();
}

static void test_existing_outdir(void) {
    setup();
    spit(at("input.txt"), "one\ntwo\n");
    anneal_err err = {0};
    char v[65];
    mkdir(at("out"), 0755);
    spit(at("out/keep.txt"), "mine");
    anneal_dataset_writer *w = NULL;
    CHECK_EQ(anneal_dataset_create(at("out"), "clean", 0, &w, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(err.msg, at("out"));
    CHECK_CONTAINS(err.msg, "already exists");
    CHECK(w == NULL);
    // replace refuses a directory that is not a dataset, leaving it as it was
    anneal_err_clear(&err);
    CHECK_EQ(write_sample(at("out"), ANNEAL_DATASET_REPLACE, v, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(err.msg, "not a dataset directory");
    CHECK_STR(listing(), "input.txt out");
    char *keep = slurp(at("out/keep.txt"), NULL);
    CHECK_STR(keep, "mine");
    anneal_free(keep);
    // replace a dataset: the new one in place, the old one gone, nothing left over
    anneal_err_clear(&err);
    CHECK_EQ(write_sample(at("ds"), 0, v, &err), ANNEAL_OK);
    spit(at("ds/report.json"), "old"); // make the old one different
    CHECK_EQ(write_sample(at("ds"), ANNEAL_DATASET_REPLACE, v, &err), ANNEAL_OK);
    CHECK_STR(listing(), "ds input.txt out");
    anneal_dataset_report r;
    CHECK_EQ(anneal_dataset_verify(at("ds"), &r, &err), ANNEAL_OK);
    CHECK(r.ok);
    CHECK_STR(r.version, v);
    anneal_dataset_report_free(&r);
    // a trailing slash names the same directory
    anneal_err_clear(&err);
    CHECK_EQ(anneal_dataset_create(at("ds/"), "clean", 0, &w, &err), ANNEAL_ERR_INVALID_ARG);
    teardown();
}

static void test_docs_roll(void) {
    setup();
    anneal_err err = {0};
    anneal_dataset_writer *w = NULL;
    CHECK_EQ(anneal_dataset_create(at("out"), "x", 0, &w, &err), ANNEAL_OK);
    anneal_dataset_set_docs_max_bytes(w, 120);
    anneal_doc d = mkdoc("1", "0123456789", "a:1", NULL); // 56-byte lines: two per file
    for (int i = 0; i < 5; i++)
        CHECK_EQ(anneal_dataset_write_doc(w, &d, &err), ANNEAL_OK);
    anneal_doc big = mkdoc(
        "2",
        "a much longer text, longer than the limit of one file, long, long, long, long, long, long",
        "a:2", NULL);
    CHECK_EQ(anneal_dataset_write_doc(w, &big, &err), ANNEAL_OK);
    CHECK_EQ(anneal_dataset_commit(w, NULL, NULL, &err), ANNEAL_OK);
    anneal_dataset_writer_free(w);
    size_t n0, n1, n2, n3;
    anneal_free(slurp(at("out/docs/00000.jsonl"), &n0));
    anneal_free(slurp(at("out/docs/00001.jsonl"), &n1));
    anneal_free(slurp(at("out/docs/00002.jsonl"), &n2));
    anneal_free(slurp(at("out/docs/00003.jsonl"), &n3));
    CHECK_EQ(n0, 112);
    CHECK_EQ(n1, 112);
    CHECK_EQ(n2, 56);
    CHECK(n3 > 120);
    CHECK(slurp(at("out/docs/00004.jsonl"), NULL) == NULL);
    char *man = slurp(at("out/manifest.json"), NULL);
    CHECK_CONTAINS(man, "\"config\": {},\n  \"counts\": {},");
    anneal_free(man);
    teardown();
}

// A file size limit makes writes fail with EFBIG (SIGXFSZ ignored): the error names the file,
// and neither OUTDIR nor the temporary directory remains.
static void test_write_failure(void) {
    setup();
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 64 * 1024;
    CHECK_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
    static char text[4096];
    memset(text, 'x', sizeof text - 1);
    anneal_doc d = mkdoc("1", text, "a:1", NULL);
    anneal_err err = {0};

    // fails at commit, when the buffered lines are written
    anneal_dataset_writer *w = NULL;
    CHECK_EQ(anneal_dataset_create(at("out"), "x", 0, &w, &err), ANNEAL_OK);
    for (int i = 0; i < 40; i++) // 160 KiB
        CHECK_EQ(anneal_dataset_write_doc(w, &d, &err), ANNEAL_OK);
    CHECK_EQ(anneal_dataset_commit(w, NULL, NULL, &err), ANNEAL_ERR_IO);
    CHECK_CONTAINS(err.msg, "/docs/00000.jsonl: write failed at byte 65536: File too large");
    anneal_dataset_writer_free(w);
    CHECK_STR(listing(), "");

    // fails while writing documents (the 1 MiB buffer fills): later calls repeat the error
    anneal_err_clear(&err);
    CHECK_EQ(anneal_dataset_create(at("out"), "x", 0, &w, &err), ANNEAL_OK);
    anneal_status st = ANNEAL_OK;
    int i;
    for (i = 0; i < 1000 && st == ANNEAL_OK; i++)
        st = anneal_dataset_write_doc(w, &d, &err);
    CHECK_EQ(st, ANNEAL_ERR_IO);
    CHECK(i > 200 && i < 300);
    CHECK_CONTAINS(err.msg, "docs/00000.jsonl: write failed");
    anneal_err err2 = {0};
    CHECK_EQ(anneal_dataset_write_doc(w, &d, &err2), ANNEAL_ERR_IO);
    CHECK_STR(err2.msg, err.msg);
    anneal_dataset_abort(w);
    CHECK_STR(listing(), "");
    anneal_dataset_writer_free(w);

    // an existing dataset stays untouched when its replacement fails
    CHECK_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
    anneal_err_clear(&err);
    CHECK_EQ(anneal_dataset_create(at("out"), "x", 0, &w, &err), ANNEAL_OK);
    CHECK_EQ(anneal_dataset_write_doc(w, &d, &err), ANNEAL_OK);
    char v[65];
    CHECK_EQ(anneal_dataset_commit(w, NULL, v, &err), ANNEAL_OK);
    anneal_dataset_writer_free(w);
    CHECK_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
    CHECK_EQ(anneal_dataset_create(at("out"), "x", ANNEAL_DATASET_REPLACE, &w, &err), ANNEAL_OK);
    for (i = 0; i < 40; i++)
        CHECK_EQ(anneal_dataset_write_doc(w, &d, &err), ANNEAL_OK);
    CHECK_EQ(anneal_dataset_commit(w, NULL, NULL, &err), ANNEAL_ERR_IO);
    anneal_dataset_writer_free(w);
    CHECK_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
    CHECK_STR(listing(), "out");
    char v2[65];
    CHECK_EQ(anneal_dataset_version(at("out"), v2, &err), ANNEAL_OK);
    CHECK_STR(v2, v);
    signal(SIGXFSZ, SIG_DFL);
    teardown();
}

// Long texts are escaped in 4 KiB pieces: the line must equal anneal_json_write_str's output,
// with multi-byte characters, escapes and invalid bytes across the piece boundaries.
static void test_escape_long(void) {
    setup();
    static char text[20000];
    const char *pieces[] = {"\xc3\xa9",         "\"",   "\\",       "\n", "\x01", "\xe2\x82\xac",
                            "\xf0\x9f\x98\x80", "\xff", "\xe2\x82", "a",  "bc"};
    size_t n = 0;
    for (int i = 0; n < sizeof text - 8; i++) {
        const char *p = pieces[(i * 7 + i / 3) % 11];
        memcpy(text + n, p, strlen(p));
        n += strlen(p);
    }
    anneal_err err = {0};
    anneal_dataset_writer *w = NULL;
    CHECK_EQ(anneal_dataset_create(at("out"), "x", 0, &w, &err), ANNEAL_OK);
    anneal_doc d = {"i", 1, text, n, "s:1", NULL, 0};
    CHECK_EQ(anneal_dataset_write_doc(w, &d, &err), ANNEAL_OK);
    CHECK_EQ(anneal_dataset_commit(w, NULL, NULL, &err), ANNEAL_OK);
    anneal_dataset_writer_free(w);
    char *want = NULL;
    size_t want_len = 0;
    FILE *f = open_memstream(&want, &want_len);
    fputs("{\"id\":\"i\",\"text\":", f);
    anneal_json_write_str(f, text, n);
    fputs(",\"source\":\"s:1\",\"meta\":{}}\n", f);
    fclose(f);
    char *got = slurp(at("out/docs/00000.jsonl"), NULL);
    CHECK_STR(got, want);
    anneal_free(got);
    free(want);
    teardown();
}

int main(void) {
    RUN(test_write_commit);
    RUN(test_reproducible);
    RUN(test_verify);
    RUN(test_manifest_strict);
    RUN(test_abort);
    RUN(test_existing_outdir);
    RUN(test_docs_roll);
    RUN(test_escape_long);
    RUN(test_write_failure);
    return TEST_EXIT();
}
