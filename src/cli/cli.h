// Shared pieces of the command-line front end: the command table, flag and output helpers.
#ifndef ANNEAL_CLI_H
#define ANNEAL_CLI_H

#include "anneal/base.h"

#include <stdbool.h>
#include <stdio.h>

// Exit codes every command uses.
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

typedef struct cli_command {
    const char *name;
    const char *summary;               // one line, for `anneal help`
    int (*run)(int argc, char **argv); // argv[0] is the command name
} cli_command;

// Commands, one file each under src/cli/.
int cmd_info(int argc, char **argv);
int cmd_gguf(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_distill(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_lora(int argc, char **argv);

// --lora FILE[:scale] (repeatable) for the commands that load a model (lora.c).
#define CLI_LORA_MAX 16
typedef struct cli_lora_list {
    char path[CLI_LORA_MAX][1024];
    float scale[CLI_LORA_MAX]; // 1 when not given
    int n;
} cli_lora_list;
// Adds one FILE[:scale]; false when malformed or the list is full.
bool cli_lora_add(cli_lora_list *l, const char *arg);
// Applies the adapters in order (anneal_model_apply_lora).
struct anneal_model;
anneal_status cli_lora_apply(struct anneal_model *m, const cli_lora_list *l, anneal_err *err);

// True when argv[i] is -h or --help.
bool cli_is_help(const char *arg);
// Prints "anneal <cmd>: <message>" to stderr and returns CLI_USAGE.
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Prints "anneal <cmd>: <err message>" to stderr and returns CLI_FAIL.
int cli_fail(const char *cmd, const anneal_err *err);
// Reads all of stdin into a NUL-terminated buffer (caller frees with anneal_free); fails
// with ANNEAL_ERR_LIMIT past CLI_MAX_STDIN bytes.
#define CLI_MAX_STDIN ((size_t)1 << 30)
char *cli_read_stdin(size_t *size, anneal_err *err);
// Parses a whole decimal integer in [lo, hi]; false otherwise.
bool cli_parse_long(const char *s, long lo, long hi, long *out);

// What cli_put_escaped escapes besides \n \t \r \\ and control characters.
enum {
    CLI_ESC_DQUOTE = 1 << 0, // " as \" (inside "...")
    CLI_ESC_SQUOTE = 1 << 1, // ' as \' (inside '...')
    CLI_ESC_C1 = 1 << 2,     // C1 controls U+0080..U+009F as \u00XX (terminals act on them)
};
// Writes untrusted bytes s[0..n) so they cannot drive the terminal: valid UTF-8 kept,
// \n \t \r \\ as such, other control characters and invalid bytes as \xNN. Stops before
// the first character starting at byte `max` or later (0 = no limit); returns the bytes of
// s written (n unless cut).
size_t cli_put_escaped(FILE *f, const char *s, size_t n, size_t max, unsigned flags);

// Progress of long work over n items (tensors) measured in bytes, on stderr: a bar redrawn
// in place on a terminal, else one line "[k/n] LABEL" as each item completes (DESIGN.md).
// label writes item i's description (e.g. its name and type) to f.
typedef void (*cli_label_fn)(void *ctx, size_t i, FILE *f);
typedef struct cli_progress {
    size_t n;
    cli_label_fn label;
    void *ctx;
    bool tty;
    bool bar_open; // the bar's line is on screen without its newline
    int permille;  // last drawn, so a bar is not redrawn for nothing
} cli_progress;
void cli_progress_start(cli_progress *p, size_t n, cli_label_fn label, void *ctx);
// Work inside item i has reached done of total bytes; item_done when item i is complete
// (items complete in order).
void cli_progress_update(cli_progress *p, size_t i, bool item_done, uint64_t done, uint64_t total);
// Ends the bar's line if one is open (before an error message).
void cli_progress_end(cli_progress *p);

#endif
