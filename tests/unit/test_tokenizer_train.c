// Vocabulary training tests: merges derived by hand on a tiny corpus (ids and scores),
// round trips and compression on tinyshakespeare, the trainer's token count against the
// encoder's (same merge order), special tokens, determinism and option errors.
#include "anneal/gguf.h"
#include "anneal/lineage.h"
#include "anneal/tokenizer.h"
#include "test.h"

#include <unistd.h>

static const char TINY[] = "low low low low low lower lower newest newest newest newest newest "
                           "newest widest widest widest";

typedef struct trained {
    anneal_tokenizer *t;
    anneal_tokenizer_train_stats s;
    char path[512];
} trained;

// Trains on `n_texts` texts (each one document), writes the file, loads it back.
static trained train_texts(anneal_tokenizer_train_opts o, const char *const *texts,
                           const size_t *lens, size_t n_texts, const char *name) {
    trained r = {0};
    anneal_err err = {0};
    anneal_tokenizer_trainer *tr = NULL;
    anneal_status st = anneal_tokenizer_trainer_new(&o, &tr, &err);
    CHECK_EQ(st, ANNEAL_OK);
    if (st) {
        fprintf(stderr, "%s\n", anneal_err_msg(&err));
        return r;
    }
    for (size_t i = 0; i < n_texts && !st; i++)
        st = anneal_tokenizer_trainer_add(tr, texts[i], lens[i], true, &err);
    snprintf(r.path, sizeof r.path, "%s/%s.gguf", test_tmpdir(), name);
    if (!st) st = anneal_tokenizer_trainer_write(tr, r.path, NULL, &r.s, &err);
    anneal_tokenizer_trainer_free(tr);
    CHECK_EQ(st, ANNEAL_OK);
    if (st) {
        fprintf(stderr, "%s\n", anneal_err_msg(&err));
        return r;
    }
    anneal_gguf *g = NULL;
    st = anneal_gguf_open(r.path, &g, &err);
    CHECK_EQ(st, ANNEAL_OK);
    if (!st) {
        st = anneal_tokenizer_load(g, &r.t, &err);
        CHECK_EQ(st, ANNEAL_OK);
        if (st) fprintf(stderr, "load: %s\n", anneal_err_msg(&err));
        anneal_gguf_close(g);
    }
    return r;
}

static trained train_text(anneal_tokenizer_train_opts o, const char *text, size_t len,
                          const char *name) {
    return train_texts(o, &text, &len, 1, name);
}

static anneal_token *enc(const anneal_tokenizer *t, const char *s, size_t len, unsigned flags,
                         size_t *n) {
    anneal_err err = {0};
    size_t cap = len + 8;
    anneal_token *ids = malloc(cap * sizeof *ids);
    anneal_status st = anneal_tokenizer_encode(t, s, len, flags, ids, cap, n, &err);
    CHECK_EQ(st, ANNEAL_OK);
    if (st) *n = 0;
    return ids;
}

// Encodes s and checks the ids.
static void check_ids(const anneal_tokenizer *t, const char *s, unsigned flags,
                      const anneal_token *want, size_t n_want) {
    size_t n;
    anneal_token *ids = enc(t, s, strlen(s), flags, &n);
    CHECK_EQ(n, n_want);
    for (size_t i = 0; i < n && i < n_want; i++)
        CHECK_EQ(ids[i], want[i]);
    free(ids);
}

static void check_text(const anneal_tokenizer *t, anneal_token id, const char *want) {
    CHECK_STR(anneal_tokenizer_token_text(t, id, NULL), want);
}

static char *read_all(const char *path, size_t *size) {
    anneal_err err = {0};
    char *data = NULL;
    if (anneal_read_file(path, 1 << 26, &data, size, &err)) {
        fprintf(stderr, "%s\n", anneal_err_msg(&err));
        exit(1);
    }
    return data;
}

// Encodes the whole text, checks decode gives it back and that the count is the trainer's.
static size_t check_round_trip(const trained *r, const char *text, size_t len) {
    size_t n;
    anneal_token *ids = enc(r->t, text, len, 0, &n);
    char *out = malloc(len + 1);
    size_t olen = 0;
    anneal_err err = {0};
    CHECK_EQ(anneal_tokenizer_decode(r->t, ids, n, false, out, len + 1, &olen, &err), ANNEAL_OK);
    CHECK_EQ(olen, len);
    CHECK(olen == len && memcmp(out, text, len) == 0);
    free(out);
    free(ids);
    return n;
}

// ---- merges derived by hand ------------------------------------------------------------
// GPT-2 pieces: "low" x1, " low" x4, " lower" x2, " newest" x6, " widest" x3. Pair counts:
// (e,s) 9, (s,t) 9, (w,e) 8, (l,o) 7, (o,w) 7, ... The tie at 9 goes to the smaller left
// id ('e' 101 < 's' 115), so "es" (256), then "est" (257); at 7, (l,o) before (o,w);
// then "low" (o,w gone: "lo"+"w"); at 6, (Ġ,n) [32,110] before (Ġ,low) [32,259]; ...
static void test_bpe_tiny(void) {
    anneal_tokenizer_train_opts o = {.kind = ANNEAL_TOK_BPE, .vocab_size = 270};
    trained r = train_text(o, TINY, strlen(TINY), "bpe-tiny");
    if (!r.t) return;
    CHECK_EQ(r.s.n_merges, 13);
    CHECK_EQ(r.s.n_vocab, 270);
    CHECK_EQ(r.s.words, 16);
    CHECK_EQ(r.s.unique_words, 5);
    CHECK_EQ(anneal_tokenizer_n_vocab(r.t), 270);
    CHECK_EQ(anneal_tokenizer_kind(r.t), ANNEAL_TOK_BPE);
    CHECK_STR(anneal_tokenizer_pre(r.t), "gpt-2");
    static const char *const want[] = {"es",   "est",     "lo", "low",  "Ġn",    "Ġlow",   "ew",
                                       "Ġnew", "Ġnewest", "Ġw", "dest", "idest", "Ġwidest"};
    for (int i = 0; i < 13; i++)
        check_text(r.t, 256 + i, want[i]);
    check_text(r.t, 0, "Ā");   // byte 0 maps to U+0100
    check_text(r.t, 32, "Ġ");  // space
    check_text(r.t, 'a', "a"); // printable bytes stand for themselves
    check_text(r.t, 269, "<|endoftext|>");
    CHECK_EQ(anneal_tokenizer_token_type(r.t, 269), ANNEAL_TOK_TYPE_CONTROL);
    CHECK_EQ(anneal_tokenizer_token_type(r.t, 268), ANNEAL_TOK_TYPE_NORMAL);
    CHECK_EQ(anneal_tokenizer_bos(r.t), 269);
    CHECK_EQ(anneal_tokenizer_eos(r.t), 269);
    CHECK(!anneal_tokenizer_add_bos(r.t));
    check_ids(r.t, " newest", 0, (const anneal_token[]){264}, 1);
    check_ids(r.t, "lowest", 0, (const anneal_token[]){259, 257}, 2);
    check_ids(r.t, " lower", 0, (const anneal_token[]){261, 'e', 'r'}, 3);
    check_ids(r.t, " widest widest", 0, (const anneal_token[]){268, 268}, 2);
    // The merges as written: GPT-2's "left right" with mapped characters.
    anneal_gguf *g = NULL;
    anneal_err err = {0};
    CHECK_EQ(anneal_gguf_open(r.path, &g, &err), ANNEAL_OK);
    const anneal_gguf_value *m = NULL;
    CHECK_EQ(anneal_gguf_get_arr(g, "tokenizer.ggml.merges", ANNEAL_GGUF_STRING, &m, &err),
             ANNEAL_OK);
    if (m) {
        CHECK_EQ(m->arr.n, 13);
        static const char *const mw[] = {"e s",   "es t", "l o",   "lo w",    "Ġ n",
                                         "Ġ low", "e w",  "Ġn ew", "Ġnew est"};
        for (int i = 0; i < 9; i++)
            CHECK(m->arr.strs[i].len == strlen(mw[i]) &&
                  memcmp(m->arr.strs[i].ptr, mw[i], strlen(mw[i])) == 0);
    }
    anneal_lineage *lin = NULL;
    CHECK_EQ(anneal_lineage_read(g, &lin, &err), ANNEAL_OK);
    if (lin) {
        CHECK_EQ(lin->n_parents, 0);
        CHECK_STR(lin->config, "{\"type\":\"bpe\",\"vocab_size\":270,\"min_frequency\":2,"
                               "\"pre\":\"gpt-2\",\"specials\":[]}");
    }
    anneal_lineage_free(lin);
    anneal_gguf_close(g);
    anneal_tokenizer_free(r.t);
}

// SPM words: "▁low" x5 (the first from the space prefix), "▁lower" x2, "▁newest" x6,
// "▁widest" x3. Characters by count: ▁ (forced first), e 17, w 16, s 9, t 9, l 7, o 7, n 6,
// d 3, i 3, r 2 (internal ids 0..10). Merges: es, est, ▁l, ow (o=6 < ▁l=13), ▁low, ▁n,
// ew, ▁new, ▁newest, ▁w, dest, idest, ▁widest, er, ▁lower; then no pair is seen twice.
static void test_spm_tiny(void) {
    anneal_tokenizer_train_opts o = {
        .kind = ANNEAL_TOK_SPM, .vocab_size = 400, .character_coverage = 1.0};
    trained r = train_text(o, TINY, strlen(TINY), "spm-tiny");
    if (!r.t) return;
    CHECK_EQ(r.s.n_merges, 15);
    CHECK_EQ(r.s.n_chars, 11);
    CHECK_EQ(r.s.n_vocab, 3 + 256 + 11 + 15);
    CHECK_EQ(anneal_tokenizer_n_vocab(r.t), 285);
    CHECK_EQ(anneal_tokenizer_kind(r.t), ANNEAL_TOK_SPM);
    check_text(r.t, 0, "<unk>");
    check_text(r.t, 1, "<s>");
    check_text(r.t, 2, "</s>");
    check_text(r.t, 3, "<0x00>");
    check_text(r.t, 258, "<0xFF>");
    CHECK_EQ(anneal_tokenizer_token_type(r.t, 0), ANNEAL_TOK_TYPE_UNKNOWN);
    CHECK_EQ(anneal_tokenizer_token_type(r.t, 1), ANNEAL_TOK_TYPE_CONTROL);
    CHECK_EQ(anneal_tokenizer_token_type(r.t, 3), ANNEAL_TOK_TYPE_BYTE);
    static const char *const want[] = {"es",   "est",   "▁l",      "ow",      "▁low",
                                       "▁n",   "ew",    "▁new",    "▁newest", "▁w",
                                       "dest", "idest", "▁widest", "er",      "▁lower"};
    for (int i = 0; i < 15; i++) {
        check_text(r.t, 259 + i, want[i]);
        CHECK_NEAR(anneal_tokenizer_token_score(r.t, 259 + i), -(float)i, 0);
    }
    static const char *const chars[] = {"▁", "e", "w", "s", "t", "l", "o", "n", "d", "i", "r"};
    for (int i = 0; i < 11; i++) {
        check_text(r.t, 274 + i, chars[i]);
        CHECK_NEAR(anneal_tokenizer_token_score(r.t, 274 + i), -(float)(15 + i), 0);
    }
    CHECK(anneal_tokenizer_add_bos(r.t));
    CHECK(anneal_tokenizer_add_space_prefix(r.t));
    check_ids(r.t, "lowest", 0, (const anneal_token[]){263, 260}, 2);
    check_ids(r.t, "lowest", ANNEAL_TOK_ADD_SPECIAL, (const anneal_token[]){1, 263, 260}, 3);
    check_ids(r.t, "lower widest", 0, (const anneal_token[]){273, 271}, 2);
    // 'x' has no character token: byte fallback.
    check_ids(r.t, "lox", 0, (const anneal_token[]){261, 280, 3 + 'x'}, 3);
    anneal_tokenizer_free(r.t);
}

// ---- tinyshakespeare -------------------------------------------------------------------
static char *shakespeare;
static size_t shakespeare_len;

// Round trips at vocab 1000; the encoder's token count equals the trainer's (so the
// encoder merges in the learned order), and the SPM vocabulary never puts "▁" after
// another character (the encoder's per-word fast path stays on).
static void test_round_trip_1000(void) {
    for (int k = 0; k < 2; k++) {
        anneal_tokenizer_train_opts o = {.kind = k ? ANNEAL_TOK_SPM : ANNEAL_TOK_BPE,
                                         .vocab_size = 1000,
                                         .character_coverage = 1.0};
        trained r = train_text(o, shakespeare, shakespeare_len, k ? "spm-1000" : "bpe-1000");
        if (!r.t) continue;
        CHECK_EQ(anneal_tokenizer_n_vocab(r.t), 1000);
        CHECK_EQ(r.s.n_vocab, 1000);
        CHECK_EQ(r.s.bytes, shakespeare_len);
        CHECK_EQ(r.s.long_words, 0);
        size_t n = check_round_trip(&r, shakespeare, shakespeare_len);
        CHECK_EQ(n, r.s.tokens);
        if (k) {
            CHECK_EQ(r.s.n_chars, 65); // every character of the text, "▁" for the space
            CHECK_EQ(r.s.n_merges, 1000 - 3 - 256 - 65);
            for (int32_t id = 0; id < 1000; id++) {
                size_t len;
                const char *s = anneal_tokenizer_token_text(r.t, id, &len);
                const char *p = strstr(s, "▁");
                while (p && p == s)
                    p = strstr(p + 3, "▁"), s += 3;
                CHECK(p == NULL);
            }
        } else {
            CHECK_EQ(r.s.n_merges, 1000 - 257);
        }
        anneal_tokenizer_free(r.t);
    }
    // Default character coverage: rare characters go to byte fallback; still exact.
    anneal_tokenizer_train_opts o = {.kind = ANNEAL_TOK_SPM, .vocab_size = 1000};
    trained r = train_text(o, shakespeare, shakespeare_len, "spm-1000-cov");
    if (!r.t) return;
    CHECK(r.s.n_chars_dropped > 0);
    CHECK_EQ(r.s.n_chars + r.s.n_chars_dropped, 65);
    check_round_trip(&r, shakespeare, shakespeare_len);
    anneal_tokenizer_free(r.t);
}

// Compression at vocab 4096: under 0.5 tokens per byte on the training text.
static void test_compression_4096(void) {
    for (int k = 0; k < 2; k++) {
        anneal_tokenizer_train_opts o = {.kind = k ? ANNEAL_TOK_SPM : ANNEAL_TOK_BPE,
                                         .vocab_size = 4096};
        trained r = train_text(o, shakespeare, shakespeare_len, k ? "spm-4096" : "bpe-4096");
        if (!r.t) continue;
        CHECK_EQ(anneal_tokenizer_n_vocab(r.t), 4096);
        size_t n = check_round_trip(&r, shakespeare, shakespeare_len);
        double tpb = (double)n / (double)shakespeare_len;
        fprintf(stderr, "  %s vocab 4096: %zu tokens, %.4f tokens/byte, merges in %.2f s\n",
                k ? "spm-bpe" : "bpe", n, tpb, r.s.merge_seconds);
        CHECK(tpb < 0.5);
        anneal_tokenizer_free(r.t);
    }
}

// ---- special tokens --------------------------------------------------------------------
static void test_specials(void) {
    char text[8192];
    size_t len = 0;
    for (int i = 0; i < 60; i++)
        len += (size_t)snprintf(text + len, sizeof text - len,
                                "<|im_start|>user said hello<|im_end|>\n");
    static const char *const sp[] = {"<|im_start|>", "<|im_end|>"};
    for (int k = 0; k < 2; k++) {
        bool spm = k == 1;
        anneal_tokenizer_train_opts o = {.kind = spm ? ANNEAL_TOK_SPM : ANNEAL_TOK_BPE,
                                         .vocab_size = 320,
                                         .specials = sp,
                                         .n_specials = 2};
        trained r = train_text(o, text, len, spm ? "spm-special" : "bpe-special");
        if (!r.t) continue;
        anneal_token s0 = anneal_tokenizer_find(r.t, "<|im_start|>", 12);
        anneal_token s1 = anneal_tokenizer_find(r.t, "<|im_end|>", 10);
        CHECK(s0 >= 0 && s1 >= 0);
        CHECK_EQ(anneal_tokenizer_token_type(r.t, s0), ANNEAL_TOK_TYPE_CONTROL);
        CHECK_EQ(anneal_tokenizer_token_type(r.t, s1), ANNEAL_TOK_TYPE_CONTROL);
        CHECK_EQ(s0, spm ? 3 : (int32_t)r.s.n_vocab - 2);
        // Nothing was learned from the special texts: they were cut out.
        CHECK_EQ(anneal_tokenizer_find(r.t, "<|", 2), -1);
        CHECK_EQ(anneal_tokenizer_find(r.t, "im", 2), -1);
        // Atomic with parse-special, plain text without.
        size_t n;
        anneal_token *ids = enc(r.t, text, len, ANNEAL_TOK_PARSE_SPECIAL, &n);
        size_t n0 = 0, n1 = 0;
        for (size_t i = 0; i < n; i++)
            n0 += ids[i] == s0, n1 += ids[i] == s1;
        CHECK_EQ(n0, 60);
        CHECK_EQ(n1, 60);
        CHECK_EQ(ids[0], s0);
        free(ids);
        ids = enc(r.t, text, len, 0, &n);
        for (size_t i = 0; i < n; i++)
            CHECK(ids[i] != s0 && ids[i] != s1);
        free(ids);
        // Decoding with special = true gives the text back.
        ids = enc(r.t, text, len, ANNEAL_TOK_PARSE_SPECIAL, &n);
        char *out = malloc(2 * len);
        size_t olen = 0;
        anneal_err err = {0};
        CHECK_EQ(anneal_tokenizer_decode(r.t, ids, n, true, out, 2 * len, &olen, &err), ANNEAL_OK);
        // SPM puts a space prefix after each special token (as llama.cpp): 120 more bytes
        // (the first piece with text is "<|im_start|>", so no leading space is removed).
        CHECK_EQ(olen, spm ? len + 120 : len);
        if (!spm) CHECK(olen == len && memcmp(out, text, len) == 0);
        free(out);
        free(ids);
        anneal_tokenizer_free(r.t);
    }
}

// ---- determinism -----------------------------------------------------------------------
static void test_determinism(void) {
    setenv(ANNEAL_LINEAGE_TIME_ENV, "2026-01-02T03:04:05Z", 1);
    for (int k = 0; k < 2; k++) {
        anneal_tokenizer_train_opts o = {.kind = k ? ANNEAL_TOK_SPM : ANNEAL_TOK_BPE,
                                         .vocab_size = 600};
        // Two chunks per run, the same both times.
        const char *texts[] = {shakespeare, shakespeare + 500000};
        size_t lens[] = {500000, shakespeare_len - 500000};
        trained a = train_texts(o, texts, lens, 2, k ? "det-spm-a" : "det-bpe-a");
        trained b = train_texts(o, texts, lens, 2, k ? "det-spm-b" : "det-bpe-b");
        size_t na, nb;
        char *da = read_all(a.path, &na), *db = read_all(b.path, &nb);
        CHECK_EQ(na, nb);
        CHECK(na == nb && memcmp(da, db, na) == 0);
        anneal_free(da);
        anneal_free(db);
        anneal_tokenizer_free(a.t);
        anneal_tokenizer_free(b.t);
    }
    unsetenv(ANNEAL_LINEAGE_TIME_ENV);
}

// ---- odd input -------------------------------------------------------------------------
static void test_invalid_utf8_and_empty(void) {
    static const char bad[] = "abc \xff\xfe abc abc \xc3( abc\n";
    for (int k = 0; k < 2; k++) {
        anneal_tokenizer_train_opts o = {.kind = k ? ANNEAL_TOK_SPM : ANNEAL_TOK_BPE,
                                         .vocab_size = 300};
        trained r = train_text(o, bad, sizeof bad - 1, k ? "spm-bad" : "bpe-bad");
        if (!r.t) continue;
        check_round_trip(&r, bad, sizeof bad - 1);
        anneal_tokenizer_free(r.t);
        // A word over 1024 bytes is counted but not merged; encoding handles it anyway.
        size_t ln = 3000;
        char *lt = malloc(ln);
        for (size_t i = 0; i < ln; i++)
            lt[i] = i < 2000 ? 'z' : "ab ab "[i % 6];
        r = train_text(o, lt, ln, k ? "spm-long" : "bpe-long");
        if (r.t) {
            CHECK_EQ(r.s.long_words, 1);
            check_round_trip(&r, lt, ln);
            CHECK_EQ(anneal_tokenizer_find(r.t, "zz", 2), -1);
            anneal_tokenizer_free(r.t);
        }
        free(lt);
        // No text at all: the base vocabulary only.
        r = train_text(o, "", 0, k ? "spm-empty" : "bpe-empty");
        if (!r.t) continue;
        CHECK_EQ(r.s.n_merges, 0);
        CHECK_EQ(anneal_tokenizer_n_vocab(r.t), k ? 3 + 256 + 1 : 257);
        anneal_tokenizer_free(r.t);
    }
}

// ---- errors ----------------------------------------------------------------------------
static void expect_new_error(anneal_tokenizer_train_opts o, anneal_status want, const char *msg) {
    anneal_err err = {0};
    anneal_tokenizer_trainer *tr = NULL;
    CHECK_EQ(anneal_tokenizer_trainer_new(&o, &tr, &err), want);
    CHECK(tr == NULL);
    CHECK_CONTAINS(anneal_err_msg(&err), msg);
}

static void test_errors(void) {
    anneal_tokenizer_train_opts bpe = {.kind = ANNEAL_TOK_BPE, .vocab_size = 256};
    expect_new_error(bpe, ANNEAL_ERR_INVALID_ARG, "vocab_size 256 is outside 257..");
    anneal_tokenizer_train_opts spm = {.kind = ANNEAL_TOK_SPM, .vocab_size = 259};
    expect_new_error(spm, ANNEAL_ERR_INVALID_ARG, "vocab_size 259 is outside 260..");
    static const char *const dup[] = {"<a>", "<a>"};
    bpe.vocab_size = 1000;
    bpe.specials = dup, bpe.n_specials = 2;
    expect_new_error(bpe, ANNEAL_ERR_INVALID_ARG, "specials[1] '<a>' is given twice");
    static const char *const def[] = {"</s>"};
    spm.vocab_size = 1000;
    spm.specials = def, spm.n_specials = 1;
    expect_new_error(spm, ANNEAL_ERR_INVALID_ARG, "default special token");
    static const char *const byte_tok[] = {"<0x41>"};
    spm.specials = byte_tok;
    expect_new_error(spm, ANNEAL_ERR_INVALID_ARG, "specials[0] '<0x41>' is the text of a");
    static const char *const g[] = {"Ġ"};
    bpe.specials = g, bpe.n_specials = 1;
    expect_new_error(bpe, ANNEAL_ERR_INVALID_ARG, "specials[0] 'Ġ' is the text of a byte token");
    static const char *const empty[] = {""};
    bpe.specials = empty;
    expect_new_error(bpe, ANNEAL_ERR_INVALID_ARG, "specials[0] is empty");
    static const char *const inval[] = {"a\xff"};
    bpe.specials = inval;
    expect_new_error(bpe, ANNEAL_ERR_INVALID_ARG, "not valid UTF-8");
    bpe.specials = NULL, bpe.n_specials = 0;
    bpe.pre = "no-such-pre";
    expect_new_error(bpe, ANNEAL_ERR_UNSUPPORTED, "unknown pre-tokenizer 'no-such-pre'");
    bpe.pre = NULL;
    bpe.character_coverage = 1.5;
    expect_new_error(bpe, ANNEAL_ERR_INVALID_ARG, "character_coverage");
    bpe.character_coverage = 0;
    bpe.kind = (anneal_tok_kind)7;
    expect_new_error(bpe, ANNEAL_ERR_INVALID_ARG, "unknown vocabulary kind 7");

    // finish once; no text after finish.
    anneal_tokenizer_train_opts o = {.kind = ANNEAL_TOK_BPE, .vocab_size = 300};
    anneal_err err = {0};
    anneal_tokenizer_trainer *tr = NULL;
    CHECK_EQ(anneal_tokenizer_trainer_new(&o, &tr, &err), ANNEAL_OK);
    CHECK_EQ(anneal_tokenizer_trainer_add(tr, "ab ab", 5, true, &err), ANNEAL_OK);
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    CHECK_EQ(anneal_tokenizer_trainer_finish(tr, w, NULL, &err), ANNEAL_OK);
    CHECK_EQ(anneal_tokenizer_trainer_finish(tr, w, NULL, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(anneal_err_msg(&err), "finish called twice");
    anneal_err_clear(&err);
    CHECK_EQ(anneal_tokenizer_trainer_add(tr, "x", 1, false, &err), ANNEAL_ERR_INVALID_ARG);
    CHECK_CONTAINS(anneal_err_msg(&err), "after finish");
    anneal_gguf_writer_free(w);
    anneal_tokenizer_trainer_free(tr);
    anneal_tokenizer_trainer_free(NULL);

    // An unwritable path fails at write, naming it.
    CHECK_EQ(anneal_tokenizer_trainer_new(&o, &tr, &err), ANNEAL_OK);
    anneal_err_clear(&err);
    CHECK(anneal_tokenizer_trainer_write(tr, "/nonexistent-dir/x.gguf", NULL, NULL, &err) !=
          ANNEAL_OK);
    CHECK_CONTAINS(anneal_err_msg(&err), "/nonexistent-dir/x.gguf");
    anneal_tokenizer_trainer_free(tr);
}

int main(void) {
    shakespeare = read_all(test_shared("corpora/tinyshakespeare.txt"), &shakespeare_len);
    RUN(test_bpe_tiny);
    RUN(test_spm_tiny);
    RUN(test_round_trip_1000);
    RUN(test_compression_4096);
    RUN(test_specials);
    RUN(test_determinism);
    RUN(test_invalid_utf8_and_empty);
    RUN(test_errors);
    anneal_free(shakespeare);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", test_tmpdir());
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", test_tmpdir());
    return TEST_EXIT();
}
