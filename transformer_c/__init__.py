"""transformer_c: a small transformer library whose compute core is hand-written C.

Every layer has a C forward and backward kernel (float32 and float64), wrapped as
NumPy-accepting functions in :mod:`transformer_c.functional`; :mod:`transformer_c.nn`
gives them the coursework module interface (``parameters``, ``with_parameters``,
``forward``, ``backward``, ``create``); :mod:`transformer_c.optim` has immutable
optimizers and :mod:`transformer_c.tree` the parameter-tree utilities.
"""
import os as _os

# libgomp's default lets idle OpenMP workers spin for about 300,000 iterations between
# parallel regions; when the machine has other work those spinning threads steal the core
# the others need (measured here on 2 shared cores: a small GPT step took 3.6 s with 2
# threads instead of 0.17 s). Sleeping at once (OMP_WAIT_POLICY=PASSIVE) avoids that but
# pays a futex wake-up per region: on an idle machine it halved 2-thread GEMM at the
# model's shapes and made 2-thread KV decoding slower than 1 thread (306 vs 478 tokens/s).
# A short spin (GOMP_SPINCOUNT=30000, tens of microseconds) keeps the wake-ups cheap and
# the damage under load bounded (2-thread decode 775 tokens/s idle). Unless the user chose
# a policy; set before the OpenMP runtime loads with _C (it reads the environment once).
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "30000"

from . import _C  # noqa: E402

__version__ = "0.1.0"


def set_num_threads(n: int) -> None:
    """Set the number of OpenMP threads every kernel uses, for the whole process: kernels
    called from any Python thread use it (not only the calling thread's, as OpenMP's own
    omp_set_num_threads). 1 <= n <= max(1024, 4 x os.cpu_count()) (the bound is
    ``_C.max_num_threads()``): ValueError otherwise. Unset, OpenMP's default applies
    (OMP_NUM_THREADS, or the number of cores).

    A build without OpenMP (``build_info()["openmp"]`` is False: the compiler had none, e.g.
    Apple clang without libomp, or TC_NO_OPENMP=1 at build time) runs every kernel on one
    thread: n > 1 is then accepted with a RuntimeWarning saying so, and get_num_threads()
    stays 1 (a script written for threads still runs, with the same results)."""
    _C.set_num_threads(int(n))


def get_num_threads() -> int:
    """The number of OpenMP threads kernels use (set_num_threads's value, in every thread);
    always 1 in a build without OpenMP."""
    return _C.get_num_threads()


def build_info() -> dict:
    """What this build of the C extension was compiled with, a new dict each call:
    ``openmp`` (bool: threads available; False for a serial build), ``openmp_version``
    (int, the _OPENMP date yyyymm, 0 without OpenMP), ``portable_only`` (bool: only the
    portable C kernels were compiled, no AVX2+FMA / NEON variants: a TC_PORTABLE_ONLY=1
    build, or an architecture other than x86-64 and AArch64) and ``compiler`` (str).
    Which kernels run on this CPU: ``_C.gemm_kernel_name()`` ("avx512": the GEMM's
    AVX-512F micro-kernel on top of the AVX2+FMA variants, "avx2+fma", "neon" or
    "generic")."""
    return dict(_C.BUILD)


def set_data_parallel(on: bool) -> None:
    """Whether GPT and EncoderDecoder may split a batch across the threads (on by default):
    with 2-8 threads and at least as many sequences, each thread runs a whole forward and
    backward of its rows with its kernels on that thread, and the gradients are summed (one
    extra gradient buffer per extra thread; results equal up to float re-association).
    Off: one pass with every kernel parallel inside (less memory)."""
    _C.set_data_parallel(bool(on))


def get_data_parallel() -> bool:
    """Whether the model fast paths may split a batch across threads (set_data_parallel)."""
    return _C.get_data_parallel()


def set_thread_guard(on: bool) -> None:
    """The contention guard (on by default; ``TC_THREAD_GUARD=0`` in the environment makes
    the default off): a kernel's parallel region runs on one thread while the machine has no
    free core for the others (the machine's runnable tasks of /proc/loadavg, read every
    10 ms, less this process's runnable threads, plus the thread count, exceed the cores;
    two readings in a row), because a second thread without
    a core of its own makes every region wait for a scheduler time slice. Never changes a
    number: only kernels whose results do not depend on the thread count ask it (the
    data-parallel batch split keeps its threads). Off: the thread count set is used whenever
    the work is past the kernel's threshold."""
    _C.set_thread_guard(bool(on))


def get_thread_guard() -> bool:
    """Whether the contention guard is on (set_thread_guard)."""
    return _C.get_thread_guard()


def set_flush_subnormals(on: bool) -> None:
    """Whether the whole-model C paths (GPT and EncoderDecoder loss_and_grads, forward,
    inspect) flush subnormal numbers to zero (on by default; ``TC_FLUSH_SUBNORMALS=0`` in
    the environment makes the default off). x86 only: the calls set the FTZ and DAZ bits of
    MXCSR on their threads and put the previous bits back before returning, so NumPy and
    everything else keep gradual underflow (the other OpenMP threads are set only when the
    call's parallel regions would use them: a small or contended call never wakes them). A subnormal (below 1.2e-38 in float32) costs a
    microcode assist in every instruction that reads or makes one, and a trained model makes
    many (attention probabilities near exp(-86) times small gradients): the 6x384 GPT's step
    at step 1000 of training took 1.6x the CPU time of its first step with them, the same
    time without. Results differ only where a subnormal would have appeared (a zero instead).
    Off: IEEE 754 gradual underflow everywhere, at that cost."""
    _C.set_flush_subnormals(bool(on))


def get_flush_subnormals() -> bool:
    """Whether the whole-model C paths flush subnormals to zero (set_flush_subnormals)."""
    return _C.get_flush_subnormals()


from . import data, functional, generate, nn, optim, tree  # noqa: E402

__all__ = ["data", "functional", "generate", "nn", "optim", "tree", "set_num_threads",
           "get_num_threads", "set_data_parallel", "get_data_parallel", "set_thread_guard",
           "get_thread_guard", "set_flush_subnormals", "get_flush_subnormals", "build_info",
           "__version__"]
