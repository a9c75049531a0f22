/* bind_softmax.c: bindings of the softmax kernels. (Being written.) */
#include "bind.h"

PyMethodDef tc_methods_softmax[] = {
    {NULL, NULL, 0, NULL},
};
