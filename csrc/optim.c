/* optim.c: SGD, Adam and AdamW updates, gradient norm and scaling, float32 and float64. */
#include "tc_generic.h"

#define T float
#define SFX f32
#include "optim_impl.h"
#undef T
#undef SFX

#define T double
#define SFX f64
#include "optim_impl.h"
#undef T
#undef SFX
