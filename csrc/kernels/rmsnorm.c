/* rmsnorm.c: RMS normalisation over the last axis (and over the heads of a token-major
 * buffer: QK-norm) and its backward, float32 and float64 (the kernels are in
 * rmsnorm_impl.h, the plain reference in rmsnorm_ref.h). */
#include "tc_generic.h"

#define TC_GENERIC_1 "rmsnorm_impl.h"
#define TC_GENERIC_2 "rmsnorm_ref.h"
#include "tc_dtypes.h"
