/* bind_loss.c: bindings of the loss kernels. (Being written.) */
#include "bind.h"

PyMethodDef tc_methods_loss[] = {
    {NULL, NULL, 0, NULL},
};
