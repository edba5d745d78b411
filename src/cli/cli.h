// Shared pieces of the command-line front end: the command table and flag helpers.
#ifndef ANNEAL_CLI_H
#define ANNEAL_CLI_H

#include "anneal/base.h"

#include <stdbool.h>
#include <stdio.h>

// Exit codes every command uses.
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

typedef struct cli_command {
    const char *name;
    const char *summary; // one line, for `anneal help`
    int (*run)(int argc, char **argv); // argv[0] is the command name
} cli_command;

// Commands, one file each under src/cli/.
int cmd_info(int argc, char **argv);
int cmd_gguf(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);

// True when argv[i] is -h or --help.
bool cli_is_help(const char *arg);
// Prints "anneal <cmd>: <message>" to stderr and returns CLI_USAGE.
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Prints "anneal <cmd>: <err message>" to stderr and returns CLI_FAIL.
int cli_fail(const char *cmd, const anneal_err *err);
// Parses a whole decimal integer in [lo, hi]; false otherwise.
bool cli_parse_long(const char *s, long lo, long hi, long *out);

#endif
