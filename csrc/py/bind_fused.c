/* bind_fused.c: bindings of fused.c. */
#include "bind.h"

PyMethodDef tc_methods_fused[] = {
    {NULL, NULL, 0, NULL},
};
