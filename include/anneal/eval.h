// anneal eval: measuring models. Today: perplexity and bits per byte of a text, computed
// the way llama.cpp's perplexity tool does so figures compare with published tables.
#ifndef ANNEAL_EVAL_H
#define ANNEAL_EVAL_H

#include "anneal/model.h"
#include "anneal/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct anneal_ppl_params {
    int32_t n_ctx;      // chunk length in tokens (default 512, at least 4)
    int32_t max_chunks; // 0 = every whole chunk of the text
    int32_t n_threads;  // 0 = anneal_thread_count()
    // Called after each chunk with the running perplexity; may be NULL.
    void (*progress)(void *user, int32_t chunk, int32_t n_chunks, double ppl);
    void *user;
} anneal_ppl_params;
anneal_ppl_params anneal_ppl_params_default(void);

typedef struct anneal_ppl_result {
    double ppl;           // exp(mean negative log-likelihood of the scored tokens)
    double ppl_stderr;    // ppl * standard error of that mean
    double nll_sum;       // sum over scored tokens of -ln p, in nats
    double bits_per_byte; // nll_sum / ln 2 / scored_bytes
    int64_t scored_tokens;
    int64_t scored_bytes; // bytes of the scored tokens' text
    int32_t n_chunks, n_ctx;
    int64_t n_text_tokens; // tokens of the whole text (with BOS)
    double seconds;       // evaluation time, tokenization excluded
} anneal_ppl_result;

// The text is tokenized once with BOS (as the vocabulary's add_bos_token says) and cut
// into chunks of n_ctx tokens; each chunk's first token is replaced by BOS and the chunk
// is evaluated from an empty cache; the tokens of its second half (positions
// n_ctx/2 + 1 .. n_ctx - 1) are scored, each predicted from all the chunk's tokens
// before it. Needs at least 2 * n_ctx tokens (ANNEAL_ERR_RANGE otherwise, saying how
// many there are).
// `tok` is the model's tokenizer (anneal_tokenizer_load on the model's file).
anneal_status anneal_perplexity(const anneal_model *m, const anneal_tokenizer *tok,
                                const char *text, size_t len,
                                const anneal_ppl_params *p, anneal_ppl_result *out,
                                anneal_err *err);

#ifdef __cplusplus
}
#endif
#endif
