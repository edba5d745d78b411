// libFuzzer target for PII redaction. Properties: matches are in order, non-overlapping and
// inside the input; the output length is exactly len - sum(match lengths) + sum(token
// lengths), so with the default tokens (5-7 bytes) and the shortest match (4 bytes, an IPv6
// such as "1::2") it never exceeds len + 3 * (len / 4); re-redacting the output changes
// nothing (the default tokens do not look like PII).
#include "anneal/data.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // An exact-size copy so ASan catches any read past the end.
    char *in = malloc(size ? size : 1);
    if (!in) abort();
    if (size) memcpy(in, data, size);
    anneal_pii_config cfg = anneal_pii_config_default();
    size_t nm = anneal_pii_find(&cfg, in, size, NULL, 0);
    anneal_pii_match *m = malloc((nm ? nm : 1) * sizeof *m);
    if (!m) abort();
    if (anneal_pii_find(&cfg, in, size, m, nm) != nm) __builtin_trap();
    size_t expect = size, prev_end = 0;
    for (size_t k = 0; k < nm; k++) {
        if (m[k].off < prev_end || m[k].len < 4 || m[k].off + m[k].len > size) __builtin_trap();
        prev_end = m[k].off + m[k].len;
        expect = expect - m[k].len + strlen(cfg.replacement[m[k].kind]);
    }
    char *out = NULL, *out2 = NULL;
    size_t out_len = 0, out_cap = 0, len2 = 0, cap2 = 0;
    size_t counts[ANNEAL_PII_COUNT] = {0};
    if (anneal_pii_redact(&cfg, in, size, &out, &out_len, &out_cap, counts, NULL) != ANNEAL_OK)
        __builtin_trap();
    size_t total = 0;
    for (int k = 0; k < ANNEAL_PII_COUNT; k++)
        total += counts[k];
    if (out_len != expect || total != nm || out_len > size + 3 * (size / 4)) __builtin_trap();
    if (nm == 0 && (out_len != size || (size && memcmp(out, in, size) != 0))) __builtin_trap();
    if (anneal_pii_redact(&cfg, out, out_len, &out2, &len2, &cap2, NULL, NULL) != ANNEAL_OK)
        __builtin_trap();
    if (len2 != out_len || memcmp(out2, out, out_len) != 0) __builtin_trap();
    anneal_free(out);
    anneal_free(out2);
    free(m);
    free(in);
    return 0;
}
