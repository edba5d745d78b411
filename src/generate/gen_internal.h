// Sampler internals exposed to the unit tests: the penalty step and the filter chain, so
// tests can check exact logits and the exact candidate set a draw would choose from.
#ifndef ANNEAL_GENERATE_INTERNAL_H
#define ANNEAL_GENERATE_INTERNAL_H

#include "anneal/generate.h"

// Applies the repetition / frequency / presence penalties of the current history to
// logits[n_vocab] in place (results above FLT_MAX are clamped to FLT_MAX).
void gen_apply_penalties(const anneal_sampler *s, float *logits);

// Runs sanitizing, penalties, top-k, top-p and min-p on logits (not modified) and writes
// the surviving candidates to ids[] / vals[] (each n_vocab long) in the order the draw
// walks them, with their penalized logits (before temperature); *n = how many.
anneal_status gen_candidates(anneal_sampler *s, const float *logits, int32_t *ids, float *vals,
                             int32_t *n, anneal_err *err);

// The next uniform double in [0, 1) from the sampler's xoshiro256** stream.
double gen_uniform(anneal_sampler *s);

#endif
