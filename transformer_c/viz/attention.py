"""Attention maps (per layer and head, self or cross) and attention rollout."""
import numpy as np

from . import _mpl

__all__ = ["plot_attention_maps", "plot_cross_attention", "attention_rollout",
           "plot_attention_rollout"]


def _as_lhts(attention, name="attention"):
    """(L, H, T, S), (H, T, S) or (T, S) -> a float64 (L, H, T, S) array."""
    a = _mpl.array(attention, name, (2, 3, 4))
    return a.reshape((1,) * (4 - a.ndim) + a.shape)


def _pick(a, layers, heads):
    layers = range(a.shape[0]) if layers is None else list(layers)
    heads = range(a.shape[1]) if heads is None else list(heads)
    for name, idx, n in (("layers", layers, a.shape[0]), ("heads", heads, a.shape[1])):
        bad = [i for i in idx if not 0 <= i < n]
        if bad or not len(idx):
            raise ValueError(f"{name} must be a non-empty list of indices in [0, {n}), "
                             f"got {list(idx)}")
    return list(layers), list(heads)


def _heatmap_grid(what, a, row_labels, col_labels, *, layers, heads, title, xlabel, ylabel,
                  fontsize=None, panel=None, vmax=None, cmap="viridis",
                  bar_label="attention probability"):
    """The one drawing routine for attention-like maps: a grid of L x H heatmaps with
    token labels (y on the left column, x on the bottom row), one shared colour bar."""
    T, S = a.shape[2:]
    fontsize = fontsize or (8 if max(T, S) <= 32 else 7)
    layers, heads = _pick(a, layers, heads)
    rows, cols = len(layers), len(heads)
    if panel is None:  # inches per panel: room for every label up to ~64 tokens, then thin
        panel = min(max(2.2, 0.12 * max(T, S)), 8.0, 16.0 / cols)
        panel = max(panel, 1.6)
    fig = _mpl.figure(what, cols * panel + 1.4, rows * panel * max(T / S, 0.3) + 0.9)
    axes = _mpl.grid(fig, rows, cols, sharex=True, sharey=True)
    vmax = float(a.max()) if vmax is None else vmax
    im = None
    for r, layer in enumerate(layers):
        for c, head in enumerate(heads):
            ax = axes[r, c]
            im = ax.imshow(a[layer, head], cmap=cmap, vmin=0.0, vmax=vmax or 1.0,
                           aspect="auto", interpolation="nearest")
            ax.set_title(f"layer {layer}, head {head}" if a.shape[0] > 1 or layers != [0]
                         else f"head {head}", fontsize=9)
            ax.tick_params(labelbottom=r == rows - 1, labelleft=c == 0, length=2,
                           labelsize=fontsize)
            ax.tick_params(axis="x", labelrotation=90)
        axes[r, 0].set_ylabel(ylabel, fontsize=9)
    _mpl.set_ticks(axes[0, 0], "x", col_labels, panel, fontsize)    # shared by the grid
    _mpl.set_ticks(axes[0, 0], "y", row_labels, panel * T / S, fontsize)
    for c in range(cols):
        axes[-1, c].set_xlabel(xlabel, fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.8, pad=0.015, label=bar_label)
    fig.suptitle(title)
    return fig


def plot_attention_maps(attention, labels=None, *, layers=None, heads=None,
                        title="attention maps", fontsize=None, panel=None):
    """Self-attention probabilities as a grid of heatmaps, one per (layer, head).

    attention: (L, H, T, S), (H, T, S) or (T, S) probabilities (row t: how query t spreads
    over the keys; S = T for self-attention, S > T when decoding with a cache);
    labels: S token strings for the keys (the queries are the last T of them), or None
    for positions. layers / heads: the indices to draw (default all). Tick labels (fontsize
    points, default 8 up to 32 tokens, else 7) are all shown up to ~64 tokens on one
    heatmap and thinned (every k-th) beyond or when many heads share the width (16 in);
    panel: inches per heatmap.
    Returns a matplotlib Figure (rows = layers, columns = heads, one colour bar).
    """
    a = _as_lhts(attention)
    T, S = a.shape[2:]
    keys = _mpl.labels_or_positions(labels, S, "labels")
    return _heatmap_grid("plot_attention_maps", a, keys[S - T:], keys, layers=layers,
                         heads=heads, title=title, xlabel="key", ylabel="query",
                         fontsize=fontsize, panel=panel)


def plot_cross_attention(attention, source_labels=None, target_labels=None, *, layers=None,
                         heads=None, title="cross-attention", fontsize=None, panel=None):
    """Encoder-decoder cross-attention: target positions (rows) over source positions.

    attention: (L, H, T, S), (H, T, S) or (T, S) probabilities, T target (decoder) and S
    source (encoder) positions; source_labels: S strings, target_labels: T strings (None:
    positions). A copy task shows a diagonal, a reversal an anti-diagonal.
    Returns a matplotlib Figure (rows = layers, columns = heads, one colour bar).
    """
    a = _as_lhts(attention)
    T, S = a.shape[2:]
    return _heatmap_grid("plot_cross_attention", a,
                         _mpl.labels_or_positions(target_labels, T, "target_labels"),
                         _mpl.labels_or_positions(source_labels, S, "source_labels"),
                         layers=layers, heads=heads, title=title, xlabel="source",
                         ylabel="target", fontsize=fontsize, panel=panel)


def attention_rollout(attention, residual=0.5):
    """Attention rollout (Abnar & Zuidema 2020, "Quantifying attention flow").

    attention: (L, H, T, T) self-attention probabilities of L layers (layer 0 first), or a
    sequence of L (H, T, T) arrays. Each layer's heads are averaged, the residual stream is
    added and the rows renormalised, A_l = rownorm(residual I + (1 - residual) mean_h
    attention[l]), and the layers multiplied: R = A_{L-1} ... A_1 A_0.
    residual: in [0, 1], 0.5 as in the paper.
    Returns R: (T, T) float64, row t the share of each input token in position t's output
    of the last layer (rows sum to 1 when the attention rows do).
    """
    a = np.asarray(attention, dtype=np.float64) if not isinstance(attention, (list, tuple)) \
        else np.stack([np.asarray(x, dtype=np.float64) for x in attention])
    if a.ndim != 4 or a.shape[2] != a.shape[3] or a.shape[0] < 1:
        raise ValueError("attention must be (L, H, T, T) self-attention probabilities, got "
                         f"shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("attention contains non-finite values")
    residual = float(residual)
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"residual must be in [0, 1], got {residual}")
    eye = np.eye(a.shape[2])
    rollout = eye
    for layer in a:
        step = residual * eye + (1.0 - residual) * layer.mean(axis=0)
        sums = step.sum(axis=-1, keepdims=True)
        step = np.divide(step, sums, out=np.zeros_like(step), where=sums > 0)
        rollout = step @ rollout
    return rollout


def plot_attention_rollout(attention, labels=None, *, residual=0.5, title="attention rollout",
                           fontsize=None, panel=None):
    """Heatmap of attention_rollout(attention, residual) with token labels.

    attention: (L, H, T, T) probabilities (or a sequence of L (H, T, T)); labels: T token
    strings or None. Returns a matplotlib Figure (one heatmap, colour bar).
    """
    _mpl.require("plot_attention_rollout")
    r = attention_rollout(attention, residual)
    T = r.shape[0]
    keys = _mpl.labels_or_positions(labels, T, "labels")
    fig = _heatmap_grid("plot_attention_rollout", r[None, None], keys, keys, layers=None,
                        heads=None, title=title, xlabel="input token", ylabel="position",
                        fontsize=fontsize, panel=panel, bar_label="share of the input token")
    fig.axes[0].set_title(f"{len(attention)} layers, residual {residual:g}", fontsize=9)
    return fig
