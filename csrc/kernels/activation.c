/* activation.c: the activations of tc.h's TC_ACTIVATIONS list (ReLU, GELU in its exact erf
 * and GPT-2 tanh forms, SiLU), float32 and float64, and their table.
 * Element-wise kernels on flat (N,) arrays: any shape is one flat array to them. */
#include "tc_generic.h"

#define TC_GENERIC_1 "activation_impl.h"
#define TC_GENERIC_2 "activation_ref.h"
#include "tc_dtypes.h"

/* The activation table (tc_activation_*, tc_linear_activation_*): one row per TC_ACT_*. */
#define TC_GENERIC_1 "activation_table_impl.h"
#include "tc_dtypes.h"

int tc_linear_activation_fused(int act)
{
    if (act < 0 || act >= TC_ACT_COUNT) return TC_EINVAL;
    return act_fused_f32[act].lin_fwd != NULL && act_fused_f64[act].lin_fwd != NULL;
}
