// The server's OpenAI JSON: request parsing (every field, its type and range, unknown
// fields ignored), chat prompts through the chat template, rendered responses and stream
// chunks byte for byte, error objects, tokenize/detokenize, JSON string escaping, and the
// configuration options (file, environment, bad values).
#include "serve/serve_internal.h"
#include "test.h"

#include "anneal/gguf.h"
#include "anneal/tokenizer.h"

#include <stdlib.h>
#include <unistd.h>

static anneal_tokenizer *g_tok;
static api_env g_env;

static void test_json_str(void) {
    sb b = {0};
    sb_json_str(&b, "a\"b\\c\n\t\x01\x7f", 9);
    CHECK_STR(b.p, "\"a\\\"b\\\\c\\n\\t\\u0001\\u007f\"");
    b.len = 0;
    sb_json_str(&b, "\xc3\xa9\xff" "x\xe2\x82", 6); // é, a stray byte, x, a cut-off sequence
    CHECK_STR(b.p, "\"\xc3\xa9\xEF\xBF\xBDx\xEF\xBF\xBD\xEF\xBF\xBD\"");
    b.len = 0;
    sb_json_float(&b, 0.25);
    sb_puts(&b, " ");
    sb_json_float(&b, NAN);
    CHECK_STR(b.p, "0.25 null");
    CHECK(serve_utf8_valid("h\xc3\xa9", 3));
    CHECK(!serve_utf8_valid("\xc3", 1));
    CHECK(!serve_utf8_valid("\xed\xa0\x80", 3)); // a surrogate
    sb_free(&b);
}

static bool parse(api_route route, const char *body, api_req *q, api_error *e) {
    memset(e, 0, sizeof *e);
    return api_parse(&g_env, route, body, strlen(body), q, e);
}

static void test_parse_completion(void) {
    api_req q;
    api_error e;
    const char *body = "{\"model\":\"m\",\"prompt\":\"Hello\",\"max_tokens\":50,\"max_completion_tokens\":20,"
                       "\"temperature\":0.5,\"top_p\":0.9,\"top_k\":7,\"min_p\":0.1,\"repetition_penalty\":1.2,"
                       "\"presence_penalty\":-1.5,\"frequency_penalty\":2,\"seed\":42,\"stop\":[\"\\n\\n\",\"END\"],"
                       "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"logprobs\":3,"
                       "\"ignore_eos\":true,\"user\":\"u\",\"whatever\":{\"nested\":[1,{}]}}";
    CHECK(parse(API_COMPLETIONS, body, &q, &e));
    srq *r = q.r;
    if (!r) return;
    CHECK_EQ(r->n_prompt, 2);
    CHECK_EQ(r->prompt[0], 1);
    CHECK_EQ(r->prompt[1], 15043);
    CHECK_EQ(r->max_tokens, 20);
    CHECK_NEAR(r->sp.temperature, 0.5, 1e-7);
    CHECK_NEAR(r->sp.top_p, 0.9, 1e-7);
    CHECK_EQ(r->sp.top_k, 7);
    CHECK_NEAR(r->sp.min_p, 0.1, 1e-7);
    CHECK_NEAR(r->sp.repetition_penalty, 1.2, 1e-6);
    CHECK_NEAR(r->sp.presence_penalty, -1.5, 1e-7);
    CHECK_NEAR(r->sp.frequency_penalty, 2, 1e-7);
    CHECK_EQ(r->sp.penalty_last_n, -1);
    CHECK_EQ(r->sp.seed, 42);
    CHECK(r->sp.logprobs);
    CHECK_EQ(r->sp.n_logprobs, 3);
    CHECK(q.logprobs && q.top_logprobs == 3);
    CHECK(q.stream && q.include_usage);
    CHECK(r->ignore_eos);
    CHECK_EQ(r->n_stops, 2);
    CHECK_STR(r->stops[0], "\n\n");
    CHECK_STR(r->stops[1], "END");
    CHECK(strncmp(r->id, "cmpl-", 5) == 0 && strlen(r->id) == 5 + 24);
    CHECK(r->deadline_ns > r->t_arrive);
    srq_release(r);
    // Defaults: neutral sampling, max_tokens up to the cap, a random seed.
    CHECK(parse(API_COMPLETIONS, "{\"prompt\":[1,2,3]}", &q, &e));
    CHECK_EQ(q.r->n_prompt, 3);
    CHECK_EQ(q.r->max_tokens, g_env.max_tokens);
    CHECK_NEAR(q.r->sp.temperature, 1, 0);
    CHECK_EQ(q.r->sp.top_k, 0);
    CHECK_NEAR(q.r->sp.top_p, 1, 0);
    CHECK(!q.stream && !q.logprobs && !q.r->ignore_eos && q.r->n_stops == 0);
    uint64_t seed1 = q.r->sp.seed;
    srq_release(q.r);
    CHECK(parse(API_COMPLETIONS, "{\"prompt\":[\"Hello\"],\"top_k\":-1,\"stop\":\"x\",\"logprobs\":true}", &q, &e));
    CHECK_EQ(q.r->n_prompt, 2);
    CHECK_EQ(q.r->sp.top_k, 0);
    CHECK(q.logprobs && q.top_logprobs == 0);
    CHECK_EQ(q.r->n_stops, 1);
    CHECK(q.r->sp.seed != seed1); // unseeded requests draw their own seeds
    srq_release(q.r);
}

static void test_parse_chat(void) {
    api_req q;
    api_error e;
    const char *body = "{\"messages\":[{\"role\":\"developer\",\"content\":\"Be brief.\"},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hi \"},"
                       "{\"type\":\"text\",\"text\":\"there\"}]},{\"role\":\"assistant\",\"content\":null},"
                       "{\"role\":\"user\",\"content\":\"Again\"}],\"logprobs\":true,\"top_logprobs\":2}";
    CHECK(parse(API_CHAT, body, &q, &e));
    if (!q.r) return;
    const char *want = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
                       "<|im_start|>assistant\n<|im_end|>\n<|im_start|>user\nAgain<|im_end|>\n"
                       "<|im_start|>assistant\n";
    int32_t ids[256];
    size_t n = 0;
    anneal_err err = {0};
    CHECK_EQ(anneal_tokenizer_encode(g_tok, want, strlen(want), ANNEAL_TOK_ADD_SPECIAL | ANNEAL_TOK_PARSE_SPECIAL,
                                     ids, 256, &n, &err),
             ANNEAL_OK);
    CHECK_EQ(q.r->n_prompt, n);
    CHECK(q.r->n_prompt == (int32_t)n && memcmp(q.r->prompt, ids, n * sizeof *ids) == 0);
    CHECK_EQ(q.r->n_stops, 1);
    CHECK_STR(q.r->stops[0], "<|im_end|>");
    CHECK(q.logprobs && q.top_logprobs == 2);
    CHECK(strncmp(q.r->id, "chatcmpl-", 9) == 0);
    srq_release(q.r);
}

static void test_parse_embed(void) {
    api_req q;
    api_error e;
    CHECK(parse(API_EMBEDDINGS, "{\"input\":[\"Hello\",[5,6,7],\"Hello\"],\"encoding_format\":\"base64\"}", &q, &e));
    if (!q.r) return;
    CHECK_EQ(q.r->kind, SRQ_EMBED);
    CHECK_EQ(q.r->n_inputs, 3);
    CHECK_EQ(q.r->in_off[0], 0);
    CHECK_EQ(q.r->in_off[1], 2);
    CHECK_EQ(q.r->in_off[2], 5);
    CHECK_EQ(q.r->in_off[3], 7);
    CHECK_EQ(q.r->prompt[2], 5);
    CHECK(q.base64);
    srq_release(q.r);
    CHECK(parse(API_EMBEDDINGS, "{\"input\":[9,8]}", &q, &e));
    CHECK_EQ(q.r->n_inputs, 1);
    CHECK_EQ(q.r->n_prompt, 2);
    CHECK(!q.base64);
    srq_release(q.r);
}

static void test_parse_errors(void) {
    static const struct {
        api_route route;
        const char *body, *param, *msg;
    } cases[] = {
        {API_COMPLETIONS, "{\"prompt\":\"x\",", "", "invalid JSON"},
        {API_COMPLETIONS, "[1]", "", "JSON object"},
        {API_COMPLETIONS, "\"x\"", "", "JSON object"},
        {API_COMPLETIONS, "{}", "prompt", "required"},
        {API_COMPLETIONS, "{\"prompt\":5}", "prompt", "must be a string"},
        {API_COMPLETIONS, "{\"prompt\":[\"a\",\"b\"]}", "prompt", "one prompt"},
        {API_COMPLETIONS, "{\"prompt\":[1,32000]}", "prompt", "not a token id"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"model\":3}", "model", "string"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"max_tokens\":0}", "max_tokens", "outside"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"max_tokens\":1.5}", "max_tokens", "integer"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"max_tokens\":1000}", "max_tokens", "outside [1, 100]"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"temperature\":2.5}", "temperature", "outside"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"temperature\":\"hot\"}", "temperature", "number"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"top_p\":0}", "top_p", "greater than 0"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"top_k\":-2}", "top_k", "outside"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"min_p\":1.5}", "min_p", "outside"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"presence_penalty\":3}", "presence_penalty", "outside"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"repetition_penalty\":0}", "repetition_penalty", "greater than 0"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"seed\":\"a\"}", "seed", "integer"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"n\":3}", "n", "outside"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"stream\":1}", "stream", "boolean"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"stream_options\":[]}", "stream_options", "object"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"stop\":{}}", "stop", "string or an array"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"stop\":[\"a\",2]}", "stop", "must be a string"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"logprobs\":21}", "logprobs", "outside"},
        {API_COMPLETIONS, "{\"prompt\":\"x\",\"echo\":true}", "echo", "not supported"},
        {API_CHAT, "{\"messages\":[]}", "messages", "non-empty"},
        {API_CHAT, "{\"messages\":{}}", "messages", "non-empty"},
        {API_CHAT, "{}", "messages", "required"},
        {API_CHAT, "{\"messages\":[5]}", "messages[0]", "object"},
        {API_CHAT, "{\"messages\":[{\"content\":\"x\"}]}", "messages[0]", "role"},
        {API_CHAT, "{\"messages\":[{\"role\":\"root\",\"content\":\"x\"}]}", "messages[0]", "unknown role"},
        {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":1}]}", "messages[0]", "string or an array"},
        {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}", "", "NUL"},
        {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", "messages[0]", "text"},
        {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":2}", "top_logprobs", "logprobs"},
        {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":2}", "logprobs", "boolean"},
        {API_EMBEDDINGS, "{}", "input", "required"},
        {API_EMBEDDINGS, "{\"input\":[]}", "input", "1..256"},
        {API_EMBEDDINGS, "{\"input\":[{}]}", "input", "string or an array"},
        {API_EMBEDDINGS, "{\"input\":[[]]}", "input", "string or an array"},
        {API_EMBEDDINGS, "{\"input\":\"x\",\"encoding_format\":\"hex\"}", "encoding_format", "base64"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        api_req q;
        api_error e;
        bool ok = parse(cases[i].route, cases[i].body, &q, &e);
        if (ok) {
            fprintf(stderr, "case %zu (%s) parsed\n", i, cases[i].body);
            srq_release(q.r);
        }
        CHECK(!ok);
        CHECK_EQ(e.status, 400);
        CHECK_STR(e.type, "invalid_request_error");
        CHECK_STR(e.param, cases[i].param);
        CHECK_CONTAINS(e.msg, cases[i].msg);
        CHECK(q.r == NULL);
    }
    // Invalid UTF-8 in the body is rejected by the JSON parser.
    api_req q;
    api_error e;
    CHECK(!parse(API_COMPLETIONS, "{\"prompt\":\"\xff\"}", &q, &e));
    CHECK_EQ(e.status, 400);
    // A prompt longer than the context (100 tokens here) is refused, not truncated.
    char body[4096] = "{\"prompt\":\"";
    for (int i = 0; i < 150; i++)
        strcat(body, "go ");
    strcat(body, "\"}");
    CHECK(!parse(API_COMPLETIONS, body, &q, &e));
    CHECK_EQ(e.status, 400);
    CHECK_CONTAINS(e.msg, "context holds 100");
}

// Random byte edits of valid bodies: every result is a parsed request or a 400 with a
// message and a param that names a field or nothing (run under ASan this also checks
// that no input reads out of bounds or leaks).
static void test_parse_mutations(void) {
    static const char *const seeds[] = {
        "{\"prompt\":\"Hello there\",\"max_tokens\":5,\"temperature\":0.5,\"stop\":[\"a\",\"b\"],\"logprobs\":2}",
        "{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\","
        "\"text\":\"hi\"}]}],\"stream\":true,\"stream_options\":{\"include_usage\":true},\"top_logprobs\":1,"
        "\"logprobs\":true}",
        "{\"input\":[\"one\",[1,2,3]],\"encoding_format\":\"float\"}",
    };
    static const api_route routes[] = {API_COMPLETIONS, API_CHAT, API_EMBEDDINGS};
    static const char alphabet[] = "{}[]\":,0123456789-.eE truefalsnul\\\xff\xc3";
    uint64_t rng = 12345;
    int parsed = 0, rejected = 0;
    for (int it = 0; it < 3000; it++) {
        int k = it % 3;
        char buf[512];
        size_t n = strlen(seeds[k]);
        memcpy(buf, seeds[k], n);
        int edits = 1 + (int)((rng = rng * 6364136223846793005ull + 1442695040888963407ull) >> 61);
        for (int j = 0; j < edits; j++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(rng >> 33) % n;
            char c = alphabet[(rng >> 20) % (sizeof alphabet - 1)];
            switch ((rng >> 12) % 3) {
            case 0: buf[at] = c; break; // replace
            case 1: // delete
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
                break;
            default: // insert
                if (n + 1 < sizeof buf) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = c;
                    n++;
                }
            }
        }
        api_req q;
        api_error e;
        memset(&e, 0, sizeof e);
        if (api_parse(&g_env, routes[k], buf, n, &q, &e)) {
            parsed++;
            CHECK(q.r != NULL);
            srq_release(q.r);
        } else {
            rejected++;
            CHECK(e.status == 400);
            CHECK(e.msg[0] != '\0');
        }
    }
    CHECK(parsed > 100);
    CHECK(rejected > 1000);
}

static void test_error_json(void) {
    api_error e;
    api_set_error(&e, 429, NULL, "slow down after %d", 3);
    e.code = "queue_full";
    sb b = {0};
    api_error_json(&e, &b);
    CHECK_STR(b.p, "{\"error\":{\"message\":\"slow down after 3\",\"type\":\"rate_limit_error\",\"param\":null,"
                   "\"code\":\"queue_full\"}}");
    b.len = 0;
    api_set_error(&e, 401, "x", "no");
    api_error_json(&e, &b);
    CHECK_STR(b.p, "{\"error\":{\"message\":\"no\",\"type\":\"authentication_error\",\"param\":\"x\",\"code\":null}}");
    sb_free(&b);
}

// A finished request made by hand, as the scheduler leaves it.
static srq *finished(const char *text, srq_finish f) {
    srq *r = srq_new(SRQ_GENERATE);
    snprintf(r->id, sizeof r->id, "cmpl-1");
    r->text = anneal_strndup(text, strlen(text));
    r->text_len = strlen(text);
    r->n_prompt = 5;
    r->n_gen = 3;
    r->n_cached = 2;
    r->finish = f;
    r->done = true;
    return r;
}

static void test_render(void) {
    api_req q = {.route = API_COMPLETIONS, .created = 1700000000};
    q.r = finished("Hi \"there\"", SRQ_FIN_LENGTH);
    sb b = {0};
    api_render(&g_env, &q, &b);
    CHECK_STR(b.p, "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1700000000,\"model\":\"tiny\","
                   "\"choices\":[{\"index\":0,\"text\":\"Hi \\\"there\\\"\",\"logprobs\":null,\"finish_reason\":"
                   "\"length\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3,\"total_tokens\":8,"
                   "\"prompt_tokens_details\":{\"cached_tokens\":2}}}");
    b.len = 0;
    q.route = API_CHAT;
    q.r->finish = SRQ_FIN_STOP;
    api_render(&g_env, &q, &b);
    CHECK_CONTAINS(b.p, "\"object\":\"chat.completion\"");
    CHECK_CONTAINS(b.p, "\"message\":{\"role\":\"assistant\",\"content\":\"Hi \\\"there\\\"\"},\"logprobs\":null,"
                        "\"finish_reason\":\"stop\"}]");
    // Logprobs in both formats.
    anneal_sample s = {.token = 15043, .logprob = -0.5f, .n_top = 1, .top = {{15043, -0.5f}}};
    q.r->samples = anneal_malloc(sizeof s);
    q.r->samples[0] = s;
    q.r->n_samples = 1;
    q.logprobs = true;
    b.len = 0;
    api_render(&g_env, &q, &b);
    CHECK_CONTAINS(b.p, "\"logprobs\":{\"content\":[{\"token\":\" Hello\",\"logprob\":-0.5,\"bytes\":[32,72,101,108,108,"
                        "111],\"top_logprobs\":[{\"token\":\" Hello\",\"logprob\":-0.5,\"bytes\":[32,72,101,108,108,"
                        "111]}]}]}");
    q.route = API_COMPLETIONS;
    b.len = 0;
    api_render(&g_env, &q, &b);
    CHECK_CONTAINS(b.p, "\"logprobs\":{\"tokens\":[\" Hello\"],\"token_logprobs\":[-0.5],\"top_logprobs\":[{\" Hello\":"
                        "-0.5}],\"text_offset\":[0]}");
    srq_release(q.r);
    sb_free(&b);
}

static void test_stream_chunks(void) {
    api_req q = {.route = API_CHAT, .created = 7, .include_usage = true};
    q.r = finished("", SRQ_FIN_NONE);
    q.r->done = false;
    sb b = {0};
    api_stream_chunk(&g_env, &q, true, "Hi", 2, NULL, 0, false, NULL, &b);
    CHECK_STR(b.p, "data: {\"id\":\"cmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"tiny\","
                   "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
                   "\"finish_reason\":null}],\"usage\":null}\n\n"
                   "data: {\"id\":\"cmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"tiny\","
                   "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"logprobs\":null,\"finish_reason\":null}],"
                   "\"usage\":null}\n\n");
    b.len = 0;
    q.r->done = true;
    q.r->finish = SRQ_FIN_STOP;
    api_stream_chunk(&g_env, &q, false, NULL, 0, NULL, 0, true, NULL, &b);
    CHECK_STR(b.p, "data: {\"id\":\"cmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"tiny\","
                   "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
                   "\"usage\":null}\n\n"
                   "data: {\"id\":\"cmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"tiny\","
                   "\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3,\"total_tokens\":8,"
                   "\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\n"
                   "data: [DONE]\n\n");
    // Completions logprobs carry text_offset across chunks.
    b.len = 0;
    q.route = API_COMPLETIONS;
    q.logprobs = true;
    q.include_usage = false;
    anneal_sample two[2] = {{.token = 15043, .logprob = -1}, {.token = 3186, .logprob = -2}};
    size_t off = 0;
    api_stream_chunk(&g_env, &q, false, " Hello", 6, two, 1, false, &off, &b);
    CHECK_EQ(off, 6);
    b.len = 0;
    api_stream_chunk(&g_env, &q, false, " world", 6, two + 1, 1, false, &off, &b);
    CHECK_CONTAINS(b.p, "\"text_offset\":[6]");
    CHECK_EQ(off, 12);
    q.logprobs = false;
    // A failed request ends its stream with an error event.
    b.len = 0;
    q.route = API_COMPLETIONS;
    q.include_usage = false;
    q.r->finish = SRQ_FIN_TIMEOUT;
    snprintf(q.r->err_msg, sizeof q.r->err_msg, "late");
    api_stream_chunk(&g_env, &q, false, "x", 1, NULL, 0, true, NULL, &b);
    CHECK_STR(b.p, "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":7,\"model\":\"tiny\","
                   "\"choices\":[{\"index\":0,\"text\":\"x\",\"logprobs\":null,\"finish_reason\":null}]}\n\n"
                   "data: {\"error\":{\"message\":\"late\",\"type\":\"invalid_request_error\",\"param\":null,"
                   "\"code\":null}}\n\n"
                   "data: [DONE]\n\n");
    srq_release(q.r);
    sb_free(&b);
}

static void test_tokenize(void) {
    sb b = {0};
    api_error e;
    const char *t1 = "{\"content\":\"Hello world\"}";
    CHECK(api_tokenize(&g_env, t1, strlen(t1), &b, &e));
    CHECK_STR(b.p, "{\"tokens\":[1,15043,3186]}");
    b.len = 0;
    const char *t2 = "{\"content\":\"Hello\",\"add_special\":false,\"with_pieces\":true}";
    CHECK(api_tokenize(&g_env, t2, strlen(t2), &b, &e));
    CHECK_STR(b.p, "{\"tokens\":[{\"id\":15043,\"piece\":\" Hello\"}]}");
    b.len = 0;
    const char *d1 = "{\"tokens\":[1,15043,3186]}";
    CHECK(api_detokenize(&g_env, d1, strlen(d1), &b, &e));
    CHECK_STR(b.p, "{\"content\":\"Hello world\"}");
    b.len = 0;
    const char *d2 = "{\"tokens\":[]}";
    CHECK(api_detokenize(&g_env, d2, strlen(d2), &b, &e));
    CHECK_STR(b.p, "{\"content\":\"\"}");
    const char *bad[] = {"{}", "{\"content\":3}", "[", "{\"content\":\"x\",\"add_special\":1}"};
    for (size_t i = 0; i < 4; i++) {
        b.len = 0;
        CHECK(!api_tokenize(&g_env, bad[i], strlen(bad[i]), &b, &e));
        CHECK_EQ(e.status, 400);
    }
    const char *badd[] = {"{}", "{\"tokens\":[\"a\"]}", "{\"tokens\":[32000]}", "{\"tokens\":3}"};
    for (size_t i = 0; i < 4; i++) {
        CHECK(!api_detokenize(&g_env, badd[i], strlen(badd[i]), &b, &e));
        CHECK_EQ(e.status, 400);
    }
    b.len = 0;
    api_models(&g_env, 5, &b);
    CHECK_STR(b.p, "{\"object\":\"list\",\"data\":[{\"id\":\"tiny\",\"object\":\"model\",\"created\":5,\"owned_by\":"
                   "\"anneal\",\"meta\":{\"n_ctx\":100,\"n_vocab\":32000,\"n_embd\":8}}]}");
    b.len = 0;
    CHECK(api_model(&g_env, 5, "tiny", &b, &e));
    CHECK_STR(b.p, "{\"id\":\"tiny\",\"object\":\"model\",\"created\":5,\"owned_by\":\"anneal\",\"meta\":"
                   "{\"n_ctx\":100,\"n_vocab\":32000,\"n_embd\":8}}");
    CHECK(!api_model(&g_env, 5, "gpt-4", &b, &e));
    CHECK_EQ(e.status, 404);
    CHECK_STR(e.code, "model_not_found");
    sb_free(&b);
}

static void test_config(void) {
    anneal_serve_config c;
    anneal_serve_config_default(&c);
    CHECK_EQ(c.port, 8080);
    CHECK_EQ(c.parallel, 8);
    CHECK_EQ(c.max_body, 4 << 20);
    anneal_err e = {0};
    CHECK_EQ(anneal_serve_config_set(&c, "port", "0", NULL, &e), ANNEAL_OK);
    CHECK_EQ(c.port, 0);
    CHECK_EQ(anneal_serve_config_set(&c, "api-keys", "/k", NULL, &e), ANNEAL_OK);
    CHECK_STR(c.api_keys, "/k");
    CHECK_EQ(anneal_serve_config_set(&c, "timeout", "2.5", NULL, &e), ANNEAL_OK);
    CHECK_NEAR(c.timeout, 2.5, 0);
    CHECK_EQ(anneal_serve_config_set(&c, "kv-f32", "yes", NULL, &e), ANNEAL_OK);
    CHECK(c.kv_f32);
    CHECK(anneal_serve_config_is_switch("kv-f32"));
    CHECK(!anneal_serve_config_is_switch("port"));
    CHECK_EQ(anneal_serve_config_set(&c, "port", "70000", "here", &e), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(e.msg, "here: port: '70000' is not an integer in 0..65535");
    anneal_err_clear(&e);
    CHECK_EQ(anneal_serve_config_set(&c, "nope", "1", NULL, &e), ANNEAL_ERR_NOT_FOUND);
    anneal_err_clear(&e);
    CHECK_EQ(anneal_serve_config_set(&c, "kv-f32", "maybe", NULL, &e), ANNEAL_ERR_INVALID_ARG);
    anneal_err_clear(&e);
    CHECK_EQ(anneal_serve_config_set(&c, "timeout", "nan", NULL, &e), ANNEAL_ERR_INVALID_ARG);
    // A file: comments, blanks, spaces; errors name the line.
    char path[64];
    snprintf(path, sizeof path, "/tmp/anneal_serve_conf_%d", (int)getpid());
    FILE *f = fopen(path, "w");
    fputs("# settings\n\n  alias = my model  # the name\nparallel=3\n", f);
    fclose(f);
    anneal_err_clear(&e);
    CHECK_EQ(anneal_serve_config_load(&c, path, &e), ANNEAL_OK);
    CHECK_STR(c.alias, "my model");
    CHECK_EQ(c.parallel, 3);
    f = fopen(path, "w");
    fputs("parallel = 2\nbogus line\n", f);
    fclose(f);
    CHECK_EQ(anneal_serve_config_load(&c, path, &e), ANNEAL_ERR_FORMAT);
    CHECK_CONTAINS(e.msg, ":2: expected 'name = value'");
    unlink(path);
    setenv("ANNEAL_SERVE_MAX_QUEUE", "9", 1);
    anneal_err_clear(&e);
    CHECK_EQ(anneal_serve_config_env(&c, &e), ANNEAL_OK);
    CHECK_EQ(c.max_queue, 9);
    setenv("ANNEAL_SERVE_MAX_QUEUE", "0", 1);
    CHECK_EQ(anneal_serve_config_env(&c, &e), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(e.msg, "ANNEAL_SERVE_MAX_QUEUE");
    unsetenv("ANNEAL_SERVE_MAX_QUEUE");
    anneal_serve_config_free(&c);
    CHECK(c.alias == NULL && c.api_keys == NULL);
}

int main(void) {
    anneal_gguf *g = NULL;
    anneal_err e = {0};
    if (anneal_gguf_open(test_shared("fixtures/vocab/ggml-vocab-llama-spm.gguf"), &g, &e) ||
        anneal_tokenizer_load(g, &g_tok, &e)) {
        fprintf(stderr, "cannot load the vocabulary fixture: %s\n", anneal_err_msg(&e));
        return 1;
    }
    g_env = (api_env){.tok = g_tok,
                      .model_name = "tiny",
                      .n_ctx = 100,
                      .max_tokens = 100,
                      .n_embd = 8,
                      .chat_template = ANNEAL_CHAT_CHATML,
                      .timeout_ns = 1000000000ull};
    RUN(test_json_str);
    RUN(test_parse_completion);
    RUN(test_parse_chat);
    RUN(test_parse_embed);
    RUN(test_parse_errors);
    RUN(test_parse_mutations);
    RUN(test_error_json);
    RUN(test_render);
    RUN(test_stream_chunks);
    RUN(test_tokenize);
    RUN(test_config);
    anneal_tokenizer_free(g_tok);
    anneal_gguf_close(g);
    return TEST_EXIT();
}
