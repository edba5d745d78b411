// Tokenizer tests: llama.cpp's vocabulary test vectors (ids must match exactly), round trips,
// special tokens, byte fallback, invalid UTF-8, streaming detokenization and load errors.
#include "anneal/gguf.h"
#include "anneal/tokenizer.h"
#include "test.h"
#include "tokenizer/tok_build.h"

#include <unistd.h>

static const char *VOCABS[] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-phi-3.gguf",
                               "ggml-vocab-gpt-2.gguf", "ggml-vocab-deepseek-llm.gguf"};
enum { V_LLAMA, V_PHI3, V_GPT2, V_DEEPSEEK, N_VOCABS };
static anneal_tokenizer *tok[N_VOCABS];

static anneal_tokenizer *load_vocab(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "fixtures/vocab/%s", name);
    anneal_err err = {0};
    anneal_gguf *g = NULL;
    if (anneal_gguf_open(test_shared(rel), &g, &err)) {
        fprintf(stderr, "cannot open %s: %s\n", test_shared(rel), anneal_err_msg(&err));
        exit(1);
    }
    anneal_tokenizer *t = NULL;
    anneal_status st = anneal_tokenizer_load(g, &t, &err);
    anneal_gguf_close(g);
    if (st) {
        fprintf(stderr, "cannot load the tokenizer of %s: %s\n", name, anneal_err_msg(&err));
        exit(1);
    }
    return t;
}

// Encodes into a malloc'd array; *n gets the count.
static anneal_token *enc(const anneal_tokenizer *t, const char *s, size_t len, unsigned flags,
                         size_t *n) {
    anneal_err err = {0};
    size_t cap = len + 8;
    anneal_token *ids = malloc(cap * sizeof *ids);
    anneal_status st = anneal_tokenizer_encode(t, s, len, flags, ids, cap, n, &err);
    if (st == ANNEAL_ERR_RANGE) {
        ids = realloc(ids, *n * sizeof *ids);
        anneal_err_clear(&err);
        st = anneal_tokenizer_encode(t, s, len, flags, ids, *n, n, &err);
    }
    if (st) {
        fprintf(stderr, "encode failed: %s\n", anneal_err_msg(&err));
        *n = 0;
    }
    return ids;
}

// Space-separated ids, each with a leading space (the .out format).
static void ids_str(const anneal_token *ids, size_t n, char *out, size_t cap) {
    size_t k = 0;
    out[0] = 0;
    for (size_t i = 0; i < n && k + 16 < cap; i++)
        k += (size_t)snprintf(out + k, cap - k, " %d", ids[i]);
}

static char *dec(const anneal_tokenizer *t, const anneal_token *ids, size_t n, bool special,
                 size_t *len) {
    anneal_err err = {0};
    size_t need = 0;
    anneal_status st = anneal_tokenizer_decode(t, ids, n, special, NULL, 0, &need, &err);
    CHECK(st == ANNEAL_OK || st == ANNEAL_ERR_RANGE);
    char *out = malloc(need + 1);
    anneal_err_clear(&err);
    st = anneal_tokenizer_decode(t, ids, n, special, out, need + 1, len, &err);
    CHECK_EQ(st, ANNEAL_OK);
    CHECK_EQ(*len, need);
    return out;
}

// ---- llama.cpp's test vectors -------------------------------------------------------------
static char *read_all(const char *path, size_t *size) {
    anneal_err err = {0};
    char *data = NULL;
    if (anneal_read_file(path, 1 << 24, &data, size, &err)) {
        fprintf(stderr, "%s\n", anneal_err_msg(&err));
        exit(1);
    }
    return data;
}

static const char SEP[] = "\n__ggml_vocab_test__\n";

static void check_vectors(int v) {
    char rel[256];
    snprintf(rel, sizeof rel, "fixtures/vocab/%s.inp", VOCABS[v]);
    size_t isz, osz;
    char *inp = read_all(test_shared(rel), &isz);
    snprintf(rel, sizeof rel, "fixtures/vocab/%s.out", VOCABS[v]);
    char *outp = read_all(test_shared(rel), &osz);
    // The .inp file is the inputs each followed by SEP (so it ends with SEP); the .out
    // file one line per input. No BOS: llama.cpp's test writes add_special = false.
    size_t pos = 0, opos = 0;
    int n_cases = 0, n_ok = 0, n_round = 0;
    size_t sep_len = sizeof SEP - 1;
    while (pos < isz) {
        const char *s = inp + pos;
        const char *e = memmem(s, isz - pos, SEP, sep_len);
        CHECK(e != NULL);
        if (!e) break;
        size_t len = (size_t)(e - s);
        const char *ol = outp + opos;
        const char *oe = memchr(ol, '\n', osz - opos);
        CHECK(oe != NULL);
        if (!oe) break;
        size_t n;
        anneal_token *ids = enc(tok[v], s, len, 0, &n);
        char got[8192];
        ids_str(ids, n, got, sizeof got);
        char want[8192];
        snprintf(want, sizeof want, "%.*s", (int)(oe - ol), ol);
        if (strcmp(got, want) == 0) {
            n_ok++;
        } else {
            fprintf(stderr, "%s case %d '%.*s':\n  want%s\n  got %s\n", VOCABS[v], n_cases,
                    (int)len, s, want, got);
        }
        size_t dl;
        char *back = dec(tok[v], ids, n, false, &dl);
        if (dl == len && memcmp(back, s, len) == 0)
            n_round++;
        else
            fprintf(stderr, "%s case %d: decode gives '%.*s'\n", VOCABS[v], n_cases, (int)dl, back);
        free(back);
        free(ids);
        n_cases++;
        pos = (size_t)(e - inp) + sep_len;
        opos = (size_t)(oe - outp) + 1;
    }
    CHECK_EQ(n_cases, 46);
    CHECK_EQ(n_ok, n_cases);
    CHECK_EQ(n_round, n_cases);
    CHECK_EQ(opos, osz);
    free(inp);
    free(outp);
}

static void test_vectors_llama_spm(void) {
    check_vectors(V_LLAMA);
}
static void test_vectors_phi3(void) {
    check_vectors(V_PHI3);
}
static void test_vectors_gpt2(void) {
    check_vectors(V_GPT2);
}
static void test_vectors_deepseek(void) {
    check_vectors(V_DEEPSEEK);
}

// ---- properties of loaded vocabularies ------------------------------------------------------
static void test_metadata(void) {
    anneal_tokenizer *t = tok[V_LLAMA];
    CHECK_EQ(anneal_tokenizer_kind(t), ANNEAL_TOK_SPM);
    CHECK_EQ(anneal_tokenizer_n_vocab(t), 32000);
    CHECK_EQ(anneal_tokenizer_bos(t), 1);
    CHECK_EQ(anneal_tokenizer_eos(t), 2);
    CHECK_EQ(anneal_tokenizer_unk(t), 0);
    CHECK_EQ(anneal_tokenizer_pad(t), -1);
    CHECK(anneal_tokenizer_add_bos(t));
    CHECK(!anneal_tokenizer_add_eos(t));
    CHECK(anneal_tokenizer_add_space_prefix(t));
    CHECK_STR(anneal_tokenizer_pre(t), "default");
    size_t len;
    CHECK_STR(anneal_tokenizer_token_text(t, 15043, &len), "\xE2\x96\x81Hello");
    CHECK_EQ(len, 8);
    CHECK(anneal_tokenizer_token_text(t, 32000, &len) == NULL);
    CHECK(anneal_tokenizer_token_text(t, -1, NULL) == NULL);
    CHECK_EQ(anneal_tokenizer_token_type(t, 1), ANNEAL_TOK_TYPE_CONTROL);
    CHECK_EQ(anneal_tokenizer_token_type(t, 13), ANNEAL_TOK_TYPE_BYTE);
    CHECK_EQ(anneal_tokenizer_token_type(t, 15043), ANNEAL_TOK_TYPE_NORMAL);
    CHECK_EQ(anneal_tokenizer_find(t, "\xE2\x96\x81Hello", 8), 15043);
    CHECK_EQ(anneal_tokenizer_find(t, "<0x0A>", 6), 13);
    CHECK_EQ(anneal_tokenizer_find(t, "no such token", 13), -1);

    t = tok[V_GPT2];
    CHECK_EQ(anneal_tokenizer_kind(t), ANNEAL_TOK_BPE);
    CHECK_EQ(anneal_tokenizer_n_vocab(t), 50257);
    CHECK_EQ(anneal_tokenizer_bos(t), 50256);
    CHECK(!anneal_tokenizer_add_bos(t)); // no add_bos_token key: llama.cpp's gpt2 default
    CHECK(!anneal_tokenizer_add_space_prefix(t));
    CHECK_STR(anneal_tokenizer_pre(t), "gpt-2");
    CHECK_EQ(anneal_tokenizer_find(t, "\xC4\xA0the", 5), 262); // "Ġthe"

    t = tok[V_DEEPSEEK];
    CHECK_EQ(anneal_tokenizer_bos(t), 100000);
    CHECK(anneal_tokenizer_add_bos(t));
    CHECK_STR(anneal_tokenizer_pre(t), "deepseek-llm");
}

static void expect_ids(const anneal_tokenizer *t, const char *s, unsigned flags, const char *want) {
    size_t n;
    anneal_token *ids = enc(t, s, strlen(s), flags, &n);
    char got[4096];
    ids_str(ids, n, got, sizeof got);
    CHECK_STR(got, want);
    free(ids);
}

static void test_add_special(void) {
    expect_ids(tok[V_LLAMA], "Hello world", ANNEAL_TOK_ADD_SPECIAL, " 1 15043 3186");
    expect_ids(tok[V_LLAMA], "", ANNEAL_TOK_ADD_SPECIAL, " 1");
    expect_ids(tok[V_LLAMA], "", 0, "");
    expect_ids(tok[V_GPT2], "Hello world", ANNEAL_TOK_ADD_SPECIAL, " 15496 995");
    expect_ids(tok[V_DEEPSEEK], "Hello", ANNEAL_TOK_ADD_SPECIAL, " 100000 17464");
    // decode strips the SentencePiece space after a hidden BOS as well
    size_t n, len;
    anneal_token *ids = enc(tok[V_LLAMA], " Hello", 6, ANNEAL_TOK_ADD_SPECIAL, &n);
    char *s = dec(tok[V_LLAMA], ids, n, false, &len);
    CHECK_STR(s, " Hello");
    free(s);
    s = dec(tok[V_LLAMA], ids, n, true, &len);
    CHECK_STR(s, "<s>  Hello");
    free(s);
    free(ids);
}

static void test_special_tokens(void) {
    // Control tokens are plain text unless PARSE_SPECIAL.
    expect_ids(tok[V_LLAMA], "<s>Hi</s>", 0, " 529 29879 29958 18567 829 29879 29958");
    expect_ids(tok[V_LLAMA], "<s>Hi</s>", ANNEAL_TOK_PARSE_SPECIAL, " 1 6324 2");
    // A space prefix follows every special token (llama.cpp), and ids around it are split.
    expect_ids(tok[V_LLAMA], "a<s>b", ANNEAL_TOK_PARSE_SPECIAL, " 263 1 289");
    expect_ids(tok[V_PHI3], "<|user|>\nHi<|end|>", ANNEAL_TOK_PARSE_SPECIAL,
               " 32010 29871 13 18567 32007");
    expect_ids(tok[V_GPT2], "a<|endoftext|>b", ANNEAL_TOK_PARSE_SPECIAL, " 64 50256 65");
    expect_ids(tok[V_GPT2], "a<|endoftext|>b", 0, " 64 27 91 437 1659 5239 91 29 65");
    // User-defined tokens are split out even without PARSE_SPECIAL ("ü" in deepseek).
    expect_ids(tok[V_DEEPSEEK], "\xC3\xBC", 0, " 100014");
    // Longest match first: "<｜end▁of▁sentence｜>" is control, and matched whole.
    expect_ids(tok[V_DEEPSEEK],
               "x<\xEF\xBD\x9C"
               "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
               ANNEAL_TOK_PARSE_SPECIAL, " 87 100001");
    // Decoding shows control tokens only with special.
    anneal_token ids[] = {1, 15043, 2};
    size_t len;
    char *s = dec(tok[V_LLAMA], ids, 3, false, &len);
    CHECK_STR(s, "Hello");
    free(s);
    s = dec(tok[V_LLAMA], ids, 3, true, &len);
    CHECK_STR(s, "<s> Hello</s>");
    free(s);
    char buf[16];
    CHECK_EQ(anneal_tokenizer_piece(tok[V_LLAMA], 1, false, buf, sizeof buf), 0);
    CHECK_EQ(anneal_tokenizer_piece(tok[V_LLAMA], 1, true, buf, sizeof buf), 3);
    CHECK(memcmp(buf, "<s>", 3) == 0);
    CHECK_EQ(anneal_tokenizer_piece(tok[V_LLAMA], 15043, false, buf, sizeof buf), 6);
    CHECK(memcmp(buf, " Hello", 6) == 0);
    CHECK_EQ(anneal_tokenizer_piece(tok[V_LLAMA], 13, false, buf, sizeof buf), 1);
    CHECK_EQ(buf[0], '\n');
    CHECK_EQ(anneal_tokenizer_piece(tok[V_LLAMA], 32000, false, buf, sizeof buf), -1);
    CHECK_EQ(anneal_tokenizer_piece(tok[V_GPT2], 262, false, buf, sizeof buf), 4);
    CHECK(memcmp(buf, " the", 4) == 0);
    // A short buffer still reports the full length.
    CHECK_EQ(anneal_tokenizer_piece(tok[V_LLAMA], 15043, false, buf, 2), 6);
}

static void test_byte_fallback(void) {
    // Characters outside the vocabulary become their UTF-8 bytes as <0xNN> tokens
    // (id = byte + 3 in llama's vocabulary).
    expect_ids(tok[V_LLAMA], "\xF0\x9F\xA6\x99", 0, " 29871 243 162 169 156");
    expect_ids(tok[V_LLAMA], "\x01", 0, " 29871 4");
    expect_ids(tok[V_LLAMA], "a\tb", 0, " 263 12 29890");
}

static bool utf8_valid(const char *s, size_t len) {
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t l = anneal_utf8_decode((const uint8_t *)s + i, len - i, &cp);
        if (!l) return false;
        i += l;
    }
    return true;
}

// decode(encode(s)) == s. DeepSeek's vocabulary reuses the characters its byte map gives
// the 13 bytes that never occur in valid UTF-8 (0xC0, 0xC1, 0xF5-0xFF) as user-defined
// tokens ("À", "ü", ...), which decode as their text (as in llama.cpp and Hugging Face):
// there the round trip holds for valid UTF-8 only.
static void round_trip(const anneal_tokenizer *t, const char *s, size_t len) {
    if (t == tok[V_DEEPSEEK] && !utf8_valid(s, len)) return;
    size_t n, dl;
    anneal_token *ids = enc(t, s, len, 0, &n);
    char *back = dec(t, ids, n, false, &dl);
    CHECK_EQ(dl, len);
    CHECK(dl == len && memcmp(back, s, len) == 0);
    free(back);
    free(ids);
}

static void test_invalid_utf8(void) {
    // Each invalid byte is one symbol that falls back to its byte token.
    expect_ids(tok[V_LLAMA], "\xFF", 0, " 29871 258");
    expect_ids(tok[V_LLAMA],
               "a\x80"
               "b",
               0, " 263 131 29890");
    // A truncated sequence: the valid prefix bytes are still bytes, then the text goes on.
    expect_ids(tok[V_LLAMA], "\xF0\x9F\xA6 a", 0, " 29871 243 162 169 263");
    static const char *cases[] = {"\xFF",           "a\200b",
                                  "\xF0\x9F\xA6 a", "\xC0\xAF",
                                  "\xED\xA0\x80x",  "ok \xF4\x90\x80\x80 ok",
                                  "\xE2\x96",       "\xE2\x80\xA6\xE2\x96"};
    for (int v = 0; v < N_VOCABS; v++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            round_trip(tok[v], cases[i], strlen(cases[i]));
    // Every byte value, in one string and with NULs inside.
    char all[512];
    for (int i = 0; i < 512; i++)
        all[i] = (char)(i * 7 + 3);
    for (int v = 0; v < N_VOCABS; v++)
        round_trip(tok[v], all, sizeof all);
    // SPM: a literal U+2581 in the input is the escaped space, so it decodes as ' '.
    size_t n, dl;
    anneal_token *ids = enc(tok[V_LLAMA],
                            "a\xE2\x96\x81"
                            "b",
                            5, 0, &n);
    char *back = dec(tok[V_LLAMA], ids, n, false, &dl);
    CHECK_STR(back, "a b");
    free(back);
    free(ids);
    // Pseudo-random bytes.
    uint64_t seed = 42;
    char rnd[300];
    for (int k = 0; k < 50; k++) {
        size_t len = test_rand(&seed) % sizeof rnd;
        for (size_t i = 0; i < len; i++)
            rnd[i] = (char)test_rand(&seed);
        for (int v = 0; v < N_VOCABS; v++)
            round_trip(tok[v], rnd, len);
    }
}

static void test_output_buffer(void) {
    anneal_err err = {0};
    anneal_token ids[2];
    size_t n = 99;
    CHECK_EQ(anneal_tokenizer_encode(tok[V_LLAMA], "Hello world again", 17, 0, ids, 2, &n, &err),
             ANNEAL_ERR_RANGE);
    CHECK_EQ(n, 3);
    CHECK_EQ(ids[0], 15043);
    CHECK_CONTAINS(anneal_err_msg(&err), "3 ids");
    anneal_err_clear(&err);
    CHECK_EQ(anneal_tokenizer_encode(tok[V_LLAMA], "", 0, 0, NULL, 0, &n, &err), ANNEAL_OK);
    CHECK_EQ(n, 0);
    anneal_token bad[] = {15043, 99999};
    char out[64];
    size_t len;
    CHECK_EQ(anneal_tokenizer_decode(tok[V_LLAMA], bad, 2, false, out, sizeof out, &len, &err),
             ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(anneal_err_msg(&err), "99999 at index 1");
    anneal_err_clear(&err);
    anneal_token ok[] = {15043, 3186};
    CHECK_EQ(anneal_tokenizer_decode(tok[V_LLAMA], ok, 2, false, out, 4, &len, &err),
             ANNEAL_ERR_RANGE);
    CHECK_EQ(len, 11);
}

// ---- streaming ------------------------------------------------------------------------------
static void test_detok_stream(void) {
    const anneal_tokenizer *t = tok[V_LLAMA];
    // "🦙" is 4 byte tokens: nothing comes out until the last one.
    size_t n;
    anneal_token *ids = enc(t, "Hi \xF0\x9F\xA6\x99!", 8, 0, &n);
    CHECK_EQ(n, 7); // ▁Hi ▁ <F0> <9F> <A6> <99> !
    anneal_detok d;
    anneal_detok_init(&d, t, false);
    char out[256], all[256];
    size_t total = 0;
    int64_t got[8];
    for (size_t i = 0; i < n && i < 8; i++) {
        got[i] = anneal_detok_push(&d, ids[i], out, sizeof out);
        CHECK(got[i] >= 0);
        if (got[i] > 0) memcpy(all + total, out, (size_t)got[i]), total += (size_t)got[i];
    }
    CHECK_EQ(got[0], 2); // "Hi": the leading space stripped
    CHECK_EQ(got[1], 1);
    CHECK_EQ(got[2], 0);
    CHECK_EQ(got[3], 0);
    CHECK_EQ(got[4], 0);
    CHECK_EQ(got[5], 4);
    CHECK_EQ(got[6], 1);
    CHECK_EQ(anneal_detok_flush(&d, out, sizeof out), 0);
    CHECK(total == 8 && memcmp(all, "Hi \xF0\x9F\xA6\x99!", 8) == 0);
    free(ids);

    // An incomplete sequence followed by something else: one U+FFFD, then the rest.
    anneal_detok_init(&d, t, false);
    CHECK_EQ(anneal_detok_push(&d, 243, out, sizeof out), 0);  // <0xF0>
    CHECK_EQ(anneal_detok_push(&d, 162, out, sizeof out), 0);  // <0x9F>
    int64_t k = anneal_detok_push(&d, 29874, out, sizeof out); // "a"
    CHECK_EQ(k, 4);
    CHECK(memcmp(out, "\xEF\xBF\xBD", 3) == 0);
    // Held bytes at the end: flush gives U+FFFD; a short buffer fails without losing them.
    CHECK_EQ(anneal_detok_push(&d, 229, out, sizeof out), 0); // <0xE2>
    CHECK_EQ(anneal_detok_flush(&d, out, 2), -1);
    CHECK_EQ(anneal_detok_flush(&d, out, sizeof out), 3);
    CHECK(memcmp(out, "\xEF\xBF\xBD", 3) == 0);
    // A lone continuation byte is invalid at once.
    CHECK_EQ(anneal_detok_push(&d, 131, out, sizeof out), 3); // <0x80>
    CHECK_EQ(anneal_detok_push(&d, -5, out, sizeof out), -1);
    // Too small a buffer: -1 and the state is unchanged, so a retry works.
    anneal_detok_init(&d, t, false);
    CHECK_EQ(anneal_detok_push(&d, 15043, out, 3), -1);
    CHECK_EQ(anneal_detok_push(&d, 15043, out, sizeof out), 5); // "Hello", space stripped once
    CHECK_EQ(anneal_detok_push(&d, 15043, out, sizeof out), 6);
    // Control tokens: hidden without special and do not use up the leading-space rule.
    anneal_detok_init(&d, t, false);
    CHECK_EQ(anneal_detok_push(&d, 1, out, sizeof out), 0);
    CHECK_EQ(anneal_detok_push(&d, 15043, out, sizeof out), 5);
    anneal_detok_init(&d, t, true);
    CHECK_EQ(anneal_detok_push(&d, 1, out, sizeof out), 3);
    CHECK_EQ(anneal_detok_push(&d, 15043, out, sizeof out), 6);

    // Byte-level: GPT-2 splits "🦙" across byte tokens too.
    t = tok[V_GPT2];
    ids = enc(t, "\xF0\x9F\xA6\x99", 4, 0, &n);
    CHECK(n >= 2);
    anneal_detok_init(&d, t, false);
    total = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t r = anneal_detok_push(&d, ids[i], out, sizeof out);
        CHECK(r >= 0);
        if (i + 1 < n) CHECK_EQ(r, 0);
        if (r > 0) memcpy(all + total, out, (size_t)r), total += (size_t)r;
    }
    CHECK(total == 4 && memcmp(all, "\xF0\x9F\xA6\x99", 4) == 0);
    free(ids);
}

// ---- small in-memory vocabularies -----------------------------------------------------------
#define S(x)                                                                                       \
    { x, sizeof(x) - 1 }

static void test_bpe_merges_small(void) {
    // Merge order follows rank, not length: "a b" (rank 0) before "b c" (rank 1), so "abc"
    // becomes "ab" + "c" although "bc" is a token too.
    anneal_gguf_str tokens[] = {S("a"), S("b"), S("c"), S("ab"), S("bc"), S("abc"), S("\xC4\xA0")};
    anneal_gguf_str merges[] = {S("a b"), S("b c"), S("ab c")};
    tok_source src = {.kind = ANNEAL_TOK_BPE,
                      .pre = "gpt-2",
                      .n_tokens = 7,
                      .tokens = tokens,
                      .n_merges = 2,
                      .merges = merges,
                      .bos = TOK_ID_ABSENT,
                      .eos = TOK_ID_ABSENT,
                      .unk = TOK_ID_ABSENT,
                      .pad = TOK_ID_ABSENT,
                      .add_bos = -1,
                      .add_eos = -1,
                      .add_space_prefix = -1};
    anneal_err err = {0};
    anneal_tokenizer *t = NULL;
    CHECK_EQ(tok_build(&src, &t, &err), ANNEAL_OK);
    expect_ids(t, "abc", 0, " 3 2");
    expect_ids(t, "bca", 0, " 4 0");
    expect_ids(t, "abab", 0, " 3 3");
    anneal_tokenizer_free(t);
    // With the third merge, "ab c" -> "abc".
    src.n_merges = 3;
    CHECK_EQ(tok_build(&src, &t, &err), ANNEAL_OK);
    expect_ids(t, "abc", 0, " 5");
    // Bytes whose mapped character is not a token, with no unknown token: dropped.
    expect_ids(t, "x", 0, "");
    anneal_tokenizer_free(t);
}

static void test_spm_scores_small(void) {
    // SPM merges by score: "bc" (-1) beats "ab" (-2); ties go to the leftmost pair.
    anneal_gguf_str tokens[] = {
        S("<unk>"),         S("a"),      S("b"), S("c"), S("ab"), S("bc"), S("\xE2\x96\x81"),
        S("\342\226\201a"), S("<0x78>"), S("aa")};
    float scores[] = {0, -5, -5, -5, -2, -1, -5, -3, 0, -4};
    int32_t types[] = {2, 1, 1, 1, 1, 1, 1, 1, 6, 1};
    tok_source src = {.kind = ANNEAL_TOK_SPM,
                      .n_tokens = 10,
                      .tokens = tokens,
                      .scores = scores,
                      .types = types,
                      .bos = TOK_ID_ABSENT,
                      .eos = TOK_ID_ABSENT,
                      .unk = 0,
                      .pad = TOK_ID_ABSENT,
                      .add_bos = -1,
                      .add_eos = -1,
                      .add_space_prefix = 0};
    anneal_err err = {0};
    anneal_tokenizer *t = NULL;
    CHECK_EQ(tok_build(&src, &t, &err), ANNEAL_OK);
    expect_ids(t, "abc", 0, " 1 5");
    expect_ids(t, "ab", 0, " 4");
    expect_ids(t, "aaa", 0, " 9 1");
    // "x" has a byte token; "y" does not, so it is the unknown token.
    expect_ids(t, "x", 0, " 8");
    expect_ids(t, "y", 0, " 0");
    expect_ids(t, " a", 0, " 7");
    char buf[8];
    CHECK_EQ(anneal_tokenizer_piece(t, 7, false, buf, sizeof buf), 2);
    CHECK(memcmp(buf, " a", 2) == 0);
    anneal_tokenizer_free(t);
    // add_space_prefix on: a "▁" goes in front.
    src.add_space_prefix = 1;
    CHECK_EQ(tok_build(&src, &t, &err), ANNEAL_OK);
    expect_ids(t, "abc", 0, " 7 5");
    anneal_tokenizer_free(t);
}

static void test_spm_unused_resegment(void) {
    // "ab" is UNUSED: it still wins the merge but is given back as "a" "b" (SentencePiece).
    anneal_gguf_str tokens[] = {S("<unk>"), S("a"), S("b"), S("ab"), S("c"), S("abc")};
    float scores[] = {0, -5, -5, -1, -5, -2};
    int32_t types[] = {2, 1, 1, 5, 1, 1};
    tok_source src = {.kind = ANNEAL_TOK_SPM,
                      .n_tokens = 6,
                      .tokens = tokens,
                      .scores = scores,
                      .types = types,
                      .bos = TOK_ID_ABSENT,
                      .eos = TOK_ID_ABSENT,
                      .unk = 0,
                      .pad = TOK_ID_ABSENT,
                      .add_bos = -1,
                      .add_eos = -1,
                      .add_space_prefix = 0};
    anneal_err err = {0};
    anneal_tokenizer *t = NULL;
    CHECK_EQ(tok_build(&src, &t, &err), ANNEAL_OK);
    expect_ids(t, "ab", 0, " 1 2");
    expect_ids(t, "abc", 0, " 5");
    expect_ids(t, "abab", 0, " 1 2 1 2");
    anneal_tokenizer_free(t);
}

static void test_spm_no_word_split(void) {
    // "a▁" continues a character with "▁", so words may not be merged separately: "a b"
    // must give "a▁" "b" (the best pair spans the word boundary), not "a" "▁b".
    anneal_gguf_str tokens[] = {
        S("<unk>"), S("a"), S("b"), S("\342\226\201"), S("a\342\226\201"), S("\342\226\201b")};
    float scores[] = {0, -5, -5, -5, -1, -2};
    int32_t types[] = {2, 1, 1, 1, 1, 1};
    tok_source src = {.kind = ANNEAL_TOK_SPM,
                      .n_tokens = 6,
                      .tokens = tokens,
                      .scores = scores,
                      .types = types,
                      .bos = TOK_ID_ABSENT,
                      .eos = TOK_ID_ABSENT,
                      .unk = 0,
                      .pad = TOK_ID_ABSENT,
                      .add_bos = -1,
                      .add_eos = -1,
                      .add_space_prefix = 0};
    anneal_err err = {0};
    anneal_tokenizer *t = NULL;
    CHECK_EQ(tok_build(&src, &t, &err), ANNEAL_OK);
    expect_ids(t, "a b", 0, " 4 2");
    expect_ids(t, "b a b", 0, " 2 3 4 2");
    anneal_tokenizer_free(t);
}

static void test_spm_large_vocab(void) {
    // Past 65535 tokens the pair table uses wide slots: same ids as the small vocabulary.
    enum { N = 70000 };
    anneal_gguf_str *tokens = calloc(N, sizeof *tokens);
    float *scores = calloc(N, sizeof *scores);
    int32_t *types = calloc(N, sizeof *types);
    char *names = malloc((size_t)N * 8);
    anneal_gguf_str base[] = {
        S("<unk>"),        S("a"), S("b"), S("c"), S("ab"), S("bc"), S("\342\226\201"),
        S("\342\226\201a")};
    float base_scores[] = {0, -5, -5, -5, -2, -1, -5, -3};
    for (int i = 0; i < N; i++) {
        if (i < 8) {
            tokens[i] = base[i];
            scores[i] = base_scores[i];
        } else {
            int l = snprintf(names + (size_t)i * 8, 8, "~%d", i);
            tokens[i] = (anneal_gguf_str){names + (size_t)i * 8, (uint64_t)l};
            scores[i] = -9;
        }
        types[i] = i == 0 ? 2 : 1;
    }
    tok_source src = {.kind = ANNEAL_TOK_SPM,
                      .n_tokens = N,
                      .tokens = tokens,
                      .scores = scores,
                      .types = types,
                      .bos = TOK_ID_ABSENT,
                      .eos = TOK_ID_ABSENT,
                      .unk = 0,
                      .pad = TOK_ID_ABSENT,
                      .add_bos = -1,
                      .add_eos = -1,
                      .add_space_prefix = 1};
    anneal_err err = {0};
    anneal_tokenizer *t = NULL;
    CHECK_EQ(tok_build(&src, &t, &err), ANNEAL_OK);
    expect_ids(t, "abc", 0, " 7 5");
    expect_ids(t, "bc ab", 0, " 6 5 6 4");
    expect_ids(t, "~7", 0, " 6 0 0"); // "~" and "7" are no tokens and there are no byte tokens
    anneal_tokenizer_free(t);
    free(tokens);
    free(scores);
    free(types);
    free(names);
}

// A direct, slow SentencePiece BPE written against the public API: symbols per character,
// merge the best-scoring adjacent pair (leftmost on ties) until none is a token, then byte
// fallback. The encoder must agree with it on any input.
static size_t naive_spm(const anneal_tokenizer *t, const char *text, size_t len,
                        anneal_token *out) {
    if (len == 0) return 0; // no text, no space prefix
    char *buf = malloc(3 * len + 4);
    size_t bl = 0;
    memcpy(buf, "\342\226\201", 3), bl = 3;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ')
            memcpy(buf + bl, "\342\226\201", 3), bl += 3;
        else
            buf[bl++] = text[i];
    }
    size_t *off = malloc((bl + 1) * sizeof *off), n = 0;
    for (size_t i = 0; i < bl;) {
        uint32_t cp;
        size_t l = anneal_utf8_decode((const uint8_t *)buf + i, bl - i, &cp);
        off[n++] = i;
        i += l ? l : 1;
    }
    off[n] = bl;
    for (;;) {
        float best = 0;
        size_t bi = SIZE_MAX;
        for (size_t i = 0; i + 1 < n; i++) {
            anneal_token id = anneal_tokenizer_find(t, buf + off[i], off[i + 2] - off[i]);
            if (id < 0) continue;
            anneal_tok_type ty = anneal_tokenizer_token_type(t, id);
            if (ty != ANNEAL_TOK_TYPE_NORMAL && ty != ANNEAL_TOK_TYPE_USER_DEFINED &&
                ty != ANNEAL_TOK_TYPE_UNUSED)
                continue;
            float sc = anneal_tokenizer_token_score(t, id);
            if (bi == SIZE_MAX || sc > best) best = sc, bi = i;
        }
        if (bi == SIZE_MAX) break;
        memmove(off + bi + 1, off + bi + 2, (n - bi - 1) * sizeof *off);
        n--;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        anneal_token id = anneal_tokenizer_find(t, buf + off[i], off[i + 1] - off[i]);
        if (id >= 0 && anneal_tokenizer_token_type(t, id) == ANNEAL_TOK_TYPE_NORMAL) {
            out[k++] = id;
            continue;
        }
        for (size_t j = off[i]; j < off[i + 1]; j++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", (unsigned char)buf[j]);
            out[k++] = anneal_tokenizer_find(t, name, 6);
        }
    }
    free(off);
    free(buf);
    return k;
}

static void test_spm_against_naive(void) {
    // Random words (some long, so both the scan and the heap path run), spaces, punctuation,
    // a few multi-byte characters and invalid bytes.
    static const char *alphabet[] = {"a",
                                     "e",
                                     "i",
                                     "o",
                                     "t",
                                     "n",
                                     "s",
                                     "r",
                                     "h",
                                     "l",
                                     " ",
                                     " ",
                                     " ",
                                     ".",
                                     ",",
                                     "'",
                                     "th",
                                     "ing",
                                     "\xC3\xA9",
                                     "\xE2\x80\x94",
                                     "\xF0\x9F\x98\x81",
                                     "\xFF",
                                     "Q",
                                     "\n",
                                     "  "};
    uint64_t seed = 7;
    char text[700];
    anneal_token want[2200];
    int mismatches = 0;
    for (int k = 0; k < 300; k++) {
        size_t len = 0, target = test_rand(&seed) % (k < 200 ? 60 : 600);
        bool nospace = k % 5 == 4; // one long word
        while (len < target) {
            const char *p = alphabet[test_rand(&seed) % (sizeof alphabet / sizeof alphabet[0])];
            if (nospace && (p[0] == ' ' || p[0] == '\n')) continue;
            size_t l = strlen(p);
            if (len + l >= sizeof text) break;
            memcpy(text + len, p, l);
            len += l;
        }
        size_t n;
        anneal_token *got = enc(tok[V_LLAMA], text, len, 0, &n);
        size_t wn = naive_spm(tok[V_LLAMA], text, len, want);
        if (n != wn || memcmp(got, want, n * sizeof *got) != 0) {
            if (mismatches++ < 3) fprintf(stderr, "naive SPM differs on '%.*s'\n", (int)len, text);
        }
        free(got);
    }
    CHECK_EQ(mismatches, 0);
}

static void test_build_errors(void) {
    anneal_gguf_str tokens[] = {S("a"), S("b"), S("ab"), S("a")};
    anneal_gguf_str merges[] = {S("a b"), S("a c"), S("ab")};
    tok_source src = {.kind = ANNEAL_TOK_BPE,
                      .n_tokens = 3,
                      .tokens = tokens,
                      .n_merges = 2,
                      .merges = merges,
                      .bos = TOK_ID_ABSENT,
                      .eos = TOK_ID_ABSENT,
                      .unk = TOK_ID_ABSENT,
                      .pad = TOK_ID_ABSENT,
                      .add_bos = -1,
                      .add_eos = -1,
                      .add_space_prefix = -1,
                      .what = "t.gguf"};
    anneal_err err = {0};
    anneal_tokenizer *t = NULL;
    CHECK_EQ(tok_build(&src, &t, &err), ANNEAL_ERR_FORMAT);
    CHECK_CONTAINS(anneal_err_msg(&err), "t.gguf: tokenizer.ggml.merges[1] 'a c' references 'c'");
    CHECK(t == NULL);
    anneal_err_clear(&err);
    src.merges = merges + 1;
    src.n_merges = 2;
    merges[1] = (anneal_gguf_str)S("a b");
    CHECK_EQ(tok_build(&src, &t, &err), ANNEAL_ERR_FORMAT);
    CHECK_CONTAINS(anneal_err_msg(&err), "merges[1] 'ab' is not two tokens");
    anneal_err_clear(&err);
    src.n_merges = 0;
    src.n_tokens = 4;
    CHECK_EQ(tok_build(&src, &t, &err), ANNEAL_ERR_FORMAT);
    CHECK_CONTAINS(anneal_err_msg(&err), "tokenizer.ggml.tokens[3] 'a' duplicates token 0");
    anneal_err_clear(&err);
    src.n_tokens = 3;
    src.bos = 3;
    CHECK_EQ(tok_build(&src, &t, &err), ANNEAL_ERR_RANGE);
    CHECK_CONTAINS(anneal_err_msg(&err),
                   "tokenizer.ggml.bos_token_id = 3 is outside the vocabulary (0..2)");
    anneal_err_clear(&err);
    src.bos = TOK_ID_ABSENT;
    src.pre = "no-such-pre";
    CHECK_EQ(tok_build(&src, &t, &err), ANNEAL_ERR_UNSUPPORTED);
    CHECK_CONTAINS(anneal_err_msg(&err), "no-such-pre");
    anneal_err_clear(&err);
    src.n_tokens = 0;
    src.pre = NULL;
    CHECK_EQ(tok_build(&src, &t, &err), ANNEAL_ERR_FORMAT);
    CHECK_CONTAINS(anneal_err_msg(&err), "tokenizer.ggml.tokens is empty");
}

// ---- GGUF load errors -----------------------------------------------------------------------
// Copies the llama-spm vocabulary file, applies `edit`, writes it and loads it.
static anneal_status load_edited(void (*edit)(anneal_gguf_writer *, const anneal_gguf *),
                                 anneal_err *err) {
    anneal_gguf *g = NULL;
    anneal_err e0 = {0};
    if (anneal_gguf_open(test_shared("fixtures/vocab/ggml-vocab-llama-spm.gguf"), &g, &e0)) {
        fprintf(stderr, "%s\n", anneal_err_msg(&e0));
        exit(1);
    }
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    CHECK_EQ(anneal_gguf_writer_copy(w, g), ANNEAL_OK);
    edit(w, g);
    char path[512];
    snprintf(path, sizeof path, "%s/edited.gguf", test_tmpdir());
    CHECK_EQ(anneal_gguf_writer_write(w, path, &e0), ANNEAL_OK);
    anneal_gguf_writer_free(w);
    anneal_gguf_close(g);
    anneal_gguf *g2 = NULL;
    CHECK_EQ(anneal_gguf_open(path, &g2, &e0), ANNEAL_OK);
    anneal_tokenizer *t = NULL;
    anneal_status st = anneal_tokenizer_load(g2, &t, err);
    anneal_tokenizer_free(t);
    anneal_gguf_close(g2);
    unlink(path);
    return st;
}

static void edit_no_model(anneal_gguf_writer *w, const anneal_gguf *g) {
    (void)g;
    anneal_gguf_writer_remove(w, "tokenizer.ggml.model");
}
static void edit_no_tokens(anneal_gguf_writer *w, const anneal_gguf *g) {
    (void)g;
    anneal_gguf_writer_remove(w, "tokenizer.ggml.tokens");
}
static void edit_bad_model(anneal_gguf_writer *w, const anneal_gguf *g) {
    (void)g;
    anneal_gguf_writer_set_str(w, "tokenizer.ggml.model", "wordpiece-x");
}
static void edit_short_scores(anneal_gguf_writer *w, const anneal_gguf *g) {
    anneal_gguf_value v = anneal_gguf_find(g, "tokenizer.ggml.scores")->value;
    v.arr.n -= 1;
    anneal_gguf_writer_set_value(w, "tokenizer.ggml.scores", &v);
}
static void edit_long_types(anneal_gguf_writer *w, const anneal_gguf *g) {
    // token_type with fewer entries than tokens: truncate the tokens instead.
    anneal_gguf_value v = anneal_gguf_find(g, "tokenizer.ggml.tokens")->value;
    v.arr.n = 100;
    anneal_gguf_writer_set_value(w, "tokenizer.ggml.tokens", &v);
    anneal_gguf_value s = anneal_gguf_find(g, "tokenizer.ggml.scores")->value;
    s.arr.n = 100;
    anneal_gguf_writer_set_value(w, "tokenizer.ggml.scores", &s);
}
static void edit_bad_eos(anneal_gguf_writer *w, const anneal_gguf *g) {
    (void)g;
    anneal_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 32000);
}
static void edit_gpt2_no_merges(anneal_gguf_writer *w, const anneal_gguf *g) {
    (void)g;
    anneal_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
}
static void edit_bad_pre(anneal_gguf_writer *w, const anneal_gguf *g) {
    anneal_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    anneal_gguf_writer_set_str(w, "tokenizer.ggml.pre", "frobnicate-7");
    // merges: one valid entry so the pre-tokenizer is what fails
    anneal_gguf_value v = anneal_gguf_find(g, "tokenizer.ggml.tokens")->value;
    v.arr.n = 0;
    anneal_gguf_writer_set_value(w, "tokenizer.ggml.merges", &v);
}
static void edit_scores_strings(anneal_gguf_writer *w, const anneal_gguf *g) {
    anneal_gguf_value v = anneal_gguf_find(g, "tokenizer.ggml.tokens")->value;
    anneal_gguf_writer_set_value(w, "tokenizer.ggml.scores", &v);
}
static void edit_add_bos_false(anneal_gguf_writer *w, const anneal_gguf *g) {
    (void)g;
    anneal_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false);
}

static void test_load_errors(void) {
    anneal_err err = {0};
    CHECK_EQ(load_edited(edit_no_model, &err), ANNEAL_ERR_NOT_FOUND);
    CHECK_CONTAINS(anneal_err_msg(&err), "tokenizer.ggml.model");
    anneal_err_clear(&err);
    CHECK_EQ(load_edited(edit_no_tokens, &err), ANNEAL_ERR_NOT_FOUND);
    CHECK_CONTAINS(anneal_err_msg(&err), "tokenizer.ggml.tokens");
    anneal_err_clear(&err);
    CHECK_EQ(load_edited(edit_bad_model, &err), ANNEAL_ERR_UNSUPPORTED);
    CHECK_CONTAINS(anneal_err_msg(&err), "'wordpiece-x' is not supported");
    anneal_err_clear(&err);
    CHECK_EQ(load_edited(edit_short_scores, &err), ANNEAL_ERR_FORMAT);
    CHECK_CONTAINS(anneal_err_msg(&err),
                   "'tokenizer.ggml.scores' has 31999 entries but tokenizer.ggml.tokens has 32000");
    anneal_err_clear(&err);
    CHECK_EQ(load_edited(edit_long_types, &err), ANNEAL_ERR_FORMAT);
    CHECK_CONTAINS(
        anneal_err_msg(&err),
        "'tokenizer.ggml.token_type' has 32000 entries but tokenizer.ggml.tokens has 100");
    anneal_err_clear(&err);
    CHECK_EQ(load_edited(edit_bad_eos, &err), ANNEAL_ERR_RANGE);
    CHECK_CONTAINS(anneal_err_msg(&err),
                   "tokenizer.ggml.eos_token_id = 32000 is outside the vocabulary");
    anneal_err_clear(&err);
    CHECK_EQ(load_edited(edit_gpt2_no_merges, &err), ANNEAL_ERR_NOT_FOUND);
    CHECK_CONTAINS(anneal_err_msg(&err), "tokenizer.ggml.merges");
    anneal_err_clear(&err);
    CHECK_EQ(load_edited(edit_bad_pre, &err), ANNEAL_ERR_UNSUPPORTED);
    CHECK_CONTAINS(anneal_err_msg(&err), "frobnicate-7");
    anneal_err_clear(&err);
    CHECK_EQ(load_edited(edit_scores_strings, &err), ANNEAL_ERR_FORMAT);
    CHECK_CONTAINS(anneal_err_msg(&err), "tokenizer.ggml.scores");
    anneal_err_clear(&err);
    CHECK_EQ(load_edited(edit_add_bos_false, &err), ANNEAL_OK);
}

// ---- threads --------------------------------------------------------------------------------
#include <pthread.h>

static void *thread_encode(void *arg) {
    (void)arg;
    const char *s = "The quick brown fox jumps over the lazy dog. \xF0\x9F\xA6\x99";
    for (int i = 0; i < 200; i++) {
        for (int v = 0; v < N_VOCABS; v++) {
            size_t n;
            anneal_token *ids = enc(tok[v], s, strlen(s), ANNEAL_TOK_ADD_SPECIAL, &n);
            free(ids);
        }
    }
    return NULL;
}

static void test_threads(void) {
    // Per-thread scratch: concurrent encodes give the same ids (and no leaks at exit).
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        CHECK_EQ(pthread_create(&th[i], NULL, thread_encode, NULL), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    expect_ids(tok[V_LLAMA], "Hello world", 0, " 15043 3186");
}

int main(void) {
    for (int v = 0; v < N_VOCABS; v++)
        tok[v] = load_vocab(VOCABS[v]);
    RUN(test_vectors_llama_spm);
    RUN(test_vectors_phi3);
    RUN(test_vectors_gpt2);
    RUN(test_vectors_deepseek);
    RUN(test_metadata);
    RUN(test_add_special);
    RUN(test_special_tokens);
    RUN(test_byte_fallback);
    RUN(test_invalid_utf8);
    RUN(test_output_buffer);
    RUN(test_detok_stream);
    RUN(test_bpe_merges_small);
    RUN(test_spm_scores_small);
    RUN(test_spm_unused_resegment);
    RUN(test_spm_no_word_split);
    RUN(test_spm_large_vocab);
    RUN(test_spm_against_naive);
    RUN(test_build_errors);
    RUN(test_load_errors);
    RUN(test_threads);
    for (int v = 0; v < N_VOCABS; v++)
        anneal_tokenizer_free(tok[v]);
    rmdir(test_tmpdir());
    return TEST_EXIT();
}
