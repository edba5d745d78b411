// Checkpoint writing and reading shared by the training loop (trainer.c) and checkpoint.c.
#ifndef ANNEAL_TRAIN_CHECKPOINT_H
#define ANNEAL_TRAIN_CHECKPOINT_H

#include "train_internal.h"

// The loop's state besides the weights and moments.
typedef struct ckpt_state {
    int64_t step;     // optimizer steps done
    uint64_t rng;     // the data sampler's state after those steps
    uint64_t batches; // micro-batches drawn so far
} ckpt_state;

// Saves the model GGUF (the trainer supplies vocabulary, lineage and extra keys).
typedef struct ckpt_model_writer {
    anneal_status (*save)(void *ctx, const anneal_train_model *tm, const char *path,
                          anneal_err *err);
    void *ctx;
    void (*between)(void *ctx, int64_t step); // after the model file, before optim.bin
} ckpt_model_writer;

// mkdir that accepts an existing directory.
anneal_status ckpt_mkdir(const char *dir, anneal_err *err);
// Removes temporary files that a killed run's atomic writes left in dir and its checkpoints.
void ckpt_clean_tmp(const char *dir);
// Writes dir/ckpt-<step>/model.gguf, then optim.bin, then points dir/latest at it and
// removes checkpoints beyond the newest `keep` (and any newer than this one). The model
// file's path goes to model_path.
anneal_status ckpt_write(const char *dir, const ckpt_state *s, const anneal_train_model *tm,
                         const anneal_adamw *o, const ckpt_model_writer *mw, int32_t keep,
                         char *model_path, size_t cap, anneal_err *err);
// Verifies the checkpoint directory and reads its state and AdamW's moments into o (whose
// m, v hold n_params floats).
anneal_status ckpt_read_state(const char *ckpt_dir, ckpt_state *s, anneal_adamw *o,
                              uint64_t n_params, anneal_err *err);

#endif
