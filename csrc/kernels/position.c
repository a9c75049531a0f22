/* position.c: sinusoidal position encodings and their addition to activations, float32 and
 * float64 (the kernels are in position_impl.h). The backward of the addition is the
 * identity, so it has no kernel. */
#include "tc_generic.h"

#define real_t float
#define SFX f32
#include "position_impl.h"
#include "position_ref.h"
#undef real_t
#undef SFX

#define real_t double
#define SFX f64
#include "position_impl.h"
#include "position_ref.h"
#undef real_t
#undef SFX
