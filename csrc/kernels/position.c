/* position.c: sinusoidal position encodings and their addition to activations, float32 and
 * float64 (the kernels are in position_impl.h). The backward of the addition is the
 * identity, so it has no kernel. */
#include "tc_generic.h"

#define TC_GENERIC_1 "position_impl.h"
#define TC_GENERIC_2 "position_ref.h"
#include "tc_dtypes.h"
