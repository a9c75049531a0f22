/* rope.c: rotary position embedding (RoPE) tables, forward and backward, float32 and float64. */
#include "tc_generic.h"

#define T float
#define SFX f32
#include "rope_impl.h"
#undef T
#undef SFX

#define T double
#define SFX f64
#include "rope_impl.h"
#undef T
#undef SFX
