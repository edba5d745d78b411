// anneal generate: token samplers (penalties, top-k, top-p, min-p, temperature, seeded
// draws, logprobs) and the stop-string matcher that decides what text may be streamed.
#ifndef ANNEAL_GENERATE_H
#define ANNEAL_GENERATE_H

#include "anneal/base.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- sampler parameters ---------------------------------------------------------
// Field ranges are checked by anneal_sampler_params_validate; the "off" value of each
// filter leaves the distribution untouched. See docs/sampling.md for the order.
#define ANNEAL_SAMPLER_MAX_LOGPROBS 20
#define ANNEAL_SAMPLER_MAX_LAST_N (1 << 20)

typedef struct anneal_sampler_params {
    float temperature;        // [0, 100]; 0 = greedy (argmax after penalties). default 0.8
    int32_t top_k;            // >= 0; 0 = off; values >= n_vocab are off. default 40
    float top_p;              // (0, 1]; 1 = off. default 0.95
    float min_p;              // [0, 1]; 0 = off. default 0.05
    float repetition_penalty; // (0, 10]; 1 = off. default 1.0 (CTRL / llama.cpp style)
    float frequency_penalty;  // [-2, 2]; 0 = off. default 0 (OpenAI style)
    float presence_penalty;   // [-2, 2]; 0 = off. default 0 (OpenAI style)
    int32_t penalty_last_n;   // tokens of history the penalties see: -1 = all accepted
                              // tokens, 0 = none, 1..ANNEAL_SAMPLER_MAX_LAST_N. default 64
    uint64_t seed;            // PRNG seed (any value); default 0
    bool logprobs;            // report the chosen token's logprob (one extra exp pass over
                              // the vocabulary); default false (OpenAI's `logprobs`)
    int32_t n_logprobs;       // alternatives to report, 0..ANNEAL_SAMPLER_MAX_LOGPROBS; > 0
                              // needs logprobs (OpenAI's `top_logprobs`). default 0
} anneal_sampler_params;

// llama.cpp's command-line defaults (the values noted on each field above).
anneal_sampler_params anneal_sampler_params_default(void);
// Every filter and penalty off, temperature 1, seed 0: the model's own distribution
// (what an OpenAI request with no sampling fields asks for).
anneal_sampler_params anneal_sampler_params_neutral(void);
// ANNEAL_ERR_INVALID_ARG with a message naming the first bad field, its value and the
// allowed range (NaN is always rejected).
anneal_status anneal_sampler_params_validate(const anneal_sampler_params *p, anneal_err *err);

// ---- sampler ----------------------------------------------------------------------
// One sampler per generated sequence. All memory is allocated by anneal_sampler_new;
// accept and sample never allocate.
typedef struct anneal_sampler anneal_sampler;

typedef struct anneal_token_logprob {
    int32_t token;
    float logprob;
} anneal_token_logprob;

typedef struct anneal_sample {
    int32_t token;   // the chosen token id
    float logprob;   // log-softmax of the raw logits (before penalties and temperature);
                     // NaN unless params.logprobs
    int32_t n_top;   // = params.n_logprobs when params.logprobs, else 0
    // The n_top most likely tokens under the same raw distribution, logprob descending,
    // ties by ascending id. The chosen token may or may not be among them.
    anneal_token_logprob top[ANNEAL_SAMPLER_MAX_LOGPROBS];
} anneal_sample;

// Validates params and allocates a sampler for a vocabulary of n_vocab (>= 1) tokens.
// *out is owned by the caller: free with anneal_sampler_free.
anneal_status anneal_sampler_new(const anneal_sampler_params *params, int32_t n_vocab,
                                 anneal_sampler **out, anneal_err *err);
void anneal_sampler_free(anneal_sampler *s);
// Forgets the token history and restarts the PRNG from params.seed.
void anneal_sampler_reset(anneal_sampler *s);
// Records a token in the history the penalties see. Feed prompt tokens too if they
// should be penalized (llama.cpp does; see docs/sampling.md).
// ANNEAL_ERR_RANGE when token is outside [0, n_vocab).
anneal_status anneal_sampler_accept(anneal_sampler *s, int32_t token, anneal_err *err);
// Chooses the next token from logits[n_vocab] (not modified). Does not accept it.
// NaN logits count as -inf and +inf as the largest float; ANNEAL_ERR_RANGE when no
// logit is finite or +inf.
anneal_status anneal_sampler_sample(anneal_sampler *s, const float *logits, anneal_sample *out,
                                    anneal_err *err);
const anneal_sampler_params *anneal_sampler_params_of(const anneal_sampler *s);

// ---- stop strings and max tokens ------------------------------------------------------
// Fed the decoded bytes of each generated token, the matcher says which bytes are safe to
// stream now. It holds back a tail that could still become a stop string, and an
// incomplete UTF-8 sequence at the end; a completed stop string ends generation and is
// not emitted. Results do not depend on how the text is split into pieces.
#define ANNEAL_STOP_MAX_STRINGS 64
#define ANNEAL_STOP_MAX_LEN 1024

typedef enum anneal_finish_reason {
    ANNEAL_FINISH_NONE = 0,   // still generating
    ANNEAL_FINISH_STOP = 1,   // a stop string was completed
    ANNEAL_FINISH_LENGTH = 2, // max_tokens reached
    ANNEAL_FINISH_END = 3,    // the caller ended it (end-of-generation token, cancel)
} anneal_finish_reason;

typedef struct anneal_stop anneal_stop;

typedef struct anneal_stop_result {
    const char *emit;           // bytes to stream now; points into the matcher, valid
    size_t emit_len;            // until its next call
    anneal_finish_reason finish;
    int32_t stop_index;         // index of the completed stop string, else -1
    int64_t n_tokens;           // tokens fed so far
} anneal_stop_result;

// stops[0..n_stops) are NUL-terminated, non-empty, at most ANNEAL_STOP_MAX_LEN bytes;
// they are copied. max_tokens: 0 = no limit. *out is freed with anneal_stop_free.
anneal_status anneal_stop_new(const char *const *stops, size_t n_stops, int64_t max_tokens,
                              anneal_stop **out, anneal_err *err);
void anneal_stop_free(anneal_stop *m);
// Back to the state after anneal_stop_new (for the next request).
void anneal_stop_reset(anneal_stop *m);
// Feeds the text of one generated token (len may be 0) and counts it. When a stop string
// completes, emit ends where it starts and finish = STOP; when the token count reaches
// max_tokens, everything held is emitted and finish = LENGTH (a stop string completed by
// the same token wins). ANNEAL_ERR_INVALID_ARG after the matcher has finished;
// ANNEAL_ERR_NOMEM if a piece longer than any before cannot be buffered.
anneal_status anneal_stop_feed(anneal_stop *m, const char *piece, size_t len,
                               anneal_stop_result *r, anneal_err *err);
// Generation ended for another reason: emits everything held, finish = END. After the
// matcher has already finished it emits nothing and reports the earlier reason.
anneal_status anneal_stop_end(anneal_stop *m, anneal_stop_result *r, anneal_err *err);

#ifdef __cplusplus
}
#endif
#endif
