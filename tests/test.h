// A small assertion header for anneal's unit tests: each test file is one program; a
// failed check prints file:line and the values, and the program exits non-zero.
#ifndef ANNEAL_TEST_H
#define ANNEAL_TEST_H

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failures = 0;
static const char *test_current = "";

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "%s:%d: [%s] check failed: %s\n", __FILE__, __LINE__, test_current,  \
                    #cond);                                                                      \
            test_failures++;                                                                     \
        }                                                                                        \
    } while (0)

#define CHECK_EQ(a, b)                                                                           \
    do {                                                                                         \
        long long va_ = (long long)(a), vb_ = (long long)(b);                                    \
        if (va_ != vb_) {                                                                        \
            fprintf(stderr, "%s:%d: [%s] %s == %s failed: %lld vs %lld\n", __FILE__, __LINE__,   \
                    test_current, #a, #b, va_, vb_);                                             \
            test_failures++;                                                                     \
        }                                                                                        \
    } while (0)

#define CHECK_STR(a, b)                                                                          \
    do {                                                                                         \
        const char *sa_ = (a), *sb_ = (b);                                                       \
        if (!sa_ || !sb_ || strcmp(sa_, sb_) != 0) {                                             \
            fprintf(stderr, "%s:%d: [%s] %s == %s failed: \"%s\" vs \"%s\"\n", __FILE__,         \
                    __LINE__, test_current, #a, #b, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)"); \
            test_failures++;                                                                     \
        }                                                                                        \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                    \
    do {                                                                                         \
        double da_ = (double)(a), db_ = (double)(b);                                             \
        if (!(fabs(da_ - db_) <= (tol))) {                                                       \
            fprintf(stderr, "%s:%d: [%s] |%s - %s| <= %g failed: %.9g vs %.9g\n", __FILE__,      \
                    __LINE__, test_current, #a, #b, (double)(tol), da_, db_);                    \
            test_failures++;                                                                     \
        }                                                                                        \
    } while (0)

// Message must contain `needle` (for checking that errors say what and where).
#define CHECK_CONTAINS(hay, needle)                                                              \
    do {                                                                                         \
        const char *h_ = (hay), *n_ = (needle);                                                  \
        if (!h_ || !strstr(h_, n_)) {                                                            \
            fprintf(stderr, "%s:%d: [%s] \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, \
                    test_current, h_ ? h_ : "(null)", n_);                                       \
            test_failures++;                                                                     \
        }                                                                                        \
    } while (0)

#define RUN(fn)                                                                                  \
    do {                                                                                         \
        test_current = #fn;                                                                      \
        int before_ = test_failures;                                                             \
        fn();                                                                                    \
        fprintf(stderr, "%s %s\n", test_failures == before_ ? "ok  " : "FAIL", #fn);             \
    } while (0)

#define TEST_EXIT() (test_failures ? (fprintf(stderr, "%d check(s) failed\n", test_failures), 1) : 0)

// Path of a file under ../shared (ANNEAL_SHARED overrides), in a static buffer.
static inline const char *test_shared(const char *rel) {
    static char buf[4096];
    const char *root = getenv("ANNEAL_SHARED");
    snprintf(buf, sizeof buf, "%s/%s", root && *root ? root : "../shared", rel);
    return buf;
}

// A scratch directory for this test program (created; removed by the caller if wanted).
static inline const char *test_tmpdir(void) {
    static char buf[256];
    if (!buf[0]) {
        snprintf(buf, sizeof buf, "/tmp/anneal-test-XXXXXX");
        if (!mkdtemp(buf)) {
            perror("mkdtemp");
            exit(1);
        }
    }
    return buf;
}

// Deterministic pseudo-random numbers for tests (xorshift64*).
static inline uint64_t test_rand(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

#endif
