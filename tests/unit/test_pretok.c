// Tests for the byte-level BPE pre-tokenizers: hand-worked splits per regex list, name
// aliases, invalid UTF-8, the coverage invariant on random bytes, errors and threads.
#include "test.h"
#include "tokenizer/pretok.h"

#include <pthread.h>

// ---- helpers ----------------------------------------------------------------------

enum { MAX_CACHED = 128 };
static tok_pretok *g_cache[MAX_CACHED];
static int g_n_cache;

// One pre-tokenizer per name for the whole program (freed in main).
static tok_pretok *get(const char *name) {
    for (int i = 0; i < g_n_cache; i++)
        if (strcmp(tok_pretok_name(g_cache[i]), name) == 0) return g_cache[i];
    tok_pretok *p = NULL;
    anneal_err err = {0};
    if (tok_pretok_new(name, &p, &err) != ANNEAL_OK || g_n_cache == MAX_CACHED) {
        fprintf(stderr, "cannot create pre-tokenizer %s: %s\n", name, err.msg);
        exit(1);
    }
    g_cache[g_n_cache++] = p;
    return p;
}

// Pieces are consecutive, non-empty, start at 0 and end at len.
static int covers(const tok_span *s, size_t n, size_t len) {
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i].off != pos || s[i].len == 0) return 0;
        pos += s[i].len;
    }
    return pos == len && (len > 0 || n == 0);
}

static void print_escaped(const char *s, size_t n) {
    fputc('"', stderr);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\')
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fputc('"', stderr);
}

static void check_pieces(int line, const char *name, const char *text, size_t len,
                         const char *const *exp) {
    tok_span *sp = NULL;
    size_t n = 0, cap = 0;
    anneal_err err = {0};
    anneal_status st = tok_pretok_split(get(name), text, len, &sp, &n, &cap, &err);
    int ok = st == ANNEAL_OK && covers(sp, n, len);
    size_t n_exp = 0;
    while (exp[n_exp])
        n_exp++;
    if (ok && n != n_exp) ok = 0;
    for (size_t i = 0; ok && i < n; i++)
        if (strlen(exp[i]) != sp[i].len || memcmp(exp[i], text + sp[i].off, sp[i].len) != 0) ok = 0;
    if (!ok) {
        fprintf(stderr, "%s:%d: [%s] split(%s) of ", __FILE__, line, test_current, name);
        print_escaped(text, len);
        fprintf(stderr, " (status %d %s)\n  got: ", st, err.msg);
        for (size_t i = 0; i < n; i++)
            print_escaped(text + sp[i].off, sp[i].len), fputc(' ', stderr);
        fprintf(stderr, "\n  exp: ");
        for (size_t i = 0; i < n_exp; i++)
            print_escaped(exp[i], strlen(exp[i])), fputc(' ', stderr);
        fputc('\n', stderr);
        test_failures++;
    }
    anneal_free(sp);
}

#define SPLIT(name, text, ...)                                                                     \
    check_pieces(__LINE__, name, text, sizeof(text) - 1, (const char *const[]){__VA_ARGS__, NULL})

// ---- per regex list -----------------------------------------------------------------

static void test_gpt2(void) {
    SPLIT("gpt-2", "Hello, world!", "Hello", ",", " world", "!");
    // Contractions are lowercase only; a leading space takes the apostrophe as punctuation.
    SPLIT("gpt-2", "I've 'RE we'll DON'T", "I", "'ve", " '", "RE", " we", "'ll", " DON", "'", "T");
    // No digit grouping; the space joins the number.
    SPLIT("gpt-2", " 12345 6", " 12345", " 6");
    // \s+(?!\S): a run before a word leaves its last space to the word.
    SPLIT("gpt-2", "a   b", "a", "  ", " b");
    SPLIT("gpt-2", "a \n\n b", "a", " \n\n", " b");
    // At the end the whole run is one piece.
    SPLIT("gpt-2", "end \n", "end", " \n");
    // A lone tab before a word matches nothing (no |\s+ in GPT-2's pattern): a gap piece.
    SPLIT("gpt-2", "\tfoo\t\tbar", "\t", "foo", "\t", "\t", "bar");
    // CJK are letters; emoji and punctuation are one "other" run.
    SPLIT("gpt-2", "我想 😁!", "我想", " 😁!");
    SPLIT("gpt-2", "Café déjà", "Café", " déjà");
    SPLIT("gpt-2", "$100.50", "$", "100", ".", "50");
    // From the gpt-2 vocabulary fixture: ½ is \p{N}; 🦙 and '.' join.
    SPLIT("gpt-2", "ied 4 ½ months", "ied", " 4", " ½", " months");
    SPLIT("gpt-2", " this is 🦙.cpp", " this", " is", " 🦙.", "cpp");
    SPLIT("gpt-2", "w048 7tuijk dsdfhu", "w", "048", " 7", "tuijk", " dsdfhu");
    SPLIT("gpt-2", "   Hello", "  ", " Hello");
    SPLIT("gpt-2", "\n =", "\n", " =");
    SPLIT("gpt-2", "' era", "'", " era");
}

static void test_default(void) {
    SPLIT("default", "Hello, world!", "Hello", ",", " world", "!");
    // Punctuation is split off first, so contractions come apart.
    SPLIT("default", "it's", "it", "'", "s");
    // Digits: \p{N}+ then groups of three from the left.
    SPLIT("default", "x+=12345;", "x", "+=", "123", "45", ";");
    SPLIT("default", "a   1234567", "a", "  ", " ", "123", "456", "7");
}

static void test_falcon(void) {
    SPLIT("falcon", "`x` = 1234567;", "`", "x", "`", " ", "=", " ", "123", "456", "7", ";");
    SPLIT("falcon", "don't", "don", "'", "t");
}

static void test_llama3(void) {
    // The llama-bpe vocabulary test sentence.
    SPLIT("llama-bpe", "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～", "Hello", ",",
          " y", "'all", "!", " How", " are", " you", " 😁", " ?", "我想在apple工作", "131", "415",
          "1", "天", "～");
    // Contractions in any case; a leading space still takes the apostrophe.
    SPLIT("llama-bpe", "I'M 'RE 'S", "I", "'M", " '", "RE", " '", "S");
    // Digits in groups of up to three; a space before digits stands alone.
    SPLIT("llama-bpe", "1234567 89", "123", "456", "7", " ", "89");
    // \s*[\r\n]+ takes up to the last newline; then \s+(?!\S).
    SPLIT("llama-bpe", "a\n\n  b", "a", "\n\n", " ", " b");
    // Any non-letter, non-digit, non-newline char may lead a word: tabs too.
    SPLIT("llama-bpe", "\tx\t\ty", "\tx", "\t", "\ty");
    SPLIT("llama-bpe", "Hi!\n\nOk", "Hi", "!\n\n", "Ok");
    SPLIT("llama-bpe", "end   ", "end", "   ");
    SPLIT("llama-bpe", "$100", "$", "100");
    SPLIT("llama-bpe", "élan Ωmega", "élan", " Ωmega");
}

static void test_qwen2(void) {
    SPLIT("qwen2", "1234 56", "1", "2", "3", "4", " ", "5", "6");
    SPLIT("qwen2", "It'S 你好😁!", "It", "'S", " 你好", "😁!");
    SPLIT("qwen2", "a\r\n\r\nb", "a", "\r\n\r\n", "b");
}

static void test_deepseek_llm(void) {
    SPLIT("deepseek-llm", "Hello, world!\n", "Hello", ",", " world", "!", "\n");
    // Letters are a fixed Latin/Greek/Cyrillic... class; CJK and digits get later passes.
    SPLIT("deepseek-llm", "I'm 12345 天气", "I", "'", "m", " ", "12345", " ", "天气");
    // \s+$ splits trailing whitespace off.
    SPLIT("deepseek-llm", "12  ", "12", "  ");
    SPLIT("deepseek-llm", "你好，世界。", "你好", "，", "世界", "。");
    // U+3000 is whitespace: never a member of the punctuation or CJK ranges (llama.cpp
    // maps it to U+000B first), though \s? lets it lead punctuation. Here the third regex
    // takes "\u3000。" and the CJK regex (U+0800-U+4E00 includes 。) splits it again.
    SPLIT("deepseek-llm", "a\xe3\x80\x80。", "a", "\xe3\x80\x80", "。");
    SPLIT("deepseek-llm", "。\xe3\x80\x80", "。", "\xe3\x80\x80");
    SPLIT("deepseek-llm", "天\xe3\x80\x80地", "天", "\xe3\x80\x80", "地");
    // The punctuation class [!-/:-~] holds the ASCII letters too, so it splits a word that
    // the letter regex had kept whole.
    SPLIT("deepseek-llm", "Ωmega привет", "Ω", "mega", " привет");
    SPLIT("deepseek-llm", "a\r\nb", "a", "\r", "\n", "b");
    // The llama-bpe sentence through deepseek-llm's six regexes.
    SPLIT("deepseek-llm", "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～", "Hello", ",",
          " y", "'", "all", "!", " How", " are", " you", " 😁", " ?", "我想在", "apple", "工作",
          "1314151", "天", "～");
}

static void test_deepseek_coder(void) {
    SPLIT("deepseek-coder", "def f(x):\n    return x*2", "def", " f", "(", "x", "):", "\n", "   ",
          " return", " x", "*", "2");
    SPLIT("deepseek-coder", "我们123", "我们", "1", "2", "3");
    // + and = are symbols, not \p{P}: gaps.
    SPLIT("deepseek-coder", "a+b=c", "a", "+", "b", "=", "c");
}

static void test_deepseek_v3(void) {
    SPLIT("deepseek-v3", "1234567 apples", "123", "456", "7", " apples");
    SPLIT("deepseek-v3", "日本語のテキストabc", "日本語のテキスト", "abc");
    // An ASCII punctuation mark can lead ASCII letters; a space cannot.
    SPLIT("deepseek-v3", ".Net (foo) (bar", ".Net", " (", "foo", ")", " (", "bar");
    // Combining marks stay with their letters.
    SPLIT("deepseek-v3", "Cafe\xcc\x81 ok", "Cafe\xcc\x81", " ok");
    SPLIT("deepseek-v3", "a\n\nb", "a", "\n\n", "b");
}

static void test_starcoder(void) {
    // Every digit alone first; the GPT-2 pattern then sees "x = " as its own piece.
    SPLIT("starcoder", "x = 123;", "x", " =", " ", "1", "2", "3", ";");
    SPLIT("starcoder", "it's 2024", "it", "'s", " ", "2", "0", "2", "4");
}

static void test_gpt4o(void) {
    SPLIT("gpt-4o", "HelloWorld", "Hello", "World");
    SPLIT("gpt-4o", "HTTPServer helloWORLD", "HTTPServer", " hello", "WORLD");
    // Contractions attach to the word, in any case.
    SPLIT("gpt-4o", "I'm don't WE'LL", "I'm", " don't", " WE'LL");
    SPLIT("gpt-4o", "12345", "123", "45");
    SPLIT("gpt-4o", "a/b...\n\nx", "a", "/b", "...\n\n", "x");
    // llama.cpp's "upper" is any letter but a-z and "lower" any letter but A-Z, so an
    // accented capital can end a word by itself: ÉCOLE -> É + COLE (as in llama.cpp).
    SPLIT("gpt-4o", "ÉCOLE école", "É", "COLE", " école");
}

static void test_tekken(void) {
    SPLIT("tekken", "I'm 123", "I", "'m", " ", "1", "2", "3");
    SPLIT("tekken", "path/to\n", "path", "/to", "\n");
    SPLIT("tekken", "HelloWorld", "Hello", "World");
}

static void test_bloom_viking(void) {
    SPLIT("bloom", "Hello, world! (ok)", "Hello", ",", " world", "! (", "ok", ")");
    SPLIT("bloom", "a|b", "a", "|", "b");
    SPLIT("bloom", "你好。世界", "你好", "。", "世界");
    SPLIT("bloom", "x  y", "x", " ", " y");
    SPLIT("viking", "abc123 45", "abc", "1", "2", "3", " ", "4", "5");
}

// ---- names ------------------------------------------------------------------------

// Every name and the list it must use (named by its first name).
static const char *const k_alias[][2] = {
    {"default", "default"},
    {"gpt-2", "gpt-2"},
    {"gpt-neox", "gpt-2"},
    {"mpt", "gpt-2"},
    {"olmo", "gpt-2"},
    {"phi-2", "gpt-2"},
    {"jais", "gpt-2"},
    {"jina-es", "gpt-2"},
    {"jina-de", "gpt-2"},
    {"jina-v1-en", "gpt-2"},
    {"jina-v2-es", "gpt-2"},
    {"jina-v2-de", "gpt-2"},
    {"jina-v2-code", "gpt-2"},
    {"roberta-bpe", "gpt-2"},
    {"gigachat", "gpt-2"},
    {"a.x-4.0", "gpt-2"},
    {"mellum", "gpt-2"},
    {"modern-bert", "gpt-2"},
    {"exaone4", "gpt-2"},
    {"trillion", "gpt-2"},
    {"granite-docling", "gpt-2"},
    {"llama-bpe", "llama-bpe"},
    {"llama3", "llama-bpe"},
    {"llama-v3", "llama-bpe"},
    {"falcon3", "llama-bpe"},
    {"falcon-h1", "llama-bpe"},
    {"pixtral", "llama-bpe"},
    {"midm-2.0", "llama-bpe"},
    {"lfm2", "llama-bpe"},
    {"jina-v5-nano", "llama-bpe"},
    {"dbrx", "llama-bpe"},
    {"smaug-bpe", "llama-bpe"},
    {"chatglm-bpe", "llama-bpe"},
    {"glm4", "llama-bpe"},
    {"qwen2", "qwen2"},
    {"deepseek-r1-qwen", "qwen2"},
    {"stablelm2", "qwen2"},
    {"megrez", "qwen2"},
    {"hunyuan", "qwen2"},
    {"kormo", "qwen2"},
    {"f2llmv2", "qwen2"},
    {"solar-open", "qwen2"},
    {"grok-2", "qwen2"},
    {"deepseek-llm", "deepseek-llm"},
    {"deepseek-coder", "deepseek-coder"},
    {"deepseek-v3", "deepseek-v3"},
    {"hunyuan-dense", "deepseek-v3"},
    {"joyai-llm", "deepseek-v3"},
    {"hy_v4", "deepseek-v3"},
    {"falcon", "falcon"},
    {"starcoder", "starcoder"},
    {"refact", "starcoder"},
    {"command-r", "starcoder"},
    {"smollm", "starcoder"},
    {"codeshell", "starcoder"},
    {"exaone", "starcoder"},
    {"minerva-7b", "starcoder"},
    {"mellum2", "starcoder"},
    {"gpt-4o", "gpt-4o"},
    {"llama4", "gpt-4o"},
    {"kanana2", "gpt-4o"},
    {"talkie", "gpt-4o"},
    {"minimax-m2", "gpt-4o"},
    {"tekken", "tekken"},
    {"bloom", "bloom"},
    {"poro-chat", "bloom"},
    {"gpt3-finnish", "bloom"},
    {"viking", "viking"},
};
enum { N_ALIAS = sizeof k_alias / sizeof k_alias[0] };

// A sample that tells every list apart from every other.
static const char k_sample[] =
    "Hello, y'all! I'M 'RE ÉCOLE x+=1234567;\n\n  \ttabs\u3000。 你好，世界 日本語のテキスト"
    " .Net(foo) a/b 😁\u200d🌫\ufe0f e\xcc\x81 ½ 12  ";

static int split_equal(const char *a, const char *b, const char *text, size_t len) {
    tok_span *sa = NULL, *sb = NULL;
    size_t na = 0, nb = 0, ca = 0, cb = 0;
    int eq = tok_pretok_split(get(a), text, len, &sa, &na, &ca, NULL) == ANNEAL_OK &&
             tok_pretok_split(get(b), text, len, &sb, &nb, &cb, NULL) == ANNEAL_OK && na == nb &&
             memcmp(sa, sb, na * sizeof *sa) == 0;
    anneal_free(sa);
    anneal_free(sb);
    return eq;
}

static void test_names(void) {
    const char *const *names = tok_pretok_names();
    int n = 0;
    for (; names[n]; n++) {
        tok_pretok *p = NULL;
        anneal_err err = {0};
        CHECK_EQ(tok_pretok_new(names[n], &p, &err), ANNEAL_OK);
        CHECK_STR(tok_pretok_name(p), names[n]);
        tok_pretok_free(p);
    }
    CHECK_EQ(n, N_ALIAS);
    for (int i = 0; i < N_ALIAS; i++) {
        CHECK_STR(names[i], k_alias[i][0]);
        if (!split_equal(k_alias[i][0], k_alias[i][1], k_sample, sizeof k_sample - 1)) {
            fprintf(stderr, "  %s does not split like %s\n", k_alias[i][0], k_alias[i][1]);
            CHECK(0);
        }
    }
    // The lists themselves differ from each other on the sample.
    const char *primary[] = {"default",      "gpt-2",          "llama-bpe",   "qwen2",
                             "deepseek-llm", "deepseek-coder", "deepseek-v3", "falcon",
                             "starcoder",    "gpt-4o",         "tekken",      "bloom",
                             "viking"};
    int n_primary = (int)(sizeof primary / sizeof primary[0]);
    for (int i = 0; i < n_primary; i++)
        for (int j = i + 1; j < n_primary; j++)
            if (split_equal(primary[i], primary[j], k_sample, sizeof k_sample - 1)) {
                fprintf(stderr, "  %s splits like %s\n", primary[i], primary[j]);
                CHECK(0);
            }

    // NULL and "" mean "default", as llama.cpp does for a missing tokenizer.ggml.pre.
    tok_pretok *p = NULL;
    CHECK_EQ(tok_pretok_new(NULL, &p, NULL), ANNEAL_OK);
    CHECK_STR(tok_pretok_name(p), "default");
    tok_pretok_free(p);
    CHECK_EQ(tok_pretok_new("", &p, NULL), ANNEAL_OK);
    CHECK_STR(tok_pretok_name(p), "default");
    tok_pretok_free(p);
    tok_pretok_free(NULL);
}

static void test_unknown_name(void) {
    tok_pretok *p = (tok_pretok *)&p;
    anneal_err err = {0};
    CHECK_EQ(tok_pretok_new("gpt-5-turbo", &p, &err), ANNEAL_ERR_UNSUPPORTED);
    CHECK(p == NULL);
    CHECK_EQ(err.status, ANNEAL_ERR_UNSUPPORTED);
    CHECK_CONTAINS(err.msg, "'gpt-5-turbo'");
    CHECK_CONTAINS(err.msg, "tokenizer.ggml.pre");
    CHECK_CONTAINS(err.msg, "gpt-2");
    CHECK_CONTAINS(err.msg, "llama-bpe");
    CHECK_CONTAINS(err.msg, "deepseek-coder");
    CHECK_CONTAINS(err.msg, "viking");
    CHECK_CONTAINS(err.msg, "more (docs/pretokenizers.md)");
    // Names are case-sensitive, like llama.cpp's.
    anneal_err_clear(&err);
    CHECK_EQ(tok_pretok_new("GPT-2", &p, &err), ANNEAL_ERR_UNSUPPORTED);
    // Control bytes in a name from a file are not printed raw.
    anneal_err_clear(&err);
    CHECK_EQ(tok_pretok_new("bad\x01\nname", &p, &err), ANNEAL_ERR_UNSUPPORTED);
    CHECK_CONTAINS(err.msg, "'bad??name'");
    anneal_err_clear(&err);
    CHECK_EQ(tok_pretok_new("gpt-2", NULL, &err), ANNEAL_ERR_INVALID_ARG);
}

// ---- invalid UTF-8 ----------------------------------------------------------------

static void test_invalid_utf8(void) {
    // Each bad byte splits like U+FFFD (a symbol) and stays in one piece as itself.
    SPLIT("gpt-2",
          "a\xff"
          "b",
          "a", "\xff", "b");
    SPLIT("gpt-2", "!\xff?", "!\xff?");
    SPLIT("gpt-2", " \xc3(", " \xc3(");
    SPLIT("gpt-2", "x\xe2\x82", "x", "\xe2\x82");
    SPLIT("gpt-2", "\xc3\xa9\xc3", "\xc3\xa9", "\xc3");
    // Strict UTF-8: an encoded surrogate and an overlong NUL are bad bytes, one symbol run.
    SPLIT("gpt-2", "\xed\xa0\x80 \xc0\x80", "\xed\xa0\x80", " \xc0\x80");
    // llama3: a bad byte can lead a word, as U+FFFD does.
    SPLIT("llama-bpe",
          "ab\x80"
          "cd",
          "ab",
          "\x80"
          "cd");
    SPLIT("default", "\xff,", "\xff", ",");
    SPLIT("deepseek-llm", "\xfe\xff\n1", "\xfe\xff", "\n", "1");
    SPLIT("qwen2", "\xf0\x9f\x98", "\xf0\x9f\x98");
}

// Random bytes, random mixtures of awkward pieces: every list must cover the input exactly.
static void test_coverage_random(void) {
    static const char *const atoms[] = {"a",
                                        "Z",
                                        "'s",
                                        "'LL",
                                        " ",
                                        "  ",
                                        "\t",
                                        "\n",
                                        "\r\n",
                                        "0",
                                        "123",
                                        ".",
                                        ",",
                                        "!",
                                        "$",
                                        "`",
                                        "é",
                                        "É",
                                        "e\xcc\x81",
                                        "ß",
                                        "Ω",
                                        "ж",
                                        "我",
                                        "あ",
                                        "カ",
                                        "한",
                                        "，",
                                        "。",
                                        "～",
                                        "😁",
                                        "\xe2\x80\x8d",
                                        "\xef\xb8\x8f",
                                        "\xe3\x80\x80",
                                        "\xc2\xa0",
                                        "\xe1\xa0\x8e",
                                        "\xc2\x85",
                                        "\x0b",
                                        "½",
                                        "\xff",
                                        "\xc3",
                                        "\xe2\x82",
                                        "\x80",
                                        "\xed\xa0\x80",
                                        "\0"};
    const size_t n_atoms = sizeof atoms / sizeof atoms[0];
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    char buf[600];
    tok_span *sp = NULL;
    size_t n = 0, cap = 0;
    const char *const *names = tok_pretok_names();
    for (int iter = 0; iter < 300; iter++) {
        size_t len = 0;
        if (iter & 1) {
            len = test_rand(&seed) % 300;
            for (size_t i = 0; i < len; i++)
                buf[i] = (char)test_rand(&seed);
        } else {
            int k = (int)(test_rand(&seed) % 40);
            for (int i = 0; i < k; i++) {
                const char *a = atoms[test_rand(&seed) % n_atoms];
                size_t al = a[0] ? strlen(a) : 1;
                memcpy(buf + len, a, al);
                len += al;
            }
        }
        for (int j = 0; names[j]; j++) {
            anneal_err err = {0};
            CHECK_EQ(tok_pretok_split(get(names[j]), buf, len, &sp, &n, &cap, &err), ANNEAL_OK);
            if (!covers(sp, n, len)) {
                fprintf(stderr, "  %s does not cover input %d (%zu bytes)\n", names[j], iter, len);
                CHECK(0);
            }
        }
    }
    anneal_free(sp);
}

// ---- buffers, arguments, sizes ------------------------------------------------------

static void test_buffer_and_args(void) {
    tok_pretok *p = get("gpt-2");
    tok_span *sp = anneal_malloc(sizeof *sp);
    size_t n = 99, cap = 1;
    anneal_err err = {0};
    // Empty input: 0 pieces, buffer untouched; NULL text is fine with len 0.
    CHECK_EQ(tok_pretok_split(p, "", 0, &sp, &n, &cap, &err), ANNEAL_OK);
    CHECK_EQ(n, 0);
    CHECK_EQ(tok_pretok_split(p, NULL, 0, &sp, &n, &cap, &err), ANNEAL_OK);
    CHECK_EQ(n, 0);
    CHECK_EQ(cap, 1);
    // The buffer grows and is reused.
    const char text[] = "one two three four five six seven eight nine ten";
    CHECK_EQ(tok_pretok_split(p, text, sizeof text - 1, &sp, &n, &cap, &err), ANNEAL_OK);
    CHECK_EQ(n, 10);
    CHECK(cap >= 10);
    size_t cap_before = cap;
    CHECK_EQ(tok_pretok_split(p, "hi there", 8, &sp, &n, &cap, &err), ANNEAL_OK);
    CHECK_EQ(n, 2);
    CHECK_EQ(cap, cap_before);
    CHECK_EQ(sp[1].off, 2);
    CHECK_EQ(sp[1].len, 6);
    anneal_free(sp);

    CHECK_EQ(tok_pretok_split(NULL, "x", 1, &sp, &n, &cap, &err), ANNEAL_ERR_INVALID_ARG);
    anneal_err_clear(&err);
    sp = NULL;
    cap = 0;
    CHECK_EQ(tok_pretok_split(p, NULL, 3, &sp, &n, &cap, &err), ANNEAL_ERR_INVALID_ARG);
    anneal_err_clear(&err);
    // Over 4 GiB cannot be described by 32-bit spans (the bytes are never read).
    CHECK_EQ(tok_pretok_split(p, "x", (size_t)UINT32_MAX + 1, &sp, &n, &cap, &err),
             ANNEAL_ERR_LIMIT);
    CHECK_CONTAINS(err.msg, "gpt-2");
    CHECK_EQ(n, 0);
}

// Long runs that would be quadratic with a naive regex must stay fast.
static void test_long_runs(void) {
    const size_t len = 200000;
    char *buf = anneal_malloc(len + 1);
    tok_span *sp = NULL;
    size_t n = 0, cap = 0;
    const char fills[] = {' ', 'A', '1', '!', '\n', (char)0xff};
    uint64_t t0 = anneal_time_ns();
    for (size_t f = 0; f < sizeof fills; f++) {
        memset(buf, fills[f], len);
        buf[len] = 'x';
        for (int j = 0; tok_pretok_names()[j]; j++) {
            const char *name = tok_pretok_names()[j];
            if (j && strcmp(name, "deepseek-llm") && strcmp(name, "gpt-4o") &&
                strcmp(name, "llama-bpe") && strcmp(name, "tekken"))
                continue;
            CHECK_EQ(tok_pretok_split(get(name), buf, len + 1, &sp, &n, &cap, NULL), ANNEAL_OK);
            CHECK(covers(sp, n, len + 1));
        }
    }
    // Spaces before a word: GPT-2 gives the run less one space, then " x".
    memset(buf, ' ', len);
    CHECK_EQ(tok_pretok_split(get("gpt-2"), buf, len + 1, &sp, &n, &cap, NULL), ANNEAL_OK);
    CHECK_EQ(n, 2);
    CHECK_EQ(sp[0].len, len - 1);
    // deepseek-llm's \s+$ on trailing spaces.
    CHECK_EQ(tok_pretok_split(get("deepseek-llm"), buf, len, &sp, &n, &cap, NULL), ANNEAL_OK);
    CHECK_EQ(n, 1);
    double secs = (double)(anneal_time_ns() - t0) / 1e9;
    CHECK(secs < 20.0);
    anneal_free(sp);
    anneal_free(buf);
}

// The vocabulary fixtures' inputs: every list covers each of them.
static void test_fixture_inputs(void) {
    char *data = NULL;
    size_t size = 0;
    if (anneal_read_file(test_shared("fixtures/vocab/ggml-vocab-gpt-2.gguf.inp"), 1 << 20, &data,
                         &size, NULL) != ANNEAL_OK) {
        fprintf(stderr, "  (fixture missing: skipped)\n");
        return;
    }
    const char *sep = "\n__ggml_vocab_test__\n";
    int cases = 0;
    tok_span *sp = NULL;
    size_t n = 0, cap = 0;
    for (char *s = data; s < data + size;) {
        char *e = strstr(s, sep);
        size_t len = e ? (size_t)(e - s) : (size_t)(data + size - s);
        for (int j = 0; tok_pretok_names()[j]; j++) {
            CHECK_EQ(tok_pretok_split(get(tok_pretok_names()[j]), s, len, &sp, &n, &cap, NULL),
                     ANNEAL_OK);
            CHECK(covers(sp, n, len));
        }
        cases++;
        if (!e) break;
        s = e + strlen(sep);
    }
    CHECK(cases >= 40);
    anneal_free(sp);
    anneal_free(data);
}

// ---- threads ----------------------------------------------------------------------

typedef struct {
    const tok_pretok *p;
    const char *text;
    size_t len;
    const tok_span *expect;
    size_t n_expect;
    int ok;
} thread_job;

static void *thread_main(void *arg) {
    thread_job *j = arg;
    tok_span *sp = NULL;
    size_t n = 0, cap = 0;
    j->ok = 1;
    for (int r = 0; r < 50 && j->ok; r++)
        if (tok_pretok_split(j->p, j->text, j->len, &sp, &n, &cap, NULL) != ANNEAL_OK ||
            n != j->n_expect || memcmp(sp, j->expect, n * sizeof *sp) != 0)
            j->ok = 0;
    anneal_free(sp);
    return NULL;
}

static void test_threads(void) {
    const tok_pretok *p = get("llama-bpe");
    size_t len = 20 * (sizeof k_sample - 1);
    char *text = anneal_malloc(len);
    for (size_t i = 0; i < 20; i++)
        memcpy(text + i * (sizeof k_sample - 1), k_sample, sizeof k_sample - 1);
    tok_span *ref = NULL;
    size_t n_ref = 0, cap = 0;
    CHECK_EQ(tok_pretok_split(p, text, len, &ref, &n_ref, &cap, NULL), ANNEAL_OK);
    pthread_t th[4];
    thread_job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (thread_job){p, text, len, ref, n_ref, 0};
        CHECK_EQ(pthread_create(&th[i], NULL, thread_main, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].ok);
    }
    anneal_free(ref);
    anneal_free(text);
}

int main(void) {
    RUN(test_gpt2);
    RUN(test_default);
    RUN(test_falcon);
    RUN(test_llama3);
    RUN(test_qwen2);
    RUN(test_deepseek_llm);
    RUN(test_deepseek_coder);
    RUN(test_deepseek_v3);
    RUN(test_starcoder);
    RUN(test_gpt4o);
    RUN(test_tekken);
    RUN(test_bloom_viking);
    RUN(test_names);
    RUN(test_unknown_name);
    RUN(test_invalid_utf8);
    RUN(test_coverage_random);
    RUN(test_buffer_and_args);
    RUN(test_long_runs);
    RUN(test_fixture_inputs);
    RUN(test_threads);
    for (int i = 0; i < g_n_cache; i++)
        tok_pretok_free(g_cache[i]);
    return TEST_EXIT();
}
