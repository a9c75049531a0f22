/* softcap.c: logit soft-capping (Gemma 2) and its backward, float32 and float64 (the
 * kernels in softcap_impl.h, the plain reference in softcap_ref.h). */
#include "tc_generic.h"

#define TC_GENERIC_1 "softcap_impl.h"
#define TC_GENERIC_2 "softcap_ref.h"
#include "tc_dtypes.h"
