/* loss.c: cross-entropy (fused log-softmax + NLL) forward and backward, float32 and float64. */
#include "tc_generic.h"

/* elements (N * V) from which a call runs in parallel */
#define TC_LOSS_PAR_MIN 32768
/* classes up to which a backward without the forward's lse keeps exp(x - max) of a row in a
 * stack buffer (one exp per element instead of two) */
#define LOSS_SCRATCH 2048

#define TC_GENERIC_1 "loss_impl.h"
#define TC_GENERIC_2 "loss_ref.h"
#include "tc_dtypes.h"
