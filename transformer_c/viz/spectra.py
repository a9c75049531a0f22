"""Singular values: of a matrix over training, and of QK^T per head (numerical rank)."""
import numpy as np

from . import _mpl

__all__ = ["singular_values_over_training", "plot_singular_values", "qk_spectra",
           "plot_qk_spectra", "effective_rank"]


def singular_values_over_training(history, top_k=None):
    """Stack the singular values of a matrix recorded during training.

    history: a sequence of N (step, x) pairs, x a matrix (M, K) (its singular values are
    computed) or a 1-D array of singular values. top_k: keep the k largest (default all).
    Returns (steps (N,) int64, values (N, k) float64, descending; NaN where a record has
    fewer values), sorted by step.
    """
    if not len(history):
        raise ValueError("history is empty")
    rows = []
    for i, rec in enumerate(history):
        try:
            step, x = rec
        except (TypeError, ValueError):
            raise ValueError(f"history[{i}] must be a (step, matrix or singular values) pair")
        x = _mpl.array(x, f"history[{i}][1]", (1, 2))
        sv = np.linalg.svd(x, compute_uv=False) if x.ndim == 2 else np.sort(x)[::-1]
        rows.append((int(step), sv))
    rows.sort(key=lambda r: r[0])
    k = max(len(sv) for _, sv in rows) if top_k is None else int(top_k)
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    values = np.full((len(rows), k), np.nan)
    for i, (_, sv) in enumerate(rows):
        values[i, :min(k, len(sv))] = sv[:k]
    return np.array([r[0] for r in rows], dtype=np.int64), values


def plot_singular_values(history, top_k=8, *, log=True, name="matrix", title=None):
    """Curves of the top_k singular values of a matrix against the training step.

    history: as singular_values_over_training; log: logarithmic y axis; name: what the
    matrix is (for the title, e.g. "token embedding"). Returns a matplotlib Figure.
    """
    _mpl.require("plot_singular_values")
    steps, values = singular_values_over_training(history, top_k)
    fig = _mpl.figure("plot_singular_values", 7.0, 4.2)
    ax = fig.subplots()
    colors = _mpl.colors("viridis", values.shape[1])
    for i in range(values.shape[1]):
        ax.plot(steps, values[:, i], "-", marker="." if len(steps) < 40 else None,
                color=colors[i], label=f"σ{i + 1}")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("singular value")
    ax.set_title(title or f"top {values.shape[1]} singular values of the {name}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2 if values.shape[1] > 6 else 1, loc="best")
    return fig


def effective_rank(singular_values):
    """The effective rank of a matrix from its singular values (Roy and Vetterli, 2007):
    exp of the entropy of p_i = sigma_i / sum(sigma), a number between 1 (one direction)
    and the number of singular values (all equal); NaN for an all-zero spectrum.

    singular_values: (..., r) non-negative; the rank is taken over the last axis.
    Returns a float64 array of shape (...) (a float for a 1-D input)."""
    s = _mpl.array(singular_values, "singular_values", tuple(range(1, 33)))
    if s.shape[-1] == 0:
        raise ValueError("singular_values must have at least one value on its last axis")
    if np.any(s < 0):
        raise ValueError("singular_values must be >= 0")
    total = s.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = s / total
        h = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=-1)
    out = np.where(total[..., 0] > 0, np.exp(h), np.nan)
    return float(out) if out.ndim == 0 else out


def _per_head(x, name, n_heads):
    """(H, A, B) as is; (A, H*B) split into H column blocks (the x @ W layout)."""
    x = _mpl.array(x, name, (2, 3))
    if x.ndim == 3:
        return x
    if n_heads is None or x.shape[1] % int(n_heads):
        raise ValueError(f"a 2-D {name} {x.shape} needs n_heads dividing its "
                         f"{x.shape[1]} columns, got n_heads={n_heads}")
    H = int(n_heads)
    return x.reshape(x.shape[0], H, -1).transpose(1, 0, 2)


def _rtol(rtol, shape):
    rtol = max(shape) * np.finfo(np.float64).eps if rtol is None else float(rtol)
    if not rtol >= 0:
        raise ValueError(f"rtol must be >= 0, got {rtol}")
    return rtol


def qk_spectra(w_q=None, w_k=None, *, q=None, k=None, n_heads=None, rtol=None):
    """Singular values and numerical rank of each head's QK^T.

    Either weights, w_q and w_k: (H, D, dk) per head, or (D, H*dk) with n_heads (heads
    side by side in the columns, the x @ W layout): M_h = W_q[h] W_k[h]^T (D, D), the
    bilinear form of the scores x_i^T M_h x_j; or activations, q: (H, T, dk) and
    k: (H, S, dk) (or (T, H*dk), (S, H*dk) with n_heads): M_h = q[h] k[h]^T (T, S).
    rtol: the numerical rank counts the singular values > rtol * sigma_max of that head;
    default max(M_h.shape) * float64 eps (numpy.linalg.matrix_rank's tolerance).
    Returns (spectra (H, r) float64, descending, r = min(M_h.shape); ranks (H,) int64);
    a rank is at most dk.
    """
    if (w_q is None) == (q is None) or (w_q is None) != (w_k is None) or \
            (q is None) != (k is None):
        raise ValueError("give either w_q and w_k, or q and k")
    a, b = (w_q, w_k) if w_q is not None else (q, k)
    names = ("w_q", "w_k") if w_q is not None else ("q", "k")
    a, b = _per_head(a, names[0], n_heads), _per_head(b, names[1], n_heads)
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[2]:
        raise ValueError(f"{names[0]} {a.shape} and {names[1]} {b.shape} must have the same "
                         "number of heads and head size")
    m = a @ b.transpose(0, 2, 1)                                # (H, A, B)
    spectra = np.linalg.svd(m, compute_uv=False)
    rtol = _rtol(rtol, m.shape[1:])
    ranks = (spectra > rtol * spectra[:, :1]).sum(axis=1).astype(np.int64)
    return spectra, ranks


def plot_qk_spectra(w_q=None, w_k=None, *, q=None, k=None, n_heads=None, rtol=None,
                    title=r"singular spectrum of $QK^\top$ per head"):
    """The singular values of each head's QK^T (log scale, normalised by the largest), the
    numerical rank in the legend and the rank tolerance as a dotted line. Arguments as
    qk_spectra. Returns a matplotlib Figure."""
    _mpl.require("plot_qk_spectra")
    spectra, ranks = qk_spectra(w_q, w_k, q=q, k=k, n_heads=n_heads, rtol=rtol)
    fig = _mpl.figure("plot_qk_spectra", 7.0, 4.2)
    ax = fig.subplots()
    colors = _mpl.colors("tab10" if len(ranks) <= 10 else "viridis", len(ranks))
    tiny = np.finfo(np.float64).tiny
    for h, (sv, r) in enumerate(zip(spectra, ranks)):
        ax.plot(np.arange(1, len(sv) + 1), np.maximum(sv / max(sv[0], tiny), 1e-18), ".-",
                color=colors[h], label=f"head {h}: rank {r}")
    tol = _rtol(rtol, (spectra.shape[1],) if q is None else (np.shape(q)[-2], np.shape(k)[-2]))
    ax.axhline(tol, color="gray", ls=":", lw=1.2, label=f"rank tolerance {tol:.1e}")
    ax.set_yscale("log")
    ax.set_xlabel("index i")
    ax.set_ylabel(r"$\sigma_i / \sigma_1$")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return fig
