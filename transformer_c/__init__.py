"""transformer_c: a small transformer library whose compute core is hand-written C.

Every layer has a C forward and backward kernel (float32 and float64), wrapped as
NumPy-accepting functions in :mod:`transformer_c.functional`; :mod:`transformer_c.nn`
gives them the coursework module interface (``parameters``, ``with_parameters``,
``forward``, ``backward``, ``create``); :mod:`transformer_c.optim` has immutable
optimizers and :mod:`transformer_c.tree` the parameter-tree utilities.
"""
from . import _C

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
