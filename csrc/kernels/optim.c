/* optim.c: SGD, Adam and AdamW updates, gradient norm and scaling, float32 and float64. */
#include "tc_generic.h"

#define real_t float
#define SFX f32
#include "optim_impl.h"
#include "optim_ref.h"
#undef real_t
#undef SFX

#define real_t double
#define SFX f64
#include "optim_impl.h"
#include "optim_ref.h"
#undef real_t
#undef SFX
