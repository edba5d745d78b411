// Helpers every command shares: help and usage errors, number parsing, reading stdin,
// escaped output, the progress display.
#include "cli/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool cli_is_help(const char *arg) {
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "anneal %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see: anneal %s --help)\n", cmd);
    va_end(ap);
    return CLI_USAGE;
}

int cli_fail(const char *cmd, const anneal_err *err) {
    fprintf(stderr, "anneal %s: %s\n", cmd, anneal_err_msg(err));
    return CLI_FAIL;
}

bool cli_parse_long(const char *s, long lo, long hi, long *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

size_t cli_put_escaped(FILE *f, const char *s, size_t n, size_t max, unsigned flags) {
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        if (max && i >= max) break;
        uint8_t c = p[i];
        if (c >= 0x80) {
            uint32_t cp;
            size_t l = anneal_utf8_decode(p + i, n - i, &cp);
            if (l == 0) {
                fprintf(f, "\\x%02x", c);
                i++;
            } else if (cp < 0xA0 && (flags & CLI_ESC_C1)) {
                fprintf(f, "\\u%04x", (unsigned)cp);
                i += l;
            } else {
                fwrite(p + i, 1, l, f);
                i += l;
            }
            continue;
        }
        if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c == '\r')
            fputs("\\r", f);
        else if (c == '\\')
            fputs("\\\\", f);
        else if ((c == '"' && (flags & CLI_ESC_DQUOTE)) || (c == '\'' && (flags & CLI_ESC_SQUOTE)))
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7F)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
        i++;
    }
    return i;
}

char *cli_read_stdin(size_t *size, anneal_err *err) {
    size_t cap = 1 << 16, n = 0;
    char *buf = anneal_malloc(cap + 1);
    if (!buf) {
        anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory reading stdin");
        return NULL;
    }
    for (;;) {
        if (n == cap) {
            if (cap >= CLI_MAX_STDIN) {
                anneal_free(buf);
                anneal_err_set(err, ANNEAL_ERR_LIMIT, "stdin: more than %zu bytes", CLI_MAX_STDIN);
                return NULL;
            }
            cap *= 2;
            char *p = anneal_realloc(buf, cap + 1);
            if (!p) {
                anneal_free(buf);
                anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory reading stdin");
                return NULL;
            }
            buf = p;
        }
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) break;
    }
    if (ferror(stdin)) {
        anneal_free(buf);
        anneal_err_set(err, ANNEAL_ERR_IO, "error reading stdin");
        return NULL;
    }
    buf[n] = 0;
    *size = n;
    return buf;
}

// ---- progress -----------------------------------------------------------------------

#define BAR_WIDTH 30

void cli_progress_start(cli_progress *p, size_t n, cli_label_fn label, void *ctx) {
    *p = (cli_progress){.n = n, .label = label, .ctx = ctx, .tty = isatty(2) != 0, .permille = -1};
}

void cli_progress_update(cli_progress *p, size_t i, bool item_done, uint64_t done, uint64_t total) {
    if (!p->tty) {
        if (!item_done) return;
        fprintf(stderr, "[%zu/%zu] ", i + 1, p->n);
        p->label(p->ctx, i, stderr);
        fputc('\n', stderr);
        return;
    }
    int permille = total ? (int)(1000.0 * (double)done / (double)total) : 1000;
    if (permille == p->permille && !item_done && done != total) return;
    p->permille = permille;
    char bar[BAR_WIDTH + 1];
    int full = permille * BAR_WIDTH / 1000;
    for (int k = 0; k < BAR_WIDTH; k++)
        bar[k] = k < full ? '#' : '.';
    bar[BAR_WIDTH] = '\0';
    // \r redraws the line, \033[K clears what a longer label left behind.
    fprintf(stderr, "\r  [%s] %3d%% %.1f / %.1f MB  [%zu/%zu] ", bar, permille / 10,
            (double)done / 1e6, (double)total / 1e6, i + 1, p->n);
    p->label(p->ctx, i, stderr);
    fputs("\033[K", stderr);
    p->bar_open = true;
    if (done == total) cli_progress_end(p);
    fflush(stderr);
}

void cli_progress_end(cli_progress *p) {
    if (!p->bar_open) return;
    fputc('\n', stderr);
    p->bar_open = false;
}
