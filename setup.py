"""Build transformer_c._C from csrc/ against the NumPy C API, with OpenMP when the compiler has it.

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

OpenMP: build_ext compiles and links a small OpenMP program with the build's own compiler
(-fopenmp; on macOS also Homebrew's libomp: -Xpreprocessor -fopenmp -lomp under
$LIBOMP_PREFIX, /opt/homebrew/opt/libomp or /usr/local/opt/libomp). If none works (Apple
clang without libomp, a compiler without the runtime) it builds a serial extension with one
warning; TC_NO_OPENMP=1 forces that. The extension reports what it got
(transformer_c.build_info()["openmp"]); set_num_threads(n > 1) then warns.

TC_PORTABLE_ONLY=1 compiles the portable kernels only (no AVX2+FMA variants, no runtime CPU
probe: what any non-x86 machine builds), e.g. to test that configuration on x86-64.

Sources compile in parallel (one compiler process per core, or build_ext -j N / TC_BUILD_JOBS=N;
setuptools itself only parallelises across extensions, and there is one): a unix compiler's
compile() is replaced, for this build, by one that runs its per-object step on a thread pool.

TC_SANITIZE=1 in the environment builds with AddressSanitizer + UndefinedBehaviorSanitizer
(-O1 -g, frame pointers kept, any undefined behaviour aborts) for tools/sanitize.sh; the
build without it is unchanged.
"""
import os
import platform
import sys
import tempfile
from glob import glob
from multiprocessing.pool import ThreadPool

import numpy as np
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext

FOLDERS = ["core", "kernels", "models", "tokenizer", "py"]
sources = [f for d in FOLDERS for f in sorted(glob(f"csrc/{d}/*.c"))]
headers = ["csrc/tc.h"] + [f for d in FOLDERS for f in sorted(glob(f"csrc/{d}/*.h"))]



def env_flag(name):
    """The build switch name: False unset / "0", True "1"; anything else is an error."""
    value = os.environ.get(name, "")
    if value not in ("", "0", "1"):
        raise SystemExit(f"setup.py: {name} must be 0 or 1, got {value!r}")
    return value == "1"


# the OpenMP flags are added by build_ext once its probe found them (openmp_flags below)
compile_args = ["-O3", "-std=gnu11", "-Wall", "-Wextra",
                "-Wno-unused-parameter", "-Wno-missing-field-initializers",
                "-fno-strict-aliasing", "-fno-math-errno"]
if platform.machine().lower() in ("aarch64", "arm64"):
    # AArch64 has FMA in its baseline and GCC contracts a * b + c by default: off, so the
    # portable kernels round exactly as on x86-64 (the NEON variants fuse explicitly:
    # csrc/core/vec_math.h, csrc/kernels/gemm_neon.h; tests/c/test_kernels.c checks both)
    compile_args.append("-ffp-contract=off")
link_args = []
NO_OPENMP = env_flag("TC_NO_OPENMP")  # checked here: a bad value stops any command
if env_flag("TC_PORTABLE_ONLY"):
    compile_args += ["-DTC_PORTABLE_ONLY"]
if env_flag("TC_SANITIZE"):
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



OPENMP_PROBE = r"""
#include <omp.h>
int main(void)
{
    int n = 0;
#pragma omp parallel reduction(+ : n)
    n += 1;
    return n > 0 && omp_get_max_threads() > 0 ? 0 : 1;
}
"""


def openmp_candidates():
    """(compile flags, link flags) to try in order: GCC / clang / MinGW, then on macOS
    Apple clang with Homebrew's libomp."""
    out = [(["-fopenmp"], ["-fopenmp"])]
    if sys.platform == "darwin":
        prefixes = [os.environ.get("LIBOMP_PREFIX", ""), "/opt/homebrew/opt/libomp",
                    "/usr/local/opt/libomp"]
        out += [(["-Xpreprocessor", "-fopenmp", f"-I{p}/include"], [f"-L{p}/lib", "-lomp"])
                for p in prefixes if p and os.path.isdir(p)]
    return out


def build_jobs(parallel):
    """Compiler processes to run at once: TC_BUILD_JOBS, else build_ext's -j, else the CPUs."""
    value = os.environ.get("TC_BUILD_JOBS", "")
    if value:
        if not value.isdigit() or int(value) < 1:
            raise SystemExit(f"setup.py: TC_BUILD_JOBS must be a positive integer, got {value!r}")
        return int(value)
    if isinstance(parallel, int) and parallel > 1:
        return parallel
    return os.cpu_count() or 1


def parallel_compile(compiler, jobs):
    """Make compiler.compile (a distutils UnixCCompiler's) compile its objects on `jobs`
    threads (each waits on its own gcc process); the objects and errors are those of the
    serial loop, which this follows step by step."""
    def compile(sources, output_dir=None, macros=None, include_dirs=None, debug=0,
                extra_preargs=None, extra_postargs=None, depends=None):
        macros, objects, extra_postargs, pp_opts, build = compiler._setup_compile(
            output_dir, macros, include_dirs, sources, depends, extra_postargs)
        cc_args = compiler._get_cc_args(pp_opts, debug, extra_preargs)

        def one(obj):
            if obj in build:
                src, ext = build[obj]
                compiler._compile(obj, src, ext, cc_args, extra_postargs, pp_opts)

        with ThreadPool(jobs) as pool:
            list(pool.imap(one, objects))
        return objects

    compiler.compile = compile


class build_ext(_build_ext):
    """build_ext that probes OpenMP (serial build without it) and, in an editable install,
    reuses an up-to-date in-place extension."""

    def openmp_flags(self):
        """(compile flags, link flags) of the first OpenMP candidate that compiles and links
        OPENMP_PROBE with this compiler; None (after one warning) if none does or
        TC_NO_OPENMP=1."""
        if NO_OPENMP:
            print("transformer_c: TC_NO_OPENMP=1, building a serial extension (no OpenMP)",
                  file=sys.stderr)
            return None
        for cflags, lflags in openmp_candidates():
            with tempfile.TemporaryDirectory() as tmp:
                src = os.path.join(tmp, "tc_openmp_probe.c")
                with open(src, "w") as f:
                    f.write(OPENMP_PROBE)
                saved = [os.dup(1), os.dup(2)]  # the compiler's complaints are expected
                try:
                    with open(os.devnull, "w") as null:
                        os.dup2(null.fileno(), 1)
                        os.dup2(null.fileno(), 2)
                        objs = self.compiler.compile([src], output_dir=tmp,
                                                     extra_postargs=cflags)
                        self.compiler.link_executable(objs, "tc_openmp_probe", output_dir=tmp,
                                                      extra_postargs=lflags)
                    return cflags, lflags
                except Exception:  # CompileError, LinkError, a missing compiler driver
                    continue
                finally:
                    for fd, saved_fd in zip((1, 2), saved):
                        os.dup2(saved_fd, fd)
                        os.close(saved_fd)
        print("WARNING: transformer_c: the C compiler cannot build OpenMP programs (tried "
              + "; ".join(" ".join(c) for c, _ in openmp_candidates()) + "): building a "
              "serial extension, every kernel runs on one thread (on macOS: brew install "
              "libomp, then reinstall; TC_NO_OPENMP=1 builds serial without this warning)",
              file=sys.stderr)
        return None

    def build_extensions(self):
        flags = self.openmp_flags()
        if flags:
            for e in self.extensions:
                e.extra_compile_args = list(e.extra_compile_args) + flags[0]
                e.extra_link_args = list(e.extra_link_args) + flags[1]
        else:  # the kernels' #pragma omp lines are then ignored, on purpose
            for e in self.extensions:
                e.extra_compile_args = list(e.extra_compile_args) + ["-Wno-unknown-pragmas"]
        super().build_extensions()

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
        jobs = build_jobs(self.parallel)
        if jobs > 1 and self.compiler.compiler_type == "unix" and \
                hasattr(self.compiler, "_setup_compile"):
            parallel_compile(self.compiler, jobs)
        super().build_extension(ext)


setup(ext_modules=[ext], cmdclass={"build_ext": build_ext})
