/* fused.c: fused kernels (linear + GELU, residual add + layernorm); see fused_impl.h. */
#include "tc_generic.h"

/* AVX2 variants of the row routines (fused_impl.h), picked as the cpu section says
 * (core/cpu.c: the portable override tests both paths) */
#define TC_FUSED_X86 TC_CPU_X86
static inline int tc_fused_use_avx2(void) { return tc_cpu_pick(TC_CPU_FUSED); }

#define real_t float
#define SFX f32
#include "fused_impl.h"
#include "fused_ref.h"
#undef real_t
#undef SFX

#define real_t double
#define SFX f64
#include "fused_impl.h"
#include "fused_ref.h"
#undef real_t
#undef SFX
