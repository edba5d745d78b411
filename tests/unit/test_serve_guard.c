// The server's guards and metrics: token buckets (exact refill arithmetic), the API keys
// file and Bearer checks, per-key limits, and the Prometheus text of the metrics.
#include "serve/serve_internal.h"
#include "test.h"

#include <stdio.h>
#include <unistd.h>

#define SEC 1000000000ull

static void test_bucket(void) {
    tbucket b;
    tb_init(&b, 60, 0); // 1 per second, burst 60
    double retry = 0;
    for (int i = 0; i < 60; i++)
        CHECK(tb_take(&b, 1, 0, &retry));
    CHECK(!tb_take(&b, 1, 0, &retry));
    CHECK_NEAR(retry, 1.0, 1e-9);
    CHECK(!tb_take(&b, 1, SEC / 2, &retry)); // half a token back
    CHECK_NEAR(retry, 0.5, 1e-9);
    CHECK(tb_take(&b, 1, SEC, &retry));
    // Refill stops at the burst.
    CHECK(tb_take(&b, 60, 1000 * SEC, &retry));
    CHECK(!tb_take(&b, 1, 1000 * SEC, &retry));
    // A request larger than the burst waits for a full bucket, then goes into debt.
    tb_init(&b, 60, 0);
    CHECK(tb_take(&b, 100, 0, &retry));
    CHECK_NEAR(b.level, -40, 1e-9);
    CHECK(!tb_take(&b, 1, 0, &retry));
    CHECK_NEAR(retry, 41, 1e-9);
    tb_charge(&b, -40, 0);
    CHECK_NEAR(b.level, 0, 1e-9);
    // Rate 0: unlimited.
    tb_init(&b, 0, 0);
    for (int i = 0; i < 1000; i++)
        CHECK(tb_take(&b, 1e6, 0, &retry));
}

static const char *write_file(const char *text) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/anneal_serve_keys_%d", (int)getpid());
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_keys(void) {
    auth a;
    anneal_err e = {0};
    const char *path = write_file("# comment\n\nalice  sk-alice-secret  rpm=2 tpm=100\n  bob\tsk-bob-secret # x\n");
    CHECK_EQ(auth_init(&a, path, 0, 50, &e), ANNEAL_OK);
    CHECK(auth_enabled(&a));
    CHECK_EQ(a.n_keys, 2);
    CHECK(auth_check(&a, NULL) == NULL);
    CHECK(auth_check(&a, "") == NULL);
    CHECK(auth_check(&a, "sk-alice-secret") == NULL);
    CHECK(auth_check(&a, "Basic sk-alice-secret") == NULL);
    CHECK(auth_check(&a, "Bearer sk-alice-secre") == NULL);
    CHECK(auth_check(&a, "Bearer sk-alice-secrets") == NULL);
    auth_key *k = auth_check(&a, "Bearer sk-alice-secret");
    CHECK(k && !strcmp(k->id, "alice"));
    k = auth_check(&a, "bearer   sk-bob-secret  ");
    CHECK(k && !strcmp(k->id, "bob"));
    // alice: 2 requests a minute; bob: the global 50 tokens a minute.
    auth_key *al = auth_check(&a, "Bearer sk-alice-secret");
    double retry = 0;
    CHECK(auth_admit(&a, al, 10, &retry));
    CHECK(auth_admit(&a, al, 10, &retry));
    CHECK(!auth_admit(&a, al, 10, &retry));
    CHECK(retry > 0 && retry <= 30.01);
    CHECK(auth_admit(&a, k, 40, &retry));
    auth_charge(&a, k, 30); // generated tokens push the bucket into debt
    CHECK(!auth_admit(&a, k, 5, &retry));
    CHECK(retry > 20 && retry < 30);
    CHECK_NEAR(k->req.level, 0, 1e-9); // the refused request was given back (rate 0 here)
    auth_destroy(&a);
    static const struct {
        const char *text, *msg;
    } bad[] = {
        {"alice\n", ":1: expected"},
        {"alice short\n", "shorter than 8"},
        {"alice sk-0123456789 rpm=x\n", "unknown field"},
        {"alice sk-0123456789 burst=3\n", "unknown field"},
        {"alice sk-0123456789\nalice sk-9876543210\n", ":2: duplicate key id 'alice'"},
        {"# only comments\n", "no keys"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        anneal_err_clear(&e);
        CHECK(auth_init(&a, write_file(bad[i].text), 0, 0, &e) != ANNEAL_OK);
        CHECK_CONTAINS(e.msg, bad[i].msg);
        CHECK(strstr(e.msg, "sk-") == NULL); // secrets never in messages
    }
    anneal_err_clear(&e);
    CHECK_EQ(auth_init(&a, "/nonexistent/keys", 0, 0, &e), ANNEAL_ERR_IO);
    // No keys file: everyone is "anonymous", limited by the global rates.
    CHECK_EQ(auth_init(&a, NULL, 1, 0, &e), ANNEAL_OK);
    CHECK(!auth_enabled(&a));
    k = auth_check(&a, NULL);
    CHECK(k && !strcmp(k->id, "anonymous"));
    CHECK(auth_admit(&a, k, 1, &retry));
    CHECK(!auth_admit(&a, k, 1, &retry));
    auth_destroy(&a);
    unlink(write_file(""));
}

static void test_metrics_text(void) {
    metrics m;
    anneal_err e = {0};
    CHECK_EQ(metrics_init(&m, "my \"model\"", &e), ANNEAL_OK);
    metrics_observe(&m, MET_TTFT, 0.003);
    metrics_observe(&m, MET_TTFT, 0.003);
    metrics_observe(&m, MET_TTFT, 1000);
    metrics_request(&m, "/v1/completions", 200);
    metrics_request(&m, "/v1/completions", 200);
    metrics_request(&m, "/v1/completions", 400);
    metrics_finish(&m, SRQ_FIN_STOP, 10, 5, 4);
    metrics_finish(&m, SRQ_FIN_CANCEL, 3, 1, 0);
    metrics_gauges(&m, 2, 1, 30, 70, 2);
    sb b = {0};
    metrics_render(&m, &b);
    const char *want[] = {
        "# HELP anneal_time_to_first_token_seconds Time from arrival to the first generated token.\n"
        "# TYPE anneal_time_to_first_token_seconds histogram\n"
        "anneal_time_to_first_token_seconds_bucket{model=\"my \\\"model\\\"\",le=\"0.001\"} 0\n"
        "anneal_time_to_first_token_seconds_bucket{model=\"my \\\"model\\\"\",le=\"0.0025\"} 0\n"
        "anneal_time_to_first_token_seconds_bucket{model=\"my \\\"model\\\"\",le=\"0.005\"} 2\n",
        "anneal_time_to_first_token_seconds_bucket{model=\"my \\\"model\\\"\",le=\"160\"} 2\n"
        "anneal_time_to_first_token_seconds_bucket{model=\"my \\\"model\\\"\",le=\"+Inf\"} 3\n"
        "anneal_time_to_first_token_seconds_sum{model=\"my \\\"model\\\"\"} 1000.006\n"
        "anneal_time_to_first_token_seconds_count{model=\"my \\\"model\\\"\"} 3\n",
        "# TYPE anneal_requests_total counter\n"
        "anneal_requests_total{model=\"my \\\"model\\\"\",route=\"/v1/completions\",status=\"200\"} 2\n"
        "anneal_requests_total{model=\"my \\\"model\\\"\",route=\"/v1/completions\",status=\"400\"} 1\n",
        "anneal_request_finish_total{model=\"my \\\"model\\\"\",reason=\"stop\"} 1\n"
        "anneal_request_finish_total{model=\"my \\\"model\\\"\",reason=\"length\"} 0\n"
        "anneal_request_finish_total{model=\"my \\\"model\\\"\",reason=\"cancelled\"} 1\n",
        "anneal_prompt_tokens_total{model=\"my \\\"model\\\"\"} 13\n",
        "anneal_generation_tokens_total{model=\"my \\\"model\\\"\"} 6\n",
        "anneal_prefix_cache_hit_tokens_total{model=\"my \\\"model\\\"\"} 4\n",
        "anneal_requests_running{model=\"my \\\"model\\\"\"} 2\n",
        "anneal_requests_waiting{model=\"my \\\"model\\\"\"} 1\n",
        "anneal_kv_blocks_used{model=\"my \\\"model\\\"\"} 30\n",
        "anneal_kv_blocks_free{model=\"my \\\"model\\\"\"} 70\n",
        "# TYPE anneal_batch_size gauge\nanneal_batch_size{model=\"my \\\"model\\\"\"} 2\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK_CONTAINS(b.p, want[i]);
    // Every histogram has HELP, TYPE, buckets, +Inf, _sum and _count; every line ends in \n.
    CHECK(b.len > 0 && b.p[b.len - 1] == '\n');
    int types = 0;
    for (const char *p = b.p; (p = strstr(p, "# TYPE ")); p++)
        types++;
    CHECK_EQ(types, MET_N_HIST + 2 + 4 + 5);
    // promtool (Debian's prometheus package, installed by scripts/setup.sh) accepts the text.
    CHECK(access("/usr/bin/promtool", X_OK) == 0);
    {
        char path[64], cmd[160];
        snprintf(path, sizeof path, "/tmp/anneal_serve_metrics_%d", (int)getpid());
        FILE *f = fopen(path, "w");
        fwrite(b.p, 1, b.len, f);
        fclose(f);
        snprintf(cmd, sizeof cmd, "/usr/bin/promtool check metrics < %s", path);
        CHECK_EQ(system(cmd), 0);
        unlink(path);
    }
    sb_free(&b);
    metrics_destroy(&m);
}

int main(void) {
    RUN(test_bucket);
    RUN(test_keys);
    RUN(test_metrics_text);
    return TEST_EXIT();
}
