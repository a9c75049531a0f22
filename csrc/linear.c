/* linear.c: y = x W^T + b and its backward, float32 and float64. */
#include "tc_generic.h"

#define T float
#define SFX f32
#include "linear_impl.h"
#undef T
#undef SFX

#define T double
#define SFX f64
#include "linear_impl.h"
#undef T
#undef SFX
