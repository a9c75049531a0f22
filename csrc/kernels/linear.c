/* linear.c: y = x W^T + b and its backward, float32 and float64. */
#include "tc_generic.h"

#define TC_GENERIC_1 "linear_impl.h"
#include "tc_dtypes.h"
