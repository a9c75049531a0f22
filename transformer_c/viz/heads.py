"""Head specialisation: where each head's attention goes (previous token, first token, self,
delimiters, far away), as a table and a heatmap."""
import numpy as np

from . import _mpl
from .attention import _as_lhts

__all__ = ["head_specialisation", "plot_head_specialisation"]


def _delimiter_keys(tokens, delimiters, S):
    if tokens is None:
        raise ValueError("tokens (the S key token ids) are needed to find delimiters")
    tokens = np.asarray(tokens)
    if tokens.shape != (S,):
        raise ValueError(f"tokens must have shape ({S},) (one id per key), got {tokens.shape}")
    if callable(delimiters):
        return np.array([bool(delimiters(t)) for t in tokens.tolist()])
    return np.isin(tokens, np.asarray(list(delimiters)))


def head_specialisation(attention, tokens=None, delimiters=None, long_range=8):
    """The share of each head's attention that goes to a few kinds of keys.

    attention: (L, H, T, S) or (H, T, S) probabilities (rows sum to 1). Query t sits at
    position p = t + S - T (bottom-right alignment: p = t for self-attention). For each
    query, the mass on:
      previous:   key p - 1 (queries with p >= 1 only);
      first:      key 0;
      self:       key p;
      delimiter:  keys whose token is a delimiter (only when ``delimiters`` is given:
                  a set of token ids, or a predicate id -> bool; ``tokens``: the (S,) key
                  token ids);
      long_range: keys at distance |p - s| >= long_range (an integer >= 1);
    averaged over the queries. At p = 0 "first" and "self" are the same key.
    Returns a dict {category: (L, H) float64 array} in the order above (a (H, T, S) input
    gives L = 1).
    """
    if np.ndim(attention) not in (3, 4):
        raise ValueError(f"attention must be (L, H, T, S) or (H, T, S), got shape "
                         f"{np.shape(attention)}")
    a = _as_lhts(attention)
    L, H, T, S = a.shape
    if T > S or T == 0:
        raise ValueError(f"attention needs 1 <= T <= S, got T={T}, S={S}")
    long_range = int(long_range)
    if long_range < 1:
        raise ValueError(f"long_range must be >= 1, got {long_range}")
    p = np.arange(T) + (S - T)                      # query positions
    s = np.arange(S)
    out = {}
    if T > 1 or p[0] >= 1:
        rows = p >= 1
        out["previous"] = a[:, :, rows, p[rows] - 1].mean(axis=-1)
    else:
        out["previous"] = np.zeros((L, H))
    out["first"] = a[..., 0].mean(axis=-1)
    out["self"] = a[:, :, np.arange(T), p].mean(axis=-1)
    if delimiters is not None:
        keys = _delimiter_keys(tokens, delimiters, S)
        out["delimiter"] = a[..., keys].sum(axis=-1).mean(axis=-1)
    far = np.abs(p[:, None] - s[None, :]) >= long_range
    out["long_range"] = (a * far).sum(axis=-1).mean(axis=-1)
    return out


def plot_head_specialisation(attention=None, tokens=None, delimiters=None, long_range=8, *,
                             table=None, title="head specialisation"):
    """Heatmap of head_specialisation: one row per (layer, head), one column per category,
    each cell annotated with its share.

    attention, tokens, delimiters, long_range: as head_specialisation; or table: its result.
    Returns a matplotlib Figure (colour bar 0..1).
    """
    _mpl.require("plot_head_specialisation")
    if table is None:
        if attention is None:
            raise ValueError("give attention or table")
        table = head_specialisation(attention, tokens, delimiters, long_range)
    names = list(table)
    m = np.stack([np.asarray(table[k], dtype=np.float64) for k in names], axis=-1)
    L, H, K = m.shape
    m = m.reshape(L * H, K)
    fig = _mpl.figure("plot_head_specialisation", 1.1 * K + 2.6, 0.28 * L * H + 1.4)
    ax = fig.subplots()
    im = ax.imshow(m, cmap="magma", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(K), [k.replace("_", " ") for k in names], rotation=30, ha="right")
    ax.set_yticks(range(L * H), [f"L{i // H} H{i % H}" for i in range(L * H)], fontsize=8)
    if L * H * K <= 400:
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v < 0.6 else "black")
    ax.set_xlabel("attention on")
    ax.set_ylabel("layer, head")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="share of attention")
    return fig
