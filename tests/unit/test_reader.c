// Tests for the document reader: every format and option on small files written here,
// gzip and zstd, directories and dataset directories, each malformed case with its
// reported path:line and reason, oversized records, rewind and the input hashes.
#include "anneal/data.h"
#include "test.h"

#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

static char DIR_[300];

static const char *path_of(const char *name) {
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", DIR_, name);
    return buf[k];
}

static void mkdirs(const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", DIR_, name);
    for (char *q = p + strlen(DIR_) + 1; *q; q++) {
        if (*q == '/') {
            *q = 0;
            mkdir(p, 0755);
            *q = '/';
        }
    }
    mkdir(p, 0755);
}

static void put_bytes(const char *name, const void *data, size_t n) {
    FILE *f = fopen(path_of(name), "wb");
    if (!f) {
        perror(name);
        exit(1);
    }
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static void put(const char *name, const char *s) {
    put_bytes(name, s, strlen(s));
}

static void put_gz(const char *name, const char *s) {
    gzFile g = gzopen(path_of(name), "wb");
    gzwrite(g, s, (unsigned)strlen(s));
    gzclose(g);
}

static size_t zst_of(const char *s, void *out, size_t cap) {
    size_t n = ZSTD_compress(out, cap, s, strlen(s), 3);
    if (ZSTD_isError(n)) exit(1);
    return n;
}

// Skips seen by the callback, one "path:line: reason: message" per line.
static char skips[1 << 16];
static int n_skip_calls;

static void on_skip(void *user, const char *path, uint64_t line, anneal_skip_reason why,
                    const char *msg) {
    (void)user;
    n_skip_calls++;
    size_t l = strlen(skips);
    snprintf(skips + l, sizeof skips - l, "%s:%llu: %s: %s\n", path, (unsigned long long)line,
             anneal_skip_reason_name(why), msg);
}

static anneal_reader_config cfg_def(void) {
    anneal_reader_config c = anneal_reader_config_default();
    c.on_skip = on_skip;
    return c;
}

// All documents as "id|source|text|meta\n" (paths shortened: the temp dir becomes "D").
static char docs[1 << 20];

static void append_short(char *dst, size_t cap, const char *s, size_t n) {
    size_t l = strlen(dst);
    size_t dl = strlen(DIR_);
    for (size_t i = 0; i < n && l + 2 < cap;) {
        if (n - i >= dl && memcmp(s + i, DIR_, dl) == 0) {
            dst[l++] = 'D';
            i += dl;
        } else {
            dst[l++] = s[i++];
        }
    }
    dst[l] = 0;
}

static anneal_reader *R;

static anneal_status read_all(const char *const *inputs, size_t n, const anneal_reader_config *cfg,
                              anneal_err *err) {
    docs[0] = 0;
    skips[0] = 0;
    R = NULL;
    anneal_status st = anneal_reader_open(inputs, n, cfg, &R, err);
    if (st) return st;
    for (;;) {
        anneal_doc d;
        bool eof;
        st = anneal_reader_next(R, &d, &eof, err);
        if (st || eof) break;
        CHECK_EQ(strlen(d.meta), d.meta_len);
        append_short(docs, sizeof docs, d.id, d.id_len);
        append_short(docs, sizeof docs, "|", 1);
        append_short(docs, sizeof docs, d.source, strlen(d.source));
        append_short(docs, sizeof docs, "|", 1);
        append_short(docs, sizeof docs, d.text, d.len);
        append_short(docs, sizeof docs, "|", 1);
        append_short(docs, sizeof docs, d.meta, d.meta_len);
        append_short(docs, sizeof docs, "\n", 1);
    }
    return st;
}

static const char *short_skips(void) {
    static char buf[1 << 16];
    buf[0] = 0;
    append_short(buf, sizeof buf, skips, strlen(skips));
    return buf;
}

static void read_one(const char *name, const anneal_reader_config *cfg) {
    const char *in[1] = {path_of(name)};
    CHECK_EQ(read_all(in, 1, cfg, NULL), ANNEAL_OK);
    anneal_reader_free(R);
    R = NULL;
}

static void test_txt(void) {
    anneal_reader_config c = cfg_def();
    put("a.txt", "Hello\nworld\n");
    read_one("a.txt", &c);
    CHECK_STR(docs, "D/a.txt:1|D/a.txt:1|Hello\nworld\n|{}\n");
    put("p.md", "\xEF\xBB\xBFpara one\nline two\n\n\npara two\r\n  \nthird");
    c.txt_unit = ANNEAL_TXT_PARAGRAPH;
    read_one("p.md", &c);
    CHECK_STR(docs, "D/p.md:1|D/p.md:1|para one\nline two|{}\n"
                    "D/p.md:5|D/p.md:5|para two|{}\n"
                    "D/p.md:7|D/p.md:7|third|{}\n");
    put("l.text", "one\n\ntwo\r\n \nthree");
    c.txt_unit = ANNEAL_TXT_LINE;
    read_one("l.text", &c);
    CHECK_STR(docs, "D/l.text:1|D/l.text:1|one|{}\n"
                    "D/l.text:3|D/l.text:3|two|{}\n"
                    "D/l.text:5|D/l.text:5|three|{}\n");
    put("empty.txt", "");
    c.txt_unit = ANNEAL_TXT_FILE;
    read_one("empty.txt", &c);
    CHECK_STR(docs, "");
    CHECK_STR(skips, "");
}

static void test_jsonl(void) {
    anneal_reader_config c = cfg_def();
    put("x.jsonl", "{\"id\":\"d1\",\"text\":\"first\",\"lang\":\"en\"}\n"
                   "{\"text\":\"second \\u00e9\",\"n\":3,\"tags\":[\"a\"]}\n"
                   "\n"
                   "{\"id\":7,\"text\":\"third\"}\r\n");
    read_one("x.jsonl", &c);
    CHECK_STR(docs, "d1|D/x.jsonl:1|first|{\"lang\":\"en\"}\n"
                    "D/x.jsonl:2|D/x.jsonl:2|second \xC3\xA9|{\"n\":3,\"tags\":[\"a\"]}\n"
                    "7|D/x.jsonl:4|third|{}\n");
    CHECK_STR(skips, "");
    put("y.ndjson", "{\"uid\":\"u1\",\"content\":\"hi\",\"text\":\"other\"}\n");
    c.jsonl_text_field = "content";
    c.jsonl_id_field = "uid";
    read_one("y.ndjson", &c);
    CHECK_STR(docs, "u1|D/y.ndjson:1|hi|{\"text\":\"other\"}\n");
}

static void test_csv(void) {
    anneal_reader_config c = cfg_def();
    put("t.csv", "id,text,lang\r\n1,\"Hello, \"\"world\"\"\",en\r\n2,\"multi\nline\",fr\n\n"
                 "3,plain,de");
    read_one("t.csv", &c);
    CHECK_STR(docs, "1|D/t.csv:2|Hello, \"world\"|{\"lang\":\"en\"}\n"
                    "2|D/t.csv:3|multi\nline|{\"lang\":\"fr\"}\n"
                    "3|D/t.csv:6|plain|{\"lang\":\"de\"}\n");
    CHECK_STR(skips, "");
    put("crlf.csv", "text\r\n\"one\r\ntwo\"\r\n\"x\"\"\"\r\n");
    read_one("crlf.csv", &c);
    CHECK_STR(docs, "D/crlf.csv:2|D/crlf.csv:2|one\r\ntwo|{}\nD/crlf.csv:4|D/crlf.csv:4|x\"|{}\n");
    put("n.csv", "a,b\nc,d\n");
    c.csv_column = "2";
    c.csv_header = false;
    read_one("n.csv", &c);
    CHECK_STR(docs, "D/n.csv:1|D/n.csv:1|b|{}\nD/n.csv:2|D/n.csv:2|d|{}\n");
    c.csv_header = true;
    read_one("n.csv", &c);
    CHECK_STR(docs, "D/n.csv:2|D/n.csv:2|d|{\"a\":\"c\"}\n");
    c = cfg_def();
    put("t.tsv", "text\tlang\n\"quoted\" stays\ten\n");
    read_one("t.tsv", &c);
    CHECK_STR(docs, "D/t.tsv:2|D/t.tsv:2|\"quoted\" stays|{\"lang\":\"en\"}\n");
    // Problems: a missing column name, a short row, an unterminated quote.
    put("bad.csv", "body\nx\n");
    read_one("bad.csv", &c);
    CHECK_STR(docs, "");
    CHECK_STR(short_skips(), "D/bad.csv:1: no_text: no column 'text' in the header\n");
    put("short.csv", "id,text\n1\n2,ok\n3,\"open\n");
    read_one("short.csv", &c);
    CHECK_STR(docs, "2|D/short.csv:3|ok|{}\n");
    CHECK_STR(short_skips(), "D/short.csv:2: no_text: row has 1 column, no column 2\n"
                             "D/short.csv:4: corrupt: unterminated quoted field\n");
}

static void test_html(void) {
    anneal_reader_config c = cfg_def();
    put("page.html", "<!DOCTYPE html><html><head><title>T</title><style>p{color:red}</style></head>"
                     "<body><h1>Title</h1><p>Hello &amp; <b>bye</b>&#33;</p><script>var x = '</p>';"
                     "</script><!-- c <p> --><ul><li>one</li><li>two</li></ul>Tom&nbsp;Cat 1 < 2"
                     "<noscript>Enable JS</noscript><template><p>t</p></template></body></html>");
    read_one("page.html", &c);
    CHECK_STR(docs, "D/page.html:1|D/page.html:1|Title\n\nHello & bye!\n\none\ntwo\n\n"
                    "Tom\xC2\xA0"
                    "Cat 1 < 2|{}\n");
    // No </head>: the first body element ends the head. Broken tail markup is tolerated.
    put("b.htm", "<head><meta charset=utf-8><div>Body <a href='x>y'>link</a></div><p>end <b");
    read_one("b.htm", &c);
    CHECK_STR(docs, "D/b.htm:1|D/b.htm:1|Body link\n\nend|{}\n");
    CHECK_STR(skips, "");
    put("bad.html", "<p>caf\xC3</p>");
    read_one("bad.html", &c);
    CHECK_STR(docs, "");
    CHECK_STR(short_skips(), "D/bad.html:1: invalid_utf8: invalid UTF-8 at byte 6\n");
}

static void test_compressed(void) {
    anneal_reader_config c = cfg_def();
    put_gz("g.jsonl.gz", "{\"text\":\"gz one\"}\n{\"text\":\"gz two\"}\n");
    read_one("g.jsonl.gz", &c);
    CHECK_STR(docs,
              "D/g.jsonl.gz:1|D/g.jsonl.gz:1|gz one|{}\nD/g.jsonl.gz:2|D/g.jsonl.gz:2|gz two|{}\n");
    // Two concatenated gzip members are one stream.
    gzFile g = gzopen(path_of("two.txt.gz"), "wb");
    gzwrite(g, "first ", 6);
    gzclose(g);
    char a[256], b[256];
    FILE *f = fopen(path_of("two.txt.gz"), "rb");
    size_t na = fread(a, 1, sizeof a, f);
    fclose(f);
    put_gz("tmp.gz", "member");
    f = fopen(path_of("tmp.gz"), "rb");
    size_t nb = fread(b, 1, sizeof b, f);
    fclose(f);
    memcpy(a + na, b, nb);
    put_bytes("two.txt.gz", a, na + nb);
    read_one("two.txt.gz", &c);
    CHECK_STR(docs, "D/two.txt.gz:1|D/two.txt.gz:1|first member|{}\n");

    static char z[4096];
    size_t nz = zst_of("zstd text\nline 2\n", z, sizeof z);
    put_bytes("z.txt.zst", z, nz);
    read_one("z.txt.zst", &c);
    CHECK_STR(docs, "D/z.txt.zst:1|D/z.txt.zst:1|zstd text\nline 2\n|{}\n");

    // Truncated gzip: the complete lines before the cut are read, then the file is reported.
    put_gz("cut.jsonl.gz", "{\"text\":\"a\"}\n{\"text\":\"b\"}\n{\"text\":\"c\"}\n");
    f = fopen(path_of("cut.jsonl.gz"), "rb");
    na = fread(a, 1, sizeof a, f);
    fclose(f);
    put_bytes("cut.jsonl.gz", a, na - 4);
    read_one("cut.jsonl.gz", &c);
    CHECK_STR(docs,
              "D/cut.jsonl.gz:1|D/cut.jsonl.gz:1|a|{}\nD/cut.jsonl.gz:2|D/cut.jsonl.gz:2|b|{}\n"
              "D/cut.jsonl.gz:3|D/cut.jsonl.gz:3|c|{}\n");
    CHECK_STR(short_skips(), "D/cut.jsonl.gz:4: corrupt: truncated gzip data\n");
    // Corrupt gzip (bad header) and truncated / corrupt zstd.
    put("bad.txt.gz", "this is not gzip");
    read_one("bad.txt.gz", &c);
    CHECK_STR(docs, "");
    CHECK_CONTAINS(short_skips(), "D/bad.txt.gz:1: corrupt: corrupt gzip data at compressed byte");
    put_bytes("cut.txt.zst", z, nz - 3);
    read_one("cut.txt.zst", &c);
    CHECK_STR(docs, "");
    CHECK_STR(short_skips(), "D/cut.txt.zst:1: corrupt: truncated zstd data\n");
    memcpy(z + 4, "\xFF\xFF\xFF\xFF", 4);
    put_bytes("bad.txt.zst", z, nz);
    read_one("bad.txt.zst", &c);
    CHECK_STR(docs, "");
    CHECK_CONTAINS(short_skips(), "D/bad.txt.zst:1: corrupt: corrupt zstd data");
    put("empty.jsonl.gz", "");
    read_one("empty.jsonl.gz", &c);
    CHECK_STR(docs, "");
    CHECK_STR(skips, "");
}

static void test_malformed(void) {
    anneal_reader_config c = cfg_def();
    // The bytes hold a NUL, so they are written with put_bytes.
    static const char bytes[] = "{\"text\":\"ok\"}\n"
                                "{\"text\": \"x\"\n"
                                "[1,2]\n"
                                "{\"nope\":1}\n"
                                "{\"text\":5}\n"
                                "{\"text\":\"a\\u0000b\"}\n"
                                "{\"text\":\"\xFF\"}\n"
                                "{\"text\":\"nul\0\"}\n"
                                "{\"id\":[1],\"text\":\"t\"}\n"
                                "{\"text\":\"last\"}";
    put_bytes("bad.jsonl", bytes, sizeof bytes - 1);
    read_one("bad.jsonl", &c);
    CHECK_STR(docs, "D/bad.jsonl:1|D/bad.jsonl:1|ok|{}\nD/bad.jsonl:10|D/bad.jsonl:10|last|{}\n");
    CHECK_STR(short_skips(),
              "D/bad.jsonl:2: bad_json: invalid JSON at column 12: '}' expected near end of file\n"
              "D/bad.jsonl:3: bad_json: not a JSON object\n"
              "D/bad.jsonl:4: no_text: no field 'text'\n"
              "D/bad.jsonl:5: no_text: field 'text' is not a string\n"
              "D/bad.jsonl:6: nul: NUL character at byte 1 of field 'text'\n"
              "D/bad.jsonl:7: invalid_utf8: invalid UTF-8 at byte 84\n"
              "D/bad.jsonl:8: nul: NUL byte at byte 100\n"
              "D/bad.jsonl:9: bad_json: field 'id' is not a string or number\n");
    put("u.txt", "ok\n\xC3(");
    read_one("u.txt", &c);
    CHECK_STR(docs, "");
    CHECK_STR(short_skips(), "D/u.txt:1: invalid_utf8: invalid UTF-8 at byte 3\n");
    put_bytes("n.txt", "a\nb\0c\nd\n", 8);
    c.txt_unit = ANNEAL_TXT_LINE;
    read_one("n.txt", &c);
    CHECK_STR(docs, "D/n.txt:1|D/n.txt:1|a|{}\nD/n.txt:3|D/n.txt:3|d|{}\n");
    CHECK_STR(short_skips(), "D/n.txt:2: nul: NUL byte at byte 3\n");
    c.txt_unit = ANNEAL_TXT_FILE;
    // Unknown extensions: text is read, binary is reported.
    put("NOTES", "plain notes");
    put_bytes("blob.bin", "abc\0def", 7);
    static unsigned char latin[600];
    for (int i = 0; i < 600; i++)
        latin[i] = (unsigned char)(i % 2 ? 0xE9 : 'a');
    put_bytes("latin.dat", latin, sizeof latin);
    const char *in[3] = {path_of("NOTES"), path_of("blob.bin"), path_of("latin.dat")};
    CHECK_EQ(read_all(in, 3, &c, NULL), ANNEAL_OK);
    CHECK_STR(docs, "D/NOTES:1|D/NOTES:1|plain notes|{}\n");
    CHECK_STR(short_skips(),
              "D/blob.bin:0: binary: binary file (NUL byte at byte 3)\n"
              "D/latin.dat:0: binary: binary file (300 of the first 600 bytes are not UTF-8)\n");
    const anneal_reader_stats *st = anneal_reader_stats_get(R);
    CHECK_EQ(st->docs, 1);
    CHECK_EQ(st->skipped[ANNEAL_SKIP_BINARY], 2);
    CHECK_EQ(st->skipped_total, 2);
    anneal_reader_free(R);
    // An unreadable file is reported and the run goes on (root reads it anyway).
    put("locked.txt", "secret");
    chmod(path_of("locked.txt"), 0);
    if (geteuid() != 0) {
        const char *two[2] = {path_of("locked.txt"), path_of("NOTES")};
        CHECK_EQ(read_all(two, 2, &c, NULL), ANNEAL_OK);
        CHECK_STR(docs, "D/NOTES:1|D/NOTES:1|plain notes|{}\n");
        CHECK_STR(short_skips(), "D/locked.txt:0: unreadable: cannot open: Permission denied\n");
        CHECK(!anneal_reader_input_get(R, 0)->sha256_done);
        anneal_reader_free(R);
    }
    chmod(path_of("locked.txt"), 0644);
    // A path that does not exist fails at open, naming it.
    const char *missing[2] = {path_of("a.txt"), path_of("nope.txt")};
    anneal_err err = {0};
    anneal_reader *r = NULL;
    CHECK_EQ(anneal_reader_open(missing, 2, &c, &r, &err), ANNEAL_ERR_NOT_FOUND);
    CHECK(r == NULL);
    CHECK_CONTAINS(err.msg, "nope.txt");
    CHECK_CONTAINS(err.msg, "not found");
}

static void test_too_large(void) {
    // A 3 MiB line under a 1 MiB cap: skipped, and the lines around it are read.
    size_t big = 3u << 20;
    char *buf = malloc(big + 100);
    size_t n = 0;
    n += (size_t)sprintf(buf + n, "{\"text\":\"before\"}\n{\"text\":\"");
    memset(buf + n, 'a', big);
    n += big;
    n += (size_t)sprintf(buf + n, "\"}\n{\"text\":\"after\"}\n");
    put_bytes("big.jsonl", buf, n);
    anneal_reader_config c = cfg_def();
    c.max_doc_bytes = 1u << 20;
    read_one("big.jsonl", &c);
    CHECK_STR(docs,
              "D/big.jsonl:1|D/big.jsonl:1|before|{}\nD/big.jsonl:3|D/big.jsonl:3|after|{}\n");
    CHECK_STR(short_skips(), "D/big.jsonl:2: too_large: line longer than 2101248 bytes\n");
    // Text between the cap and the line cap: the decoded text is checked.
    n = (size_t)sprintf(buf, "{\"text\":\"");
    memset(buf + n, 'b', (3u << 19));
    n += 3u << 19;
    n += (size_t)sprintf(buf + n, "\"}\n");
    put_bytes("mid.jsonl", buf, n);
    read_one("mid.jsonl", &c);
    CHECK_STR(docs, "");
    CHECK_STR(short_skips(), "D/mid.jsonl:1: too_large: text larger than 1048576 bytes\n");
    // Plain text: line, paragraph and whole-file units.
    n = 0;
    n += (size_t)sprintf(buf, "short\n");
    memset(buf + n, 'c', big);
    n += big;
    n += (size_t)sprintf(buf + n, "\nend\n");
    put_bytes("big.txt", buf, n);
    c.txt_unit = ANNEAL_TXT_LINE;
    read_one("big.txt", &c);
    CHECK_STR(docs, "D/big.txt:1|D/big.txt:1|short|{}\nD/big.txt:3|D/big.txt:3|end|{}\n");
    CHECK_STR(short_skips(), "D/big.txt:2: too_large: line longer than 1048576 bytes\n");
    c.txt_unit = ANNEAL_TXT_PARAGRAPH;
    read_one("big.txt", &c);
    CHECK_STR(docs, "");
    CHECK_STR(short_skips(), "D/big.txt:1: too_large: paragraph larger than 1048576 bytes\n");
    c.txt_unit = ANNEAL_TXT_FILE;
    read_one("big.txt", &c);
    CHECK_STR(docs, "");
    CHECK_STR(short_skips(), "D/big.txt:1: too_large: document larger than 1048576 bytes\n");
    free(buf);
}

static void test_dirs(void) {
    mkdirs("tree/a");
    mkdirs("tree/sub");
    put("tree/b.txt", "bee");
    put("tree/a/c.txt", "sea");
    put("tree/.hidden.txt", "hidden");
    put("tree/a/d.jsonl", "{\"text\":\"dee\"}\n");
    symlink("..", path_of("tree/sub/loop"));
    symlink("nowhere", path_of("tree/dangling.txt"));
    mkdirs("tree/ds/docs");
    put("tree/ds/manifest.json", "{}");
    put("tree/ds/report.json", "{\"not\":\"read\"}");
    put("tree/ds/docs/00001.jsonl",
        "{\"id\":\"b\",\"text\":\"T2\",\"source\":\"x.txt:1\",\"meta\":{}}\n");
    put("tree/ds/docs/00000.jsonl",
        "{\"id\":\"a\",\"text\":\"T1\",\"source\":\"orig.txt:5\",\"meta\":{\"k\":1,\"s\":\"v\"}}\n"
        "{\"id\":\"c\",\"text\":\"T3\",\"source\":\"o:1\",\"meta\":3}\n");
    anneal_reader_config c = cfg_def();
    const char *in[1] = {path_of("tree")};
    CHECK_EQ(read_all(in, 1, &c, NULL), ANNEAL_OK);
    CHECK_STR(docs, "D/tree/a/c.txt:1|D/tree/a/c.txt:1|sea|{}\n"
                    "D/tree/a/d.jsonl:1|D/tree/a/d.jsonl:1|dee|{}\n"
                    "D/tree/b.txt:1|D/tree/b.txt:1|bee|{}\n"
                    "a|orig.txt:5|T1|{\"k\":1,\"s\":\"v\"}\n"
                    "b|x.txt:1|T2|{}\n");
    CHECK_STR(short_skips(),
              "D/tree/dangling.txt:0: unreadable: cannot stat: No such file or directory\n"
              "D/tree/ds/docs/00000.jsonl:2: bad_json: field 'meta' is not an object\n");
    CHECK_EQ(anneal_reader_input_count(R), 5);
    const anneal_reader_input *ds = anneal_reader_input_get(R, 3);
    CHECK_CONTAINS(ds->path, "tree/ds/docs/00000.jsonl");
    CHECK_CONTAINS(ds->dataset, "tree/ds");
    uint8_t h[32];
    char hex[65];
    anneal_sha256_buf("{}", 2, h);
    anneal_hex(h, 32, hex);
    CHECK_STR(ds->dataset_version, hex);
    CHECK(anneal_reader_input_get(R, 0)->dataset == NULL);
    CHECK_STR(anneal_reader_input_get(R, 0)->dataset_version, "");
    CHECK(anneal_reader_input_get(R, 5) == NULL);
    anneal_reader_free(R);
    // A dataset directory given directly.
    const char *ds_in[1] = {path_of("tree/ds")};
    CHECK_EQ(read_all(ds_in, 1, &c, NULL), ANNEAL_OK);
    CHECK_STR(docs, "a|orig.txt:5|T1|{\"k\":1,\"s\":\"v\"}\nb|x.txt:1|T2|{}\n");
    anneal_reader_free(R);
}

static void test_rewind_and_hashes(void) {
    anneal_reader_config c = cfg_def();
    const char *in[6] = {path_of("tree"),      path_of("t.csv"),     path_of("g.jsonl.gz"),
                         path_of("z.txt.zst"), path_of("page.html"), path_of("bad.jsonl")};
    n_skip_calls = 0;
    CHECK_EQ(read_all(in, 6, &c, NULL), ANNEAL_OK);
    int calls = n_skip_calls;
    CHECK(calls > 0);
    static char first[1 << 20];
    snprintf(first, sizeof first, "%s", docs);
    anneal_reader_stats st1 = *anneal_reader_stats_get(R);
    CHECK_EQ(st1.docs, 14);
    for (size_t i = 0; i < anneal_reader_input_count(R); i++) {
        const anneal_reader_input *ip = anneal_reader_input_get(R, i);
        CHECK(ip->sha256_done);
        char *data = NULL;
        size_t n = 0;
        CHECK_EQ(anneal_read_file(ip->path, 1 << 26, &data, &n, NULL), ANNEAL_OK);
        uint8_t h[32];
        anneal_sha256_buf(data, n, h);
        CHECK(memcmp(h, ip->sha256, 32) == 0);
        CHECK_EQ(ip->size, n);
        anneal_free(data);
    }
    CHECK_EQ(anneal_reader_rewind(R, NULL), ANNEAL_OK);
    CHECK_EQ(anneal_reader_stats_get(R)->docs, 0);
    docs[0] = 0;
    for (;;) {
        anneal_doc d;
        bool eof;
        CHECK_EQ(anneal_reader_next(R, &d, &eof, NULL), ANNEAL_OK);
        if (eof) break;
        append_short(docs, sizeof docs, d.id, d.id_len);
        append_short(docs, sizeof docs, "|", 1);
        append_short(docs, sizeof docs, d.source, strlen(d.source));
        append_short(docs, sizeof docs, "|", 1);
        append_short(docs, sizeof docs, d.text, d.len);
        append_short(docs, sizeof docs, "|", 1);
        append_short(docs, sizeof docs, d.meta, d.meta_len);
        append_short(docs, sizeof docs, "\n", 1);
    }
    CHECK_STR(docs, first);
    const anneal_reader_stats *st2 = anneal_reader_stats_get(R);
    CHECK_EQ(st2->docs, st1.docs);
    CHECK_EQ(st2->skipped_total, st1.skipped_total);
    CHECK_EQ(st2->bytes, st1.bytes);
    CHECK_EQ(n_skip_calls, calls); // reported once, in the first pass
    // Rewinding in the middle of a file, then reading on, gives the same documents again.
    CHECK_EQ(anneal_reader_rewind(R, NULL), ANNEAL_OK);
    anneal_doc d;
    bool eof;
    CHECK_EQ(anneal_reader_next(R, &d, &eof, NULL), ANNEAL_OK);
    CHECK_EQ(anneal_reader_rewind(R, NULL), ANNEAL_OK);
    CHECK_EQ(anneal_reader_next(R, &d, &eof, NULL), ANNEAL_OK);
    CHECK(!eof);
    CHECK(d.len == 3 && memcmp(d.text, "sea", 3) == 0);
    anneal_reader_free(R);
    R = NULL;
    anneal_reader *r = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_reader_open(in, 0, &c, &r, &err), ANNEAL_ERR_INVALID_ARG);
    c.csv_column = "0";
    CHECK_EQ(anneal_reader_open(in, 1, &c, &r, &err), ANNEAL_ERR_INVALID_ARG);
    anneal_reader_free(NULL);
}

int main(void) {
    snprintf(DIR_, sizeof DIR_, "%s", test_tmpdir());
    RUN(test_txt);
    RUN(test_jsonl);
    RUN(test_csv);
    RUN(test_html);
    RUN(test_compressed);
    RUN(test_malformed);
    RUN(test_too_large);
    RUN(test_dirs);
    RUN(test_rewind_and_hashes);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", DIR_);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", DIR_);
    return TEST_EXIT();
}
