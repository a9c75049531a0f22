/* bind_activation.c: bindings of the activation kernels. (Being written.) */
#include "bind.h"

PyMethodDef tc_methods_activation[] = {
    {NULL, NULL, 0, NULL},
};
