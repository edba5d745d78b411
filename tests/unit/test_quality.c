// Tests for src/data/quality.c: every rule just passing and just failing at its default
// threshold, the reported rule, switches, JSON config parsing, odd bytes, a real story.
#include "anneal/data.h"
#include "test.h"

static anneal_quality_scratch *S;

// A growable text buffer for building documents.
static char *buf;
static size_t blen, bcap;

static void b_reset(void) {
    blen = 0;
    if (buf) buf[0] = 0;
}

static void b_add(const char *s, size_t n) {
    if (blen + n + 1 > bcap) {
        bcap = (blen + n + 1) * 2;
        buf = realloc(buf, bcap);
    }
    memcpy(buf + blen, s, n);
    blen += n;
    buf[blen] = 0;
}

static void b_str(const char *s) {
    b_add(s, strlen(s));
}

static void b_rep(char c, size_t n) {
    for (size_t i = 0; i < n; i++)
        b_add(&c, 1);
}

// The defaults with only rule r switched on.
static anneal_quality_config only(anneal_quality_rule r) {
    anneal_quality_config c = anneal_quality_config_default();
    for (int i = 0; i < ANNEAL_QR_COUNT; i++)
        c.enabled[i] = false;
    c.enabled[r] = true;
    return c;
}

static anneal_quality_result run_cfg(const anneal_quality_config *c, const char *t, size_t n) {
    anneal_quality_result res;
    anneal_err e = {0};
    CHECK_EQ(anneal_quality_check(S, c, t, n, &res, &e), ANNEAL_OK);
    return res;
}

// Checks that the buffer passes (keep) or fails exactly rule r with only r enabled.
#define EXPECT(r, want_keep, want_value)                                                           \
    do {                                                                                           \
        anneal_quality_config c_ = only(r);                                                        \
        anneal_quality_result res_ = run_cfg(&c_, buf, blen);                                      \
        CHECK_EQ(res_.keep, (want_keep));                                                          \
        if (!(want_keep)) {                                                                        \
            CHECK_EQ(res_.rule, (r));                                                              \
            CHECK_STR(res_.rule_name, anneal_quality_rule_name(r));                                \
            CHECK_NEAR(res_.value, (want_value), 1e-12);                                           \
            CHECK_NEAR(res_.threshold, c_.threshold[r], 0);                                        \
        } else {                                                                                   \
            CHECK_EQ(res_.rule, ANNEAL_QR_NONE);                                                   \
            CHECK_STR(res_.rule_name, "");                                                         \
        }                                                                                          \
    } while (0)

static void test_names(void) {
    CHECK_STR(anneal_quality_rule_name(ANNEAL_QR_GOPHER_MIN_WORDS), "gopher_min_words");
    CHECK_STR(anneal_quality_rule_name(ANNEAL_QR_C4_CURLY_BRACE), "c4_curly_brace");
    CHECK_STR(anneal_quality_rule_name(ANNEAL_QR_FINEWEB_LIST_RATIO), "fineweb_list_ratio");
    CHECK_STR(anneal_quality_rule_name(ANNEAL_QR_GOPHER_DUP_10GRAM), "gopher_dup_10gram");
    CHECK_STR(anneal_quality_rule_name(ANNEAL_QR_NONE), "");
    CHECK_STR(anneal_quality_rule_name(ANNEAL_QR_COUNT), "?");
    anneal_quality_rule r = ANNEAL_QR_NONE;
    anneal_err e = {0};
    CHECK_EQ(anneal_quality_rule_parse("c4_min_sentences", &r, &e), ANNEAL_OK);
    CHECK_EQ(r, ANNEAL_QR_C4_MIN_SENTENCES);
    CHECK_EQ(anneal_quality_rule_parse("c4_nope", &r, &e), ANNEAL_ERR_NOT_FOUND);
    CHECK_CONTAINS(anneal_err_msg(&e), "'c4_nope'");
    // every name parses back to its rule
    for (int i = 1; i < ANNEAL_QR_COUNT; i++) {
        anneal_quality_rule q;
        CHECK_EQ(
            anneal_quality_rule_parse(anneal_quality_rule_name((anneal_quality_rule)i), &q, NULL),
            ANNEAL_OK);
        CHECK_EQ(q, i);
    }
    anneal_quality_config c = anneal_quality_config_default();
    CHECK_NEAR(c.threshold[ANNEAL_QR_GOPHER_MIN_WORDS], 50, 0);
    CHECK_NEAR(c.threshold[ANNEAL_QR_GOPHER_TOP_3GRAM], 0.18, 0);
    CHECK_NEAR(c.threshold[ANNEAL_QR_GOPHER_DUP_10GRAM], 0.10, 0);
    CHECK_NEAR(c.threshold[ANNEAL_QR_FINEWEB_SHORT_LINES], 0.67, 0);
    CHECK_EQ(c.c4_min_words_per_line, 3);
    CHECK_EQ(c.fineweb_short_line_length, 30);
}

// Ten paragraphs (or lines) of which `dups` repeat the first one.
static void build_repeats(const char *sep, int dups) {
    static const char *const uniq[] = {"alpha",   "bravo", "charlie", "delta", "echo",
                                       "foxtrot", "golf",  "hotel",   "india", "juliet"};
    b_reset();
    for (int i = 0; i < 10; i++) {
        if (i) b_str(sep);
        b_str(i >= 10 - dups ? uniq[0] : uniq[i]);
    }
}

static void test_dup_paragraphs_lines(void) {
    build_repeats("\n\n", 3);
    EXPECT(ANNEAL_QR_GOPHER_DUP_PARA_FRAC, true, 0);
    build_repeats("\n\n", 4);
    EXPECT(ANNEAL_QR_GOPHER_DUP_PARA_FRAC, false, 0.4);
    // three newlines separate too; leading and trailing blank space is stripped first
    b_reset();
    b_str("\n\n\nalpha\n\n\nalpha\n\nbravo\n\n\n");
    EXPECT(ANNEAL_QR_GOPHER_DUP_PARA_FRAC, false, 1.0 / 3.0);

    build_repeats("\n", 3);
    EXPECT(ANNEAL_QR_GOPHER_DUP_LINE_FRAC, true, 0);
    build_repeats("\n", 4);
    EXPECT(ANNEAL_QR_GOPHER_DUP_LINE_FRAC, false, 0.4);
    // blank lines are not duplicates of each other
    b_reset();
    b_str("a\n\n\n\n\nb\n\n\n\nc\n\n\nd");
    EXPECT(ANNEAL_QR_GOPHER_DUP_LINE_FRAC, true, 0);

    // "P\n\nP\n\nF": 10 duplicated characters over 24 + |F|
    for (int f = 25; f <= 26; f++) {
        b_reset();
        b_str("abcdefghij\n\nabcdefghij\n\n");
        b_rep('z', (size_t)f);
        EXPECT(ANNEAL_QR_GOPHER_DUP_PARA_CHAR_FRAC, f == 26, 10.0 / (24 + f));
    }
    // "L\nL\nF": 10 over 22 + |F|
    for (int f = 27; f <= 28; f++) {
        b_reset();
        b_str("abcdefghij\nabcdefghij\n");
        b_rep('z', (size_t)f);
        EXPECT(ANNEAL_QR_GOPHER_DUP_LINE_CHAR_FRAC, f == 28, 10.0 / (22 + f));
    }
}

static void test_top_ngrams(void) {
    static const struct {
        anneal_quality_rule r;
        const char *rep;
        int gram_chars, pass_len;
    } cases[] = {
        // (count 2 x gram_chars) / (|rep| + 1 + L) > threshold fails
        {ANNEAL_QR_GOPHER_TOP_2GRAM, "ab cd ab cd", 5, 38},
        {ANNEAL_QR_GOPHER_TOP_3GRAM, "ab cd ef ab cd ef", 8, 71},
        {ANNEAL_QR_GOPHER_TOP_4GRAM, "ab cd ef gh ab cd ef gh", 11, 114},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        for (int L = cases[i].pass_len - 1; L <= cases[i].pass_len; L++) {
            b_reset();
            b_str(cases[i].rep);
            b_str(" ");
            b_rep('q', (size_t)L);
            double total = (double)strlen(cases[i].rep) + 1 + L;
            EXPECT(cases[i].r, L == cases[i].pass_len, 2.0 * cases[i].gram_chars / total);
        }
    }
    // an n-gram seen once is not repetition, however long
    b_reset();
    b_str("ab cd");
    EXPECT(ANNEAL_QR_GOPHER_TOP_2GRAM, true, 0);
    // punctuation around words does not change the n-gram
    b_reset();
    b_str("(ab cd) ab, cd! ");
    b_rep('q', 30);
    EXPECT(ANNEAL_QR_GOPHER_TOP_2GRAM, false, 10.0 / 46.0);
}

static void test_dup_ngrams(void) {
    // n one-letter words twice, a space and one word of L letters: the second copy is one
    // repeated n-gram of 2n-1 characters in 4n + L.
    static const int pass_total[] = {60, 79, 100, 125, 155, 190}; // n = 5..10
    for (int n = 5; n <= 10; n++) {
        anneal_quality_rule r = (anneal_quality_rule)(ANNEAL_QR_GOPHER_DUP_5GRAM + (n - 5));
        for (int T = pass_total[n - 5] - 1; T <= pass_total[n - 5]; T++) {
            b_reset();
            for (int copy = 0; copy < 2; copy++)
                for (int k = 0; k < n; k++) {
                    char w[3] = {(char)('a' + k), ' ', 0};
                    b_str(w);
                }
            b_rep('q', (size_t)(T - 4 * n));
            EXPECT(r, T == pass_total[n - 5], (2.0 * n - 1) / T);
        }
    }
    // overlapping repeats count once: "a b c d e" x3 -> repeats at 5 and 10, 18 chars of 29
    b_reset();
    b_str("a b c d e a b c d e a b c d e");
    EXPECT(ANNEAL_QR_GOPHER_DUP_5GRAM, false, 18.0 / 29.0);
}

static void words(int n, const char *w) {
    b_reset();
    for (int i = 0; i < n; i++) {
        if (i) b_str(" ");
        b_str(w);
    }
}

static void test_gopher_words(void) {
    words(50, "word");
    EXPECT(ANNEAL_QR_GOPHER_MIN_WORDS, true, 0);
    words(49, "word");
    EXPECT(ANNEAL_QR_GOPHER_MIN_WORDS, false, 49);
    // punctuation-only tokens are not words
    words(49, "word");
    b_str(" - ... !!");
    EXPECT(ANNEAL_QR_GOPHER_MIN_WORDS, false, 49);

    words(100000, "ab");
    EXPECT(ANNEAL_QR_GOPHER_MAX_WORDS, true, 0);
    words(100001, "ab");
    EXPECT(ANNEAL_QR_GOPHER_MAX_WORDS, false, 100001);

    b_reset();
    b_str("abc, (abc) \"abc.\"");
    EXPECT(ANNEAL_QR_GOPHER_MIN_AVG_WORD_LEN, true, 0);
    b_reset();
    b_str("abc abc ab");
    EXPECT(ANNEAL_QR_GOPHER_MIN_AVG_WORD_LEN, false, 8.0 / 3.0);
    // code points, not bytes: three 2-byte letters make a word of 3
    b_reset();
    b_str("\xc3\xa9\xc3\xa9\xc3\xa9 ab");
    EXPECT(ANNEAL_QR_GOPHER_MIN_AVG_WORD_LEN, false, 2.5);

    words(3, "abcdefghij");
    EXPECT(ANNEAL_QR_GOPHER_MAX_AVG_WORD_LEN, true, 0);
    b_reset();
    b_str("abcdefghij abcdefghijk");
    EXPECT(ANNEAL_QR_GOPHER_MAX_AVG_WORD_LEN, false, 10.5);
}

static void test_gopher_symbols(void) {
    words(10, "word");
    b_str(" #tag");
    // "#tag" is a word too: 11 words, 1 hash
    EXPECT(ANNEAL_QR_GOPHER_HASH_RATIO, true, 0);
    words(10, "word");
    b_str(" ##");
    EXPECT(ANNEAL_QR_GOPHER_HASH_RATIO, false, 0.2);

    words(10, "word");
    b_str("...");
    EXPECT(ANNEAL_QR_GOPHER_ELLIPSIS_RATIO, true, 0);
    words(10, "word");
    b_str("... \xe2\x80\xa6"); // "..." and U+2026
    EXPECT(ANNEAL_QR_GOPHER_ELLIPSIS_RATIO, false, 0.2);
    words(10, "word");
    b_str("......."); // two non-overlapping "..."
    EXPECT(ANNEAL_QR_GOPHER_ELLIPSIS_RATIO, false, 0.2);
}

static void lines(int n, int marked, const char *plain, const char *mark) {
    b_reset();
    for (int i = 0; i < n; i++) {
        if (i) b_str("\n");
        b_str(i < marked ? mark : plain);
    }
}

static void test_gopher_lines(void) {
    lines(10, 9, "plain line", "  \xe2\x80\xa2 bullet");
    EXPECT(ANNEAL_QR_GOPHER_BULLET_LINES, true, 0);
    lines(10, 10, "plain line", "- dash bullet");
    EXPECT(ANNEAL_QR_GOPHER_BULLET_LINES, false, 1.0);
    // a final newline adds no line (str.splitlines)
    lines(10, 10, "plain line", "- dash bullet");
    b_str("\n");
    EXPECT(ANNEAL_QR_GOPHER_BULLET_LINES, false, 1.0);

    lines(10, 3, "plain line", "trails off...");
    EXPECT(ANNEAL_QR_GOPHER_END_ELLIPSIS_LINES, true, 0);
    lines(10, 4, "plain line", "trails off\xe2\x80\xa6  ");
    EXPECT(ANNEAL_QR_GOPHER_END_ELLIPSIS_LINES, false, 0.4);
}

static void test_gopher_alpha_stop(void) {
    b_reset();
    b_str("a b c d e f g h 123 4.5");
    EXPECT(ANNEAL_QR_GOPHER_ALPHA_WORDS, true, 0);
    b_reset();
    b_str("a b c d e f g 7 123 4.5");
    EXPECT(ANNEAL_QR_GOPHER_ALPHA_WORDS, false, 0.7);
    // letters outside ASCII count
    b_reset();
    b_str("\xd0\xb4\xd0\xb0 \xe6\x97\xa5 1 c d e f g h i");
    EXPECT(ANNEAL_QR_GOPHER_ALPHA_WORDS, true, 0);

    b_reset();
    b_str("the cat with a hat");
    EXPECT(ANNEAL_QR_GOPHER_STOP_WORDS, true, 0);
    b_reset();
    b_str("The cat with a hat"); // case-sensitive, as datatrove
    EXPECT(ANNEAL_QR_GOPHER_STOP_WORDS, false, 1);
    b_reset();
    b_str("(the) cat, with... hat");
    EXPECT(ANNEAL_QR_GOPHER_STOP_WORDS, true, 0);
}

static void test_c4(void) {
    b_reset();
    b_str("We like lorem and ipsum a lot.");
    EXPECT(ANNEAL_QR_C4_LOREM_IPSUM, true, 0);
    b_reset();
    b_str("Some text.\nThis is Lorem Ipsum dolor sit amet.");
    EXPECT(ANNEAL_QR_C4_LOREM_IPSUM, false, 1);
    // only lines C4 keeps are looked at: no terminal punctuation, no drop
    b_reset();
    b_str("Lorem ipsum dolor sit amet");
    EXPECT(ANNEAL_QR_C4_LOREM_IPSUM, true, 0);

    b_reset();
    b_str("The set (a, b) has two members.");
    EXPECT(ANNEAL_QR_C4_CURLY_BRACE, true, 0);
    b_reset();
    b_str("The set {a, b} has two members.");
    EXPECT(ANNEAL_QR_C4_CURLY_BRACE, false, 1);
    b_reset();
    b_str("int main() {");
    EXPECT(ANNEAL_QR_C4_CURLY_BRACE, true, 0);

    lines(5, 0, "This is a sentence.", "");
    EXPECT(ANNEAL_QR_C4_MIN_SENTENCES, true, 0);
    lines(4, 0, "This is a sentence.", "");
    EXPECT(ANNEAL_QR_C4_MIN_SENTENCES, false, 4);
    // several sentences on a line; citations removed from the end; short, unpunctuated,
    // ellipsis, javascript and policy lines do not count
    b_reset();
    b_str("One is here. Two is here! Three?\n"
          "Cited fact is here.[12]\n"
          "Too short.\n"
          "No end punctuation here\n"
          "It trails off...\n"
          "Please enable JavaScript to view.\n"
          "Read our privacy policy now.\n");
    EXPECT(ANNEAL_QR_C4_MIN_SENTENCES, false, 4);
    b_str("And a fifth one here.");
    EXPECT(ANNEAL_QR_C4_MIN_SENTENCES, true, 0);
    // a line with a word over 1000 characters is dropped
    lines(4, 0, "This is a sentence.", "");
    b_str("\nThis has ");
    b_rep('x', 1001);
    b_str(" in it.");
    EXPECT(ANNEAL_QR_C4_MIN_SENTENCES, false, 4);
}

static void test_fineweb(void) {
    lines(8, 1, "no stop here at all, at all, at all, at all", "Ends here.");
    EXPECT(ANNEAL_QR_FINEWEB_LINE_PUNCT, true, 0);
    lines(9, 1, "no stop here at all, at all, at all, at all", "Ends here.");
    EXPECT(ANNEAL_QR_FINEWEB_LINE_PUNCT, false, 1.0 / 9.0);
    lines(3, 0, "no stop", "");
    EXPECT(ANNEAL_QR_FINEWEB_LINE_PUNCT, false, 0);
    {
        anneal_quality_config c = only(ANNEAL_QR_FINEWEB_LINE_PUNCT);
        c.fineweb_line_punct_exclude_zero = true;
        CHECK(run_cfg(&c, buf, blen).keep);
    }

    // 30 characters is short, 31 is not
    lines(100, 66, "this line has thirty-one chars!", "this line has exactly 30 chars");
    EXPECT(ANNEAL_QR_FINEWEB_SHORT_LINES, true, 0);
    CHECK_EQ(strlen("this line has exactly 30 chars"), 30);
    b_reset();
    for (int i = 0; i < 100; i++) {
        if (i) b_str("\n");
        b_str(i < 67 ? "this line has exactly 30 chars" : "this line has thirty-one chars!");
    }
    EXPECT(ANNEAL_QR_FINEWEB_SHORT_LINES, false, 0.67);

    // one 10-character line twice and a long one: 10 / (20 + L) >= 0.01 fails
    for (int L = 980; L <= 981; L++) {
        b_reset();
        b_str("abcdefghij\nabcdefghij\n");
        b_rep('z', (size_t)L);
        EXPECT(ANNEAL_QR_FINEWEB_CHAR_DUP, L == 981, 10.0 / (20 + L));
    }

    b_reset();
    b_str("a b c\nd e f\ng h\ni j");
    EXPECT(ANNEAL_QR_FINEWEB_LIST_RATIO, true, 0);
    b_reset();
    b_str("a b c\nd e f\ng h\ni\nj");
    EXPECT(ANNEAL_QR_FINEWEB_LIST_RATIO, false, 0.4);
}

static const char *story(void) {
    static char line[4096];
    FILE *f = fopen(test_shared("corpora/tinystories-sample.txt"), "rb");
    CHECK(f != NULL);
    if (!f) return "";
    CHECK(fgets(line, sizeof line, f) != NULL);
    fclose(f);
    line[strcspn(line, "\r\n")] = 0; // the sample has CRLF line ends
    return line;
}

static void test_real_and_switches(void) {
    anneal_quality_config def = anneal_quality_config_default();
    const char *st = story();
    CHECK(strlen(st) > 500);
    anneal_quality_result r = run_cfg(&def, st, strlen(st));
    CHECK(r.keep);
    CHECK_STR(r.rule_name, "");

    // the same story with a curly brace sentence: only c4_curly_brace objects
    b_reset();
    b_str(st);
    b_str("\nShe drew a {heart} on the door.");
    r = run_cfg(&def, buf, blen);
    CHECK(!r.keep);
    CHECK_STR(r.rule_name, "c4_curly_brace");
    anneal_quality_config c = def;
    c.enabled[ANNEAL_QR_C4_CURLY_BRACE] = false;
    r = run_cfg(&c, buf, blen);
    CHECK(r.keep);

    // first failing rule wins, in the documented order
    b_reset();
    b_str("Hello world.");
    r = run_cfg(&def, buf, blen);
    CHECK_STR(r.rule_name, "gopher_min_words");
    CHECK_NEAR(r.value, 2, 0);
    CHECK_NEAR(r.threshold, 50, 0);
    c = def;
    c.enabled[ANNEAL_QR_GOPHER_MIN_WORDS] = false;
    r = run_cfg(&c, buf, blen);
    CHECK_STR(r.rule_name, "gopher_stop_words");
    // a tuned threshold
    c = def;
    c.threshold[ANNEAL_QR_GOPHER_MIN_WORDS] = 2;
    r = run_cfg(&c, buf, blen);
    CHECK_STR(r.rule_name, "gopher_stop_words");

    // everything off keeps anything
    for (int i = 0; i < ANNEAL_QR_COUNT; i++)
        c.enabled[i] = false;
    r = run_cfg(&c, "", 0);
    CHECK(r.keep);
}

static void test_empty_and_odd_bytes(void) {
    anneal_quality_config def = anneal_quality_config_default();
    anneal_quality_result r = run_cfg(&def, "", 0);
    CHECK(!r.keep);
    CHECK_STR(r.rule_name, "gopher_min_words");
    CHECK_NEAR(r.value, 0, 0);
    r = run_cfg(&def, NULL, 0);
    CHECK_STR(r.rule_name, "gopher_min_words");
    // "".split("\n") is one empty line, with no stop character
    anneal_quality_config c = only(ANNEAL_QR_FINEWEB_LINE_PUNCT);
    r = run_cfg(&c, "", 0);
    CHECK_STR(r.rule_name, "fineweb_line_punct");
    // whitespace only: no words, one empty paragraph, no duplicates
    c = only(ANNEAL_QR_GOPHER_DUP_PARA_FRAC);
    CHECK(run_cfg(&c, " \n\n \n", 4).keep);

    // invalid bytes are one non-letter character each; NUL is an ordinary character
    static const char odd[] = "\xff\xfe\xfd ab\0c \xe2\x80";
    size_t n = sizeof odd - 1;
    c = only(ANNEAL_QR_GOPHER_MIN_AVG_WORD_LEN);
    c.threshold[ANNEAL_QR_GOPHER_MIN_AVG_WORD_LEN] = 4;
    r = run_cfg(&c, odd, n);
    CHECK_STR(r.rule_name, "gopher_min_avg_word_len");
    CHECK_NEAR(r.value, (3.0 + 4.0 + 2.0) / 3.0, 1e-12);
    c = only(ANNEAL_QR_GOPHER_ALPHA_WORDS);
    r = run_cfg(&c, odd, n);
    CHECK_NEAR(r.value, 1.0 / 3.0, 1e-12);
    // all rules on: no crash, a verdict
    r = run_cfg(&def, odd, n);
    CHECK(!r.keep);
    // random bytes, every length up to 300
    uint32_t x = 12345;
    char rnd[300];
    for (size_t len = 0; len < sizeof rnd; len++) {
        for (size_t i = 0; i < len; i++) {
            x = x * 1103515245u + 12345u;
            rnd[i] = (char)(x >> 16);
        }
        anneal_quality_result q;
        CHECK_EQ(anneal_quality_check(S, &def, rnd, len, &q, NULL), ANNEAL_OK);
    }
}

static void test_config_json(void) {
    anneal_quality_config c = anneal_quality_config_default();
    anneal_err e = {0};
    const char *good = "{\"gopher_min_words\": 10, \"c4_curly_brace\": false,"
                       " \"fineweb_list_ratio\": {\"enabled\": true, \"threshold\": 0.5},"
                       " \"gopher_stop_words\": {\"enabled\": false},"
                       " \"c4_min_words_per_line\": 2, \"fineweb_short_line_length\": 40,"
                       " \"c4_max_word_length\": 0, \"fineweb_line_punct_exclude_zero\": true}";
    CHECK_EQ(anneal_quality_config_parse(good, strlen(good), "q.json", &c, &e), ANNEAL_OK);
    CHECK(c.enabled[ANNEAL_QR_GOPHER_MIN_WORDS]);
    CHECK_NEAR(c.threshold[ANNEAL_QR_GOPHER_MIN_WORDS], 10, 0);
    CHECK(!c.enabled[ANNEAL_QR_C4_CURLY_BRACE]);
    CHECK_NEAR(c.threshold[ANNEAL_QR_FINEWEB_LIST_RATIO], 0.5, 0);
    CHECK(!c.enabled[ANNEAL_QR_GOPHER_STOP_WORDS]);
    CHECK_NEAR(c.threshold[ANNEAL_QR_GOPHER_STOP_WORDS], 2, 0);
    CHECK_EQ(c.c4_min_words_per_line, 2);
    CHECK_EQ(c.fineweb_short_line_length, 40);
    CHECK_EQ(c.c4_max_word_length, 0);
    CHECK(c.fineweb_line_punct_exclude_zero);

    static const struct {
        const char *json, *needle;
        anneal_status st;
    } bad[] = {
        {"{\"gopher_min_wrds\": 3}", "unknown key 'gopher_min_wrds'", ANNEAL_ERR_INVALID_ARG},
        {"{\"gopher_min_words\": \"x\"}", "'gopher_min_words'", ANNEAL_ERR_INVALID_ARG},
        {"{\"gopher_min_words\": -1}", "'gopher_min_words': threshold", ANNEAL_ERR_INVALID_ARG},
        {"{\"c4_curly_brace\": {\"enabled\": 1}}", "'c4_curly_brace.enabled'",
         ANNEAL_ERR_INVALID_ARG},
        {"{\"c4_curly_brace\": {\"on\": true}}", "unknown key 'c4_curly_brace.on'",
         ANNEAL_ERR_INVALID_ARG},
        {"{\"c4_min_words_per_line\": 2.5}", "'c4_min_words_per_line'", ANNEAL_ERR_INVALID_ARG},
        {"{\"fineweb_line_punct_exclude_zero\": 1}", "'fineweb_line_punct_exclude_zero'",
         ANNEAL_ERR_INVALID_ARG},
        {"[1, 2]", "expected a JSON object", ANNEAL_ERR_INVALID_ARG},
        {"{\"gopher_min_words\": ", "q.json", ANNEAL_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        anneal_quality_config d = anneal_quality_config_default();
        anneal_err e2 = {0};
        // a good key before the bad one must not be applied
        anneal_status st =
            anneal_quality_config_parse(bad[i].json, strlen(bad[i].json), "q.json", &d, &e2);
        CHECK_EQ(st, bad[i].st);
        CHECK_CONTAINS(anneal_err_msg(&e2), bad[i].needle);
        CHECK_NEAR(d.threshold[ANNEAL_QR_GOPHER_MIN_WORDS], 50, 0);
    }
    anneal_quality_config d = anneal_quality_config_default();
    const char *partial = "{\"gopher_min_words\": 7, \"nope\": 1}";
    CHECK_EQ(anneal_quality_config_parse(partial, strlen(partial), NULL, &d, &e),
             ANNEAL_ERR_INVALID_ARG);
    CHECK_NEAR(d.threshold[ANNEAL_QR_GOPHER_MIN_WORDS], 50, 0);
}

static void test_scratch_reuse(void) {
    // a large document after small ones, then small ones again, with the same scratch
    anneal_quality_config def = anneal_quality_config_default();
    const char *st = story();
    for (int round = 0; round < 3; round++) {
        CHECK(run_cfg(&def, st, strlen(st)).keep);
        b_reset();
        for (int i = 0; i < 300; i++) {
            b_str(st);
            b_str("\n\n");
        }
        anneal_quality_result r = run_cfg(&def, buf, blen);
        CHECK_STR(r.rule_name, "gopher_dup_para_frac");
        CHECK_NEAR(r.value, 299.0 / 300.0, 1e-12);
    }
}

int main(void) {
    S = anneal_quality_scratch_new();
    CHECK(S != NULL);
    RUN(test_names);
    RUN(test_dup_paragraphs_lines);
    RUN(test_top_ngrams);
    RUN(test_dup_ngrams);
    RUN(test_gopher_words);
    RUN(test_gopher_symbols);
    RUN(test_gopher_lines);
    RUN(test_gopher_alpha_stop);
    RUN(test_c4);
    RUN(test_fineweb);
    RUN(test_real_and_switches);
    RUN(test_empty_and_odd_bytes);
    RUN(test_config_json);
    RUN(test_scratch_reuse);
    anneal_quality_scratch_free(S);
    free(buf);
    return TEST_EXIT();
}
