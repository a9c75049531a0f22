"""Build transformer_c._C from csrc/ against the NumPy C API, with OpenMP.

csrc/ layout: tc.h (the public C API and its documentation), core/ (dtype macros, threads,
scratch memory, RNG, vector math), kernels/ (one family per file: forward and backward,
both dtypes), models/ (the whole-model drivers: training and KV-cached decoding),
tokenizer/ (byte-level BPE), py/ (the CPython bindings, the only files with Python.h).

Flags: -O3 and a portable x86-64 baseline; wider instruction sets only through runtime
dispatch inside the kernels (gemm.c). Never the fast-math flags (IEEE semantics are kept;
-fno-math-errno only stops libm calls from setting errno, so sqrt loops vectorise).

Editable installs (pip install -e .) reuse the compiled extension: setuptools builds an
editable wheel in fresh temporary directories every time, so without help any reinstall
(adding an extra: pip install -e ".[plot]") recompiled all of csrc/. build_ext below reuses
transformer_c/_C*.so when it is newer than every C source, header and this file (the
up-to-date rule build_ext applies to its own build directory). Delete that file, or touch
a source, to force a rebuild (e.g. after changing CFLAGS or the compiler).

TC_SANITIZE=1 in the environment builds with AddressSanitizer + UndefinedBehaviorSanitizer
(-O1 -g, frame pointers kept, any undefined behaviour aborts) for tools/sanitize.sh; the
build without it is unchanged.
"""
import os
import platform
from glob import glob

import numpy as np
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext

FOLDERS = ["core", "kernels", "models", "tokenizer", "py"]
sources = [f for d in FOLDERS for f in sorted(glob(f"csrc/{d}/*.c"))]
headers = ["csrc/tc.h"] + [f for d in FOLDERS for f in sorted(glob(f"csrc/{d}/*.h"))]

compile_args = ["-O3", "-std=gnu11", "-fopenmp", "-Wall", "-Wextra",
                "-Wno-unused-parameter", "-Wno-missing-field-initializers",
                "-fno-strict-aliasing", "-fno-math-errno"]
if platform.machine().lower() in ("aarch64", "arm64"):
    # AArch64 has FMA in its baseline and GCC contracts a * b + c by default: off, so the
    # portable kernels round exactly as on x86-64 (the NEON variants fuse explicitly:
    # csrc/core/vec_math.h, csrc/kernels/gemm_neon.h; tests/c/test_kernels.c checks both)
    compile_args.append("-ffp-contract=off")
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



class build_ext(_build_ext):
    """build_ext that, in an editable install, reuses an up-to-date in-place extension."""

    def build_extension(self, ext):
        if getattr(self, "editable_mode", False) and not self.force:
            # the package directory is the source tree's transformer_c/
            inplace = self.get_ext_filename(self.get_ext_fullname(ext.name))
            deps = list(ext.sources) + list(ext.depends) + [os.path.abspath(__file__)]
            if os.path.isfile(inplace) and \
                    max(map(os.path.getmtime, deps)) < os.path.getmtime(inplace):
                target = self.get_ext_fullpath(ext.name)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                self.copy_file(inplace, target)
                print(f"reusing {inplace}: newer than every source (delete it to rebuild)")
                return
        super().build_extension(ext)


setup(ext_modules=[ext], cmdclass={"build_ext": build_ext})
