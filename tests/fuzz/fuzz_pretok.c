// libFuzzer target for the byte-level BPE pre-tokenizers: every known pre-tokenizer splits
// arbitrary bytes; the pieces must cover the input exactly, in order, with no empty piece,
// and never cut through a valid UTF-8 sequence.
#include "tokenizer/pretok.h"

#include <stdlib.h>
#include <string.h>

static tok_pretok **g_pretoks;
static int g_n;

static void setup(void) {
    const char *const *names = tok_pretok_names();
    while (names[g_n])
        g_n++;
    g_pretoks = calloc((size_t)g_n, sizeof *g_pretoks);
    if (!g_pretoks) abort();
    for (int i = 0; i < g_n; i++)
        if (tok_pretok_new(names[i], &g_pretoks[i], NULL) != ANNEAL_OK) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_pretoks) setup();
    // Character starts: a valid sequence is one character, a bad byte is one on its own.
    uint8_t *start = calloc(size + 1, 1);
    if (!start) abort();
    for (size_t i = 0; i < size;) {
        uint32_t cp;
        size_t k = anneal_utf8_decode(data + i, size - i, &cp);
        start[i] = 1;
        i += k ? k : 1;
    }
    start[size] = 1;
    tok_span *sp = NULL;
    size_t n = 0, cap = 0;
    for (int j = 0; j < g_n; j++) {
        if (tok_pretok_split(g_pretoks[j], (const char *)data, size, &sp, &n, &cap, NULL) !=
            ANNEAL_OK)
            __builtin_trap();
        size_t pos = 0;
        for (size_t i = 0; i < n; i++) {
            if (sp[i].off != pos || sp[i].len == 0 || !start[sp[i].off]) __builtin_trap();
            pos += sp[i].len;
        }
        if (pos != size || (size == 0) != (n == 0)) __builtin_trap();
    }
    free(start);
    anneal_free(sp);
    return 0;
}
