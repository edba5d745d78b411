// `anneal serve`: the OpenAI-compatible HTTP server. Settings come from defaults, then a
// config file (--config), then ANNEAL_SERVE_* environment variables, then flags; SIGTERM or
// SIGINT drains (stop accepting, finish in-flight work up to --drain-timeout) and exits 0.
#include "cli/cli.h"

#include "anneal/serve.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *f) {
    fputs("usage: anneal serve -m MODEL [--host H] [--port P] [-t THREADS] [-c CTX] [options]\n"
          "Serves MODEL over HTTP with an OpenAI-compatible API (POST /v1/chat/completions,\n"
          "/v1/completions, /v1/embeddings, /tokenize, /detokenize; GET /v1/models, /health,\n"
          "/ready, /metrics), continuous batching over a paged KV cache. docs/serve.md has the\n"
          "details.\n"
          "\n"
          "  --config FILE              read settings from FILE: one 'name = value' per line, names\n"
          "                             as the long flags below without '--', '#' comments\n"
          "  -m FILE, -t N, -c N        short for --model, --threads, --ctx\n",
          f);
    anneal_serve_config_help(f);
    fputs("\nPrecedence: flags > environment > config file > defaults. Switches (--kv-f32) take\n"
          "no value on the command line; in a file or the environment write true/false.\n"
          "On start the server prints 'listening on http://HOST:PORT' to stderr.\n"
          "Exit status: 0 after a drain (SIGTERM/SIGINT), 1 start failure, 2 usage error.\n",
          f);
}

static const char *long_name(const char *a) {
    if (!strcmp(a, "-m")) return "model";
    if (!strcmp(a, "-t")) return "threads";
    if (!strcmp(a, "-c")) return "ctx";
    if (!strncmp(a, "--", 2) && a[2]) return a + 2;
    return NULL;
}

int cmd_serve(int argc, char **argv) {
    const char *config = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            help(stdout);
            return CLI_OK;
        }
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) return cli_usage_error("serve", "--config needs a value");
            config = argv[++i];
        }
    }
    anneal_serve_config cfg;
    anneal_serve_config_default(&cfg);
    anneal_err e = {0};
    int rc = CLI_OK, lora_flags = 0;
    if ((config && anneal_serve_config_load(&cfg, config, &e)) || anneal_serve_config_env(&cfg, &e)) {
        rc = cli_usage_error("serve", "%s", anneal_err_msg(&e));
        goto out;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config")) {
            i++;
            continue;
        }
        const char *name = long_name(argv[i]);
        if (!name) {
            rc = cli_usage_error("serve", "unexpected argument '%s'", argv[i]);
            goto out;
        }
        char buf[64];
        const char *eq = strchr(name, '='), *value;
        if (eq) {
            snprintf(buf, sizeof buf, "%.*s", (int)(eq - name), name);
            name = buf;
            value = eq + 1;
        } else if (anneal_serve_config_is_switch(name)) {
            value = "true";
        } else {
            if (i + 1 >= argc) {
                rc = cli_usage_error("serve", "%s needs a value", argv[i]);
                goto out;
            }
            value = argv[++i];
        }
        // Repeated --lora flags add to the list (a file or environment value is replaced).
        char *joined = NULL;
        if (!strcmp(name, "lora") && lora_flags++ && cfg.lora) {
            size_t n = strlen(cfg.lora) + strlen(value) + 2;
            if ((joined = anneal_malloc(n))) snprintf(joined, n, "%s,%s", cfg.lora, value);
            value = joined ? joined : value;
        }
        anneal_status set = anneal_serve_config_set(&cfg, name, value, NULL, &e);
        anneal_free(joined);
        if (set) {
            rc = cli_usage_error("serve", "%s", anneal_err_msg(&e));
            goto out;
        }
    }
    if (!cfg.model) {
        rc = cli_usage_error("serve", "missing -m MODEL");
        goto out;
    }
    // Signals are taken by sigwait below, so every thread started from here blocks them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    anneal_server *srv = NULL;
    if (anneal_serve_start(&cfg, &srv, &e)) {
        rc = cli_fail("serve", &e);
        goto out;
    }
    const char *host = cfg.host ? cfg.host : "127.0.0.1";
    bool v6 = strchr(host, ':') != NULL;
    fprintf(stderr, "anneal serve: listening on http://%s%s%s:%d\n", v6 ? "[" : "", host, v6 ? "]" : "",
            anneal_serve_port(srv));
    fflush(stderr);
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "anneal serve: %s: draining (up to %.0f s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
            cfg.drain_timeout);
    int left = anneal_serve_drain(srv, cfg.drain_timeout);
    if (left) fprintf(stderr, "anneal serve: cancelled %d request(s) still running at the drain timeout\n", left);
    anneal_serve_free(srv);
    fprintf(stderr, "anneal serve: stopped\n");
out:
    anneal_serve_config_free(&cfg);
    return rc;
}
