/* bind_position.c: bindings of the position kernels. (Being written.) */
#include "bind.h"

PyMethodDef tc_methods_position[] = {
    {NULL, NULL, 0, NULL},
};
