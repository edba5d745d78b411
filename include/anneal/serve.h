// anneal serve: an OpenAI-compatible HTTP server (libmicrohttpd) in front of one model,
// with continuous batching over the paged KV cache, API keys, rate limits, Prometheus
// metrics and a graceful drain. docs/serve.md describes the API, flags and metrics.
#ifndef ANNEAL_SERVE_H
#define ANNEAL_SERVE_H

#include "anneal/base.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

// Every setting of the server. Strings are owned by the config (anneal_serve_config_free).
// Each field is also an option: a flag `--NAME`, a config-file line `NAME = VALUE` and an
// environment variable ANNEAL_SERVE_<NAME> (upper case, '-' as '_'); see
// anneal_serve_config_set for the names.
typedef struct anneal_serve_config {
    char *model;          // GGUF file (required)
    char *alias;          // model name in the API (default: the file name without .gguf)
    char *host;           // listen address (default 127.0.0.1)
    int32_t port;         // 0 = any free port (anneal_serve_port tells which)
    int32_t threads;      // forward threads (0 = anneal_thread_count())
    int32_t ctx;          // positions per sequence, prompt + generated (0 = min(n_ctx_train, 4096))
    int32_t parallel;     // sequences decoded together at most (default 8)
    int32_t kv_tokens;    // KV pool size in positions, all sequences (0 = ctx * parallel)
    int32_t block_size;   // KV positions per block (default 16)
    int32_t batch;        // tokens per forward step at most (default 512)
    int32_t prefill_chunk;// prompt tokens per step at most, so streams keep flowing (default 256)
    bool kv_f32;          // F32 KV cache (default F16)
    int32_t max_queue;    // requests waiting for a slot at most; more get 429 (default 64)
    int64_t max_body;     // request body bytes at most; more get 413 (default 4 MiB)
    int32_t max_tokens;   // cap on max_tokens of one request (default 4096)
    double timeout;       // seconds a request may take end to end (default 600)
    double read_timeout;  // seconds to receive a request body (default 30)
    int32_t idle_timeout; // seconds an idle connection is kept (default 60)
    int32_t max_connections; // open connections at most (default 256)
    char *api_keys;       // keys file: lines "ID KEY [rpm=N] [tpm=N]" (default none: no auth)
    int32_t rpm;          // requests per minute per key (0 = unlimited)
    int32_t tpm;          // prompt + generated tokens per minute per key (0 = unlimited)
    double drain_timeout; // seconds SIGTERM waits for in-flight work (default 30)
    char *chat_template;  // template name overriding the model's (default: detect)
    char *access_log;     // JSON access log: "-" = stderr (default), "off", or a file path
    char *lora;           // LoRA adapters merged at load: "FILE[:SCALE],..." (default none)
} anneal_serve_config;

void anneal_serve_config_default(anneal_serve_config *c);
void anneal_serve_config_free(anneal_serve_config *c);
// Sets option `name` (a long flag name without the dashes, e.g. "port", "api-keys") from
// text. ANNEAL_ERR_NOT_FOUND for an unknown name, ANNEAL_ERR_INVALID_ARG for a bad value
// (the message names the option and the allowed range). `where` prefixes the message
// (e.g. "serve.conf:3" or "ANNEAL_SERVE_PORT"); may be NULL.
anneal_status anneal_serve_config_set(anneal_serve_config *c, const char *name, const char *value,
                                      const char *where, anneal_err *err);
// True when option `name` takes no value (a switch such as "kv-f32").
bool anneal_serve_config_is_switch(const char *name);
// Reads a config file: one `name = value` per line, '#' starts a comment, blank lines
// ignored; errors name the file and line.
anneal_status anneal_serve_config_load(anneal_serve_config *c, const char *path, anneal_err *err);
// Applies every ANNEAL_SERVE_<NAME> variable present in the environment.
anneal_status anneal_serve_config_env(anneal_serve_config *c, anneal_err *err);
// Writes one help line per option (flag, value, default, environment variable).
void anneal_serve_config_help(FILE *f);

typedef struct anneal_server anneal_server;

// Loads the model and tokenizer, starts the scheduler thread and the HTTP daemon, and
// returns once the socket listens. Free with anneal_serve_free.
anneal_status anneal_serve_start(const anneal_serve_config *c, anneal_server **out,
                                 anneal_err *err);
int anneal_serve_port(const anneal_server *s); // the port actually bound
// Stops accepting connections, lets in-flight requests finish for up to timeout_s seconds,
// then cancels what is left. Returns the number of requests that had to be cancelled.
int anneal_serve_drain(anneal_server *s, double timeout_s);
// Stops everything (cancelling work in flight) and frees the server; accepts NULL.
void anneal_serve_free(anneal_server *s);

#ifdef __cplusplus
}
#endif
#endif
