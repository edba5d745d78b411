// JSON helpers over jansson: strict parsing with positioned errors, string escaping.
#include "anneal/base.h"

#include <jansson.h>
#include <stdio.h>

void *anneal_json_parse(const char *text, size_t len, const char *what, anneal_err *err) {
    json_error_t je;
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!v) {
        anneal_err_set(err, ANNEAL_ERR_FORMAT, "%s: invalid JSON at line %d, column %d (byte %d): %s",
                       what, je.line, je.column, je.position, je.text);
    }
    return v;
}

void anneal_json_write_str(void *file, const char *s, size_t len) {
    FILE *f = file;
    const uint8_t *p = (const uint8_t *)s;
    fputc('"', f);
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        if (c < 0x80) {
            switch (c) {
            case '"': fputs("\\\"", f); break;
            case '\\': fputs("\\\\", f); break;
            case '\n': fputs("\\n", f); break;
            case '\r': fputs("\\r", f); break;
            case '\t': fputs("\\t", f); break;
            default:
                if (c < 0x20 || c == 0x7F) fprintf(f, "\\u%04x", c);
                else fputc(c, f);
            }
            i++;
            continue;
        }
        uint32_t cp;
        size_t n = anneal_utf8_decode(p + i, len - i, &cp);
        if (n == 0) {
            fputs("\\ufffd", f);
            i++;
        } else {
            fwrite(p + i, 1, n, f);
            i += n;
        }
    }
    fputc('"', f);
}
