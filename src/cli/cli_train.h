// The train command's whole run (flags, data, lineage, the trainer) for commands that add to
// it: `anneal distill` is `anneal train` with a teacher and its loss plugged in.
#ifndef ANNEAL_CLI_TRAIN_H
#define ANNEAL_CLI_TRAIN_H

#include "anneal/train.h"

typedef struct cli_train_plugin {
    const char *name; // the command, for error messages
    int argc;         // the command line as typed: the lineage records it and the
    char **argv;      // OpenBLAS re-run repeats it
    // Called once the model to train (model_path: the start or the checkpoint resumed) and
    // the trainer's options are known, right before training.
    anneal_status (*setup)(void *ctx, const char *model_path, anneal_trainer_opts *to,
                           anneal_err *err);
    void *ctx;
} cli_train_plugin;

// `anneal train` with argv (argv[0] the command) and plug (NULL: plain training).
int cli_train_run(int argc, char **argv, const cli_train_plugin *plug);

#endif
