// Tests for text cleaning: each stage on exact inputs, each switch off, the default
// boilerplate list, configuration parsing, and idempotence on generated text.
#include "anneal/data.h"
#include "test.h"

static anneal_clean_scratch *S;

// Cleans s with cfg (NULL: defaults) and returns a static copy of the result.
static const char *clean(const anneal_clean_config *cfg, const char *s, anneal_clean_stats *st) {
    static char buf[1 << 16];
    const char *out;
    size_t n;
    anneal_err err = {0};
    anneal_status rc = anneal_clean_text(S, cfg, s, strlen(s), &out, &n, st, &err);
    CHECK_EQ(rc, ANNEAL_OK);
    if (rc || n >= sizeof buf) return "(error)";
    memcpy(buf, out, n);
    buf[n] = 0;
    return buf;
}

static anneal_clean_config only(bool nfkc, bool control, bool ws, bool html, bool bp) {
    anneal_clean_config c = anneal_clean_config_default();
    c.nfkc = nfkc;
    c.control = control;
    c.whitespace = ws;
    c.html = html;
    c.boilerplate = bp;
    return c;
}

static void test_nfkc(void) {
    anneal_clean_stats st = {0};
    CHECK_STR(clean(NULL, "\xEF\xAC\x81nd the \xEF\xBC\xA1 x\xC2\xB2", &st), "find the A x2");
    CHECK_EQ(st.chars_normalized, 3);
    memset(&st, 0, sizeof st);
    // e + combining acute composes to U+00E9; U+00E9 itself and CJK stay as they are.
    CHECK_STR(clean(NULL,
                    "caf"
                    "e\xCC\x81 caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC",
                    &st),
              "caf\xC3\xA9 caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC");
    CHECK_EQ(st.chars_normalized, 1);
    // Non-breaking and ideographic spaces become spaces, then collapse.
    CHECK_STR(clean(NULL,
                    "a\xC2\xA0\xC2\xA0"
                    "b\xE3\x80\x80"
                    "c",
                    NULL),
              "a b c");
    anneal_clean_config off = anneal_clean_config_default();
    off.nfkc = false;
    CHECK_STR(clean(&off, "\xEF\xAC\x81 \xEF\xBC\xA1", NULL), "\xEF\xAC\x81 \xEF\xBC\xA1");
}

static void test_control(void) {
    anneal_clean_stats st = {0};
    CHECK_STR(clean(NULL,
                    "a\x01"
                    "b\x7F"
                    "c\xC2\x85"
                    "d\te\nf\x1B[0m",
                    &st),
              "abcd e\nf[0m");
    CHECK_EQ(st.control_removed, 4);
    anneal_clean_config c = only(false, false, false, false, false);
    CHECK_STR(clean(&c,
                    "a\x01"
                    "b",
                    NULL),
              "a\x01"
              "b");
    // NUL is a control character; invalid UTF-8 becomes U+FFFD whatever the switches.
    const char in[] = "x\0y\xFFz";
    const char *out;
    size_t n;
    memset(&st, 0, sizeof st);
    CHECK_EQ(anneal_clean_text(S, NULL, in, 5, &out, &n, &st, NULL), ANNEAL_OK);
    CHECK_EQ(n, 6);
    CHECK(memcmp(out, "xy\xEF\xBF\xBDz", 6) == 0);
    CHECK_EQ(st.invalid_utf8, 1);
    CHECK_EQ(st.control_removed, 1);
    CHECK_STR(clean(&c, "a\xC3(", NULL), "a\xEF\xBF\xBD(");
}

static void test_whitespace(void) {
    anneal_clean_stats st = {0};
    CHECK_STR(clean(NULL, "  Hello \t world  \r\n\r\n\r\n\r\nNext\rline  ", &st),
              "Hello world\n\nNext\nline");
    CHECK_EQ(st.whitespace_fixed, 16); // 18 whitespace bytes, 2 newlines kept
    memset(&st, 0, sizeof st);
    CHECK_STR(clean(NULL, "one\n\ntwo three\n", &st), "one\n\ntwo three");
    CHECK_EQ(st.whitespace_fixed, 1);
    CHECK_STR(clean(NULL, "  \n\t \n", NULL), "");
    CHECK_STR(clean(NULL, "", NULL), "");
    anneal_clean_config c = only(false, false, false, false, false);
    CHECK_STR(clean(&c, "  a  b \r\n", NULL), "  a  b \r\n");
    // Nothing to change: the text itself comes back, no copy.
    const char *in = "Hello world.\nSecond line.";
    const char *out;
    size_t n;
    CHECK_EQ(anneal_clean_text(S, NULL, in, strlen(in), &out, &n, NULL, NULL), ANNEAL_OK);
    CHECK(out == in);
    CHECK_EQ(n, strlen(in));
}

static void test_html(void) {
    anneal_clean_stats st = {0};
    CHECK_STR(clean(NULL,
                    "a<br>b &amp; c&#39;s <div class=\"x\">d</div> &lt;b&gt;bold&lt;/b&gt; "
                    "x<y>z vector<int> <EMAIL> AT&T &unknown; 5 < 6 > 4",
                    &st),
              "a\nb & c's\nd\n bold x<y>z vector<int> <EMAIL> AT&T &unknown; 5 < 6 > 4");
    CHECK_EQ(st.html_removed, 11);
    CHECK_STR(clean(NULL, "x<!-- hidden\nnote -->y &#x41;&#66;&eacute;&#0;", NULL),
              "xy AB\xC3\xA9\xEF\xBF\xBD");
    CHECK_STR(clean(NULL, "nested &amp;amp;lt; &amp;lt;p&amp;gt;", NULL), "nested <");
    // A decoded full-width sign is normalized at once, so it is markup in this pass.
    CHECK_STR(clean(NULL, "&#xFF1C;p&#xFF1E;x", NULL), "x");
    // Removing a tag brings e and the combining accent together.
    CHECK_STR(clean(NULL, "e<b>\xCC\x81</b>", NULL), "\xC3\xA9");
    anneal_clean_config c = anneal_clean_config_default();
    c.html = false;
    CHECK_STR(clean(&c, "a<br>b &amp; c", NULL), "a<br>b &amp; c");
}

static void test_boilerplate(void) {
    anneal_clean_stats st = {0};
    CHECK_STR(clean(NULL,
                    "Intro line.\nWe use cookies to improve your experience.\nBody text.\n\n"
                    "\xC2\xA9 2024 Foo. ALL RIGHTS RESERVED.\nClick HERE to subscribe",
                    &st),
              "Intro line.\nBody text.");
    CHECK_EQ(st.boilerplate_lines, 3);
    // Lines longer than boilerplate_max_line are prose that mentions the phrase.
    char longl[600];
    memset(longl, 'x', 400);
    memcpy(longl + 100, " privacy policy ", 16);
    longl[400] = 0;
    CHECK_STR(clean(NULL, longl, NULL), longl);
    anneal_clean_config c = anneal_clean_config_default();
    c.boilerplate_max_line = 0;
    CHECK_STR(clean(&c, longl, NULL), "");
    c = anneal_clean_config_default();
    c.boilerplate = false;
    CHECK_STR(clean(&c, "Share this page\nText", NULL), "Share this page\nText");
    c = only(false, false, false, false, true);
    CHECK_STR(clean(&c, "a\nTerms of Use\n\n\nb\nsubscribe to our newsletter", NULL), "a\n\n\nb");
}

static void test_config(void) {
    anneal_clean_config c = anneal_clean_config_default();
    CHECK(c.nfkc && c.control && c.whitespace && c.html && c.boilerplate);
    CHECK_EQ(c.boilerplate_max_line, 300);
    CHECK_EQ(c.n_patterns, 26);
    CHECK_STR(c.patterns[12], "all rights reserved");
    anneal_err err = {0};
    const char *j = "{\"nfkc\": false, \"boilerplate_extra\": [\"Read More\"], "
                    "\"boilerplate_patterns\": [\"Foo Bar\"], \"boilerplate_max_line\": 0}";
    CHECK_EQ(anneal_clean_config_parse(j, strlen(j), "c.json", &c, &err), ANNEAL_OK);
    CHECK(!c.nfkc && c.boilerplate);
    CHECK_EQ(c.n_patterns, 2);
    CHECK_STR(c.patterns[0], "foo bar");
    CHECK_STR(c.patterns[1], "read more");
    CHECK_EQ(c.boilerplate_max_line, 0);
    CHECK_STR(clean(&c, "x\nREAD MORE here\nfoo bar\ny", NULL), "x\ny");
    anneal_clean_config before = c;
    const char *bad[] = {"{\"nfck\": true}", "{\"html\": 1}", "{\"boilerplate_extra\": [\"x\"]}",
                         "{\"boilerplate_max_line\": -1}", "[1]"};
    const char *want[] = {"c.json: unknown key 'nfck'", "key 'html'", "key 'boilerplate_extra'",
                          "key 'boilerplate_max_line'", "expected a JSON object"};
    for (int i = 0; i < 5; i++) {
        anneal_err e = {0};
        CHECK_EQ(anneal_clean_config_parse(bad[i], strlen(bad[i]), "c.json", &c, &e),
                 ANNEAL_ERR_INVALID_ARG);
        CHECK_CONTAINS(e.msg, want[i]);
    }
    anneal_err e = {0};
    CHECK_EQ(anneal_clean_config_parse("{\"html\": ", 9, "c.json", &c, &e), ANNEAL_ERR_FORMAT);
    CHECK_CONTAINS(e.msg, "c.json");
    CHECK(memcmp(&before, &c, sizeof c) == 0);
}

// Generated text from pieces chosen to interact: markup split by controls, entities that
// decode to markup, full-width signs, combining marks, CR/LF and space runs, boilerplate.
static void test_idempotent(void) {
    static const char *const pieces[] = {
        "<",
        ">",
        "b",
        "br",
        "/",
        "&",
        "amp;",
        "lt;",
        "gt;",
        "#x3C;",
        "#39;",
        ";",
        "\xEF\xAC\x81",
        "\xCC\x81",
        "e",
        " ",
        "  ",
        "\t",
        "\n",
        "\r",
        "\r\n",
        "\xEF\xBC\x9C",
        "\xEF\xBC\x86",
        "click here",
        "\x01",
        "\xFF",
        "<!--",
        "-->",
        "<br>",
        "&#xFF1C;",
        "div",
        "p",
        "\xC2\xA0",
        "\xE1\x84\x80",
        "\xE1\x85\xA1",
        "x",
        "Terms of use",
        "\xC2\x85",
        "&#1;",
        "#",
        "\x00",
    };
    size_t np = sizeof pieces / sizeof *pieces;
    uint64_t seed = 12345;
    anneal_clean_scratch *s2 = anneal_clean_scratch_new();
    int bad = 0;
    char in[512];
    for (int trial = 0; trial < 20000; trial++) {
        size_t n = 0;
        int k = (int)(test_rand(&seed) % 24);
        for (int i = 0; i < k; i++) {
            const char *p = pieces[test_rand(&seed) % np];
            size_t l = p[0] ? strlen(p) : 1;
            memcpy(in + n, p, l);
            n += l;
        }
        const char *o1, *o2;
        size_t n1, n2;
        CHECK_EQ(anneal_clean_text(S, NULL, in, n, &o1, &n1, NULL, NULL), ANNEAL_OK);
        CHECK_EQ(anneal_clean_text(s2, NULL, o1, n1, &o2, &n2, NULL, NULL), ANNEAL_OK);
        if (n1 != n2 || memcmp(o1, o2, n1) != 0) {
            if (bad++ < 3) {
                fprintf(stderr, "not idempotent: in=");
                for (size_t i = 0; i < n; i++)
                    fprintf(stderr, "%02x", (uint8_t)in[i]);
                fprintf(stderr, "\n  once=%.*s\n  twice=%.*s\n", (int)n1, o1, (int)n2, o2);
            }
        }
    }
    CHECK_EQ(bad, 0);
    anneal_clean_scratch_free(s2);
}

int main(void) {
    S = anneal_clean_scratch_new();
    RUN(test_nfkc);
    RUN(test_control);
    RUN(test_whitespace);
    RUN(test_html);
    RUN(test_boilerplate);
    RUN(test_config);
    RUN(test_idempotent);
    anneal_clean_scratch_free(S);
    return TEST_EXIT();
}
