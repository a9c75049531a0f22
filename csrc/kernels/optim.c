/* optim.c: SGD, Adam and AdamW updates, gradient norm and scaling, float32 and float64. */
#include "tc_generic.h"

#define TC_GENERIC_1 "optim_impl.h"
#define TC_GENERIC_2 "optim_ref.h"
#include "tc_dtypes.h"
