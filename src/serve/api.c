// The OpenAI-compatible JSON of the server: request bodies of /v1/chat/completions,
// /v1/completions, /v1/embeddings, /tokenize and /detokenize parsed into requests for the
// scheduler (every field type- and range-checked, unknown fields ignored), and the
// responses, streamed chunks and error objects rendered back.
#include "serve_internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

#define API_MAX_STOPS 16
#define API_MAX_INPUTS 256 // embeddings inputs per request

void api_set_error(api_error *e, int status, const char *param, const char *fmt, ...) {
    e->status = status;
    e->type = status == 401   ? "authentication_error"
              : status == 429 ? "rate_limit_error"
              : status >= 500 ? "server_error"
                              : "invalid_request_error";
    e->code = NULL;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
}

void api_error_json(const api_error *e, sb *out) {
    sb_puts(out, "{\"error\":{\"message\":");
    sb_json_str(out, e->msg, strlen(e->msg));
    sb_puts(out, ",\"type\":");
    sb_json_str(out, e->type, strlen(e->type));
    sb_puts(out, ",\"param\":");
    if (e->param[0]) sb_json_str(out, e->param, strlen(e->param));
    else sb_puts(out, "null");
    sb_puts(out, ",\"code\":");
    if (e->code) sb_json_str(out, e->code, strlen(e->code));
    else sb_puts(out, "null");
    sb_puts(out, "}}");
}

// ---- typed field access -------------------------------------------------------------------
// Each returns false with a 400 naming the field when it is present with the wrong type or
// out of range; an absent or null field leaves *out unchanged.

static bool f_bool(json_t *o, const char *k, bool *out, api_error *e) {
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) return true;
    if (!json_is_boolean(v)) {
        api_set_error(e, 400, k, "'%s' must be a boolean", k);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

static bool f_num(json_t *o, const char *k, double lo, double hi, double *out, api_error *e) {
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) return true;
    if (!json_is_number(v)) {
        api_set_error(e, 400, k, "'%s' must be a number", k);
        return false;
    }
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) {
        api_set_error(e, 400, k, "'%s' = %g is outside [%g, %g]", k, d, lo, hi);
        return false;
    }
    *out = d;
    return true;
}

static bool f_float(json_t *o, const char *k, double lo, double hi, float *out, api_error *e) {
    double d = *out;
    if (!f_num(o, k, lo, hi, &d, e)) return false;
    *out = (float)d;
    return true;
}

static bool f_int(json_t *o, const char *k, int64_t lo, int64_t hi, int64_t *out, api_error *e) {
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) return true;
    int64_t i;
    if (json_is_integer(v)) i = json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
             fabs(json_real_value(v)) < 9e18)
        i = (int64_t)json_real_value(v);
    else {
        api_set_error(e, 400, k, "'%s' must be an integer", k);
        return false;
    }
    if (i < lo || i > hi) {
        api_set_error(e, 400, k, "'%s' = %lld is outside [%lld, %lld]", k, (long long)i,
                      (long long)lo, (long long)hi);
        return false;
    }
    *out = i;
    return true;
}

// ---- tokens -------------------------------------------------------------------------------

// Encodes text into a new array of at most cap tokens; 400 when it has more.
static bool encode(const api_env *env, const char *text, size_t len, unsigned flags, int32_t cap,
                   const char *param, int32_t **out, int32_t *n_out, api_error *e) {
    size_t n = 0;
    anneal_err err = {0};
    int32_t *ids = anneal_malloc((size_t)(cap > 0 ? cap : 1) * sizeof *ids);
    if (!ids) {
        api_set_error(e, 500, NULL, "out of memory");
        return false;
    }
    anneal_status st = anneal_tokenizer_encode(env->tok, text, len, flags, ids, (size_t)cap, &n, &err);
    if (st == ANNEAL_ERR_RANGE) {
        anneal_free(ids);
        api_set_error(e, 400, param,
                      "the prompt has %zu tokens; the context holds %d (prompt plus at least one "
                      "generated token)",
                      n, (int)env->n_ctx);
        return false;
    }
    if (st) {
        anneal_free(ids);
        api_set_error(e, 400, param, "cannot tokenize '%s': %s", param, anneal_err_msg(&err));
        return false;
    }
    *out = ids;
    *n_out = (int32_t)n;
    return true;
}

// An array of token ids (each in the vocabulary) into a new array.
static bool token_array(const api_env *env, json_t *a, int32_t cap, const char *param,
                        int32_t **out, int32_t *n_out, api_error *e) {
    size_t n = json_array_size(a);
    if ((int64_t)n > cap) {
        api_set_error(e, 400, param, "'%s' has %zu tokens; the context holds %d", param, n,
                      (int)env->n_ctx);
        return false;
    }
    int32_t *ids = anneal_malloc((n ? n : 1) * sizeof *ids), nv = anneal_tokenizer_n_vocab(env->tok);
    if (!ids) {
        api_set_error(e, 500, NULL, "out of memory");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= nv) {
            anneal_free(ids);
            api_set_error(e, 400, param, "'%s'[%zu] is not a token id in 0..%d", param, i, (int)nv - 1);
            return false;
        }
        ids[i] = (int32_t)json_integer_value(v);
    }
    *out = ids;
    *n_out = (int32_t)n;
    return true;
}

static bool is_token_array(json_t *a) {
    return json_is_array(a) && json_array_size(a) > 0 && json_is_integer(json_array_get(a, 0));
}

// ---- chat -----------------------------------------------------------------------------------

bool api_chat_render(const api_env *env, const char *const *roles, const char *const *contents,
                     size_t n, sb *out, api_error *e) {
    anneal_chat_message *msgs = anneal_calloc(n ? n : 1, sizeof *msgs);
    if (!msgs) {
        api_set_error(e, 500, NULL, "out of memory");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        msgs[i].role = roles[i];
        msgs[i].content = contents[i];
    }
    char *text = NULL;
    size_t len = 0;
    anneal_err err = {0};
    anneal_chat_template t = (anneal_chat_template)env->chat_template;
    anneal_status st = anneal_chat_apply(t, msgs, n, true, &text, &len, &err);
    anneal_free(msgs);
    if (st) {
        api_set_error(e, 400, "messages", "%s", anneal_err_msg(&err));
        return false;
    }
    // The template's BOS text is left out so the vocabulary adds it; one that adds none
    // gets it written here.
    const char *bos = anneal_chat_template_bos(t);
    if (!anneal_tokenizer_add_bos(env->tok) && *bos) sb_puts(out, bos);
    sb_put(out, text, len);
    anneal_free(text);
    return true;
}

static const char *const ROLES[] = {"system", "user", "assistant", "tool", "developer", "ipython"};

// messages -> prompt text (into *text).
static bool parse_messages(const api_env *env, json_t *root, sb *text, api_error *e) {
    json_t *msgs = json_object_get(root, "messages");
    if (!msgs) {
        api_set_error(e, 400, "messages", "'messages' is required");
        return false;
    }
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        api_set_error(e, 400, "messages", "'messages' must be a non-empty array");
        return false;
    }
    size_t n = json_array_size(msgs);
    if (n > 4096) {
        api_set_error(e, 400, "messages", "at most 4096 messages");
        return false;
    }
    const char **roles = anneal_calloc(n, sizeof *roles);
    const char **contents = anneal_calloc(n, sizeof *contents);
    sb *parts = anneal_calloc(n, sizeof *parts); // joined content arrays
    bool ok = roles && contents && parts;
    if (!ok) api_set_error(e, 500, NULL, "out of memory");
    for (size_t i = 0; ok && i < n; i++) {
        json_t *m = json_array_get(msgs, i), *role = json_object_get(m, "role"),
               *content = json_object_get(m, "content");
        char param[64];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(m) || !json_is_string(role)) {
            api_set_error(e, 400, param, "%s must be an object with a string 'role'", param);
            ok = false;
            break;
        }
        const char *r = json_string_value(role);
        size_t k = 0;
        while (k < sizeof ROLES / sizeof ROLES[0] && strcmp(ROLES[k], r))
            k++;
        if (k == sizeof ROLES / sizeof ROLES[0]) {
            api_set_error(e, 400, param, "%s has an unknown role '%.40s'", param, r);
            ok = false;
            break;
        }
        roles[i] = !strcmp(r, "developer") ? "system" : r;
        if (!content || json_is_null(content)) {
            contents[i] = "";
        } else if (json_is_string(content)) {
            contents[i] = json_string_value(content);
            if (strlen(contents[i]) != json_string_length(content)) {
                api_set_error(e, 400, param, "%s.content contains a NUL character", param);
                ok = false;
            }
        } else if (json_is_array(content)) {
            for (size_t j = 0; ok && j < json_array_size(content); j++) {
                json_t *p = json_array_get(content, j);
                json_t *type = json_object_get(p, "type"), *t = json_object_get(p, "text");
                if (!json_is_string(type) || strcmp(json_string_value(type), "text") ||
                    !json_is_string(t)) {
                    api_set_error(e, 400, param, "%s.content[%zu]: only {\"type\":\"text\",\"text\":...} parts are supported",
                                  param, j);
                    ok = false;
                } else {
                    sb_put(&parts[i], json_string_value(t), strlen(json_string_value(t)));
                }
            }
            if (ok) sb_put(&parts[i], "", 0);
            contents[i] = parts[i].p ? parts[i].p : "";
            if (parts[i].oom) {
                api_set_error(e, 500, NULL, "out of memory");
                ok = false;
            }
        } else {
            api_set_error(e, 400, param, "%s.content must be a string or an array of text parts", param);
            ok = false;
        }
    }
    if (ok) ok = api_chat_render(env, roles, contents, n, text, e);
    if (parts)
        for (size_t i = 0; i < n; i++)
            sb_free(&parts[i]);
    anneal_free(parts);
    anneal_free(roles);
    anneal_free(contents);
    return ok;
}

// ---- generate -------------------------------------------------------------------------------

static bool add_stop(srq *r, const char *s, size_t len, api_error *e) {
    if (len == 0) return true;
    if (len > ANNEAL_STOP_MAX_LEN) {
        api_set_error(e, 400, "stop", "a stop string is longer than %d bytes", ANNEAL_STOP_MAX_LEN);
        return false;
    }
    if (r->n_stops == API_MAX_STOPS + 1) {
        api_set_error(e, 400, "stop", "at most %d stop strings", API_MAX_STOPS);
        return false;
    }
    if (!r->stops) r->stops = anneal_calloc(API_MAX_STOPS + 1, sizeof *r->stops);
    char *c = r->stops ? anneal_strndup(s, len) : NULL;
    if (!c) {
        api_set_error(e, 500, NULL, "out of memory");
        return false;
    }
    r->stops[r->n_stops++] = c;
    return true;
}

static bool parse_stop(json_t *root, srq *r, api_error *e) {
    json_t *v = json_object_get(root, "stop");
    if (!v || json_is_null(v)) return true;
    if (json_is_string(v)) return add_stop(r, json_string_value(v), json_string_length(v), e);
    if (!json_is_array(v)) {
        api_set_error(e, 400, "stop", "'stop' must be a string or an array of strings");
        return false;
    }
    if (json_array_size(v) > API_MAX_STOPS) {
        api_set_error(e, 400, "stop", "at most %d stop strings", API_MAX_STOPS);
        return false;
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *s = json_array_get(v, i);
        if (!json_is_string(s)) {
            api_set_error(e, 400, "stop", "'stop'[%zu] must be a string", i);
            return false;
        }
        if (!add_stop(r, json_string_value(s), json_string_length(s), e)) return false;
    }
    return true;
}

static bool parse_sampling(const api_env *env, json_t *root, api_route route, api_req *q, api_error *e) {
    srq *r = q->r;
    anneal_sampler_params *sp = &r->sp;
    *sp = anneal_sampler_params_neutral();
    sp->penalty_last_n = -1; // OpenAI's penalties count the whole generated text
    int64_t top_k = 0, n = 1, seed = -1;
    bool seeded = json_object_get(root, "seed") && !json_is_null(json_object_get(root, "seed"));
    if (!f_float(root, "temperature", 0, 2, &sp->temperature, e) ||
        !f_float(root, "top_p", 0, 1, &sp->top_p, e) || !f_int(root, "top_k", -1, INT32_MAX, &top_k, e) ||
        !f_float(root, "min_p", 0, 1, &sp->min_p, e) ||
        !f_float(root, "repetition_penalty", 0, 10, &sp->repetition_penalty, e) ||
        !f_float(root, "presence_penalty", -2, 2, &sp->presence_penalty, e) ||
        !f_float(root, "frequency_penalty", -2, 2, &sp->frequency_penalty, e) ||
        !f_int(root, "seed", INT64_MIN, INT64_MAX, &seed, e) || !f_int(root, "n", 1, 1, &n, e) ||
        !f_bool(root, "ignore_eos", &r->ignore_eos, e))
        return false;
    if (sp->top_p <= 0) {
        api_set_error(e, 400, "top_p", "'top_p' must be greater than 0");
        return false;
    }
    if (sp->repetition_penalty <= 0) {
        api_set_error(e, 400, "repetition_penalty", "'repetition_penalty' must be greater than 0");
        return false;
    }
    sp->top_k = top_k < 0 ? 0 : (int32_t)top_k;
    if (seeded) sp->seed = (uint64_t)seed;
    else if (getrandom(&sp->seed, sizeof sp->seed, 0) != (ssize_t)sizeof sp->seed)
        sp->seed = anneal_time_ns();
    // logprobs: chat has a boolean plus top_logprobs; completions an integer count.
    int64_t top = 0;
    if (route == API_CHAT) {
        if (!f_bool(root, "logprobs", &q->logprobs, e) ||
            !f_int(root, "top_logprobs", 0, ANNEAL_SAMPLER_MAX_LOGPROBS, &top, e))
            return false;
        if (top > 0 && !q->logprobs) {
            api_set_error(e, 400, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
            return false;
        }
    } else {
        json_t *lp = json_object_get(root, "logprobs");
        if (json_is_boolean(lp)) q->logprobs = json_is_true(lp);
        else if (!f_int(root, "logprobs", 0, ANNEAL_SAMPLER_MAX_LOGPROBS, &top, e)) return false;
        else q->logprobs = lp && !json_is_null(lp);
    }
    q->top_logprobs = (int32_t)top;
    sp->logprobs = q->logprobs;
    sp->n_logprobs = (int32_t)top;
    // max_tokens (legacy) and max_completion_tokens: the smaller when both are given.
    int64_t mt = -1, mct = -1;
    if (!f_int(root, "max_tokens", 1, env->max_tokens, &mt, e) ||
        !f_int(root, "max_completion_tokens", 1, env->max_tokens, &mct, e))
        return false;
    int64_t max = env->max_tokens;
    if (mt > 0 && mt < max) max = mt;
    if (mct > 0 && mct < max) max = mct;
    r->max_tokens = (int32_t)max;
    if (!f_bool(root, "stream", &q->stream, e)) return false;
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) {
            api_set_error(e, 400, "stream_options", "'stream_options' must be an object");
            return false;
        }
        if (!f_bool(so, "include_usage", &q->include_usage, e)) return false;
    }
    bool echo = false;
    if (!f_bool(root, "echo", &echo, e)) return false;
    if (echo) {
        api_set_error(e, 400, "echo", "'echo' is not supported");
        return false;
    }
    anneal_err err = {0};
    if (anneal_sampler_params_validate(sp, &err)) {
        api_set_error(e, 400, NULL, "%s", anneal_err_msg(&err));
        return false;
    }
    return parse_stop(root, r, e);
}

static bool parse_prompt(const api_env *env, json_t *root, srq *r, api_error *e) {
    json_t *p = json_object_get(root, "prompt");
    if (!p) {
        api_set_error(e, 400, "prompt", "'prompt' is required");
        return false;
    }
    if (json_is_array(p) && json_array_size(p) == 1 &&
        (json_is_string(json_array_get(p, 0)) || json_is_array(json_array_get(p, 0))))
        p = json_array_get(p, 0);
    if (json_is_string(p))
        return encode(env, json_string_value(p), json_string_length(p), ANNEAL_TOK_ADD_SPECIAL,
                      env->n_ctx - 1, "prompt", &r->prompt, &r->n_prompt, e);
    if (is_token_array(p)) return token_array(env, p, env->n_ctx - 1, "prompt", &r->prompt, &r->n_prompt, e);
    if (json_is_array(p) && json_array_size(p) > 1)
        api_set_error(e, 400, "prompt", "only one prompt per request is supported");
    else
        api_set_error(e, 400, "prompt", "'prompt' must be a string, an array of token ids, or an array of one of them");
    return false;
}

static bool parse_embed_input(const api_env *env, json_t *root, srq *r, api_error *e) {
    json_t *in = json_object_get(root, "input");
    if (!in || json_is_null(in)) {
        api_set_error(e, 400, "input", "'input' is required");
        return false;
    }
    // One input: a string or a token array; several: an array of those.
    json_t *one[1] = {in};
    json_t **items = one;
    size_t n = 1;
    bool list = json_is_array(in) && !is_token_array(in);
    if (list) n = json_array_size(in);
    if (n == 0 || n > API_MAX_INPUTS) {
        api_set_error(e, 400, "input", "'input' must hold 1..%d inputs", API_MAX_INPUTS);
        return false;
    }
    r->in_off = anneal_calloc(n + 1, sizeof *r->in_off);
    if (!r->in_off) {
        api_set_error(e, 500, NULL, "out of memory");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *it = list ? json_array_get(in, i) : items[0];
        int32_t *ids = NULL, k = 0;
        bool ok;
        if (json_is_string(it))
            ok = encode(env, json_string_value(it), json_string_length(it), ANNEAL_TOK_ADD_SPECIAL,
                        env->n_ctx, "input", &ids, &k, e);
        else if (is_token_array(it))
            ok = token_array(env, it, env->n_ctx, "input", &ids, &k, e);
        else {
            api_set_error(e, 400, "input", "'input'[%zu] must be a string or an array of token ids", i);
            ok = false;
        }
        if (ok && k == 0) {
            api_set_error(e, 400, "input", "'input'[%zu] has no tokens", i);
            ok = false;
        }
        int32_t *all = ok ? anneal_realloc_array(r->prompt, (size_t)r->n_prompt + (size_t)k, sizeof *all) : NULL;
        if (ok && !all) api_set_error(e, 500, NULL, "out of memory");
        if (!all) {
            anneal_free(ids);
            return false;
        }
        memcpy(all + r->n_prompt, ids, (size_t)k * sizeof *ids);
        anneal_free(ids);
        r->prompt = all;
        r->n_prompt += k;
        r->in_off[i + 1] = r->n_prompt;
    }
    r->n_inputs = (int32_t)n;
    json_t *fmt = json_object_get(root, "encoding_format");
    if (fmt && !json_is_null(fmt)) {
        if (!json_is_string(fmt) ||
            (strcmp(json_string_value(fmt), "float") && strcmp(json_string_value(fmt), "base64"))) {
            api_set_error(e, 400, "encoding_format", "'encoding_format' must be \"float\" or \"base64\"");
            return false;
        }
    }
    return true;
}

bool api_parse(const api_env *env, api_route route, const char *body, size_t len, api_req *q,
               api_error *e) {
    memset(q, 0, sizeof *q);
    q->route = route;
    q->created = (int64_t)time(NULL);
    anneal_err err = {0};
    json_t *root = anneal_json_parse(body, len, "request body", &err);
    if (!root) {
        api_set_error(e, 400, NULL, "%s", anneal_err_msg(&err));
        return false;
    }
    bool ok = json_is_object(root);
    if (!ok) api_set_error(e, 400, NULL, "the request body must be a JSON object");
    json_t *model = ok ? json_object_get(root, "model") : NULL;
    if (ok && model && !json_is_null(model) && !json_is_string(model)) {
        api_set_error(e, 400, "model", "'model' must be a string");
        ok = false;
    }
    if (ok) {
        q->r = srq_new(route == API_EMBEDDINGS ? SRQ_EMBED : SRQ_GENERATE);
        if (!q->r) {
            api_set_error(e, 500, NULL, "out of memory");
            ok = false;
        }
    }
    if (ok) {
        api_new_id(q->r->id, sizeof q->r->id,
                   route == API_CHAT ? "chatcmpl-" : route == API_COMPLETIONS ? "cmpl-" : "embd-");
        if (env->timeout_ns) q->r->deadline_ns = q->r->t_arrive + env->timeout_ns;
    }
    if (ok && route == API_EMBEDDINGS) {
        ok = parse_embed_input(env, root, q->r, e);
        json_t *fmt = json_object_get(root, "encoding_format");
        q->base64 = ok && json_is_string(fmt) && !strcmp(json_string_value(fmt), "base64");
    } else if (ok) {
        ok = parse_sampling(env, root, route, q, e);
        if (ok && route == API_CHAT) {
            sb text = {0};
            ok = parse_messages(env, root, &text, e);
            if (ok && text.oom) {
                api_set_error(e, 500, NULL, "out of memory");
                ok = false;
            }
            if (ok)
                ok = encode(env, text.p ? text.p : "", text.len,
                            ANNEAL_TOK_ADD_SPECIAL | ANNEAL_TOK_PARSE_SPECIAL, env->n_ctx - 1,
                            "messages", &q->r->prompt, &q->r->n_prompt, e);
            sb_free(&text);
            // The turn ends at the template's end-of-turn text even where the vocabulary
            // does not mark it as a control token.
            const char *stop = anneal_chat_template_stop((anneal_chat_template)env->chat_template);
            if (ok && *stop) ok = add_stop(q->r, stop, strlen(stop), e);
        } else if (ok) {
            ok = parse_prompt(env, root, q->r, e);
        }
        if (ok && q->r->n_prompt == 0) {
            api_set_error(e, 400, route == API_CHAT ? "messages" : "prompt", "the prompt has no tokens");
            ok = false;
        }
    }
    json_decref(root);
    if (!ok) {
        srq_release(q->r);
        q->r = NULL;
    }
    return ok;
}

// ---- responses ------------------------------------------------------------------------------

static void usage_json(const srq *r, sb *out) {
    if (r->kind == SRQ_EMBED) {
        sb_printf(out, "{\"prompt_tokens\":%d,\"total_tokens\":%d}", (int)r->n_prompt, (int)r->n_prompt);
        return;
    }
    sb_printf(out,
              "{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d,"
              "\"prompt_tokens_details\":{\"cached_tokens\":%d}}",
              (int)r->n_prompt, (int)r->n_gen, (int)(r->n_prompt + r->n_gen), (int)r->n_cached);
}

static const char *finish_reason(srq_finish f) {
    return f == SRQ_FIN_LENGTH ? "length" : "stop";
}

// The token's text for logprobs (control tokens shown).
static size_t token_text(const api_env *env, int32_t id, char *buf, size_t cap) {
    int64_t n = anneal_tokenizer_piece(env->tok, id, true, buf, cap);
    return n < 0 ? 0 : (size_t)n > cap ? cap : (size_t)n;
}

static void bytes_json(const char *s, size_t n, sb *out) {
    sb_puts(out, "[");
    for (size_t i = 0; i < n; i++)
        sb_printf(out, i ? ",%u" : "%u", (unsigned)(uint8_t)s[i]);
    sb_puts(out, "]");
}

// Chat format: {"content":[{"token","logprob","bytes","top_logprobs":[...]}]}.
static void chat_logprobs(const api_env *env, const anneal_sample *s, size_t n, sb *out) {
    char buf[512];
    sb_puts(out, "{\"content\":[");
    for (size_t i = 0; i < n; i++) {
        size_t len = token_text(env, s[i].token, buf, sizeof buf);
        sb_puts(out, i ? ",{\"token\":" : "{\"token\":");
        sb_json_str(out, buf, len);
        sb_puts(out, ",\"logprob\":");
        sb_json_float(out, s[i].logprob);
        sb_puts(out, ",\"bytes\":");
        bytes_json(buf, len, out);
        sb_puts(out, ",\"top_logprobs\":[");
        for (int32_t k = 0; k < s[i].n_top; k++) {
            size_t l2 = token_text(env, s[i].top[k].token, buf, sizeof buf);
            sb_puts(out, k ? ",{\"token\":" : "{\"token\":");
            sb_json_str(out, buf, l2);
            sb_puts(out, ",\"logprob\":");
            sb_json_float(out, s[i].top[k].logprob);
            sb_puts(out, ",\"bytes\":");
            bytes_json(buf, l2, out);
            sb_puts(out, "}");
        }
        sb_puts(out, "]}");
    }
    sb_puts(out, "]}");
}

// Completions (legacy) format: parallel arrays; text_offset counts from `offset`. Returns
// the offset after the last token.
static size_t completion_logprobs(const api_env *env, const anneal_sample *s, size_t n, size_t offset,
                                  sb *out) {
    char buf[512];
    sb_puts(out, "{\"tokens\":[");
    for (size_t i = 0; i < n; i++) {
        size_t len = token_text(env, s[i].token, buf, sizeof buf);
        if (i) sb_puts(out, ",");
        sb_json_str(out, buf, len);
    }
    sb_puts(out, "],\"token_logprobs\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) sb_puts(out, ",");
        sb_json_float(out, s[i].logprob);
    }
    sb_puts(out, "],\"top_logprobs\":[");
    for (size_t i = 0; i < n; i++) {
        sb_puts(out, i ? ",{" : "{");
        for (int32_t k = 0; k < s[i].n_top; k++) {
            size_t len = token_text(env, s[i].top[k].token, buf, sizeof buf);
            if (k) sb_puts(out, ",");
            sb_json_str(out, buf, len);
            sb_puts(out, ":");
            sb_json_float(out, s[i].top[k].logprob);
        }
        sb_puts(out, "}");
    }
    sb_puts(out, "],\"text_offset\":[");
    for (size_t i = 0; i < n; i++) {
        sb_printf(out, i ? ",%zu" : "%zu", offset);
        offset += token_text(env, s[i].token, buf, sizeof buf);
    }
    sb_puts(out, "]}");
    return offset;
}

static void head_json(const api_env *env, const api_req *q, const char *object, sb *out) {
    sb_puts(out, "{\"id\":");
    sb_json_str(out, q->r->id, strlen(q->r->id));
    sb_printf(out, ",\"object\":\"%s\",\"created\":%lld,\"model\":", object, (long long)q->created);
    sb_json_str(out, env->model_name, strlen(env->model_name));
}

static void base64_floats(const float *v, size_t n, sb *out) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const uint8_t *b = (const uint8_t *)v; // little-endian float32, as OpenAI's clients read it
    size_t len = n * sizeof(float);
    char q[4];
    for (size_t i = 0; i < len; i += 3) {
        uint32_t w = (uint32_t)b[i] << 16 | (i + 1 < len ? (uint32_t)b[i + 1] << 8 : 0) |
                     (i + 2 < len ? b[i + 2] : 0);
        q[0] = tab[w >> 18];
        q[1] = tab[(w >> 12) & 63];
        q[2] = i + 1 < len ? tab[(w >> 6) & 63] : '=';
        q[3] = i + 2 < len ? tab[w & 63] : '=';
        sb_put(out, q, 4);
    }
}

void api_render(const api_env *env, const api_req *q, sb *out) {
    const srq *r = q->r;
    if (q->route == API_EMBEDDINGS) {
        sb_puts(out, "{\"object\":\"list\",\"data\":[");
        for (int32_t i = 0; i < r->n_inputs; i++) {
            const float *row = r->embd + (size_t)i * (size_t)env->n_embd;
            sb_printf(out, "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":", i ? "," : "", (int)i);
            if (q->base64) {
                sb_puts(out, "\"");
                base64_floats(row, (size_t)env->n_embd, out);
                sb_puts(out, "\"");
            } else {
                sb_puts(out, "[");
                for (int32_t d = 0; d < env->n_embd; d++) {
                    if (d) sb_puts(out, ",");
                    sb_json_float(out, row[d]);
                }
                sb_puts(out, "]");
            }
            sb_puts(out, "}");
        }
        sb_puts(out, "],\"model\":");
        sb_json_str(out, env->model_name, strlen(env->model_name));
        sb_puts(out, ",\"usage\":");
        usage_json(r, out);
        sb_puts(out, "}");
        return;
    }
    bool chat = q->route == API_CHAT;
    head_json(env, q, chat ? "chat.completion" : "text_completion", out);
    sb_puts(out, ",\"choices\":[{\"index\":0,");
    if (chat) {
        sb_puts(out, "\"message\":{\"role\":\"assistant\",\"content\":");
        sb_json_str(out, r->text ? r->text : "", r->text_len);
        sb_puts(out, "},");
    } else {
        sb_puts(out, "\"text\":");
        sb_json_str(out, r->text ? r->text : "", r->text_len);
        sb_puts(out, ",");
    }
    sb_puts(out, "\"logprobs\":");
    if (!q->logprobs) sb_puts(out, "null");
    else if (chat) chat_logprobs(env, r->samples, r->n_samples, out);
    else completion_logprobs(env, r->samples, r->n_samples, 0, out);
    sb_printf(out, ",\"finish_reason\":\"%s\"}],\"usage\":", finish_reason(r->finish));
    usage_json(r, out);
    sb_puts(out, "}");
}

void api_stream_chunk(const api_env *env, const api_req *q, bool first, const char *text, size_t n,
                      const anneal_sample *samples, size_t n_samples, bool done, size_t *lp_offset,
                      sb *out) {
    const srq *r = q->r;
    bool chat = q->route == API_CHAT;
    const char *object = chat ? "chat.completion.chunk" : "text_completion";
    bool failed = done && r->finish != SRQ_FIN_STOP && r->finish != SRQ_FIN_LENGTH;
    // Chat opens with a chunk that carries only the role, as OpenAI's does.
    if (first && chat) {
        sb_puts(out, "data: ");
        head_json(env, q, object, out);
        sb_puts(out, ",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                     "\"logprobs\":null,\"finish_reason\":null}]");
        if (q->include_usage) sb_puts(out, ",\"usage\":null");
        sb_puts(out, "}\n\n");
    }
    if (n || n_samples) {
        sb_puts(out, "data: ");
        head_json(env, q, object, out);
        sb_puts(out, ",\"choices\":[{\"index\":0,");
        if (chat) {
            sb_puts(out, "\"delta\":{\"content\":");
            sb_json_str(out, text ? text : "", n);
            sb_puts(out, "},");
        } else {
            sb_puts(out, "\"text\":");
            sb_json_str(out, text ? text : "", n);
            sb_puts(out, ",");
        }
        sb_puts(out, "\"logprobs\":");
        if (!q->logprobs || !n_samples) sb_puts(out, "null");
        else if (chat) chat_logprobs(env, samples, n_samples, out);
        else {
            size_t end = completion_logprobs(env, samples, n_samples, lp_offset ? *lp_offset : 0, out);
            if (lp_offset) *lp_offset = end;
        }
        sb_puts(out, ",\"finish_reason\":null}]");
        if (q->include_usage) sb_puts(out, ",\"usage\":null");
        sb_puts(out, "}\n\n");
    }
    if (!done) return;
    if (failed) {
        api_error e;
        api_set_error(&e, r->finish == SRQ_FIN_TIMEOUT ? 408 : r->finish == SRQ_FIN_CANCEL ? 503 : 500, NULL,
                      "%s", r->err_msg[0] ? r->err_msg : srq_finish_name(r->finish));
        sb_puts(out, "data: ");
        api_error_json(&e, out);
        sb_puts(out, "\n\n");
    } else {
        sb_puts(out, "data: ");
        head_json(env, q, object, out);
        sb_printf(out, ",\"choices\":[{\"index\":0,%s\"logprobs\":null,\"finish_reason\":\"%s\"}]",
                  chat ? "\"delta\":{}," : "\"text\":\"\",", finish_reason(r->finish));
        if (q->include_usage) sb_puts(out, ",\"usage\":null");
        sb_puts(out, "}\n\n");
        if (q->include_usage) {
            sb_puts(out, "data: ");
            head_json(env, q, object, out);
            sb_puts(out, ",\"choices\":[],\"usage\":");
            usage_json(r, out);
            sb_puts(out, "}\n\n");
        }
    }
    sb_puts(out, "data: [DONE]\n\n");
}

// ---- tokenize, detokenize, models -------------------------------------------------------------

static json_t *parse_object(const char *body, size_t len, api_error *e) {
    anneal_err err = {0};
    json_t *root = anneal_json_parse(body, len, "request body", &err);
    if (!root) {
        api_set_error(e, 400, NULL, "%s", anneal_err_msg(&err));
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        api_set_error(e, 400, NULL, "the request body must be a JSON object");
        return NULL;
    }
    return root;
}

bool api_tokenize(const api_env *env, const char *body, size_t len, sb *out, api_error *e) {
    json_t *root = parse_object(body, len, e);
    if (!root) return false;
    json_t *c = json_object_get(root, "content");
    bool add_special = true, parse_special = true, pieces = false;
    bool ok = f_bool(root, "add_special", &add_special, e) && f_bool(root, "parse_special", &parse_special, e) &&
              f_bool(root, "with_pieces", &pieces, e);
    if (ok && !json_is_string(c)) {
        api_set_error(e, 400, "content", "'content' must be a string");
        ok = false;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    if (ok) {
        unsigned flags = (add_special ? ANNEAL_TOK_ADD_SPECIAL : 0) | (parse_special ? ANNEAL_TOK_PARSE_SPECIAL : 0);
        anneal_err err = {0};
        anneal_status st = anneal_tokenizer_encode(env->tok, json_string_value(c), json_string_length(c), flags,
                                                   NULL, 0, &n, &err);
        ids = (st == ANNEAL_OK || st == ANNEAL_ERR_RANGE) ? anneal_malloc((n ? n : 1) * sizeof *ids) : NULL;
        if (!ids || anneal_tokenizer_encode(env->tok, json_string_value(c), json_string_length(c), flags, ids, n,
                                            &n, &err)) {
            api_set_error(e, ids ? 400 : 500, "content", "cannot tokenize: %s", anneal_err_msg(&err));
            ok = false;
        }
    }
    if (ok) {
        char buf[512];
        sb_puts(out, "{\"tokens\":[");
        for (size_t i = 0; i < n; i++) {
            if (i) sb_puts(out, ",");
            if (!pieces) {
                sb_printf(out, "%d", (int)ids[i]);
                continue;
            }
            int64_t pl = anneal_tokenizer_piece(env->tok, ids[i], true, buf, sizeof buf);
            sb_printf(out, "{\"id\":%d,\"piece\":", (int)ids[i]);
            sb_json_str(out, buf, pl < 0 ? 0 : (size_t)pl > sizeof buf ? sizeof buf : (size_t)pl);
            sb_puts(out, "}");
        }
        sb_puts(out, "]}");
    }
    anneal_free(ids);
    json_decref(root);
    return ok;
}

bool api_detokenize(const api_env *env, const char *body, size_t len, sb *out, api_error *e) {
    json_t *root = parse_object(body, len, e);
    if (!root) return false;
    json_t *t = json_object_get(root, "tokens");
    int32_t *ids = NULL, n = 0;
    bool ok = true;
    if (!json_is_array(t)) {
        api_set_error(e, 400, "tokens", "'tokens' must be an array of token ids");
        ok = false;
    } else if (json_array_size(t) > 0) {
        ok = token_array(env, t, INT32_MAX, "tokens", &ids, &n, e);
    }
    if (ok) {
        size_t cap = 0, got = 0;
        anneal_err err = {0};
        anneal_tokenizer_decode(env->tok, ids, (size_t)n, false, NULL, 0, &cap, &err);
        char *text = anneal_malloc(cap + 1);
        if (!text || anneal_tokenizer_decode(env->tok, ids, (size_t)n, false, text, cap + 1, &got, &err)) {
            api_set_error(e, 500, NULL, "cannot decode: %s", text ? anneal_err_msg(&err) : "out of memory");
            ok = false;
        } else {
            sb_puts(out, "{\"content\":");
            sb_json_str(out, text, got);
            sb_puts(out, "}");
        }
        anneal_free(text);
    }
    anneal_free(ids);
    json_decref(root);
    return ok;
}

static void model_json(const api_env *env, uint64_t created, sb *out) {
    sb_puts(out, "{\"id\":");
    sb_json_str(out, env->model_name, strlen(env->model_name));
    sb_printf(out,
              ",\"object\":\"model\",\"created\":%llu,\"owned_by\":\"anneal\",\"meta\":{\"n_ctx\":%d,"
              "\"n_vocab\":%d,\"n_embd\":%d}}",
              (unsigned long long)created, (int)env->n_ctx, (int)anneal_tokenizer_n_vocab(env->tok),
              (int)env->n_embd);
}

void api_models(const api_env *env, uint64_t created, sb *out) {
    sb_puts(out, "{\"object\":\"list\",\"data\":[");
    model_json(env, created, out);
    sb_puts(out, "]}");
}

bool api_model(const api_env *env, uint64_t created, const char *id, sb *out, api_error *e) {
    if (strcmp(id, env->model_name)) {
        api_set_error(e, 404, "model", "the model '%.200s' does not exist", id);
        e->code = "model_not_found";
        return false;
    }
    model_json(env, created, out);
    return true;
}
