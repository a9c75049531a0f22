"""In-place optimizer updates, gradient norm and scaling (C: csrc/kernels/optim.c).

The math is torch.optim's single-tensor ("for-loop") implementation of SGD, Adam and AdamW,
operation for operation. ``param`` and the optimizer states are updated in place, so they
must be writeable C-contiguous float arrays; ``grad`` may have any layout. All of them share
one shape (any shape) and one dtype (float32 or float64).

``out=``: the updates write into other arrays instead (new parameter and states from the
old ones, which are then only read and may have any layout): bitwise the in-place numbers,
near the in-place cost on large arrays (non-temporal stores in short blocks, inputs
prefetched: about 1.06x for AdamW over 10.8M float32 at 1 thread; csrc/kernels/optim_impl.h). Each
``out`` array is writeable, C-contiguous, of param's shape and dtype, and either is its own
input (that one updated in place) or overlaps no input; a partial overlap is a ValueError.
The immutable tree optimizers (transformer_c.optim) use it.
"""
import numpy as np

from .. import _C
from ._util import as_int, as_real, check_inout

__all__ = ["sgd_update_", "adam_update_", "adamw_update_", "muon_update_", "global_grad_norm",
           "scale_"]


def _non_negative(value, name):
    """value as a float >= 0 (inf allowed, as torch)."""
    value = as_real(value, name, None)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def sgd_update_(param, grad, momentum_buffer=None, *, lr, momentum=0.0, dampening=0.0,
                weight_decay=0.0, nesterov=False, first_step=False, out=None):
    """One torch.optim.SGD step, in place (or into ``out``).

    param: any shape, float32/float64, writeable and C-contiguous (updated in place).
    grad: param's shape and dtype, any layout.
    momentum_buffer: param's shape and dtype, writeable and C-contiguous; required when
    momentum != 0 (updated in place), ignored otherwise.
    With g = grad + weight_decay * param:
      buf = g on the first step (``first_step=True``, as torch creates the buffer), else
      buf = momentum * buf + (1 - dampening) * g;
      g = g + momentum * buf if nesterov else buf   (when momentum != 0);
      param -= lr * g.
    Options as torch: lr, momentum, weight_decay >= 0; nesterov needs momentum > 0 and
    dampening == 0. out: None, or (new_param, new_momentum_buffer) (the second None when
    momentum == 0) to write the results to instead (module doc). Returns None.
    """
    lr = _non_negative(lr, "lr")
    momentum = _non_negative(momentum, "momentum")
    dampening = as_real(dampening, "dampening", None)
    weight_decay = _non_negative(weight_decay, "weight_decay")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("nesterov momentum requires momentum > 0 and dampening == 0, got "
                         f"momentum={momentum}, dampening={dampening}")
    if momentum != 0 and momentum_buffer is None:
        raise ValueError("momentum_buffer is required when momentum != 0 (pass an array of "
                         "param's shape; with first_step=True its contents are overwritten)")
    if out is not None:
        new_param, new_buffer = _outs(out, 2, "(new_param, new_momentum_buffer)")
        if momentum != 0 and new_buffer is None:
            raise ValueError("out[1] (the new momentum_buffer) is required when momentum != 0")
        _C.sgd_update_out(new_param, new_buffer if momentum != 0 else None, param, grad,
                          momentum_buffer if momentum != 0 else None, lr, momentum, dampening,
                          weight_decay, bool(nesterov), bool(first_step))
        return
    check_inout(param, "param")
    if momentum_buffer is not None:
        check_inout(momentum_buffer, "momentum_buffer")
    _C.sgd_update(param, grad, momentum_buffer, lr, momentum, dampening, weight_decay,
                  bool(nesterov), bool(first_step))


def _outs(out, count, what):
    """out as a tuple of ``count`` arrays (None allowed where the caller says); TypeError
    naming ``out`` otherwise (its arrays are checked by the binding)."""
    if not isinstance(out, (tuple, list)) or len(out) != count:
        raise TypeError(f"out must be a tuple {what}, got {type(out).__name__}")
    for i, a in enumerate(out):
        if a is not None:
            check_inout(a, f"out[{i}]")
    return tuple(out)


def _adam_args(param, exp_avg, exp_avg_sq, step, lr, betas, eps, weight_decay, out):
    if out is None:
        check_inout(param, "param")
        check_inout(exp_avg, "exp_avg")
        check_inout(exp_avg_sq, "exp_avg_sq")
    step = as_int(step, "step", 1)  # the 1-based count of this update
    lr = _non_negative(lr, "lr")
    try:
        beta1, beta2 = betas
    except (TypeError, ValueError):
        raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
    beta1, beta2 = as_real(beta1, "betas[0]", None), as_real(beta2, "betas[1]", None)
    for i, b in enumerate((beta1, beta2)):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"betas[{i}] must lie in [0, 1), got {b}")
    eps = _non_negative(eps, "eps")
    weight_decay = _non_negative(weight_decay, "weight_decay")
    return int(step), lr, beta1, beta2, eps, weight_decay


def _adam(param, grad, exp_avg, exp_avg_sq, args, out, decoupled):
    if out is None:
        (_C.adamw_update if decoupled else _C.adam_update)(param, grad, exp_avg, exp_avg_sq,
                                                           *args)
        return
    outs = _outs(out, 3, "(new_param, new_exp_avg, new_exp_avg_sq)")
    if any(a is None for a in outs):
        raise TypeError("out must hold three arrays (new_param, new_exp_avg, new_exp_avg_sq)")
    _C.adam_update_out(*outs, param, grad, exp_avg, exp_avg_sq, *args, bool(decoupled))


def adam_update_(param, grad, exp_avg, exp_avg_sq, *, step, lr=1e-3, betas=(0.9, 0.999),
                 eps=1e-8, weight_decay=0.0, out=None):
    """One torch.optim.Adam step (L2 weight decay), in place (or into ``out``).

    param, exp_avg, exp_avg_sq: one shape, float32/float64, writeable and C-contiguous
    (updated in place; the states start as zeros). grad: param's shape and dtype, any layout.
    step: the 1-based count of this update (1 on the first call).
    With g = grad + weight_decay * param:
      exp_avg = lerp(exp_avg, g, 1 - beta1); exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) g^2;
      param -= lr / (1 - beta1**step) * exp_avg / (sqrt(exp_avg_sq / (1 - beta2**step)) + eps)
    (bias corrections computed once per call). Options: lr, eps, weight_decay >= 0,
    0 <= betas < 1. out: None, or (new_param, new_exp_avg, new_exp_avg_sq) to write the
    results to instead (module doc). Returns None.
    """
    args = _adam_args(param, exp_avg, exp_avg_sq, step, lr, betas, eps, weight_decay, out)
    _adam(param, grad, exp_avg, exp_avg_sq, args, out, False)


def adamw_update_(param, grad, exp_avg, exp_avg_sq, *, step, lr=1e-3, betas=(0.9, 0.999),
                  eps=1e-8, weight_decay=1e-2, out=None):
    """One torch.optim.AdamW step (decoupled weight decay), in place (or into ``out``).

    As adam_update_, except that param *= 1 - lr * weight_decay first and the gradient is
    not decayed. Arrays: param, exp_avg, exp_avg_sq (one shape, writeable, C-contiguous),
    grad (param's shape, any layout); out as adam_update_. Returns None.
    """
    args = _adam_args(param, exp_avg, exp_avg_sq, step, lr, betas, eps, weight_decay, out)
    _adam(param, grad, exp_avg, exp_avg_sq, args, out, True)


def muon_update_(param, grad, momentum_buffer, matrices, *, lr=0.02, momentum=0.95,
                 weight_decay=0.0, nesterov=True, ns_steps=5):
    """One Muon step (Keller Jordan's) on the hidden weight matrices inside a flat buffer,
    in place.

    param, momentum_buffer: one shape (any; the matrices index its elements in C order),
    float32/float64, writeable and C-contiguous (momentum_buffer starts as zeros). grad:
    param's shape and dtype, any layout. matrices: (count, 3) integers (offset, rows, cols)
    of the row-major matrices, in increasing non-overlapping order inside param (a
    FlatModel's ``muon_matrices()``). For each matrix W, with torch's lerp:
      buf = lerp(buf, grad, 1 - momentum);  u = lerp(grad, buf, momentum) if nesterov else buf;
      X = u (transposed when rows > cols) / (||u||_F + 1e-7), then ns_steps quintic
      Newton-Schulz steps X = a X + (b A + c A A) X, A = X X^T, (a, b, c) = (3.4445,
      -4.7750, 2.0315);  W = W (1 - lr weight_decay) - lr sqrt(max(1, rows / cols)) X.
    lr is in the published units (spectral norm per update, default 0.02), not AdamW's.
    Elements outside the matrices are left alone (run AdamW on them). Returns None.

    Cost (the products; the algorithm above is unchanged, results move at rounding level):
    A = X X^T and A A (both symmetric) are computed on and below the diagonal only (96-row
    blocks on the GEMM, then mirrored), a is added to the diagonal of b A + c A A so each
    step ends in one product, and with several threads whole matrices are spread over the
    threads (largest first) when their costs balance, else each product is threaded. The
    result does not depend on the thread count (bitwise).
    """
    lr = _non_negative(lr, "lr")
    momentum = as_real(momentum, "momentum", None)
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
    weight_decay = _non_negative(weight_decay, "weight_decay")
    ns_steps = as_int(ns_steps, "ns_steps", 0)
    check_inout(param, "param")
    check_inout(momentum_buffer, "momentum_buffer")
    _C.muon_update(param, momentum_buffer, grad, _matrix_table(matrices), lr, momentum,
                   weight_decay, bool(nesterov), int(ns_steps))


def _matrix_table(matrices):
    """matrices as a (count, 3) int64 array; TypeError / ValueError naming it otherwise."""
    table = np.asarray(matrices)
    if table.size == 0:
        return np.zeros((0, 3), np.int64)
    if table.dtype.kind not in "iu":
        raise TypeError(f"matrices must hold integers (offset, rows, cols), got dtype "
                        f"{table.dtype}")
    if table.ndim != 2 or table.shape[1] != 3:
        raise ValueError(f"matrices must have shape (count, 3) (offset, rows, cols), got "
                         f"{table.shape}")
    return np.ascontiguousarray(table, np.int64)


def global_grad_norm(arrays):
    """sqrt(sum of squares of every element of every array), as a Python float.

    arrays: a list/tuple (or any iterable) of float arrays of one dtype, any shapes and
    layouts (a single array is accepted too). Accumulated in double in C in a fixed order,
    so the result does not depend on the thread count. An empty list gives 0.0.
    """
    if isinstance(arrays, np.ndarray):
        arrays = [arrays]
    elif not isinstance(arrays, (list, tuple)):
        try:
            arrays = list(arrays)
        except TypeError:
            raise TypeError(f"arrays must be a list of arrays, got {type(arrays).__name__}") from None
    return _C.global_grad_norm(arrays)


def scale_(array, factor):
    """array *= factor, in place (e.g. gradient clipping by global_grad_norm).

    array: any shape, float32/float64, writeable and C-contiguous. factor: a float (rounded
    to the array's dtype). Returns None.
    """
    check_inout(array, "array")
    _C.scale(array, as_real(factor, "factor", None))
