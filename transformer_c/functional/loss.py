"""Cross-entropy loss: fused log-softmax + negative log-likelihood (C: csrc/kernels/loss.c).

Semantics are exactly those of ``torch.nn.functional.cross_entropy`` with the classes on the
LAST axis (torch puts them on axis 1; for 2-D logits the two agree).
"""
import math

import numpy as np

from .. import _C
from ._util import as_float, as_int, as_real, last_dim, rows, same_dtype

__all__ = ["cross_entropy", "cross_entropy_backward"]

_REDUCTIONS = ("mean", "sum", "none")


def _check_args(logits, targets, ignore_index, label_smoothing, reduction):
    """Validated (logits, targets, ignore_index, label_smoothing, is_ids)."""
    logits = as_float(logits, "logits")
    V = last_dim(logits, "logits")
    if V < 1:
        raise ValueError(f"logits must have at least one class along the last axis, "
                         f"got shape {logits.shape}")
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    ignore_index = as_int(ignore_index, "ignore_index")
    label_smoothing = as_real(label_smoothing, "label_smoothing", "probability")
    targets = np.asarray(targets) if not isinstance(targets, np.ndarray) else targets
    if targets.dtype != np.bool_ and np.issubdtype(targets.dtype, np.integer):
        if targets.shape != logits.shape[:-1]:
            raise ValueError(f"targets holds class ids, so it must have shape "
                             f"{logits.shape[:-1]} (logits' shape without the class axis), "
                             f"got {targets.shape}")
        is_ids = True
    elif np.issubdtype(targets.dtype, np.floating):
        targets = same_dtype(logits, "logits", targets, "targets")
        if ignore_index >= 0:  # as torch: a class to ignore makes no sense for probabilities
            raise ValueError(f"ignore_index is not supported for probability targets, got "
                             f"ignore_index={ignore_index} (leave it negative)")
        if targets.shape != logits.shape:
            raise ValueError(f"targets holds class probabilities, so it must have the shape "
                             f"of logits {logits.shape}, got {targets.shape}")
        is_ids = False
    else:
        raise TypeError(f"targets must hold integer class ids or float class probabilities, "
                        f"got dtype {targets.dtype}")
    return logits, targets, int(ignore_index), label_smoothing, is_ids


def _flat_targets(targets, is_ids):
    return targets.reshape(-1) if is_ids else rows(targets)


def cross_entropy(logits, targets, *, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    """Cross-entropy between softmax(logits) and targets, over the last axis.

    logits: (..., V) float32/float64, any leading dims (flattened to N rows).
    targets: either class ids of shape (...) (any integer dtype; ids equal to ``ignore_index``
    are skipped), or class probabilities of shape (..., V) with logits' dtype (soft or
    one-hot targets; as in torch, ``ignore_index`` must then be negative and is unused).
    label_smoothing: eps in [0, 1]; the target becomes (1 - eps) * target + eps / V.
    reduction: "mean" (over the rows not ignored for id targets, over all N rows for
    probability targets), "sum", or "none".

    Returns a Python float for "mean"/"sum", or per-row losses of shape (...) in logits'
    dtype for "none" (ignored rows hold 0). As in torch, "mean" is nan when no row is kept
    (every id ignored, or an empty batch).

    Raises TypeError for bad dtypes, ValueError for bad shapes/options (naming targets,
    reduction, label_smoothing) and IndexError for an id outside [0, V) that is not
    ignore_index.
    """
    logits, targets, ignore_index, eps, is_ids = _check_args(
        logits, targets, ignore_index, label_smoothing, reduction)
    losses, _, total, n_valid = _C.cross_entropy_forward(
        rows(logits), _flat_targets(targets, is_ids), ignore_index, eps)
    if reduction == "none":
        return losses.reshape(logits.shape[:-1])
    if reduction == "sum":
        return float(total)
    return float(total) / n_valid if n_valid else math.nan


def cross_entropy_backward(logits, targets, *, ignore_index=-100, label_smoothing=0.0,
                           reduction="mean", grad_output=1.0):
    """Gradient of cross_entropy(logits, targets, ...) with respect to logits.

    logits, targets, ignore_index, label_smoothing, reduction: as in cross_entropy.
    grad_output: the upstream gradient: a float for "mean"/"sum" (default 1.0), or an array
    of shape (...) (one gradient per row, logits' dtype) for "none".

    Returns dlogits: (..., V), logits' dtype. Row n gets
    w_n * (softmax(logits_n) * sum(q_n) - q_n), q_n the (smoothed) target distribution;
    rows whose id is ignore_index get exactly zero.
    """
    logits, targets, ignore_index, eps, is_ids = _check_args(
        logits, targets, ignore_index, label_smoothing, reduction)
    if reduction == "none":
        if not isinstance(grad_output, np.ndarray):
            grad_output = np.asarray(grad_output, dtype=logits.dtype)
        grad_output = same_dtype(logits, "logits", grad_output, "grad_output")
        if grad_output.shape != logits.shape[:-1]:
            raise ValueError(f"grad_output must have shape {logits.shape[:-1]} for "
                             f"reduction='none', got {grad_output.shape}")
        g = grad_output.reshape(-1)
    else:
        if isinstance(grad_output, np.ndarray) and grad_output.ndim == 0:
            grad_output = grad_output[()]
        g = as_real(grad_output, f"grad_output (a scalar for reduction={reduction!r})", None)
    dlogits = _C.cross_entropy_backward(rows(logits), _flat_targets(targets, is_ids), None, g,
                                        reduction, ignore_index, eps)
    return dlogits.reshape(logits.shape)
