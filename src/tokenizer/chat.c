// Chat templates: renders a conversation as the prompt text of a model family, byte for byte
// what the family's Jinja template renders under Hugging Face transformers (minus the leading
// BOS text), and recognizes a GGUF's tokenizer.chat_template by its markers.
#include "anneal/tokenizer.h"

#include <string.h>

// A rendered prompt above this is refused (the server caps request bodies far below).
#define CHAT_MAX_OUTPUT ((size_t)1 << 30)

typedef struct family {
    const char *name;
    const char *stop; // text ending an assistant turn
    const char *bos;  // leading BOS text of the real template, left out of the output
    unsigned roles;   // ROLE_* bits accepted
    bool strict;      // system only first, then user/assistant alternating (template raises)
} family;

enum { ROLE_SYSTEM = 1, ROLE_USER = 2, ROLE_ASSISTANT = 4, ROLE_TOOL = 8, ROLE_IPYTHON = 16 };
#define ROLES_BASIC (ROLE_SYSTEM | ROLE_USER | ROLE_ASSISTANT)

static const family FAMILIES[ANNEAL_CHAT_TEMPLATE_COUNT] = {
    [ANNEAL_CHAT_CHATML] = {"chatml", "<|im_end|>", "", ROLES_BASIC | ROLE_TOOL, false},
    [ANNEAL_CHAT_LLAMA2] = {"llama2", "</s>", "<s>", ROLES_BASIC, true},
    [ANNEAL_CHAT_LLAMA3] = {"llama3", "<|eot_id|>", "<|begin_of_text|>",
                            ROLES_BASIC | ROLE_TOOL | ROLE_IPYTHON, false},
    [ANNEAL_CHAT_MISTRAL] = {"mistral", "</s>", "<s>", ROLES_BASIC, true},
    [ANNEAL_CHAT_PHI3] = {"phi3", "<|end|>", "", ROLES_BASIC, false},
    [ANNEAL_CHAT_GEMMA] = {"gemma", "<end_of_turn>", "<bos>", ROLES_BASIC, true},
    [ANNEAL_CHAT_ZEPHYR] = {"zephyr", "</s>", "", ROLES_BASIC, false},
    [ANNEAL_CHAT_QWEN2] = {"qwen2", "<|im_end|>", "", ROLES_BASIC | ROLE_TOOL, false},
    [ANNEAL_CHAT_LLAMA3_0] = {"llama3.0", "<|eot_id|>", "<|begin_of_text|>",
                              ROLES_BASIC | ROLE_TOOL | ROLE_IPYTHON, false},
};

static const struct {
    const char *name;
    anneal_chat_template t;
} ALIASES[] = {
    {"qwen", ANNEAL_CHAT_QWEN2},      {"qwen2.5", ANNEAL_CHAT_QWEN2},
    {"gemma2", ANNEAL_CHAT_GEMMA},    {"gemma3", ANNEAL_CHAT_GEMMA},
    {"phi3.5", ANNEAL_CHAT_PHI3},     {"mistral-nemo", ANNEAL_CHAT_MISTRAL},
    {"llama3.1", ANNEAL_CHAT_LLAMA3},
};

static const char QWEN_DEFAULT_SYSTEM[] =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
// Llama 3.1's template fills date_string with this when the caller passes none.
static const char LLAMA3_PREAMBLE[] = "Cutting Knowledge Date: December 2023\n"
                                      "Today Date: 26 Jul 2024\n\n";

static bool valid(anneal_chat_template t) {
    return (unsigned)t < ANNEAL_CHAT_TEMPLATE_COUNT;
}

const char *anneal_chat_template_name(anneal_chat_template t) {
    return valid(t) ? FAMILIES[t].name : "unknown";
}

const char *anneal_chat_template_stop(anneal_chat_template t) {
    return valid(t) ? FAMILIES[t].stop : "";
}

const char *anneal_chat_template_bos(anneal_chat_template t) {
    return valid(t) ? FAMILIES[t].bos : "";
}

anneal_status anneal_chat_template_parse_name(const char *name, anneal_chat_template *out,
                                              anneal_err *err) {
    if (!name || !out) return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "chat template: no name");
    for (int i = 0; i < ANNEAL_CHAT_TEMPLATE_COUNT; i++) {
        if (strcmp(name, FAMILIES[i].name) == 0) {
            *out = (anneal_chat_template)i;
            return ANNEAL_OK;
        }
    }
    for (size_t i = 0; i < sizeof ALIASES / sizeof ALIASES[0]; i++) {
        if (strcmp(name, ALIASES[i].name) == 0) {
            *out = ALIASES[i].t;
            return ANNEAL_OK;
        }
    }
    return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                          "unknown chat template '%.64s' (known: chatml, qwen2, llama2, llama3, "
                          "llama3.0, mistral, phi3, gemma, zephyr)",
                          name);
}

// ---- detection --------------------------------------------------------------------------
static bool has(const char *s, size_t n, const char *needle) {
    size_t m = strlen(needle);
    if (m > n) return false;
    for (size_t i = 0; i + m <= n; i++) {
        if (s[i] == needle[0] && memcmp(s + i, needle, m) == 0) return true;
    }
    return false;
}

// The family of a template text, or -1. Markers go from the most to the least specific.
static int detect(const char *s, size_t n) {
    if (has(s, n, "<|im_start|>"))
        return has(s, n, "You are Qwen, created by Alibaba Cloud") ? ANNEAL_CHAT_QWEN2
                                                                   : ANNEAL_CHAT_CHATML;
    if (has(s, n, "<|start_header_id|>"))
        return has(s, n, "Cutting Knowledge Date") ? ANNEAL_CHAT_LLAMA3 : ANNEAL_CHAT_LLAMA3_0;
    if (has(s, n, "<start_of_turn>")) return ANNEAL_CHAT_GEMMA;
    if (has(s, n, "[INST]")) {
        if (has(s, n, "<<SYS>>")) return ANNEAL_CHAT_LLAMA2;
        // Mistral v1-v3 put spaces inside "[INST] ... [/INST]" and v7 has a separate
        // [SYSTEM_PROMPT]: only the v3-tekken (Nemo) form is ours.
        if (!has(s, n, "[INST] ") && !has(s, n, " [/INST]") && !has(s, n, "[SYSTEM_PROMPT]"))
            return ANNEAL_CHAT_MISTRAL;
        return -1;
    }
    if (has(s, n, "<|user|>")) {
        if (has(s, n, "<|end|>")) return ANNEAL_CHAT_PHI3;
        if (has(s, n, "eos_token") || has(s, n, "</s>")) return ANNEAL_CHAT_ZEPHYR;
    }
    return -1;
}

anneal_status anneal_chat_template_detect(const char *jinja, anneal_chat_template *out,
                                          anneal_err *err) {
    if (!jinja || !out)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "chat template detect: no template");
    int f = detect(jinja, strlen(jinja));
    if (f < 0)
        return anneal_err_set(err, ANNEAL_ERR_NOT_FOUND,
                              "chat template not recognized (%zu bytes, no known family's markers)",
                              strlen(jinja));
    *out = (anneal_chat_template)f;
    return ANNEAL_OK;
}

anneal_status anneal_chat_template_from_gguf(const anneal_gguf *g, anneal_chat_template *out,
                                             bool *fallback, anneal_err *err) {
    if (!g || !out)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "chat template: no GGUF handle");
    const anneal_gguf_kv *kv = anneal_gguf_find(g, "tokenizer.chat_template");
    int f = -1;
    if (kv) {
        if (kv->value.type != ANNEAL_GGUF_STRING)
            return anneal_err_set(err, ANNEAL_ERR_FORMAT,
                                  "key 'tokenizer.chat_template': expected a string, found %s",
                                  anneal_gguf_type_name(kv->value.type));
        uint64_t len = kv->value.str.len;
        f = detect(kv->value.str.ptr, len > SIZE_MAX ? SIZE_MAX : (size_t)len);
    }
    if (fallback) *fallback = f < 0;
    *out = f < 0 ? ANNEAL_CHAT_CHATML : (anneal_chat_template)f;
    return ANNEAL_OK;
}

// ---- Python's str.strip() (Jinja's trim) -----------------------------------------------
// Python's whitespace: the code points with bidi class WS, B or S, or category Zs.
static bool py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

// Narrows [*s, *s + *n) to its text without leading/trailing whitespace. Invalid UTF-8 stops
// the scan (it is not whitespace).
static void strip(const char **s, size_t *n) {
    const uint8_t *p = (const uint8_t *)*s;
    size_t b = 0, e = *n;
    while (b < e) {
        uint32_t cp;
        size_t l = anneal_utf8_decode(p + b, e - b, &cp);
        if (!l || !py_space(cp)) break;
        b += l;
    }
    while (e > b) {
        size_t start = e - 1;
        while (start > b && (p[start] & 0xC0) == 0x80 && e - start < 4)
            start--;
        uint32_t cp;
        size_t l = anneal_utf8_decode(p + start, e - start, &cp);
        if (l != e - start || !py_space(cp)) break;
        e = start;
    }
    *s += b;
    *n = e - b;
}

// ---- output buffer ---------------------------------------------------------------------
typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool failed; // out of memory or past CHAT_MAX_OUTPUT; later appends do nothing
    bool too_big;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
    if (b->failed || n == 0) return;
    if (n > CHAT_MAX_OUTPUT - b->n) {
        b->failed = b->too_big = true;
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = anneal_realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void puts_(sbuf *b, const char *s) {
    put(b, s, strlen(s));
}

static void put_trimmed(sbuf *b, const char *s) {
    size_t n = strlen(s);
    strip(&s, &n);
    put(b, s, n);
}

// json.dumps(s, ensure_ascii=False): what transformers' tojson filter writes for a string.
static void put_json(sbuf *b, const char *s) {
    puts_(b, "\"");
    static const char plain[] = "\"\\\n\r\t\b\f", letter[] = "\"\\nrtbf";
    static const char hex[] = "0123456789abcdef";
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        const char *q = strchr(plain, c);
        if (q) {
            char e[2] = {'\\', letter[q - plain]};
            put(b, e, 2);
        } else if (c < 0x20) {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(b, u, 6);
        } else {
            put(b, p, 1);
        }
    }
    puts_(b, "\"");
}

// ---- validation ------------------------------------------------------------------------
static unsigned role_bit(const char *r) {
    if (strcmp(r, "system") == 0) return ROLE_SYSTEM;
    if (strcmp(r, "user") == 0) return ROLE_USER;
    if (strcmp(r, "assistant") == 0) return ROLE_ASSISTANT;
    if (strcmp(r, "tool") == 0) return ROLE_TOOL;
    if (strcmp(r, "ipython") == 0) return ROLE_IPYTHON;
    return 0;
}

static anneal_status validate(const family *f, const anneal_chat_message *m, size_t n,
                              anneal_err *err) {
    if (n == 0 || !m)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "chat template %s: no messages",
                              f->name);
    for (size_t i = 0; i < n; i++) {
        if (!m[i].role || !m[i].content)
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "chat message %zu: %s is NULL", i,
                                  m[i].role ? "content" : "role");
        unsigned r = role_bit(m[i].role);
        if (!(r & f->roles))
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                  "chat message %zu (role '%.64s'): role not supported by the %s "
                                  "template (supported: system, user, assistant%s%s)",
                                  i, m[i].role, f->name, (f->roles & ROLE_TOOL) ? ", tool" : "",
                                  (f->roles & ROLE_IPYTHON) ? ", ipython" : "");
        if (!f->strict) continue;
        if (r == ROLE_SYSTEM && i != 0)
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                  "chat message %zu (role 'system'): the %s template accepts a "
                                  "system message only as the first message",
                                  i, f->name);
    }
    if (!f->strict) return ANNEAL_OK;
    size_t first = role_bit(m[0].role) == ROLE_SYSTEM ? 1 : 0;
    for (size_t i = first; i < n; i++) {
        bool want_user = (i - first) % 2 == 0;
        if ((role_bit(m[i].role) == ROLE_USER) != want_user)
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                  "chat message %zu (role '%s'): the %s template needs roles "
                                  "alternating user/assistant/... after the optional system "
                                  "message (expected '%s')",
                                  i, m[i].role, f->name, want_user ? "user" : "assistant");
    }
    return ANNEAL_OK;
}

// ---- renderers -------------------------------------------------------------------------
static bool is_role(const anneal_chat_message *m, unsigned bit) {
    return role_bit(m->role) == bit;
}

static void render_chatml(sbuf *b, const anneal_chat_message *m, size_t n, bool gen) {
    for (size_t i = 0; i < n; i++) {
        puts_(b, "<|im_start|>");
        puts_(b, m[i].role);
        puts_(b, "\n");
        puts_(b, m[i].content);
        puts_(b, "<|im_end|>\n");
    }
    if (gen) puts_(b, "<|im_start|>assistant\n");
}

static void render_qwen2(sbuf *b, const anneal_chat_message *m, size_t n, bool gen) {
    puts_(b, "<|im_start|>system\n");
    puts_(b, is_role(&m[0], ROLE_SYSTEM) ? m[0].content : QWEN_DEFAULT_SYSTEM);
    puts_(b, "<|im_end|>\n");
    for (size_t i = 0; i < n; i++) {
        if (is_role(&m[i], ROLE_TOOL)) {
            // consecutive tool results share one user turn
            if (i == 0 || !is_role(&m[i - 1], ROLE_TOOL)) puts_(b, "<|im_start|>user");
            puts_(b, "\n<tool_response>\n");
            puts_(b, m[i].content);
            puts_(b, "\n</tool_response>");
            if (i + 1 == n || !is_role(&m[i + 1], ROLE_TOOL)) puts_(b, "<|im_end|>\n");
            continue;
        }
        if (i == 0 && is_role(&m[i], ROLE_SYSTEM)) continue; // written above
        puts_(b, "<|im_start|>");
        puts_(b, m[i].role);
        puts_(b, "\n");
        puts_(b, m[i].content);
        puts_(b, "<|im_end|>\n");
    }
    if (gen) puts_(b, "<|im_start|>assistant\n");
}

// The template ignores add_generation_prompt: a prompt ends with " [/INST]" anyway.
static void render_llama2(sbuf *b, const anneal_chat_message *m, size_t n) {
    const char *sys = is_role(&m[0], ROLE_SYSTEM) ? m[0].content : NULL;
    size_t first = sys ? 1 : 0;
    for (size_t i = first; i < n; i++) {
        const char *c = m[i].content;
        size_t cn = strlen(c);
        if (is_role(&m[i], ROLE_USER)) {
            if (i != first) puts_(b, "<s>"); // the first one is the BOS the tokenizer adds
            puts_(b, "[INST] ");
            if (i == first && sys) {
                // the template strips "<<SYS>>\n" + sys + "\n<</SYS>>\n\n" + content as a
                // whole: only the content's end can be stripped, and all of it when blank
                puts_(b, "<<SYS>>\n");
                puts_(b, sys);
                const char *s = c;
                size_t sn = cn;
                strip(&s, &sn);
                if (sn == 0) {
                    puts_(b, "\n<</SYS>>");
                } else {
                    puts_(b, "\n<</SYS>>\n\n");
                    put(b, c, (size_t)(s - c) + sn);
                }
            } else {
                put_trimmed(b, c);
            }
            puts_(b, " [/INST]");
        } else {
            puts_(b, " ");
            put_trimmed(b, c);
            puts_(b, " </s>");
        }
    }
}

static void render_llama3(sbuf *b, const anneal_chat_message *m, size_t n, bool gen,
                          bool preamble) {
    size_t first = 0;
    if (preamble) {
        puts_(b, "<|start_header_id|>system<|end_header_id|>\n\n");
        puts_(b, LLAMA3_PREAMBLE);
        if (is_role(&m[0], ROLE_SYSTEM)) {
            put_trimmed(b, m[0].content);
            first = 1;
        }
        puts_(b, "<|eot_id|>");
    }
    for (size_t i = first; i < n; i++) {
        if (preamble && (is_role(&m[i], ROLE_TOOL) || is_role(&m[i], ROLE_IPYTHON))) {
            // Llama 3.1 writes tool results as JSON (a string is iterable to Jinja's test)
            puts_(b, "<|start_header_id|>ipython<|end_header_id|>\n\n");
            put_json(b, m[i].content);
            puts_(b, "<|eot_id|>");
            continue;
        }
        puts_(b, "<|start_header_id|>");
        puts_(b, m[i].role);
        puts_(b, "<|end_header_id|>\n\n");
        put_trimmed(b, m[i].content);
        puts_(b, "<|eot_id|>");
    }
    if (gen) puts_(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

// Mistral Nemo: the system message joins the last message only if that one is a user
// message (so a conversation ending with the assistant loses it, as in the real template).
static void render_mistral(sbuf *b, const anneal_chat_message *m, size_t n) {
    const char *sys = is_role(&m[0], ROLE_SYSTEM) ? m[0].content : NULL;
    for (size_t i = sys ? 1 : 0; i < n; i++) {
        if (is_role(&m[i], ROLE_USER)) {
            puts_(b, "[INST]");
            if (sys && i + 1 == n) {
                puts_(b, sys);
                puts_(b, "\n\n");
            }
            puts_(b, m[i].content);
            puts_(b, "[/INST]");
        } else {
            puts_(b, m[i].content);
            puts_(b, "</s>");
        }
    }
}

static void render_phi3(sbuf *b, const anneal_chat_message *m, size_t n, bool gen) {
    for (size_t i = 0; i < n; i++) {
        if (is_role(&m[i], ROLE_SYSTEM) && !m[i].content[0]) continue; // empty system: skipped
        puts_(b, "<|");
        puts_(b, m[i].role);
        puts_(b, "|>\n");
        puts_(b, m[i].content);
        puts_(b, "<|end|>\n");
    }
    puts_(b, gen ? "<|assistant|>\n" : "<|endoftext|>");
}

// Gemma 3's handling of a system message (Gemma 2's template raises on one): it opens the
// first user turn, untrimmed, followed by a blank line.
static void render_gemma(sbuf *b, const anneal_chat_message *m, size_t n, bool gen) {
    const char *sys = is_role(&m[0], ROLE_SYSTEM) ? m[0].content : NULL;
    size_t first = sys ? 1 : 0;
    for (size_t i = first; i < n; i++) {
        puts_(b, is_role(&m[i], ROLE_USER) ? "<start_of_turn>user\n" : "<start_of_turn>model\n");
        if (i == first && sys) {
            puts_(b, sys);
            puts_(b, "\n\n");
        }
        put_trimmed(b, m[i].content);
        puts_(b, "<end_of_turn>\n");
    }
    if (gen) puts_(b, "<start_of_turn>model\n");
}

static void render_zephyr(sbuf *b, const anneal_chat_message *m, size_t n, bool gen) {
    for (size_t i = 0; i < n; i++) {
        puts_(b, "<|");
        puts_(b, m[i].role);
        puts_(b, "|>\n");
        puts_(b, m[i].content);
        puts_(b, "</s>\n");
    }
    if (gen) puts_(b, "<|assistant|>\n");
}

anneal_status anneal_chat_apply(anneal_chat_template t, const anneal_chat_message *msgs, size_t n,
                                bool add_generation_prompt, char **out, size_t *out_len,
                                anneal_err *err) {
    if (!out) return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "chat apply: no output pointer");
    *out = NULL;
    if (out_len) *out_len = 0;
    if (!valid(t))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "chat apply: unknown template %d",
                              (int)t);
    anneal_status st = validate(&FAMILIES[t], msgs, n, err);
    if (st) return st;
    sbuf b = {0};
    bool gen = add_generation_prompt;
    switch (t) {
    case ANNEAL_CHAT_CHATML:
        render_chatml(&b, msgs, n, gen);
        break;
    case ANNEAL_CHAT_QWEN2:
        render_qwen2(&b, msgs, n, gen);
        break;
    case ANNEAL_CHAT_LLAMA2:
        render_llama2(&b, msgs, n);
        break;
    case ANNEAL_CHAT_LLAMA3:
        render_llama3(&b, msgs, n, gen, true);
        break;
    case ANNEAL_CHAT_LLAMA3_0:
        render_llama3(&b, msgs, n, gen, false);
        break;
    case ANNEAL_CHAT_MISTRAL:
        render_mistral(&b, msgs, n);
        break;
    case ANNEAL_CHAT_PHI3:
        render_phi3(&b, msgs, n, gen);
        break;
    case ANNEAL_CHAT_GEMMA:
        render_gemma(&b, msgs, n, gen);
        break;
    case ANNEAL_CHAT_ZEPHYR:
        render_zephyr(&b, msgs, n, gen);
        break;
    case ANNEAL_CHAT_TEMPLATE_COUNT:
        break;
    }
    if (!b.failed && !b.p) {
        b.p = anneal_malloc(1); // a conversation can render to "" (llama2 with only a system)
        b.failed = !b.p;
    }
    if (b.failed) {
        anneal_free(b.p);
        if (b.too_big)
            return anneal_err_set(err, ANNEAL_ERR_LIMIT,
                                  "chat template %s: rendered prompt over %zu bytes",
                                  FAMILIES[t].name, CHAT_MAX_OUTPUT);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "chat template %s: out of memory",
                              FAMILIES[t].name);
    }
    b.p[b.n] = '\0';
    *out = b.p;
    if (out_len) *out_len = b.n;
    return ANNEAL_OK;
}
