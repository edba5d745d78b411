// The anneal command: dispatches `anneal <command> [subcommand] [flags]`.
#include "cli/cli.h"

#include <signal.h>
#include <string.h>

static const cli_command COMMANDS[] = {
    {"info", "version, CPU features and settings of this build", cmd_info},
    {"gguf", "inspect and verify GGUF files", cmd_gguf},
    {"tokenize", "text to token ids and pieces (GGUF vocabularies)", cmd_tokenize},
    {"tokenizer", "train a BPE vocabulary from text (tokenizer train)", cmd_tokenizer},
    {"data", "the data pipeline: ingest, clean, pii, dedup, audit, shard, verify, run", cmd_data},
    {"init", "write a randomly initialised model of a given shape", cmd_init},
    {"quantize", "convert a model's weights to a quantized type or mix", cmd_quantize},
    {"generate", "continue a prompt with a model, streaming the text", cmd_generate},
    {"perplexity", "perplexity and bits per byte of a text (llama.cpp's method)", cmd_perplexity},
    {"bench", "prefill and decode speed of a model", cmd_bench},
    {"train", "train a llama model in F32 (AdamW, checkpoints, resume)", cmd_train},
    {"distill", "distill a teacher model into a student (KL + cross-entropy)", cmd_distill},
    {"serve", "OpenAI-compatible HTTP server with continuous batching", cmd_serve},
    {"lora", "merge a GGUF LoRA adapter into a model (lora merge)", cmd_lora},
};
static const size_t N_COMMANDS = sizeof COMMANDS / sizeof COMMANDS[0];

static void print_help(FILE *f) {
    fprintf(f, "usage: anneal <command> [subcommand] [flags]\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-12s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "  %-12s %s\n", "help", "this list; `anneal <command> --help` for one command");
    fprintf(f, "\nflags: --version  print the version\n"
               "environment: ANNEAL_THREADS (worker threads), ANNEAL_LOG (debug|info|warn|error|off),\n"
               "             ANNEAL_LOG_FORMAT (text|json), ANNEAL_KERNELS (ref|avx2|avx512)\n");
}

int main(int argc, char **argv) {
    // Past a file-size limit (ulimit -f) a write should fail with EFBIG and be reported like a
    // full disk, not kill the process halfway through an output.
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        print_help(stderr);
        return CLI_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("anneal %s\n", ANNEAL_VERSION);
        return CLI_OK;
    }
    if (strcmp(name, "help") == 0 || cli_is_help(name)) {
        if (argc >= 3 && !cli_is_help(argv[2])) {
            for (size_t i = 0; i < N_COMMANDS; i++) {
                if (strcmp(COMMANDS[i].name, argv[2]) == 0) {
                    char *sub[] = {argv[2], "--help", NULL};
                    return COMMANDS[i].run(2, sub);
                }
            }
            fprintf(stderr, "anneal: unknown command '%s'\n", argv[2]);
            return CLI_USAGE;
        }
        print_help(stdout);
        return CLI_OK;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(COMMANDS[i].name, name) == 0) return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "anneal: unknown command '%s'\n", name);
    print_help(stderr);
    return CLI_USAGE;
}
