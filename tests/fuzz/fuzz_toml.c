// libFuzzer target for the TOML reader: any bytes either fail with a positioned message or
// give a JSON object that dumps, and dumping then re-reading it as JSON gives an equal value.
#include "anneal/base.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    anneal_err err = {0};
    json_t *v = anneal_toml_parse((const char *)data, size, "fuzz.toml", &err);
    if (!v) {
        if (err.status == ANNEAL_OK || strncmp(err.msg, "fuzz.toml:", 10) != 0) __builtin_trap();
        return 0;
    }
    if (!json_is_object(v)) __builtin_trap();
    char *s = json_dumps(v, JSON_COMPACT);
    if (!s) __builtin_trap();
    json_t *back = anneal_json_parse(s, strlen(s), "dump", NULL);
    if (!back || !json_equal(v, back)) __builtin_trap();
    json_decref(back);
    free(s);
    json_decref(v);
    return 0;
}
