/* bind_dropout.c: bindings of the dropout kernels. (Being written.) */
#include "bind.h"

PyMethodDef tc_methods_dropout[] = {
    {NULL, NULL, 0, NULL},
};
