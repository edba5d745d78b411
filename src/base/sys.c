// Thread count (the one place that decides it) and clocks.
#include "anneal/base.h"

#include <sched.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int anneal_thread_count(void) {
    const char *env = getenv("ANNEAL_THREADS");
    if (env && *env) {
        char *end;
        long n = strtol(env, &end, 10);
        if (*end == '\0' && n >= 1 && n <= 1024) return (int)n;
        ANNEAL_WARN("ANNEAL_THREADS=%s is not a number from 1 to 1024; ignoring it", env);
    }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n >= 1) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n >= 1 ? (int)n : 1;
}

uint64_t anneal_time_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void anneal_time_utc(char *buf, size_t cap) {
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
