/* glu.c: gated activations (the GLU family: SwiGLU with silu, GeGLU with gelu, ReGLU with
 * relu, ...): out = act(gate) * up for any activation of tc.h's TC_ACTIVATIONS table, float32
 * and float64; the fast kernels (glu_impl.h, over the activation table's vectorised kernels)
 * and the plain reference (glu_ref.h). Element-wise on flat (N,) arrays. */
#include "tc_generic.h"
#ifdef _OPENMP
#include <omp.h>
#endif

/* elements per block of the fast kernels: a block's scratch stays in L1, and blocks are the
 * parallel work items */
#define GLU_BLOCK 1024
/* elements from which a call runs its blocks in parallel */
#define GLU_PAR_MIN (1 << 15)

#define TC_GENERIC_1 "glu_impl.h"
#define TC_GENERIC_2 "glu_ref.h"
#include "tc_dtypes.h"
