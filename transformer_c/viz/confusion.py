"""Confusion matrices: counts and row-normalised."""
import numpy as np

from . import _mpl

__all__ = ["confusion_matrix", "plot_confusion_matrix"]


def confusion_matrix(y_true, y_pred, n_classes=None):
    """Counts of (true class, predicted class) pairs.

    y_true, y_pred: (N,) integer class ids in [0, n_classes); n_classes: default
    max(ids) + 1. Returns (C, C) int64, rows = true class, columns = predicted.
    """
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of one length, got {t.shape}, {p.shape}")
    for name, x in (("y_true", t), ("y_pred", p)):
        if x.size and (x.dtype.kind not in "iub" or x.min() < 0):
            raise ValueError(f"{name} must hold integer class ids >= 0")
    C = int(n_classes) if n_classes is not None else int(max(t.max(initial=-1),
                                                             p.max(initial=-1)) + 1)
    if t.size and max(t.max(), p.max()) >= C:
        raise ValueError(f"class ids must be < n_classes={C}")
    out = np.zeros((C, C), dtype=np.int64)
    np.add.at(out, (t.astype(np.int64), p.astype(np.int64)), 1)
    return out


def plot_confusion_matrix(counts, labels=None, *, show=("counts", "normalized"),
                          title="confusion matrix"):
    """Heatmaps of a confusion matrix: the counts and/or the rows normalised to sum to 1.

    counts: (C, C), rows = true class (e.g. confusion_matrix(y_true, y_pred)); labels: C
    class names or None; show: "counts", "normalized" or both. Cells are annotated when
    C <= 20. Returns a matplotlib Figure (one panel per view, each with a colour bar).
    """
    _mpl.require("plot_confusion_matrix")
    m = _mpl.array(counts, "counts", (2,))
    if m.shape[0] != m.shape[1] or np.any(m < 0):
        raise ValueError(f"counts must be a square non-negative matrix, got shape {m.shape}")
    show = (show,) if isinstance(show, str) else tuple(show)
    if not show or any(s not in ("counts", "normalized") for s in show):
        raise ValueError(f'show must be "counts", "normalized" or both, got {show}')
    C = m.shape[0]
    names = _mpl.labels_or_positions(labels, C, "labels")
    side = min(max(3.2, 0.32 * C), 9.0, 17.0 / len(show) - 1.3)   # inches per panel
    fig = _mpl.figure("plot_confusion_matrix", len(show) * (side + 1.3), side + 0.9)
    rows = m.sum(axis=1, keepdims=True)
    for ax, view in zip(_mpl.grid(fig, 1, len(show))[0], show):
        v = m if view == "counts" else np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
        im = ax.imshow(v, cmap="Blues", vmin=0, vmax=None if view == "counts" else 1.0)
        fs = 8 if C <= 40 else 6
        _mpl.set_ticks(ax, "x", names, side, fs, rotation=45)
        _mpl.set_ticks(ax, "y", names, side, fs)
        if C <= 20:
            hi = v.max() or 1.0
            for (i, j), x in np.ndenumerate(v):
                ax.text(j, i, f"{x:.0f}" if view == "counts" else f"{x:.2f}", ha="center",
                        va="center", fontsize=fs, color="white" if x > 0.6 * hi else "black")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title("counts" if view == "counts" else "row-normalised", fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.8, label="count" if view == "counts" else "share of row")
    fig.suptitle(title)
    return fig
