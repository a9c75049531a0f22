"""Positional encodings: the table as a heatmap, and PE(p)·PE(p+k) against the distance k."""
import numpy as np

from . import _mpl

__all__ = ["plot_positional_encoding", "pe_dot_products", "plot_pe_dot_vs_distance"]


def _table(pe, length, dim, base):
    if pe is None:
        from ..functional import sinusoidal_positions

        return sinusoidal_positions(length, dim, base=base)
    return _mpl.array(pe, "pe", (2,))


def plot_positional_encoding(pe=None, *, length=101, dim=64, base=10000.0,
                             title="sinusoidal positional encoding"):
    """Heatmap of a position-encoding table, positions (rows) x dimensions (columns).

    pe: a (T, D) array (e.g. a learned position embedding), or None for
    transformer_c.functional.sinusoidal_positions(length, dim, base) (positions 0..length-1).
    Returns a matplotlib Figure (colour bar: the encoding value).
    """
    _mpl.require("plot_positional_encoding")
    pe = _table(pe, length, dim, base)
    T, D = pe.shape
    fig = _mpl.figure("plot_positional_encoding", 8.0, 5.0)
    ax = fig.subplots()
    lim = float(np.abs(pe).max()) or 1.0
    im = ax.imshow(pe, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto",
                   interpolation="nearest")
    ax.set_xlabel(f"dimension (0..{D - 1})")
    ax.set_ylabel(f"position (0..{T - 1})")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="PE value")
    return fig


def pe_dot_products(pe, positions, max_distance):
    """PE(p)·PE(p+k) for each p in ``positions`` and k = 0..max_distance.

    pe: (T, D) table with T > max(positions) + max_distance; positions: sequence of P
    integers >= 0; max_distance: integer >= 0. Returns (P, max_distance + 1) float64. For
    the sinusoidal table the rows coincide: PE(p)·PE(p+k) = sum_i cos(k w_i) for even D.
    """
    pe = _mpl.array(pe, "pe", (2,))
    positions = [int(p) for p in positions]
    K = int(max_distance)
    if not positions or min(positions) < 0 or K < 0:
        raise ValueError("positions must be a non-empty list of integers >= 0 and "
                         "max_distance >= 0")
    if max(positions) + K >= pe.shape[0]:
        raise ValueError(f"pe has {pe.shape[0]} rows: needs more than max(positions) + "
                         f"max_distance = {max(positions) + K}")
    return np.stack([pe[p + np.arange(K + 1)] @ pe[p] for p in positions])


def plot_pe_dot_vs_distance(pe=None, positions=(0, 10, 30, 50), max_distance=50, *,
                            length=None, dim=64, base=10000.0,
                            title="PE(p)·PE(p+k) depends only on k"):
    """PE(p)·PE(p+k) against k, one curve per starting position p (they coincide for the
    sinusoidal encoding). pe: (T, D) or None for the sinusoidal table of
    max(positions) + max_distance + 1 positions (or ``length``) and ``dim`` dimensions.
    Returns a matplotlib Figure.
    """
    _mpl.require("plot_pe_dot_vs_distance")
    n = length or max(positions) + int(max_distance) + 1
    dots = pe_dot_products(_table(pe, n, dim, base), positions, max_distance)
    fig = _mpl.figure("plot_pe_dot_vs_distance", 7.0, 4.2)
    ax = fig.subplots()
    k = np.arange(dots.shape[1])
    styles = ["-", "--", ":", "-."]
    for i, (p, row) in enumerate(zip(positions, dots)):
        ax.plot(k, row, styles[i % 4], lw=2.2 - 0.3 * (i % 4), label=f"p = {p}")
    ax.set_xlabel("distance k")
    ax.set_ylabel("PE(p) · PE(p + k)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig
