"""transformer_c: a small transformer library whose compute core is hand-written C.

Every layer has a C forward and backward kernel (float32 and float64), wrapped as
NumPy-accepting functions in :mod:`transformer_c.functional`; :mod:`transformer_c.nn`
gives them the coursework module interface (``parameters``, ``with_parameters``,
``forward``, ``backward``, ``create``); :mod:`transformer_c.optim` has immutable
optimizers and :mod:`transformer_c.tree` the parameter-tree utilities.
"""
import os as _os

# OpenMP worker threads that spin between parallel regions (libgomp's default wait policy)
# steal the core the other threads need as soon as the machine has other work: measured
# here on 2 shared cores, a small GPT training step took 3.6 s with 2 threads instead of
# 0.17 s. Unless the user chose a policy, sleep instead of spinning. It must be set before
# the OpenMP runtime loads with _C (it reads the environment once, at load).
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

from . import _C  # noqa: E402

__version__ = "0.1.0"


def set_num_threads(n: int) -> None:
    """Set the number of OpenMP threads every kernel uses (n >= 1)."""
    _C.set_num_threads(int(n))


def get_num_threads() -> int:
    """The number of OpenMP threads kernels use."""
    return _C.get_num_threads()


from . import data, functional, generate, nn, optim, tree  # noqa: E402

__all__ = ["data", "functional", "generate", "nn", "optim", "tree", "set_num_threads",
           "get_num_threads",
           "__version__"]
