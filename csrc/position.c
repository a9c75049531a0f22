/* position.c: sinusoidal position encodings and their addition to activations, float32 and
 * float64 (the kernels are in position_impl.h). The backward of the addition is the
 * identity, so it has no kernel. */
#include "tc_generic.h"

#define T float
#define SFX f32
#include "position_impl.h"
#undef T
#undef SFX

#define T double
#define SFX f64
#include "position_impl.h"
#undef T
#undef SFX
