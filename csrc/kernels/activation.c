/* activation.c: ReLU and GELU (exact erf form and GPT-2's tanh form), float32 and float64.
 * Element-wise kernels on flat (N,) arrays: any shape is one flat array to them. */
#include "tc_generic.h"

#define real_t float
#define SFX f32
#include "activation_impl.h"
#include "activation_ref.h"
#undef real_t
#undef SFX

#define real_t double
#define SFX f64
#include "activation_impl.h"
#include "activation_ref.h"
#undef real_t
#undef SFX
