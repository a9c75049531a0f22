"""Study "heads": what different attention heads learn (seed 004, Experiment 1).

A character-level GPT is trained on Tiny Shakespeare (or the embedded corpus), then, over
many validation windows, for every layer and head:

- where its attention goes (:func:`transformer_c.viz.head_specialisation`, averaged over the
  windows): the share on the previous token, the first token of the window, itself, the
  delimiters (space, newline, punctuation) and keys at least ``long_range`` positions back;
  the mean distance |query - key| it looks back;
- what it is worth: the increase of the validation loss when the head alone is ablated
  (``GPT.with_head_mask``: its output multiplied by 0 before the output projection).

Each head's ``dominant`` category (:func:`dominant`) is the one whose share most exceeds a
uniform causal head's on the same windows, measured as the excess share
(share - uniform) / (1 - uniform); "mixed" when no excess reaches :data:`EXCESS_THRESHOLD`.

One figure per layer (each head's attention on an example line, its shares, its ablation
cost) and an overview heatmap of the shares.
"""
import numpy as np

from ..data import StreamDataset
from ..nn import GPT, GPTConfig
from ..train import TrainConfig
from . import Report, register

__all__ = ["heads", "DELIMITERS", "CATEGORIES", "EXCESS_THRESHOLD", "head_statistics",
           "ablation_losses", "uniform_shares", "excess_shares", "dominant", "settings"]

DELIMITERS = " \n.,;:!?"
CATEGORIES = ("previous", "first", "self", "delimiter", "long_range")
EXCESS_THRESHOLD = 0.1


def settings(quick):
    """The study's settings (a dict): model shape, training steps and batch, how many
    validation windows are analysed and how many the ablations are scored on."""
    if quick:
        return dict(n_layer=2, n_head=4, n_embd=64, block_size=32, steps=200, batch_size=16,
                    lr=3e-3, windows=256, ablation_windows=128, batch=64)
    return dict(n_layer=4, n_head=4, n_embd=128, block_size=64, steps=2500, batch_size=16,
                lr=2e-3, windows=10240, ablation_windows=1024, batch=64)


def _starts(n_windows, count):
    """count evenly spaced window starts in [0, n_windows)."""
    return np.unique(np.linspace(0, n_windows - 1, count).round().astype(np.int64))


def head_statistics(model, data, starts, delimiter_ids, long_range, batch=64):
    """Attention statistics of every head over the windows of ``data`` (a StreamDataset)
    starting at ``starts`` (N,), read from the C fast path (``GPT.inspect``).

    delimiter_ids: the token ids counted as delimiters; long_range: the distance from which
    a key counts as far. Returns a dict {category: (L, H) float64} with the categories of
    :data:`CATEGORIES` (head_specialisation's shares, averaged over queries and windows) and
    "mean_distance": the mean of |query - key| under the attention, (L, H)."""
    from ..viz import head_specialisation
    cfg = model.config
    T = data.block_size
    dist = np.abs(np.arange(T)[:, None] - np.arange(T)[None, :]).astype(np.float64)
    sums = {k: np.zeros((cfg.n_layer, cfg.n_head)) for k in CATEGORIES + ("mean_distance",)}
    n = 0
    delim = np.asarray(sorted(delimiter_ids))
    for i in range(0, len(starts), batch):
        x, _ = data.batch_at(starts[i:i + batch])
        att = np.stack(model.inspect(x, hidden_states=False).attentions, axis=1)  # (B,L,H,T,T)
        for b in range(x.shape[0]):
            s = head_specialisation(att[b], x[b], delim, long_range)
            for k in CATEGORIES:
                sums[k] += s[k]
        sums["mean_distance"] += (att * dist).sum(axis=-1).mean(axis=-1).sum(axis=0)
        n += x.shape[0]
    return {k: v / n for k, v in sums.items()}


def ablation_losses(model, data, starts, batch=64):
    """(base, ablated): the mean validation loss over the windows at ``starts`` of the model
    as is, and (L, H) the same with each head alone ablated (its output zeroed before the
    output projection, through ``GPT.with_head_mask``)."""
    cfg = model.config
    batches = [data.batch_at(starts[i:i + batch]) for i in range(0, len(starts), batch)]
    weights = np.array([x.size for x, _ in batches], dtype=np.float64)

    def mean_loss(m):
        return float(np.dot([m.loss(x, y) for x, y in batches], weights) / weights.sum())

    base = mean_loss(model)
    ablated = np.zeros((cfg.n_layer, cfg.n_head))
    for layer in range(cfg.n_layer):
        for head in range(cfg.n_head):
            mask = np.ones((cfg.n_layer, cfg.n_head))
            mask[layer, head] = 0.0
            ablated[layer, head] = mean_loss(model.with_head_mask(mask))
    return base, ablated


def uniform_shares(tokens, delimiter_ids, long_range):
    """What a uniform causal head would give on the windows ``tokens`` (N, T) int: query t
    spreads 1/(t+1) over keys 0..t. Returns {category: float} with the categories of
    :data:`CATEGORIES` (head_specialisation's shares of that head, averaged over the N
    windows) and "mean_distance" (the mean of |query - key| under it)."""
    from ..viz import head_specialisation
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise ValueError(f"tokens must be (N, T) with N, T >= 1, got shape {tokens.shape}")
    T = tokens.shape[1]
    uni = np.tril(np.ones((T, T)))
    uni /= uni.sum(axis=1, keepdims=True)
    sums = dict.fromkeys(CATEGORIES, 0.0)
    for x in tokens:
        s = head_specialisation(uni[None], x, delimiter_ids, long_range)
        for k in CATEGORIES:
            sums[k] += float(s[k][0, 0])
    out = {k: v / len(tokens) for k, v in sums.items()}
    out["mean_distance"] = float((uni * np.abs(np.arange(T)[:, None] - np.arange(T)))
                                 .sum(axis=1).mean())
    return out


def excess_shares(shares, uniform):
    """The excess share of each category: (share - uniform) / (1 - uniform), the part of
    the attention a uniform causal head leaves *off* the category that this head moves onto
    it (0: no more than uniform; 1: all of its attention; negative: less than uniform; a
    chance correction like Cohen's kappa). shares, uniform: {category: float} over the same
    windows (uniform: :func:`uniform_shares`). Returns {category: float} for the categories
    of :data:`CATEGORIES`.

    Unlike the plain ratio share / uniform, whose ceiling 1 / uniform favours the categories
    a uniform head rarely hits (previous token: ~0.06 at T = 64; delimiters: ~0.24), it
    puts every category on one scale up to 1: a head attending to the last delimiter also
    hits the previous token whenever that is a delimiter, which the plain ratio rated
    above its delimiter share."""
    out = {}
    for k in CATEGORIES:
        u = float(uniform[k])
        if not 0.0 <= u < 1.0:
            raise ValueError(f"uniform[{k!r}] must be in [0, 1), got {u}")
        out[k] = (float(shares[k]) - u) / (1.0 - u)
    return out


def dominant(shares, uniform, threshold=EXCESS_THRESHOLD):
    """A head's dominant category: the one with the largest excess share
    (:func:`excess_shares`), when that excess is at least ``threshold`` (default
    :data:`EXCESS_THRESHOLD` = 0.1: a tenth of the attention a uniform head leaves off the
    category moved onto it); "mixed" otherwise. shares, uniform: {category: float}.
    Returns a str: a category of :data:`CATEGORIES` or "mixed"."""
    ex = excess_shares(shares, uniform)
    best = max(CATEGORIES, key=ex.get)
    return best if ex[best] >= threshold else "mixed"


def _layer_figure(ctx, layer, att, labels, stats, dloss, long_range, uniform):
    """Layer ``layer``: each head's attention on one example (top) and its shares (bottom,
    the uniform-attention baseline as black ticks)."""
    from ..viz import _mpl
    H = att.shape[0]
    fig = ctx.figure(3.3 * H + 0.8, 6.6)
    axes = fig.subplots(2, H, squeeze=False, height_ratios=[3.2, 1.6])
    T = att.shape[-1]
    shown = [_mpl.visible(c) for c in labels]
    for h in range(H):
        ax = axes[0, h]
        im = ax.imshow(att[h], cmap="viridis", vmin=0.0, vmax=1.0)
        _mpl.set_ticks(ax, "x", shown, 3.0, 6, rotation=0)
        _mpl.set_ticks(ax, "y", shown, 3.0, 6)
        ax.set_title(f"head {h}: ablation +{dloss[h]:.3f} nats", fontsize=9)
        ax.set_xlabel("key", fontsize=8)
        if h == 0:
            ax.set_ylabel("query", fontsize=8)
        ax = axes[1, h]
        vals = [stats[k][layer, h] for k in CATEGORIES]
        bars = ax.bar(range(len(CATEGORIES)), vals, color=_mpl.colors("tab10", 5))
        ax.hlines([uniform[k] for k in CATEGORIES], np.arange(5) - 0.4, np.arange(5) + 0.4,
                  color="black", lw=1.5, label="uniform attention")
        if h == 0:
            ax.legend(fontsize=7, loc="upper left")
        ax.set_ylim(0, 1.05)
        ax.set_xticks(range(len(CATEGORIES)),
                      ["prev", "first", "self", "delim", f"≥{long_range}"], fontsize=8)
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, v + 0.02, f"{v:.2f}", ha="center",
                    fontsize=7)
        if h == 0:
            ax.set_ylabel("share of attention", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.colorbar(im, ax=axes[0, :].tolist(), shrink=0.8, label="attention")
    fig.suptitle(f"layer {layer}: attention on an example of {T} characters (top); share "
                 f"on each kind of key over all windows (bottom)", fontsize=10)
    return fig


def _ablation_figure(ctx, dloss):
    L, H = dloss.shape
    fig = ctx.figure(1.0 * H + 2.6, 0.7 * L + 1.6)
    ax = fig.subplots()
    im = ax.imshow(dloss, cmap="Reds", vmin=min(0.0, float(dloss.min())), aspect="auto")
    for (i, j), v in np.ndenumerate(dloss):
        ax.text(j, i, f"{v:+.3f}", ha="center", va="center", fontsize=8,
                color="white" if v > 0.6 * dloss.max() else "black")
    ax.set_xticks(range(H), [f"head {h}" for h in range(H)])
    ax.set_yticks(range(L), [f"layer {l}" for l in range(L)])
    ax.set_title("validation loss increase when one head is ablated (nats)")
    fig.colorbar(im, ax=ax)
    return fig


@register("heads", "what attention heads learn: attention shares per layer and head "
                   "(previous, first, self, delimiters, long range) and head ablation")
def heads(ctx):
    """Train a character GPT, measure every head's attention shares over many validation
    windows and the loss increase when it is ablated. Returns the Report (one row per
    (layer, head) plus a uniform-attention baseline row)."""
    from ..viz import plot_head_specialisation
    s = settings(ctx.quick)
    corpus = ctx.shakespeare()
    T = s["block_size"]
    long_range = T // 4
    cfg = GPTConfig(vocab_size=corpus.vocab_size, block_size=T, n_layer=s["n_layer"],
                    n_head=s["n_head"], n_embd=s["n_embd"])
    model = GPT.create(cfg, ctx.rng(0))
    tcfg = TrainConfig(max_iters=s["steps"], batch_size=s["batch_size"], lr=s["lr"],
                       min_lr=s["lr"] / 10, warmup_iters=max(1, s["steps"] // 20),
                       eval_every=0, seed=ctx.seed)
    log = ctx.train_lm(model, corpus.train_ids, config=tcfg, log_every=10)
    model.eval()
    val = StreamDataset(corpus.val_ids, T)
    delim = [i for i, c in enumerate(corpus.tokenizer.decode([j]) for j in
                                     range(corpus.vocab_size)) if c in DELIMITERS]
    starts = _starts(len(val), s["windows"])
    stats = head_statistics(model, val, starts, delim, long_range, s["batch"])
    base, ablated = ablation_losses(model, val, _starts(len(val), s["ablation_windows"]),
                                    s["batch"])
    dloss = ablated - base
    # the baseline: uniform causal attention over the same windows' tokens
    uniform = uniform_shares(np.concatenate([val.batch_at(starts[i:i + 1024])[0] for i in
                                             range(0, len(starts), 1024)]), delim, long_range)

    columns = ["layer", "head", *CATEGORIES, "mean_distance", "dominant", "ablation_dloss"]
    rep = Report("heads", "Heads: where each attention head looks, and what it is worth",
                 columns=columns)
    for layer in range(cfg.n_layer):
        for head in range(cfg.n_head):
            shares = {k: float(stats[k][layer, head]) for k in CATEGORIES}
            rep.add_row(dict(layer=layer, head=head, **shares,
                             mean_distance=float(stats["mean_distance"][layer, head]),
                             dominant=dominant(shares, uniform),
                             ablation_dloss=float(dloss[layer, head])))
    rep.add_row(dict(layer="-", head="uniform", **uniform, dominant="-", ablation_dloss=None))
    n_queries = len(starts) * T
    rep.notes += [
        f"Model: {cfg.n_layer} layers x {cfg.n_head} heads, n_embd {cfg.n_embd}, block "
        f"{T} characters ({model.num_parameters:,} parameters), trained {log.step} steps of "
        f"{s['batch_size']} windows (final training loss {log.final_loss():.3f}); validation "
        f"loss {base:.4f} nats/char on {len(_starts(len(val), s['ablation_windows']))} "
        f"windows.",
        f"Shares: the attention mass on each kind of key, averaged over {n_queries:,} "
        f"queries ({len(starts)} validation windows of {T}); delimiters are the characters "
        f"{DELIMITERS!r} (those present in the vocabulary); long range = keys at distance "
        f">= {long_range}; mean_distance = the expected |query - key| under the attention. "
        "The categories overlap (the previous token may be a delimiter; at position 0 first "
        "= self). The `uniform` row is what attention spread evenly over the causal window "
        "would give on the same windows. `dominant`: the category with the largest excess "
        "share (share - uniform) / (1 - uniform), the part of the attention a uniform head "
        "leaves off that category which this head moves onto it (0 = as uniform, 1 = all "
        f"of it), when that excess is at least {EXCESS_THRESHOLD:g}; `mixed` otherwise. "
        "(The plain ratio share / uniform is capped at 1 / uniform and so favours the "
        "categories a uniform head rarely hits: it rated delimiter heads, whose previous "
        "token is often a delimiter, as previous-token heads.)",
        "ablation_dloss: the validation loss with that head's output zeroed before the "
        "output projection (`GPT.with_head_mask`) minus the intact model's (nats/char).",
    ]
    rep.meta["settings"] = dict(s, long_range=long_range, parameters=model.num_parameters)
    rep.meta["val_loss"] = base
    rep.meta["train_log"] = log.to_dict()
    rep.meta["stats"] = {k: v.tolist() for k, v in stats.items()}
    rep.meta["excess"] = {k: [[excess_shares({c: stats[c][l, h] for c in CATEGORIES},
                                             uniform)[k] for h in range(cfg.n_head)]
                               for l in range(cfg.n_layer)] for k in CATEGORIES}
    rep.meta["excess_threshold"] = EXCESS_THRESHOLD
    # figures: one per layer on an example line, the ablation grid, the overview
    ex, _ = val.batch_at(starts[len(starts) // 2:len(starts) // 2 + 1])
    n_show = min(T, 40)
    att = model.inspect(ex[:, :n_show], hidden_states=False).attentions   # per layer (1,H,t,t)
    labels = [corpus.tokenizer.decode([int(t)]) for t in ex[0, :n_show]]
    for layer in range(cfg.n_layer):
        rep.add_figure(_layer_figure(ctx, layer, att[layer][0], labels, stats, dloss[layer],
                                     long_range, uniform), f"heads_layer{layer}.png")
    rep.add_figure(_ablation_figure(ctx, dloss), "heads_ablation.png")
    table = {k: stats[k] for k in CATEGORIES}
    rep.add_figure(plot_head_specialisation(table=table, title=f"share of attention per "
                                            f"head over {n_queries:,} queries"),
                   "heads_shares.png")
    return rep
