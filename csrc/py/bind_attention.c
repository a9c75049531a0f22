/* bind_attention.c: bindings of the attention kernels. (Being written.) */
#include "bind.h"

PyMethodDef tc_methods_attention[] = {
    {NULL, NULL, 0, NULL},
};
