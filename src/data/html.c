// HTML for the data pipeline: character references, element names and a streaming
// visible-text extractor that tolerates broken markup (see html.h).
#include "data/html.h"

#include "anneal/base.h"

#include <string.h>

// ---- character references ---------------------------------------------------------------

// Named references for U+00A0..U+00FF, in code point order (HTML 4 Latin-1 set).
static const char *const latin1_names[96] = {
    "nbsp",   "iexcl",  "cent",   "pound",  "curren", "yen",    "brvbar", "sect",   "uml",
    "copy",   "ordf",   "laquo",  "not",    "shy",    "reg",    "macr",   "deg",    "plusmn",
    "sup2",   "sup3",   "acute",  "micro",  "para",   "middot", "cedil",  "sup1",   "ordm",
    "raquo",  "frac14", "frac12", "frac34", "iquest", "Agrave", "Aacute", "Acirc",  "Atilde",
    "Auml",   "Aring",  "AElig",  "Ccedil", "Egrave", "Eacute", "Ecirc",  "Euml",   "Igrave",
    "Iacute", "Icirc",  "Iuml",   "ETH",    "Ntilde", "Ograve", "Oacute", "Ocirc",  "Otilde",
    "Ouml",   "times",  "Oslash", "Ugrave", "Uacute", "Ucirc",  "Uuml",   "Yacute", "THORN",
    "szlig",  "agrave", "aacute", "acirc",  "atilde", "auml",   "aring",  "aelig",  "ccedil",
    "egrave", "eacute", "ecirc",  "euml",   "igrave", "iacute", "icirc",  "iuml",   "eth",
    "ntilde", "ograve", "oacute", "ocirc",  "otilde", "ouml",   "divide", "oslash", "ugrave",
    "uacute", "ucirc",  "uuml",   "yacute", "thorn",  "yuml",
};

// Greek capitals U+0391..U+03A9 (U+03A2 is unassigned) and small letters U+03B1..U+03C9.
static const char *const greek_names[25] = {
    "Alpha", "Beta",   "Gamma",   "Delta", "Epsilon", "Zeta",    "Eta",   "Theta", "Iota",
    "Kappa", "Lambda", "Mu",      "Nu",    "Xi",      "Omicron", "Pi",    "Rho",   NULL,
    "Sigma", "Tau",    "Upsilon", "Phi",   "Chi",     "Psi",     "Omega",
};

static const struct {
    const char *name;
    uint32_t cp;
} other_refs[] = {
    {"quot", 34},     {"amp", 38},      {"apos", 39},     {"lt", 60},       {"gt", 62},
    {"OElig", 338},   {"oelig", 339},   {"Scaron", 352},  {"scaron", 353},  {"Yuml", 376},
    {"fnof", 402},    {"circ", 710},    {"tilde", 732},   {"sigmaf", 962},  {"ensp", 8194},
    {"emsp", 8195},   {"thinsp", 8201}, {"zwnj", 8204},   {"zwj", 8205},    {"lrm", 8206},
    {"rlm", 8207},    {"ndash", 8211},  {"mdash", 8212},  {"lsquo", 8216},  {"rsquo", 8217},
    {"sbquo", 8218},  {"ldquo", 8220},  {"rdquo", 8221},  {"bdquo", 8222},  {"dagger", 8224},
    {"Dagger", 8225}, {"bull", 8226},   {"hellip", 8230}, {"permil", 8240}, {"prime", 8242},
    {"Prime", 8243},  {"lsaquo", 8249}, {"rsaquo", 8250}, {"euro", 8364},   {"trade", 8482},
    {"larr", 8592},   {"uarr", 8593},   {"rarr", 8594},   {"darr", 8595},   {"harr", 8596},
    {"minus", 8722},  {"infin", 8734},  {"asymp", 8776},  {"ne", 8800},     {"le", 8804},
    {"ge", 8805},     {"nbsp", 160},
};

static bool name_eq(const char *a, size_t n, const char *b) {
    return strlen(b) == n && memcmp(a, b, n) == 0;
}

static uint32_t named_ref(const char *s, size_t n) {
    for (size_t i = 0; i < sizeof other_refs / sizeof other_refs[0]; i++)
        if (name_eq(s, n, other_refs[i].name)) return other_refs[i].cp;
    for (int i = 0; i < 96; i++)
        if (name_eq(s, n, latin1_names[i])) return 160 + (uint32_t)i;
    for (int i = 0; i < 25; i++) {
        if (!greek_names[i]) continue;
        if (name_eq(s, n, greek_names[i])) return 0x391 + (uint32_t)i;
        // The small letter is the capital's name with a lower-case first letter.
        if (n == strlen(greek_names[i]) && s[0] == greek_names[i][0] + 32 &&
            memcmp(s + 1, greek_names[i] + 1, n - 1) == 0)
            return 0x3B1 + (uint32_t)i;
    }
    return 0;
}

uint32_t html_ref_decode(const char *s, size_t n) {
    if (n == 0 || n > 32) return 0;
    if (s[0] != '#') {
        for (size_t i = 0; i < n; i++) {
            char c = s[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
                return 0;
        }
        return named_ref(s, n);
    }
    bool hex = n >= 2 && (s[1] == 'x' || s[1] == 'X');
    size_t i = hex ? 2 : 1;
    if (i == n || n - i > (hex ? 7u : 8u)) return 0;
    uint32_t v = 0;
    for (; i < n; i++) {
        char c = s[i];
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (hex && c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (hex && c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return 0;
        v = v * (hex ? 16u : 10u) + (uint32_t)d;
    }
    // Decoding must not create characters the control stage would have removed, or the
    // cleaned text would change when cleaned again.
    if (v == 0 || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) ||
        (v < 0x20 && v != '\t' && v != '\n' && v != '\r') || (v >= 0x7F && v <= 0x9F))
        return 0xFFFD;
    return v;
}

// ---- element names ----------------------------------------------------------------------

static const char *const inline_tags[] = {
    "a",        "abbr",   "b",      "bdi",      "bdo",      "big",    "button", "canvas",
    "cite",     "code",   "data",   "del",      "dfn",      "em",     "embed",  "font",
    "i",        "iframe", "img",    "input",    "ins",      "kbd",    "label",  "link",
    "map",      "mark",   "meta",   "meter",    "noscript", "object", "param",  "picture",
    "progress", "q",      "s",      "samp",     "script",   "select", "small",  "source",
    "span",     "strike", "strong", "style",    "sub",      "sup",    "svg",    "template",
    "textarea", "time",   "track",  "tt",       "u",        "var",    "video",  "audio",
    "wbr",      "base",   "col",    "colgroup", "optgroup", "output", "td",     "th",
    "html",     "head",   "body",   "tbody",    "thead",    "tfoot",  "area",   "nobr",
};
static const char *const block_tags[] = {
    "br",      "div",    "li",      "tr",     "dt",     "dd",    "caption", "figcaption",
    "address", "center", "summary", "legend", "option", "title", "dialog",
};
static const char *const para_tags[] = {
    "p",    "h1",    "h2",    "h3",     "h4",   "h5",       "h6",      "blockquote", "pre",
    "hr",   "table", "ul",    "ol",     "dl",   "section",  "article", "header",     "footer",
    "main", "nav",   "aside", "figure", "form", "fieldset", "details",
};

static bool in_list(const char *const *list, size_t n_list, const char *lower, size_t n) {
    for (size_t i = 0; i < n_list; i++)
        if (name_eq(lower, n, list[i])) return true;
    return false;
}

int html_tag_kind(const char *name, size_t n) {
    char lower[16];
    if (n == 0 || n >= sizeof lower) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        lower[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    if (in_list(para_tags, sizeof para_tags / sizeof *para_tags, lower, n)) return 3;
    if (in_list(block_tags, sizeof block_tags / sizeof *block_tags, lower, n)) return 2;
    if (in_list(inline_tags, sizeof inline_tags / sizeof *inline_tags, lower, n)) return 1;
    return 0;
}

// ---- extractor --------------------------------------------------------------------------

enum { S_TEXT, S_LT, S_NAME, S_ATTRS, S_BANG, S_COMMENT, S_DECL, S_RAW, S_REF };

void html_ex_init(html_ex *h, size_t limit) {
    memset(h, 0, sizeof *h);
    h->limit = limit;
}

void html_ex_reset(html_ex *h) {
    char *out = h->out;
    size_t cap = h->cap, limit = h->limit;
    memset(h, 0, sizeof *h);
    h->out = out;
    h->cap = cap;
    h->limit = limit;
}

void html_ex_free(html_ex *h) {
    anneal_free(h->out);
    h->out = NULL;
    h->cap = h->len = 0;
}

static void put(html_ex *h, char c) {
    if (h->overflow || h->nomem) return;
    if (h->len >= h->limit) {
        h->overflow = true;
        return;
    }
    if (h->len == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 4096;
        if (nc > h->limit) nc = h->limit;
        char *p = anneal_realloc(h->out, nc);
        if (!p) {
            h->nomem = true;
            return;
        }
        h->out = p;
        h->cap = nc;
    }
    h->out[h->len++] = c;
}

static bool is_ws(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

// One visible character: whitespace collapses (outside <pre>), pending breaks come first.
static void text_byte(html_ex *h, unsigned char c) {
    if (h->suppress > 0 || h->head) return;
    if (h->pre == 0 && is_ws(c)) {
        h->pending_space = true;
        return;
    }
    if (h->len > 0) {
        if (h->pending_nl) {
            for (unsigned i = 0; i < h->pending_nl; i++)
                put(h, '\n');
        } else if (h->pending_space) {
            put(h, ' ');
        }
    }
    h->pending_nl = 0;
    h->pending_space = false;
    put(h, (char)c);
}

static void text_cp(html_ex *h, uint32_t cp) {
    char b[4];
    size_t n = anneal_utf8_encode(cp, b);
    for (size_t i = 0; i < n; i++)
        text_byte(h, (unsigned char)b[i]);
}

static void line_break(html_ex *h, unsigned n) {
    if (h->suppress > 0 || h->head) return;
    if (n > h->pending_nl) h->pending_nl = n;
}

// Elements that may appear in <head>; any other start tag means the body has begun
// (browsers close a missing </head> the same way).
static bool head_element(const char *n, size_t len) {
    static const char *const ok[] = {"title",  "meta",     "link",     "base", "style",
                                     "script", "noscript", "template", "head", "html"};
    return in_list(ok, sizeof ok / sizeof *ok, n, len);
}

static void tag_end(html_ex *h) {
    char *n = h->name;
    size_t len = h->name_len;
    for (size_t i = 0; i < len; i++)
        if (n[i] >= 'A' && n[i] <= 'Z') n[i] = (char)(n[i] + 32);
    h->state = S_TEXT;
    if (len == 0) return;
    if (!h->closing) {
        if (name_eq(n, len, "head"))
            h->head = true;
        else if (name_eq(n, len, "body"))
            h->head = false;
        else if (h->head && !head_element(n, len))
            h->head = false;
    } else if (name_eq(n, len, "head")) {
        h->head = false;
    }
    if (name_eq(n, len, "noscript") || name_eq(n, len, "template")) {
        if (!h->closing)
            h->suppress++;
        else if (h->suppress > 0)
            h->suppress--;
        return;
    }
    if (name_eq(n, len, "pre")) {
        if (!h->closing)
            h->pre++;
        else if (h->pre > 0)
            h->pre--;
    }
    if (!h->closing && (name_eq(n, len, "script") || name_eq(n, len, "style"))) {
        memcpy(h->raw, n, len + 1);
        h->raw_match = 0;
        h->state = S_RAW;
        return;
    }
    if (name_eq(n, len, "td") || name_eq(n, len, "th")) {
        if (!h->suppress && !h->head) h->pending_space = true;
        return;
    }
    int kind = html_tag_kind(n, len);
    if (kind == 2)
        line_break(h, 1);
    else if (kind == 3)
        line_break(h, 2);
}

static void flush_ref(html_ex *h) {
    text_byte(h, '&');
    for (size_t i = 0; i < h->ref_len; i++)
        text_byte(h, (unsigned char)h->ref[i]);
    h->ref_len = 0;
}

void html_ex_feed(html_ex *h, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
    again:
        switch (h->state) {
        case S_TEXT:
            if (c == '<')
                h->state = S_LT;
            else if (c == '&') {
                h->state = S_REF;
                h->ref_len = 0;
            } else
                text_byte(h, c);
            break;
        case S_REF:
            if (c == ';') {
                uint32_t cp = html_ref_decode(h->ref, h->ref_len);
                if (cp) {
                    text_cp(h, cp);
                } else {
                    flush_ref(h);
                    text_byte(h, ';');
                }
                h->state = S_TEXT;
            } else if (h->ref_len < 32 && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                           (c >= '0' && c <= '9') || c == '#')) {
                h->ref[h->ref_len++] = (char)c;
            } else {
                flush_ref(h);
                h->state = S_TEXT;
                goto again;
            }
            break;
        case S_LT:
            h->name_len = 0;
            h->closing = false;
            h->last_eq = false;
            h->quote = 0;
            if (c == '!') {
                h->state = S_BANG;
                h->dashes = 0;
            } else if (c == '?') {
                h->state = S_DECL;
            } else if (c == '/') {
                h->closing = true;
                h->state = S_NAME;
            } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
                h->name[h->name_len++] = (char)c;
                h->state = S_NAME;
            } else {
                // "a < b": not markup.
                h->state = S_TEXT;
                text_byte(h, '<');
                goto again;
            }
            break;
        case S_NAME:
            if (c == '>') {
                h->name[h->name_len < 15 ? h->name_len : 15] = 0;
                if (h->name_len >= 15) h->name_len = 0; // no element has so long a name
                tag_end(h);
            } else if (is_ws(c) || c == '/') {
                h->state = S_ATTRS;
            } else if (h->closing && h->name_len == 0 &&
                       !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
                h->state = S_DECL; // "</3": a bogus comment, up to '>'
            } else if (h->name_len < 15) {
                h->name[h->name_len++] = (char)c;
            } else {
                h->name_len = 15;
            }
            break;
        case S_ATTRS:
            if (h->quote) {
                if (c == h->quote) h->quote = 0;
            } else if (c == '>') {
                h->name[h->name_len < 15 ? h->name_len : 15] = 0;
                if (h->name_len >= 15) h->name_len = 0;
                tag_end(h);
            } else if ((c == '"' || c == '\'') && h->last_eq) {
                h->quote = c;
            }
            if (!is_ws(c)) h->last_eq = (c == '=');
            break;
        case S_BANG:
            if (c == '-' && h->dashes < 2) {
                if (++h->dashes == 2) {
                    h->state = S_COMMENT;
                    h->dashes = 0;
                }
            } else {
                h->state = S_DECL;
                goto again;
            }
            break;
        case S_COMMENT:
            if (c == '-')
                h->dashes++;
            else if (c == '>' && h->dashes >= 2)
                h->state = S_TEXT;
            else
                h->dashes = 0;
            break;
        case S_DECL:
            if (c == '>') h->state = S_TEXT;
            break;
        case S_RAW: {
            // Looking for "</" + the element's name, in any case.
            size_t rl = strlen(h->raw);
            unsigned char want = h->raw_match == 0   ? '<'
                                 : h->raw_match == 1 ? '/'
                                                     : (unsigned char)h->raw[h->raw_match - 2];
            unsigned char lc = (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
            if (lc == want) {
                if (++h->raw_match == rl + 2) {
                    memcpy(h->name, h->raw, rl + 1);
                    h->name_len = rl;
                    h->closing = true;
                    h->quote = 0;
                    h->last_eq = false;
                    h->state = S_ATTRS;
                }
            } else {
                h->raw_match = c == '<' ? 1 : 0;
            }
            break;
        }
        }
    }
}

void html_ex_finish(html_ex *h) {
    if (h->state == S_REF)
        flush_ref(h);
    else if (h->state == S_LT)
        text_byte(h, '<');
    h->state = S_TEXT;
}
