/* tc_dtypes.h: compile a family's generic sources once per dtype (tc_generic.h explains
 * real_t, SFX and FN). A <family>.c names its headers and includes this file:
 *
 *     #define TC_GENERIC_1 "layernorm_impl.h"
 *     #define TC_GENERIC_2 "layernorm_ref.h"      (optional; _3 likewise)
 *     #include "tc_dtypes.h"
 *
 * Each header is then compiled with real_t float / SFX f32 / TC_F64 0, then real_t double /
 * SFX f64 / TC_F64 1; the TC_GENERIC_* names are undefined afterwards, so the file can be
 * included again for another group. No include guard: it is meant to be included often. */

#define real_t float
#define SFX f32
#define TC_F64 0
#include TC_GENERIC_1
#ifdef TC_GENERIC_2
#include TC_GENERIC_2
#endif
#ifdef TC_GENERIC_3
#include TC_GENERIC_3
#endif
#undef real_t
#undef SFX
#undef TC_F64

#define real_t double
#define SFX f64
#define TC_F64 1
#include TC_GENERIC_1
#ifdef TC_GENERIC_2
#include TC_GENERIC_2
#endif
#ifdef TC_GENERIC_3
#include TC_GENERIC_3
#endif
#undef real_t
#undef SFX
#undef TC_F64

#undef TC_GENERIC_1
#undef TC_GENERIC_2
#undef TC_GENERIC_3
