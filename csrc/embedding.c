/* embedding.c: token embedding lookup and its backward, float32 and float64 (the kernels
 * are in embedding_impl.h). */
#include "tc_generic.h"

#define T float
#define SFX f32
#include "embedding_impl.h"
#undef T
#undef SFX

#define T double
#define SFX f64
#include "embedding_impl.h"
#undef T
#undef SFX
