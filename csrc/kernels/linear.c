/* linear.c: y = x W^T + b and its backward, float32 and float64. */
#include "tc_generic.h"

#define real_t float
#define SFX f32
#include "linear_impl.h"
#undef real_t
#undef SFX

#define real_t double
#define SFX f64
#include "linear_impl.h"
#undef real_t
#undef SFX
