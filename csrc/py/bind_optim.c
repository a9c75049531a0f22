/* bind_optim.c: bindings of the optim kernels. (Being written.) */
#include "bind.h"

PyMethodDef tc_methods_optim[] = {
    {NULL, NULL, 0, NULL},
};
