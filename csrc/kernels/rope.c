/* rope.c: rotary position embedding (RoPE) tables, forward and backward, float32 and float64. */
#include "tc_generic.h"

#define real_t float
#define SFX f32
#include "rope_impl.h"
#include "rope_ref.h"
#undef real_t
#undef SFX

#define real_t double
#define SFX f64
#include "rope_impl.h"
#include "rope_ref.h"
#undef real_t
#undef SFX
