/* fused.c: fused kernels (linear + GELU, residual add + layernorm); see fused_impl.h. */
#include "tc_generic.h"

/* AVX2 variants of the row routines (fused_impl.h), picked as the cpu section says
 * (core/cpu.c: the portable override tests both paths) */
#define TC_FUSED_X86 TC_CPU_X86
static inline int tc_fused_use_avx2(void) { return tc_cpu_pick(TC_CPU_FUSED); }

#define TC_GENERIC_1 "fused_impl.h"
#define TC_GENERIC_2 "fused_ref.h"
#include "tc_dtypes.h"
