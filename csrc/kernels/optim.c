/* optim.c: SGD, Adam and AdamW updates, gradient norm and scaling, and the Muon update of
 * hidden weight matrices (on tc_gemm), float32 and float64. */
#include "tc_generic.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define TC_GENERIC_1 "optim_impl.h"
#define TC_GENERIC_2 "optim_ref.h"
#include "tc_dtypes.h"

#define TC_GENERIC_1 "optim_muon_impl.h"
#define TC_GENERIC_2 "optim_muon_ref.h"
#include "tc_dtypes.h"
