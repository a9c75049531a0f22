/* threads.c: the OpenMP thread count used by every kernel. */
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
