// Run-time CPU feature detection (cpuid via the compiler's builtins).
#include "anneal/tensor.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static anneal_cpu g_cpu;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void detect(void) {
    __builtin_cpu_init();
    g_cpu.avx2 = __builtin_cpu_supports("avx2");
    g_cpu.fma = __builtin_cpu_supports("fma");
    g_cpu.avx512f = __builtin_cpu_supports("avx512f");
    g_cpu.avx512bw = __builtin_cpu_supports("avx512bw");
    g_cpu.avx512vl = __builtin_cpu_supports("avx512vl");
    g_cpu.avx512vnni = __builtin_cpu_supports("avx512vnni");
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) g_cpu.f16c = (c >> 29) & 1;
    // Leaf 7 sub-leaf 1: EAX bit 4 AVX-VNNI, bit 5 AVX512_BF16.
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) {
        g_cpu.avx_vnni = (a >> 4) & 1;
        g_cpu.avx512bf16 = g_cpu.avx512f && ((a >> 5) & 1);
    }
}

const anneal_cpu *anneal_cpu_get(void) {
    pthread_once(&g_once, detect);
    return &g_cpu;
}

void anneal_cpu_describe(char *buf, size_t cap) {
    const anneal_cpu *c = anneal_cpu_get();
    struct {
        bool on;
        const char *name;
    } f[] = {{c->avx2, "avx2"},         {c->fma, "fma"},           {c->f16c, "f16c"},
             {c->avx_vnni, "avx_vnni"}, {c->avx512f, "avx512f"},   {c->avx512bw, "avx512bw"},
             {c->avx512vl, "avx512vl"}, {c->avx512vnni, "avx512vnni"}, {c->avx512bf16, "avx512bf16"}};
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (!f[i].on) continue;
        int w = snprintf(buf + n, cap - n, "%s%s", n ? " " : "", f[i].name);
        if (w < 0 || (size_t)w >= cap - n) break;
        n += (size_t)w;
    }
    if (n == 0) snprintf(buf, cap, "baseline x86-64");
}
