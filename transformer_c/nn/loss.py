"""Losses of the coursework interface: forward(predictions, targets) -> float,
backward(predictions, targets) -> dL/dpredictions."""
import numpy as np

from .. import functional as F

__all__ = ["CrossEntropyLoss"]


class CrossEntropyLoss:
    """Softmax cross-entropy, mean over rows (fused log-softmax + NLL in C).

    predictions: logits (N, C) (or (..., C)); targets: int class ids (N,) of any integer
    dtype, or one-hot / probability rows (N, C). Extensions: ignore_index (rows whose id
    equals it are skipped), label_smoothing, reduction ("mean" or "sum").
    """

    def __init__(self, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing
        self.reduction = reduction

    def _targets(self, predictions, targets):
        targets = np.asarray(targets)
        if np.issubdtype(targets.dtype, np.floating) and targets.shape == np.shape(predictions):
            return targets.astype(np.asarray(predictions).dtype, copy=False)  # soft labels
        return targets

    def _options(self):
        return dict(ignore_index=self.ignore_index, label_smoothing=self.label_smoothing,
                    reduction=self.reduction)

    def forward(self, predictions, targets):
        """Mean cross-entropy over the rows of predictions (N, C) logits; targets int (N,) or
        one-hot / probabilities (N, C). Returns a float."""
        return float(F.cross_entropy(predictions, self._targets(predictions, targets), **self._options()))

    def backward(self, predictions, targets):
        """dL/dpredictions (N, C) of forward's mean loss."""
        return F.cross_entropy_backward(predictions, self._targets(predictions, targets), **self._options())

    __call__ = forward
