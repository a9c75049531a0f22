/* threads.c: the OpenMP thread count used by every kernel, and whether the model fast paths
 * may split a batch across the threads (model_common.h). */
#include "tc.h"
#ifdef _OPENMP
#include <omp.h>
#endif

void tc_set_num_threads(int n)
{
#ifdef _OPENMP
    if (n > 0) omp_set_num_threads(n);
#else
    (void)n;
#endif
}

int tc_get_num_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
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
