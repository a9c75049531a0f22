"""Build transformer_c._C from csrc/*.c and csrc/py/*.c against the NumPy C API, with OpenMP.

Flags: -O3 and a portable x86-64 baseline; wider instruction sets only through runtime
dispatch inside the kernels (gemm.c). Never the fast-math flags (IEEE semantics are kept;
-fno-math-errno only stops libm calls from setting errno, so sqrt loops vectorise).
"""
from glob import glob

import numpy as np
from setuptools import Extension, setup

sources = sorted(glob("csrc/*.c")) + sorted(glob("csrc/py/*.c"))
headers = sorted(glob("csrc/*.h")) + sorted(glob("csrc/py/*.h"))

ext = Extension(
    "transformer_c._C",
    sources=sources,
    depends=headers,
    include_dirs=[np.get_include(), "csrc"],
    extra_compile_args=["-O3", "-std=gnu11", "-fopenmp", "-Wall", "-Wextra",
                        "-Wno-unused-parameter", "-Wno-missing-field-initializers",
                        "-fno-strict-aliasing", "-fno-math-errno"],
    extra_link_args=["-fopenmp"],
)

setup(ext_modules=[ext])
