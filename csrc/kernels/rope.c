/* rope.c: rotary position embedding (RoPE) tables, forward and backward, float32 and float64. */
#include "tc_generic.h"

#define TC_GENERIC_1 "rope_impl.h"
#define TC_GENERIC_2 "rope_ref.h"
#include "tc_dtypes.h"
