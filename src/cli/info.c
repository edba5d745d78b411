// `anneal info`: what this build is and what it found on this machine.
#include "cli/cli.h"

#include "anneal/tensor.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

static const char *HELP = "usage: anneal info [--json]\n"
                          "Prints the version, CPU features used for kernel dispatch, the worker\n"
                          "thread count (ANNEAL_THREADS overrides) and the library versions.\n";

int cmd_info(int argc, char **argv) {
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(HELP, stdout);
            return CLI_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else {
            return cli_usage_error("info", "unknown flag '%s'", argv[i]);
        }
    }
    char cpu[256], pcre[64];
    anneal_cpu_describe(cpu, sizeof cpu);
    pcre2_config(PCRE2_CONFIG_VERSION, pcre);
    if (json) {
        printf("{\"version\":\"%s\",\"cpu\":\"%s\",\"threads\":%d,\"jansson\":\"%s\","
               "\"pcre2\":\"%s\",\"openssl\":\"%s\"}\n",
               ANNEAL_VERSION, cpu, anneal_thread_count(), jansson_version_str(), pcre,
               OpenSSL_version(OPENSSL_VERSION));
        return CLI_OK;
    }
    printf("anneal %s\n", ANNEAL_VERSION);
    printf("cpu features : %s\n", cpu);
    printf("threads      : %d\n", anneal_thread_count());
    printf("libraries    : jansson %s, pcre2 %s, %s\n", jansson_version_str(), pcre,
           OpenSSL_version(OPENSSL_VERSION));
    return CLI_OK;
}
