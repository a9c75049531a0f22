"""Build transformer_c._C from csrc/ against the NumPy C API, with OpenMP.

csrc/ layout: tc.h (the public C API and its documentation), core/ (dtype macros, threads,
scratch memory, RNG, vector math), kernels/ (one family per file: forward and backward,
both dtypes), models/ (the whole-model drivers: training and KV-cached decoding),
tokenizer/ (byte-level BPE), py/ (the CPython bindings, the only files with Python.h).

Flags: -O3 and a portable x86-64 baseline; wider instruction sets only through runtime
dispatch inside the kernels (gemm.c). Never the fast-math flags (IEEE semantics are kept;
-fno-math-errno only stops libm calls from setting errno, so sqrt loops vectorise).

TC_SANITIZE=1 in the environment builds with AddressSanitizer + UndefinedBehaviorSanitizer
(-O1 -g, frame pointers kept, any undefined behaviour aborts) for tools/sanitize.sh; the
build without it is unchanged.
"""
import os
from glob import glob

import numpy as np
from setuptools import Extension, setup

FOLDERS = ["core", "kernels", "models", "tokenizer", "py"]
sources = [f for d in FOLDERS for f in sorted(glob(f"csrc/{d}/*.c"))]
headers = ["csrc/tc.h"] + [f for d in FOLDERS for f in sorted(glob(f"csrc/{d}/*.h"))]

compile_args = ["-O3", "-std=gnu11", "-fopenmp", "-Wall", "-Wextra",
                "-Wno-unused-parameter", "-Wno-missing-field-initializers",
                "-fno-strict-aliasing", "-fno-math-errno"]
link_args = ["-fopenmp"]
if os.environ.get("TC_SANITIZE") == "1":
    SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                "-fno-sanitize-recover=undefined"]
    compile_args += ["-O1", "-g"] + SANITIZE   # the later -O1 wins: faster build, exact lines
    link_args += SANITIZE

ext = Extension(
    "transformer_c._C",
    sources=sources,
    depends=headers,
    include_dirs=[np.get_include(), "csrc", "csrc/core", "csrc/kernels", "csrc/models"],
    extra_compile_args=compile_args,
    extra_link_args=link_args,
)

setup(ext_modules=[ext])
