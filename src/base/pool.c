// Fork-join thread pool: workers spin briefly on a generation counter, then sleep on a
// condition variable, so back-to-back runs (one per matmul in a decode step) are cheap.
#include "anneal/base.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define SPIN_ITERS 20000

struct anneal_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_cond_t done_cv;
    _Atomic uint64_t gen;     // bumped for each run
    _Atomic int pending;      // workers still running the current run
    _Atomic bool stop;
    anneal_pool_fn fn;
    void *arg;
};

typedef struct worker_arg {
    anneal_pool *p;
    int ith;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker(void *varg) {
    worker_arg wa = *(worker_arg *)varg;
    anneal_free(varg);
    anneal_pool *p = wa.p;
    uint64_t seen = 0;
    for (;;) {
        uint64_t g = atomic_load_explicit(&p->gen, memory_order_acquire);
        for (int i = 0; g == seen && i < SPIN_ITERS; i++) {
            cpu_relax();
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen &&
                   !atomic_load(&p->stop))
                pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = g;
        p->fn(p->arg, wa.ith, p->n);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

anneal_status anneal_pool_new(int n_threads, anneal_pool **out, anneal_err *err) {
    *out = NULL;
    if (n_threads < 1 || n_threads > 1024)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "thread count %d is not in 1..1024", n_threads);
    anneal_pool *p = anneal_calloc(1, sizeof *p);
    if (!p) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory for a thread pool");
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    p->threads = anneal_calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        anneal_pool_free(p);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory for a thread pool");
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = anneal_malloc(sizeof *wa);
        int rc = wa ? 0 : ENOMEM;
        if (wa) {
            wa->p = p;
            wa->ith = i;
            rc = pthread_create(&p->threads[i], NULL, worker, wa);
            if (rc) anneal_free(wa);
        }
        if (rc) {
            p->n = i; // only threads 1..i-1 exist
            anneal_pool_free(p);
            return anneal_err_set(err, ANNEAL_ERR_INTERNAL, "cannot start worker thread %d: %s", i,
                                  strerror(rc));
        }
    }
    *out = p;
    return ANNEAL_OK;
}

void anneal_pool_free(anneal_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    if (p->threads)
        for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done_cv);
    anneal_free(p->threads);
    anneal_free(p);
}

int anneal_pool_size(const anneal_pool *p) { return p ? p->n : 1; }

void anneal_pool_run(anneal_pool *p, anneal_pool_fn fn, void *arg) {
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    for (int i = 0; atomic_load_explicit(&p->pending, memory_order_acquire) && i < SPIN_ITERS; i++)
        cpu_relax();
    if (atomic_load_explicit(&p->pending, memory_order_acquire)) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load_explicit(&p->pending, memory_order_acquire))
            pthread_cond_wait(&p->done_cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
