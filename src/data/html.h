// Internal: HTML character references, tag names and the streaming text extractor, shared
// by the reader (HTML files) and clean (leftover markup in text).
#ifndef ANNEAL_DATA_HTML_H
#define ANNEAL_DATA_HTML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// The code point of a character reference body (between '&' and ';': "amp", "#39",
// "#x27"), or 0 when it is not one. Numeric references to NUL, controls other than \t \n
// \r, surrogates or past U+10FFFF give U+FFFD.
uint32_t html_ref_decode(const char *body, size_t n);

// 0 when `name` (ASCII, any case) is not a known HTML element; 1 for inline elements,
// 2 for block elements (a line break), 3 for paragraph-like blocks (a blank line).
int html_tag_kind(const char *name, size_t n);

// Streaming extraction of the visible text of an HTML document: feed the bytes in any
// chunks (split anywhere), then html_ex_finish. Output: text of the body without script,
// style, head, noscript and template contents or comments, references decoded, runs of
// whitespace as one space (kept inside <pre>), block elements as line breaks (at most one
// blank line), no leading or trailing whitespace. Output past `limit` bytes sets overflow.
typedef struct html_ex {
    char *out;
    size_t len, cap, limit;
    bool overflow, nomem;
    int state, quote, dashes;
    bool closing, head, last_eq;
    int suppress, pre;
    unsigned pending_nl;
    bool pending_space;
    char name[16];
    size_t name_len, raw_match;
    char raw[8];
    char ref[36];
    size_t ref_len;
} html_ex;

void html_ex_init(html_ex *h, size_t limit);
// Resets for a new document, keeping the output buffer.
void html_ex_reset(html_ex *h);
void html_ex_feed(html_ex *h, const char *p, size_t n);
void html_ex_finish(html_ex *h);
void html_ex_free(html_ex *h);

#endif
