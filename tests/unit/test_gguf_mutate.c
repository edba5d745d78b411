// Acceptance check for the GGUF reader: 1,000 truncated or corrupted copies of the fixtures
// (and of a small built file with tensors) each go through the real `anneal gguf show`; it
// must exit 0 or 1, never die on a signal or a sanitizer report, never hang, and say
// "offset" when it refuses a file.
#include "anneal/gguf.h"
#include "anneal/tensor.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define N_CASES 1000
#define N_SLOTS 2 // children run at once
#define TIMEOUT_NS (20ull * 1000000000ull)

typedef struct field {
    uint64_t off;
    uint8_t width; // 4 or 8
} field;

typedef struct seed {
    const char *name;
    uint8_t *data;
    size_t size;
    field *fields; // length, count and type fields found by walking the parsed file
    size_t n_fields, cap_fields;
    unsigned weight;
} seed;

static void add_field(seed *s, const void *at, uint8_t width) {
    const uint8_t *p = at;
    if (p < s->data || p + width > s->data + s->size) return;
    if (s->n_fields == s->cap_fields) {
        s->cap_fields = s->cap_fields ? s->cap_fields * 2 : 256;
        s->fields = realloc(s->fields, s->cap_fields * sizeof *s->fields);
        if (!s->fields) exit(1);
    }
    s->fields[s->n_fields++] = (field){(uint64_t)(p - s->data), width};
}

// Array header fields (element type, count) sit just before the elements; for nested and
// string arrays only the first few elements are recorded.
static void add_array_fields(seed *s, const anneal_gguf_value *v, int depth) {
    if (v->arr.n == 0 || depth > 3) return;
    if (v->arr.elem == ANNEAL_GGUF_STRING) {
        const uint8_t *first = (const uint8_t *)v->arr.strs[0].ptr - 8;
        add_field(s, first - 12, 4);
        add_field(s, first - 8, 8);
        for (uint64_t i = 0; i < v->arr.n && i < 12; i++)
            add_field(s, v->arr.strs[i].ptr - 8, 8);
        add_field(s, v->arr.strs[v->arr.n - 1].ptr - 8, 8);
    } else if (v->arr.elem == ANNEAL_GGUF_ARRAY) {
        for (uint64_t i = 0; i < v->arr.n && i < 4; i++)
            add_array_fields(s, &v->arr.vals[i], depth + 1);
    } else {
        add_field(s, v->arr.data - 12, 4);
        add_field(s, v->arr.data - 8, 8);
    }
}

static void find_fields(seed *s) {
    anneal_gguf *g = NULL;
    anneal_err err = {0};
    if (anneal_gguf_open_memory(s->data, s->size, &g, &err)) {
        fprintf(stderr, "%s: %s\n", s->name, err.msg);
        exit(1);
    }
    add_field(s, s->data + 4, 4);
    add_field(s, s->data + 8, 8);
    add_field(s, s->data + 16, 8);
    for (uint64_t i = 0; i < anneal_gguf_n_kv(g); i++) {
        const anneal_gguf_kv *kv = anneal_gguf_kv_at(g, i);
        const uint8_t *type = (const uint8_t *)kv->key.ptr + kv->key.len;
        add_field(s, kv->key.ptr - 8, 8);
        add_field(s, type, 4);
        if (kv->value.type == ANNEAL_GGUF_STRING) add_field(s, type + 4, 8);
        if (kv->value.type == ANNEAL_GGUF_ARRAY) {
            add_field(s, type + 4, 4);
            add_field(s, type + 8, 8);
            add_array_fields(s, &kv->value, 0);
        }
    }
    for (uint64_t i = 0; i < anneal_gguf_n_tensors(g); i++) {
        const anneal_gguf_tensor *t = anneal_gguf_tensor_at(g, i);
        const uint8_t *p = (const uint8_t *)t->name.ptr + t->name.len;
        add_field(s, t->name.ptr - 8, 8);
        add_field(s, p, 4);
        for (uint32_t d = 0; d < t->n_dims; d++)
            add_field(s, p + 4 + 8 * d, 8);
        add_field(s, p + 4 + 8 * t->n_dims, 4);
        add_field(s, p + 8 + 8 * t->n_dims, 8);
    }
    anneal_gguf_close(g);
}

static void load_seed(seed *s, const char *path) {
    anneal_map m;
    anneal_err err = {0};
    if (anneal_map_file(path, &m, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    s->data = malloc(m.size);
    if (!s->data) exit(1);
    memcpy(s->data, m.data, m.size);
    s->size = m.size;
    anneal_unmap(&m);
    find_fields(s);
}

// A small file that reaches the tensor-info and nested-array paths the vocabularies lack.
static void build_small(const char *path) {
    static uint8_t data[2048];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 13);
    anneal_gguf_writer *w = anneal_gguf_writer_new();
    anneal_gguf_writer_set_str(w, "general.architecture", "llama");
    anneal_gguf_writer_set_u32(w, "general.alignment", 64);
    anneal_gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f);
    anneal_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    anneal_gguf_str strs[3] = {{"<s>", 3}, {"\xe2\x96\x81the", 6}, {"", 0}};
    anneal_gguf_value sa = {.type = ANNEAL_GGUF_ARRAY};
    sa.arr.elem = ANNEAL_GGUF_STRING;
    sa.arr.n = 3;
    sa.arr.strs = strs;
    anneal_gguf_writer_set_value(w, "tokenizer.ggml.tokens", &sa);
    anneal_gguf_value ia = {.type = ANNEAL_GGUF_ARRAY};
    ia.arr.elem = ANNEAL_GGUF_INT32;
    ia.arr.n = 3;
    ia.arr.data = data;
    anneal_gguf_value nested[2] = {sa, ia};
    anneal_gguf_value na = {.type = ANNEAL_GGUF_ARRAY};
    na.arr.elem = ANNEAL_GGUF_ARRAY;
    na.arr.n = 2;
    na.arr.vals = nested;
    anneal_gguf_writer_set_value(w, "test.nested", &na);
    uint64_t d1[] = {64, 2}, d2[] = {16}, d3[] = {256}, d4[] = {32, 1, 1, 2};
    anneal_gguf_writer_add_tensor(w, "token_embd.weight", ANNEAL_TYPE_Q4_0, 2, d1, data, 72);
    anneal_gguf_writer_add_tensor(w, "output_norm.weight", ANNEAL_TYPE_F32, 1, d2, data, 64);
    anneal_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", ANNEAL_TYPE_Q4_K, 1, d3, data, 144);
    anneal_gguf_writer_add_tensor(w, "blk.0.attn_k.weight", ANNEAL_TYPE_F16, 4, d4, data, 128);
    anneal_err err = {0};
    if (anneal_gguf_writer_write(w, path, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    anneal_gguf_writer_free(w);
}

// ---- mutations ------------------------------------------------------------------------

static uint64_t rnd(uint64_t *st, uint64_t n) {
    return n ? test_rand(st) % n : 0;
}

// A position biased toward the first 4 KiB, where the header and early fields live.
static size_t pick_pos(uint64_t *st, size_t size) {
    if (size > 4096 && rnd(st, 2)) return (size_t)rnd(st, 4096);
    return (size_t)rnd(st, size);
}

static uint64_t interesting(uint64_t *st, uint64_t orig, size_t file_size) {
    switch (rnd(st, 14)) {
    case 0:
        return 0;
    case 1:
        return 1;
    case 2:
        return orig + 1;
    case 3:
        return orig - 1;
    case 4:
        return orig * 2 + 7;
    case 5:
        return 1ull << 31;
    case 6:
        return 1ull << 32;
    case 7:
        return 1ull << 60;
    case 8:
        return 1ull << 63;
    case 9:
        return UINT64_MAX;
    case 10:
        return file_size;
    case 11:
        return 9; // the array type
    case 12:
        return 13;
    default:
        return test_rand(st);
    }
}

// Writes the mutated copy of s to path; returns a short description for failure reports.
static void mutate(uint64_t *st, const seed *s, const char *path, char *desc, size_t cap) {
    size_t n = s->size;
    uint8_t *d = malloc(n);
    if (!d) exit(1);
    memcpy(d, s->data, n);
    unsigned kind = (unsigned)rnd(st, 100);
    if (kind < 30) {
        n = pick_pos(st, s->size);
        snprintf(desc, cap, "%s truncated to %zu bytes", s->name, n);
    } else if (kind < 65) {
        int flips = 1 + (int)rnd(st, 8);
        int o = snprintf(desc, cap, "%s with %d byte flips at", s->name, flips);
        for (int i = 0; i < flips; i++) {
            size_t pos = pick_pos(st, n);
            d[pos] ^= (uint8_t)(1 + rnd(st, 255));
            if (o > 0 && (size_t)o < cap) o += snprintf(desc + o, cap - (size_t)o, " %zu", pos);
        }
    } else {
        const field *f = &s->fields[rnd(st, s->n_fields)];
        uint64_t orig = 0;
        for (int b = f->width - 1; b >= 0; b--)
            orig = orig << 8 | d[f->off + (uint64_t)b];
        uint64_t v = interesting(st, orig, s->size);
        for (int b = 0; b < f->width; b++)
            d[f->off + (uint64_t)b] = (uint8_t)(v >> (8 * b));
        snprintf(desc, cap, "%s with the %u-byte field at %" PRIu64 " set to %" PRIu64, s->name,
                 f->width, f->off, f->width == 4 ? (v & 0xFFFFFFFFu) : v);
    }
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(d, 1, n, fp) != n || fclose(fp) != 0) {
        perror(path);
        exit(1);
    }
    free(d);
}

// ---- running the CLI ------------------------------------------------------------------

typedef struct slot {
    pid_t pid; // 0 = free
    uint64_t start_ns;
    int case_no;
    char file[512], err_file[512], desc[400];
} slot;

static char **child_env;

// The children's environment: sanitizers exit with 86-88, apart from the CLI's 0/1/2 (their
// default, 1, would pass for "invalid file").
static void make_env(void) {
    size_t n = 0;
    while (environ[n])
        n++;
    child_env = calloc(n + 4, sizeof *child_env);
    if (!child_env) exit(1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "ASAN_OPTIONS=", 13) && strncmp(environ[i], "UBSAN_OPTIONS=", 14) &&
            strncmp(environ[i], "LSAN_OPTIONS=", 13))
            child_env[k++] = environ[i];
    child_env[k++] = "ASAN_OPTIONS=exitcode=86:detect_leaks=1";
    child_env[k++] = "UBSAN_OPTIONS=halt_on_error=1:exitcode=87:print_stacktrace=1";
    child_env[k++] = "LSAN_OPTIONS=exitcode=88";
    child_env[k] = NULL;
}

static pid_t spawn_show(const char *bin, slot *s, bool json) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, s->err_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char *argv[] = {(char *)bin, "gguf", "show", s->file, json ? "--json" : NULL, NULL};
    pid_t pid = 0;
    int rc = posix_spawn(&pid, bin, &fa, NULL, argv, child_env);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        fprintf(stderr, "cannot run %s: %s\n", bin, strerror(rc));
        exit(1);
    }
    return pid;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int n_valid, n_invalid;

static void check_result(slot *s, int status) {
    char errbuf[4096] = "";
    FILE *f = fopen(s->err_file, "rb");
    if (f) {
        size_t r = fread(errbuf, 1, sizeof errbuf - 1, f);
        errbuf[r] = '\0';
        fclose(f);
    }
    bool ok = true;
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "case %d (%s): killed by signal %d\n", s->case_no, s->desc,
                WTERMSIG(status));
        ok = false;
    } else if (WEXITSTATUS(status) == 0) {
        n_valid++;
    } else if (WEXITSTATUS(status) == 1) {
        n_invalid++;
        if (!strstr(errbuf, "offset")) {
            fprintf(stderr, "case %d (%s): exit 1 without an offset in: %s\n", s->case_no, s->desc,
                    errbuf);
            ok = false;
        }
    } else {
        fprintf(stderr, "case %d (%s): exit status %d\n", s->case_no, s->desc, WEXITSTATUS(status));
        ok = false;
    }
    if (strstr(errbuf, "Sanitizer") || strstr(errbuf, "runtime error")) ok = false;
    if (!ok) {
        fprintf(stderr, "  stderr: %.2000s\n", errbuf);
        test_failures++;
    }
}

// Waits for one child to end (or kills it as a hang); returns its slot.
static slot *reap(slot *slots) {
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid > 0) {
            for (int i = 0; i < N_SLOTS; i++) {
                if (slots[i].pid == pid) {
                    check_result(&slots[i], status);
                    slots[i].pid = 0;
                    return &slots[i];
                }
            }
            continue;
        }
        uint64_t t = now_ns();
        for (int i = 0; i < N_SLOTS; i++) {
            if (slots[i].pid && t - slots[i].start_ns > TIMEOUT_NS) {
                fprintf(stderr, "case %d (%s): still running after 20 s (hang)\n", slots[i].case_no,
                        slots[i].desc);
                kill(slots[i].pid, SIGKILL);
                waitpid(slots[i].pid, &status, 0);
                slots[i].pid = 0;
                test_failures++;
                return &slots[i];
            }
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static void test_mutations(void) {
    const char *bin = getenv("ANNEAL_BIN");
    if (!bin || !*bin) {
        fprintf(stderr, "ANNEAL_BIN is not set: it must name the anneal binary of this build\n");
        test_failures++;
        return;
    }
    char small[512];
    snprintf(small, sizeof small, "%s/small.gguf", test_tmpdir());
    build_small(small);
    static seed seeds[] = {
        {.name = "small", .weight = 35},
        {.name = "fixtures/vocab/ggml-vocab-llama-spm.gguf", .weight = 25},
        {.name = "fixtures/vocab/ggml-vocab-phi-3.gguf", .weight = 20},
        {.name = "fixtures/vocab/ggml-vocab-gpt-2.gguf", .weight = 10},
        {.name = "fixtures/vocab/ggml-vocab-deepseek-llm.gguf", .weight = 10},
    };
    size_t n_seeds = sizeof seeds / sizeof seeds[0];
    unsigned total_weight = 0;
    for (size_t i = 0; i < n_seeds; i++) {
        load_seed(&seeds[i], i == 0 ? small : test_shared(seeds[i].name));
        total_weight += seeds[i].weight;
    }
    make_env();
    slot slots[N_SLOTS] = {0};
    for (int i = 0; i < N_SLOTS; i++) {
        snprintf(slots[i].file, sizeof slots[i].file, "%s/m%d.gguf", test_tmpdir(), i);
        snprintf(slots[i].err_file, sizeof slots[i].err_file, "%s/m%d.err", test_tmpdir(), i);
    }
    uint64_t rng = 0x9e3779b97f4a7c15ull; // fixed: every run tries the same 1,000 files
    uint64_t t0 = now_ns();
    int running = 0;
    for (int c = 0; c < N_CASES; c++) {
        slot *s = NULL;
        for (int i = 0; i < N_SLOTS && !s; i++)
            if (!slots[i].pid) s = &slots[i];
        if (!s) {
            s = reap(slots);
            running--;
        }
        unsigned w = (unsigned)rnd(&rng, total_weight);
        size_t k = 0;
        while (w >= seeds[k].weight)
            w -= seeds[k++].weight;
        mutate(&rng, &seeds[k], s->file, s->desc, sizeof s->desc);
        s->case_no = c;
        s->start_ns = now_ns();
        s->pid = spawn_show(bin, s, c % 4 == 3);
        running++;
    }
    while (running-- > 0)
        reap(slots);
    fprintf(stderr, "%d mutated files: %d shown, %d refused with an offset; %.1f s\n", N_CASES,
            n_valid, n_invalid, (double)(now_ns() - t0) / 1e9);
    // The mutations must actually reach the checks: most copies are refused, some survive.
    CHECK(n_invalid > N_CASES / 2);
    CHECK(n_valid > N_CASES / 20);
    for (int i = 0; i < N_SLOTS; i++) {
        unlink(slots[i].file);
        unlink(slots[i].err_file);
    }
    unlink(small);
    rmdir(test_tmpdir());
    for (size_t i = 0; i < n_seeds; i++) {
        free(seeds[i].data);
        free(seeds[i].fields);
    }
    free(child_env);
}

int main(void) {
    RUN(test_mutations);
    return TEST_EXIT();
}
