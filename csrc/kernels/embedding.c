/* embedding.c: token embedding lookup and its backward, float32 and float64 (the kernels
 * are in embedding_impl.h). */
#include "tc_generic.h"

#define TC_GENERIC_1 "embedding_impl.h"
#define TC_GENERIC_2 "embedding_ref.h"
#include "tc_dtypes.h"
