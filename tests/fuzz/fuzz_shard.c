// libFuzzer target for the token shard reader. Properties: any bytes either fail with a
// status or open a shard whose every token is below the vocab size, whose EOS count equals
// the document count, whose last token is EOS, and whose size matches the header exactly.
#include "anneal/data.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // An exact-size copy so ASan catches any read past the end.
    uint8_t *in = malloc(size ? size : 1);
    if (!in) abort();
    if (size) memcpy(in, data, size);
    anneal_shard s;
    anneal_err err = {0};
    anneal_status st = anneal_shard_open_memory(in, size, "fuzz", &s, &err);
    if (st == ANNEAL_OK) {
        if (size != ANNEAL_SHARD_HEADER_SIZE + s.n_tokens * s.token_bytes) __builtin_trap();
        uint64_t eos = 0;
        for (uint64_t i = 0; i < s.n_tokens; i++) {
            int32_t t = anneal_shard_token(&s, i);
            if (t < 0 || (uint32_t)t >= s.vocab_size) __builtin_trap();
            eos += t == s.eos_id;
        }
        if (eos != s.n_docs) __builtin_trap();
        if (s.n_tokens && anneal_shard_token(&s, s.n_tokens - 1) != s.eos_id) __builtin_trap();
        int32_t win[17];
        for (uint64_t i = 0; i < s.n_tokens + 2; i += 7) {
            size_t n = anneal_shard_read(&s, i, 17, win);
            if (n > 17 || (i < s.n_tokens && n == 0)) __builtin_trap();
        }
        anneal_shard_close(&s);
    } else if (err.status != st || !strstr(err.msg, "fuzz: at offset ")) {
        __builtin_trap();
    }
    free(in);
    return 0;
}
