// Data-parallel training over MPI: start-up only under mpirun, the gradient all-reduce, the
// mean of a scalar over ranks, and ending the job (abort on failure so no rank hangs).
#include "anneal/train.h"

#include <mpi.h>
#include <stdlib.h>

static bool g_active; // MPI is initialised and in use
static bool g_owned;  // we called MPI_Init, so we call MPI_Finalize
static int g_rank, g_size = 1;

static anneal_status mpi_fail(anneal_err *err, int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING + 1];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
    msg[len] = 0;
    return anneal_err_set(err, ANNEAL_ERR_IO, "MPI %s failed on rank %d of %d: %s", what, g_rank,
                          g_size, len ? msg : "unknown error");
}

anneal_status anneal_mpi_init(anneal_err *err) {
    if (g_active) return ANNEAL_OK;
    int already = 0;
    MPI_Initialized(&already);
    if (!already) {
        // Only a process that mpirun started initialises MPI: a plain run stays free of
        // MPI's threads, sockets and shared memory (and of their reports under ASan).
        if (!getenv("OMPI_COMM_WORLD_SIZE")) return ANNEAL_OK;
        int provided = 0;
        // Only the main thread calls MPI; the worker pool never does.
        int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS)
            return anneal_err_set(err, ANNEAL_ERR_IO, "MPI_Init_thread failed (error %d)", rc);
        g_owned = true;
    }
    // Errors come back as codes, so they become statuses with a message.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_active = true;
    return ANNEAL_OK;
}

int anneal_mpi_rank(void) {
    return g_rank;
}

int anneal_mpi_size(void) {
    return g_size;
}

anneal_status anneal_mpi_allreduce_grads(anneal_train_model *tm, anneal_err *err) {
    if (!g_active || g_size == 1) return ANNEAL_OK;
    // MPI counts are ints: large models go in pieces.
    const size_t chunk = (size_t)1 << 30;
    for (size_t off = 0; off < tm->n_params; off += chunk) {
        size_t n = tm->n_params - off < chunk ? tm->n_params - off : chunk;
        int rc = MPI_Allreduce(MPI_IN_PLACE, tm->grads + off, (int)n, MPI_FLOAT, MPI_SUM,
                               MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "gradient all-reduce");
    }
    float s = 1.0f / (float)g_size;
    for (size_t i = 0; i < tm->n_params; i++)
        tm->grads[i] *= s;
    return ANNEAL_OK;
}

anneal_status anneal_mpi_mean(double *v, anneal_err *err) {
    if (!g_active || g_size == 1) return ANNEAL_OK;
    double sum = 0;
    int rc = MPI_Allreduce(v, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "all-reduce of a scalar");
    *v = sum / (double)g_size;
    return ANNEAL_OK;
}

anneal_status anneal_mpi_barrier(anneal_err *err) {
    if (!g_active || g_size == 1) return ANNEAL_OK;
    int rc = MPI_Barrier(MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? ANNEAL_OK : mpi_fail(err, rc, "barrier");
}

void anneal_mpi_finish(int status) {
    if (!g_active) return;
    if (status != 0 && g_size > 1) MPI_Abort(MPI_COMM_WORLD, status);
    if (g_owned) MPI_Finalize();
    g_active = g_owned = false;
    g_rank = 0;
    g_size = 1;
}
