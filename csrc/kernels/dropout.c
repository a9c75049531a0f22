/* dropout.c: inverted dropout with a counter-based RNG (rng.h), float32 and float64. The
 * mask is never stored: backward regenerates it from (seed, element index). */
#include "tc_generic.h"
#include "rng.h"

/* elements per parallel task: a multiple of 4 (one Philox block gives 4 words), so every
 * chunk starts on a block boundary */
#define TC_DROPOUT_CHUNK 1024

#define TC_GENERIC_1 "dropout_impl.h"
#define TC_GENERIC_2 "dropout_ref.h"
#include "tc_dtypes.h"
