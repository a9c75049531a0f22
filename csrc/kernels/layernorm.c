/* layernorm.c: layer normalisation over the last axis and its backward, float32 and
 * float64 (the kernels are in layernorm_impl.h). */
#include "tc_generic.h"

#define TC_GENERIC_1 "layernorm_impl.h"
#define TC_GENERIC_2 "layernorm_ref.h"
#include "tc_dtypes.h"
