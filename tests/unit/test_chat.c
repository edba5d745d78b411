// Chat templates: anneal_chat_apply against the outputs Jinja2 renders from the real
// templates (tests/fixtures/chat-templates/expected, made by tests/reference/chat_render.py),
// detection of each real template, names, the GGUF helper and the error cases.
#include "anneal/tokenizer.h"
#include "test.h"

#include <jansson.h>
#include <unistd.h>

#define FIXDIR "tests/fixtures/chat-templates"

static json_t *load_json(const char *path) {
    char *data = NULL;
    size_t size = 0;
    anneal_err err = {0};
    if (anneal_read_file(path, 1 << 22, &data, &size, &err)) {
        fprintf(stderr, "%s\n", anneal_err_msg(&err));
        return NULL;
    }
    json_t *j = anneal_json_parse(data, size, path, &err);
    if (!j) fprintf(stderr, "%s\n", anneal_err_msg(&err));
    anneal_free(data);
    return j;
}

// Fills msgs (cap entries) from a conversation array; returns the count.
static size_t conversation(json_t *conv, anneal_chat_message *msgs, size_t cap) {
    size_t n = json_array_size(conv);
    if (n > cap) return 0;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(conv, i);
        msgs[i].role = json_string_value(json_object_get(m, "role"));
        msgs[i].content = json_string_value(json_object_get(m, "content"));
    }
    return n;
}

static const char *EXPECTED[] = {
    "Qwen-Qwen2.5-7B-Instruct",
    "meta-llama-Llama-3.1-8B-Instruct",
    "mistralai-Mistral-Nemo-Instruct-2407",
    "microsoft-Phi-3.5-mini-instruct",
    "google-gemma-2-2b-it",
    "gemma3",
    "chatml",
    "llama2",
    "llama3.0",
    "zephyr",
};

// Every case of every expected file: text cases byte for byte (after the BOS text, which
// anneal leaves to the tokenizer), error cases as ANNEAL_ERR_INVALID_ARG.
static void test_expected(void) {
    json_t *convs = load_json(FIXDIR "/conversations.json");
    json_t *random = load_json(FIXDIR "/conversations-random.json");
    CHECK(convs != NULL && random != NULL);
    if (!convs || !random) {
        json_decref(convs);
        json_decref(random);
        return;
    }
    CHECK_EQ(json_object_update(convs, random), 0);
    json_decref(random);
    int n_text = 0, n_error = 0, n_deviation = 0;
    for (size_t f = 0; f < sizeof EXPECTED / sizeof EXPECTED[0]; f++) {
        char path[512];
        snprintf(path, sizeof path, FIXDIR "/expected/%s.json", EXPECTED[f]);
        json_t *doc = load_json(path);
        CHECK(doc != NULL);
        if (!doc) continue;
        anneal_chat_template t;
        anneal_err err = {0};
        const char *name = json_string_value(json_object_get(doc, "template"));
        CHECK_EQ(anneal_chat_template_parse_name(name, &t, &err), ANNEAL_OK);
        const char *bos = anneal_chat_template_bos(t);
        json_t *bos_j = json_object_get(doc, "bos_token");
        // the BOS text we leave out is the model's bos_token whenever the template writes one
        if (bos[0]) CHECK_STR(json_string_value(bos_j), bos);
        json_t *cases = json_object_get(doc, "cases");
        CHECK(json_array_size(cases) >= 32);
        for (size_t i = 0; i < json_array_size(cases); i++) {
            json_t *c = json_array_get(cases, i);
            const char *conv = json_string_value(json_object_get(c, "conversation"));
            bool gen = json_is_true(json_object_get(c, "add_generation_prompt"));
            const char *expect = json_string_value(json_object_get(c, "expect"));
            anneal_chat_message msgs[16];
            size_t n = conversation(json_object_get(convs, conv), msgs, 16);
            CHECK(n > 0);
            char *out = NULL;
            size_t len = 0;
            anneal_err e = {0};
            anneal_status st = anneal_chat_apply(t, msgs, n, gen, &out, &len, &e);
            if (strcmp(expect, "text") == 0) {
                json_t *text = json_object_get(c, "text");
                const char *want = json_string_value(text);
                size_t want_len = json_string_length(text);
                size_t skip = strlen(bos);
                if (want_len < skip || memcmp(want, bos, skip) != 0) skip = 0;
                bool same = st == ANNEAL_OK && len == want_len - skip &&
                            memcmp(out, want + skip, len) == 0 && out[len] == '\0';
                if (!same)
                    fprintf(stderr, "%s %s gen=%d: status %d (%s)\n got: %s\nwant: %s\n",
                            EXPECTED[f], conv, gen, st, anneal_err_msg(&e), out ? out : "",
                            want + skip);
                CHECK(same);
                n_text++;
            } else if (strcmp(expect, "deviation") == 0) {
                CHECK_EQ(st, ANNEAL_OK); // renders as the Gemma 3 template does (gemma3.json)
                n_deviation++;
            } else {
                if (st != ANNEAL_ERR_INVALID_ARG)
                    fprintf(stderr, "%s %s gen=%d: expected an error, got %d\n", EXPECTED[f], conv,
                            gen, st);
                CHECK_EQ(st, ANNEAL_ERR_INVALID_ARG);
                CHECK(out == NULL);
                CHECK_CONTAINS(e.msg, "chat message ");
                n_error++;
            }
            anneal_free(out);
        }
        json_decref(doc);
    }
    json_decref(convs);
    fprintf(stderr, "  %d byte-exact renders, %d rejected inputs, %d documented deviations\n",
            n_text, n_error, n_deviation);
    CHECK_EQ(n_text, 480);
    CHECK_EQ(n_error, 56);
    CHECK_EQ(n_deviation, 24);
}

static void check_detect_file(const char *path, anneal_chat_template want) {
    char *data = NULL;
    size_t size = 0;
    anneal_err err = {0};
    CHECK_EQ(anneal_read_file(path, 1 << 20, &data, &size, &err), ANNEAL_OK);
    if (!data) return;
    anneal_chat_template t = ANNEAL_CHAT_TEMPLATE_COUNT;
    CHECK_EQ(anneal_chat_template_detect(data, &t, &err), ANNEAL_OK);
    if (t != want) fprintf(stderr, "%s: detected %s\n", path, anneal_chat_template_name(t));
    CHECK_EQ(t, want);
    anneal_free(data);
}

static void test_detect(void) {
    static const struct {
        const char *file;
        anneal_chat_template t;
    } real[] =
        {
            {"Qwen-Qwen2.5-7B-Instruct.jinja", ANNEAL_CHAT_QWEN2},
            {"meta-llama-Llama-3.1-8B-Instruct.jinja", ANNEAL_CHAT_LLAMA3},
            {"mistralai-Mistral-Nemo-Instruct-2407.jinja", ANNEAL_CHAT_MISTRAL},
            {"microsoft-Phi-3.5-mini-instruct.jinja", ANNEAL_CHAT_PHI3},
            {"google-gemma-2-2b-it.jinja", ANNEAL_CHAT_GEMMA},
        },
      ours[] = {
          {"gemma3.jinja", ANNEAL_CHAT_GEMMA},  {"chatml.jinja", ANNEAL_CHAT_CHATML},
          {"llama2.jinja", ANNEAL_CHAT_LLAMA2}, {"llama3.0.jinja", ANNEAL_CHAT_LLAMA3_0},
          {"zephyr.jinja", ANNEAL_CHAT_ZEPHYR},
      };
    char rel[256];
    for (size_t i = 0; i < sizeof real / sizeof real[0]; i++) {
        snprintf(rel, sizeof rel, "fixtures/chat-templates/%s", real[i].file);
        check_detect_file(test_shared(rel), real[i].t);
    }
    for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++) {
        snprintf(rel, sizeof rel, FIXDIR "/%s", ours[i].file);
        check_detect_file(rel, ours[i].t);
    }

    anneal_chat_template t = ANNEAL_CHAT_GEMMA;
    anneal_err err = {0};
    CHECK_EQ(anneal_chat_template_detect("{{ messages }}", &t, &err), ANNEAL_ERR_NOT_FOUND);
    CHECK_CONTAINS(err.msg, "not recognized");
    CHECK_EQ(t, ANNEAL_CHAT_GEMMA);
    // Mistral v1-v3 ("[INST] " with spaces) render differently: not claimed as ours
    anneal_err_clear(&err);
    CHECK_EQ(
        anneal_chat_template_detect("{{ bos_token }}{{ '[INST] ' + m + ' [/INST]' }}", &t, &err),
        ANNEAL_ERR_NOT_FOUND);
    anneal_err_clear(&err);
    CHECK_EQ(anneal_chat_template_detect(NULL, &t, &err), ANNEAL_ERR_INVALID_ARG);
}

static void test_names(void) {
    for (int i = 0; i < ANNEAL_CHAT_TEMPLATE_COUNT; i++) {
        anneal_chat_template t = ANNEAL_CHAT_TEMPLATE_COUNT;
        anneal_err err = {0};
        CHECK_EQ(anneal_chat_template_parse_name(anneal_chat_template_name(i), &t, &err),
                 ANNEAL_OK);
        CHECK_EQ(t, i);
        CHECK(anneal_chat_template_stop(i)[0] != '\0');
    }
    CHECK_STR(anneal_chat_template_name(ANNEAL_CHAT_LLAMA3), "llama3");
    CHECK_STR(anneal_chat_template_name(ANNEAL_CHAT_TEMPLATE_COUNT), "unknown");
    CHECK_STR(anneal_chat_template_stop(ANNEAL_CHAT_CHATML), "<|im_end|>");
    CHECK_STR(anneal_chat_template_stop(ANNEAL_CHAT_QWEN2), "<|im_end|>");
    CHECK_STR(anneal_chat_template_stop(ANNEAL_CHAT_LLAMA2), "</s>");
    CHECK_STR(anneal_chat_template_stop(ANNEAL_CHAT_LLAMA3), "<|eot_id|>");
    CHECK_STR(anneal_chat_template_stop(ANNEAL_CHAT_MISTRAL), "</s>");
    CHECK_STR(anneal_chat_template_stop(ANNEAL_CHAT_PHI3), "<|end|>");
    CHECK_STR(anneal_chat_template_stop(ANNEAL_CHAT_GEMMA), "<end_of_turn>");
    CHECK_STR(anneal_chat_template_stop(ANNEAL_CHAT_ZEPHYR), "</s>");
    CHECK_STR(anneal_chat_template_stop(ANNEAL_CHAT_TEMPLATE_COUNT), "");
    CHECK_STR(anneal_chat_template_bos(ANNEAL_CHAT_GEMMA), "<bos>");
    CHECK_STR(anneal_chat_template_bos(ANNEAL_CHAT_LLAMA3), "<|begin_of_text|>");
    CHECK_STR(anneal_chat_template_bos(ANNEAL_CHAT_CHATML), "");
    anneal_chat_template t;
    anneal_err err = {0};
    CHECK_EQ(anneal_chat_template_parse_name("qwen2.5", &t, &err), ANNEAL_OK);
    CHECK_EQ(t, ANNEAL_CHAT_QWEN2);
    CHECK_EQ(anneal_chat_template_parse_name("gemma3", &t, &err), ANNEAL_OK);
    CHECK_EQ(t, ANNEAL_CHAT_GEMMA);
    CHECK_EQ(anneal_chat_template_parse_name("vicuna", &t, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(err.msg, "unknown chat template 'vicuna'");
    CHECK_CONTAINS(err.msg, "zephyr");
}

static anneal_status apply(anneal_chat_template t, const anneal_chat_message *m, size_t n,
                           anneal_err *err) {
    char *out = (char *)"sentinel";
    anneal_status st = anneal_chat_apply(t, m, n, true, &out, NULL, err);
    if (st) CHECK(out == NULL);
    anneal_free(out);
    return st;
}

static void test_errors(void) {
    anneal_err err = {0};
    anneal_chat_message one[] = {{"user", "hi"}};
    CHECK_EQ(apply(ANNEAL_CHAT_CHATML, one, 0, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(err.msg, "no messages");

    anneal_chat_message null_content[] = {{"user", "hi"}, {"assistant", NULL}};
    anneal_err_clear(&err);
    CHECK_EQ(apply(ANNEAL_CHAT_PHI3, null_content, 2, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(err.msg, "chat message 1: content is NULL");
    anneal_chat_message null_role[] = {{NULL, "x"}};
    anneal_err_clear(&err);
    CHECK_EQ(apply(ANNEAL_CHAT_PHI3, null_role, 1, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(err.msg, "chat message 0: role is NULL");

    anneal_chat_message unknown[] = {{"user", "hi"}, {"assistant", "yo"}, {"narrator", "x"}};
    anneal_err_clear(&err);
    CHECK_EQ(apply(ANNEAL_CHAT_QWEN2, unknown, 3, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(err.msg, "chat message 2 (role 'narrator'): role not supported by the qwen2");
    anneal_chat_message tool[] = {{"user", "hi"}, {"tool", "{}"}};
    anneal_err_clear(&err);
    CHECK_EQ(apply(ANNEAL_CHAT_GEMMA, tool, 2, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(err.msg, "chat message 1 (role 'tool')");

    anneal_chat_message two_users[] = {{"system", "s"}, {"user", "a"}, {"user", "b"}};
    static const anneal_chat_template strict[] = {ANNEAL_CHAT_LLAMA2, ANNEAL_CHAT_MISTRAL,
                                                  ANNEAL_CHAT_GEMMA};
    for (size_t i = 0; i < 3; i++) {
        anneal_err_clear(&err);
        CHECK_EQ(apply(strict[i], two_users, 3, &err), ANNEAL_ERR_INVALID_ARG);
        CHECK_CONTAINS(err.msg, "chat message 2 (role 'user')");
        CHECK_CONTAINS(err.msg, "expected 'assistant'");
    }
    anneal_chat_message late_system[] = {{"user", "a"}, {"system", "s"}};
    anneal_err_clear(&err);
    CHECK_EQ(apply(ANNEAL_CHAT_GEMMA, late_system, 2, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(err.msg, "chat message 1 (role 'system')");
    // where the template allows it, a late system message is rendered in place
    anneal_err_clear(&err);
    CHECK_EQ(apply(ANNEAL_CHAT_PHI3, late_system, 2, &err), ANNEAL_OK);

    anneal_err_clear(&err);
    CHECK_EQ(apply(ANNEAL_CHAT_TEMPLATE_COUNT, one, 1, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_EQ(anneal_chat_apply(ANNEAL_CHAT_CHATML, one, 1, true, NULL, NULL, NULL),
             ANNEAL_ERR_INVALID_ARG);
}

// Jinja's trim is Python's str.strip(): Unicode whitespace, and invalid UTF-8 is not
// whitespace (Python never sees it; we must neither strip nor overrun it).
static void test_trim_bytes(void) {
    anneal_chat_message m[] = {{"user", " \xe3\x80\x80x\xff \xe3\x80"}, {"assistant", "\x80 "}};
    char *out = NULL;
    size_t len = 0;
    anneal_err err = {0};
    CHECK_EQ(anneal_chat_apply(ANNEAL_CHAT_GEMMA, m, 2, false, &out, &len, &err), ANNEAL_OK);
    CHECK_STR(out, "<start_of_turn>user\nx\xff \xe3\x80<end_of_turn>\n"
                   "<start_of_turn>model\n\x80<end_of_turn>\n");
    CHECK_EQ(len, strlen(out));
    anneal_free(out);
    // a Llama 2 system message is kept as written: only the user text's end is stripped
    anneal_chat_message l2[] = {{"system", " S "}, {"user", "\tq\xe2\x80\x83"}};
    CHECK_EQ(anneal_chat_apply(ANNEAL_CHAT_LLAMA2, l2, 2, true, &out, &len, &err), ANNEAL_OK);
    CHECK_STR(out, "[INST] <<SYS>>\n S \n<</SYS>>\n\n\tq [/INST]");
    anneal_free(out);
    // a conversation can render to nothing at all: still a valid, empty string
    anneal_chat_message sys_only[] = {{"system", "S"}};
    CHECK_EQ(anneal_chat_apply(ANNEAL_CHAT_LLAMA2, sys_only, 1, true, &out, &len, &err), ANNEAL_OK);
    CHECK_STR(out, "");
    CHECK_EQ(len, 0);
    anneal_free(out);
}

static void write_gguf(const char *path, const char *tmpl, bool as_number) {
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    anneal_gguf_writer_set_str(w, "general.architecture", "llama");
    if (tmpl) anneal_gguf_writer_set_str(w, "tokenizer.chat_template", tmpl);
    if (as_number) anneal_gguf_writer_set_u32(w, "tokenizer.chat_template", 7);
    anneal_err err = {0};
    CHECK_EQ(anneal_gguf_writer_write(w, path, &err), ANNEAL_OK);
    anneal_gguf_writer_free(w);
}

static void check_gguf(const char *tmpl, bool as_number, anneal_status want_st,
                       anneal_chat_template want, bool want_fallback) {
    char path[512];
    snprintf(path, sizeof path, "%s/chat.gguf", test_tmpdir());
    write_gguf(path, tmpl, as_number);
    anneal_gguf *g = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_gguf_open(path, &g, &err), ANNEAL_OK);
    if (!g) return;
    anneal_chat_template t = ANNEAL_CHAT_TEMPLATE_COUNT;
    bool fallback = !want_fallback;
    CHECK_EQ(anneal_chat_template_from_gguf(g, &t, &fallback, &err), want_st);
    if (want_st == ANNEAL_OK) {
        CHECK_EQ(t, want);
        CHECK_EQ(fallback, want_fallback);
    } else {
        CHECK_CONTAINS(err.msg, "tokenizer.chat_template");
    }
    anneal_gguf_close(g);
    unlink(path);
}

static void test_from_gguf(void) {
    check_gguf("{{ bos_token }}{% for m in messages %}<start_of_turn>{% endfor %}", false,
               ANNEAL_OK, ANNEAL_CHAT_GEMMA, false);
    check_gguf(NULL, false, ANNEAL_OK, ANNEAL_CHAT_CHATML, true);
    check_gguf("{{ messages }}", false, ANNEAL_OK, ANNEAL_CHAT_CHATML, true);
    check_gguf(NULL, true, ANNEAL_ERR_FORMAT, ANNEAL_CHAT_CHATML, false);
    rmdir(test_tmpdir());

    // llama.cpp's Phi-3 vocabulary carries Phi-3-mini's original template
    static const struct {
        const char *file;
        anneal_chat_template t;
        bool fallback;
    } vocabs[] = {{"fixtures/vocab/ggml-vocab-phi-3.gguf", ANNEAL_CHAT_PHI3, false},
                  {"fixtures/vocab/ggml-vocab-llama-spm.gguf", ANNEAL_CHAT_CHATML, true}};
    for (size_t i = 0; i < 2; i++) {
        anneal_gguf *g = NULL;
        anneal_err err = {0};
        CHECK_EQ(anneal_gguf_open(test_shared(vocabs[i].file), &g, &err), ANNEAL_OK);
        if (!g) continue;
        anneal_chat_template t = ANNEAL_CHAT_TEMPLATE_COUNT;
        bool fallback = !vocabs[i].fallback;
        CHECK_EQ(anneal_chat_template_from_gguf(g, &t, &fallback, &err), ANNEAL_OK);
        CHECK_EQ(t, vocabs[i].t);
        CHECK_EQ(fallback, vocabs[i].fallback);
        anneal_gguf_close(g);
    }
}

static size_t count_id(const anneal_token *ids, size_t n, anneal_token id) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ids[i] == id;
    return c;
}

// Renders, then tokenizes with ADD_SPECIAL | PARSE_SPECIAL (the documented recipe) into ids.
static size_t render_tokens(const char *vocab, anneal_chat_template t, const anneal_chat_message *m,
                            size_t n, anneal_token *ids, size_t cap, anneal_tokenizer **tok) {
    anneal_gguf *g = NULL;
    anneal_err err = {0};
    *tok = NULL;
    CHECK_EQ(anneal_gguf_open(test_shared(vocab), &g, &err), ANNEAL_OK);
    if (!g) return 0;
    CHECK_EQ(anneal_tokenizer_load(g, tok, &err), ANNEAL_OK);
    anneal_gguf_close(g);
    char *text = NULL;
    size_t len = 0, n_ids = 0;
    CHECK_EQ(anneal_chat_apply(t, m, n, true, &text, &len, &err), ANNEAL_OK);
    if (*tok && text)
        CHECK_EQ(anneal_tokenizer_encode(*tok, text, len,
                                         ANNEAL_TOK_ADD_SPECIAL | ANNEAL_TOK_PARSE_SPECIAL, ids,
                                         cap, &n_ids, &err),
                 ANNEAL_OK);
    anneal_free(text);
    return n_ids;
}

// The BOS contract: the vocabulary adds exactly one BOS in front; special-token texts in the
// prompt become their control tokens.
static void test_tokenize_prompt(void) {
    anneal_token ids[256];
    anneal_tokenizer *tok;
    anneal_chat_message phi[] = {{"system", "Be brief."}, {"user", "Hi"}};
    size_t n = render_tokens("fixtures/vocab/ggml-vocab-phi-3.gguf", ANNEAL_CHAT_PHI3, phi, 2, ids,
                             256, &tok);
    if (tok && n > 2) {
        anneal_token bos = anneal_tokenizer_bos(tok);
        CHECK_EQ(ids[0], bos);
        CHECK_EQ(count_id(ids, n, bos), 1);
        CHECK_EQ(ids[1], anneal_tokenizer_find(tok, "<|system|>", 10));
        CHECK_EQ(count_id(ids, n, anneal_tokenizer_find(tok, "<|end|>", 7)), 2);
        CHECK_EQ(count_id(ids, n, anneal_tokenizer_find(tok, "<|assistant|>", 13)), 1);
    }
    anneal_tokenizer_free(tok);

    anneal_chat_message l2[] = {{"system", "S"}, {"user", "a"}, {"assistant", "b"}, {"user", "c"}};
    n = render_tokens("fixtures/vocab/ggml-vocab-llama-spm.gguf", ANNEAL_CHAT_LLAMA2, l2, 4, ids,
                      256, &tok);
    if (tok && n > 2) {
        CHECK_EQ(ids[0], anneal_tokenizer_bos(tok));
        // one BOS added by the vocabulary, one written as "<s>" before the second [INST]
        CHECK_EQ(count_id(ids, n, anneal_tokenizer_bos(tok)), 2);
        CHECK_EQ(count_id(ids, n, anneal_tokenizer_eos(tok)), 1);
    }
    anneal_tokenizer_free(tok);
}

// Random roles and random bytes (invalid UTF-8 included) through every template: either a
// NUL-free rendering whose length is reported right, or INVALID_ARG; never anything else.
static void test_random_inputs(void) {
    static const char *roles[] = {"system", "user", "assistant", "tool", "ipython", "x", ""};
    static const char bytes[] = " \t\n\x0b\x80\xbf\xc2\xa0\xe3\x80\x80\xf0\x9f\xff<|>a";
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    char content[8][24];
    int n_ok = 0;
    for (int iter = 0; iter < 3000; iter++) {
        anneal_chat_message m[8];
        size_t n = 1 + test_rand(&seed) % 8;
        for (size_t i = 0; i < n; i++) {
            size_t len = test_rand(&seed) % 23;
            for (size_t j = 0; j < len; j++)
                content[i][j] = bytes[test_rand(&seed) % (sizeof bytes - 1)];
            content[i][len] = '\0';
            bool alternate = test_rand(&seed) % 2;
            m[i].role = alternate ? (i % 2 ? "assistant" : "user")
                                  : roles[test_rand(&seed) % (sizeof roles / sizeof roles[0])];
            m[i].content = content[i];
        }
        anneal_chat_template t = (anneal_chat_template)(iter % ANNEAL_CHAT_TEMPLATE_COUNT);
        char *out = NULL;
        size_t len = 0;
        anneal_err err = {0};
        anneal_status st = anneal_chat_apply(t, m, n, iter % 3 == 0, &out, &len, &err);
        CHECK(st == ANNEAL_OK || st == ANNEAL_ERR_INVALID_ARG);
        if (st == ANNEAL_OK) {
            CHECK(out != NULL && strlen(out) == len);
            n_ok++;
        }
        anneal_free(out);
    }
    CHECK(n_ok > 300);
}

int main(void) {
    RUN(test_expected);
    RUN(test_detect);
    RUN(test_names);
    RUN(test_errors);
    RUN(test_trim_bytes);
    RUN(test_from_gguf);
    RUN(test_tokenize_prompt);
    RUN(test_random_inputs);
    return TEST_EXIT();
}
