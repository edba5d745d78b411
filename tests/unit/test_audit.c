// Bias audit: counts, windows and PMI on a hand-built corpus with known numbers, flags,
// insufficient groups, the default lexicon, lexicon errors naming the key, and the reports.
#include "anneal/data.h"
#include "test.h"

#include <jansson.h>

static const char *lex =
    "{\"format\": \"anneal-audit-lexicon\", \"version\": 1,\n"
    " \"categories\": {\"c\": {\"a\": [\"alpha\", \"Alpha  Beta\"], \"b\": [\"bravo\"]},\n"
    "                \"d\": {\"x\": [\"alpha\"]}},\n"
    " \"sentiment\": {\"positive\": [\"good\"], \"negative\": [\"bad\"]}}";

static const char *corpus[] = {
    "Alpha beta is good.",      // "alpha beta" is one mention of a; "alpha" one of x
    "BRAVO was bad, bravo!",    // two mentions of b, both within 2 words of "bad"
    "alpha",                    // a and x, no sentiment
    "bravo one two three good", // "good" is 4 words after: outside a window of 2
    "alphabet good",            // whole words only: no mention
};

static anneal_audit *build(double threshold, uint64_t min_mentions) {
    anneal_audit_config cfg = anneal_audit_config_default();
    cfg.window = 2;
    cfg.threshold = threshold;
    cfg.min_mentions = min_mentions;
    anneal_audit *a = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_audit_new(lex, strlen(lex), "lex.json", &cfg, &a, &err), ANNEAL_OK);
    if (!a) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    for (size_t i = 0; i < sizeof corpus / sizeof *corpus; i++)
        CHECK_EQ(anneal_audit_add(a, corpus[i], strlen(corpus[i]), &err), ANNEAL_OK);
    return a;
}

static void test_counts_and_pmi(void) {
    anneal_audit *a = build(0.5, 2);
    if (!a) return;
    uint64_t docs, words, mentions, pw, nw;
    anneal_audit_totals(a, &docs, &words, &mentions, &pw, &nw);
    CHECK_EQ(docs, 5);
    CHECK_EQ(words, 16);
    CHECK_EQ(mentions, 7);
    CHECK_EQ(pw, 3);
    CHECK_EQ(nw, 1);
    CHECK_EQ(anneal_audit_group_count(a), 3);
    anneal_audit_group g;
    // a: 2 mentions in 2 documents, 1 near "good"; N = 7, c(pos) = 1, c(neg) = 2
    anneal_audit_group_get(a, 0, &g);
    CHECK_STR(g.category, "c");
    CHECK_STR(g.name, "a");
    CHECK_EQ(g.mentions, 2);
    CHECK_EQ(g.documents, 2);
    CHECK_EQ(g.positive, 1);
    CHECK_EQ(g.negative, 0);
    CHECK_NEAR(g.pmi_positive, log2(2.25), 1e-12); // log2((1+1)/(2+2) / ((1+1)/(7+2)))
    CHECK_NEAR(g.pmi_negative, log2(0.75), 1e-12); // log2((0+1)/(2+2) / ((2+1)/(7+2)))
    CHECK_NEAR(g.mean_positive, (log2(2.25) + log2(0.9)) / 2, 1e-12);
    CHECK_NEAR(g.mean_negative, (log2(0.75) + log2(1.8)) / 2, 1e-12);
    CHECK_EQ(g.status, ANNEAL_AUDIT_FLAGGED); // differences 0.661 and 0.632 > 0.5
    CHECK(g.flag_positive && g.flag_negative);
    // b: 3 mentions in 2 documents, 2 near "bad"
    anneal_audit_group_get(a, 1, &g);
    CHECK_STR(g.name, "b");
    CHECK_EQ(g.mentions, 3);
    CHECK_EQ(g.documents, 2);
    CHECK_EQ(g.positive, 0);
    CHECK_EQ(g.negative, 2);
    CHECK_NEAR(g.pmi_positive, log2(0.9), 1e-12); // log2(1/5 / (2/9))
    CHECK_NEAR(g.pmi_negative, log2(1.8), 1e-12); // log2(3/5 / (1/3))
    CHECK_EQ(g.status, ANNEAL_AUDIT_FLAGGED);
    // x (category d, alone): "alpha" ends 3 words before "good", outside the window of 2
    anneal_audit_group_get(a, 2, &g);
    CHECK_STR(g.category, "d");
    CHECK_EQ(g.mentions, 2);
    CHECK_EQ(g.positive, 0);
    CHECK_NEAR(g.pmi_positive, log2(1.125), 1e-12); // log2(1/4 / (2/9))
    CHECK_NEAR(g.mean_positive, log2(1.125), 1e-12);
    CHECK_EQ(g.status, ANNEAL_AUDIT_OK);
    CHECK(!g.flag_positive && !g.flag_negative);

    char *json = NULL;
    size_t len = 0;
    anneal_err err = {0};
    CHECK_EQ(anneal_audit_report_json(a, &json, &len, &err), ANNEAL_OK);
    CHECK_EQ(len, strlen(json));
    json_error_t je;
    json_t *root = json_loads(json, 0, &je);
    CHECK(root != NULL);
    CHECK_EQ(json_integer_value(json_object_get(root, "mentions")), 7);
    CHECK_EQ(json_array_size(json_object_get(root, "flagged")), 4);
    CHECK_EQ(json_array_size(json_object_get(root, "insufficient")), 0);
    json_decref(root);
    CHECK_CONTAINS(json, "{\"name\": \"a\", \"mentions\": 2, \"documents\": 2, \"positive\": 1, "
                         "\"negative\": 0, \"pmi\": {\"positive\": 1.1699, \"negative\": -0.4150}, "
                         "\"status\": \"flagged\", \"flags\": [\"positive\", \"negative\"]}");
    CHECK_CONTAINS(json, "{\"category\": \"c\", \"group\": \"b\", \"sentiment\": \"negative\", "
                         "\"pmi\": 0.8480, \"category_mean\": 0.2165, \"difference\": 0.6315}");
    // same input, same bytes
    anneal_audit *a2 = build(0.5, 2);
    char *json2 = NULL;
    CHECK_EQ(anneal_audit_report_json(a2, &json2, NULL, &err), ANNEAL_OK);
    CHECK_STR(json, json2);
    anneal_free(json2);
    anneal_audit_free(a2);
    anneal_free(json);

    char *md = NULL;
    CHECK_EQ(anneal_audit_report_markdown(a, &md, &len, &err), ANNEAL_OK);
    CHECK_CONTAINS(md, "| b | 3 | 2 | 0 | 2 | -0.1520 | 0.8480 | flagged (positive) (negative) |");
    CHECK_CONTAINS(md, "## d\n");
    anneal_free(md);
    anneal_audit_free(a);
}

static void test_threshold_and_insufficient(void) {
    anneal_audit *a = build(0.7, 2); // differences of 0.66 and 0.63 are below 0.7
    anneal_audit_group g;
    for (size_t i = 0; i < 3; i++) {
        anneal_audit_group_get(a, i, &g);
        CHECK_EQ(g.status, ANNEAL_AUDIT_OK);
    }
    anneal_audit_free(a);
    a = build(0.5, 3); // a and x have 2 mentions: not judged; b is alone in its category
    anneal_audit_group_get(a, 0, &g);
    CHECK_EQ(g.status, ANNEAL_AUDIT_INSUFFICIENT);
    CHECK(!g.flag_positive && !g.flag_negative);
    CHECK_NEAR(g.mean_positive, log2(0.9), 1e-12); // the mean of the judged group b only
    anneal_audit_group_get(a, 1, &g);
    CHECK_EQ(g.status, ANNEAL_AUDIT_OK);
    anneal_audit_group_get(a, 2, &g);
    CHECK_EQ(g.status, ANNEAL_AUDIT_INSUFFICIENT);
    CHECK(isnan(g.mean_positive));
    char *json = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_audit_report_json(a, &json, NULL, &err), ANNEAL_OK);
    CHECK_CONTAINS(json, "\"flagged\": [],\n  \"insufficient\": [\n    {\"category\": \"c\", "
                         "\"group\": \"a\", \"mentions\": 2},");
    CHECK_CONTAINS(json, "\"name\": \"d\", \"mean_pmi\": {\"positive\": null, \"negative\": null}");
    anneal_free(json);
    anneal_audit_free(a);
}

static void test_default_lexicon(void) {
    anneal_audit *a = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_audit_new(NULL, 0, NULL, NULL, &a, &err), ANNEAL_OK);
    if (!a) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    CHECK(strstr(anneal_audit_default_lexicon(), "\"nationality_ethnicity\"") != NULL);
    const char *t = "The old man was cruel to the young woman. She was wonderful.";
    CHECK_EQ(anneal_audit_add(a, t, strlen(t), &err), ANNEAL_OK);
    size_t n = anneal_audit_group_count(a);
    CHECK(n >= 20);
    uint64_t seen = 0;
    for (size_t i = 0; i < n; i++) {
        anneal_audit_group g;
        anneal_audit_group_get(a, i, &g);
        if (strcmp(g.name, "old") == 0) {
            CHECK_EQ(g.mentions, 1); // "old man"
            CHECK_EQ(g.negative, 1);
            seen++;
        } else if (strcmp(g.name, "young") == 0) {
            CHECK_EQ(g.mentions, 1); // "young woman"
            CHECK_EQ(g.negative, 1); // "cruel" is 3 words before
            CHECK_EQ(g.positive, 1); // "wonderful" is 3 words after
            seen++;
        } else if (strcmp(g.name, "male") == 0) {
            CHECK_EQ(g.mentions, 1); // "man" inside "old man": another category
            seen++;
        } else if (strcmp(g.name, "female") == 0) {
            CHECK_EQ(g.mentions, 2); // "woman", "She"
            CHECK_EQ(g.positive, 2);
            seen++;
        } else {
            CHECK_EQ(g.mentions, 0);
        }
    }
    CHECK_EQ(seen, 4);
    anneal_audit_free(a);
}

static void expect_lex_error(const char *json, anneal_status want, const char *needle) {
    anneal_audit *a = (anneal_audit *)1;
    anneal_err err = {0};
    CHECK_EQ(anneal_audit_new(json, strlen(json), "lex.json", NULL, &a, &err), want);
    CHECK(a == NULL);
    CHECK_CONTAINS(err.msg, needle);
}

#define SENT "\"sentiment\": {\"positive\": [\"good\"], \"negative\": [\"bad\"]}"

static void test_lexicon_errors(void) {
    expect_lex_error("{\"categories\": {\"g\": {\"f\": [\"she\", 3]}}, " SENT "}",
                     ANNEAL_ERR_INVALID_ARG, "lex.json: key 'categories.g.f[1]': a term must be");
    expect_lex_error("{\"categories\": {\"g\": {\"f\": [\"she\"], \"m\": [\"she\"]}}, " SENT "}",
                     ANNEAL_ERR_INVALID_ARG,
                     "key 'categories.g.m[0]': term 'she' is already in "
                     "group 'f'");
    expect_lex_error("{\"categories\": {\"g\": {\"f\": []}}, " SENT "}", ANNEAL_ERR_INVALID_ARG,
                     "key 'categories.g.f': must be a non-empty array");
    expect_lex_error("{\"categories\": {\"g\": {\"f\": [\"--\"]}}, " SENT "}",
                     ANNEAL_ERR_INVALID_ARG, "key 'categories.g.f[0]': '--' has no word");
    expect_lex_error("{\"categories\": {\"g\": []}, " SENT "}", ANNEAL_ERR_INVALID_ARG,
                     "key 'categories.g': must be a non-empty object");
    expect_lex_error("{\"categories\": {\"g\": {\"f\": [\"she\"]}}}", ANNEAL_ERR_INVALID_ARG,
                     "key 'sentiment': missing");
    expect_lex_error("{\"categories\": {\"g\": {\"f\": [\"she\"]}}, \"sentiment\": {\"positive\": "
                     "[\"good\"], \"negative\": [\"Good\"]}}",
                     ANNEAL_ERR_INVALID_ARG, "key 'sentiment.negative[0]': 'good' is both");
    expect_lex_error("{\"categories\": {\"g\": {\"f\": [\"she\"]}}, \"sentiment\": {\"positive\": "
                     "[\"very good\"], \"negative\": [\"bad\"]}}",
                     ANNEAL_ERR_INVALID_ARG, "key 'sentiment.positive[0]': sentiment entries are");
    expect_lex_error("{\"categories\": {\"g\": {\"f\": [\"she\"]}}, \"sentiment\": {\"positive\": "
                     "[\"good\"], \"negative\": [\"bad\"], \"neutral\": []}}",
                     ANNEAL_ERR_INVALID_ARG, "unknown key 'sentiment.neutral'");
    expect_lex_error("{\"colors\": 1}", ANNEAL_ERR_INVALID_ARG, "unknown key 'colors'");
    expect_lex_error("{\"version\": 2}", ANNEAL_ERR_INVALID_ARG, "key 'version': must be 1");
    expect_lex_error("{\"categories\": {", ANNEAL_ERR_FORMAT, "lex.json: invalid JSON at line 1");
    anneal_audit *a = NULL;
    anneal_err err = {0};
    anneal_audit_config cfg = anneal_audit_config_default();
    cfg.window = -1;
    CHECK_EQ(anneal_audit_new(NULL, 0, NULL, &cfg, &a, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(err.msg, "window -1");
}

// Every byte value, words longer than any lexicon word, empty documents.
static void test_odd_input(void) {
    anneal_audit *a = build(0.5, 2);
    anneal_err err = {0};
    char bytes[256];
    for (int i = 0; i < 256; i++)
        bytes[i] = (char)i;
    CHECK_EQ(anneal_audit_add(a, bytes, sizeof bytes, &err), ANNEAL_OK);
    CHECK_EQ(anneal_audit_add(a, "", 0, &err), ANNEAL_OK);
    char longw[300];
    memset(longw, 'a', sizeof longw);
    CHECK_EQ(anneal_audit_add(a, longw, sizeof longw, &err), ANNEAL_OK);
    uint64_t docs, mentions;
    anneal_audit_totals(a, &docs, NULL, &mentions, NULL, NULL);
    CHECK_EQ(docs, 8);
    CHECK_EQ(mentions, 7);
    anneal_audit_free(a);
}

int main(void) {
    RUN(test_counts_and_pmi);
    RUN(test_threshold_and_insufficient);
    RUN(test_default_lexicon);
    RUN(test_lexicon_errors);
    RUN(test_odd_input);
    return TEST_EXIT();
}
