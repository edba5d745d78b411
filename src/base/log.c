// Levelled logging to stderr: plain text or JSON lines, with an optional request id.
#include "anneal/base.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static anneal_log_level g_level = ANNEAL_LOG_INFO;
static bool g_json = false;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static const char *NAMES[] = {"debug", "info", "warn", "error", "off"};

static void init_from_env(void) {
    const char *lv = getenv("ANNEAL_LOG");
    anneal_log_level l;
    if (lv && anneal_log_level_parse(lv, &l) == ANNEAL_OK) g_level = l;
    const char *fmt = getenv("ANNEAL_LOG_FORMAT");
    if (fmt && strcasecmp(fmt, "json") == 0) g_json = true;
}

anneal_status anneal_log_level_parse(const char *s, anneal_log_level *out) {
    for (int i = 0; i <= ANNEAL_LOG_OFF; i++) {
        if (strcasecmp(s, NAMES[i]) == 0) {
            *out = (anneal_log_level)i;
            return ANNEAL_OK;
        }
    }
    return ANNEAL_ERR_INVALID_ARG;
}

void anneal_log_set_level(anneal_log_level level) {
    pthread_once(&g_once, init_from_env);
    g_level = level;
}

anneal_log_level anneal_log_get_level(void) {
    pthread_once(&g_once, init_from_env);
    return g_level;
}

void anneal_log_set_json(bool json) {
    pthread_once(&g_once, init_from_env);
    g_json = json;
}

void anneal_log(anneal_log_level level, const char *req, const char *fmt, ...) {
    pthread_once(&g_once, init_from_env);
    if (level < g_level || level >= ANNEAL_LOG_OFF) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03ldZ", ts.tv_nsec / 1000000);
    pthread_mutex_lock(&g_mu);
    if (g_json) {
        fprintf(stderr, "{\"ts\":\"%s\",\"level\":\"%s\"", when, NAMES[level]);
        if (req) {
            fputs(",\"req\":", stderr);
            anneal_json_write_str(stderr, req, strlen(req));
        }
        fputs(",\"msg\":", stderr);
        anneal_json_write_str(stderr, msg, strlen(msg));
        fputs("}\n", stderr);
    } else if (req) {
        fprintf(stderr, "%s %s [%s] %s\n", when, NAMES[level], req, msg);
    } else {
        fprintf(stderr, "%s %s %s\n", when, NAMES[level], msg);
    }
    pthread_mutex_unlock(&g_mu);
}
