"""Mixture-of-experts routing: tokens per expert per layer, and the dropped ones."""
import numpy as np

from . import _mpl

__all__ = ["routing_counts", "plot_routing"]


def routing_counts(stats):
    """(kept (L, E) int64, dropped (L, E) int64) from per-layer routing statistics: a list
    of dicts with "tokens_per_expert" and "dropped_per_expert" (E,) each, as
    GPT.routing_stats / Encoder.routing_stats / nn.MoE.routing_stats give them."""
    if not isinstance(stats, (list, tuple)) or not stats:
        raise ValueError("stats must be a non-empty list of per-layer routing dicts "
                         "(model.routing_stats(idx); [] means the model has no MoE layer)")
    try:
        kept = np.stack([np.asarray(s["tokens_per_expert"], np.int64) for s in stats])
        dropped = np.stack([np.asarray(s["dropped_per_expert"], np.int64) for s in stats])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"stats must hold tokens_per_expert and dropped_per_expert arrays of "
                         f"one length per layer: {e}") from None
    if kept.ndim != 2 or np.any(kept < 0) or np.any(dropped < 0):
        raise ValueError(f"stats must give (E,) non-negative counts per layer, got {kept.shape}")
    return kept, dropped


def plot_routing(stats, *, title="tokens per expert"):
    """Bar charts of the routing, one panel per layer: the choices each expert ran on
    (kept) with the ones it dropped over capacity stacked above, and the capacity line.

    stats: per-layer dicts (model.routing_stats(idx)); the capacity is drawn when the dicts
    have "capacity". Returns a matplotlib Figure.
    """
    _mpl.require("plot_routing")
    kept, dropped = routing_counts(stats)
    L, E = kept.shape
    cols = min(L, 4)
    rows = -(-L // cols)
    fig = _mpl.figure("plot_routing", 3.2 * cols + 0.6, 2.6 * rows + 0.8)
    axes = _mpl.grid(fig, rows, cols)
    x = np.arange(E)
    for layer in range(rows * cols):
        ax = axes[layer // cols][layer % cols]
        if layer >= L:
            ax.set_axis_off()
            continue
        ax.bar(x, kept[layer], color="tab:blue", label="kept")
        ax.bar(x, dropped[layer], bottom=kept[layer], color="tab:red", label="dropped")
        cap = stats[layer].get("capacity") if isinstance(stats[layer], dict) else None
        if cap is not None:
            ax.axhline(cap, color="black", linestyle="--", linewidth=1, label="capacity")
        ax.set_xticks(x)
        ax.set_xlabel("expert")
        ax.set_ylabel("tokens")
        ax.set_title(f"layer {layer}: {int(dropped[layer].sum())} dropped", fontsize=10)
        if layer == 0:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig
