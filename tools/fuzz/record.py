"""Valid argument tuples for the raw _C functions, recorded from the valid workload.

record_raw() wraps every callable of transformer_c._C (found at run time, so new bindings
are covered), runs valid.workload() and keeps up to KEEP distinct calls per function, their
arrays copied. Functions the workload never reaches are fuzzed with junk alone.
"""
import numpy as np

KEEP = 4


def _snapshot(v):
    if isinstance(v, np.ndarray):
        return v.copy()
    if isinstance(v, list):
        return [_snapshot(x) for x in v]
    return v


def record_raw():
    """{name: [args tuple, ...]} for the raw _C functions the valid workload calls."""
    from transformer_c import _C
    from . import valid
    seen = {}
    originals = {n: getattr(_C, n) for n in raw_names()}

    def wrap(name, fn):
        def recorder(*args):
            calls = seen.setdefault(name, [])
            if len(calls) < KEEP * 4:
                calls.append(tuple(_snapshot(a) for a in args))
            return fn(*args)
        return recorder

    for n, fn in originals.items():
        setattr(_C, n, wrap(n, fn))
    try:
        valid.workload()
    finally:
        for n, fn in originals.items():
            setattr(_C, n, fn)
    # Spread the kept calls over the recorded ones (first calls are often the same kind).
    return {n: [calls[i] for i in np.linspace(0, len(calls) - 1, min(KEEP, len(calls))).astype(int)]
            for n, calls in seen.items()}


def raw_names():
    """Every callable of transformer_c._C, found at run time."""
    from transformer_c import _C
    return sorted(n for n in dir(_C) if not n.startswith("_") and callable(getattr(_C, n)))


def fresh(args):
    """A copy of recorded args that a case may change in place."""
    return [a.copy() if isinstance(a, np.ndarray) else list(a) if isinstance(a, list) else a
            for a in args]
