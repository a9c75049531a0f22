/* fused.c: fused kernels (linear + GELU, residual add + layernorm); see fused_impl.h. */
#include "tc_generic.h"

#define T float
#define SFX f32
#include "fused_impl.h"
#undef T
#undef SFX

#define T double
#define SFX f64
#include "fused_impl.h"
#undef T
#undef SFX
