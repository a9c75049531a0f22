/* bind_embedding.c: bindings of the embedding kernels. (Being written.) */
#include "bind.h"

PyMethodDef tc_methods_embedding[] = {
    {NULL, NULL, 0, NULL},
};
