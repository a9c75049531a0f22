/* threads.c: the OpenMP thread count used by every kernel, and whether the model fast paths
 * may split a batch across the threads (model_common.h).
 *
 * The count is process-wide: OpenMP's own setting (omp_set_num_threads) belongs to the
 * calling thread only, so tc_set_num_threads stores the count in one atomic and
 * tc_sync_num_threads, called by every entry point of the bindings before a kernel runs
 * (bind.h, TC_PY_BEGIN_ALLOW_THREADS), applies it to the calling thread. Unset (0), each
 * thread keeps OpenMP's default (OMP_NUM_THREADS or the core count). */
#include "tc.h"
#ifdef _OPENMP
#include <omp.h>
#endif

static int tc_num_threads_set = 0; /* 0: never set */

int tc_max_num_threads(void)
{
#ifdef _OPENMP
    const int procs = omp_get_num_procs();
    return procs > 256 ? 4 * procs : 1024;
#else
    return 1024;
#endif
}

int tc_set_num_threads(int n)
{
    if (n < 1 || n > tc_max_num_threads()) return TC_EINVAL;
    __atomic_store_n(&tc_num_threads_set, n, __ATOMIC_RELAXED);
    tc_sync_num_threads();
    return TC_OK;
}

int tc_get_num_threads(void)
{
    const int n = __atomic_load_n(&tc_num_threads_set, __ATOMIC_RELAXED);
#ifdef _OPENMP
    return n > 0 ? n : omp_get_max_threads();
#else
    (void)n;
    return 1;
#endif
}

int tc_openmp_version(void)
{
#ifdef _OPENMP
    return _OPENMP;
#else
    return 0;
#endif
}

void tc_sync_num_threads(void)
{
#ifdef _OPENMP
    const int n = __atomic_load_n(&tc_num_threads_set, __ATOMIC_RELAXED);
    if (n > 0 && !omp_in_parallel() && omp_get_max_threads() != n) omp_set_num_threads(n);
#endif
}

static int tc_data_parallel_on = 1;

void tc_set_data_parallel(int on)
{
    __atomic_store_n(&tc_data_parallel_on, on != 0, __ATOMIC_RELAXED);
}

int tc_get_data_parallel(void)
{
    return __atomic_load_n(&tc_data_parallel_on, __ATOMIC_RELAXED);
}
