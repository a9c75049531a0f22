"""Token embeddings: PCA to two dimensions, with labels."""
import numpy as np

from . import _mpl

__all__ = ["embedding_pca", "plot_embedding_pca"]


def embedding_pca(embeddings, n_components=2):
    """Principal components of the rows of an embedding matrix.

    embeddings: (V, D) (one row per token); n_components: 1 <= n <= min(V, D).
    Returns (coords (V, n) float64: the centred rows projected on the top-n principal
    directions (unit vectors in R^D, each signed so that its largest-magnitude entry,
    the first among ties, is positive); explained (n,): the share of the variance each component explains).
    """
    e = _mpl.array(embeddings, "embeddings", (2,))
    n = int(n_components)
    if not 1 <= n <= min(e.shape):
        raise ValueError(f"n_components must be in [1, {min(e.shape)}], got {n_components}")
    x = e - e.mean(axis=0)
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    flip = np.sign(vt[np.arange(n), np.abs(vt[:n]).argmax(axis=1)])
    coords = u[:, :n] * s[:n] * np.where(flip == 0, 1.0, flip)
    total = float((s ** 2).sum())
    explained = s[:n] ** 2 / total if total > 0 else np.zeros(n)
    return coords, explained


def plot_embedding_pca(embeddings, labels=None, *, max_labels=60, ids=None,
                       title="token embeddings, first two principal components"):
    """Scatter of the rows of an embedding matrix on its top-2 principal components.

    embeddings: (V, D); labels: V strings (e.g. the tokenizer's decoded tokens) or None;
    ids: the token ids to label (default the first max_labels of them; every point is
    drawn either way). Returns a matplotlib Figure (axes: PC1 / PC2 with their share of
    the variance).
    """
    _mpl.require("plot_embedding_pca")
    coords, explained = embedding_pca(embeddings, 2)
    V = coords.shape[0]
    fig = _mpl.figure("plot_embedding_pca", 7.0, 6.0)
    ax = fig.subplots()
    ax.scatter(coords[:, 0], coords[:, 1], s=12, alpha=0.6, color="tab:blue")
    if labels is not None:
        labels = _mpl.labels_or_positions(labels, V, "labels")
        chosen = range(min(V, int(max_labels))) if ids is None else [int(i) for i in ids]
        for i in chosen:
            if not 0 <= i < V:
                raise ValueError(f"ids must be in [0, {V}), got {i}")
            ax.annotate(labels[i], coords[i], fontsize=8,
                        xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"PC1 ({100 * explained[0]:.1f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * explained[1]:.1f}% of variance)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig
