/* activation.c: the activations of tc.h's TC_ACTIVATIONS list (ReLU, GELU in its exact erf
 * and GPT-2 tanh forms, SiLU), float32 and float64, and their table.
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

/* The activation table (tc_activation_*, tc_linear_activation_*): one row per TC_ACT_*. */
#define real_t float
#define SFX f32
#include "activation_table_impl.h"
#undef real_t
#undef SFX

#define real_t double
#define SFX f64
#include "activation_table_impl.h"
#undef real_t
#undef SFX

int tc_linear_activation_fused(int act)
{
    if (act < 0 || act >= TC_ACT_COUNT) return TC_EINVAL;
    return act_fused_f32[act].lin_fwd != NULL && act_fused_f64[act].lin_fwd != NULL;
}
