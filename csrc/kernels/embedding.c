/* embedding.c: token embedding lookup and its backward, float32 and float64 (the kernels
 * are in embedding_impl.h). */
#include "tc_generic.h"

#define real_t float
#define SFX f32
#include "embedding_impl.h"
#include "embedding_ref.h"
#undef real_t
#undef SFX

#define real_t double
#define SFX f64
#include "embedding_impl.h"
#include "embedding_ref.h"
#undef real_t
#undef SFX
