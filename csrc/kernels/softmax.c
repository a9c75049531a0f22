/* softmax.c: softmax and log-softmax along one axis and their backward, float32 and float64.
 * The axis is the middle of an (outer, C, inner) view of a C-contiguous array, so any axis
 * is handled in place without a transposed copy. */
#include "tc_generic.h"

/* columns of the (C, inner) slab one task handles when inner > 1 */
#define TC_SOFTMAX_TILE 64
/* elements (outer * C * inner) from which a call runs in parallel: below, a parallel
 * region costs more than it saves (exp at about 1 ns an element, one thread) */
#define TC_SOFTMAX_PAR_MIN 65536

#define TC_GENERIC_1 "softmax_impl.h"
#define TC_GENERIC_2 "softmax_ref.h"
#include "tc_dtypes.h"
