// `anneal generate`: prompt in, streamed continuation out, with speed figures on stderr.
#include "cli/cli.h"

#include "anneal/generate.h"
#include "anneal/model.h"
#include "anneal/tokenizer.h"
#include "anneal/tensor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *HELP =
    "usage: anneal generate -m MODEL -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P]\n"
    "                       [--min-p P] [--seed S] [options]\n"
    "Streams the model's continuation of PROMPT to stdout; prompt and generation speed go\n"
    "to stderr.\n"
    "\n"
    "  -m, --model FILE         GGUF model (required)\n"
    "  --lora FILE[:S]          merge a GGUF LoRA adapter at load, scale S (default 1);\n"
    "                           repeatable (docs/training.md \"LoRA\")\n"
    "  -p, --prompt TEXT        the prompt (required; -f FILE reads it from a file)\n"
    "  -f, --file FILE          read the prompt from FILE\n"
    "  -n, --n-predict N        tokens to generate at most (default 128)\n"
    "  -c, --ctx N              context length: prompt + generated tokens (default 2048)\n"
    "  -t, --threads N          worker threads (default: ANNEAL_THREADS or all CPUs)\n"
    "  --temp T                 temperature, 0 = greedy (default 0.8)\n"
    "  --top-k K                keep the K most likely tokens, 0 = off (default 40)\n"
    "  --top-p P                keep the smallest set with mass >= P, 1 = off (default 0.95)\n"
    "  --min-p P                keep tokens with p >= P * p_max, 0 = off (default 0.05)\n"
    "  --repeat-penalty X       CTRL-style repetition penalty, 1 = off (default 1)\n"
    "  --repeat-last-n N        tokens the penalties look back over (default 64, -1 = all)\n"
    "  --frequency-penalty X    OpenAI-style, -2..2 (default 0)\n"
    "  --presence-penalty X     OpenAI-style, -2..2 (default 0)\n"
    "  --seed S                 random seed (default: from the clock; printed on stderr)\n"
    "  --stop TEXT              stop when TEXT is generated (repeatable, not printed)\n"
    "  --logprobs N             after the text, print each token's logprob and the N most\n"
    "                           likely alternatives to stderr (0..20)\n"
    "  --no-bos                 do not add BOS to the prompt\n"
    "  --ignore-eos             keep generating past end-of-generation tokens\n"
    "  --kv-f32                 keep the KV cache in F32 (default F16)\n"
    "\n"
    "Exit status: 0 ok, 1 model or run failure, 2 usage error.\n";

#define MAX_STOPS 16

typedef struct gen_opts {
    const char *model, *prompt, *prompt_file;
    long n_predict, n_ctx, threads, n_logprobs;
    anneal_sampler_params sp;
    cli_lora_list lora;
    bool seed_set, no_bos, ignore_eos, kv_f32;
    const char *stops[MAX_STOPS];
    size_t n_stops;
} gen_opts;

static bool parse_float(const char *s, float *out) {
    if (!s || !*s) return false;
    char *end;
    float v = strtof(s, &end);
    if (*end || isnan(v)) return false;
    *out = v;
    return true;
}

static int parse_args(int argc, char **argv, gen_opts *o) {
    o->n_predict = 128;
    o->n_ctx = 2048;
    o->sp = anneal_sampler_params_default();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (cli_is_help(a)) {
            fputs(HELP, stdout);
            return -1;
        }
        bool takes = true, ok = true;
        long l;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) o->prompt = v;
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) o->prompt_file = v;
        else if (!strcmp(a, "--lora")) ok = cli_lora_add(&o->lora, v);
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) ok = cli_parse_long(v, 0, 1 << 24, &o->n_predict);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) ok = cli_parse_long(v, 1, 1 << 24, &o->n_ctx);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = cli_parse_long(v, 1, 1024, &o->threads);
        else if (!strcmp(a, "--temp")) ok = parse_float(v, &o->sp.temperature);
        else if (!strcmp(a, "--top-k")) ok = cli_parse_long(v, 0, INT32_MAX, &l) && ((o->sp.top_k = (int32_t)l), true);
        else if (!strcmp(a, "--top-p")) ok = parse_float(v, &o->sp.top_p);
        else if (!strcmp(a, "--min-p")) ok = parse_float(v, &o->sp.min_p);
        else if (!strcmp(a, "--repeat-penalty")) ok = parse_float(v, &o->sp.repetition_penalty);
        else if (!strcmp(a, "--repeat-last-n")) ok = cli_parse_long(v, -1, ANNEAL_SAMPLER_MAX_LAST_N, &l) && ((o->sp.penalty_last_n = (int32_t)l), true);
        else if (!strcmp(a, "--frequency-penalty")) ok = parse_float(v, &o->sp.frequency_penalty);
        else if (!strcmp(a, "--presence-penalty")) ok = parse_float(v, &o->sp.presence_penalty);
        else if (!strcmp(a, "--seed")) {
            char *end;
            ok = v && *v && (o->sp.seed = strtoull(v, &end, 10), *end == '\0');
            o->seed_set = true;
        } else if (!strcmp(a, "--stop")) {
            if (o->n_stops == MAX_STOPS) return cli_usage_error("generate", "at most %d --stop strings", MAX_STOPS);
            ok = v && *v;
            if (ok) o->stops[o->n_stops++] = v;
        } else if (!strcmp(a, "--logprobs")) ok = cli_parse_long(v, 0, ANNEAL_SAMPLER_MAX_LOGPROBS, &o->n_logprobs);
        else {
            takes = false;
            if (!strcmp(a, "--no-bos")) o->no_bos = true;
            else if (!strcmp(a, "--ignore-eos")) o->ignore_eos = true;
            else if (!strcmp(a, "--kv-f32")) o->kv_f32 = true;
            else return cli_usage_error("generate", "unknown flag '%s'", a);
        }
        if (takes) {
            if (!v) return cli_usage_error("generate", "%s needs a value", a);
            if (!ok) return cli_usage_error("generate", "bad value '%s' for %s", v, a);
            i++;
        }
    }
    if (!o->model) return cli_usage_error("generate", "missing -m MODEL");
    if (!o->prompt == !o->prompt_file) return cli_usage_error("generate", "give exactly one of -p PROMPT or -f FILE");
    if (!o->seed_set) o->sp.seed = (uint64_t)time(NULL) ^ (anneal_time_ns() << 16);
    o->sp.logprobs = o->n_logprobs > 0;
    o->sp.n_logprobs = (int32_t)o->n_logprobs;
    anneal_err e = {0};
    if (anneal_sampler_params_validate(&o->sp, &e) != ANNEAL_OK)
        return cli_usage_error("generate", "%s", anneal_err_msg(&e));
    return 0;
}

// Everything one run holds; released by gen_free whatever state it reached.
typedef struct gen_run {
    anneal_model *model;
    anneal_tokenizer *tok;
    anneal_ctx *ctx;
    anneal_kv *kv;
    anneal_sampler *sampler;
    anneal_stop *stop;
    char *prompt_buf;
    int32_t *ids, *pos, *seq; // prompt tokens, their positions, sequence ids (all 0)
    float *logits;
    anneal_sample *samples; // per generated token, when --logprobs
} gen_run;

static void gen_free(gen_run *r) {
    anneal_free(r->samples);
    anneal_free(r->logits);
    anneal_free(r->ids);
    anneal_free(r->pos);
    anneal_free(r->seq);
    anneal_free(r->prompt_buf);
    anneal_stop_free(r->stop);
    anneal_sampler_free(r->sampler);
    anneal_kv_free(r->kv);
    anneal_ctx_free(r->ctx);
    anneal_tokenizer_free(r->tok);
    anneal_model_free(r->model);
}

static void print_logprobs(const anneal_tokenizer *tok, const anneal_sample *s, int64_t n) {
    char piece[256];
    for (int64_t i = 0; i < n; i++) {
        int64_t len = anneal_tokenizer_piece(tok, s[i].token, true, piece, sizeof piece);
        fprintf(stderr, "%5d '", s[i].token);
        cli_put_escaped(stderr, piece, len < 0 ? 0 : (size_t)(len > 255 ? 255 : len), 0, CLI_ESC_SQUOTE);
        fprintf(stderr, "' %.4f |", s[i].logprob);
        for (int32_t k = 0; k < s[i].n_top; k++) {
            len = anneal_tokenizer_piece(tok, s[i].top[k].token, true, piece, sizeof piece);
            fputs(" '", stderr);
            cli_put_escaped(stderr, piece, len < 0 ? 0 : (size_t)(len > 255 ? 255 : len), 0, CLI_ESC_SQUOTE);
            fprintf(stderr, "' %.4f", s[i].top[k].logprob);
        }
        fputc('\n', stderr);
    }
}

static int run(const gen_opts *o, gen_run *r) {
    anneal_err e = {0};
    if (anneal_model_load(o->model, &r->model, &e) || cli_lora_apply(r->model, &o->lora, &e) ||
        anneal_tokenizer_load(anneal_model_gguf(r->model), &r->tok, &e))
        return cli_fail("generate", &e);
    const anneal_model_config *cfg = anneal_model_config_of(r->model);
    const anneal_tokenizer *tok = r->tok;

    const char *text = o->prompt;
    size_t text_len = text ? strlen(text) : 0;
    if (o->prompt_file) {
        if (anneal_read_file(o->prompt_file, (size_t)1 << 28, &r->prompt_buf, &text_len, &e))
            return cli_fail("generate", &e);
        text = r->prompt_buf;
    }
    size_t n_prompt = 0;
    unsigned flags = o->no_bos ? 0 : ANNEAL_TOK_ADD_SPECIAL;
    anneal_status st = anneal_tokenizer_encode(tok, text, text_len, flags, NULL, 0, &n_prompt, &e);
    if (st != ANNEAL_OK && st != ANNEAL_ERR_RANGE) return cli_fail("generate", &e);
    if (n_prompt == 0) {
        fprintf(stderr, "anneal generate: the prompt has no tokens\n");
        return CLI_FAIL;
    }
    if ((long)n_prompt + o->n_predict > o->n_ctx) {
        fprintf(stderr, "anneal generate: prompt (%zu tokens) + -n %ld exceeds the context of %ld (-c)\n",
                n_prompt, o->n_predict, o->n_ctx);
        return CLI_FAIL;
    }
    r->ids = anneal_calloc(n_prompt, sizeof *r->ids);
    r->pos = anneal_calloc(n_prompt, sizeof *r->pos);
    r->seq = anneal_calloc(n_prompt, sizeof *r->seq);
    r->logits = anneal_calloc((size_t)cfg->n_vocab, sizeof *r->logits);
    if (o->n_logprobs) r->samples = anneal_calloc((size_t)o->n_predict + 1, sizeof *r->samples);
    if (!r->ids || !r->pos || !r->seq || !r->logits || (o->n_logprobs && !r->samples)) {
        fprintf(stderr, "anneal generate: out of memory\n");
        return CLI_FAIL;
    }
    if (anneal_tokenizer_encode(tok, text, text_len, flags, r->ids, n_prompt, &n_prompt, &e))
        return cli_fail("generate", &e);

    anneal_ctx_params cp = anneal_ctx_params_default();
    cp.n_threads = (int32_t)o->threads;
    anneal_kv_params kp = anneal_kv_params_default((int32_t)o->n_ctx, 1);
    if (o->kv_f32) kp.type = ANNEAL_TYPE_F32;
    if (anneal_ctx_new(r->model, &cp, &r->ctx, &e) || anneal_kv_new(r->model, &kp, &r->kv, &e) ||
        anneal_sampler_new(&o->sp, cfg->n_vocab, &r->sampler, &e) ||
        anneal_stop_new(o->stops, o->n_stops, o->n_predict, &r->stop, &e))
        return cli_fail("generate", &e);
    if (!o->seed_set) fprintf(stderr, "seed: %llu\n", (unsigned long long)o->sp.seed);

    // Prefill in batches of up to max_batch tokens; only the last token's logits matter.
    uint64_t t0 = anneal_time_ns();
    for (size_t i = 0; i < n_prompt; i++) r->pos[i] = (int32_t)i;
    for (size_t at = 0; at < n_prompt;) {
        size_t n = n_prompt - at < (size_t)cp.max_batch ? n_prompt - at : (size_t)cp.max_batch;
        anneal_batch b = {.n_tokens = (int32_t)n, .tokens = r->ids + at, .seq = r->seq, .pos = r->pos + at};
        int32_t n_out = 0;
        if (anneal_forward(r->ctx, r->kv, &b, r->logits, 1, &n_out, &e)) return cli_fail("generate", &e);
        at += n;
    }
    for (size_t i = 0; i < n_prompt; i++)
        if (anneal_sampler_accept(r->sampler, r->ids[i], &e)) return cli_fail("generate", &e);
    uint64_t t1 = anneal_time_ns();

    // Decode: sample, stream, feed the token back as a batch of one.
    int64_t n_gen = 0;
    anneal_stop_result sr = {0};
    char piece[1024];
    anneal_token eos = anneal_tokenizer_eos(tok);
    for (;;) {
        anneal_sample s;
        if (anneal_sampler_sample(r->sampler, r->logits, &s, &e)) return cli_fail("generate", &e);
        if (!o->ignore_eos && (s.token == eos ||
                               anneal_tokenizer_token_type(tok, s.token) == ANNEAL_TOK_TYPE_CONTROL)) {
            if (anneal_stop_end(r->stop, &sr, &e)) return cli_fail("generate", &e);
            fwrite(sr.emit, 1, sr.emit_len, stdout);
            break;
        }
        if (r->samples) r->samples[n_gen] = s;
        n_gen++;
        int64_t len = anneal_tokenizer_piece(tok, s.token, false, piece, sizeof piece);
        if (len < 0 || len > (int64_t)sizeof piece) len = 0;
        if (anneal_stop_feed(r->stop, piece, (size_t)len, &sr, &e)) return cli_fail("generate", &e);
        fwrite(sr.emit, 1, sr.emit_len, stdout);
        fflush(stdout);
        if (sr.finish != ANNEAL_FINISH_NONE) break;
        if (anneal_sampler_accept(r->sampler, s.token, &e)) return cli_fail("generate", &e);
        int32_t pos = (int32_t)(n_prompt + (size_t)n_gen - 1), sq = 0;
        anneal_batch b = {.n_tokens = 1, .tokens = &s.token, .seq = &sq, .pos = &pos, .output = NULL};
        int32_t n_out = 0;
        if (anneal_forward(r->ctx, r->kv, &b, r->logits, 1, &n_out, &e)) return cli_fail("generate", &e);
    }
    uint64_t t2 = anneal_time_ns();
    fputc('\n', stdout);
    fflush(stdout);
    double pt = (double)(t1 - t0) / 1e9, gt = (double)(t2 - t1) / 1e9;
    fprintf(stderr, "prompt: %zu tokens in %.3f s, %.2f tokens/s\n", n_prompt, pt, (double)n_prompt / pt);
    fprintf(stderr, "generation: %lld tokens in %.3f s, %.2f tokens/s\n", (long long)n_gen, gt,
            gt > 0 ? (double)n_gen / gt : 0.0);
    if (r->samples) print_logprobs(tok, r->samples, n_gen);
    return CLI_OK;
}

int cmd_generate(int argc, char **argv) {
    gen_opts o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc < 0) return CLI_OK;
    if (rc) return rc;
    gen_run r = {0};
    rc = run(&o, &r);
    gen_free(&r);
    return rc;
}
