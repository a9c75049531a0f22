"""Learning-rate schedules: plain functions of the 0-based iteration number ``it``.

The learning rate of iteration ``it`` (the update that makes step ``it + 1``):

- :func:`constant_lr`: ``lr`` (after an optional linear warmup).
- :func:`cosine_lr`: nanoGPT's ``get_lr``: linear warmup ``lr * (it + 1) / (warmup + 1)`` for
  ``it < warmup``, then a half cosine from ``lr`` down to ``min_lr`` at ``it == decay_iters``,
  and ``min_lr`` after that.
- :func:`inverse_sqrt_lr`: the same warmup, then ``lr * sqrt(warmup / it)`` (the Transformer
  paper's / fairseq's decay, continuous at ``it == warmup``), never below ``min_lr``.

:func:`make_schedule` builds one of them as a function ``it -> lr`` from its name.
"""
import math
import numbers

__all__ = ["constant_lr", "cosine_lr", "inverse_sqrt_lr", "make_schedule", "SCHEDULES"]

SCHEDULES = ("cosine", "inverse_sqrt", "constant")


def _it(it):
    if isinstance(it, bool) or not isinstance(it, numbers.Integral) or it < 0:
        raise ValueError(f"it must be an integer >= 0, got {it!r}")
    return int(it)


def _check(lr, warmup_iters, min_lr=0.0):
    for name, v in (("lr", lr), ("min_lr", min_lr)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (v >= 0 and
                                                                         math.isfinite(v)):
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    if isinstance(warmup_iters, bool) or not isinstance(warmup_iters, numbers.Integral) or \
            warmup_iters < 0:
        raise ValueError(f"warmup_iters must be an integer >= 0, got {warmup_iters!r}")


def _warmup(it, lr, warmup_iters):
    return lr * (it + 1) / (warmup_iters + 1)


def constant_lr(it, *, lr, warmup_iters=0):
    """lr, after a linear warmup over the first ``warmup_iters`` iterations."""
    it = _it(it)
    _check(lr, warmup_iters)
    return _warmup(it, lr, warmup_iters) if it < warmup_iters else float(lr)


def cosine_lr(it, *, lr, warmup_iters, decay_iters, min_lr):
    """Linear warmup then cosine decay to ``min_lr`` at ``decay_iters`` (nanoGPT's get_lr)."""
    it = _it(it)
    _check(lr, warmup_iters, min_lr)
    if isinstance(decay_iters, bool) or not isinstance(decay_iters, numbers.Integral) or \
            decay_iters <= warmup_iters:
        raise ValueError(f"decay_iters must be an integer > warmup_iters ({warmup_iters}), "
                         f"got {decay_iters!r}")
    if it < warmup_iters:
        return _warmup(it, lr, warmup_iters)
    if it > decay_iters:
        return float(min_lr)
    ratio = (it - warmup_iters) / (decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))
    return min_lr + coeff * (lr - min_lr)


def inverse_sqrt_lr(it, *, lr, warmup_iters, min_lr=0.0):
    """Linear warmup then lr * sqrt(max(warmup_iters, 1) / it), floored at ``min_lr``."""
    it = _it(it)
    _check(lr, warmup_iters, min_lr)
    if it < warmup_iters:
        return _warmup(it, lr, warmup_iters)
    return max(float(min_lr), lr * math.sqrt(max(warmup_iters, 1) / max(it, 1)))


def make_schedule(name, *, lr, warmup_iters=0, decay_iters=None, min_lr=0.0):
    """The schedule ``name`` ("cosine", "inverse_sqrt" or "constant") as a function it -> lr
    (arguments checked now)."""
    if name == "cosine":
        cosine_lr(0, lr=lr, warmup_iters=warmup_iters, decay_iters=decay_iters, min_lr=min_lr)
        return lambda it: cosine_lr(it, lr=lr, warmup_iters=warmup_iters,
                                    decay_iters=decay_iters, min_lr=min_lr)
    if name == "inverse_sqrt":
        inverse_sqrt_lr(0, lr=lr, warmup_iters=warmup_iters, min_lr=min_lr)
        return lambda it: inverse_sqrt_lr(it, lr=lr, warmup_iters=warmup_iters, min_lr=min_lr)
    if name == "constant":
        constant_lr(0, lr=lr, warmup_iters=warmup_iters)
        return lambda it: constant_lr(it, lr=lr, warmup_iters=warmup_iters)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {name!r}")
