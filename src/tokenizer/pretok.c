// Pre-tokenizers for byte-level BPE: llama.cpp's regex lists per tokenizer.ggml.pre,
// compiled with PCRE2 (UTF + UCP), applied in turn to every piece of the previous pass.
#include "pretok.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdio.h>
#include <string.h>

// ---- regex lists ----------------------------------------------------------------
// Written as llama.cpp's src/llama-vocab.cpp has them (its "adapted" forms, which avoid
// (?i:...)), with three deliberate rewrites that keep llama.cpp's results:
//  - \s and \S are expanded to llama.cpp's whitespace set (Unicode White_Space) by
//    expand_ws(), because PCRE2 before 10.43 also counts U+180E as \s.
//  - llama.cpp's "((?=[\p{L}])([^a-z]))" is the class [^\P{L}a-z] (a letter other than
//    a-z): same set, but a single class, so long runs need no backtracking stack.
//  - llama.cpp replaces every non-ASCII whitespace code point by U+000B before matching
//    the deepseek literal classes, so those can never match it; the classes here leave
//    those code points out to do the same (U+3000 and the spaces inside U+0800-U+4E00).
//    Its "\s+$" gets a (?<!\s) guard: the leftmost match is unchanged (it always starts
//    a whitespace run) and a long run of spaces no longer costs quadratic time.

// llama.cpp's whitespace: Python regex's \s, i.e. the White_Space property.
#define WS_SET                                                                                     \
    "\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"    \
    "\\x{205F}\\x{3000}"

// GPT-2's pattern (no trailing |\s+: a lone whitespace before a word is left as a gap).
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
// Case-insensitive English contractions without (?i), as llama.cpp adapts them.
#define RE_CONTR "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_LLAMA3                                                                                  \
    RE_CONTR "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"           \
             "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                                   \
    RE_CONTR "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"                \
             "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
// o200k-style words: optional lead, "upper" letters (any letter but a-z), then "lower"
// letters (any letter but A-Z), or the other way round.
#define RE_WORD_UL "[^\\r\\n\\p{L}\\p{N}]?[^\\P{L}a-z]*[^\\P{L}A-Z]+"
#define RE_WORD_LU "[^\\r\\n\\p{L}\\p{N}]?[^\\P{L}a-z]+[^\\P{L}A-Z]*"
#define RE_O200K_TAIL "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

// deepseek-llm's letter class (HF tokenizer.json, as in llama.cpp), as code points.
#define DS_LETTERS                                                                                 \
    "\\x{41}-\\x{5A}\\x{61}-\\x{7A}\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}"          \
    "\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}"         \
    "\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}" \
    "\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}"    \
    "\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}"                 \
    "\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}"                 \
    "\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}"         \
    "\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}"        \
    "\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}"                 \
    "\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}"         \
    "\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}"         \
    "\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}"                   \
    "\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}"                  \
    "\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}"                 \
    "\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}"                 \
    "\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}"             \
    "\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}"         \
    "\\x{1E900}-\\x{1E943}"
// llama.cpp's [一-龥ࠀ-一가-퟿] (U+4E00-U+9FA5, U+0800-U+4E00, U+AC00-U+D7FF) less the
// whitespace code points inside it.
#define DS_CJK                                                                                     \
    "\\x{800}-\\x{167F}\\x{1681}-\\x{1FFF}\\x{200B}-\\x{2027}\\x{202A}-\\x{202E}"                  \
    "\\x{2030}-\\x{205E}\\x{2060}-\\x{2FFF}\\x{3001}-\\x{9FA5}\\x{AC00}-\\x{D7FF}"
// BLOOM's " ?[^(\s|.,!?…。，、।۔،)]+".
#define RE_BLOOM " ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{964}\\x{6D4}\\x{60C})]+"

#define MAX_REGEX 6

typedef struct family {
    const char *regex[MAX_REGEX + 1]; // applied in order; NULL-terminated
} family;

enum {
    FAM_DEFAULT,
    FAM_GPT2,
    FAM_LLAMA3,
    FAM_QWEN2,
    FAM_DEEPSEEK_LLM,
    FAM_DEEPSEEK_CODER,
    FAM_DEEPSEEK3,
    FAM_FALCON,
    FAM_STARCODER,
    FAM_GPT4O,
    FAM_TEKKEN,
    FAM_BLOOM,
    FAM_VIKING,
    FAM_COUNT,
};

static const family k_families[FAM_COUNT] = {
    [FAM_DEFAULT] = {{"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}},
    [FAM_GPT2] = {{RE_GPT2}},
    [FAM_LLAMA3] = {{RE_LLAMA3}},
    [FAM_QWEN2] = {{RE_QWEN2}},
    [FAM_DEEPSEEK_LLM] = {{
        "[\\r\\n]",
        "\\s?[" DS_LETTERS "]+",
        "\\s?[\\x{21}-\\x{2F}\\x{3A}-\\x{7E}\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}"
        "\\x{2018}-\\x{201F}\\x{3001}-\\x{3002}]+",
        "(?<!\\s)\\s+$",
        "[" DS_CJK "]+",
        "\\p{N}+",
    }},
    [FAM_DEEPSEEK_CODER] = {{
        "[\\r\\n]",
        "\\s?\\p{L}+",
        "\\s?\\p{P}+",
        "[" DS_CJK "]+",
        "\\p{N}",
    }},
    [FAM_DEEPSEEK3] = {{
        "\\p{N}{1,3}",
        "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
        "[\\x{21}-\\x{2F}\\x{3A}-\\x{40}\\x{5B}-\\x{60}\\x{7B}-\\x{7E}][A-Za-z]+"
        "|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
        "| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    }},
    [FAM_FALCON] = {{"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}},
    [FAM_STARCODER] = {{"\\p{N}", RE_GPT2}},
    [FAM_GPT4O] = {{RE_WORD_UL RE_CONTR "?|" RE_WORD_LU RE_CONTR "?|\\p{N}{1,3}" RE_O200K_TAIL}},
    [FAM_TEKKEN] = {{RE_WORD_UL "|" RE_WORD_LU "|\\p{N}" RE_O200K_TAIL}},
    [FAM_BLOOM] = {{RE_BLOOM}},
    [FAM_VIKING] = {{RE_BLOOM, "\\p{N}"}},
};

// Every tokenizer.ggml.pre value we accept, in llama.cpp's spelling, with its regex list.
// "gpt-neox" is ours: llama.cpp has no such entry, and GPT-NeoX/Pythia vocabularies use
// the GPT-2 byte-level pattern (as its "mpt" and "olmo", which reuse that tokenizer, do).
#define PRETOK_NAMES(X)                                                                            \
    X("default", FAM_DEFAULT)                                                                      \
    X("gpt-2", FAM_GPT2)                                                                           \
    X("gpt-neox", FAM_GPT2)                                                                        \
    X("mpt", FAM_GPT2)                                                                             \
    X("olmo", FAM_GPT2)                                                                            \
    X("phi-2", FAM_GPT2)                                                                           \
    X("jais", FAM_GPT2)                                                                            \
    X("jina-es", FAM_GPT2)                                                                         \
    X("jina-de", FAM_GPT2)                                                                         \
    X("jina-v1-en", FAM_GPT2)                                                                      \
    X("jina-v2-es", FAM_GPT2)                                                                      \
    X("jina-v2-de", FAM_GPT2)                                                                      \
    X("jina-v2-code", FAM_GPT2)                                                                    \
    X("roberta-bpe", FAM_GPT2)                                                                     \
    X("gigachat", FAM_GPT2)                                                                        \
    X("a.x-4.0", FAM_GPT2)                                                                         \
    X("mellum", FAM_GPT2)                                                                          \
    X("modern-bert", FAM_GPT2)                                                                     \
    X("exaone4", FAM_GPT2)                                                                         \
    X("trillion", FAM_GPT2)                                                                        \
    X("granite-docling", FAM_GPT2)                                                                 \
    X("llama-bpe", FAM_LLAMA3)                                                                     \
    X("llama3", FAM_LLAMA3)                                                                        \
    X("llama-v3", FAM_LLAMA3)                                                                      \
    X("falcon3", FAM_LLAMA3)                                                                       \
    X("falcon-h1", FAM_LLAMA3)                                                                     \
    X("pixtral", FAM_LLAMA3)                                                                       \
    X("midm-2.0", FAM_LLAMA3)                                                                      \
    X("lfm2", FAM_LLAMA3)                                                                          \
    X("jina-v5-nano", FAM_LLAMA3)                                                                  \
    X("dbrx", FAM_LLAMA3)                                                                          \
    X("smaug-bpe", FAM_LLAMA3)                                                                     \
    X("chatglm-bpe", FAM_LLAMA3)                                                                   \
    X("glm4", FAM_LLAMA3)                                                                          \
    X("qwen2", FAM_QWEN2)                                                                          \
    X("deepseek-r1-qwen", FAM_QWEN2)                                                               \
    X("stablelm2", FAM_QWEN2)                                                                      \
    X("megrez", FAM_QWEN2)                                                                         \
    X("hunyuan", FAM_QWEN2)                                                                        \
    X("kormo", FAM_QWEN2)                                                                          \
    X("f2llmv2", FAM_QWEN2)                                                                        \
    X("solar-open", FAM_QWEN2)                                                                     \
    X("grok-2", FAM_QWEN2)                                                                         \
    X("deepseek-llm", FAM_DEEPSEEK_LLM)                                                            \
    X("deepseek-coder", FAM_DEEPSEEK_CODER)                                                        \
    X("deepseek-v3", FAM_DEEPSEEK3)                                                                \
    X("hunyuan-dense", FAM_DEEPSEEK3)                                                              \
    X("joyai-llm", FAM_DEEPSEEK3)                                                                  \
    X("hy_v4", FAM_DEEPSEEK3)                                                                      \
    X("falcon", FAM_FALCON)                                                                        \
    X("starcoder", FAM_STARCODER)                                                                  \
    X("refact", FAM_STARCODER)                                                                     \
    X("command-r", FAM_STARCODER)                                                                  \
    X("smollm", FAM_STARCODER)                                                                     \
    X("codeshell", FAM_STARCODER)                                                                  \
    X("exaone", FAM_STARCODER)                                                                     \
    X("minerva-7b", FAM_STARCODER)                                                                 \
    X("mellum2", FAM_STARCODER)                                                                    \
    X("gpt-4o", FAM_GPT4O)                                                                         \
    X("llama4", FAM_GPT4O)                                                                         \
    X("kanana2", FAM_GPT4O)                                                                        \
    X("talkie", FAM_GPT4O)                                                                         \
    X("minimax-m2", FAM_GPT4O)                                                                     \
    X("tekken", FAM_TEKKEN)                                                                        \
    X("bloom", FAM_BLOOM)                                                                          \
    X("poro-chat", FAM_BLOOM)                                                                      \
    X("gpt3-finnish", FAM_BLOOM)                                                                   \
    X("viking", FAM_VIKING)

#define NAME_STR(name, fam) name,
#define NAME_FAM(name, fam) fam,
static const char *const k_names[] = {PRETOK_NAMES(NAME_STR) NULL};
static const unsigned char k_name_family[] = {PRETOK_NAMES(NAME_FAM)};
enum { N_NAMES = sizeof k_name_family };

struct tok_pretok {
    const char *name; // points into k_names
    int n_regex;
    pcre2_code *code[MAX_REGEX];
};

const char *const *tok_pretok_names(void) {
    return k_names;
}

const char *tok_pretok_name(const tok_pretok *p) {
    return p ? p->name : NULL;
}

void tok_pretok_free(tok_pretok *p) {
    if (!p) return;
    for (int i = 0; i < p->n_regex; i++)
        pcre2_code_free(p->code[i]);
    anneal_free(p);
}

// Rewrites \s and \S (outside and inside classes) to WS_SET. Returns a malloc'd string,
// or NULL when out of memory or when \S appears inside a class (not expressible as a
// plain class; none of our patterns does that).
static char *expand_ws(const char *pat) {
    size_t n = strlen(pat), extra = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (pat[i] == '\\') {
            if (pat[i + 1] == 's' || pat[i + 1] == 'S') extra += sizeof WS_SET + 2;
            i++;
        }
    char *out = anneal_malloc(n + extra + 1);
    if (!out) return NULL;
    size_t o = 0;
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = pat[i];
        if (c == '\\' && i + 1 < n) {
            char e = pat[++i];
            if (e == 's' || e == 'S') {
                if (in_class && e == 'S') {
                    anneal_free(out);
                    return NULL;
                }
                if (!in_class) out[o++] = '[';
                if (!in_class && e == 'S') out[o++] = '^';
                memcpy(out + o, WS_SET, sizeof WS_SET - 1);
                o += sizeof WS_SET - 1;
                if (!in_class) out[o++] = ']';
            } else {
                out[o++] = c;
                out[o++] = e;
            }
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            out[o++] = c;
            // A ']' right after '[' or '[^' is a literal member, not the end.
            if (i + 1 < n && pat[i + 1] == '^') out[o++] = pat[++i];
            if (i + 1 < n && pat[i + 1] == ']') out[o++] = pat[++i];
            continue;
        }
        if (in_class && c == ']') in_class = false;
        out[o++] = c;
    }
    out[o] = '\0';
    return out;
}

// A name from a file, made safe to print: at most 64 bytes, non-printable bytes as '?'.
static void printable(const char *s, char out[65]) {
    size_t i = 0;
    for (; s[i] && i < 64; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c < 0x20 || c == 0x7F) ? '?' : (char)c;
    }
    out[i] = '\0';
}

// True when k_names[i] is the first name listed for its regex list.
static bool is_primary(int i) {
    for (int j = 0; j < i; j++)
        if (k_name_family[j] == k_name_family[i]) return false;
    return true;
}

// Lists one name per regex list first, then aliases while they fit in the message.
static anneal_status unknown_name(const char *name, anneal_err *err) {
    char shown[65], list[400];
    printable(name, shown);
    size_t o = 0;
    int listed = 0;
    bool full = false;
    for (int pass = 0; pass < 2 && !full; pass++)
        for (int i = 0; i < N_NAMES && !full; i++) {
            if (is_primary(i) != (pass == 0)) continue;
            full = o + strlen(k_names[i]) + 2 > 330;
            if (full) continue;
            const char *sep = listed++ ? ", " : "";
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", sep, k_names[i]);
        }
    if (listed < N_NAMES)
        snprintf(list + o, sizeof list - o, " and %d more (docs/pretokenizers.md)",
                 N_NAMES - listed);
    return anneal_err_set(err, ANNEAL_ERR_UNSUPPORTED,
                          "unknown pre-tokenizer '%s' (tokenizer.ggml.pre); known: %s", shown,
                          list);
}

anneal_status tok_pretok_new(const char *name, tok_pretok **out, anneal_err *err) {
    if (!out) return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "tok_pretok_new: out is NULL");
    *out = NULL;
    if (!name || !*name) name = "default";
    int idx = -1;
    for (int i = 0; i < N_NAMES; i++)
        if (strcmp(name, k_names[i]) == 0) {
            idx = i;
            break;
        }
    if (idx < 0) return unknown_name(name, err);

    tok_pretok *p = anneal_calloc(1, sizeof *p);
    if (!p) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "pre-tokenizer '%s': out of memory", name);
    p->name = k_names[idx];
    const family *f = &k_families[k_name_family[idx]];
    for (int r = 0; r < MAX_REGEX && f->regex[r]; r++) {
        char *pat = expand_ws(f->regex[r]);
        if (!pat) {
            tok_pretok_free(p);
            return anneal_err_set(err, ANNEAL_ERR_NOMEM,
                                  "pre-tokenizer '%s': cannot prepare regex %d (out of memory, "
                                  "or \\S inside a class)",
                                  name, r);
        }
        int code;
        PCRE2_SIZE where;
        pcre2_code *re =
            pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &code, &where, NULL);
        anneal_free(pat);
        if (!re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(code, msg, sizeof msg);
            tok_pretok_free(p);
            return anneal_err_set(err, ANNEAL_ERR_INTERNAL,
                                  "pre-tokenizer '%s': regex %d does not compile at offset %zu: %s",
                                  name, r, (size_t)where, (const char *)msg);
        }
        // JIT is only a speed-up: when it is unavailable pcre2_match interprets.
        int jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
        if (jit) ANNEAL_DEBUG("pre-tokenizer '%s': regex %d runs without JIT (%d)", name, r, jit);
        p->code[p->n_regex++] = re;
    }
    *out = p;
    return ANNEAL_OK;
}

// ---- splitting ------------------------------------------------------------------

typedef struct split_ctx {
    const tok_pretok *p;
    const uint8_t *subj; // valid UTF-8: the input, or its copy with U+FFFD for bad bytes
    const uint8_t *orig; // the caller's bytes
    size_t orig_len;
    bool mapped;         // subj is a copy: offsets need mapping back to orig
    size_t map_s, map_o; // mapping cursor: subj offset map_s is orig offset map_o
    pcre2_match_data *md;
    tok_span **spans;
    size_t *n, *cap;
    anneal_err *err;
} split_ctx;

// Length of the valid UTF-8 sequence at s[0..n), 0 if the byte starts none.
static size_t seq_len(const uint8_t *s, size_t n) {
    if (n == 0) return 0;
    if (s[0] < 0x80) return 1;
    uint32_t cp;
    return anneal_utf8_decode(s, n, &cp);
}

// Subject offset -> input offset. Offsets arrive in increasing order and on character
// boundaries, so one forward walk over the input serves the whole call.
static size_t map_offset(split_ctx *c, size_t s) {
    if (!c->mapped) return s;
    while (c->map_s < s) {
        size_t k = seq_len(c->orig + c->map_o, c->orig_len - c->map_o);
        c->map_o += k ? k : 1;
        c->map_s += k ? k : 3; // a bad byte stands as the 3 bytes of U+FFFD
    }
    return c->map_o;
}

static anneal_status emit(split_ctx *c, size_t s0, size_t s1) {
    if (*c->n == *c->cap) {
        size_t ncap = *c->cap ? *c->cap * 2 : 64;
        tok_span *ns = anneal_realloc_array(*c->spans, ncap, sizeof **c->spans);
        if (!ns)
            return anneal_err_set(c->err, ANNEAL_ERR_NOMEM,
                                  "pre-tokenizer '%s': out of memory growing to %zu pieces",
                                  c->p->name, ncap);
        *c->spans = ns;
        *c->cap = ncap;
    }
    size_t o0 = map_offset(c, s0), o1 = map_offset(c, s1);
    (*c->spans)[(*c->n)++] = (tok_span){(uint32_t)o0, (uint32_t)(o1 - o0)};
    return ANNEAL_OK;
}

// Applies regex `level` to the piece subj[off..end): matches and the gaps between them
// both become pieces, each passed on to the next regex; past the last regex, emitted.
// Lookarounds see only this piece, as in llama.cpp, which runs each regex per piece.
static anneal_status split_piece(split_ctx *c, int level, size_t off, size_t end) {
    if (level == c->p->n_regex) return emit(c, off, end);
    const uint8_t *piece = c->subj + off;
    size_t plen = end - off, pos = 0, gap = 0;
    anneal_status st;
    while (pos < plen) {
        int rc = pcre2_match(c->p->code[level], piece, plen, pos, PCRE2_NO_UTF_CHECK, c->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return anneal_err_set(c->err, ANNEAL_ERR_INTERNAL,
                                  "pre-tokenizer '%s': regex %d failed near byte %zu: %s",
                                  c->p->name, level, map_offset(c, off + pos), (const char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) {
            // An empty match makes no piece; step one character and search on.
            if (ms >= plen) break;
            size_t k = seq_len(piece + ms, plen - ms);
            pos = ms + (k ? k : 1);
            continue;
        }
        if (ms > gap && (st = split_piece(c, level + 1, off + gap, off + ms))) return st;
        if ((st = split_piece(c, level + 1, off + ms, off + me))) return st;
        gap = pos = me;
    }
    if (gap < plen) return split_piece(c, level + 1, off + gap, end);
    return ANNEAL_OK;
}

anneal_status tok_pretok_split(const tok_pretok *p, const char *text, size_t len, tok_span **spans,
                               size_t *n, size_t *cap, anneal_err *err) {
    if (!p || !spans || !n || !cap || (!text && len))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "tok_pretok_split: NULL argument");
    *n = 0;
    if (len == 0) return ANNEAL_OK;
    if (len > UINT32_MAX)
        return anneal_err_set(err, ANNEAL_ERR_LIMIT,
                              "pre-tokenizer '%s': text of %zu bytes exceeds the 4 GiB limit",
                              p->name, len);

    const uint8_t *t = (const uint8_t *)text;
    size_t n_bad = 0;
    for (size_t i = 0; i < len;) {
        size_t k = seq_len(t + i, len - i);
        n_bad += k == 0;
        i += k ? k : 1;
    }
    uint8_t *copy = NULL;
    size_t slen = len;
    if (n_bad) {
        slen = len + 2 * n_bad;
        copy = anneal_malloc(slen);
        if (!copy)
            return anneal_err_set(err, ANNEAL_ERR_NOMEM,
                                  "pre-tokenizer '%s': out of memory for %zu bytes", p->name, slen);
        size_t o = 0;
        for (size_t i = 0; i < len;) {
            size_t k = seq_len(t + i, len - i);
            if (k) {
                memcpy(copy + o, t + i, k);
                o += k;
                i += k;
            } else {
                memcpy(copy + o, "\xEF\xBF\xBD", 3);
                o += 3;
                i++;
            }
        }
    }

    split_ctx c = {
        .p = p,
        .subj = copy ? copy : t,
        .orig = t,
        .orig_len = len,
        .mapped = copy != NULL,
        .spans = spans,
        .n = n,
        .cap = cap,
        .err = err,
    };
    // One ovector pair is all we read; the patterns' groups are all non-capturing.
    c.md = pcre2_match_data_create(1, NULL);
    anneal_status st;
    if (!c.md)
        st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "pre-tokenizer '%s': out of memory", p->name);
    else
        st = split_piece(&c, 0, 0, slen);
    pcre2_match_data_free(c.md);
    anneal_free(copy);
    if (st) *n = 0;
    return st;
}
