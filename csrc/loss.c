/* loss.c: cross-entropy (fused log-softmax + NLL) forward and backward, float32 and float64. */
#include "tc_generic.h"

/* elements (N * V) from which a call runs in parallel */
#define TC_LOSS_PAR_MIN 32768

#define T float
#define SFX f32
#include "loss_impl.h"
#undef T
#undef SFX

#define T double
#define SFX f64
#include "loss_impl.h"
#undef T
#undef SFX
