/* layernorm.c: layer normalisation over the last axis and its backward, float32 and
 * float64 (the kernels are in layernorm_impl.h). */
#include "tc_generic.h"

#define real_t float
#define SFX f32
#include "layernorm_impl.h"
#include "layernorm_ref.h"
#undef real_t
#undef SFX

#define real_t double
#define SFX f64
#include "layernorm_impl.h"
#include "layernorm_ref.h"
#undef real_t
#undef SFX
