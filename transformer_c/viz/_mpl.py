"""The matplotlib seam: the one missing-matplotlib error, Figure creation without pyplot
(no global state, headless: savefig renders through Agg), and the shared heatmap drawing."""
import importlib
import math

import numpy as np

EXTRA = 'pip install "transformer_c[plot]"'


class MatplotlibMissingError(ImportError):
    """A transformer_c.viz plotting function was called without matplotlib installed."""


def have_matplotlib():
    """True when matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def available():
    """``transformer_c.viz.have_matplotlib()`` (looked up there, so that it can be swapped)."""
    return importlib.import_module("transformer_c.viz").have_matplotlib()


def require(what):
    """Raise MatplotlibMissingError naming the extra unless matplotlib is importable."""
    if not available():
        raise MatplotlibMissingError(f"transformer_c.viz.{what} needs matplotlib, an optional "
                                     f"extra: {EXTRA}")


def figure(what, width, height):
    """A new matplotlib Figure of (width, height) inches, not registered with pyplot."""
    require(what)
    from matplotlib.figure import Figure

    return Figure(figsize=(min(width, 18.0), min(height, 18.0)), dpi=100,
                  layout="constrained")


def colors(name, n):
    """n colours spread over the matplotlib colormap ``name``: (n, 4) RGBA."""
    from matplotlib import colormaps

    if name == "tab10":                                   # a qualitative map: its colours
        return colormaps[name](np.arange(max(n, 1)) % 10)
    return colormaps[name](np.linspace(0.0, 0.9, max(n, 1)))


def grid(fig, nrows, ncols, **kw):
    """fig.subplots(nrows, ncols) as a 2-D array of Axes (squeeze=False)."""
    return fig.subplots(nrows, ncols, squeeze=False, **kw)


def tick_step(n, inches, fontsize):
    """Show every k-th of n tick labels so that labels on an axis of ``inches`` inches do
    not overlap at ``fontsize`` points (a label needs about 1.1 fontsize of room)."""
    need = n * 1.1 * fontsize / 72.0
    return max(1, math.ceil(need / max(inches, 1e-6)))


def set_ticks(ax, axis, labels, inches, fontsize, rotation=90):
    """Token labels on the x or y axis of a heatmap, thinned to fit ``inches``."""
    n = len(labels)
    step = tick_step(n, inches, fontsize)
    idx = np.arange(0, n, step)
    text = [str(labels[i]) for i in idx]
    if axis == "x":
        ax.set_xticks(idx, text, rotation=rotation, fontsize=fontsize,
                      ha="center" if rotation in (0, 90) else "right")
    else:
        ax.set_yticks(idx, text, fontsize=fontsize)


def visible(label):
    """A token as a readable label: spaces as "␣", newlines and tabs escaped, "$" literal
    (not matplotlib mathtext)."""
    s = str(label).replace(" ", "\u2423").replace("\n", "\\n").replace("\t", "\\t")
    return s.replace("$", r"\$") or "''"


def labels_or_positions(labels, n, name):
    """A list of n tick labels: ``labels`` (any sequence of n items, see visible) or
    0..n-1."""
    if labels is None:
        return [str(i) for i in range(n)]
    labels = [visible(s) for s in labels]
    if len(labels) != n:
        raise ValueError(f"{name} must have {n} entries, got {len(labels)}")
    return labels


def array(x, name, ndims):
    """x as a finite float64 array whose ndim is in ``ndims`` (a ValueError naming x)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim not in ndims:
        want = " or ".join(str(d) for d in ndims)
        raise ValueError(f"{name} must have {want} dimensions, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains non-finite values")
    return a
